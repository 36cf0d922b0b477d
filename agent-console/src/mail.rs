//! Mail to patients: composing messages (with iCalendar invitations), the
//! retry policy, and the task that drains the outbox over SMTP (lettre).
//!
//! Messages are queued in the store ([`crate::store::NewMail`]) in the same
//! request that books what they tell about, so a crash or an SMTP outage
//! loses nothing: the sender retries with exponential backoff, and a
//! permanent refusal (SMTP 5xx) is recorded and not retried.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use chrono_tz::Asia::Kolkata;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{Appointment, Attempt, Claimant, Facility, NewMail, Patient, Store};

/// The longest one SMTP send may take, from connecting to the server's last
/// answer: well inside the message's claim ([`crate::store::claim::MAIL_LEASE`]),
/// so no other node takes a message while it is still being sent.
pub const SEND_CAP: StdDuration = StdDuration::from_secs(120);

/// How failed sends are retried (the same backoff as replies', its own defaults).
pub use crate::retry::RetryPolicy;

impl RetryPolicy {
    /// What to record after a failed try, given the tries made before it.
    pub fn after_failure(&self, attempts_before: i64, error: String, permanent: bool, now: DateTime<Utc>) -> Attempt {
        match self.wait_after(attempts_before + 1) {
            Some(wait) if !permanent => Attempt::Retry { error, at: now + wait },
            _ => Attempt::GiveUp { error },
        }
    }
}

/// Where mail goes from, and how.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    pub from: Mailbox,
    pub policy: RetryPolicy,
    /// Woken when a message is queued, so it leaves at once.
    pub queued: Arc<Notify>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from.to_string()).field("policy", &self.policy).finish()
    }
}

impl Mailer {
    /// `smtp://[user:pass@]host[:port]` (plain, or `?tls=required` for
    /// STARTTLS) or `smtps://…` (implicit TLS), as lettre reads them.
    pub fn new(smtp_url: &str, from: &str, policy: RetryPolicy) -> anyhow::Result<Mailer> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| anyhow::anyhow!("SMTP URL: {e}"))?
            .timeout(Some(StdDuration::from_secs(30)))
            .build();
        let from: Mailbox = from.parse().map_err(|e| anyhow::anyhow!("mail sender `{from}`: {e}"))?;
        Ok(Mailer { transport, from, policy, queued: Arc::new(Notify::new()) })
    }

    /// Queues `message` in the outbox and wakes the sender.
    pub async fn enqueue(
        &self,
        store: &Store,
        message: &Message,
        purpose: &str,
        patient: Option<crate::store::PatientId>,
    ) -> crate::store::Result<()> {
        let envelope = message.envelope();
        let subject = message.headers().get_raw("Subject").map(str::to_owned).unwrap_or_default();
        let mail = NewMail {
            envelope_from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
            envelope_to: envelope.to().iter().map(|a| a.to_string()).collect(),
            subject,
            raw: String::from_utf8_lossy(&message.formatted()).into_owned(),
            purpose: purpose.to_owned(),
            patient_id: patient,
        };
        store.enqueue_mail(&mail, Utc::now()).await?;
        self.queued.notify_one();
        Ok(())
    }

    /// Sends what is due, until `shutdown`, each message claimed by
    /// `claimant` first (several nodes share the outbox). Sleeps until the
    /// next message falls due (at most a minute), or until one is queued.
    pub async fn run(self, store: Store, claimant: Claimant, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.send_due(&store, &claimant).await {
                tracing::warn!(error = %e, "mail outbox");
            }
            let wait = match store.next_mail_due().await {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default().min(StdDuration::from_secs(60)),
                _ => StdDuration::from_secs(60),
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.queued.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over the due messages (at most 20), each claimed just
    /// before it is sent: a claim's lease covers one send, not a batch.
    pub async fn send_due(&self, store: &Store, claimant: &Claimant) -> crate::store::Result<usize> {
        let mut sent = 0;
        for _ in 0..20 {
            let Some(mail) = store.claim_due_mail(claimant, Utc::now(), 1).await?.pop() else { break };
            let outcome = match self.send_raw(&mail.envelope_from, &mail.envelope_to, mail.raw.as_bytes()).await {
                Ok(()) => {
                    sent += 1;
                    tracing::info!(mail = mail.mail_id, purpose = %mail.purpose, "mail sent");
                    Attempt::Sent
                }
                Err((error, permanent)) => {
                    tracing::warn!(mail = mail.mail_id, %error, permanent, "mail not sent");
                    self.policy.after_failure(mail.attempts, error, permanent, Utc::now())
                }
            };
            store.record_mail_attempt(mail.mail_id, &outcome, Utc::now()).await?;
        }
        Ok(sent)
    }

    async fn send_raw(&self, from: &str, to: &[String], raw: &[u8]) -> Result<(), (String, bool)> {
        let parse = |a: &str| a.parse().map_err(|e| (format!("address `{a}`: {e}"), true));
        let from = if from.is_empty() { None } else { Some(parse(from)?) };
        let to = to.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(from, to).map_err(|e| (e.to_string(), true))?;
        match tokio::time::timeout(SEND_CAP, self.transport.send_raw(&envelope, raw)).await {
            Ok(sent) => sent.map(|_| ()).map_err(|e| (e.to_string(), e.is_permanent())),
            // Not permanent: the server may be slow now and fine later.
            Err(_) => Err((format!("the SMTP send took over {} s", SEND_CAP.as_secs()), false)),
        }
    }
}

/// Escapes text for an iCalendar property value (RFC 5545 §3.3.11).
fn ics_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace(';', "\\;").replace(',', "\\,").replace('\n', "\\n").replace('\r', "")
}

/// A parameter value (`CN=`) as an RFC 5545 §3.2 quoted string, with the
/// RFC 6868 escapes for what a quoted string cannot hold: `^` as `^^`, a
/// line break as `^n`, `"` as `^'`. TEXT escaping (`\,`) is wrong here.
fn ics_param(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '^' => out.push_str("^^"),
            '\n' => out.push_str("^n"),
            '"' => out.push_str("^'"),
            // Other controls cannot appear in a quoted string (QSAFE-CHAR).
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An address for a `mailto:` value. Addresses are checked on input; a
/// control character could still only come from an older record, and would
/// end the line, so it is left out.
fn ics_address(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Folds a content line at 75 octets, never inside a UTF-8 character (RFC 5545 §3.1).
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut width = 0;
    for ch in line.chars() {
        let len = ch.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(ch);
        width += len;
    }
    out.push_str("\r\n");
    out
}

fn ics_time(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// An iCalendar invitation (METHOD:REQUEST) for an appointment.
pub fn appointment_ics(
    appointment: &Appointment,
    facility: &Facility,
    patient: &Patient,
    organizer: &Mailbox,
    now: DateTime<Utc>,
) -> String {
    let slot = &appointment.slot;
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Careline//Delhi Health Helpline//EN".to_owned(),
        "METHOD:REQUEST".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:appointment-{}@careline", appointment.appointment_id),
        format!("DTSTAMP:{}", ics_time(now)),
        format!("DTSTART:{}", ics_time(slot.starts_at)),
        format!("DTEND:{}", ics_time(slot.ends_at)),
        format!("SUMMARY:{}", ics_text(&format!("{} appointment, {}", slot.department, facility.name))),
        format!("LOCATION:{}", ics_text(&format!("{}, {}", facility.name, facility.address))),
        format!(
            "DESCRIPTION:{}",
            ics_text(&format!(
                "Appointment {} for {} at {} ({}). Bring your e-health card.",
                appointment.appointment_id, patient.name, facility.name, slot.department
            ))
        ),
        format!(
            "ORGANIZER;CN={}:mailto:{}",
            ics_param(organizer.name.as_deref().unwrap_or("Careline")),
            ics_address(organizer.email.as_ref())
        ),
    ];
    if let Some(email) = &patient.email {
        lines.push(format!(
            "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{}",
            ics_param(&patient.name),
            ics_address(email)
        ));
    }
    lines.extend(["STATUS:CONFIRMED".to_owned(), "END:VEVENT".to_owned(), "END:VCALENDAR".to_owned()]);
    lines.iter().map(|l| fold(l)).collect()
}

/// The text of an appointment confirmation, in Hindi and English, with the
/// prescription summary of the consult that booked it, if any.
pub fn confirmation_text(
    appointment: &Appointment,
    facility: &Facility,
    patient: &Patient,
    prescription: &[String],
) -> String {
    let when = appointment.slot.starts_at.with_timezone(&Kolkata).format("%d %b %Y, %H:%M IST");
    let text = format!(
        "नमस्ते {name},\n\nआपका अपॉइंटमेंट {facility_hi} में {when} पर ({department}) बुक हो गया है।\n\
         अपॉइंटमेंट संख्या: {id}\nपता: {address}\nकृपया अपना ई-हेल्थ कार्ड साथ लाएं।\n\n\
         Dear {name},\n\nYour appointment at {facility} on {when} ({department}) is booked.\n\
         Appointment number: {id}\nAddress: {address}\nPlease bring your e-health card.\n\n\
         Careline, Delhi Health Helpline\n",
        name = patient.name,
        facility_hi = facility.name_hi,
        facility = facility.name,
        department = appointment.slot.department,
        address = facility.address,
        id = appointment.appointment_id,
    );
    if prescription.is_empty() {
        text
    } else {
        // The prescription summary: generic names, dose, frequency and duration.
        format!(
            "{text}\nआपका पर्चा / Your prescription:\n{}\n",
            prescription.iter().map(|l| format!("  - {l}")).collect::<Vec<_>>().join("\n")
        )
    }
}

/// The confirmation of an appointment, in Hindi and English, with its invitation.
pub fn appointment_confirmation(
    from: &Mailbox,
    appointment: &Appointment,
    facility: &Facility,
    patient: &Patient,
    prescription: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<Message> {
    let email =
        patient.email.as_deref().ok_or_else(|| anyhow::anyhow!("patient {} has no email", patient.patient_id.0))?;
    let to: Mailbox = format!("{} <{email}>", patient.name).parse().or_else(|_| email.parse())?;
    let when = appointment.slot.starts_at.with_timezone(&Kolkata).format("%d %b %Y, %H:%M IST");
    let text = confirmation_text(appointment, facility, patient, prescription);
    let ics = appointment_ics(appointment, facility, patient, from, now);
    let calendar = ContentType::parse("text/calendar; charset=utf-8; method=REQUEST")?;
    Ok(Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!("Appointment booked: {}, {when}", facility.name))
        .multipart(
        MultiPart::mixed()
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text))
                    .singlepart(SinglePart::builder().header(calendar.clone()).body(ics.clone())),
            )
            .singlepart(Attachment::new("appointment.ics".to_owned()).body(ics, calendar)),
    )?)
}

#[cfg(test)]
mod ics_param_tests {
    use super::*;

    #[test]
    fn parameter_values_are_quoted_strings_with_rfc_6868_escapes() {
        assert_eq!(ics_param("Kumar, Ramesh"), r#""Kumar, Ramesh""#);
        assert_eq!(ics_param("Ramesh \"Ramu\" Kumar; ^_^"), r#""Ramesh ^'Ramu^' Kumar; ^^_^^""#);
        assert_eq!(ics_param("two\nlines\r"), r#""two^nlines""#);
        assert_eq!(ics_address("a@b.in\r\nATTENDEE:mailto:x@y"), "a@b.inATTENDEE:mailto:x@y");
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_follow_up_confirmation_carries_the_prescription_summary() {
        use crate::store::{FacilityKind, PatientId, Sex, Slot, StaffId};
        let at = Utc::now();
        let appointment = Appointment {
            appointment_id: 7,
            slot: Slot {
                slot_id: 1,
                facility_id: 1,
                department: "general medicine".into(),
                starts_at: at,
                ends_at: at,
                capacity: 4,
                booked: 1,
            },
            patient_id: PatientId(1),
            contact_id: Some("c-1".into()),
            booked_by: StaffId(2),
            status: crate::store::AppointmentStatus::Booked,
            created_at: at,
        };
        let facility = Facility {
            facility_id: 1,
            code: "DL-H-LNH".into(),
            name: "Lok Nayak Hospital".into(),
            name_hi: "लोक नायक अस्पताल".into(),
            kind: FacilityKind::Hospital,
            district: "Central".into(),
            address: "Jawaharlal Nehru Marg".into(),
            phone: None,
            latitude: None,
            longitude: None,
            opening_hours: "24x7".into(),
            services: vec![],
            services_hi: vec![],
            beds: vec![],
            updated_at: at,
        };
        let patient = Patient {
            patient_id: PatientId(1),
            name: "Ramesh Kumar".into(),
            birth_date: None,
            age_years: Some(55),
            sex: Sex::Male,
            phone: None,
            email: Some("ramesh@example.in".into()),
            preferred_language: "hi".into(),
            ehealth_card: None,
            abha_number: None,
            hims_patient_id: None,
            family: vec![],
            created_at: at,
            updated_at: at,
        };
        let plain = confirmation_text(&appointment, &facility, &patient, &[]);
        assert!(
            plain.contains("Lok Nayak Hospital")
                && plain.contains("लोक नायक अस्पताल")
                && !plain.contains("prescription")
        );
        let rx = confirmation_text(
            &appointment,
            &facility,
            &patient,
            &["AMOXICILLIN 500 mg: 1 capsule three times a day, 5 days".into()],
        );
        assert!(rx.contains("Your prescription:\n  - AMOXICILLIN 500 mg"), "{rx}");
    }

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let p =
            RetryPolicy { first_backoff: Duration::seconds(30), max_backoff: Duration::minutes(5), max_attempts: 5 };
        let now = Utc::now();
        let at = |n| match p.after_failure(n, "421".into(), false, now) {
            Attempt::Retry { at, .. } => Some((at - now).num_seconds()),
            _ => None,
        };
        assert_eq!([at(0), at(1), at(2), at(3)], [Some(30), Some(60), Some(120), Some(240)]);
        assert_eq!(at(4), None, "the fifth failure is the last");
        let p = RetryPolicy { max_attempts: 100, ..p };
        assert_eq!(
            p.after_failure(40, "x".into(), false, now),
            Attempt::Retry { error: "x".into(), at: now + Duration::minutes(5) }
        );
        assert_eq!(p.after_failure(0, "550".into(), true, now), Attempt::GiveUp { error: "550".into() });
    }

    #[test]
    fn ics_lines_are_escaped_and_folded_at_75_octets() {
        assert_eq!(ics_text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
        let long = format!("DESCRIPTION:{}", "अ".repeat(40));
        let folded = fold(&long);
        for line in folded.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.len() <= 75, "{} octets", line.len());
        }
        assert_eq!(folded.replace("\r\n ", ""), format!("{long}\r\n"));
    }
}
