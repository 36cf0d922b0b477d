//! The mail outbox: messages queued in the same store as the records they
//! tell about, sent by a background task, retried with backoff.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::claim::{Claimable, Claimant, MAIL_LEASE, claim};
use super::{PatientId, Result, Store, StoreError, on_pool};

/// A message is claimable while its next attempt is due.
const MAIL: Claimable = Claimable {
    table: "mail_outbox",
    key: "mail_id",
    due: "next_attempt_at is not null and next_attempt_at <= $3",
    also_set: "",
};

/// A message to queue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewMail {
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub subject: String,
    /// The whole formatted message.
    pub raw: String,
    pub purpose: String,
    pub patient_id: Option<PatientId>,
}

/// A queued message and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Mail {
    pub mail_id: i64,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub subject: String,
    #[serde(skip)]
    pub raw: String,
    pub purpose: String,
    pub patient_id: Option<PatientId>,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct MailRow {
    mail_id: i64,
    envelope_from: String,
    envelope_to: String,
    subject: String,
    raw: String,
    purpose: String,
    patient_id: Option<i64>,
    attempts: i64,
    next_attempt_at: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<MailRow> for Mail {
    fn from(r: MailRow) -> Self {
        Mail {
            mail_id: r.mail_id,
            envelope_from: r.envelope_from,
            envelope_to: r.envelope_to.split(',').map(str::to_owned).filter(|s| !s.is_empty()).collect(),
            subject: r.subject,
            raw: r.raw,
            purpose: r.purpose,
            patient_id: r.patient_id.map(PatientId),
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            sent_at: r.sent_at,
            failed_at: r.failed_at,
            last_error: r.last_error,
            created_at: r.created_at,
        }
    }
}

const MAIL_COLUMNS: &str = "mail_id, envelope_from, envelope_to, subject, raw, purpose, patient_id, attempts, \
                            next_attempt_at, sent_at, failed_at, last_error, created_at";

/// What happened to one attempt at sending.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Sent,
    /// Failed; try again at this time.
    Retry {
        error: String,
        at: DateTime<Utc>,
    },
    /// Failed for good (a permanent SMTP error, or retries exhausted).
    GiveUp {
        error: String,
    },
}

impl Store {
    /// Queues a message to be sent as soon as the sender runs.
    pub async fn enqueue_mail(&self, mail: &NewMail, now: DateTime<Utc>) -> Result<Mail> {
        if mail.envelope_to.is_empty() {
            return Err(StoreError::Refused("a message needs a recipient".into()));
        }
        let sql = format!(
            "insert into mail_outbox (envelope_from, envelope_to, subject, raw, purpose, patient_id, \
             next_attempt_at, created_at) values ($1, $2, $3, $4, $5, $6, $7, $7) returning {MAIL_COLUMNS}"
        );
        let row: MailRow = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(&mail.envelope_from)
            .bind(mail.envelope_to.join(","))
            .bind(&mail.subject)
            .bind(&mail.raw)
            .bind(&mail.purpose)
            .bind(mail.patient_id.map(|p| p.0))
            .bind(now)
            .fetch_one(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    /// Claims for `claimant` up to `limit` messages whose next attempt is
    /// due and that no other node holds, oldest first, for
    /// [`MAIL_LEASE`](super::claim::MAIL_LEASE): the sender claims only what it
    /// sends at once (one lease covers one send). Recording the attempt clears the claim.
    pub async fn claim_due_mail(&self, claimant: &Claimant, now: DateTime<Utc>, limit: i64) -> Result<Vec<Mail>> {
        let candidates: Vec<(i64,)> = on_pool!(self, pool => sqlx::query_as(
            "select mail_id from mail_outbox where next_attempt_at is not null and next_attempt_at <= $1 \
             and (claimed_until is null or claimed_until < $1) order by next_attempt_at, mail_id limit $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let mut claimed = Vec::new();
        for (id,) in candidates {
            let row: Option<MailRow> = claim(self, &MAIL, id, MAIL_COLUMNS, claimant, now, MAIL_LEASE).await?;
            claimed.extend(row.map(Mail::from));
        }
        Ok(claimed)
    }

    /// When the next queued message falls due, if any: a message another
    /// node holds falls due (to this node) when its claim runs out.
    pub async fn next_mail_due(&self) -> Result<Option<DateTime<Utc>>> {
        let row: (Option<DateTime<Utc>>,) = on_pool!(self, pool => sqlx::query_as(
            "select min(case when claimed_until > next_attempt_at then claimed_until else next_attempt_at end) \
             from mail_outbox where next_attempt_at is not null",
        )
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.0)
    }

    /// Records the outcome of an attempt, and ends its claim.
    pub async fn record_mail_attempt(&self, id: i64, outcome: &Attempt, now: DateTime<Utc>) -> Result<Mail> {
        let (next, sent, failed, error) = match outcome {
            Attempt::Sent => (None, Some(now), None, None),
            Attempt::Retry { error, at } => (Some(*at), None, None, Some(error.as_str())),
            Attempt::GiveUp { error } => (None, None, Some(now), Some(error.as_str())),
        };
        let sql = format!(
            "update mail_outbox set attempts = attempts + 1, next_attempt_at = $2, sent_at = $3, failed_at = $4, \
             last_error = coalesce($5, last_error), claimed_by = null, claimed_until = null where mail_id = $1 returning {MAIL_COLUMNS}"
        );
        let row: MailRow = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(id)
            .bind(next)
            .bind(sent)
            .bind(failed)
            .bind(error)
            .fetch_one(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    pub async fn mail(&self, id: i64) -> Result<Mail> {
        let sql = format!("select {MAIL_COLUMNS} from mail_outbox where mail_id = $1");
        let row: MailRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }
}
