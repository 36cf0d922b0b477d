//! Contacts (calls and chats) as records: arrival, answer, escalation,
//! end and wrap-up, who worked on them, and chat messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

crate::store::desk::text_enum!(
    /// How the patient reached the helpline.
    Channel { Phone = "phone", Webrtc = "webrtc", Chat = "chat" }
);
crate::store::desk::text_enum!(
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
    pub disposition: Option<String>,
    pub wrap_up_note: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ContactRow {
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

impl From<ContactRow> for Contact {
    fn from(r: ContactRow) -> Self {
        Contact {
            contact_id: r.contact_id,
            // The columns' check constraints admit only known values.
            channel: r.channel.parse().unwrap_or(Channel::Phone),
            language: r.language,
            emergency: r.emergency,
            tier: r.tier,
            specialty: r.specialty,
            caller_phone: r.caller_phone,
            ehealth_card: r.ehealth_card,
            abha_number: r.abha_number,
            patient_id: r.patient_id.map(PatientId),
            location: r.location,
            status: r.status.parse().unwrap_or(ContactStatus::Waiting),
            created_at: r.created_at,
            answered_at: r.answered_at,
            answered_by: r.answered_by.map(StaffId),
            escalated_at: r.escalated_at,
            doctor_id: r.doctor_id.map(StaffId),
            ended_at: r.ended_at,
            disposition: r.disposition,
            wrap_up_note: r.wrap_up_note,
        }
    }
}

const CONTACT_COLUMNS: &str = "contact_id, channel, language, emergency, tier, specialty, caller_phone, ehealth_card, \
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

/// A change to a contact's record; each is one `update`.
#[derive(Clone, Debug, PartialEq)]
pub enum ContactChange {
    Answered { by: StaffId },
    Escalated { specialty: String },
    DoctorJoined { doctor: StaffId },
    CallbackRequested,
    Ended,
    Abandoned,
    WrappedUp { disposition: String, note: Option<String> },
    Identified { patient: PatientId },
}

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
        let sql = format!(
            "insert into contact (contact_id, channel, language, emergency, caller_phone, ehealth_card, abha_number, \
             patient_id, location, status, patient_token_hash, created_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'waiting', $10, $11) returning {CONTACT_COLUMNS}"
        );
        let row: ContactRow = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(contact_id)
            .bind(new.channel.unwrap_or(Channel::Webrtc).as_str())
            .bind(&new.language)
            .bind(new.emergency)
            .bind(&new.caller_phone)
            .bind(&new.ehealth_card)
            .bind(&new.abha_number)
            .bind(new.patient_id.map(|p| p.0))
            .bind(&new.location)
            .bind(token_hash)
            .bind(now)
            .fetch_one(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    pub async fn contact(&self, id: &str) -> Result<Contact> {
        let sql = format!("select {CONTACT_COLUMNS} from contact where contact_id = $1");
        let row: ContactRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    /// The contact a patient's token opens.
    pub async fn contact_by_token(&self, token_hash: &str) -> Result<Contact> {
        let sql = format!("select {CONTACT_COLUMNS} from contact where patient_token_hash = $1");
        let row: ContactRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(token_hash).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    /// Applies one change to a contact's record.
    pub async fn update_contact(&self, id: &str, change: &ContactChange, now: DateTime<Utc>) -> Result<Contact> {
        macro_rules! exec {
            ($sql:expr $(, $bind:expr)*) => {
                on_pool!(self, pool => sqlx::query($sql).bind(id).bind(now)$(.bind($bind))*.execute(pool).await.map(|r| r.rows_affected()))
                    .map_err(StoreError::from_sqlx)?
            };
        }
        let changed = match change {
            ContactChange::Answered { by } => exec!(
                "update contact set status = 'connected', answered_at = coalesce(answered_at, $2), \
                 answered_by = coalesce(answered_by, $3) where contact_id = $1",
                by.0
            ),
            ContactChange::Escalated { specialty } => {
                exec!("update contact set tier = 2, specialty = $3, escalated_at = $2 where contact_id = $1", specialty)
            }
            ContactChange::DoctorJoined { doctor } => exec!(
                "update contact set doctor_id = $3, status = 'connected', answered_at = coalesce(answered_at, $2) \
                 where contact_id = $1",
                doctor.0
            ),
            ContactChange::CallbackRequested => {
                exec!("update contact set status = 'callback' where contact_id = $1 and status = 'waiting' and $2 = $2")
            }
            ContactChange::Ended => exec!(
                "update contact set status = 'wrap_up', ended_at = coalesce(ended_at, $2) where contact_id = $1 \
                 and status in ('waiting', 'connected', 'callback')"
            ),
            ContactChange::Abandoned => exec!(
                "update contact set status = 'abandoned', ended_at = coalesce(ended_at, $2) where contact_id = $1 \
                 and status in ('waiting', 'callback')"
            ),
            ContactChange::WrappedUp { disposition, note } => exec!(
                "update contact set status = case when status = 'wrap_up' then 'ended' else status end, \
                 disposition = $3, wrap_up_note = $4, ended_at = coalesce(ended_at, $2) where contact_id = $1",
                disposition,
                note
            ),
            ContactChange::Identified { patient } => {
                exec!("update contact set patient_id = $3 where contact_id = $1 and $2 = $2", patient.0)
            }
        };
        let contact = self.contact(id).await?;
        if changed == 0 {
            return Err(StoreError::Refused(format!(
                "contact {id} is {}, so that change does not apply",
                contact.status
            )));
        }
        Ok(contact)
    }

    /// Notes that a staff member worked on a contact; idempotent.
    pub async fn add_contact_staff(&self, contact: &str, staff: StaffId, now: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into contact_staff (contact_id, staff_id, joined_at) values ($1, $2, $3) on conflict do nothing",
        )
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

    /// Contacts that arrived in `[from, to)`, oldest first: the day's report.
    pub async fn contacts_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Contact>> {
        let sql = format!(
            "select {CONTACT_COLUMNS} from contact where created_at >= $1 and created_at < $2 order by created_at"
        );
        let rows: Vec<ContactRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(from).bind(to).fetch_all(pool).await)
                .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// A patient's past contacts, latest first.
    pub async fn contacts_of_patient(&self, patient: PatientId) -> Result<Vec<Contact>> {
        let sql =
            format!("select {CONTACT_COLUMNS} from contact where patient_id = $1 order by created_at desc limit 20");
        let rows: Vec<ContactRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(patient.0).fetch_all(pool).await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
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

/// One routing event as logged (the history reports and restarts are built from).
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingEventRow {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub contact_id: Option<String>,
    pub agent_id: Option<i64>,
    /// The event as JSON.
    pub body: String,
}

impl Store {
    /// Appends a routing event to the log.
    pub async fn append_routing_event(&self, node: &str, e: &RoutingEventRow) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into routing_event (node, at, kind, contact_id, agent_id, body) values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(node)
        .bind(e.at)
        .bind(&e.kind)
        .bind(&e.contact_id)
        .bind(e.agent_id)
        .bind(&e.body)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// The routing events at or after `since`, in the order they were logged.
    pub async fn routing_events_since(&self, since: DateTime<Utc>) -> Result<Vec<RoutingEventRow>> {
        let rows: Vec<(DateTime<Utc>, String, Option<String>, Option<i64>, String)> =
            on_pool!(self, pool => sqlx::query_as(
            "select at, kind, contact_id, agent_id, body from routing_event where at >= $1 order by routing_event_id",
        )
        .bind(since)
        .fetch_all(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(at, kind, contact_id, agent_id, body)| RoutingEventRow { at, kind, contact_id, agent_id, body })
            .collect())
    }
}

/// A stored prescription (its body is the issued `telemed::consult::Prescription` as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoredPrescription {
    pub prescription_id: String,
    pub contact_id: String,
    pub patient_id: PatientId,
    pub doctor_id: StaffId,
    pub mode: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    pub issued_at: DateTime<Utc>,
}

impl Store {
    pub async fn create_prescription(&self, p: &StoredPrescription) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into prescription (prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.prescription_id)
        .bind(&p.contact_id)
        .bind(p.patient_id.0)
        .bind(p.doctor_id.0)
        .bind(&p.mode)
        .bind(&p.kind)
        .bind(p.body.to_string())
        .bind(p.issued_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// A patient's prescriptions, latest first.
    pub async fn prescriptions_of(&self, patient: PatientId) -> Result<Vec<StoredPrescription>> {
        let rows: Vec<(String, String, i64, i64, String, String, String, DateTime<Utc>)> =
            on_pool!(self, pool => sqlx::query_as(
            "select prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at from prescription \
             where patient_id = $1 order by issued_at desc limit 50",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at)| {
                StoredPrescription {
                    prescription_id,
                    contact_id,
                    patient_id: PatientId(patient_id),
                    doctor_id: StaffId(doctor_id),
                    mode,
                    kind,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                    issued_at,
                }
            })
            .collect())
    }
}

/// The doctor's record of a consult: consent and notes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsultNote {
    pub contact_id: String,
    pub doctor_id: StaffId,
    /// `{"kind": "implied"}`, `{"kind": "explicit", "by": ...}` or
    /// `{"kind": "guardian", "name": ..., "relation": ..., "id_document": ...}`.
    #[schema(value_type = Object)]
    pub consent: serde_json::Value,
    /// Explicit consent to record and transcribe the consult.
    pub recording_consent: bool,
    pub chief_complaint: String,
    pub history: String,
    pub findings: String,
    pub diagnosis: String,
    pub advice: String,
    pub updated_at: DateTime<Utc>,
}

type NoteRow = (String, i64, String, bool, String, String, String, String, String, DateTime<Utc>);

impl Store {
    /// Saves (replaces) the consult's note.
    pub async fn save_consult_note(&self, n: &ConsultNote) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into consult_note (contact_id, doctor_id, consent, recording_consent, chief_complaint, history, \
             findings, diagnosis, advice, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             on conflict (contact_id) do update set doctor_id = excluded.doctor_id, consent = excluded.consent, \
             recording_consent = excluded.recording_consent, chief_complaint = excluded.chief_complaint, \
             history = excluded.history, findings = excluded.findings, diagnosis = excluded.diagnosis, \
             advice = excluded.advice, updated_at = excluded.updated_at",
        )
        .bind(&n.contact_id)
        .bind(n.doctor_id.0)
        .bind(n.consent.to_string())
        .bind(n.recording_consent)
        .bind(&n.chief_complaint)
        .bind(&n.history)
        .bind(&n.findings)
        .bind(&n.diagnosis)
        .bind(&n.advice)
        .bind(n.updated_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    pub async fn consult_note(&self, contact: &str) -> Result<Option<ConsultNote>> {
        let row: Option<NoteRow> = on_pool!(self, pool => sqlx::query_as(
            "select contact_id, doctor_id, consent, recording_consent, chief_complaint, history, findings, diagnosis, \
             advice, updated_at from consult_note where contact_id = $1",
        )
        .bind(contact)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.map(
            |(
                contact_id,
                doctor,
                consent,
                recording_consent,
                chief_complaint,
                history,
                findings,
                diagnosis,
                advice,
                updated_at,
            )| {
                ConsultNote {
                    contact_id,
                    doctor_id: StaffId(doctor),
                    consent: serde_json::from_str(&consent).unwrap_or(serde_json::Value::Null),
                    recording_consent,
                    chief_complaint,
                    history,
                    findings,
                    diagnosis,
                    advice,
                    updated_at,
                }
            },
        ))
    }
}

/// An ambulance request raised from a contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AmbulanceRequest {
    pub ambulance_request_id: String,
    pub contact_id: String,
    pub patient_id: Option<PatientId>,
    pub requested_by: StaffId,
    pub location: String,
    /// `critical`, `urgent` or `routine`.
    pub urgency: String,
    pub note: String,
    pub created_at: DateTime<Utc>,
    /// When the dispatch webhook accepted it; `None` while not delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl Store {
    pub async fn create_ambulance_request(&self, r: &AmbulanceRequest) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into ambulance_request (ambulance_request_id, contact_id, patient_id, requested_by, location, urgency, \
             note, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.ambulance_request_id)
        .bind(&r.contact_id)
        .bind(r.patient_id.map(|p| p.0))
        .bind(r.requested_by.0)
        .bind(&r.location)
        .bind(&r.urgency)
        .bind(&r.note)
        .bind(r.created_at)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Records one delivery attempt: delivered at `at`, or failed with `error`.
    pub async fn record_ambulance_delivery(
        &self,
        id: &str,
        outcome: std::result::Result<DateTime<Utc>, String>,
    ) -> Result<()> {
        let (delivered, error) = match outcome {
            Ok(at) => (Some(at), None),
            Err(e) => (None, Some(e)),
        };
        on_pool!(self, pool => sqlx::query(
            "update ambulance_request set attempts = attempts + 1, delivered_at = coalesce(delivered_at, $2), \
             last_error = coalesce($3, last_error) where ambulance_request_id = $1",
        )
        .bind(id)
        .bind(delivered)
        .bind(error)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    pub async fn ambulance_request(&self, id: &str) -> Result<AmbulanceRequest> {
        type Row = (
            String,
            String,
            Option<i64>,
            i64,
            String,
            String,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            i64,
            Option<String>,
        );
        let r: Row = on_pool!(self, pool => sqlx::query_as(
            "select ambulance_request_id, contact_id, patient_id, requested_by, location, urgency, note, created_at, \
             delivered_at, attempts, last_error from ambulance_request where ambulance_request_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(AmbulanceRequest {
            ambulance_request_id: r.0,
            contact_id: r.1,
            patient_id: r.2.map(PatientId),
            requested_by: StaffId(r.3),
            location: r.4,
            urgency: r.5,
            note: r.6,
            created_at: r.7,
            delivered_at: r.8,
            attempts: r.9,
            last_error: r.10,
        })
    }
}

impl Store {
    /// Ambulance requests the dispatch webhook has not taken yet, oldest first.
    pub async fn undelivered_ambulance_requests(&self, max_attempts: i64) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "select ambulance_request_id from ambulance_request where delivered_at is null and attempts < $1 \
             order by created_at limit 50",
        )
        .bind(max_attempts)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

impl Store {
    /// The installation's secret `name`, made with `make` on first use. Two
    /// nodes racing to make it agree on the first one stored.
    pub async fn secret(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        on_pool!(self, pool => sqlx::query(
            "insert into secret (name, value, created_at) values ($1, $2, $3) on conflict (name) do nothing",
        )
        .bind(name)
        .bind(make())
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)?;
        let (value,): (String,) = on_pool!(self, pool => sqlx::query_as("select value from secret where name = $1")
            .bind(name)
            .fetch_one(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(value)
    }

    pub async fn prescription(&self, id: &str) -> Result<StoredPrescription> {
        let row: (String, String, i64, i64, String, String, String, DateTime<Utc>) =
            on_pool!(self, pool => sqlx::query_as(
            "select prescription_id, contact_id, patient_id, doctor_id, mode, kind, body, issued_at from prescription \
             where prescription_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(StoredPrescription {
            prescription_id: row.0,
            contact_id: row.1,
            patient_id: PatientId(row.2),
            doctor_id: StaffId(row.3),
            mode: row.4,
            kind: row.5,
            body: serde_json::from_str(&row.6).unwrap_or(serde_json::Value::Null),
            issued_at: row.7,
        })
    }
}
