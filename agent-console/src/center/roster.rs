//! The routing roster from the store: the shifts of yesterday, today and
//! tomorrow in Delhi time, the operators and doctors on them, and the seats.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use routing::{AgentId, AgentProfile, Roster, Seat, SeatId, Shift};

use crate::store::{Role, Store};

/// The instant `minute` minutes after midnight of `day`, Delhi time.
fn local_instant(day: NaiveDate, minute: i64) -> i64 {
    let midnight =
        Kolkata.from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight")).single().expect("IST has no gaps");
    (midnight + Duration::minutes(minute)).timestamp_millis()
}

/// The routing roster around `now`: yesterday's, today's and tomorrow's
/// shifts (a night shift crosses midnight), every active operator and doctor, the seats.
pub async fn roster_around(store: &Store, now: DateTime<Utc>) -> crate::store::Result<Roster> {
    Ok(roster_and_shift_names_around(store, now).await?.0)
}

/// [`roster_around`], with the name and day of each of its shifts (in the
/// roster's order).
pub async fn roster_and_shift_names_around(
    store: &Store,
    now: DateTime<Utc>,
) -> crate::store::Result<(Roster, Vec<(String, NaiveDate)>)> {
    let staff = store.list_staff().await?;
    let agents = staff
        .iter()
        .filter(|s| s.active && matches!(s.role, Role::Operator | Role::Doctor))
        .map(|s| AgentProfile {
            id: AgentId(s.staff_id.0),
            role: if s.role == Role::Doctor { routing::Role::Doctor } else { routing::Role::Operator },
            languages: s.languages.clone(),
            specialty: s.specialty.clone(),
        })
        .collect();
    let seats = store.seats().await?.into_iter().map(|s| Seat { id: SeatId(s.seat_id.0), peak: s.is_peak }).collect();
    let defs = store.shifts().await?;
    let today = crate::time::to_local(now).date_naive();
    let mut shifts = Vec::new();
    let mut names = Vec::new();
    for day in [today.pred_opt().expect("a day before"), today, today.succ_opt().expect("a day after")] {
        let entries = store.roster_for(day).await?;
        for def in &defs {
            let start = local_instant(day, def.starts_minute);
            let end_minute =
                if def.ends_minute <= def.starts_minute { def.ends_minute + 1440 } else { def.ends_minute };
            shifts.push(Shift {
                role: if def.role == Role::Doctor { routing::Role::Doctor } else { routing::Role::Operator },
                start,
                end: local_instant(day, end_minute),
                peak: def.is_peak,
                agents: entries.iter().filter(|e| e.shift_id == def.shift_id).map(|e| AgentId(e.staff_id.0)).collect(),
            });
            names.push((def.name.clone(), day));
        }
    }
    Ok((Roster { agents, seats, shifts }, names))
}
