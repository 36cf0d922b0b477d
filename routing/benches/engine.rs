//! Per-decision cost of the engine with a long queue and many agents, and
//! how it changes with the length of the queue.
//!
//! `cargo bench -p routing --bench engine`
//!
//! Every agent is on a call and the queue holds `waiting` contacts. One
//! measured round is four events at one instant, each `handle` then
//! `next_timer` as the server's driver does: a contact arrives (it is ranked
//! and told its place), a call ends, the freed agent's wrap-up (zero here)
//! runs out (`Tick`: the head of the queue is offered to them) and they
//! accept. Rounds are 11 ms of engine time apart. The queue keeps its length.
//! Criterion reports the time of a round and events per second (four per round).
//!
//! - `decision`: 10 000 waiting, 500 agents. Once per 10 s of engine time the
//!   engine reviews every waiting contact's position: that is in this figure,
//!   spread over the rounds.
//! - `queue_length`: the same round with 1 000, 10 000 and 50 000 waiting,
//!   with the periodic review run (untimed) just before the round it would
//!   fall in, so that only the decisions are timed.
//! - `full_review`: the periodic review alone, after a round (one contact
//!   served, one arrived: unless the newcomer was an emergency, every waiting
//!   contact has moved up one place and is told so): the one step whose cost
//!   grows with the queue, by design (it tells each caller).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use routing::*;

struct Floor {
    engine: Engine,
    now: Millis,
    /// When the engine last reviewed every waiting contact's position (it
    /// does at the first event 10 s or more after the last review).
    reviewed_at: Millis,
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
        let mut floor = Floor { engine, now, reviewed_at: now, next: agents as usize, round: 0, on_call };
        for _ in 0..waiting {
            floor.now += 1;
            floor.engine.handle(floor.now, contact(floor.next)).unwrap();
            floor.next += 1;
        }
        assert_eq!(floor.engine.waiting(), waiting);
        floor.now += 10_000;
        floor.step(Event::Tick);
        floor.reviewed_at = floor.now;
        floor
    }

    /// Moves on to the next round's instant; whether the engine will review every position there.
    fn advance(&mut self) -> bool {
        self.now += 11;
        let review = self.now - self.reviewed_at >= 10_000;
        if review {
            self.reviewed_at = self.now;
        }
        review
    }

    fn step(&mut self, event: Event) -> Vec<Action> {
        let out = self.engine.handle(self.now, event).unwrap();
        black_box(self.engine.next_timer());
        out
    }

    /// One arrival, one call ending, and the freed agent offered the head of the queue and accepting.
    fn round(&mut self) {
        black_box(self.step(contact(self.next)));
        self.next += 1;
        let slot = self.round % self.on_call.len();
        self.round += 1;
        let (agent, call) = self.on_call[slot].clone();
        black_box(self.step(Event::End { contact: call }));
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
    group.bench_function("10000_waiting_500_agents", |b| {
        b.iter(|| {
            floor.advance();
            floor.round()
        })
    });
    group.finish();

    // The cost of a decision must not grow with the queue.
    let mut group = c.benchmark_group("queue_length");
    group.throughput(Throughput::Elements(4));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for waiting in [1_000, 10_000, 50_000] {
        let mut floor = Floor::new(waiting, 500);
        group.bench_with_input(BenchmarkId::from_parameter(waiting), &waiting, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    if floor.advance() {
                        floor.step(Event::Tick);
                    }
                    let started = Instant::now();
                    floor.round();
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("full_review");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for waiting in [1_000, 10_000, 50_000] {
        let mut floor = Floor::new(waiting, 500);
        group.throughput(Throughput::Elements(waiting as u64));
        group.bench_with_input(BenchmarkId::from_parameter(waiting), &waiting, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    if floor.advance() {
                        floor.step(Event::Tick);
                    }
                    floor.round();
                    floor.now += 10_000;
                    floor.reviewed_at = floor.now;
                    let started = Instant::now();
                    black_box(floor.step(Event::Tick));
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
