//! The Redis backing: this node's replica of the shared routing stream,
//! the follower that applies the other nodes' entries, the lease keeper
//! that declares lost nodes, and the relay of handlers' updates between
//! nodes over pub/sub.

use std::time::Duration as StdDuration;

use chrono::Utc;
use routing::redis_log::{self, SharedEngine};
use routing::{Roster, RoutingConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Backing, Center, Update, roster_around};

pub(super) struct RedisBacking {
    pub(super) url: String,
    /// The stream of routing entries.
    pub(super) stream: String,
    /// The pub/sub channel of updates.
    pub(super) channel: String,
    pub(super) cfg: RoutingConfig,
    /// This node's replica; `None` until connected, and again after Redis
    /// failed it (the follower reconnects and rebuilds it from the stream).
    pub(super) shared: Mutex<Option<SharedEngine>>,
    /// This node's id on the stream while its replica is connected (the
    /// lease keeper reads it without waiting for the replica's lock). A
    /// `std::sync::Mutex`, never held across `.await`.
    pub(super) joined: std::sync::Mutex<Option<String>>,
    /// How long this node's lease lasts.
    pub(super) lease: StdDuration,
    /// Updates for the other nodes, in order, to the publisher task.
    pub(super) outbox: mpsc::UnboundedSender<String>,
}

/// Where several nodes share one queue.
#[derive(Clone, Debug)]
pub struct RedisRouting {
    pub url: String,
    /// Keys are `{prefix}:routing` (the stream) and `{prefix}:updates` (the
    /// channel): one prefix per deployment (per database).
    pub prefix: String,
    /// How long a node's lease lasts: a node silent that long is declared lost.
    pub lease: StdDuration,
}

/// An update as it travels between nodes.
#[derive(Serialize, Deserialize)]
pub(super) struct Relayed {
    pub(super) node: String,
    pub(super) update: Update,
}

impl Center {
    /// Connects this node's replica: joins the stream under a fresh id with
    /// its lease, applies the whole stream to an engine with no roster (so
    /// it ends where every replica is), then appends the roster this node
    /// reads from the store. Readers are then sent [`Update::Resync`]: what
    /// they were told before may be stale.
    pub(super) async fn connect_replica(&self) -> anyhow::Result<()> {
        let Backing::Redis(r) = &self.inner.backing else { return Ok(()) };
        let mut guard = r.shared.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        let lease_ms = r.lease.as_millis() as u64;
        let join = SharedEngine::join(&r.url, &r.stream, &self.inner.node, lease_ms, Roster::default(), r.cfg.clone());
        let mut shared = tokio::time::timeout(StdDuration::from_secs(5), join)
            .await
            .map_err(|_| anyhow::anyhow!("Redis did not answer within 5 s"))??;
        *r.joined.lock().expect("joined lock") = Some(shared.node().to_owned());
        let now = Utc::now();
        let roster = roster_around(&self.inner.store, now).await?;
        shared.set_roster(now.timestamp_millis(), &roster).await?;
        let e = shared.engine();
        tracing::info!(
            stream = %r.stream,
            node = shared.node(),
            last = shared.last_id().unwrap_or("-"),
            agents = e.agents().count(),
            waiting = e.waiting(),
            "routing replica rebuilt from the Redis stream"
        );
        *guard = Some(shared);
        drop(guard);
        let _ = self.inner.updates.send(Update::Resync);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// After applying entries: if they declared this node lost, its replica
    /// is dropped (its entries are refused from now on), and the follower
    /// rejoins under a new id.
    pub(super) fn rejoin_if_fenced(&self, guard: &mut MutexGuard<'_, Option<SharedEngine>>) {
        let Backing::Redis(r) = &self.inner.backing else { return };
        if let Some(shared) = guard.as_ref()
            && shared.fenced()
        {
            tracing::warn!(
                node = shared.node(),
                "routing: this node was declared lost by the others; rejoining under a new id"
            );
            **guard = None;
            *r.joined.lock().expect("joined lock") = None;
        }
    }

    /// With Redis: renews this node's lease six times per lease, and declares
    /// lost every node of the stream whose lease is gone. A renewal that finds
    /// the lease already gone (this node was stopped or cut off that long)
    /// drops the replica so it rejoins under a new id, whether or not another
    /// node has declared it lost yet. Gives the lease up on shutdown.
    pub(super) async fn keep_lease(self, shutdown: CancellationToken) {
        let Backing::Redis(r) = &self.inner.backing else { return };
        let lease_ms = r.lease.as_millis() as u64;
        let period = (r.lease / 6).max(StdDuration::from_millis(50));
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
            let round = async {
                if conn.is_none() {
                    let client = redis::Client::open(r.url.as_str())?;
                    conn = Some(client.get_multiplexed_async_connection().await?);
                }
                let c = conn.as_mut().expect("connected above");
                let Some(me) = r.joined.lock().expect("joined lock").clone() else { return anyhow::Ok(()) };
                if !redis_log::renew_lease(c, &r.stream, &me, lease_ms).await? {
                    tracing::warn!(node = %me, "routing: this node's lease had run out; rejoining under a new id");
                    let mut guard = r.shared.lock().await;
                    if guard.as_ref().is_some_and(|s| s.node() == me) {
                        *guard = None;
                    }
                    *r.joined.lock().expect("joined lock") = None;
                    return Ok(());
                }
                // The nodes the replica has seen; skipped this round while the replica is busy.
                let others: Vec<String> = match r.shared.try_lock() {
                    Ok(guard) => guard
                        .as_ref()
                        .map(|s| s.replica().nodes().filter(|n| *n != me).map(str::to_owned).collect())
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                for node in others {
                    if redis_log::lease_alive(c, &r.stream, &node).await? {
                        continue;
                    }
                    let mut guard = r.shared.lock().await;
                    let Some(shared) = guard.as_mut() else { break };
                    if shared.replica().is_fenced(&node) {
                        continue;
                    }
                    match shared.lose(Utc::now().timestamp_millis(), &node).await {
                        Ok(applied) => {
                            tracing::warn!(lost = %node, paused = applied.iter().filter(|a| a.node == me).count(),
                                "routing: a node's lease ran out; declared lost, its agents' offers move on");
                            let _ = self.carry_out(&applied, None).await;
                            self.rejoin_if_fenced(&mut guard);
                        }
                        Err(e) => {
                            *guard = None;
                            return Err(e.into());
                        }
                    }
                    drop(guard);
                    self.inner.wake.notify_one();
                }
                Ok(())
            };
            // A round is bounded: a lease renewal that waits longer than the lease is no renewal.
            match tokio::time::timeout(r.lease, round).await {
                Ok(Ok(())) => failing = false,
                Ok(Err(e)) => {
                    conn = None;
                    if !failing {
                        tracing::warn!(error = %e, "routing: the node lease could not be kept; retrying");
                        failing = true;
                    }
                }
                Err(_) => {
                    conn = None;
                    if !failing {
                        tracing::warn!("routing: Redis did not answer the lease keeper within a lease; retrying");
                        failing = true;
                    }
                }
            }
        }
        // A clean stop: give the lease up so the others move this node's agents' offers at once.
        let me = r.joined.lock().expect("joined lock").clone();
        if let (Some(me), Some(c)) = (me, conn.as_mut())
            && let Err(e) = redis_log::drop_lease(c, &r.stream, &me).await
        {
            tracing::warn!(error = %e, "routing: this node's lease was not given up; it runs out by itself");
        }
    }

    /// With Redis: keeps the replica connected and applies the other nodes'
    /// entries as they come (a blocking `XREAD` on its own connection wakes it).
    pub(super) async fn follow(self, shutdown: CancellationToken) {
        let Backing::Redis(r) = &self.inner.backing else { return };
        let mut waiter: Option<redis::aio::MultiplexedConnection> = None;
        let mut failing = false;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let step = async {
                self.connect_replica().await?;
                if waiter.is_none() {
                    // No response timeout: the XREAD below blocks on purpose.
                    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(None);
                    let client = redis::Client::open(r.url.as_str())?;
                    waiter = Some(client.get_multiplexed_async_connection_with_config(&cfg).await?);
                }
                let last = r.shared.lock().await.as_ref().and_then(|s| s.last_id().map(str::to_owned));
                let conn = waiter.as_mut().expect("connected above");
                let mut xread = redis::cmd("XREAD");
                xread
                    .arg("BLOCK")
                    .arg(5000)
                    .arg("COUNT")
                    .arg(1)
                    .arg("STREAMS")
                    .arg(&r.stream)
                    .arg(last.as_deref().unwrap_or("0-0"));
                let read = xread.query_async::<Option<redis::Value>>(conn);
                let got = read.await;
                if got.inspect_err(|_| waiter = None)?.is_none() {
                    return Ok(());
                }
                let mut guard = r.shared.lock().await;
                if let Some(shared) = guard.as_mut() {
                    match shared.sync().await {
                        Ok(applied) => {
                            // Other nodes' entries: nobody here waits on them (failures logged there).
                            let _ = self.carry_out(&applied, None).await;
                            self.rejoin_if_fenced(&mut guard);
                        }
                        Err(e) => {
                            *guard = None;
                            return Err(e.into());
                        }
                    }
                }
                drop(guard);
                self.inner.wake.notify_one();
                anyhow::Ok(())
            };
            let step = tokio::select! {
                _ = shutdown.cancelled() => return,
                step = step => step,
            };
            match step {
                Ok(()) => {
                    if failing {
                        tracing::info!("routing: Redis reachable again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "routing: Redis unreachable; retrying every second");
                        failing = true;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// With Redis: feeds the updates other nodes publish into this node's
    /// broadcast channel (this node's own went there directly).
    pub(super) async fn relay_updates(self, url: String, channel: String, shutdown: CancellationToken) {
        loop {
            let run = async {
                let mut pubsub = redis::Client::open(url.as_str())?.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    match serde_json::from_str::<Relayed>(&payload) {
                        Ok(r) if r.node != self.inner.node => {
                            let _ = self.inner.updates.send(r.update);
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "routing: an update from another node was not understood"),
                    }
                }
                anyhow::Ok(())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                res = run => {
                    if let Err(e) = res {
                        tracing::warn!(error = %e, "routing: the updates of other nodes are not reaching this node");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
            }
        }
    }
}

/// With Redis: publishes the updates this node's handlers made, in order, for the other nodes.
/// While Redis is away they are dropped (the consoles on other nodes miss
/// them; this node's own streams had them already).
pub(super) async fn publish_updates(
    url: String,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = rx.recv() => match msg { Some(m) => m, None => return },
        };
        if conn.is_none() {
            conn = match redis::Client::open(url.as_str()) {
                Ok(c) => c.get_multiplexed_async_connection().await.ok(),
                Err(_) => None,
            };
        }
        let Some(c) = conn.as_mut() else {
            tracing::warn!("routing: an update was not published to the other nodes (Redis unreachable)");
            continue;
        };
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH").arg(&channel).arg(msg).query_async(c).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "routing: an update was not published to the other nodes");
            conn = None;
        }
    }
}
