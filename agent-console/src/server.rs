//! Serving: the HTTP server plus background tasks, all stopped by one token.
//!
//! The accept loop is hyper-util's own, not `axum::serve`, because a public
//! helpline must outlast idle and slow clients, and `axum::serve` has no
//! timeouts and no cap on connections (issue 21: 1 100 idle sockets took
//! `/healthz` down). Here:
//! - a header-read timeout (hyper's `header_read_timeout`): a client that
//!   trickles a request's head (slowloris) is closed;
//! - an idle timeout: a connection with no request in flight and no byte
//!   read or written for that long is closed (a keep-alive socket, or one
//!   that never sends anything). Event streams (`text/event-stream`) and
//!   WebSocket upgrades are exempt, and counted like any other connection;
//! - a cap on connections overall and per client address (an IPv6 /64),
//!   answered by a 503 when the socket takes it, then closing. Trusted proxies
//!   (`--trusted-proxy`) carry many clients and are held only to the overall cap.
//!
//! Counted on `/metrics`: `careline_http_connections_open`,
//! `careline_http_connections_refused_total{reason}`,
//! `careline_http_connections_closed_total{reason}`, `careline_http_accept_errors_total`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::{self, AppState};
use crate::metrics::Metrics;

/// How long in-flight requests may take to finish at shutdown before their
/// connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The connection rules (flags of `careline serve`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// A request's head must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with nothing in flight and no traffic this long is closed.
    pub idle_timeout: Duration,
    /// Connections at once, in all.
    pub max_connections: usize,
    /// Connections at once from one client address (an IPv6 /64).
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    /// 10 s for a head is ample on a slow mobile link (Apache's
    /// `RequestReadTimeout` starts at 20 s, nginx's `client_header_timeout`
    /// at 60 s; a slowloris wants minutes). 60 s idle is near nginx's 75 s
    /// keep-alive. 256 per address tolerates a carrier NAT in front of a
    /// district's patients; 4096 in all stays below common file limits.
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_per_address: 256,
        }
    }
}

/// Serves `state` on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets in-flight requests finish (streams end on the same
/// token), and waits for background tasks.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    limits: ConnectionLimits,
) -> anyhow::Result<()> {
    tasks.spawn(purge_sessions(state.clone(), shutdown.clone()));
    if let Some(url) = state.settings.dispatch_webhook.clone() {
        tasks.spawn(crate::dispatch::run(
            state.store.clone(),
            state.claimant.clone(),
            url,
            state.settings.dispatch,
            shutdown.clone(),
        ));
    }
    if state.channels.any() {
        tasks.spawn(crate::channels::run_journal(state.clone(), shutdown.clone()));
        tasks.spawn(crate::channels::run_sender(state.clone(), shutdown.clone()));
    }
    if let Some(mailer) = state.mailer.clone() {
        tasks.spawn(mailer.run(state.store.clone(), state.claimant.clone(), shutdown.clone()));
    }

    let app = http::router(state.clone());
    let census = Arc::new(Census::new(limits));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors (EMFILE) or a connection reset
                    // before it was taken: count it, and back off a little
                    // so the loop does not spin while the table is full.
                    state.metrics.accept_error();
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let proxied = state.edge.trusted_proxies.iter().any(|c| c.contains(peer.ip()));
        let slot = match census.admit(peer.ip(), proxied, &state.metrics) {
            Ok(slot) => slot,
            Err(reason) => {
                state.metrics.connection_refused(reason);
                tracing::debug!(%peer, reason, "connection refused");
                refuse(stream);
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            // Only latency depends on it; the connection works without.
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let conn = Conn { stream, peer, slot, activity: Arc::new(Activity::new()) };
        connections.spawn(serve_connection(conn, app.clone(), limits, state.metrics.clone(), shutdown.clone()));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), connections.wait()).await.is_err() {
        tracing::warn!(left = connections.len(), "connections still open after the shutdown grace; dropped");
    }

    tasks.close();
    tasks.wait().await;
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The answer to a connection over a cap: written if the socket's buffer
/// takes it at once, then the socket is closed either way.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"too many connections; try again shortly"}"#;
    static RESPONSE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let response = RESPONSE.get_or_init(|| {
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 5\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        )
    });
    // Not swallowed: whether the 503 was written or not, the answer is the
    // close that follows, and the refusal was already counted.
    if let Err(e) = stream.try_write(response.as_bytes()) {
        tracing::debug!(error = %e, "the refused connection did not take its 503");
    }
}

/// Open connections, in all and per address. A `std` mutex: nothing awaits
/// while it is held.
struct Census {
    limits: ConnectionLimits,
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it (when the socket closes, also after
/// a WebSocket upgrade, which carries the socket on) frees its place.
struct Slot {
    census: Arc<Census>,
    address: Option<IpAddr>,
    metrics: Metrics,
}

impl Census {
    fn new(limits: ConnectionLimits) -> Self {
        Census { limits, counts: Mutex::new((0, HashMap::new())) }
    }

    /// A place for a connection from `ip`, or the reason there is none.
    /// A trusted proxy's connections count only in the total.
    fn admit(self: &Arc<Self>, ip: IpAddr, proxied: bool, metrics: &Metrics) -> Result<Slot, &'static str> {
        let mut counts = self.counts.lock().expect("census lock");
        if counts.0 >= self.limits.max_connections {
            return Err("total");
        }
        let address = (!proxied).then(|| crate::net::group(ip));
        if let Some(a) = address {
            let n = counts.1.entry(a).or_default();
            if *n >= self.limits.max_per_address {
                return Err("per_address");
            }
            *n += 1;
        }
        counts.0 += 1;
        metrics.connection_opened();
        Ok(Slot { census: self.clone(), address, metrics: metrics.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.census.counts.lock().expect("census lock");
        counts.0 -= 1;
        if let Some(a) = self.address
            && let Some(n) = counts.1.get_mut(&a)
        {
            *n -= 1;
            if *n == 0 {
                counts.1.remove(&a);
            }
        }
        self.metrics.connection_closed();
    }
}

/// What the idle timer needs to know about a connection.
struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last byte read or written.
    last: AtomicU64,
    /// Requests whose response has not been produced yet.
    in_flight: AtomicUsize,
    /// An event stream or a WebSocket: exempt from the idle timeout.
    long_lived: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            long_lived: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        self.last.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && !self.long_lived.load(Ordering::Relaxed)
    }
}

/// Counts a request in flight until its response is produced (or the
/// request is dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// An accepted socket with its place in the census.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    activity: Arc<Activity>,
}

/// The socket, noting every byte read or written for the idle timer, and
/// holding the connection's place until it is dropped.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
}

impl AsyncRead for Tracked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Whether a response keeps its connection busy for long: an event stream
/// or a protocol switch (WebSocket, RFC 6455).
fn long_lived(response: &axum::response::Response) -> bool {
    response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS
        || response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Serves one connection (HTTP/1.1 with upgrades, or HTTP/2) until it
/// closes, goes idle, or the server shuts down.
async fn serve_connection(
    conn: Conn,
    app: axum::Router,
    limits: ConnectionLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let Conn { stream, peer, slot, activity } = conn;
    activity.touch();
    let io = TokioIo::new(Tracked { stream, activity: activity.clone(), _slot: slot });
    let requests = activity.clone();
    let service = tower::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = InFlight::new(requests.clone());
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await;
            if let Ok(r) = &response
                && long_lived(r)
            {
                in_flight.0.long_lived.store(true, Ordering::Relaxed);
            }
            drop(in_flight);
            response
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut tick = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Once closing, how long the connection may take to finish what it has in flight.
    let mut deadline: Option<tokio::time::Instant> = None;
    let result = loop {
        let until = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = shutdown.cancelled(), if deadline.is_none() => {
                connection.as_mut().graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            _ = tick.tick(), if deadline.is_none() => {
                if activity.idle() && activity.idle_for() >= limits.idle_timeout {
                    metrics.connection_ended("idle");
                    connection.as_mut().graceful_shutdown();
                    deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            _ = until => {
                metrics.connection_ended("dropped");
                tracing::debug!(%peer, "connection did not finish in time; dropped");
                return;
            }
        }
    };
    if let Err(e) = result {
        // A client that goes away mid-request is ordinary on a public
        // service: counted by kind, logged at debug.
        let timeout = e.downcast_ref::<hyper::Error>().is_some_and(|e| e.is_timeout());
        metrics.connection_ended(if timeout { "header_timeout" } else { "error" });
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
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

/// Serves only `/metrics` on its own listener (`--metrics-listen`), for a
/// scraper on an internal network, until `shutdown`.
pub async fn serve_metrics(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], metrics.render()) }
        }),
    );
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}
