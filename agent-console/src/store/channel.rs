//! Messaging channels' records: the inbound journal (`channel_event`), the
//! patients' threads (`channel_thread`) and the outbound outbox
//! (`channel_outbox`). What they mean is in `crate::channels`.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::claim::{CHANNEL_EVENT_LEASE, Claimable, Claimant, claim};
use super::{Channel, ChatMessage, PatientId, Result, StaffId, Store, StoreError, on_pool};

/// A journal entry is claimable until it is processed.
const EVENT: Claimable =
    Claimable { table: "channel_event", key: "channel_event_id", due: "processed_at is null", also_set: "" };
/// A reply is claimable while queued; its claim is the move to `sending`.
const SEND: Claimable = Claimable {
    table: "channel_outbox",
    key: "channel_outbox_id",
    due: "state = 'queued'",
    also_set: ", state = 'sending', updated_at = $3",
};

crate::store::text_enum::text_enum!(
    /// Who carries a channel's messages.
    Provider { Whatsapp = "whatsapp", Twilio = "twilio", Exotel = "exotel" }
);
crate::store::text_enum::text_enum!(
    /// A journal entry: a patient's message, or the status of one of ours.
    EventKind { Message = "message", Status = "status" }
);
crate::store::text_enum::text_enum!(
    /// What became of a journal entry: `processed` (it reached its
    /// conversation, or its send); `unprocessable` (kept for staff: Careline
    /// cannot handle it, e.g. an unsupported type); `unmatched` (a status
    /// whose send is not known yet: kept, and matched when the send's own
    /// answer names its message).
    EventOutcome { Processed = "processed", Unprocessable = "unprocessable", Unmatched = "unmatched" }
);
crate::store::text_enum::text_enum!(
    /// Where a reply in the outbox stands with the provider's API. `sending`:
    /// being posted now by the node that claimed it; found so after its
    /// claim ran out (its node stopped mid-send), it becomes `unknown`. `unknown`: the provider may or may not have it (a
    /// timeout): never resent automatically, settled by a status callback
    /// carrying its `opaque` key.
    SendState { Queued = "queued", Sending = "sending", Sent = "sent", Unknown = "unknown", Failed = "failed" }
);
crate::store::text_enum::text_enum!(
    /// What the provider says of a message we sent (WhatsApp's status values).
    DeliveryStatus { Sent = "sent", Delivered = "delivered", Read = "read", Failed = "failed" }
);

impl DeliveryStatus {
    /// Statuses only move forward: sent < failed < delivered < read. A
    /// failure is told after `sent` (the provider took it, then could not
    /// deliver it); a late `delivered` never overwrites `read`.
    fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Failed => 2,
            DeliveryStatus::Delivered => 3,
            DeliveryStatus::Read => 4,
        }
    }

    /// The status after `new` arrives on `current`: `None` when `new` is not
    /// ahead of it (nothing to write).
    pub fn advance(current: Option<DeliveryStatus>, new: DeliveryStatus) -> Option<DeliveryStatus> {
        match current {
            Some(c) if c.rank() >= new.rank() => None,
            _ => Some(new),
        }
    }
}

/// A journal entry to store, as a webhook delivered it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChannelEvent {
    pub kind: EventKind,
    /// The provider's unique key: a message's id; a status's message id and status.
    pub event_key: String,
    /// The provider's id of the message it is or concerns.
    pub message_ref: Option<String>,
    /// A status's `biz_opaque_callback_data`: the send's key in our outbox.
    pub opaque: Option<String>,
    /// The event as parsed, with the provider's own item (JSON).
    pub payload: String,
}

/// A stored journal entry.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ChannelEvent {
    pub channel_event_id: i64,
    pub provider: Provider,
    pub kind: EventKind,
    pub event_key: String,
    pub message_ref: Option<String>,
    pub opaque: Option<String>,
    pub payload: String,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: Option<EventOutcome>,
    pub error: Option<String>,
    pub contact_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    channel_event_id: i64,
    provider: String,
    kind: String,
    event_key: String,
    message_ref: Option<String>,
    opaque: Option<String>,
    payload: String,
    received_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    outcome: Option<String>,
    error: Option<String>,
    contact_id: Option<String>,
}

impl TryFrom<EventRow> for ChannelEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self> {
        Ok(ChannelEvent {
            channel_event_id: r.channel_event_id,
            provider: r.provider.parse().map_err(StoreError::Corrupt)?,
            kind: r.kind.parse().map_err(StoreError::Corrupt)?,
            event_key: r.event_key,
            message_ref: r.message_ref,
            opaque: r.opaque,
            payload: r.payload,
            received_at: r.received_at,
            processed_at: r.processed_at,
            outcome: r.outcome.map(|o| o.parse()).transpose().map_err(StoreError::Corrupt)?,
            error: r.error,
            contact_id: r.contact_id,
        })
    }
}

const EVENT_COLUMNS: &str = "channel_event_id, provider, kind, event_key, message_ref, opaque, payload, received_at, \
                             processed_at, outcome, error, contact_id";

/// A patient's conversation on one channel.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ChannelThread {
    pub channel_thread_id: i64,
    pub channel: Channel,
    pub provider: Provider,
    /// The WhatsApp id or phone number, as the provider gives it.
    pub address: String,
    pub display_name: Option<String>,
    pub patient_id: Option<PatientId>,
    /// The thread's latest contact.
    pub contact_id: Option<String>,
    /// The patient's last message: WhatsApp's 24-hour window runs from it.
    pub last_inbound_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ThreadRow {
    channel_thread_id: i64,
    channel: String,
    provider: String,
    address: String,
    display_name: Option<String>,
    patient_id: Option<i64>,
    contact_id: Option<String>,
    last_inbound_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ThreadRow> for ChannelThread {
    type Error = StoreError;
    fn try_from(r: ThreadRow) -> Result<Self> {
        Ok(ChannelThread {
            channel_thread_id: r.channel_thread_id,
            channel: r.channel.parse().map_err(StoreError::Corrupt)?,
            provider: r.provider.parse().map_err(StoreError::Corrupt)?,
            address: r.address,
            display_name: r.display_name,
            patient_id: r.patient_id.map(PatientId),
            contact_id: r.contact_id,
            last_inbound_at: r.last_inbound_at,
            created_at: r.created_at,
        })
    }
}

const THREAD_COLUMNS: &str = "channel_thread_id, channel, provider, address, display_name, patient_id, contact_id, \
                              last_inbound_at, created_at";

/// A patient's message as it joins its thread and contact.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundMessage {
    /// The journal entry it came in; marked processed in the same transaction.
    pub event_id: i64,
    pub channel: Channel,
    pub provider: Provider,
    pub address: String,
    pub display_name: Option<String>,
    /// The patient the number belongs to, when it is known.
    pub patient_id: Option<PatientId>,
    pub contact_id: String,
    pub body: String,
    /// When the patient sent it (the provider's timestamp).
    pub sent_at: DateTime<Utc>,
}

/// A reply to queue with its chat message.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChannelSend {
    pub provider: Provider,
    pub recipient: String,
    /// The provider's request body (JSON), complete but for nothing: it is sent as it is.
    pub request: String,
    /// Our key of the send, given to the provider to carry back in statuses.
    pub opaque: String,
}

/// A reply in the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ChannelSend {
    pub channel_outbox_id: i64,
    pub chat_message_id: i64,
    pub contact_id: String,
    pub provider: Provider,
    pub recipient: String,
    #[serde(skip)]
    pub request: String,
    pub opaque: String,
    pub state: SendState,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub provider_message_id: Option<String>,
    /// The furthest status the provider reported.
    pub delivery: Option<DeliveryStatus>,
    pub delivery_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SendRow {
    channel_outbox_id: i64,
    chat_message_id: i64,
    contact_id: String,
    provider: String,
    recipient: String,
    request: String,
    opaque: String,
    state: String,
    attempts: i64,
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    provider_message_id: Option<String>,
    delivery: Option<String>,
    delivery_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SendRow> for ChannelSend {
    type Error = StoreError;
    fn try_from(r: SendRow) -> Result<Self> {
        Ok(ChannelSend {
            channel_outbox_id: r.channel_outbox_id,
            chat_message_id: r.chat_message_id,
            contact_id: r.contact_id,
            provider: r.provider.parse().map_err(StoreError::Corrupt)?,
            recipient: r.recipient,
            request: r.request,
            opaque: r.opaque,
            state: r.state.parse().map_err(StoreError::Corrupt)?,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            provider_message_id: r.provider_message_id,
            delivery: r.delivery.map(|d| d.parse()).transpose().map_err(StoreError::Corrupt)?,
            delivery_at: r.delivery_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const SEND_COLUMNS: &str = "channel_outbox_id, chat_message_id, contact_id, provider, recipient, request, opaque, \
     state, attempts, next_attempt_at, last_error, provider_message_id, delivery, delivery_at, created_at, updated_at";

/// A number's opt-out of a channel (SMS's STOP and START).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ChannelOptOut {
    pub channel: Channel,
    pub address: String,
    /// True after an opt-out keyword, false after an opt-in one.
    pub opted_out: bool,
    pub keyword: String,
    pub changed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OptOutRow {
    channel: String,
    address: String,
    opted_out: bool,
    keyword: String,
    changed_at: DateTime<Utc>,
}

impl TryFrom<OptOutRow> for ChannelOptOut {
    type Error = StoreError;
    fn try_from(r: OptOutRow) -> Result<Self> {
        Ok(ChannelOptOut {
            channel: r.channel.parse().map_err(StoreError::Corrupt)?,
            address: r.address,
            opted_out: r.opted_out,
            keyword: r.keyword,
            changed_at: r.changed_at,
        })
    }
}

/// What one attempt at posting a reply came to.
#[derive(Clone, Debug, PartialEq)]
pub enum SendOutcome {
    /// The provider took it, under this id.
    Sent { provider_message_id: String },
    /// A clear failure (5xx, 429, connection refused): try again at `at`.
    Retry { error: String, at: DateTime<Utc> },
    /// No answer (a timeout): the provider may have it. Never resent automatically.
    Unknown { error: String },
    /// Refused for good (a 4xx), or retries exhausted.
    Failed { error: String },
}

impl Store {
    /// Stores a webhook's events in one transaction; an event whose key is
    /// already stored (a redelivery) is left as it is. Returns how many were new.
    pub async fn journal_channel_events(
        &self,
        provider: Provider,
        events: &[NewChannelEvent],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let mut added = 0;
            for e in events {
                added += sqlx::query(
                    "insert into channel_event (provider, kind, event_key, message_ref, opaque, payload, received_at) \
                     values ($1, $2, $3, $4, $5, $6, $7) on conflict (provider, event_key) do nothing",
                )
                .bind(provider.as_str())
                .bind(e.kind.as_str())
                .bind(&e.event_key)
                .bind(&e.message_ref)
                .bind(&e.opaque)
                .bind(&e.payload)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
            }
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok(added)
        })
    }

    /// Journal entries not processed yet, oldest first, claimed or not: the
    /// journal task stops at one another node holds, so a patient's
    /// messages are processed in order.
    pub async fn pending_channel_events(&self, limit: i64) -> Result<Vec<ChannelEvent>> {
        let sql = format!(
            "select {EVENT_COLUMNS} from channel_event where processed_at is null order by channel_event_id limit $1"
        );
        let rows: Vec<EventRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(limit).fetch_all(pool).await)
            .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Journal entries, latest first, optionally only those of one outcome (staff's view).
    pub async fn channel_events(&self, outcome: Option<EventOutcome>, limit: i64) -> Result<Vec<ChannelEvent>> {
        let sql = format!(
            "select {EVENT_COLUMNS} from channel_event where ($1 is null or outcome = $1) \
             order by channel_event_id desc limit $2"
        );
        let rows: Vec<EventRow> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(outcome.map(EventOutcome::as_str))
            .bind(limit)
            .fetch_all(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Claims a journal entry for `claimant` (for [`CHANNEL_EVENT_LEASE`])
    /// before it is processed; false when it is processed or another node
    /// holds it. Finishing it ([`Store::finish_channel_event`],
    /// [`Store::add_inbound_message`]) clears the claim.
    pub async fn claim_channel_event(&self, id: i64, claimant: &Claimant, now: DateTime<Utc>) -> Result<bool> {
        let row: Option<(i64,)> =
            claim(self, &EVENT, id, "channel_event_id", claimant, now, CHANNEL_EVENT_LEASE).await?;
        Ok(row.is_some())
    }

    /// Gives back `claimant`'s claim on a journal entry whose processing
    /// failed in a way worth retrying, so the next round (on any node)
    /// takes it at once. False when `claimant` did not hold it (any more).
    pub async fn release_channel_event(&self, id: i64, claimant: &Claimant) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query(
            "update channel_event set claimed_by = null, claimed_until = null \
             where channel_event_id = $1 and claimed_by = $2 and processed_at is null",
        )
        .bind(id)
        .bind(claimant.as_str())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(n == 1)
    }

    /// Marks a journal entry processed with its outcome, and ends its claim;
    /// an entry already processed is left as it is (`Refused`).
    pub async fn finish_channel_event(
        &self,
        id: i64,
        outcome: EventOutcome,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = on_pool!(self, pool => sqlx::query(
            "update channel_event set processed_at = $2, outcome = $3, error = $4, claimed_by = null, \
             claimed_until = null where channel_event_id = $1 and processed_at is null",
        )
        .bind(id)
        .bind(now)
        .bind(outcome.as_str())
        .bind(error)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        if done == 0 {
            return Err(StoreError::Refused(format!("channel event {id} is already processed")));
        }
        Ok(())
    }

    /// A patient's thread on a channel, if they ever wrote on it.
    pub async fn channel_thread(&self, channel: Channel, address: &str) -> Result<Option<ChannelThread>> {
        let sql = format!("select {THREAD_COLUMNS} from channel_thread where channel = $1 and address = $2");
        let row: Option<ThreadRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(channel.as_str()).bind(address).fetch_optional(pool).await)
                .map_err(StoreError::from_sqlx)?;
        row.map(TryInto::try_into).transpose()
    }

    /// The thread whose latest contact is `contact`.
    pub async fn thread_of_contact(&self, contact: &str) -> Result<Option<ChannelThread>> {
        let sql = format!("select {THREAD_COLUMNS} from channel_thread where contact_id = $1");
        let row: Option<ThreadRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(contact).fetch_optional(pool).await)
                .map_err(StoreError::from_sqlx)?;
        row.map(TryInto::try_into).transpose()
    }

    /// A patient's message joins its thread (created on their first) and
    /// contact, and its journal entry is marked processed, all in one
    /// transaction: processed twice, it is refused the second time and
    /// nothing changes.
    pub async fn add_inbound_message(&self, m: &InboundMessage, now: DateTime<Utc>) -> Result<ChatMessage> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let done = sqlx::query(
                "update channel_event set processed_at = $2, outcome = 'processed', contact_id = $3, \
                 claimed_by = null, claimed_until = null where channel_event_id = $1 and processed_at is null",
            )
            .bind(m.event_id)
            .bind(now)
            .bind(&m.contact_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::refers_to("contact_id"))?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::Refused(format!("channel event {} is already processed", m.event_id)));
            }
            sqlx::query(
                "insert into channel_thread (channel, provider, address, display_name, patient_id, contact_id, \
                 last_inbound_at, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8) \
                 on conflict (channel, address) do update set provider = excluded.provider, \
                 display_name = coalesce(excluded.display_name, channel_thread.display_name), \
                 patient_id = coalesce(channel_thread.patient_id, excluded.patient_id), \
                 contact_id = excluded.contact_id, \
                 last_inbound_at = case when excluded.last_inbound_at > channel_thread.last_inbound_at \
                     then excluded.last_inbound_at else channel_thread.last_inbound_at end",
            )
            .bind(m.channel.as_str())
            .bind(m.provider.as_str())
            .bind(&m.address)
            .bind(&m.display_name)
            .bind(m.patient_id.map(|p| p.0))
            .bind(&m.contact_id)
            .bind(m.sent_at)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::refers_to("contact_id"))?;
            let row: (i64,) = sqlx::query_as(
                "insert into chat_message (contact_id, sender, staff_id, body, created_at) \
                 values ($1, 'patient', null, $2, $3) returning chat_message_id",
            )
            .bind(&m.contact_id)
            .bind(&m.body)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::refers_to("contact_id"))?;
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok(ChatMessage {
                chat_message_id: row.0,
                contact_id: m.contact_id.clone(),
                sender: "patient".into(),
                staff_id: None,
                body: m.body.clone(),
                created_at: now,
            })
        })
    }

    /// A staff reply on a messaging contact: its chat message and its
    /// outbox row, in one transaction (so a reply shown is a reply queued).
    pub async fn add_reply_with_send(
        &self,
        contact: &str,
        staff: StaffId,
        body: &str,
        send: &NewChannelSend,
        now: DateTime<Utc>,
    ) -> Result<(ChatMessage, ChannelSend)> {
        let sql = format!(
            "insert into channel_outbox (chat_message_id, contact_id, provider, recipient, request, opaque, state, \
             next_attempt_at, created_at, updated_at) values ($1, $2, $3, $4, $5, $6, 'queued', $7, $7, $7) \
             returning {SEND_COLUMNS}"
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let (id,): (i64,) = sqlx::query_as(
                "insert into chat_message (contact_id, sender, staff_id, body, created_at) \
                 values ($1, 'staff', $2, $3, $4) returning chat_message_id",
            )
            .bind(contact)
            .bind(staff.0)
            .bind(body)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::refers_to("contact_id"))?;
            let row: SendRow = sqlx::query_as(&sql)
                .bind(id)
                .bind(contact)
                .bind(send.provider.as_str())
                .bind(&send.recipient)
                .bind(&send.request)
                .bind(&send.opaque)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            let message = ChatMessage {
                chat_message_id: id,
                contact_id: contact.to_owned(),
                sender: "staff".into(),
                staff_id: Some(staff),
                body: body.to_owned(),
                created_at: now,
            };
            Ok((message, row.try_into()?))
        })
    }

    /// Queued replies due at `now`, oldest first.
    pub async fn due_channel_sends(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<ChannelSend>> {
        let sql = format!(
            "select {SEND_COLUMNS} from channel_outbox where state = 'queued' and next_attempt_at <= $1 \
             order by next_attempt_at, channel_outbox_id limit $2"
        );
        let rows: Vec<SendRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(pool).await)
                .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Claims a queued reply for posting (`sending`) for `claimant` until
    /// `now + lease`, committed before the request leaves; false when it is
    /// not queued (any more: another node took it). The lease must outlast
    /// the provider's request timeout: a send still `sending` when it runs out
    /// (its node died or stalled mid-send) becomes `unknown` in
    /// [`Store::interrupted_channel_sends`], never a resend.
    pub async fn start_channel_send(
        &self,
        id: i64,
        claimant: &Claimant,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool> {
        let row: Option<(i64,)> = claim(self, &SEND, id, "channel_outbox_id", claimant, now, lease).await?;
        Ok(row.is_some())
    }

    /// Replies still `sending` at `now` whose claim ran out (or that have
    /// none, from before claims): their node stopped mid-send, and they may
    /// have reached the provider, so they become `unknown`. The sender runs
    /// it at start and every round; a reply another node is still sending
    /// (its lease live) is left alone. Returns how many.
    pub async fn interrupted_channel_sends(&self, now: DateTime<Utc>) -> Result<u64> {
        on_pool!(self, pool => sqlx::query(
            "update channel_outbox set state = 'unknown', next_attempt_at = null, updated_at = $1, \
             last_error = 'interrupted while sending (the server stopped)', claimed_by = null, claimed_until = null \
             where state = 'sending' and (claimed_until is null or claimed_until < $1)",
        )
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)
    }

    /// Records what an attempt came to, and ends its claim. A reply the provider took is then
    /// matched against the statuses that arrived before this answer.
    pub async fn record_channel_send(&self, id: i64, outcome: &SendOutcome, now: DateTime<Utc>) -> Result<ChannelSend> {
        let (state, next, error, message_id) = match outcome {
            SendOutcome::Sent { provider_message_id } => (SendState::Sent, None, None, Some(provider_message_id)),
            SendOutcome::Retry { error, at } => (SendState::Queued, Some(*at), Some(error), None),
            SendOutcome::Unknown { error } => (SendState::Unknown, None, Some(error), None),
            SendOutcome::Failed { error } => (SendState::Failed, None, Some(error), None),
        };
        let n = on_pool!(self, pool => sqlx::query(
            "update channel_outbox set state = $2, attempts = attempts + 1, next_attempt_at = $3, \
             last_error = coalesce($4, last_error), provider_message_id = coalesce($5, provider_message_id), \
             updated_at = $6, claimed_by = null, claimed_until = null where channel_outbox_id = $1 and state = 'sending'",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(next)
        .bind(error)
        .bind(message_id)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        if n == 0 {
            return Err(StoreError::Refused(format!("reply {id} is not being sent")));
        }
        let send = self.channel_send(id).await?;
        if message_id.is_some() {
            self.match_early_statuses(&send, now).await?;
            return self.channel_send(id).await;
        }
        Ok(send)
    }

    /// Applies the journal's statuses for `send`'s message that arrived before its answer.
    async fn match_early_statuses(&self, send: &ChannelSend, now: DateTime<Utc>) -> Result<()> {
        let sql = format!(
            "select {EVENT_COLUMNS} from channel_event where kind = 'status' and outcome = 'unmatched' \
             and (message_ref = $1 or opaque = $2) order by channel_event_id"
        );
        let rows: Vec<EventRow> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(&send.provider_message_id)
            .bind(&send.opaque)
            .fetch_all(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        for row in rows {
            let event: ChannelEvent = row.try_into()?;
            // The status is the key's tail (`{message id}:{status}`), as the webhooks journal it.
            let Some(status) = event.event_key.rsplit(':').next().and_then(|s| s.parse::<DeliveryStatus>().ok()) else {
                continue;
            };
            self.advance_delivery(send.channel_outbox_id, status, now).await?;
            on_pool!(self, pool => sqlx::query(
                "update channel_event set outcome = 'processed', contact_id = $2 where channel_event_id = $1",
            )
            .bind(event.channel_event_id)
            .bind(&send.contact_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    /// Moves a reply's delivery forward to `status` (never back). Returns the reply.
    async fn advance_delivery(&self, id: i64, status: DeliveryStatus, now: DateTime<Utc>) -> Result<ChannelSend> {
        // Compare-and-set on the value read, so two statuses applied at
        // once cannot move it backwards; a lost race reads again.
        for _ in 0..5 {
            let send = self.channel_send(id).await?;
            let Some(next) = DeliveryStatus::advance(send.delivery, status) else { return Ok(send) };
            let n = on_pool!(self, pool => sqlx::query(
                "update channel_outbox set delivery = $2, delivery_at = $3, updated_at = $3 \
                 where channel_outbox_id = $1 and (delivery = $4 or (delivery is null and $4 is null))",
            )
            .bind(id)
            .bind(next.as_str())
            .bind(now)
            .bind(send.delivery.map(DeliveryStatus::as_str))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::from_sqlx)?;
            if n == 1 {
                return self.channel_send(id).await;
            }
        }
        Err(StoreError::Refused(format!("reply {id}'s delivery kept changing")))
    }

    /// A provider's status for one of our messages, found by its id or by
    /// our `opaque` key (a send whose answer never came: it is then known
    /// as sent, under that id). `None` when no send matches (yet).
    pub async fn apply_channel_status(
        &self,
        message_ref: &str,
        opaque: Option<&str>,
        status: DeliveryStatus,
        now: DateTime<Utc>,
    ) -> Result<Option<ChannelSend>> {
        let sql = format!(
            "select {SEND_COLUMNS} from channel_outbox where provider_message_id = $1 or opaque = $2 \
             order by channel_outbox_id limit 1"
        );
        let row: Option<SendRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(message_ref).bind(opaque).fetch_optional(pool).await)
                .map_err(StoreError::from_sqlx)?;
        let Some(send) = row.map(ChannelSend::try_from).transpose()? else { return Ok(None) };
        if send.state == SendState::Unknown {
            on_pool!(self, pool => sqlx::query(
                "update channel_outbox set state = 'sent', provider_message_id = coalesce(provider_message_id, $2), \
                 updated_at = $3 where channel_outbox_id = $1 and state = 'unknown'",
            )
            .bind(send.channel_outbox_id)
            .bind(message_ref)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::from_sqlx)?;
        }
        self.advance_delivery(send.channel_outbox_id, status, now).await.map(Some)
    }

    /// Contacts on WhatsApp or SMS still waiting for an operator, oldest first.
    pub async fn waiting_messaging_contacts(&self) -> Result<Vec<super::Contact>> {
        let sql = format!(
            "select {} from contact where status = 'waiting' and channel in ('whatsapp', 'sms') order by created_at",
            super::contact::CONTACT_COLUMNS
        );
        let rows: Vec<super::contact::ContactRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await).map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn channel_send(&self, id: i64) -> Result<ChannelSend> {
        let sql = format!("select {SEND_COLUMNS} from channel_outbox where channel_outbox_id = $1");
        let row: SendRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        row.try_into()
    }

    /// A contact's replies in the outbox, in order: the console's delivery ticks.
    pub async fn channel_sends_of_contact(&self, contact: &str) -> Result<Vec<ChannelSend>> {
        let sql = format!("select {SEND_COLUMNS} from channel_outbox where contact_id = $1 order by channel_outbox_id");
        let rows: Vec<SendRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(contact).fetch_all(pool).await)
            .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Records a patient's opt-out (`opted_out`) or opt-in on a channel, the
    /// latest winning; `keyword` is what they sent (or the provider's error).
    pub async fn set_channel_opt_out(
        &self,
        channel: Channel,
        address: &str,
        opted_out: bool,
        keyword: &str,
        now: DateTime<Utc>,
    ) -> Result<ChannelOptOut> {
        let row: OptOutRow = on_pool!(self, pool => sqlx::query_as(
            "insert into channel_opt_out (channel, address, opted_out, keyword, changed_at) values ($1, $2, $3, $4, $5) \
             on conflict (channel, address) do update set opted_out = excluded.opted_out, \
             keyword = excluded.keyword, changed_at = excluded.changed_at \
             returning channel, address, opted_out, keyword, changed_at",
        )
        .bind(channel.as_str())
        .bind(address)
        .bind(opted_out)
        .bind(keyword)
        .bind(now)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        row.try_into()
    }

    /// A number's opt-out record on a channel, if it ever sent a keyword.
    pub async fn channel_opt_out(&self, channel: Channel, address: &str) -> Result<Option<ChannelOptOut>> {
        let row: Option<OptOutRow> = on_pool!(self, pool => sqlx::query_as(
            "select channel, address, opted_out, keyword, changed_at from channel_opt_out \
             where channel = $1 and address = $2",
        )
        .bind(channel.as_str())
        .bind(address)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        row.map(TryInto::try_into).transpose()
    }

    /// When the next queued reply falls due, if any.
    pub async fn next_channel_send_due(&self) -> Result<Option<DateTime<Utc>>> {
        let row: (Option<DateTime<Utc>>,) = on_pool!(self, pool => sqlx::query_as(
            "select min(next_attempt_at) from channel_outbox where state = 'queued'",
        )
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.0)
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::{self, *};

    #[test]
    fn statuses_only_move_forward() {
        // (current, arriving, written)
        let table: &[(Option<DeliveryStatus>, DeliveryStatus, Option<DeliveryStatus>)] = &[
            (None, Sent, Some(Sent)),
            (None, Read, Some(Read)),
            (Some(Sent), Delivered, Some(Delivered)),
            (Some(Delivered), Read, Some(Read)),
            (Some(Read), Sent, None),
            (Some(Read), Delivered, None),
            (Some(Read), Read, None),
            (Some(Sent), Failed, Some(Failed)),
            (Some(Failed), Sent, None),
            (Some(Delivered), Failed, None),
        ];
        for (current, new, want) in table {
            assert_eq!(DeliveryStatus::advance(*current, *new), *want, "{current:?} then {new:?}");
        }
        // Any order of the same statuses ends at the furthest.
        for order in [[Read, Sent, Delivered], [Sent, Delivered, Read], [Delivered, Read, Sent]] {
            let end = order.iter().fold(None, |cur, s| DeliveryStatus::advance(cur, *s).or(cur));
            assert_eq!(end, Some(Read), "{order:?}");
        }
    }
}
