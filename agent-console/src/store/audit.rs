//! The append-only audit log. The tables' triggers refuse updates and deletes.

use chrono::{DateTime, Utc};

use super::{AuditEntry, AuditId, NewAudit, PatientId, Result, StaffId, Store, StoreError, on_pool};

#[derive(sqlx::FromRow)]
struct AuditRow {
    audit_log_id: i64,
    created_at: DateTime<Utc>,
    staff_id: Option<i64>,
    action: String,
    patient_id: Option<i64>,
    contact_id: Option<String>,
    detail: String,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            audit_id: AuditId(r.audit_log_id),
            created_at: r.created_at,
            staff_id: r.staff_id.map(StaffId),
            action: r.action,
            patient_id: r.patient_id.map(PatientId),
            contact_id: r.contact_id,
            detail: r.detail,
        }
    }
}

impl Store {
    pub async fn append_audit(&self, entry: &NewAudit) -> Result<AuditEntry> {
        let row: AuditRow = on_pool!(self, pool => sqlx::query_as(
            "insert into audit_log (created_at, staff_id, action, patient_id, contact_id, detail) \
             values ($1, $2, $3, $4, $5, $6) \
             returning audit_log_id, created_at, staff_id, action, patient_id, contact_id, detail",
        )
        .bind(Utc::now())
        .bind(entry.staff_id.map(|s| s.0))
        .bind(&entry.action)
        .bind(entry.patient_id.map(|p| p.0))
        .bind(&entry.contact_id)
        .bind(&entry.detail)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    /// The audit trail of one patient's record, oldest first.
    pub async fn audit_for_patient(&self, patient: PatientId) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = on_pool!(self, pool => sqlx::query_as(
            "select audit_log_id, created_at, staff_id, action, patient_id, contact_id, detail \
             from audit_log where patient_id = $1 order by audit_log_id",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The newest `limit` entries, newest first.
    pub async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = on_pool!(self, pool => sqlx::query_as(
            "select audit_log_id, created_at, staff_id, action, patient_id, contact_id, detail \
             from audit_log order by audit_log_id desc limit $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The newest `limit` entries of one action (e.g. break-glass), newest first.
    pub async fn audit_by_action(&self, action: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = on_pool!(self, pool => sqlx::query_as(
            "select audit_log_id, created_at, staff_id, action, patient_id, contact_id, detail \
             from audit_log where action = $1 order by audit_log_id desc limit $2",
        )
        .bind(action)
        .bind(limit)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
