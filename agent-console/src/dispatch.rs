//! Ambulance dispatch: the life-critical outbox. Every ambulance request is
//! stored first, then POSTed to the dispatch service's webhook; one the
//! webhook has not taken is retried seconds apart ([`DispatchPolicy`]) and
//! never given up. Each attempt is recorded with its error on the request
//! (`ambulance_attempt`), and a request still undelivered after
//! [`DispatchPolicy::alarm_after`] is on the supervisors' wallboard as an
//! alarm to phone 102/108, until the webhook takes it.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use crate::store::{Claimant, Delivery, Result, Store};

/// How undelivered ambulance requests are retried, and when supervisors are told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DispatchPolicy {
    /// The wait before the first retry; each later wait doubles, up to [`DispatchPolicy::max_backoff`].
    pub first_backoff: Duration,
    /// The longest wait between tries: seconds, not minutes, because a
    /// patient waits for the ambulance.
    pub max_backoff: Duration,
    /// How long a request may stay undelivered before the wallboard raises the alarm.
    pub alarm_after: Duration,
}

impl Default for DispatchPolicy {
    fn default() -> Self {
        DispatchPolicy {
            first_backoff: Duration::seconds(2),
            max_backoff: Duration::seconds(30),
            alarm_after: Duration::seconds(60),
        }
    }
}

impl DispatchPolicy {
    /// The wait after the `failed`-th failed attempt (1 for the first): 2 s, 4 s, 8 s, … at most 30 s.
    pub fn backoff(&self, failed: i64) -> Duration {
        let doublings = (failed - 1).clamp(0, 20) as u32;
        let wait = self.first_backoff.num_milliseconds().saturating_mul(1 << doublings);
        Duration::milliseconds(wait).min(self.max_backoff)
    }
}

/// Sends a stored ambulance request to the dispatch webhook and records the
/// attempt (which ends the request's claim); says whether the webhook took
/// it. The caller holds the request's claim ([`crate::store::claim::AMBULANCE_LEASE`],
/// longer than the webhook's timeout). Without a webhook the attempt fails
/// (and the alarm comes in due course): nothing else can deliver it.
pub async fn deliver(store: &Store, webhook: Option<&str>, policy: &DispatchPolicy, request_id: &str) -> Result<bool> {
    let request = store.ambulance_request(request_id).await?;
    let contact = store.contact(&request.contact_id).await?;
    let outcome = match webhook {
        None => Err("no dispatch webhook is configured; call the dispatch service (102)".to_owned()),
        Some(url) => {
            let patient = match request.patient_id {
                Some(p) => Some(store.patient(p).await?),
                None => None,
            };
            let requested_by = store.staff(request.requested_by).await?.display_name;
            let body = serde_json::json!({
                "request_id": request.ambulance_request_id,
                "contact_id": request.contact_id,
                "urgency": request.urgency,
                "location": request.location,
                "note": request.note,
                "caller_phone": contact.caller_phone,
                "patient": patient.map(|p| serde_json::json!({"name": p.name, "age_years": p.age_years, "sex": p.sex})),
                "requested_by": requested_by,
                "requested_at": request.created_at,
            });
            match reqwest::Client::builder().timeout(StdDuration::from_secs(10)).build() {
                Err(e) => Err(format!("no HTTP client: {e}")),
                Ok(client) => match client.post(url).json(&body).send().await {
                    Ok(res) if res.status().is_success() => Ok(()),
                    Ok(res) => Err(format!("the dispatch webhook answered {}", res.status())),
                    Err(e) => Err(format!("the dispatch webhook could not be reached: {e}")),
                },
            }
        }
    };
    let now = Utc::now();
    let delivery = match outcome {
        Ok(()) => Delivery::Delivered,
        Err(error) => {
            let retry_at = now + policy.backoff(request.attempts + 1);
            tracing::error!(request = %request_id, attempt = request.attempts + 1, %retry_at, %error,
                "ambulance request not delivered; retrying");
            Delivery::Failed { error, retry_at }
        }
    };
    let delivered = delivery == Delivery::Delivered;
    let after = store.record_ambulance_delivery(request_id, &delivery, now).await?;
    if delivered {
        tracing::info!(request = %request_id, attempts = after.attempts, "ambulance request delivered");
    }
    Ok(delivered)
}

/// Retries the undelivered requests as each falls due, until `shutdown`,
/// each claimed by `claimant` first, so of the nodes sharing the database
/// one sends it. It looks every second: a due retry waits at most that long.
pub async fn run(
    store: Store,
    claimant: Claimant,
    webhook: String,
    policy: DispatchPolicy,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(StdDuration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        // A store error is logged and the round is tried again next second:
        // the requests stay in the store, so nothing is lost by waiting.
        // At most 50 a round; each claimed request's attempt is recorded
        // (or its claim runs out), so none comes back within the round.
        for _ in 0..50 {
            match store.claim_due_ambulance_request(&claimant, Utc::now()).await {
                Ok(Some(request)) => {
                    let id = request.ambulance_request_id;
                    if let Err(e) = deliver(&store, Some(&webhook), &policy, &id).await {
                        // Its claim runs out and it is tried again (by any node).
                        tracing::error!(request = %id, error = %e, "ambulance delivery could not be recorded");
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "undelivered ambulance requests could not be read");
                    break;
                }
            }
        }
    }
}

/// The undelivered requests the supervisors must be told of at `now`.
pub async fn alarms(
    store: &Store,
    policy: &DispatchPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<crate::store::AmbulanceRequest>> {
    store.undelivered_ambulance_requests(now - policy.alarm_after).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_two_seconds_up_to_thirty() {
        let p = DispatchPolicy::default();
        let waits: Vec<i64> = (1..=8).map(|n| p.backoff(n).num_seconds()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(p.backoff(10_000).num_seconds(), 30, "no overflow after many tries");
        let fast = DispatchPolicy { first_backoff: Duration::seconds(1), ..p };
        assert_eq!((1..=3).map(|n| fast.backoff(n).num_seconds()).collect::<Vec<_>>(), [1, 2, 4]);
    }
}
