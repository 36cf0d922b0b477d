//! Serving: the HTTP server plus background tasks, all stopped by one token.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{self, AppState};

/// Serves `state` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets in-flight requests finish, and waits for background tasks.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) -> anyhow::Result<()> {
    tasks.spawn(purge_sessions(state.clone(), shutdown.clone()));
    if let Some(mailer) = state.mailer.clone() {
        tasks.spawn(mailer.run(state.store.clone(), shutdown.clone()));
    }

    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await?;

    tasks.close();
    tasks.wait().await;
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Deletes expired sessions every hour.
async fn purge_sessions(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                match state.store.purge_expired_sessions(chrono::Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "purged expired sessions"),
                    Err(e) => tracing::warn!(error = %e, "purging sessions failed"),
                }
            }
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
