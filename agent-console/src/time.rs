//! Time as the helpline reads it: stored in UTC, shown in Asia/Kolkata (IST, UTC+05:30).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Asia::Kolkata;

/// Today's date in Delhi.
pub fn local_today() -> NaiveDate {
    Utc::now().with_timezone(&Kolkata).date_naive()
}

/// A UTC instant on Delhi's clock.
pub fn to_local(at: DateTime<Utc>) -> DateTime<chrono_tz::Tz> {
    at.with_timezone(&Kolkata)
}

/// A UTC instant as Delhi reads it, e.g. `24 Nov 2026, 18:05 IST`.
pub fn show(at: DateTime<Utc>) -> String {
    at.with_timezone(&Kolkata).format("%d %b %Y, %H:%M IST").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn shows_ist() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 18, 35, 0).unwrap();
        assert_eq!(show(at), "25 Nov 2026, 00:05 IST");
    }
}
