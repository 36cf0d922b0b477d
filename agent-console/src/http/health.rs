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

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, body = String)))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
