//! OPD appointments: bookable slots at a facility's department, and
//! booking and cancelling a place in one, atomically.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PatientId, Result, StaffId, Store, StoreError, on_pool};

crate::store::text_enum::text_enum!(
    /// Where an appointment stands.
    AppointmentStatus { Booked = "booked", Cancelled = "cancelled", Fulfilled = "fulfilled", Noshow = "noshow" }
);

/// A bookable slot at a facility's department.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Slot {
    pub slot_id: i64,
    pub facility_id: i64,
    pub department: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: i64,
    pub booked: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Appointment {
    pub appointment_id: i64,
    pub slot: Slot,
    pub patient_id: PatientId,
    pub contact_id: Option<String>,
    pub booked_by: StaffId,
    pub status: AppointmentStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SlotRow {
    slot_id: i64,
    facility_id: i64,
    department: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    capacity: i64,
    booked: i64,
}

impl From<SlotRow> for Slot {
    fn from(r: SlotRow) -> Self {
        Slot {
            slot_id: r.slot_id,
            facility_id: r.facility_id,
            department: r.department,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            capacity: r.capacity,
            booked: r.booked,
        }
    }
}

const SLOT_COLUMNS: &str = "slot_id, facility_id, department, starts_at, ends_at, capacity, booked";

impl Store {
    /// Adds a bookable slot, or updates the one of the facility's department
    /// at the same start: it takes the new end, so a working copy of a
    /// HIMS's Slot ends when the HIMS says (an Appointment booked in it then
    /// matches its Slot). Its capacity and bookings stay as they are.
    pub async fn add_slot(
        &self,
        facility: i64,
        department: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        capacity: i64,
    ) -> Result<Slot> {
        if ends_at <= starts_at || capacity <= 0 {
            return Err(StoreError::Refused("a slot ends after it starts and has room for someone".into()));
        }
        let sql = format!(
            "insert into slot (facility_id, department, starts_at, ends_at, capacity) values ($1, $2, $3, $4, $5) \
             on conflict (facility_id, department, starts_at) do update set ends_at = excluded.ends_at \
             returning {SLOT_COLUMNS}"
        );
        let row: SlotRow = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(facility)
            .bind(department)
            .bind(starts_at)
            .bind(ends_at)
            .bind(capacity)
            .fetch_one(pool)
            .await)
        .map_err(StoreError::refers_to("facility_id"))?;
        Ok(row.into())
    }

    /// Slots with room, starting between `from` and `to`.
    pub async fn free_slots(
        &self,
        facility: i64,
        department: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        let sql = format!(
            "select {SLOT_COLUMNS} from slot where facility_id = $1 and ($2 is null or department = $2) \
             and starts_at >= $3 and starts_at < $4 and booked < capacity order by starts_at, department limit 200"
        );
        let rows: Vec<SlotRow> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(facility)
            .bind(department)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn slot(&self, id: i64) -> Result<Slot> {
        let sql = format!("select {SLOT_COLUMNS} from slot where slot_id = $1");
        let row: SlotRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        Ok(row.into())
    }

    /// Books a place in a slot, atomically: a full slot, one that has
    /// started, or a second booking of the same patient is refused, and
    /// nothing is written.
    pub async fn book_appointment(
        &self,
        slot: i64,
        patient: PatientId,
        booked_by: StaffId,
        contact_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Appointment> {
        let current = self.slot(slot).await?;
        if current.starts_at <= now {
            return Err(StoreError::Refused(format!("slot {slot} has already started")));
        }
        let booked: Result<i64> = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let taken = sqlx::query(
                "update slot set booked = booked + 1 where slot_id = $1 and booked < capacity and starts_at > $2",
            )
            .bind(slot)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?
            .rows_affected();
            if taken == 0 {
                return Err(StoreError::Refused(format!("slot {slot} is full")));
            }
            let (id,): (i64,) = sqlx::query_as(
                "insert into appointment (slot_id, patient_id, contact_id, booked_by, status, created_at) \
                 values ($1, $2, $3, $4, 'booked', $5) returning appointment_id",
            )
            .bind(slot)
            .bind(patient.0)
            .bind(contact_id)
            .bind(booked_by.0)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match StoreError::from_sqlx(e) {
                StoreError::Conflict(_) => StoreError::Refused("the patient already has this slot".into()),
                other => other,
            })?;
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            Ok(id)
        });
        self.appointment(booked?).await
    }

    pub async fn appointment(&self, id: i64) -> Result<Appointment> {
        let row: (i64, i64, i64, Option<String>, i64, String, DateTime<Utc>) = on_pool!(self, pool => sqlx::query_as(
            "select appointment_id, slot_id, patient_id, contact_id, booked_by, status, created_at \
             from appointment where appointment_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let (appointment_id, slot_id, patient_id, contact_id, booked_by, status, created_at) = row;
        let status = status.parse().map_err(|e| StoreError::Corrupt(format!("appointment {appointment_id}: {e}")))?;
        Ok(Appointment {
            appointment_id,
            slot: self.slot(slot_id).await?,
            patient_id: PatientId(patient_id),
            contact_id,
            booked_by: StaffId(booked_by),
            status,
            created_at,
        })
    }

    /// A patient's appointments, latest first.
    pub async fn appointments_of(&self, patient: PatientId) -> Result<Vec<Appointment>> {
        let ids: Vec<(i64,)> = on_pool!(self, pool => sqlx::query_as(
            "select appointment_id from appointment where patient_id = $1 order by created_at desc limit 50",
        )
        .bind(patient.0)
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            out.push(self.appointment(id).await?);
        }
        Ok(out)
    }

    /// Cancels a booked appointment and frees its place.
    pub async fn cancel_appointment(&self, id: i64, now: DateTime<Utc>) -> Result<Appointment> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(StoreError::from_sqlx)?;
            let slot: Option<(i64,)> = sqlx::query_as(
                "update appointment set status = 'cancelled', cancelled_at = $2 where appointment_id = $1 \
                 and status = 'booked' returning slot_id",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
            let Some((slot,)) = slot else {
                return Err(StoreError::Refused(format!("appointment {id} is not booked")));
            };
            sqlx::query("update slot set booked = booked - 1 where slot_id = $1 and booked > 0")
                .bind(slot)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            tx.commit().await.map_err(StoreError::from_sqlx)
        })?;
        self.appointment(id).await
    }
}
