//! Staff accounts and their login sessions.

use chrono::{DateTime, Utc};

use super::{NewStaff, Result, Staff, StaffId, Store, StoreError, on_pool};

#[derive(sqlx::FromRow)]
struct StaffRow {
    staff_id: i64,
    username: String,
    role: String,
    display_name: String,
    languages: String,
    specialty: Option<String>,
    qualification: Option<String>,
    registration_number: Option<String>,
    active: bool,
    created_at: DateTime<Utc>,
}

impl StaffRow {
    /// A stored role that is not one of the four is `StoreError::Corrupt`,
    /// never a default (a default role would be a grant).
    fn into_staff(self) -> Result<Staff> {
        Ok(Staff {
            role: self.role.parse().map_err(|e| StoreError::Corrupt(format!("staff {}: {e}", self.staff_id)))?,
            staff_id: StaffId(self.staff_id),
            username: self.username,
            display_name: self.display_name,
            languages: self.languages.split(',').filter(|l| !l.is_empty()).map(str::to_owned).collect(),
            specialty: self.specialty,
            qualification: self.qualification,
            registration_number: self.registration_number,
            active: self.active,
            created_at: self.created_at,
        })
    }
}

const STAFF_COLUMNS: &str = "staff_id, username, role, display_name, languages, specialty, qualification, \
     registration_number, active, created_at";

/// A live login session or API token, as found by its token.
#[derive(Clone, Debug)]
pub struct AuthSession {
    pub staff: Staff,
    pub expires_at: DateTime<Utc>,
}

/// Whether a token came from the console's cookie or an API client's bearer header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Cookie,
    Bearer,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Cookie => "cookie",
            TokenKind::Bearer => "bearer",
        }
    }
}

impl Store {
    pub async fn create_staff(&self, new: &NewStaff) -> Result<Staff> {
        let now = Utc::now();
        let sql = format!(
            "insert into staff (username, password_hash, role, display_name, languages, specialty, \
             qualification, registration_number, active, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $9) returning {STAFF_COLUMNS}"
        );
        let row: StaffRow = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(&new.username)
            .bind(&new.password_hash)
            .bind(new.role.as_str())
            .bind(&new.display_name)
            .bind(new.languages.join(","))
            .bind(&new.specialty)
            .bind(&new.qualification)
            .bind(&new.registration_number)
            .bind(now)
            .fetch_one(pool)
            .await)
        .map_err(|e| match StoreError::from_sqlx(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("username `{}` is taken", new.username)),
            other => other,
        })?;
        row.into_staff()
    }

    pub async fn staff(&self, id: StaffId) -> Result<Staff> {
        let sql = format!("select {STAFF_COLUMNS} from staff where staff_id = $1");
        let row: StaffRow = on_pool!(self, pool => sqlx::query_as(&sql).bind(id.0).fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)?;
        row.into_staff()
    }

    pub async fn list_staff(&self) -> Result<Vec<Staff>> {
        let sql = format!("select {STAFF_COLUMNS} from staff order by role, username");
        let rows: Vec<StaffRow> =
            on_pool!(self, pool => sqlx::query_as(&sql).fetch_all(pool).await).map_err(StoreError::from_sqlx)?;
        rows.into_iter().map(StaffRow::into_staff).collect()
    }

    pub async fn count_staff(&self) -> Result<i64> {
        on_pool!(self, pool => sqlx::query_scalar("select count(*) from staff").fetch_one(pool).await)
            .map_err(StoreError::from_sqlx)
    }

    /// The account and password hash for a login attempt, if the username exists and is active.
    pub async fn staff_credentials(&self, username: &str) -> Result<Option<(Staff, String)>> {
        #[derive(sqlx::FromRow)]
        struct Cred {
            #[sqlx(flatten)]
            staff: StaffRow,
            password_hash: String,
        }
        let sql = format!("select {STAFF_COLUMNS}, password_hash from staff where username = $1 and active");
        let row: Option<Cred> = on_pool!(self, pool => sqlx::query_as(&sql).bind(username).fetch_optional(pool).await)
            .map_err(StoreError::from_sqlx)?;
        row.map(|c| Ok((c.staff.into_staff()?, c.password_hash))).transpose()
    }

    /// Records a new session under the hash of its token.
    pub async fn create_auth_session(
        &self,
        token_hash: &str,
        staff: StaffId,
        kind: TokenKind,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "insert into auth_session (auth_session_id, staff_id, kind, created_at, expires_at) values ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(staff.0)
        .bind(kind.as_str())
        .bind(Utc::now())
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// The live (unexpired, unrevoked) session for a token hash, with its active staff account.
    pub async fn auth_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<AuthSession>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            staff: StaffRow,
            expires_at: DateTime<Utc>,
        }
        let sql = format!(
            "select {}, a.expires_at from auth_session a join staff s on s.staff_id = a.staff_id \
             where a.auth_session_id = $1 and a.revoked_at is null and a.expires_at > $2 and s.active",
            STAFF_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
        );
        let row: Option<Row> =
            on_pool!(self, pool => sqlx::query_as(&sql).bind(token_hash).bind(now).fetch_optional(pool).await)
                .map_err(StoreError::from_sqlx)?;
        row.map(|r| Ok(AuthSession { staff: r.staff.into_staff()?, expires_at: r.expires_at })).transpose()
    }

    /// Revokes a session (logout). Revoking twice is harmless.
    pub async fn revoke_auth_session(&self, token_hash: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "update auth_session set revoked_at = $2 where auth_session_id = $1 and revoked_at is null",
        )
        .bind(token_hash)
        .bind(Utc::now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Deletes sessions that expired before `before`; returns how many.
    pub async fn purge_expired_sessions(&self, before: DateTime<Utc>) -> Result<u64> {
        let done = on_pool!(self, pool => sqlx::query("delete from auth_session where expires_at < $1")
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(StoreError::from_sqlx)?;
        Ok(done)
    }
}
