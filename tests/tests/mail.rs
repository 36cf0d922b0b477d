//! Mail to patients through a real SMTP server on loopback (Python's
//! aiosmtpd): an appointment booked while the server is down is queued,
//! retried, and arrives with its iCalendar invitation.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{Careline, client};

struct Smtpd(Child);

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The calendar part of a message, decoded, by Python's email parser.
fn calendar_part(path: &std::path::Path) -> (String, String) {
    let script = "import email,sys\n\
        m=email.message_from_binary_file(open(sys.argv[1],'rb'))\n\
        print(m['To'])\n\
        parts=[p for p in m.walk() if p.get_content_type()=='text/calendar']\n\
        print(parts[-1].get_payload(decode=True).decode())";
    let out = Command::new("python3").args(["-c", script]).arg(path).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (to, ics) = text.split_once('\n').unwrap();
    (to.to_owned(), ics.to_owned())
}

#[tokio::test]
async fn appointment_confirmation_is_retried_until_the_smtp_server_takes_it() {
    let check = Command::new("python3").args(["-c", "import aiosmtpd"]).status().expect("python3");
    assert!(check.success(), "aiosmtpd is missing: `python3 -m pip install aiosmtpd` (bash .ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = format!("smtp://127.0.0.1:{port}");
    let server = Careline::start(
        dir.path(),
        &["--demo", "--smtp-url", &smtp, "--mail-retry-seconds", "1"],
        &[("CARELINE_MAIL_FROM", "Careline Helpline <helpline@careline.test>")],
    );
    let http = client();
    let token = server.bearer("asha").await;
    let patient = json!({"name": "Kamla Devi", "phone": "9810000001", "email": "kamla@example.in", "age_years": 46});
    let patient: Value = http
        .post(server.url("/api/patients"))
        .bearer_auth(&token)
        .json(&patient)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let facilities: Value = http
        .get(server.url("/api/facilities?q=lok%20nayak"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fid = facilities[0]["facility_id"].as_i64().unwrap();
    let slots: Value = http
        .get(server.url(&format!("/api/facilities/{fid}/slots?department=general%20medicine")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slot = &slots[0];
    let res = http
        .post(server.url("/api/appointments"))
        .bearer_auth(&token)
        .json(&json!({"slot_id": slot["slot_id"], "patient_id": patient["patient_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // The SMTP server comes up only now: the first tries failed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let maildir = dir.path().join("maildir");
    let _smtpd = Smtpd(
        Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let message = loop {
        let found = std::fs::read_dir(maildir.join("new")).ok().and_then(|mut d| d.next()).and_then(Result::ok);
        if let Some(entry) = found {
            break entry.path();
        }
        assert!(
            Instant::now() < deadline,
            "no mail arrived within 20 s; careline said:\n{}",
            server.drain_output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (to, folded) = calendar_part(&message);
    // Unfold continuation lines (RFC 5545 §3.1) before reading properties.
    let ics = folded.replace("\r\n ", "").replace("\n ", "");
    assert!(to.contains("kamla@example.in"), "{to}");
    assert!(ics.contains("BEGIN:VCALENDAR") && ics.contains("METHOD:REQUEST"), "{ics}");
    let start: chrono::DateTime<chrono::Utc> = slot["starts_at"].as_str().unwrap().parse().unwrap();
    assert!(ics.contains(&format!("DTSTART:{}", start.format("%Y%m%dT%H%M%SZ"))), "{ics}");
    assert!(ics.contains("ATTENDEE;CN=Kamla Devi") && ics.contains("mailto:kamla@example.in"), "{ics}");
    assert!(ics.contains("LOCATION:Lok Nayak Hospital"), "{ics}");
    assert!(server.stop().success());
}
