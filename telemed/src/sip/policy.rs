//! Who may call and how much: trunk address ranges, the INVITE rate per
//! source and the channels per trunk. Pure: time is passed in.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// An address range such as `10.20.0.0/16` or `2001:db8::/32`.
///
/// A tiny own type rather than a crate: containment is all a trunk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address range {0:?}: want ADDRESS or ADDRESS/PREFIX")]
pub struct CidrError(String);

impl Cidr {
    /// A range; the prefix is capped at the family's width.
    pub fn new(addr: IpAddr, prefix: u8) -> Cidr {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix: prefix.min(max) }
    }

    /// Whether `ip` lies in the range. An IPv4 address carried as IPv6
    /// (`::ffff:a.b.c.d`, from a dual-stack socket) counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A token bucket per source address (RFC 3261 gives no INVITE rate; a
/// trunk's own rate is set by contract, so this is a flood guard).
///
/// Each source gets `rate` INVITEs per second with a burst of `rate`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32) -> RateLimiter {
        RateLimiter { rate: f64::from(rate_per_second.max(1)), buckets: HashMap::new() }
    }

    /// Take one token for `ip` at `now`; `false` when its bucket is empty.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        // Forget sources idle long enough to have a full bucket, so a scan
        // from many addresses does not grow the map without bound.
        if self.buckets.len() > 4096 {
            let full = Duration::from_secs(1);
            self.buckets.retain(|_, (_, at)| now.saturating_duration_since(*at) < full);
        }
        let rate = self.rate;
        let (tokens, at) = self.buckets.entry(ip).or_insert((rate, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The calls in progress per trunk, against each trunk's channel count
/// (an E1 carries 30).
///
/// A `std::sync::Mutex`: it is held only to change a count, never across
/// an `.await`.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    in_use: Arc<Mutex<HashMap<String, u32>>>,
}

/// One channel of a trunk, given back when dropped.
#[derive(Debug)]
pub struct ChannelPermit {
    trunk: String,
    in_use: Arc<Mutex<HashMap<String, u32>>>,
}

impl Channels {
    /// Take a channel of `trunk` unless all `max` are in use.
    pub fn try_take(&self, trunk: &str, max: u32) -> Option<ChannelPermit> {
        let mut map = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(trunk.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ChannelPermit { trunk: trunk.to_owned(), in_use: self.in_use.clone() })
    }

    /// Channels of `trunk` in use now.
    pub fn in_use(&self, trunk: &str) -> u32 {
        let map = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(trunk).copied().unwrap_or(0)
    }
}

impl Drop for ChannelPermit {
    fn drop(&mut self) {
        let mut map = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.trunk) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let table = [
            ("10.20.0.0/16", "10.20.255.1", true),
            ("10.20.0.0/16", "10.21.0.1", false),
            ("127.0.0.2/32", "127.0.0.1", false),
            ("127.0.0.2", "127.0.0.2", true),
            ("0.0.0.0/0", "192.0.2.1", true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("2001:db8::/32", "2001:db8:1::5", true),
            ("2001:db8::/32", "10.0.0.1", false),
        ];
        for (cidr, ip, want) in table {
            let c: Cidr = cidr.parse().unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), want, "{cidr} {ip}");
        }
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn rate_limiter_refills_per_source() {
        let mut r = RateLimiter::new(2);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(r.allow(a, t0));
        assert!(r.allow(a, t0));
        assert!(!r.allow(a, t0));
        assert!(r.allow(b, t0), "another source has its own bucket");
        assert!(r.allow(a, t0 + Duration::from_millis(500)));
        assert!(!r.allow(a, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn channels_are_given_back_on_drop() {
        let c = Channels::default();
        let p = c.try_take("e1", 1).unwrap();
        assert!(c.try_take("e1", 1).is_none());
        assert!(c.try_take("other", 1).is_some());
        drop(p);
        assert_eq!(c.in_use("e1"), 0);
        assert!(c.try_take("e1", 1).is_some());
    }
}
