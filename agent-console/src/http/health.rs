//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

#[derive(Serialize, ToSchema)]
struct Readiness {
    ready: bool,
    database: String,
    /// `null` when Redis is not configured.
    redis: Option<String>,
}

/// The database (and Redis, when configured) can be reached.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match state.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "database not ready");
            "unreachable".to_owned()
        }
    };
    let redis = match &state.settings.redis_url {
        None => None,
        Some(url) => Some(match ping_redis(url).await {
            Ok(()) if !state.center.ready().await => "routing replica not connected yet".to_owned(),
            Ok(()) => "ok".to_owned(),
            Err(e) => {
                tracing::warn!(error = %e, "redis not ready");
                "unreachable".to_owned()
            }
        }),
    };
    let ready = database == "ok" && redis.as_deref().is_none_or(|r| r == "ok");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(Readiness { ready, database, redis }))
}

async fn ping_redis(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn =
        tokio::time::timeout(std::time::Duration::from_secs(2), client.get_multiplexed_async_connection()).await??;
    let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

/// Prometheus text exposition. With `--metrics-token`, only for
/// `Authorization: Bearer <token>`; without one, only for a client on this
/// machine that no proxy forwarded (scrape elsewhere via `--metrics-listen`).
/// The counters tell an attacker how busy the helpline is and which limits
/// bite, so they are not public (OWASP API Security, API8:2023 misconfiguration).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, body = String), (status = 401), (status = 403)))]
async fn metrics(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> super::error::Result<impl IntoResponse> {
    let headers = request.headers();
    match &state.edge.metrics_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            // Compared as hashes so the time taken does not tell how much of the token matched.
            if presented.map(crate::auth::token_hash) != Some(crate::auth::token_hash(token)) {
                return Err(super::error::ApiError::Unauthorized);
            }
        }
        None => {
            let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
            let forwarded = headers.contains_key("x-forwarded-for") || headers.contains_key(header::FORWARDED);
            // No peer: an in-process caller (tests), which is this machine.
            if forwarded || peer.is_some_and(|ip| !ip.to_canonical().is_loopback()) {
                return Err(super::error::ApiError::Forbidden(
                    "metrics are served to this machine only; set --metrics-token or --metrics-listen".into(),
                ));
            }
        }
    }
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], state.metrics.render()))
}
