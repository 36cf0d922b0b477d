//! Login, logout and API tokens, and the extractors that guard every route.
//!
//! A route states who may call it by taking an extractor: [`AuthUser`] (any
//! signed-in staff), or a role: [`Operator`], [`Doctor`], [`Supervisor`],
//! [`Admin`], [`StaffOnDuty`] (operator, doctor or supervisor). No session
//! gives 401; a session with the wrong role gives 403. There are no role
//! checks inside handlers.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, Result};
use super::json::ApiJson;
use crate::auth::{dummy_hash, new_token, token_hash, verify_password};
use crate::store::{Role, Staff, Store, TokenKind};

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
}

/// Signs a staff member in. Wrong credentials get 401; repeated failures 429.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401), (status = 422), (status = 429)))]
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
    let client = peer.map(|addr| format!("ip:{}", addr.ip())).unwrap_or_else(|| "ip:unknown".into());
    let user_key = format!("user:{username}");
    let now = Instant::now();
    let wait = [state.throttle.check(&[&user_key], now), state.addr_throttle.check(&[&client], now)];
    if let Some(secs) = wait.iter().filter_map(|w| w.err()).max() {
        return Err(ApiError::TooManyRequests(secs));
    }

    let found = state.store.staff_credentials(&username).await?;
    let (staff, phc) = match found {
        Some((staff, phc)) => (Some(staff), phc),
        None => (None, dummy_hash().to_owned()),
    };
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(staff) = staff.filter(|_| ok) else {
        state.throttle.record_failure(&[&user_key], Instant::now());
        state.addr_throttle.record_failure(&[&client], Instant::now());
        tracing::warn!(%username, %client, "failed login");
        return Err(ApiError::Unauthorized);
    };
    state.throttle.record_success(&user_key);

    let token = new_token();
    let expires_at = chrono::Utc::now() + state.settings.session_ttl;
    let kind = match req.kind {
        LoginKind::Cookie => TokenKind::Cookie,
        LoginKind::Bearer => TokenKind::Bearer,
    };
    state.store.create_auth_session(&token_hash(&token), staff.staff_id, kind, expires_at).await?;
    tracing::info!(username = %staff.username, role = %staff.role, "login");

    let home = home_of(staff.role).to_owned();
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
    Ok((jar, axum::Json(LoginResponse { staff, home, token, expires_at })))
}

/// The peer address of the connection, when the server recorded it
/// (`into_make_service_with_connect_info`); absent in in-process tests.
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> std::result::Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)))
    }
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
