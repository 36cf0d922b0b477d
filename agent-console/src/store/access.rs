//! The facts the patient-data access rule (`crate::access`) looks at: a
//! staff member's contacts that touch a patient, their open complaint tasks
//! and upcoming follow-ups for the patient, their last break-glass; and the
//! lookups that open a patient to a contact before it is identified.

use chrono::{DateTime, Utc};

use super::{ContactStatus, PatientId, Result, StaffId, Store, StoreError, on_pool};
use crate::access::{ContactFact, Facts, Link};

/// The audit action of breaking the glass; its entries are the record of it.
pub const BREAK_GLASS_ACTION: &str = "patient.break_glass";

#[derive(sqlx::FromRow)]
struct LinkRow {
    contact_id: String,
    status: String,
    ended_at: Option<DateTime<Utc>>,
    link: String,
}

impl Store {
    /// What `crate::access::decide` needs to know about `staff` and `patient`
    /// (`supervisor` is the staff member's role, known to the caller).
    /// Contacts that ended long ago are still listed; the rule judges them.
    pub async fn patient_access_facts(
        &self,
        staff: StaffId,
        supervisor: bool,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<Facts> {
        let rows: Vec<LinkRow> = on_pool!(self, pool => sqlx::query_as(
            "select c.contact_id, c.status, c.ended_at, 'patient' as link \
               from contact c join contact_staff s on s.contact_id = c.contact_id \
              where s.staff_id = $1 and c.patient_id = $2 \
             union all \
             select c.contact_id, c.status, c.ended_at, 'relative' as link \
               from contact c join contact_staff s on s.contact_id = c.contact_id \
               join family_link f on f.relative_id = c.patient_id \
              where s.staff_id = $1 and f.patient_id = $2 \
             union all \
             select c.contact_id, c.status, c.ended_at, 'lookup' as link \
               from contact c join contact_lookup l on l.contact_id = c.contact_id \
              where l.staff_id = $1 and l.patient_id = $2",
        )
        .bind(staff.0)
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let mut contacts = Vec::with_capacity(rows.len());
        for r in rows {
            let status = r
                .status
                .parse::<ContactStatus>()
                .map_err(|_| StoreError::Corrupt(format!("contact {} has status {:?}", r.contact_id, r.status)))?;
            let link = match r.link.as_str() {
                "patient" => Link::Patient,
                "relative" => Link::Relative,
                _ => Link::LookedUp,
            };
            contacts.push(ContactFact { contact_id: r.contact_id, status, ended_at: r.ended_at, link });
        }
        let tasks: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "select distinct c.ticket from complaint_task t join complaint c on c.complaint_id = t.complaint_id \
              where t.created_by = $1 and c.patient_id = $2 and t.done_at is null \
                and c.status in ('open', 'in_progress') order by c.ticket",
        )
        .bind(staff.0)
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let follow_ups: Vec<(i64, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "select a.appointment_id, s.starts_at from appointment a join slot s on s.slot_id = a.slot_id \
              where a.booked_by = $1 and a.patient_id = $2 and a.status = 'booked' order by s.starts_at",
        )
        .bind(staff.0)
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let glass: Option<(DateTime<Utc>,)> = on_pool!(self, pool => sqlx::query_as(
            "select created_at from audit_log where patient_id = $1 and staff_id = $2 and action = $3 \
              order by audit_log_id desc limit 1",
        )
        .bind(patient.0)
        .bind(staff.0)
        .bind(BREAK_GLASS_ACTION)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(Facts {
            supervisor,
            contacts,
            tasks: tasks.into_iter().map(|(t,)| t).collect(),
            // A follow-up opens the record until the day after it (the visit and its notes).
            follow_ups: follow_ups
                .into_iter()
                .filter(|(_, starts)| *starts + chrono::Duration::days(1) >= now)
                .map(|(id, _)| id)
                .collect(),
            broke_glass_at: glass.map(|(at,)| at),
        })
    }

    /// Records that `staff` found (or registered) `patient` from `contact`:
    /// the patient is then open to them on that contact (see `crate::access`).
    pub async fn add_contact_lookup(
        &self,
        contact: &str,
        staff: StaffId,
        patient: PatientId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into contact_lookup (contact_id, staff_id, patient_id, created_at) values ($1, $2, $3, $4) \
             on conflict (contact_id, staff_id, patient_id) do nothing",
        )
        .bind(contact)
        .bind(staff.0)
        .bind(patient.0)
        .bind(now)
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::refers_to("contact"))?;
        Ok(())
    }
}
