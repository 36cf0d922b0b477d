//! Time per agent state from the event log, per 30-minute interval and per shift.

use routing::metrics::*;
use routing::*;

const S: Millis = 1000;
const M: Millis = 60 * S;
const H: Millis = 60 * M;

fn roster() -> Roster {
    let op = |id| AgentProfile { id: AgentId(id), role: Role::Operator, languages: vec!["hi".into()], specialty: None };
    Roster {
        agents: vec![op(1), op(2)],
        seats: (1..=10).map(|i| Seat { id: SeatId(i), peak: false }).collect(),
        shifts: vec![Shift {
            role: Role::Operator,
            start: 6 * H,
            end: 14 * H,
            peak: false,
            agents: vec![AgentId(1), AgentId(2)],
        }],
    }
}

fn arrive(id: &str) -> Event {
    Event::ContactArrived(NewContact {
        id: ContactId(id.into()),
        media: Media::Voice,
        language: "hi".into(),
        emergency: false,
        specialty: None,
    })
}

/// Agent 1: logs in at 07:00, ready 10 s later, takes a call 07:01:05–07:10, wraps up
/// 30 s (the wrap-up's end is not in the log), lunch 07:20–07:50, logs out at 08:05.
/// Agent 2: logs in ready at 07:35, misses two offers from 07:40 (paused for it),
/// ready again at 07:45, logs out at 07:46.
fn log() -> Vec<LoggedEvent> {
    let t = 7 * H;
    let (a1, a2) = (AgentId(1), AgentId(2));
    let c = |id: &str| ContactId(id.into());
    [
        (t, Event::Login { agent: a1, seat: SeatId(1) }),
        (t + 10 * S, Event::Ready { agent: a1 }),
        (t + M, arrive("a")),
        (t + M + 5 * S, Event::Accept { agent: a1, contact: c("a") }),
        (t + 10 * M, Event::End { contact: c("a") }),
        (t + 20 * M, Event::Pause { agent: a1, reason: "lunch".into() }),
        (t + 35 * M, Event::Login { agent: a2, seat: SeatId(2) }),
        (t + 35 * M, Event::Ready { agent: a2 }),
        (t + 40 * M, arrive("b")),
        (t + 44 * M, Event::Abandon { contact: c("b") }),
        (t + 45 * M, Event::Ready { agent: a2 }),
        (t + 46 * M, Event::Logout { agent: a2 }),
        (t + 50 * M, Event::Ready { agent: a1 }),
        (t + 65 * M, Event::Logout { agent: a1 }),
        // A refused event changes nothing.
        (t + 66 * M, Event::Ready { agent: a1 }),
    ]
    .into_iter()
    .map(|(at, event)| LoggedEvent { at, event })
    .collect()
}

fn times(idle: i64, offered: i64, busy: i64, wrap_up: i64, paused: &[(&str, i64)]) -> StateTimes {
    StateTimes {
        idle: idle * S,
        offered: offered * S,
        busy: busy * S,
        wrap_up: wrap_up * S,
        paused: paused.iter().map(|(r, s)| (r.to_string(), s * S)).collect(),
    }
}

#[test]
fn spans_follow_the_engine_including_timers_that_are_not_logged() {
    let spans = state_spans(&roster(), &RoutingConfig::default(), &log(), 9 * H);
    let t = 7 * H;
    let of = |agent: i64| -> Vec<(StateKind, Millis, Millis)> {
        spans.iter().filter(|s| s.agent == AgentId(agent)).map(|s| (s.state.clone(), s.from - t, s.to - t)).collect()
    };
    assert_eq!(
        of(1),
        vec![
            (StateKind::Paused("logged in".into()), 0, 10 * S),
            (StateKind::Idle, 10 * S, M),
            (StateKind::Offered, M, M + 5 * S),
            (StateKind::Busy, M + 5 * S, 10 * M),
            (StateKind::WrapUp, 10 * M, 10 * M + 30 * S),
            (StateKind::Idle, 10 * M + 30 * S, 20 * M),
            (StateKind::Paused("lunch".into()), 20 * M, 50 * M),
            (StateKind::Idle, 50 * M, 65 * M),
        ]
    );
    assert_eq!(
        of(2),
        vec![
            (StateKind::Idle, 35 * M, 40 * M),
            (StateKind::Offered, 40 * M, 40 * M + 30 * S),
            (StateKind::Paused("missed offers".into()), 40 * M + 30 * S, 45 * M),
            (StateKind::Idle, 45 * M, 46 * M),
        ],
        "two offers of 15 s each ring out, then the pause; logging in ready at once leaves no paused time"
    );
}

#[test]
fn time_per_state_per_half_hour_and_per_shift() {
    let spans = state_spans(&roster(), &RoutingConfig::default(), &log(), 9 * H);
    let rows = per_interval(&spans, 0, 30 * M);
    let row = |agent: i64, start: Millis| {
        rows.iter().find(|r| r.agent == AgentId(agent) && r.start == start).map(|r| r.times.clone())
    };
    assert_eq!(row(1, 7 * H), Some(times(620, 5, 535, 30, &[("logged in", 10), ("lunch", 600)])));
    assert_eq!(row(1, 7 * H + 30 * M), Some(times(600, 0, 0, 0, &[("lunch", 1200)])));
    assert_eq!(row(1, 8 * H), Some(times(300, 0, 0, 0, &[])), "logged out after 08:05: not counted");
    assert_eq!(row(1, 8 * H + 30 * M), None);
    assert_eq!(row(2, 7 * H + 30 * M), Some(times(360, 30, 0, 0, &[("missed offers", 270)])));
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert!(r.times.logged_in() <= 30 * M);
        assert_eq!(r.end - r.start, 30 * M);
    }
    assert_eq!(row(1, 7 * H).unwrap().logged_in(), 30 * M, "logged in all of 07:00–07:30");

    let shifts = per_shift(&spans, &roster());
    assert_eq!(shifts.len(), 2);
    assert_eq!(shifts[0].agent, AgentId(1));
    assert_eq!(shifts[0].shift, Some(0));
    assert_eq!(shifts[0].times, times(1520, 5, 535, 30, &[("logged in", 10), ("lunch", 1800)]));
    assert_eq!(shifts[1].times, times(360, 30, 0, 0, &[("missed offers", 270)]));
}

#[test]
fn an_agent_still_logged_in_is_counted_until_the_report_and_the_log_after_it_is_ignored() {
    let spans = state_spans(&roster(), &RoutingConfig::default(), &log(), 7 * H + 15 * M);
    let rows = per_interval(&spans, 0, 30 * M);
    assert_eq!(rows.len(), 1, "agent 2 logs in later");
    assert_eq!(rows[0].times, times(320, 5, 535, 30, &[("logged in", 10)]));
    assert_eq!(rows[0].times.logged_in(), 15 * M);
    // The same figures come back as JSON for the wallboard.
    let json = serde_json::to_value(&rows[0]).unwrap();
    assert_eq!(json["times"]["busy"], 535_000);
    assert_eq!(json["times"]["paused"]["logged in"], 10_000);
}
