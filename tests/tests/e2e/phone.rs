//! The phone channel end to end: SIPp dials the real `careline serve
//! --sip-listen` from loopback as the trunk, keys through the IVR with
//! RFC 4733 digits, waits in the queue, and an operator is offered the call.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tests::{Careline, client, next_where, repo_root, sse};

/// A free UDP port on `ip` (for SIPp's own SIP and RTP sockets).
fn free_udp_port_on(ip: &str) -> u16 {
    std::net::UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    free_udp_port_on("127.0.0.1")
}

/// SIPp on `scenario` (a path from the repository root) against `target`,
/// from the loopback address `from` (127.0.0.1 is the trunk).
fn sipp(scenario: &str, target: &str, from: &str, dir: &std::path::Path) -> tokio::process::Child {
    let port = free_udp_port_on(from).to_string();
    let media = free_udp_port_on(from).to_string();
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg("-sf")
        .arg(repo_root().join(scenario))
        .arg(target)
        .args(["-i", from, "-p", &port, "-mi", from, "-mp", &media])
        .args(["-s", "104", "-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .current_dir(dir)
        // Files, not pipes: SIPp redraws its screen all the time and would
        // stall on a full pipe nobody reads.
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("sipp.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("sipp.err")).unwrap())
        .kill_on_drop(true);
    cmd.spawn().unwrap_or_else(|e| panic!("sipp (Debian's sip-tester) must be installed; .ci/run installs it: {e}"))
}

#[tokio::test]
async fn a_phone_caller_keys_through_the_ivr_into_the_queue_and_reaches_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(
        dir.path(),
        &["--demo", "--sip-listen", "127.0.0.1:0", "--sip-trunk", "127.0.0.1/32", "--rtp-ports", "33000-33999"],
        &[],
    );
    let target = server.sip.clone().expect("careline prints the SIP address");
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;
    let (status, body) = server.post(&asha, "/api/agent/session", json!({"seat_id": 1})).await;
    assert_eq!(status, 200, "{body}");
    let mut desk = sse(server.url("/api/agent/stream"), Some(&asha)).await;
    let (status, body) = server.post(&asha, "/api/agent/ready", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let mut caller = sipp("tests/sipp/ivr-to-queue.xml", &target, "127.0.0.1", dir.path());
    // 2 (English), then 0 (an operator): the call is queued and offered.
    let offer = next_where(&mut desk, 20, |u| u["type"] == "offer").await;
    let id = offer["contact"].as_str().unwrap().to_owned();
    let (status, contact) = server.post(&asha, &format!("/api/contacts/{id}/accept"), json!({})).await;
    assert_eq!(status, 200, "{contact}");
    assert_eq!(contact["channel"], "phone", "{contact}");
    assert_eq!(contact["language"], "en", "{contact}");
    assert_eq!(contact["caller_phone"], "01123456789", "the landline number as the trunk sent it: {contact}");

    // The caller hangs up: the contact ends and the operator goes to wrap-up.
    let status = tokio::time::timeout(Duration::from_secs(30), caller.wait()).await.expect("sipp ends").unwrap();
    let said = std::fs::read_to_string(dir.path().join("sipp.err")).unwrap_or_default();
    assert!(status.success(), "sipp failed: {said}");
    let http = client();
    let ended = async {
        loop {
            let c: Value = http
                .get(server.url(&format!("/api/contacts/{id}")))
                .bearer_auth(&asha)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            // Ended by the caller: the operator's wrap-up follows.
            if c["status"] == "wrap_up" {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), ended).await.is_err() {
        panic!(
            "the contact did not go to wrap-up when the caller hung up; the server said:\n{}",
            server.drain_output().join("\n")
        );
    }

    // An INVITE from 127.0.0.3, which is no trunk: refused with 403 before
    // any call exists (telemed's own scenario for this).
    let mut stranger = sipp("telemed/tests/sipp/expect_403.xml", &target, "127.0.0.3", dir.path());
    let status = tokio::time::timeout(Duration::from_secs(30), stranger.wait()).await.expect("sipp ends").unwrap();
    let said = std::fs::read_to_string(dir.path().join("sipp.err")).unwrap_or_default();
    assert!(status.success(), "sipp (expect_403) failed: {said}");

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"careline_phone_calls_total{trunk="trunk"} 1"#,
        r#"careline_ivr_outcomes_total{outcome="queued"} 1"#,
        r#"careline_phone_digits_total{source="rfc4733"} 2"#,
        // The SIP server's own counters: the stranger's INVITE, nothing rate-limited.
        r#"careline_sip_invites_refused_total{reason="untrusted"} 1"#,
        r#"careline_sip_invites_refused_total{reason="rate_limited"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics:\n{metrics}");
    }
    let count =
        |prefix: &str| metrics.lines().find_map(|l| l.strip_prefix(prefix)).and_then(|v| v.trim().parse::<f64>().ok());
    // Retransmissions are counted too, so at least, not exactly: 100 Trying
    // and 200 to the INVITE, 200 to the caller's BYE, 403 to the stranger.
    for (code, least) in [("100", 1.0), ("200", 2.0), ("403", 1.0)] {
        let n = count(&format!(r#"careline_sip_responses_total{{code="{code}"}} "#)).unwrap_or(0.0);
        assert!(n >= least, "{n} responses {code}, expected at least {least}:\n{metrics}");
    }
    // Whether the server fell behind on the caller's audio depends on the
    // machine; the counter is there either way.
    assert!(count("careline_sip_rtp_dropped_total ").is_some(), "no careline_sip_rtp_dropped_total:\n{metrics}");
}

/// The caller's tone, and the operator's (their fake microphone).
const CALLER_HZ: f32 = 500.0;
const OPERATOR_HZ: f32 = 1_000.0;

/// A WAV for Chromium's fake microphone: 1 kHz beeps, 300 ms on and 200 ms
/// off, 16 kHz mono. Beeps rather than a steady tone, so that the browser's
/// noise suppression does not learn the tone as background and remove it.
fn beeps_wav(path: &std::path::Path) {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate * 10)
        .map(|n| {
            let on = (n % (rate / 2)) < rate * 3 / 10;
            let x = (2.0 * std::f32::consts::PI * OPERATOR_HZ * n as f32 / rate as f32).sin();
            if on { (x * 0.5 * 32_767.0) as i16 } else { 0 }
        })
        .collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(path, wav).unwrap();
}

/// The share of the signal's energy at `freq` (Goertzel), at 8 kHz.
fn tone_share(pcm: &[i16], freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / 8_000.0;
    let (mut s1, mut s2) = (0f32, 0f32);
    for &x in pcm {
        let s = f32::from(x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let energy: f32 = pcm.iter().map(|&x| f32::from(x).powi(2)).sum();
    if energy <= f32::EPSILON { 0.0 } else { 2.0 * power / (pcm.len() as f32 * energy) }
}

/// What the test's phone heard: the decoded A-law of each packet, as it came.
type Heard = Vec<(std::time::Instant, Vec<i16>)>;

/// The caller's phone: from the first packet the server sends (which says
/// where its RTP is: symmetric RTP), it sends 20 ms of A-law tone every
/// 20 ms, keys 2 (English) and 0 (an operator) as RFC 4733 events, and
/// keeps what it hears, until `stop`.
async fn phone(socket: tokio::net::UdpSocket, mut stop: tokio::sync::oneshot::Receiver<()>) -> Heard {
    use telemed::phone::dtmf::TelephoneEvent;
    use telemed::phone::g711::Law;
    let mut heard = Heard::new();
    let mut server = None;
    let mut started = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut ts, ssrc) = (1u16, 8_000u32, 0x5eed_u32);
    let mut buf = [0u8; 2048];
    // 20 ms ticks so far.
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            got = socket.recv_from(&mut buf) => {
                let (len, from) = got.unwrap();
                server.get_or_insert(from);
                started.get_or_insert(n);
                // RFC 3550 §5.1: 12 octets and the CSRCs; PCMA only (the server sends no extensions).
                let csrcs = usize::from(buf[0] & 0x0f) * 4;
                if len > 12 + csrcs && buf[1] & 0x7f == 8 {
                    heard.push((std::time::Instant::now(), Law::A.decode(&buf[12 + csrcs..len])));
                }
                continue;
            }
            _ = tick.tick() => n += 1,
        }
        let (Some(server), Some(start)) = (server, started) else { continue };
        // 1.5 s into the welcome, then 1.5 s later: an event of 100 ms and three end packets.
        let keys = [(75, 2u8), (150, 0u8)];
        let mut packet = |payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]| {
            let mut p = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&timestamp.to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(payload);
            seq = seq.wrapping_add(1);
            p
        };
        let t = n - start;
        let event = keys.iter().find(|(at, _)| (*at..*at + 8).contains(&t));
        let datagram = match event {
            Some(&(at, key)) => {
                let step = (t - at) as u16;
                let event =
                    TelephoneEvent { event: key, end: step >= 5, volume: 10, duration: (step.min(5) + 1) * 160 };
                packet(101, step == 0, ts - u32::from(step) * 160, &event.to_bytes().unwrap())
            }
            None => {
                let pcm: Vec<i16> = (0..160)
                    .map(|i| {
                        let x = 2.0 * std::f32::consts::PI * CALLER_HZ * (ts + i) as f32 / 8_000.0;
                        (x.sin() * 0.3 * 32_767.0) as i16
                    })
                    .collect();
                packet(8, false, ts, &Law::A.encode(&pcm))
            }
        };
        ts = ts.wrapping_add(160);
        socket.send_to(&datagram, server).await.unwrap();
    }
    heard
}

/// The heard audio between two instants, joined.
fn between(heard: &Heard, from: std::time::Instant, to: std::time::Instant) -> Vec<i16> {
    heard.iter().filter(|(at, _)| *at >= from && *at < to).flat_map(|(_, pcm)| pcm.iter().copied()).collect()
}

/// The largest share of `freq` in any 300 ms window (one beep) of `pcm`.
fn best_window(pcm: &[i16], freq: f32) -> f32 {
    pcm.chunks(2_400).filter(|w| w.len() == 2_400).map(|w| tone_share(w, freq)).fold(0.0, f32::max)
}

#[tokio::test]
async fn a_phone_caller_and_an_operator_in_chromium_hear_each_other_through_the_mixer() {
    use tokio::io::AsyncBufReadExt;
    let root = repo_root();
    assert!(
        root.join("tests/node/node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/node` (bash .ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(
        dir.path(),
        &["--demo", "--sip-listen", "127.0.0.1:0", "--sip-trunk", "127.0.0.1/32", "--rtp-ports", "34000-34999"],
        &[],
    );
    let target = server.sip.clone().expect("careline prints the SIP address");
    server.round_the_clock("operator", "asha").await;
    let mic = dir.path().join("operator.wav");
    beeps_wav(&mic);

    // The operator's browser first, so the call is offered to them.
    let mut browser = tokio::process::Command::new("node")
        .arg(root.join("tests/node/phone-bridge.mjs"))
        .env("CARELINE_URL", &server.base)
        .env("CARELINE_USER", "asha")
        .env("CARELINE_PASSWORD", &server.passwords["asha"])
        .env("CARELINE_SPEECH", &mic)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node (install Node.js)");
    let mut said = tokio::io::BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut phases = std::collections::HashMap::new();
    let mut log = Vec::new();
    let mut next_phase = async |want: &str, log: &mut Vec<String>| loop {
        let line = tokio::time::timeout(Duration::from_secs(60), said.next_line())
            .await
            .unwrap_or_else(|_| panic!("no '{want}' from the browser; it said:\n{}", log.join("\n")))
            .unwrap();
        let line = line?;
        log.push(line.clone());
        if line.starts_with(want) {
            return Some(std::time::Instant::now());
        }
    };
    next_phase("operator ready", &mut log).await.expect("the operator takes a seat");

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = socket.local_addr().unwrap().port().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let caller_phone = tokio::spawn(phone(socket, stopped));
    let sip_port = free_udp_port().to_string();
    let mut caller = tokio::process::Command::new("sipp")
        .arg("-sf")
        .arg(root.join("tests/sipp/bridge.xml"))
        .arg(&target)
        .args(["-i", "127.0.0.1", "-p", &sip_port, "-mi", "127.0.0.1", "-key", "caller_rtp", &rtp_port])
        .args(["-s", "104", "-m", "1", "-nostdin", "-timeout", "100s", "-timeout_error"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("sipp.out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("sipp.err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp (Debian's sip-tester) must be installed");

    for phase in ["talking", "operator hears the caller", "held", "resumed", "ending", "wrapped up"] {
        match next_phase(phase, &mut log).await {
            Some(at) => {
                phases.insert(phase, at);
            }
            None => {
                let mut err = String::new();
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut browser.stderr.take().unwrap(), &mut err).await;
                panic!(
                    "the browser stopped before '{phase}':\n{}\n{err}\nthe server said:\n{}",
                    log.join("\n"),
                    server.drain_output().join("\n")
                );
            }
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(30), browser.wait()).await.unwrap().unwrap();
    assert!(status.success(), "phone-bridge.mjs failed:\n{}", log.join("\n"));
    // Ending the contact hung up the phone leg: SIPp got its BYE and ends well.
    let status = tokio::time::timeout(Duration::from_secs(20), caller.wait()).await.expect("sipp ends").unwrap();
    let sipp_err = std::fs::read_to_string(dir.path().join("sipp.err")).unwrap_or_default();
    assert!(status.success(), "sipp failed: {sipp_err}");
    stop.send(()).unwrap();
    let heard = caller_phone.await.unwrap();

    // Connected and resumed, the caller hears the operator's beeps; held, hold music.
    let second = Duration::from_secs(1);
    let talking = between(&heard, phases["operator hears the caller"], phases["held"]);
    let held = between(&heard, phases["held"] + second, phases["resumed"]);
    let resumed = between(&heard, phases["resumed"] + second, phases["ending"]);
    let (t, h, r) =
        (best_window(&talking, OPERATOR_HZ), best_window(&held, OPERATOR_HZ), best_window(&resumed, OPERATOR_HZ));
    let music = best_window(&held, 440.0).max(best_window(&held, 554.37)).max(best_window(&held, 659.25));
    eprintln!("1 kHz share heard by the caller: talking {t}, held {h} (hold music {music}), resumed {r}");
    assert!(t > 0.5, "the caller does not hear the operator's 1 kHz beeps (best share {t})");
    assert!(r > 0.5, "after the hold the caller does not hear the operator (best share {r})");
    assert!(h < 0.1, "the held caller hears the operator (share {h})");
    assert!(music > 0.5, "the held caller hears no hold music (best share {music})");

    // Both directions' packets are counted on /metrics.
    let metrics = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |line: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(line)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let from = count(r#"careline_phone_rtp_total{direction="from_caller",outcome="played"}"#);
    let to = count(r#"careline_phone_rtp_total{direction="to_caller",outcome="played"}"#);
    assert!(from > 200.0 && to > 200.0, "played from the caller {from}, to the caller {to}:\n{metrics}");
}
