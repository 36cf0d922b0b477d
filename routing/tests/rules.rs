//! Scenario tests for each routing rule, on a simulated clock. Times are
//! milliseconds from a local midnight.

use routing::*;

const S: Millis = 1000;
const H: Millis = 3600 * S;

fn agent(id: i64, role: Role, languages: &[&str], specialty: Option<&str>) -> AgentProfile {
    AgentProfile {
        id: AgentId(id),
        role,
        languages: languages.iter().map(|l| l.to_string()).collect(),
        specialty: specialty.map(str::to_owned),
    }
}

/// Operators 1, 2 (06–14, Hindi/English; 2 also Punjabi), 3 (peak 10–18), 4 (14–22, Hindi only);
/// doctors 10 (general) and 11 (paediatrics) round the clock; seats 1–40, peak seats 41–45.
fn roster() -> Roster {
    let shift = |role, start, end, peak, agents: &[i64]| Shift {
        role,
        start: start * H,
        end: end * H,
        peak,
        agents: agents.iter().map(|a| AgentId(*a)).collect(),
    };
    Roster {
        agents: vec![
            agent(1, Role::Operator, &["hi", "en"], None),
            agent(2, Role::Operator, &["hi", "en", "pa"], None),
            agent(3, Role::Operator, &["hi", "en"], None),
            agent(4, Role::Operator, &["hi"], None),
            agent(10, Role::Doctor, &["hi", "en"], Some("general")),
            agent(11, Role::Doctor, &["hi", "en"], Some("paediatrics")),
        ],
        seats: (1..=45).map(|i| Seat { id: SeatId(i), peak: i > 40 }).collect(),
        shifts: vec![
            shift(Role::Operator, 6, 14, false, &[1, 2]),
            shift(Role::Operator, 10, 18, true, &[3]),
            shift(Role::Operator, 14, 22, false, &[4]),
            shift(Role::Doctor, 0, 24, false, &[10, 11]),
        ],
    }
}

fn contact(id: &str, language: &str, emergency: bool) -> Event {
    Event::ContactArrived(NewContact {
        id: ContactId(id.into()),
        media: Media::Voice,
        language: language.into(),
        emergency,
        specialty: None,
    })
}

fn c(id: &str) -> ContactId {
    ContactId(id.into())
}

fn offers(actions: &[Action]) -> Vec<(String, i64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Offer { contact, agent, .. } => Some((contact.0.clone(), agent.0)),
            _ => None,
        })
        .collect()
}

/// An engine with the given agents logged in and ready at `at`, in this order.
fn ready(at: Millis, agents: &[i64]) -> Engine {
    let mut e = Engine::new(roster(), RoutingConfig::default());
    for (i, a) in agents.iter().enumerate() {
        let seat = if *a == 3 { 41 } else { 1 + i as i64 };
        e.handle(at, Event::Login { agent: AgentId(*a), seat: SeatId(seat) }).unwrap();
        e.handle(at + i as Millis, Event::Ready { agent: AgentId(*a) }).unwrap();
    }
    e
}

#[test]
fn emergencies_first_then_by_wait_and_longest_idle_agent_first() {
    let t = 7 * H;
    let mut e = Engine::new(roster(), RoutingConfig::default());
    e.handle(t, contact("early", "hi", false)).unwrap();
    e.handle(t + S, contact("late", "hi", false)).unwrap();
    e.handle(t + 2 * S, contact("urgent", "hi", true)).unwrap();
    e.handle(t, Event::Login { agent: AgentId(1), seat: SeatId(1) }).unwrap();
    e.handle(t, Event::Login { agent: AgentId(2), seat: SeatId(2) }).unwrap();
    // Agent 2 has been idle longer than agent 1.
    assert_eq!(offers(&e.handle(t + 3 * S, Event::Ready { agent: AgentId(2) }).unwrap()), vec![("urgent".into(), 2)]);
    assert_eq!(offers(&e.handle(t + 4 * S, Event::Ready { agent: AgentId(1) }).unwrap()), vec![("early".into(), 1)]);
    // An offered contact is offered to nobody else.
    let mut e = ready(t, &[1, 2]);
    let out = e.handle(t + 10 * S, contact("x", "hi", false)).unwrap();
    assert_eq!(offers(&out), vec![("x".into(), 1)], "agent 1 became ready first");
    let out = e.handle(t + 11 * S, contact("y", "hi", false)).unwrap();
    assert_eq!(offers(&out), vec![("y".into(), 2)]);
}

#[test]
fn an_unanswered_offer_moves_on_and_two_misses_pause_the_agent() {
    let t = 7 * H;
    let mut e = ready(t, &[1, 2]);
    assert_eq!(offers(&e.handle(t + S, contact("a", "hi", false)).unwrap()), vec![("a".into(), 1)]);
    assert_eq!(e.next_timer(), Some(t + 16 * S));
    let out = e.handle(t + 16 * S, Event::Tick).unwrap();
    assert!(out.contains(&Action::Withdraw { contact: c("a"), agent: AgentId(1) }));
    assert_eq!(offers(&out), vec![("a".into(), 2)], "the next agent rings");
    // Accepting after the timeout is refused and changes nothing (the clock
    // is brought to the refusal's time first: time passing is not a change).
    e.handle(t + 17 * S, Event::Tick).unwrap();
    let before = e.clone();
    assert_eq!(
        e.handle(t + 17 * S, Event::Accept { agent: AgentId(1), contact: c("a") }),
        Err(RoutingError::NotOffered { agent: AgentId(1), contact: c("a") })
    );
    assert_eq!(e, before, "a refused event changes nothing");
    // A second miss in a row pauses agent 1.
    e.handle(t + 18 * S, Event::Accept { agent: AgentId(2), contact: c("a") }).unwrap();
    assert_eq!(offers(&e.handle(t + 20 * S, contact("b", "hi", false)).unwrap()), vec![("b".into(), 1)]);
    let out = e.handle(t + 35 * S, Event::Tick).unwrap();
    assert!(out.contains(&Action::AgentPaused { agent: AgentId(1), reason: "missed offers".into() }));
    assert!(matches!(e.agent_state(AgentId(1)), Some(AgentState::Paused { .. })));
    assert!(offers(&out).is_empty(), "nobody else is free");
    // A second accept of the same contact is refused.
    assert!(e.handle(t + 36 * S, Event::Accept { agent: AgentId(2), contact: c("a") }).is_err());
}

#[test]
fn wrap_up_comes_before_the_next_offer() {
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    e.handle(t + 2 * S, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
    e.handle(t + 60 * S, contact("b", "hi", false)).unwrap();
    let out = e.handle(t + 120 * S, Event::End { contact: c("a") }).unwrap();
    assert!(offers(&out).is_empty(), "in wrap-up");
    assert_eq!(e.agent_state(AgentId(1)), Some(&AgentState::WrapUp { until: t + 150 * S }));
    assert_eq!(offers(&e.handle(t + 150 * S, Event::Tick).unwrap()), vec![("b".into(), 1)]);
    // Wrap-up without a contact is refused.
    let mut e = ready(t, &[1]);
    assert_eq!(e.handle(t + S, Event::WrapUpDone { agent: AgentId(1) }), Err(RoutingError::NotInWrapUp(AgentId(1))));
}

#[test]
fn language_must_match_until_it_relaxes_to_hindi_or_english() {
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    let out = e.handle(t + S, contact("pa", "pa", false)).unwrap();
    assert!(offers(&out).is_empty(), "agent 1 speaks no Punjabi");
    assert_eq!(offers(&e.handle(t + 61 * S, Event::Tick).unwrap()), vec![("pa".into(), 1)]);
    let mut e = ready(t, &[1, 2]);
    assert_eq!(offers(&e.handle(t + S, contact("pa", "pa", false)).unwrap()), vec![("pa".into(), 2)]);
}

#[test]
fn escalation_goes_to_the_specialty_then_relaxes_to_a_general_physician() {
    let t = 7 * H;
    let mut e = ready(t, &[1, 10]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    e.handle(t + 2 * S, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
    let out = e
        .handle(t + 30 * S, Event::Escalate { contact: c("a"), specialty: "paediatrics".into(), urgent: false })
        .unwrap();
    assert!(offers(&out).is_empty(), "the paediatrician is not logged in; the GP waits for the relax");
    assert_eq!(offers(&e.handle(t + 150 * S, Event::Tick).unwrap()), vec![("a".into(), 10)]);
    e.handle(t + 151 * S, Event::Accept { agent: AgentId(10), contact: c("a") }).unwrap();
    // Warm transfer: the operator leaves, the doctor stays.
    e.handle(t + 200 * S, Event::Leave { agent: AgentId(1), contact: c("a") }).unwrap();
    assert!(matches!(e.agent_state(AgentId(1)), Some(AgentState::WrapUp { .. })));
    assert_eq!(e.agent_state(AgentId(10)), Some(&AgentState::Busy));
    assert!(
        e.handle(t + 201 * S, Event::Leave { agent: AgentId(10), contact: c("a") }).is_err(),
        "the last one ends it"
    );
    e.handle(t + 600 * S, Event::End { contact: c("a") }).unwrap();
    assert!(matches!(e.agent_state(AgentId(10)), Some(AgentState::WrapUp { .. })));
    // With the paediatrician on, they get it at once.
    let mut e = ready(t, &[1, 10, 11]);
    e.handle(t + S, contact("b", "hi", false)).unwrap();
    e.handle(t + 2 * S, Event::Accept { agent: AgentId(1), contact: c("b") }).unwrap();
    let out = e
        .handle(t + 3 * S, Event::Escalate { contact: c("b"), specialty: "paediatrics".into(), urgent: true })
        .unwrap();
    assert_eq!(offers(&out), vec![("b".into(), 11)]);
}

#[test]
fn an_agent_takes_up_to_three_chats_but_never_a_call_with_them() {
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    for i in 0..4 {
        let id = format!("chat{i}");
        let ev = Event::ContactArrived(NewContact {
            id: c(&id),
            media: Media::Chat,
            language: "hi".into(),
            emergency: false,
            specialty: None,
        });
        let out = e.handle(t + S * (10 * i + 1), ev).unwrap();
        if i < 3 {
            assert_eq!(offers(&out), vec![(id.clone(), 1)]);
            e.handle(t + S * (10 * i + 2), Event::Accept { agent: AgentId(1), contact: c(&id) }).unwrap();
        } else {
            assert!(offers(&out).is_empty(), "a fourth chat waits");
        }
    }
    assert!(offers(&e.handle(t + 50 * S, contact("call", "hi", false)).unwrap()).is_empty(), "no call while chatting");
}

#[test]
fn peak_seats_open_only_in_the_peak_shift_and_shifts_bound_offers() {
    let mut e = Engine::new(roster(), RoutingConfig::default());
    assert_eq!(
        e.handle(8 * H, Event::Login { agent: AgentId(1), seat: SeatId(41) }),
        Err(RoutingError::PeakSeatClosed(SeatId(41)))
    );
    assert_eq!(
        e.handle(8 * H, Event::Login { agent: AgentId(4), seat: SeatId(2) }),
        Err(RoutingError::NotRostered(AgentId(4)))
    );
    e.handle(11 * H, Event::Login { agent: AgentId(3), seat: SeatId(41) }).unwrap();
    assert_eq!(
        e.handle(11 * H, Event::Login { agent: AgentId(1), seat: SeatId(41) }),
        Err(RoutingError::SeatTaken(SeatId(41)))
    );
    // After 14:00 the morning operators get no new offers.
    let mut e = ready(13 * H, &[1]);
    assert!(offers(&e.handle(14 * H + S, contact("late", "hi", false)).unwrap()).is_empty());
}

#[test]
fn at_night_emergencies_go_to_doctors_and_others_get_a_callback_at_six() {
    let t = 2 * H; // 02:00: no operator until 06:00
    let night = RoutingConfig { night_to_idle_doctor: false, ..RoutingConfig::default() };
    let mut e = Engine::new(roster(), night);
    e.handle(t, Event::Login { agent: AgentId(10), seat: SeatId(1) }).unwrap();
    e.handle(t, Event::Ready { agent: AgentId(10) }).unwrap();
    let out = e.handle(t + S, contact("question", "hi", false)).unwrap();
    assert!(out.contains(&Action::ScheduleCallback { contact: c("question"), at: 6 * H }), "{out:?}");
    assert_eq!(
        offers(&e.handle(t + 2 * S, contact("chest pain", "hi", true)).unwrap()),
        vec![("chest pain".into(), 10)]
    );
    // By default an idle doctor takes the non-emergency rather than a callback.
    let mut e = Engine::new(roster(), RoutingConfig::default());
    e.handle(t, Event::Login { agent: AgentId(10), seat: SeatId(1) }).unwrap();
    e.handle(t, Event::Ready { agent: AgentId(10) }).unwrap();
    assert_eq!(offers(&e.handle(t + S, contact("q", "hi", false)).unwrap()), vec![("q".into(), 10)]);
}

#[test]
fn a_callback_keeps_its_place_and_is_retried_then_given_up() {
    let t = 7 * H;
    let cfg = RoutingConfig::default();
    let mut e = Engine::new(roster(), cfg.clone());
    e.handle(t, contact("a", "hi", false)).unwrap();
    e.handle(t + S, contact("b", "hi", false)).unwrap();
    e.handle(t + 2 * S, Event::RequestCallback { contact: c("a") }).unwrap();
    e.handle(t + 3 * S, Event::Login { agent: AgentId(1), seat: SeatId(1) }).unwrap();
    let out = e.handle(t + 4 * S, Event::Ready { agent: AgentId(1) }).unwrap();
    assert!(out.iter().any(|a| matches!(a, Action::Offer { contact, callback: true, .. } if contact.0 == "a")));
    let mut now = t + 5 * S;
    for attempt in 1..=cfg.callback_tries {
        e.handle(now, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
        let out = e.handle(now + 30 * S, Event::CallbackFailed { agent: AgentId(1), contact: c("a") }).unwrap();
        if attempt == cfg.callback_tries {
            assert!(out.contains(&Action::CallbackGivenUp { contact: c("a") }));
            break;
        }
        e.handle(now + 40 * S, Event::WrapUpDone { agent: AgentId(1) }).unwrap();
        if attempt == 1 {
            // b is served while a's retry is not yet due.
            e.handle(now + 41 * S, Event::Accept { agent: AgentId(1), contact: c("b") }).unwrap();
            e.handle(now + 90 * S, Event::End { contact: c("b") }).unwrap();
            e.handle(now + 91 * S, Event::WrapUpDone { agent: AgentId(1) }).unwrap();
        }
        now += 30 * S + cfg.callback_retry;
        let out = e.handle(now, Event::Tick).unwrap();
        assert!(
            out.iter().any(|a| matches!(a, Action::Offer { contact, callback: true, .. } if contact.0 == "a")),
            "{out:?}"
        );
        now += S;
    }
}

#[test]
fn waiting_contacts_hear_position_and_wait_and_long_waits_alert() {
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    e.handle(t + 2 * S, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
    let out = e.handle(t + 3 * S, contact("b", "hi", false)).unwrap();
    let pos = |out: &[Action], id: &str| {
        out.iter().find_map(|a| match a {
            Action::Position { contact, position, estimated_wait } if contact.0 == id => {
                Some((*position, *estimated_wait))
            }
            _ => None,
        })
    };
    assert_eq!(pos(&out, "b").map(|p| p.0), Some(1));
    let out = e.handle(t + 4 * S, contact("c", "hi", false)).unwrap();
    let (p, wait_c) = pos(&out, "c").unwrap();
    assert_eq!(p, 2);
    assert!(wait_c > 0);
    assert_eq!(pos(&out, "b"), None, "b's position did not change: not repeated");
    let out = e.handle(t + 3 * S + 120 * S, Event::Tick).unwrap();
    assert!(out.contains(&Action::Alert { contact: c("b"), waited: 120 * S }), "{out:?}");
    // An emergency jumps ahead: c moves to 3rd? No: b and c move back one.
    let out = e.handle(t + 130 * S, contact("e", "hi", true)).unwrap();
    assert_eq!(pos(&out, "e").map(|p| p.0), Some(1));
    assert_eq!(pos(&out, "b").map(|p| p.0), Some(2));
    // What each was last told stays readable, for a page that listens late;
    // a contact being served has no place.
    assert_eq!(e.announced(&c("b")).map(|p| p.0), Some(2));
    assert_eq!(e.announced(&c("c")), Some((3, e.announced(&c("c")).unwrap().1)));
    assert_eq!(e.announced(&c("a")), None);
    assert_eq!(e.announced(&c("nobody")), None);
}

#[test]
fn unknown_agents_and_contacts_and_out_of_order_events_are_refused() {
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    assert_eq!(e.handle(t, Event::Ready { agent: AgentId(99) }), Err(RoutingError::UnknownAgent(AgentId(99))));
    assert_eq!(e.handle(t, Event::Ready { agent: AgentId(2) }), Err(RoutingError::NotLoggedIn(AgentId(2))));
    assert_eq!(e.handle(t, Event::End { contact: c("nope") }), Err(RoutingError::UnknownContact(c("nope"))));
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    assert_eq!(e.handle(t + S, contact("a", "hi", false)), Err(RoutingError::DuplicateContact(c("a"))));
    assert_eq!(e.handle(t + S, Event::End { contact: c("a") }), Err(RoutingError::NotConnected(c("a"))));
    e.handle(t + 2 * S, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
    assert_eq!(e.handle(t + 3 * S, Event::Abandon { contact: c("a") }), Err(RoutingError::Connected(c("a"))));
    assert_eq!(e.handle(t + 3 * S, Event::Logout { agent: AgentId(1) }), Err(RoutingError::AgentBusy(AgentId(1))));
}

#[test]
fn an_abandoned_caller_leaves_the_queue_and_frees_a_ringing_agent() {
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    let out = e.handle(t + 5 * S, Event::Abandon { contact: c("a") }).unwrap();
    assert!(out.contains(&Action::Withdraw { contact: c("a"), agent: AgentId(1) }));
    assert!(matches!(e.agent_state(AgentId(1)), Some(AgentState::Idle { .. })));
    assert_eq!(e.waiting(), 0);
}

#[test]
fn a_whole_shift_replays_to_the_same_actions() {
    // A deterministic pseudo-random morning: 300 contacts over 8 hours.
    let mut log = Vec::new();
    let t0 = 6 * H;
    for (i, a) in [1i64, 2, 3].iter().enumerate() {
        let at = if *a == 3 { 10 * H } else { t0 };
        let seat = if *a == 3 { 41 } else { 1 + i as i64 };
        log.push(LoggedEvent { at, event: Event::Login { agent: AgentId(*a), seat: SeatId(seat) } });
        log.push(LoggedEvent { at, event: Event::Ready { agent: AgentId(*a) } });
    }
    let mut x: u64 = 42;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..200 {
        let at = t0 + (i as Millis) * 120 * S;
        let lang = ["hi", "en", "pa"][(rnd() % 3) as usize];
        log.push(LoggedEvent { at, event: contact(&format!("c{i}"), lang, rnd() % 20 == 0) });
    }
    log.sort_by_key(|e| e.at);
    let run = |log: &[LoggedEvent]| {
        let mut e = Engine::new(roster(), RoutingConfig::default());
        let mut actions = Vec::new();
        let mut pending = log.to_vec();
        let mut done = Vec::new();
        let end_of_day = 18 * H;
        loop {
            pending.sort_by_key(|e| e.at);
            let next_event = pending.first().map(|e| e.at);
            let next_tick = e.next_timer().filter(|t| *t <= end_of_day);
            let (at, event) = match (next_event, next_tick) {
                (Some(a), Some(t)) if t < a => (t, Event::Tick),
                (Some(_), _) => {
                    let ev = pending.remove(0);
                    (ev.at, ev.event)
                }
                (None, Some(t)) => (t, Event::Tick),
                (None, None) => break,
            };
            done.push(LoggedEvent { at, event: event.clone() });
            let out = e.handle(at, event).unwrap_or_default();
            // Agents accept every offer at once and talk for 4 minutes.
            for a in &out {
                if let Action::Offer { contact, agent, .. } = a {
                    pending.push(LoggedEvent {
                        at: at + S,
                        event: Event::Accept { agent: *agent, contact: contact.clone() },
                    });
                    pending.push(LoggedEvent { at: at + 241 * S, event: Event::End { contact: contact.clone() } });
                }
            }
            actions.extend(out);
        }
        (actions, done, e)
    };
    let started = std::time::Instant::now();
    let (first, full_log, engine) = run(&log);
    let (second, _, _) = run(&log);
    assert_eq!(first, second, "the same inputs give the same actions");
    let offered: std::collections::HashSet<String> = offers(&first).into_iter().map(|(c, _)| c).collect();
    assert_eq!(offered.len(), 200, "every contact was offered");
    assert_eq!(engine.waiting(), 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Replaying the logged events rebuilds the same state.
    let replayed = Engine::replay(roster(), RoutingConfig::default(), &full_log);
    assert_eq!(replayed, engine, "replaying the log rebuilds the whole state");
}

#[test]
fn a_failed_callback_drops_the_doctor_still_sought_and_never_queues_a_contact_twice() {
    // Operator 1 takes a contact, asks for a paediatrician (not on), and the call drops.
    let t = 7 * H;
    let mut e = ready(t, &[1]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    e.handle(t + 2 * S, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
    e.handle(t + 3 * S, Event::Escalate { contact: c("a"), specialty: "paediatrics".into(), urgent: false }).unwrap();
    assert_eq!(e.waiting(), 1, "the doctor task waits");
    e.handle(t + 4 * S, Event::CallbackFailed { agent: AgentId(1), contact: c("a") }).unwrap();
    assert_eq!(e.waiting(), 1, "only the operator's retry waits; the doctor is no longer sought");
    // The retry comes round, fails again, and is given up: nothing is left behind.
    e.handle(t + 5 * S, Event::WrapUpDone { agent: AgentId(1) }).unwrap();
    let retry = t + 4 * S + RoutingConfig::default().callback_retry;
    assert_eq!(offers(&e.handle(retry, Event::Tick).unwrap()), vec![("a".into(), 1)]);
    e.handle(retry + S, Event::Accept { agent: AgentId(1), contact: c("a") }).unwrap();
    e.handle(retry + 2 * S, Event::CallbackFailed { agent: AgentId(1), contact: c("a") }).unwrap();
    assert_eq!(e.waiting(), 1);
    assert_eq!(e.handle(retry + 3 * S, Event::Abandon { contact: c("a") }), Ok(vec![]));
    assert_eq!(e.waiting(), 0);
    e.handle(retry + 60 * S, Event::Tick).unwrap();
}

#[test]
fn every_bad_event_is_a_typed_error_and_changes_nothing() {
    // At 07:00:18: contact a rang agent 1 unanswered, went to agent 2, who took it;
    // contact b rings agent 1; doctor 10 is idle.
    let t = 7 * H;
    let mut e = ready(t, &[1, 2, 10]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    let out = e.handle(t + 16 * S, Event::Tick).unwrap();
    assert_eq!(offers(&out), vec![("a".into(), 2)]);
    e.handle(t + 17 * S, Event::Accept { agent: AgentId(2), contact: c("a") }).unwrap();
    let now = t + 18 * S;
    assert_eq!(offers(&e.handle(now, contact("b", "hi", false)).unwrap()), vec![("b".into(), 1)]);

    let (a1, a2, a10, nobody, off_shift) = (AgentId(1), AgentId(2), AgentId(10), AgentId(99), AgentId(4));
    let nope = || c("nope");
    use RoutingError::*;
    let cases: Vec<(&str, Event, RoutingError)> = vec![
        ("unknown agent", Event::Ready { agent: nobody }, UnknownAgent(nobody)),
        ("unknown agent accepts", Event::Accept { agent: nobody, contact: c("b") }, UnknownAgent(nobody)),
        ("unknown agent logs in", Event::Login { agent: nobody, seat: SeatId(9) }, UnknownAgent(nobody)),
        ("agent not logged in", Event::Ready { agent: off_shift }, NotLoggedIn(off_shift)),
        ("unknown contact accepted", Event::Accept { agent: a1, contact: nope() }, UnknownContact(nope())),
        ("unknown contact declined", Event::Decline { agent: a1, contact: nope() }, UnknownContact(nope())),
        ("unknown contact ends", Event::End { contact: nope() }, UnknownContact(nope())),
        ("unknown contact hangs up", Event::Abandon { contact: nope() }, UnknownContact(nope())),
        (
            "unknown contact escalated",
            Event::Escalate { contact: nope(), specialty: "general".into(), urgent: false },
            UnknownContact(nope()),
        ),
        ("unknown contact asks a callback", Event::RequestCallback { contact: nope() }, UnknownContact(nope())),
        ("unknown contact left", Event::Leave { agent: a2, contact: nope() }, NotConnected(nope())),
        ("unknown callback fails", Event::CallbackFailed { agent: a2, contact: nope() }, NotConnected(nope())),
        ("duplicate contact", contact("a", "hi", false), DuplicateContact(c("a"))),
        (
            "accept after the timeout",
            Event::Accept { agent: a1, contact: c("a") },
            NotOffered { agent: a1, contact: c("a") },
        ),
        ("second accept", Event::Accept { agent: a2, contact: c("a") }, NotOffered { agent: a2, contact: c("a") }),
        (
            "accept of another agent's offer",
            Event::Accept { agent: a2, contact: c("b") },
            NotOffered { agent: a2, contact: c("b") },
        ),
        (
            "decline of another agent's offer",
            Event::Decline { agent: a10, contact: c("b") },
            NotOffered { agent: a10, contact: c("b") },
        ),
        ("wrap-up without a contact (idle)", Event::WrapUpDone { agent: a10 }, NotInWrapUp(a10)),
        ("wrap-up without a contact (ringing)", Event::WrapUpDone { agent: a1 }, NotInWrapUp(a1)),
        ("wrap-up while on the contact", Event::WrapUpDone { agent: a2 }, NotInWrapUp(a2)),
        ("end of a ringing contact", Event::End { contact: c("b") }, NotConnected(c("b"))),
        ("hang-up of a connected contact", Event::Abandon { contact: c("a") }, Connected(c("a"))),
        ("callback for a connected contact", Event::RequestCallback { contact: c("a") }, Connected(c("a"))),
        (
            "escalation of a ringing contact",
            Event::Escalate { contact: c("b"), specialty: "general".into(), urgent: true },
            NotConnected(c("b")),
        ),
        (
            "the last agent leaves",
            Event::Leave { agent: a2, contact: c("a") },
            NotHandling { agent: a2, contact: c("a") },
        ),
        ("a stranger leaves", Event::Leave { agent: a1, contact: c("a") }, NotHandling { agent: a1, contact: c("a") }),
        (
            "a stranger's callback fails",
            Event::CallbackFailed { agent: a1, contact: c("a") },
            NotHandling { agent: a1, contact: c("a") },
        ),
        ("logout on a contact", Event::Logout { agent: a2 }, AgentBusy(a2)),
        ("pause on a contact", Event::Pause { agent: a2, reason: "tea".into() }, AgentBusy(a2)),
        ("second login", Event::Login { agent: a1, seat: SeatId(9) }, AlreadyLoggedIn(a1)),
        ("unknown seat", Event::Login { agent: AgentId(11), seat: SeatId(99) }, UnknownSeat(SeatId(99))),
        ("seat taken", Event::Login { agent: AgentId(11), seat: SeatId(1) }, SeatTaken(SeatId(1))),
        ("peak seat off peak", Event::Login { agent: AgentId(11), seat: SeatId(42) }, PeakSeatClosed(SeatId(42))),
        ("not rostered now", Event::Login { agent: off_shift, seat: SeatId(9) }, NotRostered(off_shift)),
    ];
    let before = format!("{e:?}");
    for (what, event, error) in cases {
        let mut refused = e.clone();
        assert_eq!(refused.handle(now, event), Err(error), "{what}");
        assert_eq!(format!("{refused:?}"), before, "{what}: the engine changed");
    }
}

#[test]
fn timers_that_fall_due_during_a_refused_event_still_run_and_report_with_the_next() {
    let t = 7 * H;
    let mut e = ready(t, &[1, 2]);
    e.handle(t + S, contact("a", "hi", false)).unwrap();
    // The offer to agent 1 ran out at 07:00:16; a bad event at 07:00:20 is refused...
    assert_eq!(e.handle(t + 20 * S, Event::Ready { agent: AgentId(99) }), Err(RoutingError::UnknownAgent(AgentId(99))));
    // ...the offer was withdrawn (a waits again) but nothing new was decided...
    assert_eq!(e.agent_state(AgentId(1)), Some(&AgentState::Idle { since: t + 20 * S }));
    assert_eq!(e.waiting(), 1);
    // ...and the withdrawal comes with the next accepted event, with the new offer.
    let out = e.handle(t + 21 * S, Event::Tick).unwrap();
    assert!(out.contains(&Action::Withdraw { contact: c("a"), agent: AgentId(1) }), "{out:?}");
    assert_eq!(offers(&out), vec![("a".into(), 2)]);
}

#[test]
fn a_console_gone_pauses_the_agent_moves_their_offer_at_once_and_leaves_them_their_contacts() {
    let t = 7 * H;
    let (a1, a2) = (AgentId(1), AgentId(2));
    let mut e = ready(t, &[1, 2]);
    let out = e.handle(t + S, contact("a", "hi", false)).unwrap();
    assert_eq!(offers(&out), vec![("a".into(), 1)]);
    let until = t + S + RoutingConfig::default().offer_timeout;
    assert_eq!(e.ringing(a1), Some(Ringing { contact: c("a"), until, callback: false }));

    // Agent 1's console is gone: the offer moves to agent 2 in the same step, not when it runs out.
    let out = e.handle(t + 2 * S, Event::Pause { agent: a1, reason: CONSOLE_GONE.into() }).unwrap();
    assert!(out.contains(&Action::Withdraw { contact: c("a"), agent: a1 }), "{out:?}");
    assert_eq!(offers(&out), vec![("a".into(), 2)]);
    assert_eq!(e.ringing(a1), None);
    assert_eq!(e.agent_state(a1), Some(&AgentState::Paused { reason: CONSOLE_GONE.into() }));

    // Agent 2 takes it; their console then goes too: they keep the contact and get no offers...
    e.handle(t + 3 * S, Event::Accept { agent: a2, contact: c("a") }).unwrap();
    assert_eq!(e.handling(a2), vec![c("a")]);
    e.handle(t + 4 * S, Event::Pause { agent: a2, reason: CONSOLE_GONE.into() }).unwrap();
    assert_eq!(e.handling(a2), vec![c("a")]);
    let out = e.handle(t + 5 * S, contact("b", "hi", false)).unwrap();
    assert_eq!(offers(&out), vec![]);
    // ...the contact still ends normally, and they stay paused until their console makes them ready.
    e.handle(t + 6 * S, Event::End { contact: c("a") }).unwrap();
    assert_eq!(e.handling(a2), vec![]);
    assert_eq!(e.agent_state(a2), Some(&AgentState::Paused { reason: CONSOLE_GONE.into() }));
    let out = e.handle(t + 7 * S, Event::Ready { agent: a1 }).unwrap();
    assert_eq!(offers(&out), vec![("b".into(), 1)]);
    assert_eq!(e.handling(AgentId(99)), vec![]);
}

#[test]
fn event_kinds_and_state_names_are_their_serialized_tags() {
    let a = AgentId(1);
    let k = c("k");
    let events = [
        contact("k", "hi", false),
        Event::Login { agent: a, seat: SeatId(1) },
        Event::Logout { agent: a },
        Event::Ready { agent: a },
        Event::Pause { agent: a, reason: "tea".into() },
        Event::WrapUpDone { agent: a },
        Event::Accept { agent: a, contact: k.clone() },
        Event::Decline { agent: a, contact: k.clone() },
        Event::Abandon { contact: k.clone() },
        Event::Escalate { contact: k.clone(), specialty: "general".into(), urgent: false },
        Event::Leave { agent: a, contact: k.clone() },
        Event::RequestCallback { contact: k.clone() },
        Event::CallbackFailed { agent: a, contact: k.clone() },
        Event::End { contact: k.clone() },
        Event::Tick,
    ];
    for e in &events {
        assert_eq!(serde_json::to_value(e).unwrap()["type"], e.kind(), "{e:?}");
    }
    let states = [
        AgentState::Idle { since: 0 },
        AgentState::Offered { contact: k, until: 1 },
        AgentState::Busy,
        AgentState::WrapUp { until: 1 },
        AgentState::Paused { reason: "tea".into() },
    ];
    for s in &states {
        assert_eq!(serde_json::to_value(s).unwrap()["state"], s.name(), "{s:?}");
    }
}
