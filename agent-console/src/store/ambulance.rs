//! Ambulance requests raised from contacts, and their delivery to the
//! dispatch webhook: the life-critical outbox. A request is retried until the
//! webhook takes it, never given up; each attempt is kept with its error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::claim::{AMBULANCE_LEASE, Claimable, Claimant, claim};
use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

/// A request is claimable while undelivered and due.
const AMBULANCE: Claimable = Claimable {
    table: "ambulance_request",
    key: "ambulance_request_id",
    due: "delivered_at is null and (next_attempt_at is null or next_attempt_at <= $3)",
    also_set: "",
};

crate::store::text_enum::text_enum!(
    /// How soon the ambulance is needed, as the operator judges it.
    Urgency { Critical = "critical", Urgent = "urgent", Routine = "routine" }
);

/// An ambulance request raised from a contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AmbulanceRequest {
    pub ambulance_request_id: String,
    pub contact_id: String,
    pub patient_id: Option<PatientId>,
    pub requested_by: StaffId,
    pub location: String,
    pub urgency: Urgency,
    pub note: String,
    pub created_at: DateTime<Utc>,
    /// When the dispatch webhook accepted it; `None` while not delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When delivery is tried again; `None` once delivered (and before the first try).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One attempt to deliver a request to the dispatch webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AmbulanceAttempt {
    pub attempted_at: DateTime<Utc>,
    /// Why the webhook did not take it; `None` for the attempt that delivered it.
    pub error: Option<String>,
}

/// How an attempt to deliver a request ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    Delivered,
    /// Not taken; tried again at `retry_at`. There is no giving up.
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

type RequestRow = (
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
    Option<DateTime<Utc>>,
);

const REQUEST_COLUMNS: &str = "ambulance_request_id, contact_id, patient_id, requested_by, location, urgency, note, \
                               created_at, delivered_at, attempts, last_error, next_attempt_at";

/// A stored urgency that is not a known value is `StoreError::Corrupt`.
fn request_of(r: RequestRow) -> Result<AmbulanceRequest> {
    Ok(AmbulanceRequest {
        urgency: r.5.parse().map_err(|e| StoreError::Corrupt(format!("ambulance request {}: {e}", r.0)))?,
        ambulance_request_id: r.0,
        contact_id: r.1,
        patient_id: r.2.map(PatientId),
        requested_by: StaffId(r.3),
        location: r.4,
        note: r.6,
        created_at: r.7,
        delivered_at: r.8,
        attempts: r.9,
        last_error: r.10,
        next_attempt_at: r.11,
    })
}

impl Store {
    /// Stores a request already claimed by `claimant` (for
    /// [`AMBULANCE_LEASE`] from its `created_at`): the node whose handler
    /// made it sends it at once, and no other node's retrier sends it
    /// meanwhile. Recording that first attempt clears the claim.
    pub async fn create_ambulance_request(&self, r: &AmbulanceRequest, claimant: &Claimant) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into ambulance_request (ambulance_request_id, contact_id, patient_id, requested_by, location, urgency, \
             note, created_at, next_attempt_at, claimed_by, claimed_until) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&r.ambulance_request_id)
        .bind(&r.contact_id)
        .bind(r.patient_id.map(|p| p.0))
        .bind(r.requested_by.0)
        .bind(&r.location)
        .bind(r.urgency.as_str())
        .bind(&r.note)
        .bind(r.created_at)
        .bind(r.next_attempt_at)
        .bind(claimant.as_str())
        .bind(r.created_at + AMBULANCE_LEASE)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Records one delivery attempt at `now`, in the request's attempts and
    /// on the request (its count, last error and next try), and ends its
    /// claim; returns the request.
    pub async fn record_ambulance_delivery(
        &self,
        id: &str,
        outcome: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<AmbulanceRequest> {
        let (delivered, error, retry_at) = match outcome {
            Delivery::Delivered => (Some(now), None, None),
            Delivery::Failed { error, retry_at } => (None, Some(error.as_str()), Some(*retry_at)),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let updated = sqlx::query(
                "update ambulance_request set attempts = attempts + 1, delivered_at = coalesce(delivered_at, $2), \
                 last_error = coalesce($3, last_error), next_attempt_at = $4, claimed_by = null, claimed_until = null \
                 where ambulance_request_id = $1",
            )
            .bind(id)
            .bind(delivered)
            .bind(error)
            .bind(retry_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "insert into ambulance_attempt (ambulance_request_id, attempted_at, error) values ($1, $2, $3)",
            )
            .bind(id)
            .bind(now)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
            tx.commit().await.map_err(StoreError::from_sqlx)
        })?;
        self.ambulance_request(id).await
    }

    pub async fn ambulance_request(&self, id: &str) -> Result<AmbulanceRequest> {
        let sql = format!("select {REQUEST_COLUMNS} from ambulance_request where ambulance_request_id = $1");
        let r: RequestRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        request_of(r)
    }

    /// A request's delivery attempts, in order.
    pub async fn ambulance_attempts(&self, id: &str) -> Result<Vec<AmbulanceAttempt>> {
        let rows: Vec<(DateTime<Utc>, Option<String>)> = on_pool!(self, pool => sqlx::query_as(
            "select attempted_at, error from ambulance_attempt where ambulance_request_id = $1 \
             order by ambulance_attempt_id",
        )
        .bind(id)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(|(attempted_at, error)| AmbulanceAttempt { attempted_at, error }).collect())
    }

    /// Claims for `claimant` (for [`AMBULANCE_LEASE`]) the oldest
    /// undelivered request due for another try at `now` that no other node
    /// holds; `None` when there is none. Recording the attempt clears the claim.
    pub async fn claim_due_ambulance_request(
        &self,
        claimant: &Claimant,
        now: DateTime<Utc>,
    ) -> Result<Option<AmbulanceRequest>> {
        let candidates: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "select ambulance_request_id from ambulance_request where delivered_at is null \
             and (next_attempt_at is null or next_attempt_at <= $1) \
             and (claimed_until is null or claimed_until < $1) order by created_at limit 10",
        )
        .bind(now)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        // Another node may claim a candidate first: the next one is tried.
        for (id,) in candidates {
            let sql = REQUEST_COLUMNS;
            if let Some(row) = claim::<_, RequestRow>(self, &AMBULANCE, id, sql, claimant, now, AMBULANCE_LEASE).await?
            {
                return request_of(row).map(Some);
            }
        }
        Ok(None)
    }

    /// Requests made at or before `before` that the dispatch webhook has
    /// still not taken, oldest first: the supervisors' alarm.
    pub async fn undelivered_ambulance_requests(&self, before: DateTime<Utc>) -> Result<Vec<AmbulanceRequest>> {
        let sql = format!(
            "select {REQUEST_COLUMNS} from ambulance_request where delivered_at is null and created_at <= $1 \
             order by created_at limit 100"
        );
        let rows: Vec<RequestRow> = on_pool!(self, pool => sqlx::query_as(&sql).bind(before).fetch_all(pool).await)
            .map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(request_of).collect()
    }
}
