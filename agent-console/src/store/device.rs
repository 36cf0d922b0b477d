//! Sign-in devices (OWASP device cookies, kept as SHA-256 hashes) and the
//! failed sign-ins a user is told about at their next sign-in.

use chrono::{DateTime, Utc};

use super::{Result, StaffId, Store, StoreError, on_pool};

impl Store {
    /// Remembers a device (the hash of its cookie) that signed in as `staff`
    /// at `at`; a device seen again has its last sign-in moved on.
    pub async fn remember_device(&self, device_hash: &str, staff: StaffId, at: DateTime<Utc>) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into staff_device (staff_device_id, staff_id, created_at, last_sign_in_at) values ($1, $2, $3, $3) \
             on conflict (staff_device_id) do update set last_sign_in_at = excluded.last_sign_in_at \
             where staff_device.staff_id = excluded.staff_id",
        )
        .bind(device_hash)
        .bind(staff.0)
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// The staff member a device (the hash of its cookie) signed in as before, if any.
    pub async fn device_owner(&self, device_hash: &str) -> Result<Option<StaffId>> {
        let id: Option<i64> = on_pool!(self, pool => sqlx::query_scalar(
            "select staff_id from staff_device where staff_device_id = $1",
        )
        .bind(device_hash)
        .fetch_optional(pool)
        .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(id.map(StaffId))
    }

    /// Records a wrong password for `staff` from `client`.
    pub async fn record_login_failure(
        &self,
        staff: StaffId,
        client: &str,
        known_device: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into login_failure (staff_id, created_at, client, known_device) values ($1, $2, $3, $4)",
        )
        .bind(staff.0)
        .bind(at)
        .bind(client)
        .bind(known_device)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// The failed sign-ins of `staff` since their last sign-in, forgotten as
    /// they are counted (this is that sign-in).
    pub async fn take_login_failures(&self, staff: StaffId) -> Result<u64> {
        on_pool!(self, pool => sqlx::query("delete from login_failure where staff_id = $1")
            .bind(staff.0)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)
    }
}
