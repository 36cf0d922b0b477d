//! The SIP trunk leg against a real peer: SIPp (Debian's sip-tester, which
//! .ci/run installs) plays the carrier on loopback with the scenarios in
//! `tests/sipp/`. Each SIPp run is bounded (`-m 1`, `-timeout`, killed on
//! drop), and the runs take turns so their ports and timings never mix.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdp};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use telemed::sip::{CallerId, CancellationToken, Codec, HangupBy, IncomingCall, LegEvent, SipConfig, SipServer, Trunk};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, mpsc};
use tokio::time::timeout;

/// One SIPp scenario at a time (see the file comment).
static TURN: Mutex<()> = Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(15);

struct Server {
    server: SipServer,
    calls: mpsc::Receiver<IncomingCall>,
    cancel: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn server(cidr: &str, max_channels: u32, rtp_timeout: Duration) -> Server {
    // RUST_LOG=telemed=debug,rsipstack=info shows the SIP messages. Only
    // the first test's init succeeds; the others share its subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = SipConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![Trunk { name: "pstn".into(), cidrs: vec![cidr.parse().unwrap()], max_channels }],
    );
    config.rtp_ports = 31000..=31999;
    config.rtp_timeout = rtp_timeout;
    let cancel = CancellationToken::new();
    let (server, calls) = SipServer::start(config, cancel.clone()).await.unwrap();
    Server { server, calls, cancel }
}

fn free_udp_port(ip: IpAddr) -> u16 {
    StdUdp::bind(SocketAddr::new(ip, 0)).unwrap().local_addr().unwrap().port()
}

/// SIPp's own signalling port: free for UDP and for TCP at once, since SIPp
/// binds it with the transport it uses (`-t t1`: a TCP socket), and an
/// ephemeral UDP port can be some TCP connection's local port (CI once
/// failed with "Unable to bind main socket").
fn free_signalling_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let udp = StdUdp::bind(SocketAddr::new(ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

/// A media port whose +2 (SIPp's video port) is free too.
fn free_media_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let p = free_udp_port(ip) & !1;
        if p > 1024 && StdUdp::bind(SocketAddr::new(ip, p)).is_ok() && StdUdp::bind(SocketAddr::new(ip, p + 2)).is_ok()
        {
            return p;
        }
    }
    panic!("no free media port pair");
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name)
}

/// Start SIPp on `scenario` against `target`, from `local_ip`.
fn sipp(name: &str, target: SocketAddr, local_ip: &str) -> tokio::process::Child {
    sipp_with(name, target, local_ip, &[])
}

fn sipp_with(name: &str, target: SocketAddr, local_ip: &str, extra: &[&str]) -> tokio::process::Child {
    let ip: IpAddr = local_ip.parse().unwrap();
    let port = free_signalling_port(ip).to_string();
    let media = free_media_port(ip).to_string();
    let dir = std::env::temp_dir().join(format!("careline-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let errors = dir.join(format!("{name}-{port}.errors.log"));
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg("-sf")
        .arg(scenario(name))
        .arg(target.to_string())
        .args(["-i", local_ip, "-p", &port, "-mi", local_ip, "-mp", &media])
        .args(["-s", "104", "-m", "1", "-nostdin"])
        .args(["-timeout", "25s", "-timeout_error", "-recv_timeout", "12000"])
        .args(extra)
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&errors)
        .current_dir(&dir)
        // Files, not pipes: SIPp redraws its screen all the time, and a full
        // pipe nobody reads would stall it mid-call.
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}-{port}.out.log"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}-{port}.err.log"))).unwrap())
        .kill_on_drop(true);
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "sipp is not installed: these tests need SIPp as the SIP trunk peer \
             (apt-get install sip-tester; .ci/run installs it)"
        ),
        Err(e) => panic!("cannot start sipp: {e}"),
    }
}

/// Wait for SIPp to end; fail with its output unless every call passed.
async fn sipp_passes(child: tokio::process::Child, name: &str) {
    let out = timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sipp {name} did not end"))
        .unwrap();
    if !out.status.success() {
        let dir = std::env::temp_dir().join(format!("careline-sipp-{}", std::process::id()));
        let mut errors = String::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(name) {
                errors += &std::fs::read_to_string(entry.path()).unwrap_or_default();
            }
        }
        let tail: String = errors.chars().rev().take(6000).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("sipp {name} failed ({}):\n{tail}", out.status);
    }
}

async fn next_call(s: &mut Server) -> IncomingCall {
    timeout(WAIT, s.calls.recv()).await.expect("no call arrived").expect("server stopped")
}

/// Events until the call's last one (Hangup or Cancelled).
async fn events_until_end(call: &mut IncomingCall) -> Vec<LegEvent> {
    let mut out = Vec::new();
    loop {
        let e = timeout(WAIT, call.events.recv())
            .await
            .unwrap_or_else(|_| panic!("call did not end; events so far: {}", out.len()))
            .expect("events ended without a last event");
        let last = matches!(e, LegEvent::Hangup { .. } | LegEvent::Cancelled);
        out.push(e);
        if last {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g711_call_with_rtp_events_info_hold_and_bye_from_the_caller() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.0/8", 30, Duration::from_secs(10)).await;
    let peer = sipp("call.xml", s.server.local_addr(), "127.0.0.1");
    let mut call = next_call(&mut s).await;
    assert_eq!(call.trunk, "pstn");
    assert_eq!(call.called, "104");
    assert_eq!(
        call.caller,
        CallerId { number: Some("+919812345678".into()), name: None, withheld: false },
        "P-Asserted-Identity wins over From"
    );
    assert_eq!((call.codec, call.telephone_event), (Codec::Pcma, Some(101)));
    call.handle.ring().await.unwrap();
    call.handle.answer().await.unwrap();
    for _ in 0..5 {
        call.handle.send_rtp(8, &[0xd5; 160], 160, false).await.unwrap();
    }
    let events = events_until_end(&mut call).await;
    sipp_passes(peer, "call.xml").await;

    let rtp =
        |pt| events.iter().filter(|e| matches!(e, LegEvent::Rtp { payload_type, .. } if *payload_type == pt)).count();
    assert!(rtp(8) >= 20, "PCMA packets: {}", rtp(8));
    assert!(rtp(101) >= 3, "RFC 4733 packets: {}", rtp(101));
    let control: Vec<&LegEvent> = events.iter().filter(|e| !matches!(e, LegEvent::Rtp { .. })).collect();
    assert_eq!(
        control,
        [
            &LegEvent::Info { digit: '5' },
            &LegEvent::Hold,
            &LegEvent::Resume,
            &LegEvent::Refreshed,
            &LegEvent::Hangup { by: HangupBy::Caller },
        ]
    );
    let m = s.server.metrics();
    assert_eq!(m.calls_by_trunk.get("pstn"), Some(&1));
    assert!(m.responses.get(&180).is_some_and(|n| *n >= 1), "{m:?}");
    assert!(m.responses.get(&200).is_some_and(|n| *n >= 6), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_ringing_is_487_and_cancelled() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(10)).await;
    let peer = sipp("cancel.xml", s.server.local_addr(), "127.0.0.1");
    let mut call = next_call(&mut s).await;
    call.handle.ring().await.unwrap();
    assert_eq!(events_until_end(&mut call).await, [LegEvent::Cancelled]);
    sipp_passes(peer, "cancel.xml").await;
    assert!(s.server.metrics().responses.contains_key(&487));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_is_no_trunk_gets_403() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.2/32", 30, Duration::from_secs(10)).await;
    let peer = sipp("expect_403.xml", s.server.local_addr(), "127.0.0.3");
    sipp_passes(peer, "expect_403.xml").await;
    assert!(s.calls.try_recv().is_err(), "no call reaches the application");
    let m = s.server.metrics();
    assert_eq!((m.untrusted, m.responses.get(&403)), (1, Some(&1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_beyond_the_trunks_channels_gets_503() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 1, Duration::from_secs(10)).await;
    let first = sipp("long_call.xml", s.server.local_addr(), "127.0.0.1");
    let mut call = next_call(&mut s).await;
    call.handle.answer().await.unwrap();
    let second = sipp("expect_503.xml", s.server.local_addr(), "127.0.0.1");
    sipp_passes(second, "expect_503.xml").await;
    assert!(s.calls.try_recv().is_err());
    let events = events_until_end(&mut call).await;
    assert_eq!(events.last(), Some(&LegEvent::Hangup { by: HangupBy::Caller }));
    sipp_passes(first, "long_call.xml").await;
    assert_eq!(s.server.metrics().responses.get(&503), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g729_only_gets_488_naming_what_is_supported() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(10)).await;
    let peer = sipp("g729.xml", s.server.local_addr(), "127.0.0.1");
    sipp_passes(peer, "g729.xml").await;
    assert!(s.calls.try_recv().is_err());
    assert_eq!(s.server.metrics().responses.get(&488), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rtp_within_the_timeout_ends_the_call_with_our_bye() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(1)).await;
    let peer = sipp("silent.xml", s.server.local_addr(), "127.0.0.1");
    let mut call = next_call(&mut s).await;
    call.handle.answer().await.unwrap();
    assert_eq!(events_until_end(&mut call).await, [LegEvent::Hangup { by: HangupBy::Timeout }]);
    sipp_passes(peer, "silent.xml").await;
}

const BAD_SDP_INVITE: &str = "INVITE sip:104@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK-badsdp\r\n\
From: <sip:011@127.0.0.1>;tag=a1\r\nTo: <sip:104@127.0.0.1>\r\n\
Call-ID: bad-sdp@test\r\nCSeq: 1 INVITE\r\nContact: <sip:t@127.0.0.1:PORT>\r\n\
Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 12\r\n\r\nnot an offer";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_gets_an_error_or_silence_and_a_good_call_follows() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(10)).await;
    let target = s.server.local_addr();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port().to_string();

    let mut x: u32 = 0xc0ff_ee11;
    for len in [1usize, 7, 100, 1400] {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        sock.send_to(&junk, target).await.unwrap();
    }
    let invite = BAD_SDP_INVITE.replace("PORT", &port);
    // Truncated mid-header, and cut short of its Content-Length.
    sock.send_to(&invite.as_bytes()[..120], target).await.unwrap();
    sock.send_to(&invite.as_bytes()[..invite.len() - 4], target).await.unwrap();
    sock.send_to(b"SIP/2.0 200 OK\r\n\r\n", target).await.unwrap();
    // Garbage over TCP too.
    let mut tcp = tokio::net::TcpStream::connect(target).await.unwrap();
    tcp.write_all(b"\x00\x01INVITE garbage\r\n\r\nContent-Length: -5\r\n\r\n").await.unwrap();

    // A well-formed INVITE with a broken offer is answered 400.
    sock.send_to(invite.as_bytes(), target).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let (n, _) = timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("no answer to the INVITE with a bad SDP")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            break text;
        }
    };
    assert!(answer.starts_with("SIP/2.0 400"), "{answer}");
    assert!(s.calls.try_recv().is_err());

    // The server still takes a good call.
    let peer = sipp("long_call.xml", target, "127.0.0.1");
    let mut call = next_call(&mut s).await;
    call.handle.answer().await.unwrap();
    assert_eq!(events_until_end(&mut call).await.last(), Some(&LegEvent::Hangup { by: HangupBy::Caller }));
    sipp_passes(peer, "long_call.xml").await;
    drop(tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tcp() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(10)).await;
    // -t t1: one TCP connection for the call.
    let peer = sipp_with("long_call.xml", s.server.local_addr(), "127.0.0.1", &["-t", "t1"]);
    let mut call = next_call(&mut s).await;
    call.handle.answer().await.unwrap();
    assert_eq!(events_until_end(&mut call).await.last(), Some(&LegEvent::Hangup { by: HangupBy::Caller }));
    sipp_passes(peer, "long_call.xml").await;
}

/// Send a good INVITE from `sig` with an SDP offer of PCMU at `media`'s port.
async fn raw_invite(sig: &tokio::net::UdpSocket, media: &tokio::net::UdpSocket, target: SocketAddr, call_id: &str) {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
        media.local_addr().unwrap().port()
    );
    let port = sig.local_addr().unwrap().port();
    let invite = BAD_SDP_INVITE
        .replace("PORT", &port.to_string())
        .replace("badsdp", call_id)
        .replace("bad-sdp@test", &format!("{call_id}@test"))
        .replace("Content-Length: 12\r\n\r\nnot an offer", &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
    sig.send_to(invite.as_bytes(), target).await.unwrap();
}

/// Cancelling the server ends an answered call with a BYE, and every task
/// of the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_bye_and_stops_every_task() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(10)).await;
    let sig = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw_invite(&sig, &media, s.server.local_addr(), "shutdown").await;
    let mut call = next_call(&mut s).await;
    call.handle.answer().await.unwrap();
    s.cancel.cancel();
    assert_eq!(events_until_end(&mut call).await, [LegEvent::Hangup { by: HangupBy::Shutdown }]);
    let mut buf = vec![0u8; 2048];
    let bye = loop {
        let (n, _) = timeout(WAIT, sig.recv_from(&mut buf)).await.expect("no BYE").unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("BYE ") {
            break text;
        }
    };
    assert!(bye.contains("Call-ID: shutdown@test"), "{bye}");
    timeout(Duration::from_secs(10), s.server.stopped()).await.expect("server tasks did not stop");
    assert!(call.handle.ring().await.is_err(), "the call is gone");
}

/// A caller whose RTP comes from another port than its SDP says (a NAT, a
/// media proxy): once its packets arrive, ours go there (symmetric RTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_is_symmetric() {
    let _turn = TURN.lock().await;
    let mut s = server("127.0.0.1/32", 30, Duration::from_secs(10)).await;
    let target = s.server.local_addr();
    let sig = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sdp_port = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw_invite(&sig, &sdp_port, target, "symmetric").await;
    let mut call = next_call(&mut s).await;
    assert_eq!((call.codec, call.telephone_event), (Codec::Pcmu, None));
    call.handle.answer().await.unwrap();
    let mut buf = vec![0u8; 2048];
    let answer = loop {
        let (n, _) = timeout(WAIT, sig.recv_from(&mut buf)).await.expect("no 200").unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("SIP/2.0 200") {
            break text;
        }
    };
    let our_port: u16 = answer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("an m=audio line in the 200");
    let ours: SocketAddr = format!("127.0.0.1:{our_port}").parse().unwrap();

    // Before the caller sends, our RTP goes to its SDP address.
    call.handle.send_rtp(0, &[0xff; 160], 160, true).await.unwrap();
    let (n, from) = timeout(WAIT, sdp_port.recv_from(&mut buf)).await.expect("no RTP at the SDP port").unwrap();
    assert_eq!((from, buf[1] & 0x7f, n), (ours, 0, 172));

    // The caller's RTP comes from elsewhere: it reaches the application…
    let packet = [0x80, 0, 0, 7, 0, 0, 0, 160, 0, 0, 0, 1, 0xff, 0xff];
    media.send_to(&packet, ours).await.unwrap();
    let got = timeout(WAIT, call.events.recv()).await.unwrap().unwrap();
    assert_eq!(
        got,
        LegEvent::Rtp { payload_type: 0, seq: 7, timestamp: 160, marker: false, payload: vec![0xff, 0xff] }
    );
    // …and ours follows it there.
    call.handle.send_rtp(0, &[0xff; 160], 160, false).await.unwrap();
    let (n, from) = timeout(WAIT, media.recv_from(&mut buf)).await.expect("no RTP at the caller's source").unwrap();
    assert_eq!((from, n), (ours, 172));
    call.handle.hangup().await.unwrap();
    assert_eq!(events_until_end(&mut call).await.last(), Some(&LegEvent::Hangup { by: HangupBy::Local }));
}
