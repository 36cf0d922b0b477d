//! Government health schemes, and which patients (and so families) are
//! mapped to them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, Store, StoreError, on_pool};

/// A government health scheme a family can be mapped to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Scheme {
    pub code: String,
    pub name: String,
    pub name_hi: String,
    pub description: String,
}

impl Store {
    pub async fn upsert_scheme(&self, s: &Scheme) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into scheme (code, name, name_hi, description) values ($1, $2, $3, $4) on conflict (code) \
             do update set name = excluded.name, name_hi = excluded.name_hi, description = excluded.description",
        )
        .bind(&s.code)
        .bind(&s.name)
        .bind(&s.name_hi)
        .bind(&s.description)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    /// Maps a patient to a scheme; doing it twice is harmless.
    pub async fn map_scheme(&self, patient: PatientId, scheme: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into patient_scheme (patient_id, scheme_code) values ($1, $2) on conflict do nothing",
        )
        .bind(patient.0)
        .bind(scheme)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::refers_to("scheme_code"))
    }

    /// The schemes a patient or anyone of their family is mapped to.
    pub async fn schemes_of_family(&self, patient: PatientId) -> Result<Vec<Scheme>> {
        on_pool!(self, pool => sqlx::query_as::<_, (String, String, String, String)>(
            "select distinct s.code, s.name, s.name_hi, s.description from scheme s \
             join patient_scheme ps on ps.scheme_code = s.code \
             where ps.patient_id = $1 or ps.patient_id in (select relative_id from family_link where patient_id = $1) \
             order by s.code",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)
        .map(|rows| {
            rows.into_iter()
                .map(|(code, name, name_hi, description)| Scheme { code, name, name_hi, description })
                .collect()
        })
    }
}
