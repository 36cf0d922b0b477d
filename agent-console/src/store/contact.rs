//! Contacts (calls and chats) as records: arrival, answer, escalation,
//! end and wrap-up, who worked on them, and chat messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

crate::store::text_enum::text_enum!(
    /// How the patient reached the helpline.
    Channel { Phone = "phone", Webrtc = "webrtc", Chat = "chat", Whatsapp = "whatsapp", Sms = "sms" }
);

impl Channel {
    /// A channel of written messages (web chat, WhatsApp, SMS): routed as
    /// `Media::Chat`, consulted as text.
    pub fn is_text(self) -> bool {
        matches!(self, Channel::Chat | Channel::Whatsapp | Channel::Sms)
    }

    /// A messaging channel whose messages come and go through a provider
    /// (`crate::channels`), not through the `/call` page.
    pub fn is_messaging(self) -> bool {
        matches!(self, Channel::Whatsapp | Channel::Sms)
    }
}
crate::store::text_enum::text_enum!(
    /// The wrap-up code an agent closes a contact with.
    Disposition {
        Information = "information",
        Complaint = "complaint",
        Appointment = "appointment",
        Escalated = "escalated",
        Callback = "callback",
        Emergency = "emergency",
        WrongNumber = "wrong_number",
        Silent = "silent",
        Other = "other",
    }
);
crate::store::text_enum::text_enum!(
    /// Where a contact stands.
    ContactStatus {
        Waiting = "waiting",
        Connected = "connected",
        WrapUp = "wrap_up",
        Ended = "ended",
        Abandoned = "abandoned",
        Callback = "callback",
    }
);

/// A contact as it arrives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewContact {
    pub channel: Option<Channel>,
    pub language: String,
    pub emergency: bool,
    pub caller_phone: Option<String>,
    pub ehealth_card: Option<String>,
    pub abha_number: Option<String>,
    pub patient_id: Option<PatientId>,
    pub location: Option<String>,
}

/// A contact's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub contact_id: String,
    pub channel: Channel,
    pub language: String,
    pub emergency: bool,
    pub tier: i64,
    pub specialty: Option<String>,
    pub caller_phone: Option<String>,
    pub ehealth_card: Option<String>,
    pub abha_number: Option<String>,
    pub patient_id: Option<PatientId>,
    pub location: Option<String>,
    pub status: ContactStatus,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub answered_by: Option<StaffId>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub doctor_id: Option<StaffId>,
    pub ended_at: Option<DateTime<Utc>>,
    pub disposition: Option<Disposition>,
    pub wrap_up_note: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct ContactRow {
    contact_id: String,
    channel: String,
    language: String,
    emergency: bool,
    tier: i64,
    specialty: Option<String>,
    caller_phone: Option<String>,
    ehealth_card: Option<String>,
    abha_number: Option<String>,
    patient_id: Option<i64>,
    location: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    answered_by: Option<i64>,
    escalated_at: Option<DateTime<Utc>>,
    doctor_id: Option<i64>,
    ended_at: Option<DateTime<Utc>>,
    disposition: Option<String>,
    wrap_up_note: Option<String>,
}

impl TryFrom<ContactRow> for Contact {
    type Error = StoreError;

    /// A stored channel, status or disposition that is not a known value is
    /// `StoreError::Corrupt` naming the contact, never a default.
    fn try_from(r: ContactRow) -> Result<Self> {
        let corrupt = |e: String| StoreError::Corrupt(format!("contact {}: {e}", r.contact_id));
        Ok(Contact {
            channel: r.channel.parse().map_err(corrupt)?,
            status: r.status.parse().map_err(corrupt)?,
            disposition: r.disposition.as_deref().map(str::parse).transpose().map_err(corrupt)?,
            contact_id: r.contact_id,
            language: r.language,
            emergency: r.emergency,
            tier: r.tier,
            specialty: r.specialty,
            caller_phone: r.caller_phone,
            ehealth_card: r.ehealth_card,
            abha_number: r.abha_number,
            patient_id: r.patient_id.map(PatientId),
            location: r.location,
            created_at: r.created_at,
            answered_at: r.answered_at,
            answered_by: r.answered_by.map(StaffId),
            escalated_at: r.escalated_at,
            doctor_id: r.doctor_id.map(StaffId),
            ended_at: r.ended_at,
            wrap_up_note: r.wrap_up_note,
        })
    }
}

pub(super) const CONTACT_COLUMNS: &str = "contact_id, channel, language, emergency, tier, specialty, caller_phone, ehealth_card, \
     abha_number, patient_id, location, status, created_at, answered_at, answered_by, escalated_at, doctor_id, \
     ended_at, disposition, wrap_up_note";

/// A chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub chat_message_id: i64,
    pub contact_id: String,
    /// `patient`, `staff` or `system`.
    pub sender: String,
    pub staff_id: Option<StaffId>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// A change to a contact's record; each is one `update`. Serialized into a
/// routing entry with Redis (any node may write it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ContactChange {
    Answered { by: StaffId },
    Escalated { specialty: String },
    DoctorJoined { doctor: StaffId },
    CallbackRequested,
    Ended,
    Abandoned,
    WrappedUp { disposition: Disposition, note: Option<String> },
    Identified { patient: PatientId },
}

/// A value bound into one of the contact writes below.
pub(super) enum Bind {
    Text(String),
    OptText(Option<String>),
    I64(i64),
    OptI64(Option<i64>),
    Bool(bool),
    Time(DateTime<Utc>),
}

/// Binds `$binds` in order into the query `$q`, whichever backend it is for.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::store::contact::Bind::Text(v) => q.bind(v),
                $crate::store::contact::Bind::OptText(v) => q.bind(v),
                $crate::store::contact::Bind::I64(v) => q.bind(v),
                $crate::store::contact::Bind::OptI64(v) => q.bind(v),
                $crate::store::contact::Bind::Bool(v) => q.bind(v),
                $crate::store::contact::Bind::Time(v) => q.bind(v),
            };
        }
        q
    }};
}
pub(super) use bind_all;

/// The insert of a new, waiting contact.
pub(super) fn insert_contact(
    contact_id: &str,
    new: &NewContact,
    token_hash: &str,
    now: DateTime<Utc>,
) -> (String, Vec<Bind>) {
    let sql = "insert into contact (contact_id, channel, language, emergency, caller_phone, ehealth_card, \
         abha_number, patient_id, location, status, patient_token_hash, created_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'waiting', $10, $11)"
        .to_owned();
    let binds = vec![
        Bind::Text(contact_id.to_owned()),
        Bind::Text(new.channel.unwrap_or(Channel::Webrtc).as_str().to_owned()),
        Bind::Text(new.language.clone()),
        Bind::Bool(new.emergency),
        Bind::OptText(new.caller_phone.clone()),
        Bind::OptText(new.ehealth_card.clone()),
        Bind::OptText(new.abha_number.clone()),
        Bind::OptI64(new.patient_id.map(|p| p.0)),
        Bind::OptText(new.location.clone()),
        Bind::Text(token_hash.to_owned()),
        Bind::Time(now),
    ];
    (sql, binds)
}

/// The update of one change; it touches no row when the contact's status
/// does not allow the change.
pub(super) fn change_contact(id: &str, change: &ContactChange, now: DateTime<Utc>) -> (&'static str, Vec<Bind>) {
    let mut binds = vec![Bind::Text(id.to_owned()), Bind::Time(now)];
    let sql = match change {
        ContactChange::Answered { by } => {
            binds.push(Bind::I64(by.0));
            "update contact set status = 'connected', answered_at = coalesce(answered_at, $2), \
             answered_by = coalesce(answered_by, $3) where contact_id = $1"
        }
        ContactChange::Escalated { specialty } => {
            binds.push(Bind::Text(specialty.clone()));
            "update contact set tier = 2, specialty = $3, escalated_at = $2 where contact_id = $1"
        }
        ContactChange::DoctorJoined { doctor } => {
            binds.push(Bind::I64(doctor.0));
            "update contact set doctor_id = $3, status = 'connected', answered_at = coalesce(answered_at, $2) \
             where contact_id = $1"
        }
        ContactChange::CallbackRequested => {
            "update contact set status = 'callback' where contact_id = $1 and status = 'waiting' and $2 = $2"
        }
        ContactChange::Ended => {
            "update contact set status = 'wrap_up', ended_at = coalesce(ended_at, $2) where contact_id = $1 \
             and status in ('waiting', 'connected', 'callback')"
        }
        ContactChange::Abandoned => {
            "update contact set status = 'abandoned', ended_at = coalesce(ended_at, $2) where contact_id = $1 \
             and status in ('waiting', 'callback')"
        }
        ContactChange::WrappedUp { disposition, note } => {
            binds.push(Bind::Text(disposition.as_str().to_owned()));
            binds.push(Bind::OptText(note.clone()));
            "update contact set status = case when status = 'wrap_up' then 'ended' else status end, \
             disposition = $3, wrap_up_note = $4, ended_at = coalesce(ended_at, $2) where contact_id = $1"
        }
        ContactChange::Identified { patient } => {
            binds.push(Bind::I64(patient.0));
            "update contact set patient_id = $3 where contact_id = $1 and $2 = $2"
        }
    };
    (sql, binds)
}

pub(super) const ADD_CONTACT_STAFF: &str =
    "insert into contact_staff (contact_id, staff_id, joined_at) values ($1, $2, $3) on conflict do nothing";

/// A change to the contact records that goes with a routing event: with the
/// `Local` backing it is written in the same transaction as the event's log
/// row (`Store::log_routing_event`), so the records and the routing log
/// agree after any crash. With Redis it travels in the routing entry, and
/// whichever node carries the entry out first writes it (keyed by the entry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub enum RecordWrite {
    /// The event changes no record.
    Nothing,
    /// A new contact, waiting (its arrival).
    Create { contact_id: String, new: NewContact, token_hash: String },
    /// One change to a contact; `staff` joins its `contact_staff` first.
    Change { contact_id: String, change: ContactChange, staff: Option<StaffId> },
}

impl RecordWrite {
    /// The contact it writes, if any.
    pub fn contact_id(&self) -> Option<&str> {
        match self {
            RecordWrite::Nothing => None,
            RecordWrite::Create { contact_id, .. } | RecordWrite::Change { contact_id, .. } => Some(contact_id),
        }
    }
}

/// Runs `write` on the executor `$exec` (a pool, or `&mut *tx`); evaluates
/// to `Result<()>`, `StoreError::Refused` when a change does not apply.
macro_rules! run_write {
    ($exec:expr, $write:expr, $now:expr) => {
        async {
            match $write {
                $crate::store::RecordWrite::Nothing => Ok(()),
                $crate::store::RecordWrite::Create { contact_id, new, token_hash } => {
                    let (sql, binds) = $crate::store::contact::insert_contact(contact_id, new, token_hash, $now);
                    $crate::store::contact::bind_all!(sqlx::query(&sql), binds)
                        .execute(&mut *$exec)
                        .await
                        .map_err($crate::store::StoreError::from_sqlx)?;
                    Ok(())
                }
                $crate::store::RecordWrite::Change { contact_id, change, staff } => {
                    if let Some(staff) = staff {
                        sqlx::query($crate::store::contact::ADD_CONTACT_STAFF)
                            .bind(contact_id)
                            .bind(staff.0)
                            .bind($now)
                            .execute(&mut *$exec)
                            .await
                            .map_err($crate::store::StoreError::from_sqlx)?;
                    }
                    let (sql, binds) = $crate::store::contact::change_contact(contact_id, change, $now);
                    let done = $crate::store::contact::bind_all!(sqlx::query(sql), binds)
                        .execute(&mut *$exec)
                        .await
                        .map_err($crate::store::StoreError::from_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Err($crate::store::StoreError::Refused(format!(
                            "contact {contact_id}: that change does not apply now"
                        )));
                    }
                    Ok(())
                }
            }
        }
    };
}
pub(super) use run_write;

impl Store {
    /// Records a new contact, waiting. `token_hash` is the SHA-256 of the
    /// patient's one-time token for the media session.
    pub async fn create_contact(
        &self,
        contact_id: &str,
        new: &NewContact,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Contact> {
        let write = RecordWrite::Create {
            contact_id: contact_id.to_owned(),
            new: new.clone(),
            token_hash: token_hash.to_owned(),
        };
        self.write_contact(&write, now).await?;
        self.contact(contact_id).await
    }

    /// Carries out one [`RecordWrite`] in a transaction of its own.
    pub async fn write_contact(&self, write: &RecordWrite, now: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            run_write!(tx, write, now).await?;
            tx.commit().await.map_err(StoreError::from_sqlx)
        })
    }

    pub async fn contact(&self, id: &str) -> Result<Contact> {
        let sql = format!("select {CONTACT_COLUMNS} from contact where contact_id = $1");
        let row: ContactRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        row.try_into()
    }

    /// The contact a patient's token opens.
    pub async fn contact_by_token(&self, token_hash: &str) -> Result<Contact> {
        let sql = format!("select {CONTACT_COLUMNS} from contact where patient_token_hash = $1");
        let row: ContactRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(token_hash).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        row.try_into()
    }

    /// Applies one change to a contact's record; a change its status does
    /// not allow is `StoreError::Refused`, naming the status.
    pub async fn update_contact(&self, id: &str, change: &ContactChange, now: DateTime<Utc>) -> Result<Contact> {
        let write = RecordWrite::Change { contact_id: id.to_owned(), change: change.clone(), staff: None };
        match self.write_contact(&write, now).await {
            Ok(()) => self.contact(id).await,
            Err(StoreError::Refused(_)) => {
                let contact = self.contact(id).await?;
                Err(StoreError::Refused(format!("contact {id} is {}, so that change does not apply", contact.status)))
            }
            Err(e) => Err(e),
        }
    }

    /// Notes that a staff member worked on a contact; idempotent.
    pub async fn add_contact_staff(&self, contact: &str, staff: StaffId, now: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => sqlx::query(ADD_CONTACT_STAFF)
        .bind(contact)
        .bind(staff.0)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Whether `staff` has worked on `contact`.
    pub async fn works_on_contact(&self, staff: StaffId, contact: &str) -> Result<bool> {
        let row: Option<(i64,)> = on_pool!(self, pool => sqlx::query_as(
            "select cast(1 as bigint) from contact_staff where contact_id = $1 and staff_id = $2",
        )
        .bind(contact)
        .bind(staff.0)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.is_some())
    }

    /// The contacts `staff` worked on that ended since `since` and still
    /// await their disposition (status `wrap_up`), oldest first: what a
    /// (re)connecting console shows in its wrap-up panel.
    pub async fn contacts_to_wrap_up(&self, staff: StaffId, since: DateTime<Utc>) -> Result<Vec<Contact>> {
        let sql = format!(
            "select {CONTACT_COLUMNS} from contact \
             where contact_id in (select contact_id from contact_staff where staff_id = $1) \
             and status = 'wrap_up' and disposition is null and ended_at >= $2 order by ended_at"
        );
        let rows: Vec<ContactRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(staff.0).bind(since).fetch_all(pool).await)
                .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The id of a chat's last message, if it has any.
    pub async fn last_chat_message_id(&self, contact: &str) -> Result<Option<i64>> {
        let row: (Option<i64>,) = on_pool!(self, pool => sqlx::query_as(
            "select max(chat_message_id) from chat_message where contact_id = $1",
        )
        .bind(contact)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.0)
    }

    /// Contacts that arrived in `[from, to)`, oldest first: the day's report.
    pub async fn contacts_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Contact>> {
        let sql = format!(
            "select {CONTACT_COLUMNS} from contact where created_at >= $1 and created_at < $2 order by created_at"
        );
        let rows: Vec<ContactRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(from).bind(to).fetch_all(pool).await)
                .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// A patient's past contacts, latest first.
    pub async fn contacts_of_patient(&self, patient: PatientId) -> Result<Vec<Contact>> {
        let sql =
            format!("select {CONTACT_COLUMNS} from contact where patient_id = $1 order by created_at desc limit 20");
        let rows: Vec<ContactRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(patient.0).fetch_all(pool).await)
            .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    pub async fn add_chat_message(
        &self,
        contact: &str,
        sender: &str,
        staff: Option<StaffId>,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<ChatMessage> {
        let row: (i64,) = on_pool!(self, pool => sqlx::query_as(
            "insert into chat_message (contact_id, sender, staff_id, body, created_at) values ($1, $2, $3, $4, $5) \
             returning chat_message_id",
        )
        .bind(contact)
        .bind(sender)
        .bind(staff.map(|s| s.0))
        .bind(body)
        .bind(now)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(ChatMessage {
            chat_message_id: row.0,
            contact_id: contact.to_owned(),
            sender: sender.to_owned(),
            staff_id: staff,
            body: body.to_owned(),
            created_at: now,
        })
    }

    /// A chat's messages after `after` (0 for all), in order.
    pub async fn chat_messages(&self, contact: &str, after: i64) -> Result<Vec<ChatMessage>> {
        let rows: Vec<(i64, String, String, Option<i64>, String, DateTime<Utc>)> =
            on_pool!(self, pool => sqlx::query_as(
            "select chat_message_id, contact_id, sender, staff_id, body, created_at from chat_message \
             where contact_id = $1 and chat_message_id > $2 order by chat_message_id",
        )
        .bind(contact)
        .bind(after)
        .fetch_all(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(chat_message_id, contact_id, sender, staff_id, body, created_at)| ChatMessage {
                chat_message_id,
                contact_id,
                sender,
                staff_id: staff_id.map(StaffId),
                body,
                created_at,
            })
            .collect())
    }
}
