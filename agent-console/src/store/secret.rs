//! The installation's secrets (such as the key that signs prescriptions'
//! verification links), made once and shared by every node.

use chrono::Utc;

use super::{Result, Store, StoreError, on_pool};

impl Store {
    /// The installation's secret `name`, made with `make` on first use. Two
    /// nodes racing to make it agree on the first one stored.
    pub async fn secret(&self, name: &str, make: impl FnOnce() -> String) -> Result<String> {
        on_pool!(self, pool => sqlx::query(
            "insert into secret (name, value, created_at) values ($1, $2, $3) on conflict (name) do nothing",
        )
        .bind(name)
        .bind(make())
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|_| ()))
        .map_err(StoreError::from_sqlx)?;
        let (value,): (String,) = on_pool!(self, pool => sqlx::query_as("select value from secret where name = $1")
            .bind(name)
            .fetch_one(pool)
            .await)
        .map_err(StoreError::from_sqlx)?;
        Ok(value)
    }
}
