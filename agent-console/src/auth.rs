//! Passwords, session tokens and login throttling: the parts of
//! authentication that do not know HTTP.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password as a PHC string (`$argon2id$v=19$...`). CPU-heavy: call it off the executor.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash =
        argon2().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    Ok(hash.to_string())
}

/// Checks a password against a PHC string. CPU-heavy: call it off the executor.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A hash to verify against when the username does not exist, so that a
/// login for an unknown user takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no such user").expect("hashing works"))
}

/// A new random session token (256 bits), URL-safe.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A random password for demo accounts: 16 characters, no look-alikes.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// Slows down password guessing: after `max_failures` failed logins for one
/// key (a username, or a client address) within `window`, further attempts
/// for that key are refused until the oldest failure leaves the window.
///
/// Time is passed in, so the rule is tested without waiting. The state is
/// per node; with several nodes an attacker gets `max_failures` per node.
pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        LoginThrottle { max_failures, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when any of `keys` is locked out at `now`.
    pub fn check(&self, keys: &[&str], now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().expect("throttle lock");
        let mut wait = 0;
        for key in keys {
            if let Some(times) = failures.get_mut(*key) {
                while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    times.pop_front();
                }
                if times.len() >= self.max_failures {
                    let oldest = *times.front().expect("non-empty");
                    let left = self.window.saturating_sub(now.duration_since(oldest));
                    wait = wait.max(left.as_secs().max(1));
                }
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    pub fn record_failure(&self, keys: &[&str], now: Instant) {
        let mut failures = self.failures.lock().expect("throttle lock");
        // Bound memory under a spray of usernames: forget the stalest keys.
        if failures.len() > 100_000 {
            failures.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < self.window));
        }
        for key in keys {
            failures.entry((*key).to_owned()).or_default().push_back(now);
        }
    }

    /// Counts one more attempt against `keys` (for rate limits that are not about failures).
    pub fn record(&self, keys: &[&str], now: Instant) {
        self.record_failure(keys, now);
    }

    pub fn record_success(&self, key: &str) {
        self.failures.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_unique_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn throttle_locks_after_max_failures_and_releases_after_window() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(t.check(&["asha"], start + Duration::from_secs(i)), Ok(()));
            t.record_failure(&["asha"], start + Duration::from_secs(i));
        }
        assert_eq!(t.check(&["asha"], start + Duration::from_secs(10)), Err(50));
        assert_eq!(t.check(&["ravi"], start + Duration::from_secs(10)), Ok(()), "other users are not locked");
        assert_eq!(t.check(&["asha"], start + Duration::from_secs(61)), Ok(()), "the oldest failure left the window");
    }

    #[test]
    fn success_clears_the_count() {
        let t = LoginThrottle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        t.record_failure(&["asha"], now);
        t.record_success("asha");
        t.record_failure(&["asha"], now);
        assert_eq!(t.check(&["asha"], now), Ok(()));
    }
}
