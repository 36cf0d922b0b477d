//! Login, logout and API tokens, and the extractors that guard every route.
//!
//! A route states who may call it by taking an extractor: [`AuthUser`] (any
//! signed-in staff), or a role: [`Operator`], [`Doctor`], [`Supervisor`],
//! [`Admin`], [`StaffOnDuty`] (operator, doctor or supervisor). No session
//! gives 401; a session with the wrong role gives 403. There are no role
//! checks inside handlers.

use std::net::IpAddr;
use std::time::Instant;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::client::ClientAddr;
use super::error::{ApiError, Result};
use super::json::ApiJson;
use crate::auth::{dummy_hash, new_token, token_hash, verify_password};
use crate::store::{NewAudit, Role, Staff, Store, TokenKind};
use crate::throttle::Attempt;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "careline_session";

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(logout)).routes(routes!(me))
}

/// The signed-in staff member behind a request, whatever their role.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub staff: Staff,
    /// The hash of the token that authenticated this request (for logout).
    token_hash: String,
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    CookieJar::from_headers(headers).get(SESSION_COOKIE).map(|c| c.value().to_owned())
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Store: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let token = presented_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let hash = token_hash(&token);
        let session =
            Store::from_ref(state).auth_session(&hash, chrono::Utc::now()).await?.ok_or(ApiError::Unauthorized)?;
        let user = AuthUser { staff: session.staff, token_hash: hash };
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, [$($role:ident),+], $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(pub Staff);

        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            Store: FromRef<S>,
        {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
                let user = AuthUser::from_request_parts(parts, state).await?;
                if matches!(user.staff.role, $(Role::$role)|+) {
                    Ok($name(user.staff))
                } else {
                    Err(ApiError::Forbidden(format!(concat!("only ", $what, " may do this; you are signed in as {}"), user.staff.role)))
                }
            }
        }
    };
}

role_extractor!(
    /// A tier-1 operator.
    Operator, [Operator], "operators"
);
role_extractor!(
    /// A tier-2 doctor.
    Doctor, [Doctor], "doctors"
);
role_extractor!(
    /// A shift supervisor.
    Supervisor, [Supervisor], "supervisors"
);
role_extractor!(
    /// An administrator: manages accounts, never patient records.
    Admin, [Admin], "admins"
);
role_extractor!(
    /// Those who run the helpline: supervisors and admins.
    Management, [Supervisor, Admin], "supervisors and admins"
);
role_extractor!(
    /// Staff who handle contacts and may read patient records: operators, doctors and supervisors.
    StaffOnDuty, [Operator, Doctor, Supervisor], "operators, doctors and supervisors"
);

#[derive(Deserialize, ToSchema)]
pub(super) struct LoginRequest {
    #[schema(min_length = 1, pattern = r"\S")]
    username: String,
    password: String,
    /// `cookie` (default) for the consoles; `bearer` returns a token for API clients.
    #[serde(default)]
    kind: LoginKind,
}

#[derive(Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum LoginKind {
    #[default]
    Cookie,
    Bearer,
}

#[derive(Serialize, ToSchema)]
pub(super) struct LoginResponse {
    staff: Staff,
    /// Where the console for this role lives.
    home: String,
    /// Only for `kind: bearer`: send it as `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// Wrong passwords given for this account since its last sign-in: the
    /// console tells the user, who knows whether they were theirs.
    failed_attempts: u64,
}

/// The device cookie (OWASP, "Slow Down Online Guessing Attacks with Device
/// Cookies"): a random token set at a successful sign-in, kept in the store
/// only as its SHA-256. A device that holds one for a user is delayed only
/// by its own failures, so strangers guessing that user's password never
/// lock it out. Sent only to the login route.
pub const DEVICE_COOKIE: &str = "careline_device";

/// The audit action written when a user's sign-ins from unknown devices
/// become delayed by guessing (the wallboard shows it to supervisors).
pub const GUESSING_ACTION: &str = "login.guessing";

/// Signs a staff member in. Wrong credentials get 401. After repeated
/// failures an unknown device waits (429 with `Retry-After`), by (user,
/// address) and by user; a device that signed in as this user before waits
/// only for its own failures. The answer says how many failed attempts
/// there were since the user's last sign-in.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401), (status = 415), (status = 422), (status = 429)))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(peer): ClientAddr,
    jar: CookieJar,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<impl IntoResponse> {
    let username = req.username.trim().to_lowercase();
    if username.is_empty() {
        return Err(ApiError::invalid("username", "must not be empty"));
    }
    let address = peer.map(crate::net::group).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let client = peer.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into());
    let addr_key = format!("ip:{address}");

    let found = state.store.staff_credentials(&username).await?;
    let device = jar.get(DEVICE_COOKIE).map(|c| c.value().to_owned());
    let device_hash = device.as_deref().map(token_hash);
    let known = match (&found, &device_hash) {
        (Some((staff, _)), Some(hash)) => state.store.device_owner(hash).await? == Some(staff.staff_id),
        _ => false,
    };
    let attempt = match (&device_hash, known) {
        (Some(hash), true) => Attempt::KnownDevice { user: &username, device: hash },
        _ => Attempt::Unknown { user: &username, address },
    };
    let now = Instant::now();
    let mut wait = state.login_delays.lock().expect("login delays lock").wait(attempt, now);
    if !known && let Err(secs) = state.addr_throttle.check(&[&addr_key], now) {
        wait = wait.max(secs);
    }
    if wait > 0 {
        return Err(ApiError::TooManyRequests(wait));
    }

    let (staff, phc) = match found {
        Some((staff, phc)) => (Some(staff), phc),
        None => (None, dummy_hash().to_owned()),
    };
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let staff = match staff {
        Some(staff) if ok => staff,
        staff => {
            let failed = state.login_delays.lock().expect("login delays lock").fail(attempt, Instant::now());
            if !known {
                state.addr_throttle.record_failure(&[&addr_key], Instant::now());
            }
            state.metrics.login_failed(known);
            // `?`: the username is the client's text; Debug escapes newlines and
            // control characters, so it cannot forge a log line.
            tracing::warn!(username = ?username, %client, known_device = known, "failed login");
            if let Some(staff) = &staff {
                state.store.record_login_failure(staff.staff_id, &client, known, chrono::Utc::now()).await?;
                if failed.user_now_delayed {
                    // Someone is guessing this user's password from many places:
                    // tell the supervisors (the audit log, a counter) once per run.
                    state.metrics.login_guessing();
                    tracing::warn!(username = %staff.username, failures = failed.user_failures, "sign-ins of this user from unknown devices are now delayed");
                    state
                        .store
                        .append_audit(&NewAudit {
                            staff_id: Some(staff.staff_id),
                            action: GUESSING_ACTION.into(),
                            patient_id: None,
                            contact_id: None,
                            detail: format!(
                                "{} failed sign-ins as {} from unknown devices (the last from {client}); \
                             unknown devices now wait, known devices are not affected",
                                failed.user_failures, staff.username
                            ),
                        })
                        .await?;
                }
            }
            return Err(ApiError::Unauthorized);
        }
    };
    state.login_delays.lock().expect("login delays lock").succeed(attempt);
    let failed_attempts = state.store.take_login_failures(staff.staff_id).await?;

    let token = new_token();
    let expires_at = chrono::Utc::now() + state.settings.session_ttl;
    let kind = match req.kind {
        LoginKind::Cookie => TokenKind::Cookie,
        LoginKind::Bearer => TokenKind::Bearer,
    };
    state.store.create_auth_session(&token_hash(&token), staff.staff_id, kind, expires_at).await?;
    // This device has now signed in as this user: the same cookie when it was
    // already theirs, else a new one.
    let device = device.filter(|_| known).unwrap_or_else(new_token);
    state.store.remember_device(&token_hash(&device), staff.staff_id, chrono::Utc::now()).await?;
    tracing::info!(username = %staff.username, role = %staff.role, failed_attempts, "login");

    let home = home_of(staff.role).to_owned();
    let device_cookie = Cookie::build((DEVICE_COOKIE, device))
        .path("/api/auth/login")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.secure_cookies)
        .max_age(time::Duration::days(365))
        .build();
    let jar = jar.add(device_cookie);
    let (jar, token) = match kind {
        TokenKind::Cookie => {
            let cookie = Cookie::build((SESSION_COOKIE, token))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(state.settings.secure_cookies)
                .build();
            (jar.add(cookie), None)
        }
        TokenKind::Bearer => (jar, Some(token)),
    };
    Ok((jar, axum::Json(LoginResponse { staff, home, token, expires_at, failed_attempts })))
}

/// Where each role's console lives.
pub fn home_of(role: Role) -> &'static str {
    match role {
        Role::Operator => "/operator",
        Role::Doctor => "/doctor",
        Role::Supervisor => "/supervisor",
        Role::Admin => "/admin",
    }
}

/// Ends the session or revokes the token that made this request.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204), (status = 401)))]
async fn logout(State(store): State<Store>, user: AuthUser, jar: CookieJar) -> Result<impl IntoResponse> {
    store.revoke_auth_session(&user.token_hash).await?;
    tracing::info!(username = %user.staff.username, "logout");
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((StatusCode::NO_CONTENT, jar))
}

/// The signed-in staff member.
#[utoipa::path(get, path = "/api/me", tag = "auth", responses((status = 200, body = Staff), (status = 401)))]
async fn me(user: AuthUser) -> axum::Json<Staff> {
    axum::Json(user.staff)
}
