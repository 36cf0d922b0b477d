//! Limits on starting contacts from the public `/call` page: token buckets
//! per phone number, per client address (IPv6 by /64) and for the whole
//! helpline, with an emergency never refused.
//!
//! Sans-IO: the clock is passed in (`Instant`), so the rules are tested
//! without waiting. The state is per node.
//!
//! Why buckets and not a fixed window: a carrier-grade NAT puts many
//! patients behind one address, and they arrive in bursts (a news item, a
//! heat wave). A bucket lets a burst through and then a steady rate, which
//! protects the queue from a script without refusing a crowd of real callers
//! (OWASP API Security Top 10, API4:2023 "Unrestricted Resource Consumption").

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A bucket's shape: `burst` starts at once, then one more every `every`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub every: Duration,
}

/// `BURST:SECONDS`, e.g. `5:120` (five at once, then one every two
/// minutes) or `500:0.1` (500, then ten a second), as the flags take it.
impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let shape = "write BURST:SECONDS, e.g. `5:120`: BURST at once, then one more every SECONDS";
        let (burst, every) = s.trim().split_once(':').ok_or_else(|| format!("`{s}`: {shape}"))?;
        let burst: u32 = burst.trim().parse().map_err(|_| format!("`{burst}` is not a whole number: {shape}"))?;
        let seconds: f64 =
            every.trim().parse().map_err(|_| format!("`{every}` is not a number of seconds: {shape}"))?;
        if burst == 0 {
            return Err(format!("a burst of 0 refuses everyone: {shape}"));
        }
        // At most a day between refills; at least a millisecond (a thousand a second).
        if !(0.001..=86_400.0).contains(&seconds) {
            return Err(format!("`{every}` s is outside 0.001 to 86400: {shape}"));
        }
        Ok(Rate { burst, every: Duration::from_secs_f64(seconds) })
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(rate.burst), at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / rate.every.as_secs_f64().max(1e-9);
        self.tokens = (self.tokens + gained).min(f64::from(rate.burst));
        self.at = now;
    }

    /// Seconds until one token is there (0 when it is).
    fn wait(&self, rate: Rate) -> u64 {
        if self.tokens >= 1.0 { 0 } else { ((1.0 - self.tokens) * rate.every.as_secs_f64()).ceil().max(1.0) as u64 }
    }

    fn take(&mut self) {
        // An emergency is let through an empty bucket; it does not go below zero
        // so that it does not lock out the next caller for longer.
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Buckets by key, forgetting full ones when there are many (a spray of
/// addresses or numbers cannot grow memory without bound).
#[derive(Debug)]
struct Buckets<K> {
    rate: Rate,
    map: HashMap<K, Bucket>,
}

const MAX_KEYS: usize = 100_000;

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: Rate) -> Self {
        Buckets { rate, map: HashMap::new() }
    }

    fn wait(&mut self, key: &K, now: Instant) -> u64 {
        match self.map.get_mut(key) {
            Some(b) => {
                b.refill(self.rate, now);
                b.wait(self.rate)
            }
            None => 0,
        }
    }

    fn take(&mut self, key: &K, now: Instant) {
        if self.map.len() >= MAX_KEYS {
            let rate = self.rate;
            self.map.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < f64::from(rate.burst)
            });
        }
        let rate = self.rate;
        self.map.entry(key.clone()).or_insert_with(|| Bucket::full(rate, now)).take();
    }
}

/// Why a start was refused, and how long to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This phone number started too many contacts.
    Phone { retry_after: u64 },
    /// This address (or IPv6 /64) started too many contacts.
    Address { retry_after: u64 },
    /// The helpline as a whole takes no more web contacts for now: load is shed.
    Overall { retry_after: u64 },
}

impl Refusal {
    /// The limit's name, for `/metrics`.
    pub fn limit(&self) -> &'static str {
        match self {
            Refusal::Phone { .. } => "phone",
            Refusal::Address { .. } => "address",
            Refusal::Overall { .. } => "overall",
        }
    }
}

/// The limits on starting contacts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContactLimits {
    pub per_phone: Rate,
    pub per_address: Rate,
    pub overall: Rate,
}

impl Default for ContactLimits {
    /// A patient retries a few times (a dropped call, a wrong language);
    /// five in a row and then one every two minutes is generous for one
    /// number. One address may be a whole carrier NAT: 100 at once and then
    /// one every 5 s (720 an hour). The whole helpline: 45 seats that handle
    /// a contact in about four minutes take some 11 a minute; 500 at once and
    /// 10 a second more keeps the queue from being flooded by a botnet while
    /// a surge of real callers still gets in.
    fn default() -> Self {
        ContactLimits {
            per_phone: Rate { burst: 5, every: Duration::from_secs(120) },
            per_address: Rate { burst: 100, every: Duration::from_secs(5) },
            overall: Rate { burst: 500, every: Duration::from_millis(100) },
        }
    }
}

/// The state of the limits on starting contacts.
#[derive(Debug)]
pub struct ContactLimiter {
    phones: Buckets<String>,
    addresses: Buckets<IpAddr>,
    overall: Bucket,
    overall_rate: Rate,
}

impl ContactLimiter {
    pub fn new(limits: ContactLimits, now: Instant) -> Self {
        ContactLimiter {
            phones: Buckets::new(limits.per_phone),
            addresses: Buckets::new(limits.per_address),
            overall: Bucket::full(limits.overall, now),
            overall_rate: limits.overall,
        }
    }

    /// Admits one start at `now` from `address` (already grouped, see
    /// [`crate::net::group`]) for `phone` (normalised), or says why not. An
    /// emergency is always admitted, and counted. A refused start costs nothing.
    pub fn admit(
        &mut self,
        now: Instant,
        address: Option<IpAddr>,
        phone: Option<&str>,
        emergency: bool,
    ) -> Result<(), Refusal> {
        let phone = phone.map(str::to_owned);
        if !emergency {
            if let Some(p) = &phone {
                let wait = self.phones.wait(p, now);
                if wait > 0 {
                    return Err(Refusal::Phone { retry_after: wait });
                }
            }
            if let Some(a) = &address {
                let wait = self.addresses.wait(a, now);
                if wait > 0 {
                    return Err(Refusal::Address { retry_after: wait });
                }
            }
            self.overall.refill(self.overall_rate, now);
            let wait = self.overall.wait(self.overall_rate);
            if wait > 0 {
                return Err(Refusal::Overall { retry_after: wait });
            }
        }
        if let Some(p) = &phone {
            self.phones.take(p, now);
        }
        if let Some(a) = &address {
            self.addresses.take(a, now);
        }
        self.overall.refill(self.overall_rate, now);
        self.overall.take();
        Ok(())
    }
}

/// Growing delays after failed sign-ins for one key: `free` failures cost
/// nothing, then each one more doubles the wait from `base`, up to `cap`; a
/// key with no failure for `forget` starts over. Nothing is ever locked for
/// good, so a stranger cannot lock an account out; and the delay is answered
/// (429 with `Retry-After`), never slept in the handler (OWASP Authentication
/// Cheat Sheet, "Account Lockout"; "Slow Down Online Guessing Attacks with
/// Device Cookies").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub free: u32,
    pub base: Duration,
    pub cap: Duration,
    pub forget: Duration,
}

impl Backoff {
    /// The wait after `failures` failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(30);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failures per key, with their [`Backoff`].
#[derive(Debug)]
pub struct Delays<K> {
    backoff: Backoff,
    map: HashMap<K, Failures>,
}

impl<K: Hash + Eq + Clone> Delays<K> {
    pub fn new(backoff: Backoff) -> Self {
        Delays { backoff, map: HashMap::new() }
    }

    /// Seconds `key` must still wait at `now` (0: it may try).
    pub fn wait(&mut self, key: &K, now: Instant) -> u64 {
        let Some(f) = self.map.get(key) else { return 0 };
        let since = now.saturating_duration_since(f.last);
        if since >= self.backoff.forget {
            self.map.remove(key);
            return 0;
        }
        let left = self.backoff.delay(f.count).saturating_sub(since);
        if left.is_zero() { 0 } else { left.as_secs_f64().ceil().max(1.0) as u64 }
    }

    /// Counts one failure for `key` at `now`; returns the failures counted.
    pub fn fail(&mut self, key: &K, now: Instant) -> u32 {
        if self.map.len() >= MAX_KEYS {
            let forget = self.backoff.forget;
            self.map.retain(|_, f| now.saturating_duration_since(f.last) < forget);
        }
        let forget = self.backoff.forget;
        let f = self.map.entry(key.clone()).or_insert(Failures { count: 0, last: now });
        if now.saturating_duration_since(f.last) >= forget {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        f.count
    }

    pub fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }
}

/// Who is trying to sign in, as the delays see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// From a device that signed in as this user before (its device cookie, hashed).
    KnownDevice { user: &'a str, device: &'a str },
    /// From anywhere else, at this address (grouped).
    Unknown { user: &'a str, address: IpAddr },
}

/// The delays of sign-ins, after OWASP's device cookies: a device that
/// signed in as a user before is held only to its own failures, so
/// strangers' guesses (from one address or a botnet) never lock it out;
/// unknown devices wait by (user, address) and by user overall.
#[derive(Debug)]
pub struct LoginDelays {
    per_device: Delays<String>,
    per_user_address: Delays<(String, IpAddr)>,
    per_user: Delays<String>,
    per_user_backoff: Backoff,
}

/// What a failed sign-in counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed {
    /// Failures of this user from unknown devices, in the current run.
    pub user_failures: u32,
    /// This failure started the per-user delay: tell the supervisors, once per run.
    pub user_now_delayed: bool,
}

/// The delays of [`LoginDelays::default`].
pub const PER_DEVICE: Backoff = Backoff {
    free: 10,
    base: Duration::from_secs(30),
    cap: Duration::from_secs(3600),
    forget: Duration::from_secs(3600),
};
/// An operator mistyping from a new machine gets 5 tries, then 30 s, 60 s, ...
pub const PER_USER_ADDRESS: Backoff = Backoff {
    free: 5,
    base: Duration::from_secs(30),
    cap: Duration::from_secs(3600),
    forget: Duration::from_secs(3600),
};
/// Many addresses guessing one user: 20 tries in all, then 30 s, 60 s, ...,
/// at most an hour: a botnet gets a few dozen guesses a day.
pub const PER_USER: Backoff = Backoff {
    free: 20,
    base: Duration::from_secs(30),
    cap: Duration::from_secs(3600),
    forget: Duration::from_secs(3600),
};

impl Default for LoginDelays {
    fn default() -> Self {
        LoginDelays::new(PER_DEVICE, PER_USER_ADDRESS, PER_USER)
    }
}

impl LoginDelays {
    pub fn new(per_device: Backoff, per_user_address: Backoff, per_user: Backoff) -> Self {
        LoginDelays {
            per_device: Delays::new(per_device),
            per_user_address: Delays::new(per_user_address),
            per_user: Delays::new(per_user),
            per_user_backoff: per_user,
        }
    }

    /// Seconds this attempt must wait (0: check the password).
    pub fn wait(&mut self, attempt: Attempt<'_>, now: Instant) -> u64 {
        match attempt {
            Attempt::KnownDevice { device, .. } => self.per_device.wait(&device.to_owned(), now),
            Attempt::Unknown { user, address } => {
                let pair = self.per_user_address.wait(&(user.to_owned(), address), now);
                pair.max(self.per_user.wait(&user.to_owned(), now))
            }
        }
    }

    /// Counts a wrong password.
    pub fn fail(&mut self, attempt: Attempt<'_>, now: Instant) -> Failed {
        match attempt {
            Attempt::KnownDevice { device, .. } => {
                self.per_device.fail(&device.to_owned(), now);
                Failed { user_failures: 0, user_now_delayed: false }
            }
            Attempt::Unknown { user, address } => {
                self.per_user_address.fail(&(user.to_owned(), address), now);
                let n = self.per_user.fail(&user.to_owned(), now);
                Failed { user_failures: n, user_now_delayed: n == self.per_user_backoff.free }
            }
        }
    }

    /// A correct password: this device's and this (user, address)'s failures
    /// are forgotten. The user's overall count is not: a botnet's run goes on
    /// even when the real user signs in from a new device in between.
    pub fn succeed(&mut self, attempt: Attempt<'_>) {
        match attempt {
            Attempt::KnownDevice { device, .. } => self.per_device.clear(&device.to_owned()),
            Attempt::Unknown { user, address } => self.per_user_address.clear(&(user.to_owned(), address)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ContactLimits {
        ContactLimits {
            per_phone: Rate { burst: 2, every: Duration::from_secs(60) },
            per_address: Rate { burst: 3, every: Duration::from_secs(10) },
            overall: Rate { burst: 5, every: Duration::from_secs(1) },
        }
    }

    #[test]
    fn rates_parse_from_their_flag_form_and_refuse_nonsense() {
        assert_eq!("5:120".parse(), Ok(Rate { burst: 5, every: Duration::from_secs(120) }));
        assert_eq!(" 500 : 0.1 ".parse(), Ok(Rate { burst: 500, every: Duration::from_millis(100) }));
        for bad in ["", "5", "5:", ":5", "x:1", "5:x", "0:1", "-1:1", "5:0", "5:-2", "5:NaN", "5:inf", "5:100000"] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.contains("BURST:SECONDS"), "{bad}: {e}");
        }
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([198, 51, 100, n]))
    }

    #[test]
    fn a_phone_number_gets_its_burst_then_waits() {
        let t0 = Instant::now();
        let mut l = ContactLimiter::new(limits(), t0);
        assert_eq!(l.admit(t0, ip(1), Some("+919810000001"), false), Ok(()));
        assert_eq!(l.admit(t0, ip(2), Some("+919810000001"), false), Ok(()));
        assert_eq!(l.admit(t0, ip(3), Some("+919810000001"), false), Err(Refusal::Phone { retry_after: 60 }));
        assert_eq!(l.admit(t0, ip(3), Some("+919810000002"), false), Ok(()), "another number");
        assert_eq!(
            l.admit(t0 + Duration::from_secs(30), ip(3), Some("+919810000001"), false).unwrap_err(),
            Refusal::Phone { retry_after: 30 }
        );
        assert_eq!(l.admit(t0 + Duration::from_secs(60), ip(4), Some("+919810000001"), false), Ok(()));
    }

    #[test]
    fn an_address_gets_a_burst_then_a_rate() {
        let t0 = Instant::now();
        let mut l = ContactLimiter::new(limits(), t0);
        for n in 0..3 {
            assert_eq!(l.admit(t0, ip(1), Some(&format!("+91981000000{n}")), false), Ok(()));
        }
        assert_eq!(l.admit(t0, ip(1), Some("+919810000009"), false), Err(Refusal::Address { retry_after: 10 }));
        assert_eq!(l.admit(t0, ip(2), Some("+919810000009"), false), Ok(()), "another address");
        assert_eq!(l.admit(t0 + Duration::from_secs(10), ip(1), Some("+919810000009"), false), Ok(()), "one refilled");
        assert!(l.admit(t0 + Duration::from_secs(10), ip(1), Some("+919810000008"), false).is_err());
    }

    #[test]
    fn the_overall_ceiling_sheds_load_and_a_refusal_costs_nothing() {
        let t0 = Instant::now();
        let mut l = ContactLimiter::new(limits(), t0);
        for n in 0..5 {
            assert_eq!(l.admit(t0, ip(n), None, false), Ok(()));
        }
        assert_eq!(l.admit(t0, ip(9), None, false), Err(Refusal::Overall { retry_after: 1 }));
        // The refused start did not use ip(9)'s bucket: three more go once the ceiling refills.
        for s in 1..=3 {
            assert_eq!(l.admit(t0 + Duration::from_secs(s), ip(9), None, false), Ok(()));
        }
    }

    #[test]
    fn an_emergency_is_never_refused() {
        let t0 = Instant::now();
        let mut l = ContactLimiter::new(limits(), t0);
        for _ in 0..2 {
            l.admit(t0, ip(1), Some("+919810000001"), false).unwrap();
        }
        assert!(l.admit(t0, ip(1), Some("+919810000001"), false).is_err());
        for _ in 0..20 {
            assert_eq!(l.admit(t0, ip(1), Some("+919810000001"), true), Ok(()));
        }
        // Emergencies count but do not dig a hole: one refill period later a normal start goes again.
        assert_eq!(l.admit(t0 + Duration::from_secs(60), ip(2), Some("+919810000001"), false), Ok(()));
    }

    #[test]
    fn delays_grow_and_are_forgotten() {
        let b = Backoff {
            free: 2,
            base: Duration::from_secs(10),
            cap: Duration::from_secs(60),
            forget: Duration::from_secs(600),
        };
        assert_eq!([0, 1, 2, 3, 4, 5].map(|n| b.delay(n).as_secs()), [0, 0, 10, 20, 40, 60]);
        let t0 = Instant::now();
        let mut d = Delays::new(b);
        assert_eq!(d.wait(&"asha", t0), 0);
        d.fail(&"asha", t0);
        d.fail(&"asha", t0);
        assert_eq!(d.wait(&"asha", t0), 10);
        assert_eq!(d.wait(&"asha", t0 + Duration::from_secs(4)), 6);
        assert_eq!(d.wait(&"asha", t0 + Duration::from_secs(10)), 0);
        assert_eq!(d.fail(&"asha", t0 + Duration::from_secs(10)), 3);
        assert_eq!(d.wait(&"asha", t0 + Duration::from_secs(10)), 20);
        assert_eq!(d.wait(&"ravi", t0), 0, "other keys are not delayed");
        assert_eq!(d.wait(&"asha", t0 + Duration::from_secs(700)), 0, "forgotten");
        assert_eq!(d.fail(&"asha", t0 + Duration::from_secs(700)), 1, "a new run");
    }

    #[test]
    fn strangers_do_not_delay_a_known_device() {
        let t0 = Instant::now();
        let mut l = LoginDelays::default();
        let addr = |n: u8| IpAddr::from([203, 0, 113, n]);
        // A botnet: one guess from each of 25 addresses.
        let mut alerted = 0;
        for n in 0..25 {
            let attempt = Attempt::Unknown { user: "asha", address: addr(n) };
            assert_eq!(l.wait(attempt, t0) == 0, n < 20, "guess {n}");
            if l.wait(attempt, t0) == 0 && l.fail(attempt, t0).user_now_delayed {
                alerted += 1;
            }
        }
        assert_eq!(alerted, 1, "the supervisors are told once");
        assert!(l.wait(Attempt::Unknown { user: "asha", address: addr(200) }, t0) > 0, "unknown devices wait");
        assert_eq!(l.wait(Attempt::Unknown { user: "ravi", address: addr(200) }, t0), 0, "other users do not");
        assert_eq!(l.wait(Attempt::KnownDevice { user: "asha", device: "d1" }, t0), 0, "asha's own device does not");
        // One address guessing: five tries, then a wait.
        let one = Attempt::Unknown { user: "ravi", address: addr(1) };
        for _ in 0..5 {
            assert_eq!(l.wait(one, t0), 0);
            l.fail(one, t0);
        }
        assert_eq!(l.wait(one, t0), 30);
        assert_eq!(l.wait(Attempt::Unknown { user: "ravi", address: addr(2) }, t0), 0, "another address does not wait");
        // A known device's own failures delay only it.
        let device = Attempt::KnownDevice { user: "meera", device: "d2" };
        for _ in 0..10 {
            l.fail(device, t0);
        }
        assert_eq!(l.wait(device, t0), 30);
        assert_eq!(l.wait(Attempt::KnownDevice { user: "meera", device: "d3" }, t0), 0);
        l.succeed(device);
        assert_eq!(l.wait(device, t0), 0);
    }
}
