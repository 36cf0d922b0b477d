//! Decisions per second and per-decision latency of the engine with a long
//! queue and many agents, on one core.
//!
//! `cargo run --release -p routing --example decisions -- [WAITING] [AGENTS]`
//! (defaults 10000 and 500). Every agent is busy on a call; each measured
//! round is a new contact arriving (the engine ranks it and announces
//! positions), then an agent ending a call, going through wrap-up, and being
//! offered and accepting the head of the queue. Each measured decision is
//! `handle` followed by `next_timer`, as the server's driver does.

use std::hint::black_box;
use std::time::Instant;

use routing::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let waiting: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let agents: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
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
    let mut e = Engine::new(roster, cfg);
    let mut now = 1_000;
    let contact = |i: usize| {
        Event::ContactArrived(NewContact {
            id: ContactId(format!("c{i}")),
            media: Media::Voice,
            language: if i.is_multiple_of(10) { "en".into() } else { "hi".into() },
            emergency: i.is_multiple_of(50),
            specialty: None,
        })
    };
    // Every agent takes a call; then the queue fills.
    let mut next = 0;
    let mut on_call: Vec<(i64, String)> = Vec::new();
    for a in 1..=agents {
        e.handle(now, Event::Login { agent: AgentId(a), seat: SeatId(a) }).unwrap();
        e.handle(now, Event::Ready { agent: AgentId(a) }).unwrap();
        e.handle(now, contact(next)).unwrap();
        e.handle(now, Event::Accept { agent: AgentId(a), contact: ContactId(format!("c{next}")) }).unwrap();
        on_call.push((a, format!("c{next}")));
        next += 1;
    }
    for _ in 0..waiting {
        now += 1;
        e.handle(now, contact(next)).unwrap();
        next += 1;
    }
    assert_eq!(e.waiting(), waiting);

    let rounds = 2_000;
    let mut latencies = Vec::with_capacity(rounds * 3);
    let started = Instant::now();
    for r in 0..rounds {
        now += 10;
        let t = Instant::now();
        e.handle(now, contact(next)).unwrap();
        black_box(e.next_timer());
        latencies.push(t.elapsed());
        next += 1;
        let (agent, call) = on_call[r % on_call.len()].clone();
        let t = Instant::now();
        let out = e.handle(now, Event::End { contact: ContactId(call) }).unwrap();
        black_box(e.next_timer());
        latencies.push(t.elapsed());
        now += 1;
        let t = Instant::now();
        let out = if out.iter().any(|a| matches!(a, Action::Offer { .. })) {
            out
        } else {
            let out = e.handle(now, Event::Tick).unwrap();
            black_box(e.next_timer());
            out
        };
        let offered = out.iter().find_map(|a| match a {
            Action::Offer { contact, agent: to, .. } if to.0 == agent => Some(contact.clone()),
            _ => None,
        });
        let contact = offered.expect("the freed agent gets the head of the queue");
        e.handle(now, Event::Accept { agent: AgentId(agent), contact: contact.clone() }).unwrap();
        black_box(e.next_timer());
        latencies.push(t.elapsed());
        let slot = r % on_call.len();
        on_call[slot] = (agent, contact.0);
    }
    let total = started.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    let events = rounds * 3;
    println!("waiting {waiting}, agents {agents}: {events} decisions in {total:?}");
    println!("  events/s {:.0}", events as f64 / total.as_secs_f64());
    println!("  latency p50 {:?}  p99 {:?}  max {:?}", p(0.5), p(0.99), p(1.0));
}
