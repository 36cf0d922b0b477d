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
    if let Some(url) = state.settings.dispatch_webhook.clone() {
        tasks.spawn(crate::dispatch::run(state.store.clone(), url, state.settings.dispatch, shutdown.clone()));
    }
    if state.channels.any() {
        tasks.spawn(crate::channels::run_journal(state.clone(), shutdown.clone()));
        tasks.spawn(crate::channels::run_sender(state.clone(), shutdown.clone()));
    }
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
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // The handlers are installed now, not at the first poll, so a signal that
    // arrives right after start-up is not lost to the default action.
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: &mut Option<tokio::signal::unix::Signal>| {
                let s = s.take();
                async move {
                    match s {
                        Some(mut s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
            };
            tokio::select! {
                _ = wait(&mut int) => {},
                _ = wait(&mut term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
