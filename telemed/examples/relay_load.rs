//! Load generator for the SFU: N two-party audio calls on loopback, each
//! party a webrtc client peer sending 20 ms Opus frames, so 2·N audio
//! streams are relayed. The SFU runs on its own single-threaded runtime
//! ("sfu" threads) and the clients on another, so the SFU's CPU is read
//! from its own threads in /proc.
//!
//! `cargo run --release -p telemed --example relay_load -- CALLS [SECONDS]`

#[path = "../tests/peer/mod.rs"]
mod peer;

use std::time::{Duration, Instant};

use peer::Client;
use telemed::media::Role;
use telemed::sfu::{Sfu, SfuConfig};

/// CPU seconds used so far by this process's threads whose name starts with `prefix`.
fn cpu_seconds(prefix: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let (utime, stime): (f64, f64) = (fields[11].parse().unwrap(), fields[12].parse().unwrap());
        total += (utime + stime) / ticks;
    }
    total
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: usize = args.next().map_or(50, |a| a.parse().expect("CALLS"));
    let seconds: u64 = args.next().map_or(10, |a| a.parse().expect("SECONDS"));

    let sfu_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("sfu").enable_all().build().unwrap();
    let clients_runtime =
        tokio::runtime::Builder::new_multi_thread().thread_name("client").enable_all().build().unwrap();
    let sfu = Sfu::new(SfuConfig::default());
    let rss_before = rss_mib();

    clients_runtime.block_on(async {
        let mut parties = Vec::new();
        for n in 0..calls {
            let session = format!("load-{n}");
            // Offers are handled on the SFU's runtime, so its peer connections live there.
            let join = |id: &'static str, role, pitch| {
                let (sfu, session) = (sfu.clone(), session.clone());
                let handle = sfu_runtime.handle().clone();
                async move {
                    let (tx, signal) = tokio::sync::mpsc::unbounded_channel();
                    let call = handle.spawn(async move { sfu.attach(&session, id, role, tx).await }).await.unwrap();
                    Client::connect_on(
                        call,
                        signal,
                        pitch,
                        peer::Options { timed: true, sfu: Some(handle), ..Default::default() },
                    )
                    .await
                }
            };
            let patient = join("patient", Role::Patient, 440.0).await;
            let operator = join("operator", Role::Operator, 660.0).await;
            let _ = patient.timing.partner.set(operator.sent.clone());
            let _ = operator.timing.partner.set(patient.sent.clone());
            parties.push(patient);
            parties.push(operator);
        }
        // Let the calls settle, then measure.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for c in &parties {
            c.timing.delays.lock().unwrap().clear();
        }
        let received_before: u64 =
            parties.iter().map(|c| c.timing.received.load(std::sync::atomic::Ordering::Relaxed)).sum();
        let sent_before = peer::SENT.load(std::sync::atomic::Ordering::Relaxed);
        let (cpu_before, started) = (cpu_seconds("sfu"), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (cpu, wall) = (cpu_seconds("sfu") - cpu_before, started.elapsed().as_secs_f64());
        let received: u64 =
            parties.iter().map(|c| c.timing.received.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>()
                - received_before;
        let mut delays: Vec<Duration> = parties.iter().flat_map(|c| c.timing.delays.lock().unwrap().clone()).collect();
        delays.sort();
        let pct = |p: f64| delays.get(((delays.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
        let streams = 2 * calls;
        let expected = (peer::SENT.load(std::sync::atomic::Ordering::Relaxed) - sent_before) as f64;
        let share = cpu / wall;
        println!("calls {calls}, relayed audio streams {streams}, {seconds} s");
        println!(
            "client packets sent {expected:.0} ({:.0}% of 50 per stream per second)",
            100.0 * expected / (streams as f64 * 50.0 * wall)
        );
        println!("packets relayed {received} of {expected:.0} sent ({:.1}%)", 100.0 * received as f64 / expected);
        println!(
            "sfu cpu {:.1}% of one core, {:.3}% per stream, {:.0} streams per core at this rate",
            100.0 * share,
            100.0 * share / streams as f64,
            streams as f64 / share
        );
        println!(
            "send-to-receive delay p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            delays.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        println!(
            "process rss {:.0} MiB ({:.2} MiB per call, clients included)",
            rss_mib(),
            (rss_mib() - rss_before) / calls as f64
        );
        for c in parties {
            c.close().await;
        }
    });
}
