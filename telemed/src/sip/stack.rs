//! The SIP stack adapter: the only module that imports `rsipstack`.
//!
//! rsipstack (0.7.14, pinned) provides the UDP and TCP transports, the
//! RFC 3261 §17 transactions (retransmissions, 100 Trying, CANCEL's 200
//! and the INVITE's 487, absorbing ACKs) and the UAS dialog (§12: tags,
//! Contact, route set, BYE answered 200). This module adds the trunk
//! policy in front of it, the SDP offer/answer (RFC 3264) and the per-call
//! task that turns dialog states into [`LegEvent`]s.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, HeadersExt, Method, Request, SipMessage, StatusCode};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TcpListenerConnection, TransportLayer};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::headers::{self, CallerId, SessionExpires};
use super::leg::{self, ReaderEnd, RtpSender};
use super::policy::{ChannelPermit, Channels, RateLimiter};
use super::sdp::{self, Negotiated, Origin};
use super::{CallHandle, CallId, Command, HangupBy, IncomingCall, LegEvent, SipConfig, SipError, SipMetrics};

/// How long a BYE of ours may wait for its 200 before the call is
/// considered over anyway (the transaction would retry for 32 s).
const BYE_WAIT: Duration = Duration::from_secs(2);
/// How long shutdown waits for calls to send their BYEs.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long start waits for rsipstack's TCP listener to accept.
const TCP_READY: Duration = Duration::from_secs(5);

fn stack_err(e: rsipstack::Error) -> SipError {
    SipError::Stack(e.to_string())
}

/// Counts every response put on the wire, by status code.
struct CountResponses(Arc<SipMetrics>);

impl MessageInspector for CountResponses {
    fn before_send(&self, msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Response(r) = &msg {
            self.0.response(r.status_code.code());
        }
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        msg
    }
}

/// What every call task shares.
struct Shared {
    config: SipConfig,
    media_ip: IpAddr,
    local: SocketAddr,
    metrics: Arc<SipMetrics>,
    dialogs: DialogLayer,
    channels: Channels,
    /// `std::sync::Mutex`: held for one bucket update, never across `.await`.
    rate: Mutex<RateLimiter>,
    next_call: AtomicU64,
    calls: mpsc::Sender<IncomingCall>,
    /// Cancelled by the application: stop taking calls, end those up.
    cancel: CancellationToken,
    /// Cancelled after the calls' BYEs went out: stops the endpoint and
    /// the transactions still running.
    stack_cancel: CancellationToken,
    /// The call tasks, waited for (with a grace period) before the stack stops.
    call_tasks: TaskTracker,
}

pub(super) async fn start(
    config: SipConfig,
    media_ip: IpAddr,
    metrics: Arc<SipMetrics>,
    tasks: TaskTracker,
    calls: mpsc::Sender<IncomingCall>,
    cancel: CancellationToken,
) -> Result<SocketAddr, SipError> {
    let stack_cancel = CancellationToken::new();
    let transport = TransportLayer::new(stack_cancel.clone());
    // Port 0: a port free for both UDP and TCP (an ephemeral UDP port can be
    // some TCP connection's local port), so that both transports share it.
    let mut config = config;
    if config.listen.port() == 0 {
        config.listen.set_port(free_udp_and_tcp_port(config.listen.ip())?);
    }
    let listen = config.listen;
    let listen_err =
        |e: rsipstack::Error| SipError::Listen { addr: listen, source: std::io::Error::other(e.to_string()) };
    // UDP first, so port 0 is resolved before TCP binds the same number.
    let udp = UdpConnection::create_connection(config.listen, None, Some(stack_cancel.child_token()))
        .await
        .map_err(listen_err)?;
    let local = udp.get_addr().get_socketaddr().map_err(|e| SipError::Stack(e.to_string()))?;
    let local = SocketAddr::new(config.listen.ip(), local.port());
    let tcp = TcpListenerConnection::new(local, None).await.map_err(listen_err)?;
    transport.add_transport(udp.into());
    transport.add_transport(tcp.into());

    let endpoint = EndpointBuilder::new()
        .with_user_agent(&config.user_agent)
        .with_transport_layer(transport)
        .with_cancel_token(stack_cancel.clone())
        .with_inspector(Box::new(CountResponses(metrics.clone())))
        .build();
    let mut incoming = endpoint.incoming_transactions().map_err(stack_err)?;
    let dialogs = DialogLayer::new(endpoint.inner.clone());
    let shared = Arc::new(Shared {
        rate: Mutex::new(RateLimiter::new(config.invite_rate_per_second)),
        config,
        media_ip,
        local,
        metrics,
        dialogs,
        channels: Channels::default(),
        next_call: AtomicU64::new(1),
        calls,
        cancel: cancel.clone(),
        stack_cancel: stack_cancel.clone(),
        call_tasks: TaskTracker::new(),
    });

    let inner = endpoint.inner.clone();
    tasks.spawn(async move {
        // serve() returns when stack_cancel is cancelled.
        if let Err(e) = inner.serve().await {
            warn!(error = %e, "SIP endpoint stopped");
        }
    });

    let s = shared.clone();
    tasks.spawn(async move {
        s.cancel.cancelled().await;
        s.call_tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, s.call_tasks.wait()).await.is_err() {
            warn!("SIP calls did not end within the shutdown grace period");
        }
        s.stack_cancel.cancel();
    });

    let s = shared.clone();
    let spawner = tasks.clone();
    tasks.spawn(async move {
        loop {
            let tx = tokio::select! {
                _ = s.stack_cancel.cancelled() => break,
                tx = incoming.recv() => match tx {
                    Some(tx) => tx,
                    None => break,
                },
            };
            dispatch(&s, &spawner, tx).await;
        }
    });
    // rsipstack binds the TCP listener in a task of its own (`serve`), and logs
    // rather than returns a failed bind: wait until it accepts, so that start
    // returns only once both transports listen, or fails saying TCP did not.
    let probe = match local.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
        }
        ip if ip.is_unspecified() => SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), local.port()),
        _ => local,
    };
    let deadline = tokio::time::Instant::now() + TCP_READY;
    loop {
        match tokio::net::TcpStream::connect(probe).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                stack_cancel.cancel();
                return Err(SipError::Listen { addr: local, source: e });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    info!(%local, "SIP listening (UDP and TCP)");
    Ok(local)
}

fn source_ip(tx: &Transaction) -> Option<IpAddr> {
    tx.connection
        .as_ref()
        .and_then(SipConnection::get_remote_addr)
        .and_then(|a| a.get_socketaddr().ok())
        .map(|a| a.ip())
}

fn has_to_tag(req: &Request) -> bool {
    req.to_header().ok().and_then(|to| to.tag().ok().flatten()).is_some()
}

/// Reply outside any dialog; a failure to send is logged, as there is no
/// one else to tell (the peer will retransmit or give up).
async fn reply(tx: &mut Transaction, code: u16, headers: Vec<Header>) {
    if let Err(e) = tx.reply_with(StatusCode::from(code), headers, None).await {
        warn!(code, error = %e, "could not send SIP response");
    }
}

async fn dispatch(s: &Arc<Shared>, tasks: &TaskTracker, mut tx: Transaction) {
    let method = tx.original.method;
    if method == Method::Invite && !has_to_tag(&tx.original) {
        if s.cancel.is_cancelled() {
            reply(&mut tx, 503, vec![]).await;
            return;
        }
        new_invite(s, tasks, tx).await;
        return;
    }
    if let Some(mut dialog) = s.dialogs.match_dialog(&tx) {
        let stop = s.stack_cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = dialog.handle(&mut tx) => if let Err(e) = r {
                    debug!(error = %e, "in-dialog request");
                },
            }
        });
        return;
    }
    match method {
        // Trunks probe with OPTIONS (RFC 3261 §11); only trunks get a 200.
        Method::Options => {
            let trusted = source_ip(&tx).is_some_and(|ip| trunk_of(s, ip).is_some());
            reply(&mut tx, if trusted { 200 } else { 403 }, vec![]).await;
        }
        // An ACK for a transaction already gone (a late retransmission):
        // there is nothing to answer (RFC 3261 §17.2.3).
        Method::Ack => {}
        // RFC 3261 §12.2.2: a request for a dialog we do not have.
        _ => reply(&mut tx, 481, vec![]).await,
    }
}

fn trunk_of(s: &Shared, ip: IpAddr) -> Option<&super::Trunk> {
    s.config.trunks.iter().find(|t| t.cidrs.iter().any(|c| c.contains(ip)))
}

/// The `Warning` of a 488 (RFC 3261 §20.43, code 305: incompatible media
/// format) naming what we support, so the trunk's engineer sees why.
fn warning_488(err: &sdp::SdpError) -> Header {
    Header::Other("Warning".into(), format!("305 careline \"Incompatible media format: {err}\""))
}

/// RFC 4028 §9: the 2xx carries Session-Expires when the request did. The
/// caller refreshes when it supports timers and did not ask us to; we do
/// otherwise. Returns the headers and, when we refresh, the interval.
fn session_timer(req: &Request) -> (Vec<Header>, Option<(Duration, bool)>) {
    let Some(se) = req
        .header_value("Session-Expires")
        .or_else(|| req.header_value("x"))
        .as_deref()
        .and_then(SessionExpires::parse)
    else {
        return (vec![], None);
    };
    let supported = req
        .header_value("Supported")
        .or_else(|| req.header_value("k"))
        .is_some_and(|v| headers::lists_tag(&v, "timer"));
    let uac = supported && se.refresher_uac != Some(false);
    let secs = se.interval.as_secs().max(90);
    let mut out =
        vec![Header::Other("Session-Expires".into(), format!("{secs};refresher={}", if uac { "uac" } else { "uas" }))];
    if uac {
        out.push(Header::Other("Require".into(), "timer".into()));
    }
    (out, Some((Duration::from_secs(secs), uac)))
}

async fn new_invite(s: &Arc<Shared>, tasks: &TaskTracker, mut tx: Transaction) {
    let Some(ip) = source_ip(&tx) else {
        warn!("INVITE without a source address; refused");
        reply(&mut tx, 403, vec![]).await;
        return;
    };
    let allowed = s.rate.lock().unwrap_or_else(PoisonError::into_inner).allow(ip, Instant::now());
    if !allowed {
        // A final 503 stops the source's retransmissions, where dropping
        // the INVITE would invite eleven more (RFC 3261 §17.1.1.2).
        s.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        warn!(%ip, "INVITE rate exceeded; 503");
        reply(&mut tx, 503, vec![Header::Other("Retry-After".into(), "5".into())]).await;
        return;
    }
    let Some(trunk) = trunk_of(s, ip) else {
        s.metrics.untrusted.fetch_add(1, Ordering::Relaxed);
        warn!(%ip, from = ?tx.original.header_value("From"), "INVITE from an address that is no trunk; 403");
        reply(&mut tx, 403, vec![]).await;
        return;
    };
    let trunk_name = trunk.name.clone();
    s.metrics.call(&trunk_name);
    let Some(permit) = s.channels.try_take(&trunk_name, trunk.max_channels) else {
        info!(trunk = %trunk_name, "all channels in use; 503");
        reply(&mut tx, 503, vec![]).await;
        return;
    };
    let offer = sdp::parse(&tx.original.body).and_then(|sd| sdp::negotiate(&sd));
    let negotiated = match offer {
        Ok(n) => n,
        Err(e) => {
            info!(trunk = %trunk_name, error = %e, "INVITE offer refused");
            if e.is_not_acceptable() {
                reply(&mut tx, 488, vec![warning_488(&e)]).await;
            } else {
                // An INVITE without an offer lands here too: this UAS does
                // not make offers in its 200 (no late offer yet).
                let reason = format!("399 careline \"Bad or missing SDP offer: {e}\"");
                reply(&mut tx, 400, vec![Header::Other("Warning".into(), reason)]).await;
            }
            return;
        }
    };
    let socket = match leg::bind(s.media_ip, &s.config.rtp_ports).await {
        Ok(sock) => Arc::new(sock),
        Err(e) => {
            warn!(error = %e, "no RTP socket for a call; 503");
            reply(&mut tx, 503, vec![]).await;
            return;
        }
    };
    let transport = tx.connection.as_ref().map(SipConnection::transport).unwrap_or(rsipstack::sip::Transport::Udp);
    let contact = match transport {
        rsipstack::sip::Transport::Udp => format!("sip:careline@{}", s.local),
        _ => format!("sip:careline@{};transport=tcp", s.local),
    };
    let contact = match rsipstack::sip::Uri::try_from(contact.as_str()) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "bad Contact URI");
            reply(&mut tx, 500, vec![]).await;
            return;
        }
    };
    let (state_tx, states) = s.dialogs.new_dialog_state_channel();
    let dialog = match s.dialogs.get_or_create_server_invite(&tx, state_tx, None, Some(contact)) {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "cannot create the dialog");
            reply(&mut tx, 500, vec![]).await;
            return;
        }
    };

    let req = tx.original.clone();
    let id = CallId(s.next_call.fetch_add(1, Ordering::Relaxed));
    let caller = CallerId::from_headers(
        req.header_value("P-Asserted-Identity").as_deref(),
        req.header_value("From").as_deref(),
        req.header_value("Privacy").as_deref(),
    );
    let called = headers::user_of(&req.uri.to_string())
        .or_else(|| req.header_value("To").as_deref().and_then(headers::user_of))
        .unwrap_or_default();

    // The INVITE server transaction: 100 Trying, then ACK or CANCEL.
    let mut driver = dialog.clone();
    let stop = s.stack_cancel.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            r = driver.handle(&mut tx) => if let Err(e) = r {
                debug!(error = %e, "INVITE transaction");
            },
        }
    });

    let rtp = RtpSender::new(socket, negotiated.remote);
    let (commands_tx, commands) = mpsc::channel(16);
    let (events_tx, events) = mpsc::channel(512);
    let call = IncomingCall {
        id,
        trunk: trunk_name.clone(),
        caller,
        called,
        codec: negotiated.codec,
        telephone_event: negotiated.telephone_event,
        ptime_ms: negotiated.ptime_ms,
        handle: CallHandle { id, commands: commands_tx, rtp: rtp.clone() },
        events,
    };
    info!(%id, trunk = %trunk_name, caller = ?call.caller, called = %call.called, "incoming call");
    let task = CallTask {
        id,
        shared: s.clone(),
        dialog,
        states,
        commands,
        events: events_tx,
        rtp,
        negotiated,
        origin: Origin { session_id: rand::random::<u32>().into(), version: 1 },
        invite: req,
        answered: false,
        held: false,
        receiving: watch::Sender::new(false),
        expires_at: None,
        _permit: permit,
    };
    if let Err(e) = s.calls.try_send(call) {
        // The application is not taking calls (full or gone): say so
        // rather than ringing out.
        warn!(%id, error = %e, "call not taken by the application; 503");
        if let Err(e) = task.dialog.reject(Some(StatusCode::from(503)), None) {
            warn!(%id, error = %e, "could not send 503");
        }
        s.dialogs.remove_dialog(&task.dialog.id());
        return;
    }
    s.call_tasks.spawn(task.run());
}

/// How a call ended, for the last event.
enum End {
    Event(LegEvent),
    /// Handle dropped or the call refused by us: no more events needed.
    Quiet,
}

struct CallTask {
    id: CallId,
    shared: Arc<Shared>,
    dialog: InviteDialog,
    states: DialogStateReceiver,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<LegEvent>,
    rtp: RtpSender,
    negotiated: Negotiated,
    origin: Origin,
    /// The INVITE, for its session timer headers.
    invite: Request,
    answered: bool,
    held: bool,
    /// Whether the caller should be sending us RTP (answered, and its
    /// direction sendrecv or sendonly): arms the inactivity timeout.
    receiving: watch::Sender<bool>,
    /// When the session expires without a refresh (RFC 4028 §10), and
    /// whether we are the refresher.
    expires_at: Option<(tokio::time::Instant, Duration, bool)>,
    /// Held for the whole call: the trunk's channel.
    _permit: ChannelPermit,
}

impl CallTask {
    async fn run(mut self) {
        let reader_cancel = self.shared.stack_cancel.child_token();
        let reader = tokio::spawn(leg::read(
            self.rtp.clone(),
            self.events.clone(),
            self.shared.config.rtp_timeout,
            self.receiving.subscribe(),
            self.shared.metrics.clone(),
            reader_cancel.clone(),
        ));
        let mut reader = Some(reader);
        let end = loop {
            let timer = async {
                match self.expires_at {
                    Some((at, _, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shared.cancel.cancelled() => {
                    self.end_by_us(503).await;
                    break End::Event(LegEvent::Hangup { by: HangupBy::Shutdown });
                }
                _ = timer => {
                    if let Some(end) = self.session_timer_fired().await {
                        break end;
                    }
                }
                ended = async { reader.as_mut().expect("polled only while Some").await }, if reader.is_some() => {
                    reader = None;
                    match ended {
                        Ok(ReaderEnd::Inactive) => {
                            info!(id = %self.id, "no RTP within the timeout; BYE");
                            self.end_by_us(408).await;
                            break End::Event(LegEvent::Hangup { by: HangupBy::Timeout });
                        }
                        // The receiver is gone: nobody listens to the call.
                        Ok(ReaderEnd::Closed) => {}
                        Err(e) => warn!(id = %self.id, error = %e, "RTP reader failed"),
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => if let Some(end) = self.command(cmd).await {
                        break end;
                    },
                    None => {
                        // Every handle dropped: nobody can end the call later.
                        self.end_by_us(480).await;
                        break End::Quiet;
                    }
                },
                state = self.states.recv() => match state {
                    Some(state) => if let Some(end) = self.state(state).await {
                        break end;
                    },
                    None => break End::Event(LegEvent::Hangup { by: HangupBy::Caller }),
                },
            }
        };
        reader_cancel.cancel();
        self.rtp.set_sending(false);
        self.shared.dialogs.remove_dialog(&self.dialog.id());
        if let End::Event(e) = end {
            info!(id = %self.id, event = ?e, "call ended");
            // A closed receiver means the application already let go.
            if self.events.send(e).await.is_err() {
                debug!(id = %self.id, "call ended after its events were dropped");
            }
        }
    }

    /// End the call from our side: BYE once answered, else a final response.
    async fn end_by_us(&mut self, code_if_unanswered: u16) {
        if self.answered {
            match tokio::time::timeout(BYE_WAIT, self.dialog.bye()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(id = %self.id, error = %e, "BYE failed"),
                Err(_) => debug!(id = %self.id, "BYE unanswered within {BYE_WAIT:?}"),
            }
        } else if let Err(e) = self.dialog.reject(Some(StatusCode::from(code_if_unanswered)), None) {
            warn!(id = %self.id, error = %e, "could not send the final response");
        }
    }

    fn answer_body(&self) -> Result<Vec<u8>, SipError> {
        let local = SocketAddr::new(self.shared.media_ip, self.rtp.local_addr()?.port());
        Ok(sdp::answer(&self.negotiated, local, self.origin).into_bytes())
    }

    fn apply_direction(&mut self) {
        let d = self.negotiated.direction;
        self.held = d.is_hold();
        self.rtp.set_sdp_target(self.negotiated.remote);
        self.rtp.set_sending(self.answered && matches!(d, sdp::Direction::SendRecv | sdp::Direction::RecvOnly));
        self.receiving.send_replace(self.answered && matches!(d, sdp::Direction::SendRecv | sdp::Direction::SendOnly));
    }

    fn arm_session_timer(&mut self, req: &Request) -> Vec<Header> {
        let (headers, timer) = session_timer(req);
        self.expires_at = timer.map(|(interval, uac)| {
            // RFC 4028 §10: we BYE a bit before expiry when the caller
            // refreshes; we refresh at half the interval when we do.
            let wait = if uac { interval - (interval / 3).min(Duration::from_secs(32)) } else { interval / 2 };
            (tokio::time::Instant::now() + wait, interval, uac)
        });
        headers
    }

    async fn session_timer_fired(&mut self) -> Option<End> {
        let (_, interval, uac) = self.expires_at?;
        if uac {
            info!(id = %self.id, "session not refreshed (RFC 4028); BYE");
            self.end_by_us(408).await;
            return Some(End::Event(LegEvent::Hangup { by: HangupBy::Timeout }));
        }
        // We are the refresher: a re-INVITE with the same SDP.
        self.expires_at = Some((tokio::time::Instant::now() + interval / 2, interval, false));
        let body = match self.answer_body() {
            Ok(b) => b,
            Err(e) => {
                warn!(id = %self.id, error = %e, "session refresh skipped");
                return None;
            }
        };
        let hdrs = vec![
            Header::ContentType("application/sdp".into()),
            Header::Other("Session-Expires".into(), format!("{};refresher=uas", interval.as_secs())),
        ];
        let refreshed = tokio::time::timeout(BYE_WAIT * 2, self.dialog.reinvite(Some(hdrs), Some(body)));
        let why = match refreshed.await {
            Ok(Ok(Some(resp))) if resp.status_code.code() < 300 => return None,
            Ok(Ok(Some(resp))) => format!("answered {}", resp.status_code.code()),
            Ok(Ok(None)) => "no response".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        info!(id = %self.id, why, "session refresh failed; BYE");
        self.end_by_us(408).await;
        Some(End::Event(LegEvent::Hangup { by: HangupBy::Timeout }))
    }

    async fn command(&mut self, cmd: Command) -> Option<End> {
        match cmd {
            Command::Ring => {
                if let Err(e) = self.dialog.ringing(None, None) {
                    warn!(id = %self.id, error = %e, "could not send 180");
                }
                None
            }
            Command::Answer(done) => {
                let result = self.answer();
                let failed = result.is_err();
                // The caller of answer() may have given up waiting; then
                // the result has no one to go to.
                if done.send(result).is_err() {
                    debug!(id = %self.id, "answer result not awaited");
                }
                if failed {
                    // The INVITE still needs a final response.
                    self.end_by_us(500).await;
                    return Some(End::Event(LegEvent::Hangup { by: HangupBy::Local }));
                }
                None
            }
            Command::Reject(code) => {
                let code = if (300..700).contains(&code) { code } else { 603 };
                if self.answered {
                    self.end_by_us(code).await;
                } else if let Err(e) = self.dialog.reject(Some(StatusCode::from(code)), None) {
                    warn!(id = %self.id, error = %e, "could not reject");
                }
                Some(End::Event(LegEvent::Hangup { by: HangupBy::Local }))
            }
            Command::Hangup => {
                self.end_by_us(480).await;
                Some(End::Event(LegEvent::Hangup { by: HangupBy::Local }))
            }
        }
    }

    fn answer(&mut self) -> Result<(), SipError> {
        if self.answered {
            return Err(SipError::WrongState("answer twice"));
        }
        let body = self.answer_body()?;
        let invite = self.invite.clone();
        let mut hdrs = vec![Header::ContentType("application/sdp".into())];
        hdrs.extend(self.arm_session_timer(&invite));
        self.dialog.accept(Some(hdrs), Some(body)).map_err(stack_err)?;
        self.answered = true;
        self.apply_direction();
        Ok(())
    }

    async fn state(&mut self, state: DialogState) -> Option<End> {
        match state {
            DialogState::Terminated(_, reason) => {
                let event = match reason {
                    TerminatedReason::UacCancel => LegEvent::Cancelled,
                    TerminatedReason::Timeout => LegEvent::Hangup { by: HangupBy::Timeout },
                    // Our own reject: already reported by the command.
                    TerminatedReason::UasDecline | TerminatedReason::UasBye | TerminatedReason::UasBusy => {
                        return Some(End::Quiet);
                    }
                    _ => LegEvent::Hangup { by: HangupBy::Caller },
                };
                Some(End::Event(event))
            }
            DialogState::Info(_, req, handle) => {
                let ct = req.header_value("Content-Type").unwrap_or_default();
                let digit = headers::dtmf_from_info(&ct, &String::from_utf8_lossy(&req.body));
                // RFC 6086 §4.2: 415 for an INFO body we do not understand
                // (an empty one is a keep-alive and gets 200).
                let code = if digit.is_some() || req.body.is_empty() { 200 } else { 415 };
                if let Err(e) = handle.reply(StatusCode::from(code)).await {
                    warn!(id = %self.id, error = %e, "could not answer INFO");
                }
                if let Some(digit) = digit {
                    self.emit(LegEvent::Info { digit }).await;
                }
                None
            }
            DialogState::Updated(_, req, handle) => {
                let (code, headers, body, event) = self.re_offer(&req);
                if let Err(e) = handle.respond(StatusCode::from(code), Some(headers), body).await {
                    warn!(id = %self.id, error = %e, "could not answer the new offer");
                }
                if let Some(event) = event {
                    self.emit(event).await;
                }
                None
            }
            DialogState::Options(_, _, handle) => {
                if let Err(e) = handle.reply(StatusCode::OK).await {
                    warn!(id = %self.id, error = %e, "could not answer OPTIONS");
                }
                None
            }
            DialogState::Notify(_, _, handle)
            | DialogState::Refer(_, _, handle)
            | DialogState::Message(_, _, handle)
            | DialogState::Publish(_, _, handle) => {
                if let Err(e) = handle.reply(StatusCode::from(405)).await {
                    warn!(id = %self.id, error = %e, "could not answer a request");
                }
                None
            }
            DialogState::Calling(_)
            | DialogState::Trying(_)
            | DialogState::Early(_, _)
            | DialogState::WaitAck(_, _)
            | DialogState::Confirmed(_, _) => None,
        }
    }

    /// Answer a re-INVITE or UPDATE (RFC 3311): a new offer (hold, resume,
    /// a moved address) or a session refresh (RFC 4028 §7.4) answered with
    /// the same SDP and version when nothing changed.
    fn re_offer(&mut self, req: &Request) -> (u16, Vec<Header>, Option<Vec<u8>>, Option<LegEvent>) {
        let mut hdrs = self.arm_session_timer(req);
        let is_invite = req.method == Method::Invite;
        if req.body.is_empty() {
            if !is_invite {
                return (200, hdrs, None, Some(LegEvent::Refreshed));
            }
            // A re-INVITE without an offer: our SDP becomes the offer
            // (RFC 3264 §8), and the caller's answer comes in the ACK.
            return match self.answer_body() {
                Ok(body) => {
                    hdrs.push(Header::ContentType("application/sdp".into()));
                    (200, hdrs, Some(body), Some(LegEvent::Refreshed))
                }
                Err(e) => {
                    warn!(id = %self.id, error = %e, "no SDP for a re-INVITE");
                    (500, hdrs, None, None)
                }
            };
        }
        let offer = sdp::parse(&req.body).and_then(|sd| sdp::negotiate_keeping(&sd, Some(self.negotiated.codec)));
        let negotiated = match offer {
            Ok(n) => n,
            Err(e) => {
                // RFC 3264 §8: a refused re-offer leaves the session as it was.
                info!(id = %self.id, error = %e, "new offer refused");
                let code = if e.is_not_acceptable() { 488 } else { 400 };
                return (code, vec![warning_488(&e)], None, None);
            }
        };
        let was_held = self.held;
        let changed = negotiated != self.negotiated;
        if changed {
            self.origin.version += 1;
            self.negotiated = negotiated;
            self.apply_direction();
        }
        let event = match (was_held, self.held) {
            (false, true) => LegEvent::Hold,
            (true, false) => LegEvent::Resume,
            _ => LegEvent::Refreshed,
        };
        match self.answer_body() {
            Ok(body) => {
                hdrs.push(Header::ContentType("application/sdp".into()));
                (200, hdrs, Some(body), Some(event))
            }
            Err(e) => {
                warn!(id = %self.id, error = %e, "no SDP for a new offer");
                (500, hdrs, None, None)
            }
        }
    }

    async fn emit(&self, event: LegEvent) {
        // A closed receiver means the application let go of the call; the
        // event has no one to go to.
        if self.events.send(event).await.is_err() {
            debug!(id = %self.id, "event after the receiver was dropped");
        }
    }
}

/// A port on `ip` where both a UDP socket and a TCP listener bind now.
fn free_udp_and_tcp_port(ip: std::net::IpAddr) -> Result<u16, SipError> {
    let mut last = None;
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind((ip, 0))?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind((ip, port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(SipError::Listen {
        addr: SocketAddr::new(ip, 0),
        source: last.unwrap_or_else(|| std::io::Error::other("no port free for both UDP and TCP")),
    })
}
