//! Decisions per second and per-decision latency through the shared Redis
//! stream (`routing::redis_log`), one node.
//!
//! `cargo run --release -p routing --example redis_decisions -- [WAITING] [AGENTS] [URL]`
//! (defaults 10000, 500, redis://127.0.0.1:6379). The same floor as
//! `examples/decisions.rs`; each decision is `submit` (an `XADD`, then an
//! `XRANGE` up to it and applying it to the replica) then `next_timer`. Uses
//! a fresh stream key and deletes it at the end.

use std::hint::black_box;
use std::time::Instant;

use routing::redis_log::SharedEngine;
use routing::*;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let waiting: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let agents: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let key = format!("careline:bench:routing:{}", std::process::id());
    let day = 24 * 3_600_000;
    let roster = Roster {
        agents: (1..=agents)
            .map(|i| AgentProfile {
                id: AgentId(i),
                role: Role::Operator,
                languages: vec!["hi".into(), "en".into()],
                specialty: None,
            })
            .collect(),
        seats: (1..=agents).map(|i| Seat { id: SeatId(i), peak: false }).collect(),
        shifts: vec![Shift {
            role: Role::Operator,
            start: 0,
            end: day,
            peak: false,
            agents: (1..=agents).map(AgentId).collect(),
        }],
    };
    let cfg = RoutingConfig { wrap_up: 0, ..RoutingConfig::default() };
    let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    let mut node = SharedEngine::connect(&url, &key, "bench", roster, cfg).await.unwrap();
    let contact = |i: usize| {
        Event::ContactArrived(NewContact {
            id: ContactId(format!("c{i}")),
            media: Media::Voice,
            language: if i.is_multiple_of(10) { "en".into() } else { "hi".into() },
            emergency: i.is_multiple_of(50),
            specialty: None,
        })
    };
    let mut now = 1_000;
    let mut next = 0;
    let mut on_call: Vec<(i64, String)> = Vec::new();
    for a in 1..=agents {
        node.submit(now, Event::Login { agent: AgentId(a), seat: SeatId(a) }).await.unwrap();
        node.submit(now, Event::Ready { agent: AgentId(a) }).await.unwrap();
        node.submit(now, contact(next)).await.unwrap();
        let accept = Event::Accept { agent: AgentId(a), contact: ContactId(format!("c{next}")) };
        node.submit(now, accept).await.unwrap().result.unwrap();
        on_call.push((a, format!("c{next}")));
        next += 1;
    }
    for _ in 0..waiting {
        now += 1;
        node.submit(now, contact(next)).await.unwrap();
        next += 1;
    }
    assert_eq!(node.engine().waiting(), waiting);

    let rounds = 2_000;
    let mut latencies = Vec::with_capacity(rounds * 3);
    let started = Instant::now();
    for r in 0..rounds {
        now += 10;
        let t = Instant::now();
        node.submit(now, contact(next)).await.unwrap().result.unwrap();
        black_box(node.engine().next_timer());
        latencies.push(t.elapsed());
        next += 1;
        let (agent, call) = on_call[r % on_call.len()].clone();
        let t = Instant::now();
        let out = node.submit(now, Event::End { contact: ContactId(call) }).await.unwrap().result.unwrap();
        black_box(node.engine().next_timer());
        latencies.push(t.elapsed());
        now += 1;
        let t = Instant::now();
        let out = if out.iter().any(|a| matches!(a, Action::Offer { .. })) {
            out
        } else {
            node.submit(now, Event::Tick).await.unwrap().result.unwrap()
        };
        let offered = out.iter().find_map(|a| match a {
            Action::Offer { contact, agent: to, .. } if to.0 == agent => Some(contact.clone()),
            _ => None,
        });
        let contact = offered.expect("the freed agent gets the head of the queue");
        node.submit(now, Event::Accept { agent: AgentId(agent), contact: contact.clone() })
            .await
            .unwrap()
            .result
            .unwrap();
        black_box(node.engine().next_timer());
        latencies.push(t.elapsed());
        let slot = r % on_call.len();
        on_call[slot] = (agent, contact.0);
    }
    let total = started.elapsed();
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    let events = rounds * 3;
    println!("redis, waiting {waiting}, agents {agents}: {events} decisions in {total:?}");
    println!("  events/s {:.0}", events as f64 / total.as_secs_f64());
    println!("  latency p50 {:?}  p99 {:?}  max {:?}", p(0.5), p(0.99), p(1.0));
}
