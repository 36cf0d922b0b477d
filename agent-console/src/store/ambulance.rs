//! Ambulance requests raised from contacts, and their delivery to the
//! dispatch webhook (attempts, the last error, when it was taken).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

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
