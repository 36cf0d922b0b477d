//! The day's figures from contact records: per 30-minute interval (Delhi
//! time) and for the whole day, the call-centre measures supervisors read:
//! offered, answered, abandoned, service level, average speed of answer and
//! average handle time. Pure functions of the records, so reports are
//! reproducible and tested without a clock.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{Contact, ContactStatus};

/// The measures of one interval (or of the day).
#[derive(Clone, Debug, Default, PartialEq, Serialize, ToSchema)]
pub struct Figures {
    /// Start of the interval, UTC.
    pub start: DateTime<Utc>,
    /// Contacts that arrived.
    pub offered: u32,
    /// Contacts an agent answered.
    pub answered: u32,
    /// Answered within the service-level threshold.
    pub answered_in_threshold: u32,
    /// Callers who hung up before an answer.
    pub abandoned: u32,
    /// Emergencies among the offered.
    pub emergencies: u32,
    /// Answered within the threshold, of answered plus abandoned after the
    /// threshold (abandons within it are not held against the centre).
    pub service_level: Option<f64>,
    /// Average speed of answer, seconds.
    pub asa_seconds: Option<f64>,
    /// Average handle time (answer to end), seconds.
    pub aht_seconds: Option<f64>,
    /// Abandoned, of offered.
    pub abandonment: Option<f64>,
    /// The longest wait before an answer or abandon, seconds.
    pub longest_wait_seconds: Option<f64>,
}

/// A day's report.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct DayReport {
    pub day: NaiveDate,
    pub threshold_seconds: i64,
    pub intervals: Vec<Figures>,
    pub total: Figures,
}

/// The first instant of `day` in Delhi, as UTC.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Kolkata
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("IST has no gaps")
        .with_timezone(&Utc)
}

#[derive(Default)]
struct Acc {
    offered: u32,
    answered: u32,
    in_threshold: u32,
    abandoned: u32,
    abandoned_late: u32,
    emergencies: u32,
    answer_wait: f64,
    handle: f64,
    handled: u32,
    longest: Option<f64>,
}

impl Acc {
    fn add(&mut self, c: &Contact, threshold: f64) {
        self.offered += 1;
        self.emergencies += u32::from(c.emergency);
        if let Some(answered) = c.answered_at {
            let wait = (answered - c.created_at).num_milliseconds() as f64 / 1000.0;
            self.answered += 1;
            self.answer_wait += wait;
            self.in_threshold += u32::from(wait <= threshold);
            self.longest = Some(self.longest.map_or(wait, |l: f64| l.max(wait)));
            if let Some(end) = c.ended_at {
                self.handle += (end - answered).num_milliseconds() as f64 / 1000.0;
                self.handled += 1;
            }
        } else if c.status == ContactStatus::Abandoned {
            let wait = c.ended_at.map(|e| (e - c.created_at).num_milliseconds() as f64 / 1000.0).unwrap_or(0.0);
            self.abandoned += 1;
            self.abandoned_late += u32::from(wait > threshold);
            self.longest = Some(self.longest.map_or(wait, |l: f64| l.max(wait)));
        }
    }

    fn figures(&self, start: DateTime<Utc>) -> Figures {
        let ratio = |n: u32, d: u32| (d > 0).then(|| f64::from(n) / f64::from(d));
        Figures {
            start,
            offered: self.offered,
            answered: self.answered,
            answered_in_threshold: self.in_threshold,
            abandoned: self.abandoned,
            emergencies: self.emergencies,
            service_level: ratio(self.in_threshold, self.answered + self.abandoned_late),
            asa_seconds: (self.answered > 0).then(|| self.answer_wait / f64::from(self.answered)),
            aht_seconds: (self.handled > 0).then(|| self.handle / f64::from(self.handled)),
            abandonment: ratio(self.abandoned, self.offered),
            longest_wait_seconds: self.longest,
        }
    }
}

/// The report of `day` (Delhi time) from its contacts, in 30-minute intervals.
pub fn day_report(day: NaiveDate, contacts: &[Contact], threshold_seconds: i64) -> DayReport {
    let start = day_start(day);
    let threshold = threshold_seconds as f64;
    let mut intervals: Vec<Acc> = (0..48).map(|_| Acc::default()).collect();
    let mut total = Acc::default();
    for c in contacts {
        let offset = c.created_at - start;
        if offset < Duration::zero() || offset >= Duration::days(1) {
            continue;
        }
        let slot = (offset.num_minutes() / 30) as usize;
        intervals[slot].add(c, threshold);
        total.add(c, threshold);
    }
    DayReport {
        day,
        threshold_seconds,
        intervals: intervals
            .iter()
            .enumerate()
            .map(|(i, acc)| acc.figures(start + Duration::minutes(30 * i as i64)))
            .collect(),
        total: total.figures(start),
    }
}

/// The day's contacts as CSV, one row each, times in Delhi time.
pub fn contacts_csv(contacts: &[Contact]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let local = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&Kolkata).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
    };
    out.write_record([
        "contact_id",
        "channel",
        "language",
        "emergency",
        "tier",
        "specialty",
        "status",
        "arrived_ist",
        "answered_ist",
        "ended_ist",
        "wait_seconds",
        "handle_seconds",
        "answered_by",
        "doctor_id",
        "patient_id",
        "disposition",
    ])
    .expect("write to memory");
    for c in contacts {
        let wait = c.answered_at.or(c.ended_at).map(|t| (t - c.created_at).num_seconds().to_string());
        let handle = c.answered_at.zip(c.ended_at).map(|(a, e)| (e - a).num_seconds().to_string());
        out.write_record([
            c.contact_id.clone(),
            c.channel.to_string(),
            c.language.clone(),
            c.emergency.to_string(),
            c.tier.to_string(),
            c.specialty.clone().unwrap_or_default(),
            c.status.to_string(),
            local(Some(c.created_at)),
            local(c.answered_at),
            local(c.ended_at),
            wait.unwrap_or_default(),
            handle.unwrap_or_default(),
            c.answered_by.map(|s| s.0.to_string()).unwrap_or_default(),
            c.doctor_id.map(|s| s.0.to_string()).unwrap_or_default(),
            c.patient_id.map(|p| p.0.to_string()).unwrap_or_default(),
            c.disposition.map(|d| d.to_string()).unwrap_or_default(),
        ])
        .expect("write to memory");
    }
    String::from_utf8(out.into_inner().expect("flush to memory")).expect("CSV of UTF-8 fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Channel, StaffId};

    fn contact(
        id: &str,
        arrived: DateTime<Utc>,
        answer_after: Option<i64>,
        end_after: i64,
        abandoned: bool,
    ) -> Contact {
        Contact {
            contact_id: id.into(),
            channel: Channel::Phone,
            language: "hi".into(),
            emergency: false,
            tier: 1,
            specialty: None,
            caller_phone: None,
            ehealth_card: None,
            abha_number: None,
            patient_id: None,
            location: None,
            status: if abandoned { ContactStatus::Abandoned } else { ContactStatus::Ended },
            created_at: arrived,
            answered_at: answer_after.map(|s| arrived + Duration::seconds(s)),
            answered_by: answer_after.map(|_| StaffId(1)),
            escalated_at: None,
            doctor_id: None,
            ended_at: Some(arrived + Duration::seconds(end_after)),
            disposition: None,
            wrap_up_note: None,
        }
    }

    #[test]
    fn intervals_in_delhi_time_with_service_level_asa_and_abandonment() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let start = day_start(day);
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 11, 23, 18, 30, 0).unwrap());
        let ten = start + Duration::hours(10);
        let contacts = vec![
            contact("a", ten, Some(5), 185, false),
            contact("b", ten + Duration::minutes(1), Some(40), 220, false),
            contact("c", ten + Duration::minutes(2), None, 10, true), // gave up within 20 s: not held against us
            contact("d", ten + Duration::minutes(3), None, 90, true),
            contact("e", ten + Duration::minutes(31), Some(15), 75, false),
            contact("yesterday", start - Duration::minutes(1), Some(1), 60, false),
        ];
        let r = day_report(day, &contacts, 20);
        let at_ten = &r.intervals[20];
        assert_eq!(at_ten.start, ten);
        assert_eq!((at_ten.offered, at_ten.answered, at_ten.abandoned), (4, 2, 2));
        assert_eq!(at_ten.service_level, Some(1.0 / 3.0));
        assert_eq!(at_ten.asa_seconds, Some(22.5));
        assert_eq!(at_ten.aht_seconds, Some(180.0));
        assert_eq!(at_ten.abandonment, Some(0.5));
        assert_eq!(at_ten.longest_wait_seconds, Some(90.0));
        assert_eq!(r.intervals[21].offered, 1);
        assert_eq!(r.total.offered, 5, "yesterday's contact is not today's");
        assert_eq!(r.total.service_level, Some(0.5));
        assert_eq!(r.intervals[0].service_level, None);
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_contact_in_ist() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 4, 30, 0).unwrap();
        let csv = contacts_csv(&[contact("a", at, Some(12), 100, false)]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("contact_id,channel"));
        assert!(lines[1].contains("2026-11-24 10:00:00") && lines[1].contains(",12,88,"), "{}", lines[1]);
    }
}
