//! The RTP transport of one phone leg: a UDP socket from the configured
//! range, symmetric RTP, and the inactivity timeout.
//!
//! Symmetric RTP (RFC 4961): until the caller's first packet we send to the
//! address in its SDP; after it, to where its packets come from, so a trunk
//! behind NAT or with a media proxy that rewrote nothing still hears us.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{LegEvent, SipError, SipMetrics};
use crate::phone::rtp;

/// The next port to try, shared by all legs, so ports rotate instead of
/// the first free one being reused at once (a late packet of the last call
/// would land in the next).
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Bind a UDP socket on a free even port of `range` (RFC 3550 §11: RTP on
/// an even port, RTCP on the next), else any free port of it.
pub(crate) async fn bind(ip: IpAddr, range: &RangeInclusive<u16>) -> Result<UdpSocket, SipError> {
    let (lo, hi) = (*range.start(), *range.end());
    let span = u32::from(hi - lo) + 1;
    let start = u32::from(NEXT_PORT.fetch_add(2, Ordering::Relaxed)) % span;
    for even_only in [true, false] {
        for i in 0..span {
            let port = lo + ((start + i) % span) as u16;
            if even_only && !port.is_multiple_of(2) {
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => return Ok(s),
                // In use: try the next. Any other error is the same for
                // every port, so it is returned.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(SipError::Rtp(e)),
            }
        }
    }
    Err(SipError::NoRtpPort(range.clone()))
}

#[derive(Debug)]
struct Target {
    /// From the SDP (c= and m=); replaced by each new offer.
    sdp: SocketAddr,
    /// Where the caller's RTP comes from, once it has come.
    learned: Option<SocketAddr>,
}

#[derive(Debug)]
struct SendState {
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    /// Whether a packet went out yet (the first keeps the random base).
    started: bool,
}

/// Sends the leg's RTP; shared by every clone of the call's handle.
#[derive(Debug, Clone)]
pub(crate) struct RtpSender {
    inner: Arc<SenderInner>,
}

#[derive(Debug)]
struct SenderInner {
    socket: Arc<UdpSocket>,
    /// `std::sync::Mutex`es: held only to read or bump fields, never across
    /// the send's `.await`.
    target: Mutex<Target>,
    state: Mutex<SendState>,
    /// Whether we may send: answered, and not held (RFC 3264 §8.4).
    sending: watch::Sender<bool>,
}

impl RtpSender {
    pub(crate) fn new(socket: Arc<UdpSocket>, sdp: SocketAddr) -> RtpSender {
        RtpSender {
            inner: Arc::new(SenderInner {
                socket,
                target: Mutex::new(Target { sdp, learned: None }),
                state: Mutex::new(SendState {
                    seq: rand::random(),
                    timestamp: rand::random(),
                    ssrc: rand::random(),
                    started: false,
                }),
                sending: watch::Sender::new(false),
            }),
        }
    }

    pub(crate) fn local_addr(&self) -> Result<SocketAddr, SipError> {
        Ok(self.inner.socket.local_addr()?)
    }

    /// A new offer moved the caller's media (or held it).
    pub(crate) fn set_sdp_target(&self, sdp: SocketAddr) {
        let mut t = self.inner.target.lock().unwrap_or_else(PoisonError::into_inner);
        if t.sdp != sdp {
            t.sdp = sdp;
            // A new address in a new offer wins over the learned one until
            // packets come from somewhere again.
            t.learned = None;
        }
    }

    pub(crate) fn set_sending(&self, on: bool) {
        self.inner.sending.send_replace(on);
    }

    fn learn(&self, from: SocketAddr) {
        let mut t = self.inner.target.lock().unwrap_or_else(PoisonError::into_inner);
        if t.learned != Some(from) {
            debug!(%from, "symmetric RTP: sending to the caller's source");
            t.learned = Some(from);
        }
    }

    pub(crate) async fn send(
        &self,
        payload_type: u8,
        payload: &[u8],
        timestamp_increment: u32,
        marker: bool,
    ) -> Result<(), SipError> {
        let header = {
            let mut s = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            if s.started {
                s.seq = s.seq.wrapping_add(1);
                s.timestamp = s.timestamp.wrapping_add(timestamp_increment);
            }
            s.started = true;
            rtp::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: s.seq,
                timestamp: s.timestamp,
                ssrc: s.ssrc,
                ..rtp::Header::default()
            }
        };
        if !*self.inner.sending.borrow() {
            return Ok(());
        }
        let to = {
            let t = self.inner.target.lock().unwrap_or_else(PoisonError::into_inner);
            t.learned.unwrap_or(t.sdp)
        };
        // The header is ours and never padded, so building cannot fail but by a
        // bug; it is an error of the leg all the same, not a panic.
        let datagram = rtp::build(&header, payload).map_err(|e| SipError::RtpBuild(e.to_string()))?;
        self.inner.socket.send_to(&datagram, to).await?;
        Ok(())
    }
}

/// Why the reader stopped on its own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReaderEnd {
    /// No RTP for the timeout while answered and not held.
    Inactive,
    /// The call's event receiver is gone.
    Closed,
}

/// Read the caller's RTP into `events` until `cancel`, a closed receiver,
/// or `timeout` without a packet while `watching` is true (answered and
/// not on hold: a held caller may rightly send nothing).
pub(crate) async fn read(
    sender: RtpSender,
    events: mpsc::Sender<LegEvent>,
    timeout: Duration,
    mut watching: watch::Receiver<bool>,
    metrics: Arc<SipMetrics>,
    cancel: CancellationToken,
) -> ReaderEnd {
    let socket = sender.inner.socket.clone();
    let mut buf = vec![0u8; 2048];
    loop {
        let armed = *watching.borrow_and_update();
        let deadline = async {
            if armed {
                tokio::time::sleep(timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let got = tokio::select! {
            _ = cancel.cancelled() => return ReaderEnd::Closed,
            _ = deadline => return ReaderEnd::Inactive,
            // Re-arm the timer when the call is answered, held or resumed.
            changed = watching.changed() => {
                if changed.is_err() {
                    return ReaderEnd::Closed;
                }
                continue;
            }
            got = socket.recv_from(&mut buf) => got,
        };
        let (len, from) = match got {
            Ok(v) => v,
            // An ICMP port-unreachable from our own sends surfaces here on
            // some systems; it says nothing about the caller's stream.
            Err(e) => {
                debug!(error = %e, "RTP receive error");
                continue;
            }
        };
        let datagram = &buf[..len];
        if rtp::is_rtcp(datagram) {
            continue;
        }
        let packet = match rtp::parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                // Garbage on a media port is the sender's problem; logged, not fatal.
                warn!(%from, error = %e, "not an RTP packet");
                continue;
            }
        };
        sender.learn(from);
        let event = LegEvent::Rtp {
            payload_type: packet.header.payload_type,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            payload: packet.payload.to_vec(),
        };
        match events.try_send(event) {
            Ok(()) => {}
            // A consumer too slow loses audio rather than holding up the
            // socket: counted, so the loss shows.
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics.rtp_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return ReaderEnd::Closed,
        }
    }
}
