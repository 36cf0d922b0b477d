//! Who may read or change a patient's data: the one rule, pure (facts in,
//! a grant or a refusal out, the time passed in). The HTTP extractors
//! (`http::access`) gather the facts from the store, ask [`decide`], and
//! write the audit entry of every read and change they allow.
//!
//! A staff member may see patient P's data when, and only when:
//! - they are a supervisor (who reviews; still audited);
//! - they work on a contact that is P's, or P's relative's, or on which they
//!   found P by a lookup (card, ABHA, phone, ticket) or registered P, while
//!   the contact is live or for [`RECENT`] after it ended (wrap-up, the
//!   last notes);
//! - they hold P's open complaint task, or booked P's follow-up that is still
//!   to come, even days later;
//! - they broke the glass for P, with a reason, within [`BREAK_GLASS`]
//!   (audited, and listed for supervisors).
//!
//! Nothing else. In particular, having worked on *some* contact unlocks no
//! other patient, and an old contact unlocks nothing after [`RECENT`].

use chrono::{DateTime, Duration, Utc};

use crate::store::ContactStatus;

/// How long after a contact ended its staff keep access to its patient:
/// long enough for wrap-up, the consult's notes and the HIMS record.
pub const RECENT: Duration = Duration::minutes(30);

/// How long a break-glass access lasts.
pub const BREAK_GLASS: Duration = Duration::hours(1);

/// How a contact the staff member works on relates to the patient asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The contact is the patient's (identified as them).
    Patient,
    /// The contact is a relative's (family link).
    Relative,
    /// The patient was found by a lookup (or registered) from the contact.
    LookedUp,
}

/// A contact of the staff member that touches the patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFact {
    pub contact_id: String,
    pub status: ContactStatus,
    pub ended_at: Option<DateTime<Utc>>,
    pub link: Link,
}

/// Everything the rule looks at, for one staff member and one patient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub supervisor: bool,
    pub contacts: Vec<ContactFact>,
    /// Tickets of the patient's complaints with an open task the staff member holds.
    pub tasks: Vec<String>,
    /// The patient's upcoming appointments the staff member booked.
    pub follow_ups: Vec<i64>,
    /// When the staff member last broke the glass for the patient.
    pub broke_glass_at: Option<DateTime<Utc>>,
}

/// Why access was allowed (it goes into the audit entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Supervisor,
    Contact { contact_id: String, link: Link },
    Task { ticket: String },
    FollowUp { appointment_id: i64 },
    BrokeGlass { at: DateTime<Utc> },
}

impl Grant {
    /// The contact the access is on behalf of, if any.
    pub fn contact(&self) -> Option<&str> {
        match self {
            Grant::Contact { contact_id, .. } => Some(contact_id),
            _ => None,
        }
    }

    /// A short description for the audit log.
    pub fn describe(&self) -> String {
        match self {
            Grant::Supervisor => "as supervisor".into(),
            Grant::Contact { contact_id, link: Link::Patient } => format!("on the patient's contact {contact_id}"),
            Grant::Contact { contact_id, link: Link::Relative } => format!("on a relative's contact {contact_id}"),
            Grant::Contact { contact_id, link: Link::LookedUp } => format!("found from contact {contact_id}"),
            Grant::Task { ticket } => format!("holds a task of complaint {ticket}"),
            Grant::FollowUp { appointment_id } => format!("booked follow-up {appointment_id}"),
            Grant::BrokeGlass { at } => format!("broke the glass at {}", at.to_rfc3339()),
        }
    }
}

/// Whether a contact still opens its patient's data at `now`: live, or
/// ended within [`RECENT`].
pub fn contact_is_open(status: ContactStatus, ended_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match status {
        ContactStatus::Waiting | ContactStatus::Connected | ContactStatus::WrapUp | ContactStatus::Callback => true,
        // An ended contact with no end time is an old record: closed.
        ContactStatus::Ended | ContactStatus::Abandoned => ended_at.is_some_and(|at| now - at <= RECENT),
    }
}

/// Whether a contact is live (a lookup may be made from it).
pub fn contact_is_live(status: ContactStatus) -> bool {
    contact_is_open(status, None, DateTime::<Utc>::MIN_UTC)
}

/// The rule. The first grant found wins, in the order: a contact that
/// `preferred` names, any open contact, a task, a follow-up, the glass
/// broken, a supervisor's review.
pub fn decide(facts: &Facts, preferred: Option<&str>, now: DateTime<Utc>) -> Option<Grant> {
    let open: Vec<&ContactFact> =
        facts.contacts.iter().filter(|c| contact_is_open(c.status, c.ended_at, now)).collect();
    let by_preference = open.iter().find(|c| Some(c.contact_id.as_str()) == preferred).or(open.first());
    if let Some(c) = by_preference {
        return Some(Grant::Contact { contact_id: c.contact_id.clone(), link: c.link });
    }
    if let Some(ticket) = facts.tasks.first() {
        return Some(Grant::Task { ticket: ticket.clone() });
    }
    if let Some(&appointment_id) = facts.follow_ups.first() {
        return Some(Grant::FollowUp { appointment_id });
    }
    if let Some(at) = facts.broke_glass_at.filter(|at| now - *at <= BREAK_GLASS && *at <= now) {
        return Some(Grant::BrokeGlass { at });
    }
    facts.supervisor.then_some(Grant::Supervisor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    fn contact(id: &str, status: ContactStatus, ended: Option<i64>, link: Link) -> ContactFact {
        ContactFact { contact_id: id.into(), status, ended_at: ended.map(at), link }
    }

    /// One row: its name, the facts, the time (minutes), the contact named, and the grant expected.
    type Row = (&'static str, Facts, i64, Option<&'static str>, Option<Grant>);

    #[test]
    fn the_rule_allows_exactly_the_relations_it_lists() {
        use ContactStatus::*;
        let none = Facts::default();
        let rows: Vec<Row> = vec![
            ("no relation at all", none.clone(), 0, None, None),
            ("no relation, naming some contact", none.clone(), 0, Some("X"), None),
            (
                "a live contact of the patient",
                Facts { contacts: vec![contact("A", Connected, None, Link::Patient)], ..none.clone() },
                0,
                None,
                Some(Grant::Contact { contact_id: "A".into(), link: Link::Patient }),
            ),
            (
                "a relative's contact in wrap-up",
                Facts { contacts: vec![contact("A", WrapUp, Some(0), Link::Relative)], ..none.clone() },
                5,
                None,
                Some(Grant::Contact { contact_id: "A".into(), link: Link::Relative }),
            ),
            (
                "ended 29 minutes ago",
                Facts { contacts: vec![contact("A", Ended, Some(0), Link::Patient)], ..none.clone() },
                29,
                None,
                Some(Grant::Contact { contact_id: "A".into(), link: Link::Patient }),
            ),
            (
                "ended 31 minutes ago",
                Facts { contacts: vec![contact("A", Ended, Some(0), Link::Patient)], ..none.clone() },
                31,
                None,
                None,
            ),
            (
                "abandoned long ago",
                Facts { contacts: vec![contact("A", Abandoned, Some(0), Link::LookedUp)], ..none.clone() },
                600,
                None,
                None,
            ),
            (
                "ended with no end time",
                Facts { contacts: vec![contact("A", Ended, None, Link::Patient)], ..none.clone() },
                0,
                None,
                None,
            ),
            (
                "the named open contact is preferred",
                Facts {
                    contacts: vec![
                        contact("A", Connected, None, Link::Relative),
                        contact("B", Waiting, None, Link::LookedUp),
                    ],
                    ..none.clone()
                },
                0,
                Some("B"),
                Some(Grant::Contact { contact_id: "B".into(), link: Link::LookedUp }),
            ),
            (
                "a complaint task, days later",
                Facts { tasks: vec!["CMP-1".into()], ..none.clone() },
                5000,
                None,
                Some(Grant::Task { ticket: "CMP-1".into() }),
            ),
            (
                "a follow-up they booked",
                Facts { follow_ups: vec![7], ..none.clone() },
                0,
                None,
                Some(Grant::FollowUp { appointment_id: 7 }),
            ),
            (
                "the glass broken 59 minutes ago",
                Facts { broke_glass_at: Some(at(0)), ..none.clone() },
                59,
                None,
                Some(Grant::BrokeGlass { at: at(0) }),
            ),
            ("the glass broken 61 minutes ago", Facts { broke_glass_at: Some(at(0)), ..none.clone() }, 61, None, None),
            ("a supervisor", Facts { supervisor: true, ..none.clone() }, 0, None, Some(Grant::Supervisor)),
        ];
        for (name, facts, now, preferred, expected) in rows {
            assert_eq!(decide(&facts, preferred, at(now)), expected, "{name}");
        }
    }

    #[test]
    fn only_live_contacts_allow_lookups() {
        use ContactStatus::*;
        for (status, live) in
            [(Waiting, true), (Connected, true), (WrapUp, true), (Callback, true), (Ended, false), (Abandoned, false)]
        {
            assert_eq!(contact_is_live(status), live, "{status:?}");
        }
    }
}
