//! The phone leg: a SIP user agent server (RFC 3261) for calls that arrive
//! from the carrier's or the state PBX's SIP trunk, and the RTP transport of
//! each call.
//!
//! The server answers only configured trunks (403 to anyone else), limits
//! INVITEs per source and calls per trunk (503), negotiates G.711 by offer
//! and answer (RFC 3264, 488 when no codec fits) and hands each call to the
//! application as an [`IncomingCall`]: a [`CallHandle`] to ring, answer,
//! reject, hang up and send RTP, and a receiver of [`LegEvent`]s (RTP
//! packets, INFO digits, hold and resume, cancel, hangup). RTP payloads are
//! opaque bytes with their payload type; decoding G.711 and RFC 4733 is the
//! caller's.
//!
//! ## Layout
//! - `stack` (private): the only module that imports `rsipstack` (its
//!   transport, transaction and dialog layers), and so the only one to change
//!   when that fast-moving crate does.
//! - `leg` (private): the RTP socket of one call, symmetric RTP and the
//!   inactivity timeout. Packets are parsed and built by
//!   [`crate::phone::rtp`], the one RTP codec of the crate.
//! - [`sdp`], [`headers`], [`policy`]: pure helpers (SDP offer/answer,
//!   caller ID and DTMF from header text, and the trunk, rate and channel
//!   rules), each tested on its own.
//!
//! ## Invariants
//! - A call reaches the application only from a trunk's address, with a
//!   channel of that trunk held until the call ends.
//! - Every task (the endpoint, the dispatcher, each call and its RTP reader)
//!   stops when the [`CancellationToken`] given to [`SipServer::start`] is
//!   cancelled; a call still up then is ended with a BYE.

pub mod headers;
mod leg;
pub mod policy;
pub mod sdp;
mod stack;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use headers::CallerId;
pub use policy::Cidr;
pub use sdp::{Codec, Direction};

/// A carrier or PBX allowed to send calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Shown in logs and metrics, and given with each call so routing can
    /// tell the state PBX from the carrier.
    pub name: String,
    /// Where its signalling comes from. Trunks are trusted by address
    /// because they authenticate by address (no digest on a trunk).
    pub cidrs: Vec<Cidr>,
    /// Calls at once; an E1 carries 30. The 31st gets 503, so the carrier
    /// fails over to its next route instead of ringing out.
    pub max_channels: u32,
}

/// How the SIP server listens and what it accepts.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// UDP and TCP on the same address. A concrete address: it goes into
    /// Via and Contact (port 0 picks a free port, for tests).
    pub listen: SocketAddr,
    /// The address put in SDP answers and bound for RTP. `None`: the listen
    /// address (which then must not be unspecified).
    pub media_ip: Option<IpAddr>,
    pub trunks: Vec<Trunk>,
    /// Local UDP ports for RTP, one per call (each even port tried first,
    /// leaving the odd one for RTCP, RFC 3550 §11).
    pub rtp_ports: RangeInclusive<u16>,
    /// No RTP for this long on an answered, unheld call ends it with a BYE:
    /// a trunk that lost the call may never send its BYE.
    pub rtp_timeout: Duration,
    /// INVITEs per second from one source address before 503 (a flood
    /// guard; retransmissions are absorbed by the transaction layer and do
    /// not count).
    pub invite_rate_per_second: u32,
    /// The `User-Agent` and `Server` value.
    pub user_agent: String,
}

impl SipConfig {
    /// A configuration with the defaults of a single-E1 site.
    pub fn new(listen: SocketAddr, trunks: Vec<Trunk>) -> SipConfig {
        SipConfig {
            listen,
            media_ip: None,
            trunks,
            rtp_ports: 20000..=29999,
            rtp_timeout: Duration::from_secs(30),
            invite_rate_per_second: 10,
            user_agent: "careline".into(),
        }
    }
}

/// Errors of the SIP server and of a call's handle.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("bad SIP configuration: {0}")]
    Config(String),
    #[error("cannot listen for SIP on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("SIP stack: {0}")]
    Stack(String),
    #[error("no free RTP port in {0:?}")]
    NoRtpPort(RangeInclusive<u16>),
    #[error("RTP socket: {0}")]
    Rtp(#[from] std::io::Error),
    #[error("cannot build an RTP packet: {0}")]
    RtpBuild(String),
    #[error("the call has ended")]
    CallEnded,
    #[error("the call is not in a state to {0}")]
    WrongState(&'static str),
}

/// A call's id, unique within one server's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sip-{}", self.0)
    }
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupBy {
    /// A BYE from the trunk.
    Caller,
    /// No RTP for [`SipConfig::rtp_timeout`], no refresh before the session
    /// timer ran out (RFC 4028 §10), or no ACK for our 200: we sent BYE.
    Timeout,
    /// [`CallHandle::hangup`] or [`CallHandle::reject`].
    Local,
    /// The server is shutting down.
    Shutdown,
}

/// What happens on a call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// An RTP packet from the caller; `payload` is opaque (G.711 or RFC 4733
    /// by `payload_type`).
    Rtp { payload_type: u8, seq: u16, timestamp: u32, marker: bool, payload: Vec<u8> },
    /// A digit sent in a SIP INFO (`application/dtmf-relay` or
    /// `application/dtmf`), for trunks that do not send RFC 4733.
    Info { digit: char },
    /// The caller held the call (a new offer with sendonly or inactive,
    /// RFC 3264 §8.4); answered, and our RTP stops until [`LegEvent::Resume`].
    Hold,
    /// The caller took the call off hold.
    Resume,
    /// A session refresh (RFC 4028) or another offer that changed nothing
    /// the application sees; answered with the same SDP.
    Refreshed,
    /// CANCEL before we answered: the INVITE got 487. The last event.
    Cancelled,
    /// The call ended. The last event.
    Hangup { by: HangupBy },
}

/// A call offered by a trunk, not yet answered.
#[derive(Debug)]
pub struct IncomingCall {
    pub id: CallId,
    /// The [`Trunk::name`] it came in on.
    pub trunk: String,
    pub caller: CallerId,
    /// The dialled number: the Request-URI's user part, as the trunk sent
    /// it (a helpline short code such as 104, or a DID).
    pub called: String,
    /// The codec the answer will carry.
    pub codec: Codec,
    /// The payload type of RFC 4733 events, when the caller offered them.
    pub telephone_event: Option<u8>,
    /// Milliseconds of audio per packet the caller asked for (20 by default).
    pub ptime_ms: u32,
    pub handle: CallHandle,
    pub events: mpsc::Receiver<LegEvent>,
}

pub(crate) enum Command {
    Ring,
    Answer(oneshot::Sender<Result<(), SipError>>),
    Reject(u16),
    Hangup,
}

/// Controls one call; cheap to clone.
#[derive(Debug, Clone)]
pub struct CallHandle {
    id: CallId,
    commands: mpsc::Sender<Command>,
    rtp: leg::RtpSender,
}

impl CallHandle {
    pub fn id(&self) -> CallId {
        self.id
    }

    async fn command(&self, c: Command) -> Result<(), SipError> {
        self.commands.send(c).await.map_err(|_| SipError::CallEnded)
    }

    /// Send 180 Ringing.
    pub async fn ring(&self) -> Result<(), SipError> {
        self.command(Command::Ring).await
    }

    /// Send 200 OK with the SDP answer, and start RTP.
    pub async fn answer(&self) -> Result<(), SipError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Answer(tx)).await?;
        rx.await.map_err(|_| SipError::CallEnded)?
    }

    /// Refuse the call with a final status (486 busy, 480 unavailable…).
    /// Codes outside 300–699 are sent as 603 Decline.
    pub async fn reject(&self, code: u16) -> Result<(), SipError> {
        self.command(Command::Reject(code)).await
    }

    /// End an answered call with a BYE (an unanswered one gets 480).
    pub async fn hangup(&self) -> Result<(), SipError> {
        self.command(Command::Hangup).await
    }

    /// Send one RTP packet. Its timestamp is the previous packet's plus
    /// `timestamp_increment` (160 for 20 ms of G.711; 0 for a repeated
    /// RFC 4733 event packet); the first has a random base (RFC 3550 §5.1).
    /// Nothing is sent before the answer or while the caller holds the call
    /// (RFC 3264 §8.4), but the timestamp still advances.
    pub async fn send_rtp(
        &self,
        payload_type: u8,
        payload: &[u8],
        timestamp_increment: u32,
        marker: bool,
    ) -> Result<(), SipError> {
        self.rtp.send(payload_type, payload, timestamp_increment, marker).await
    }
}

/// Counters the server can read: calls by trunk, responses by code, and
/// what was refused before a call existed. Plain atomics and a map, so the
/// application chooses how to export them.
#[derive(Debug, Default)]
pub struct SipMetrics {
    /// `std::sync::Mutex`: held only to bump a count, never across `.await`.
    calls_by_trunk: Mutex<BTreeMap<String, u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    untrusted: AtomicU64,
    rate_limited: AtomicU64,
    rtp_dropped: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// INVITEs from each trunk that became calls (before the channel cap).
    pub calls_by_trunk: BTreeMap<String, u64>,
    /// Responses put on the wire, by status code (retransmissions by the
    /// transaction layer included).
    pub responses: BTreeMap<u16, u64>,
    /// INVITEs refused with 403: not from a trunk.
    pub untrusted: u64,
    /// INVITEs refused with 503 by the per-source rate.
    pub rate_limited: u64,
    /// Received RTP packets dropped because the application did not drain
    /// the event receiver in time.
    pub rtp_dropped: u64,
}

impl SipMetrics {
    pub(crate) fn call(&self, trunk: &str) {
        let mut m = self.calls_by_trunk.lock().unwrap_or_else(PoisonError::into_inner);
        *m.entry(trunk.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn response(&self, code: u16) {
        let mut m = self.responses.lock().unwrap_or_else(PoisonError::into_inner);
        *m.entry(code).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            calls_by_trunk: self.calls_by_trunk.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            responses: self.responses.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            untrusted: self.untrusted.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            rtp_dropped: self.rtp_dropped.load(Ordering::Relaxed),
        }
    }
}

/// A running SIP server.
#[derive(Debug)]
pub struct SipServer {
    local_addr: SocketAddr,
    metrics: Arc<SipMetrics>,
    tasks: TaskTracker,
}

impl SipServer {
    /// Listen on `config.listen` (UDP and TCP) and serve until `cancel`.
    /// Calls arrive on the returned receiver; one not taken from it within
    /// its capacity (64) is refused with 503.
    pub async fn start(
        config: SipConfig,
        cancel: CancellationToken,
    ) -> Result<(SipServer, mpsc::Receiver<IncomingCall>), SipError> {
        if config.trunks.is_empty() {
            return Err(SipError::Config("no trunk configured".into()));
        }
        if config.rtp_ports.is_empty() {
            return Err(SipError::Config("empty RTP port range".into()));
        }
        let media_ip = config.media_ip.unwrap_or(config.listen.ip());
        if media_ip.is_unspecified() {
            return Err(SipError::Config("listening on an unspecified address needs a media_ip".into()));
        }
        let metrics = Arc::new(SipMetrics::default());
        let tasks = TaskTracker::new();
        let (calls_tx, calls_rx) = mpsc::channel(64);
        let local_addr = stack::start(config, media_ip, metrics.clone(), tasks.clone(), calls_tx, cancel).await?;
        tasks.close();
        Ok((SipServer { local_addr, metrics, tasks }, calls_rx))
    }

    /// The address SIP listens on (UDP and TCP), with the port chosen.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Wait until every task has stopped (after the cancel).
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }
}
