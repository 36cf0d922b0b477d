//! The one backoff of the outboxes that give up: mail and messaging
//! replies. Each wait doubles from the first, up to a ceiling, for a number
//! of tries in all. Pure. (Ambulance requests never give up:
//! `dispatch::DispatchPolicy`.)

use chrono::Duration;

/// When to try again after a failure, and when to stop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the first retry; each later wait doubles.
    pub first_backoff: Duration,
    /// The longest wait between tries.
    pub max_backoff: Duration,
    /// Tries in all, the first included.
    pub max_attempts: i64,
}

impl RetryPolicy {
    /// Mail: 30 s doubling to an hour, ten tries (a mail server down for an
    /// afternoon still gets the confirmation).
    pub fn mail() -> RetryPolicy {
        RetryPolicy { first_backoff: Duration::seconds(30), max_backoff: Duration::hours(1), max_attempts: 10 }
    }

    /// Replies on WhatsApp or SMS: 5 s doubling to 10 minutes, ten tries (a
    /// patient is waiting on the other side).
    pub fn replies() -> RetryPolicy {
        RetryPolicy { first_backoff: Duration::seconds(5), max_backoff: Duration::minutes(10), max_attempts: 10 }
    }

    /// The wait before the next try, `tries` having failed; `None` once
    /// they are all used.
    pub fn wait_after(&self, tries: i64) -> Option<Duration> {
        if tries >= self.max_attempts {
            return None;
        }
        let doublings = u32::try_from((tries - 1).clamp(0, 30)).unwrap_or(30);
        let factor = 1i32.checked_shl(doublings).unwrap_or(i32::MAX);
        Some(self.first_backoff.checked_mul(factor).map_or(self.max_backoff, |w| w.min(self.max_backoff)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_are_capped_and_run_out() {
        let p =
            RetryPolicy { first_backoff: Duration::seconds(30), max_backoff: Duration::minutes(5), max_attempts: 5 };
        let waits: Vec<_> = (1..=5).map(|n| p.wait_after(n).map(|w| w.num_seconds())).collect();
        assert_eq!(waits, [Some(30), Some(60), Some(120), Some(240), None], "the fifth failure is the last");
        let long = RetryPolicy { max_attempts: 100, ..p };
        assert_eq!(long.wait_after(41), Some(Duration::minutes(5)), "capped");
        assert_eq!(long.wait_after(99), Some(Duration::minutes(5)), "no overflow");
        assert_eq!(RetryPolicy::replies().wait_after(1), Some(Duration::seconds(5)));
        assert_eq!(RetryPolicy::mail().wait_after(10), None);
    }
}
