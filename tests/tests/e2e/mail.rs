//! Mail to patients through a real SMTP server on loopback (Python's
//! aiosmtpd): an appointment booked while the server is down is queued,
//! retried, and arrives with its iCalendar invitation, which an outside
//! parser (PyPI `icalendar`) reads back exactly.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{Careline, Smtpd, client, free_port, python, read_mail};

/// A patient name with each character that needs quoting in a parameter
/// value (RFC 5545 §3.2, RFC 6868): a comma, a semicolon, double quotes.
const PATIENT: &str = "Kumar, Ramesh \"Ramu\"; Jr";
/// The organizer's name, with a comma and a semicolon.
const ORGANIZER: &str = "Careline, Delhi; Helpline";

/// The mail outbox row of the first message: its attempts and last error.
async fn outbox(dir: &Path) -> Option<(i64, Option<String>, Option<String>)> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("careline.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.expect("open careline's database");
    sqlx::query_as("select attempts, last_error, sent_at from mail_outbox order by mail_id limit 1")
        .fetch_optional(&mut db)
        .await
        .expect("read the mail outbox")
}

/// Waits (at most `within`) until the first message's outbox row satisfies `done`; returns it.
async fn outbox_until(
    dir: &Path,
    within: Duration,
    done: impl Fn(&(i64, Option<String>, Option<String>)) -> bool,
) -> (i64, Option<String>, Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        let row = outbox(dir).await;
        if let Some(row) = row.as_ref().filter(|r| done(r)) {
            return row.clone();
        }
        assert!(Instant::now() < deadline, "the mail outbox did not get there within {within:?}: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The invitation as Python's `icalendar` reads it: the event's UID, times
/// (RFC 3339, UTC), summary, location, and organizer and attendee with their CN.
fn parse_ics(ics: &str) -> Value {
    let script = "import icalendar,json,sys\n\
        cal=icalendar.Calendar.from_ical(sys.stdin.read())\n\
        assert cal['METHOD']=='REQUEST', cal['METHOD']\n\
        [ev]=cal.walk('VEVENT')\n\
        who=lambda p:{'cn':str(ev[p].params['CN']),'address':str(ev[p])}\n\
        print(json.dumps({'uid':str(ev['UID']),\n\
          'start':ev.decoded('DTSTART').isoformat(),'end':ev.decoded('DTEND').isoformat(),\n\
          'summary':str(ev['SUMMARY']),'location':str(ev['LOCATION']),\n\
          'organizer':who('ORGANIZER'),'attendee':who('ATTENDEE')}))";
    let out = python("icalendar", script, ics.as_bytes())
        .unwrap_or_else(|e| panic!("icalendar refused the invitation: {e}\n{ics}"));
    serde_json::from_slice(&out).expect("the parser's JSON")
}

#[tokio::test]
async fn appointment_confirmation_is_retried_until_the_smtp_server_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smtp = format!("smtp://127.0.0.1:{port}");
    let server = Careline::start(
        dir.path(),
        &["--demo", "--smtp-url", &smtp, "--mail-retry-seconds", "1"],
        &[("CARELINE_MAIL_FROM", &format!("\"{ORGANIZER}\" <helpline@careline.test>"))],
    );
    let http = client();
    // The supervisor registers and books: no call is live here to open the record to an operator.
    let token = server.bearer("meera").await;
    let patient = json!({"name": PATIENT, "phone": "9810000001", "email": "kamla@example.in", "age_years": 46});
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
    let appointment: Value = res.json().await.unwrap();

    // No SMTP server yet: the first try fails, and the outbox records it.
    let (attempts, error, sent) =
        outbox_until(dir.path(), Duration::from_secs(20), |(attempts, _, _)| *attempts >= 1).await;
    assert!(attempts >= 1 && error.is_some() && sent.is_none(), "a failed attempt: {attempts} {error:?} {sent:?}");
    // The SMTP server comes up only now; a retry delivers.
    let smtpd = Smtpd::start(port, &dir.path().join("maildir"));
    let mail = read_mail(&smtpd.first_message(Duration::from_secs(20), &server));
    let (attempts, _, sent) = outbox_until(dir.path(), Duration::from_secs(20), |(_, _, sent)| sent.is_some()).await;
    assert!(attempts >= 2 && sent.is_some(), "sent on a retry: {attempts} {sent:?}");
    let (to, ics) = (mail.to, mail.ics);
    assert!(to.contains("kamla@example.in"), "{to}");
    assert!(ics.contains("BEGIN:VCALENDAR") && ics.contains("METHOD:REQUEST"), "{ics}");

    // An outside parser reads back exactly what was booked, names and all.
    let time = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap().to_rfc3339();
    let parsed = parse_ics(&ics);
    assert_eq!(parsed["uid"], format!("appointment-{}@careline", appointment["appointment_id"]), "{ics}");
    assert_eq!(time(&parsed["start"]), time(&slot["starts_at"]), "{ics}");
    assert_eq!(time(&parsed["end"]), time(&slot["ends_at"]), "{ics}");
    assert_eq!(parsed["organizer"], json!({"cn": ORGANIZER, "address": "mailto:helpline@careline.test"}), "{ics}");
    assert_eq!(parsed["attendee"], json!({"cn": PATIENT, "address": "mailto:kamla@example.in"}), "{ics}");
    assert!(parsed["location"].as_str().unwrap().starts_with("Lok Nayak Hospital, "), "{ics}");
    assert!(parsed["summary"].as_str().unwrap().starts_with("general medicine appointment, Lok Nayak"), "{ics}");
    assert!(server.stop().success());
}
