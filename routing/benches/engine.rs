//! Per-decision cost of the engine with a long queue and many agents, and
//! how it changes with the length of the queue.
//!
//! `cargo bench -p routing --bench engine`
//!
//! Every agent is on a call and the queue holds `waiting` contacts. One
//! measured round is four events, each `handle` then `next_timer` as the
//! server's driver does: a contact arrives (it is ranked and told its place),
//! a call ends, the freed agent's wrap-up runs out (`Tick`: the head of the
//! queue is offered to them) and they accept. The queue keeps its length.
//! Criterion reports the time of a round and events per second (four per round).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use routing::*;

struct Floor {
    engine: Engine,
    now: Millis,
    next: usize,
    round: usize,
    on_call: Vec<(AgentId, ContactId)>,
}

fn contact(i: usize) -> Event {
    Event::ContactArrived(NewContact {
        id: ContactId(format!("c{i}")),
        media: Media::Voice,
        language: if i.is_multiple_of(10) { "en".into() } else { "hi".into() },
        emergency: i.is_multiple_of(50),
        specialty: None,
    })
}

impl Floor {
    fn new(waiting: usize, agents: i64) -> Floor {
        let year = 365 * 24 * 3_600_000;
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
                end: year,
                peak: false,
                agents: (1..=agents).map(AgentId).collect(),
            }],
        };
        let mut engine = Engine::new(roster, RoutingConfig { wrap_up: 0, ..RoutingConfig::default() });
        let now = 1_000;
        let mut on_call = Vec::new();
        for a in 1..=agents {
            let (agent, c) = (AgentId(a), ContactId(format!("c{}", a - 1)));
            engine.handle(now, Event::Login { agent, seat: SeatId(a) }).unwrap();
            engine.handle(now, Event::Ready { agent }).unwrap();
            engine.handle(now, contact(a as usize - 1)).unwrap();
            engine.handle(now, Event::Accept { agent, contact: c.clone() }).unwrap();
            on_call.push((agent, c));
        }
        let mut floor = Floor { engine, now, next: agents as usize, round: 0, on_call };
        for _ in 0..waiting {
            floor.now += 1;
            floor.engine.handle(floor.now, contact(floor.next)).unwrap();
            floor.next += 1;
        }
        assert_eq!(floor.engine.waiting(), waiting);
        floor
    }

    fn step(&mut self, event: Event) -> Vec<Action> {
        let out = self.engine.handle(self.now, event).unwrap();
        black_box(self.engine.next_timer());
        out
    }

    /// One arrival, one call ending, and the freed agent offered the head of the queue and accepting.
    fn round(&mut self) {
        self.now += 10;
        black_box(self.step(contact(self.next)));
        self.next += 1;
        let slot = self.round % self.on_call.len();
        self.round += 1;
        let (agent, call) = self.on_call[slot].clone();
        black_box(self.step(Event::End { contact: call }));
        self.now += 1;
        let out = self.step(Event::Tick);
        let offered = out.iter().find_map(|a| match a {
            Action::Offer { contact, agent: to, .. } if *to == agent => Some(contact.clone()),
            _ => None,
        });
        let contact = offered.expect("the freed agent gets the head of the queue");
        black_box(self.step(Event::Accept { agent, contact: contact.clone() }));
        self.on_call[slot] = (agent, contact);
    }
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(4));
    group.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    let mut floor = Floor::new(10_000, 500);
    group.bench_function("10000_waiting_500_agents", |b| b.iter(|| floor.round()));
    group.finish();

    // The cost of a decision must not grow with the queue.
    let mut group = c.benchmark_group("queue_length");
    group.throughput(Throughput::Elements(4));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for waiting in [1_000, 10_000, 50_000] {
        let mut floor = Floor::new(waiting, 500);
        group.bench_with_input(BenchmarkId::from_parameter(waiting), &waiting, |b, _| b.iter(|| floor.round()));
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
