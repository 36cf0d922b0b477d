//! Seats, shifts and who is rostered on which shift and day.

use chrono::NaiveDate;

use super::{Result, RosterEntry, Seat, SeatId, Shift, ShiftId, StaffId, Store, StoreError, on_pool};

impl Store {
    pub async fn seats(&self) -> Result<Vec<Seat>> {
        let rows: Vec<(i64, String, bool)> = on_pool!(self, pool =>
            sqlx::query_as("select seat_id, label, is_peak from seat order by seat_id").fetch_all(pool).await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().map(|(id, label, is_peak)| Seat { seat_id: SeatId(id), label, is_peak }).collect())
    }

    pub async fn shifts(&self) -> Result<Vec<Shift>> {
        let rows: Vec<(i64, String, String, i64, i64, bool)> = on_pool!(self, pool => sqlx::query_as(
            "select shift_id, name, role, starts_minute, ends_minute, is_peak from shift order by shift_id",
        )
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        rows.into_iter()
            .map(|(id, name, role, starts_minute, ends_minute, is_peak)| {
                Ok(Shift {
                    shift_id: ShiftId(id),
                    name,
                    role: role.parse().map_err(|e| StoreError::Corrupt(format!("shift {id}: {e}")))?,
                    starts_minute,
                    ends_minute,
                    is_peak,
                })
            })
            .collect()
    }

    /// Adds a shift, in local minutes after midnight (an end at or before the
    /// start runs past midnight).
    pub async fn create_shift(
        &self,
        name: &str,
        role: super::Role,
        starts_minute: i64,
        ends_minute: i64,
        is_peak: bool,
    ) -> Result<Shift> {
        let (id,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "insert into shift (name, role, starts_minute, ends_minute, is_peak) values ($1, $2, $3, $4, $5) \
             returning shift_id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(starts_minute)
        .bind(ends_minute)
        .bind(is_peak)
        .fetch_one(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(Shift { shift_id: ShiftId(id), name: name.to_owned(), role, starts_minute, ends_minute, is_peak })
    }

    /// Puts a staff member on a shift for a day; doing it twice is harmless.
    pub async fn roster(&self, shift: ShiftId, staff: StaffId, day: NaiveDate) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into roster (shift_id, staff_id, day) values ($1, $2, $3) on conflict do nothing",
        )
        .bind(shift.0)
        .bind(staff.0)
        .bind(day.format("%Y-%m-%d").to_string())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Everyone rostered on `day`.
    pub async fn roster_for(&self, day: NaiveDate) -> Result<Vec<RosterEntry>> {
        let rows: Vec<(i64, i64)> = on_pool!(self, pool => sqlx::query_as(
            "select shift_id, staff_id from roster where day = $1 order by shift_id, staff_id",
        )
        .bind(day.format("%Y-%m-%d").to_string())
        .fetch_all(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|(shift, staff)| RosterEntry { shift_id: ShiftId(shift), staff_id: StaffId(staff), day })
            .collect())
    }
}
