//! Mail to patients through a real SMTP server on loopback (Python's
//! aiosmtpd): an appointment booked while the server is down is queued,
//! retried, and arrives with its iCalendar invitation.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Careline, Smtpd, client, free_port, read_mail};

#[tokio::test]
async fn appointment_confirmation_is_retried_until_the_smtp_server_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = format!("smtp://127.0.0.1:{port}");
    let server = Careline::start(
        dir.path(),
        &["--demo", "--smtp-url", &smtp, "--mail-retry-seconds", "1"],
        &[("CARELINE_MAIL_FROM", "Careline Helpline <helpline@careline.test>")],
    );
    let http = client();
    // The supervisor registers and books: no call is live here to open the record to an operator.
    let token = server.bearer("meera").await;
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
    let smtpd = Smtpd::start(port, &dir.path().join("maildir"));
    let mail = read_mail(&smtpd.first_message(Duration::from_secs(20), &server));
    let (to, ics) = (mail.to, mail.ics);
    assert!(to.contains("kamla@example.in"), "{to}");
    assert!(ics.contains("BEGIN:VCALENDAR") && ics.contains("METHOD:REQUEST"), "{ics}");
    let start: chrono::DateTime<chrono::Utc> = slot["starts_at"].as_str().unwrap().parse().unwrap();
    assert!(ics.contains(&format!("DTSTART:{}", start.format("%Y%m%dT%H%M%SZ"))), "{ics}");
    assert!(ics.contains("ATTENDEE;CN=\"Kamla Devi\"") && ics.contains("mailto:kamla@example.in"), "{ics}");
    assert!(ics.contains("LOCATION:Lok Nayak Hospital"), "{ics}");
    assert!(server.stop().success());
}
