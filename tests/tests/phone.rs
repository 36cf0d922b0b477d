//! The phone channel end to end: SIPp dials the real `careline serve
//! --sip-listen` from loopback as the trunk, keys through the IVR with
//! RFC 4733 digits, waits in the queue, and an operator is offered the call.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tests::{Careline, client, next_where, repo_root, sse};

/// A free port on 127.0.0.1 (for SIPp's own SIP and RTP sockets).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sipp(scenario: &str, target: &str, dir: &std::path::Path) -> tokio::process::Child {
    let port = free_udp_port().to_string();
    let media = free_udp_port().to_string();
    let mut cmd = tokio::process::Command::new("sipp");
    cmd.arg("-sf")
        .arg(repo_root().join("tests/sipp").join(scenario))
        .arg(target)
        .args(["-i", "127.0.0.1", "-p", &port, "-mi", "127.0.0.1", "-mp", &media])
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

    let mut caller = sipp("ivr-to-queue.xml", &target, dir.path());
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

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"careline_phone_calls_total{trunk="trunk"} 1"#,
        r#"careline_ivr_outcomes_total{outcome="queued"} 1"#,
        r#"careline_phone_digits_total{source="rfc4733"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} not in /metrics:\n{metrics}");
    }
}
