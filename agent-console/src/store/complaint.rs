//! Complaints: their categories and service levels, registered complaints
//! with the ticket number read to the caller, their status, and their
//! follow-up tasks (the reminders).

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::text_enum::text_enum;
use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

text_enum!(
    /// Where a complaint stands.
    ComplaintStatus { Open = "open", InProgress = "in_progress", Resolved = "resolved", Closed = "closed" }
);

/// A kind of complaint and how soon it must be resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplaintCategory {
    pub code: String,
    pub name_en: String,
    pub name_hi: String,
    pub sla_hours: i64,
}

/// A registered complaint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Complaint {
    pub complaint_id: i64,
    /// Read to the caller; they quote it when they call again.
    pub ticket: String,
    pub category: String,
    pub facility_id: Option<i64>,
    pub patient_id: Option<PatientId>,
    pub contact_id: Option<String>,
    pub description: String,
    pub status: ComplaintStatus,
    pub created_by: StaffId,
    pub created_at: DateTime<Utc>,
    /// `created_at` plus the category's service level.
    pub due_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub tasks: Vec<ComplaintTask>,
}

/// A follow-up task on a complaint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComplaintTask {
    pub task_id: i64,
    pub complaint_id: i64,
    pub note: String,
    pub due_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    pub created_by: StaffId,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewComplaint {
    pub category: String,
    pub facility_id: Option<i64>,
    pub patient_id: Option<PatientId>,
    pub contact_id: Option<String>,
    pub description: String,
    pub created_by: StaffId,
}

#[derive(sqlx::FromRow)]
struct ComplaintRow {
    complaint_id: i64,
    ticket: String,
    category: String,
    facility_id: Option<i64>,
    patient_id: Option<i64>,
    contact_id: Option<String>,
    description: String,
    status: String,
    created_by: i64,
    created_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    task_id: i64,
    complaint_id: i64,
    note: String,
    due_at: DateTime<Utc>,
    done_at: Option<DateTime<Utc>>,
    created_by: i64,
    created_at: DateTime<Utc>,
}

impl From<TaskRow> for ComplaintTask {
    fn from(r: TaskRow) -> Self {
        ComplaintTask {
            task_id: r.task_id,
            complaint_id: r.complaint_id,
            note: r.note,
            due_at: r.due_at,
            done_at: r.done_at,
            created_by: StaffId(r.created_by),
            created_at: r.created_at,
        }
    }
}

/// A ticket number that is easy to read over the phone: no 0/O, 1/I.
fn new_ticket(now: DateTime<Utc>) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..6).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("CL-{}-{code}", crate::time::to_local(now).format("%y%m%d"))
}

impl Store {
    pub async fn upsert_complaint_category(&self, c: &ComplaintCategory) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into complaint_category (code, name_en, name_hi, sla_hours) values ($1, $2, $3, $4) \
             on conflict (code) do update set name_en = excluded.name_en, name_hi = excluded.name_hi, \
             sla_hours = excluded.sla_hours",
        )
        .bind(&c.code)
        .bind(&c.name_en)
        .bind(&c.name_hi)
        .bind(c.sla_hours)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)
    }

    pub async fn complaint_categories(&self) -> Result<Vec<ComplaintCategory>> {
        on_pool!(self, pool => sqlx::query_as::<_, (String, String, String, i64)>(
            "select code, name_en, name_hi, sla_hours from complaint_category order by code",
        )
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)
        .map(|rows| {
            rows.into_iter()
                .map(|(code, name_en, name_hi, sla_hours)| ComplaintCategory { code, name_en, name_hi, sla_hours })
                .collect()
        })
    }

    /// Registers a complaint with a new ticket number; it is due after the
    /// category's service level. A first follow-up task is due at half of it.
    pub async fn create_complaint(&self, c: &NewComplaint, now: DateTime<Utc>) -> Result<Complaint> {
        let category = self
            .complaint_categories()
            .await?
            .into_iter()
            .find(|k| k.code == c.category)
            .ok_or_else(|| StoreError::InvalidReference("category".into()))?;
        let due_at = now + Duration::hours(category.sla_hours);
        let first_task_due = now + Duration::minutes(category.sla_hours * 30);
        for _ in 0..5 {
            let ticket = new_ticket(now);
            let inserted: Result<i64> = on_pool!(self, pool => {
                let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
                let (id,): (i64,) = sqlx::query_as(
                    "insert into complaint (ticket, category, facility_id, patient_id, contact_id, description, \
                     status, created_by, created_at, due_at) values ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9) \
                     returning complaint_id",
                )
                .bind(&ticket)
                .bind(&c.category)
                .bind(c.facility_id)
                .bind(c.patient_id.map(|p| p.0))
                .bind(&c.contact_id)
                .bind(&c.description)
                .bind(c.created_by.0)
                .bind(now)
                .bind(due_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "insert into complaint_task (complaint_id, note, due_at, created_by, created_at) \
                     values ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(format!("Follow up with the facility on {}", category.name_en))
                .bind(first_task_due)
                .bind(c.created_by.0)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                Ok(id)
            });
            match inserted {
                Ok(id) => return self.complaint(id).await,
                // A ticket clash (1 in 10^9 a day) draws another number.
                Err(StoreError::Conflict(what)) if what.contains("ticket") => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Refused("could not draw a free ticket number".into()))
    }

    pub async fn complaint(&self, id: i64) -> Result<Complaint> {
        let row: ComplaintRow = on_pool!(self, pool => sqlx::query_as(
            "select complaint_id, ticket, category, facility_id, patient_id, contact_id, description, status, \
             created_by, created_at, due_at, resolved_at from complaint where complaint_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let tasks: Vec<TaskRow> = on_pool!(self, pool => sqlx::query_as(
            "select task_id, complaint_id, note, due_at, done_at, created_by, created_at from complaint_task \
             where complaint_id = $1 order by due_at, task_id",
        )
        .bind(id)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let status = row.status.parse().map_err(|e| StoreError::Corrupt(format!("complaint {}: {e}", row.ticket)))?;
        Ok(Complaint {
            complaint_id: row.complaint_id,
            ticket: row.ticket,
            category: row.category,
            facility_id: row.facility_id,
            patient_id: row.patient_id.map(PatientId),
            contact_id: row.contact_id,
            description: row.description,
            status,
            created_by: StaffId(row.created_by),
            created_at: row.created_at,
            due_at: row.due_at,
            resolved_at: row.resolved_at,
            tasks: tasks.into_iter().map(Into::into).collect(),
        })
    }

    pub async fn complaint_by_ticket(&self, ticket: &str) -> Result<Complaint> {
        let (id,): (i64,) =
            on_pool!(self, pool => sqlx::query_as("select complaint_id from complaint where ticket = $1")
            .bind(ticket.trim().to_uppercase())
            .fetch_one(pool)
            .await)
            .map_err(StoreError::from_sqlx)?;
        self.complaint(id).await
    }

    /// Moves a complaint on; resolving stamps the time and closes its open tasks.
    pub async fn set_complaint_status(
        &self,
        id: i64,
        status: ComplaintStatus,
        now: DateTime<Utc>,
    ) -> Result<Complaint> {
        let resolved = matches!(status, ComplaintStatus::Resolved | ComplaintStatus::Closed);
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let n = sqlx::query(
                "update complaint set status = $2, resolved_at = case when $3 then coalesce(resolved_at, $4) \
                 else null end where complaint_id = $1",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(resolved)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?
            .rows_affected();
            if resolved {
                sqlx::query("update complaint_task set done_at = $2 where complaint_id = $1 and done_at is null")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
            }
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok::<u64, StoreError>(n)
        })?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        self.complaint(id).await
    }

    pub async fn add_complaint_task(
        &self,
        complaint: i64,
        note: &str,
        due_at: DateTime<Utc>,
        by: StaffId,
        now: DateTime<Utc>,
    ) -> Result<ComplaintTask> {
        let row: TaskRow = on_pool!(self, pool => sqlx::query_as(
            "insert into complaint_task (complaint_id, note, due_at, created_by, created_at) values ($1, $2, $3, $4, $5) \
             returning task_id, complaint_id, note, due_at, done_at, created_by, created_at",
        )
        .bind(complaint)
        .bind(note)
        .bind(due_at)
        .bind(by.0)
        .bind(now)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    pub async fn complete_complaint_task(&self, task: i64, now: DateTime<Utc>) -> Result<()> {
        let n = on_pool!(self, pool => sqlx::query(
            "update complaint_task set done_at = coalesce(done_at, $2) where task_id = $1",
        )
        .bind(task)
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Open follow-up tasks due at or before `now`: the reminders.
    pub async fn due_complaint_tasks(&self, now: DateTime<Utc>) -> Result<Vec<(String, ComplaintTask)>> {
        let rows: Vec<(String, i64, i64, String, DateTime<Utc>, Option<DateTime<Utc>>, i64, DateTime<Utc>)> =
            on_pool!(self, pool => sqlx::query_as(
                "select c.ticket, t.task_id, t.complaint_id, t.note, t.due_at, t.done_at, t.created_by, t.created_at \
                 from complaint_task t join complaint c on c.complaint_id = t.complaint_id \
                 where t.done_at is null and t.due_at <= $1 order by t.due_at limit 200",
            )
            .bind(now)
            .fetch_all(pool)
            .await)
            .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(ticket, task_id, complaint_id, note, due_at, done_at, created_by, created_at)| {
                (
                    ticket,
                    ComplaintTask {
                        task_id,
                        complaint_id,
                        note,
                        due_at,
                        done_at,
                        created_by: StaffId(created_by),
                        created_at,
                    },
                )
            })
            .collect())
    }
}
