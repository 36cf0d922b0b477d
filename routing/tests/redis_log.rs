//! Several nodes sharing one engine through one Redis stream, racing.
//!
//! Needs a Redis server at `redis://127.0.0.1:6379` (CI starts one); fails,
//! saying so, if there is none. Each run uses its own stream key and deletes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use routing::redis_log::{Applied, SharedEngine};
use routing::*;
use tokio::sync::Barrier;

const URL: &str = "redis://127.0.0.1:6379";
const NODES: usize = 4;
const ROUNDS: usize = 40;
const H: Millis = 3_600_000;

async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(URL).expect("a valid Redis URL");
    match tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("Redis is not reachable at {URL}: {e}. This test needs a Redis server (CI starts one)."),
        Err(_) => panic!("Redis at {URL} did not answer within 5 s. This test needs a Redis server (CI starts one)."),
    }
}

fn roster() -> Roster {
    let agents = (1..=2 * NODES as i64).collect::<Vec<_>>();
    Roster {
        agents: agents
            .iter()
            .map(|i| AgentProfile {
                id: AgentId(*i),
                role: Role::Operator,
                languages: vec!["hi".into(), "en".into()],
                specialty: None,
            })
            .collect(),
        seats: agents.iter().map(|i| Seat { id: SeatId(*i), peak: false }).collect(),
        shifts: vec![Shift {
            role: Role::Operator,
            start: 0,
            end: 24 * H,
            peak: false,
            agents: agents.iter().map(|i| AgentId(*i)).collect(),
        }],
    }
}

fn cfg() -> RoutingConfig {
    RoutingConfig { wrap_up: 0, ..RoutingConfig::default() }
}

/// One node: logs in its two agents, then adds contacts and races every other
/// node to accept every offer it sees, and to end every call it sees.
async fn node(i: usize, key: String, start: Arc<Barrier>) -> (Vec<Applied>, Engine) {
    let mut shared = SharedEngine::connect(URL, &key, &format!("node{i}"), roster(), cfg()).await.expect("connect");
    let mut seen: Vec<Applied> = Vec::new();
    start.wait().await;
    let mut t = 7 * H;
    for a in [2 * i as i64 + 1, 2 * i as i64 + 2] {
        let agent = AgentId(a);
        seen.extend(shared.submit(t, Event::Login { agent, seat: SeatId(a) }).await.unwrap().applied);
        seen.extend(shared.submit(t, Event::Ready { agent }).await.unwrap().applied);
    }
    let mut offers: Vec<(AgentId, ContactId)> = Vec::new();
    let mut calls: Vec<ContactId> = Vec::new();
    let mut looked = 0;
    for round in 0..ROUNDS {
        t += 40;
        let contact = NewContact {
            id: ContactId(format!("n{i}-{round}")),
            media: if round % 5 == 0 { Media::Chat } else { Media::Voice },
            language: "hi".into(),
            emergency: round % 7 == 0,
            specialty: None,
        };
        seen.extend(shared.submit(t, Event::ContactArrived(contact)).await.unwrap().applied);
        // Everything this node has seen, from every node: offers to accept, calls to end.
        for a in &seen[looked..] {
            for action in a.result.iter().flatten() {
                if let Action::Offer { contact, agent, .. } = action {
                    offers.push((*agent, contact.clone()));
                }
            }
            if let (Event::Accept { contact, .. }, Ok(_)) = (&a.event, &a.result) {
                calls.push(contact.clone());
            }
        }
        looked = seen.len();
        for (agent, contact) in std::mem::take(&mut offers) {
            seen.extend(shared.submit(t, Event::Accept { agent, contact }).await.unwrap().applied);
        }
        if round % 3 == i % 3 {
            for contact in std::mem::take(&mut calls) {
                seen.extend(shared.submit(t, Event::End { contact }).await.unwrap().applied);
            }
        }
        if let Some(s) = shared.tick(t).await.unwrap() {
            seen.extend(s.applied);
        }
    }
    // Wait for every node to finish, then take in the rest of the stream.
    start.wait().await;
    seen.extend(shared.sync().await.unwrap());
    (seen, shared.engine().clone())
}

/// Follows the offers outstanding through a history; panics if a contact is
/// ever offered to two agents at once or an agent holds two offers.
fn check_offers(history: &[Applied]) -> (usize, usize) {
    let mut by_agent: HashMap<AgentId, ContactId> = HashMap::new();
    let mut by_contact: HashMap<ContactId, AgentId> = HashMap::new();
    let mut accepted: BTreeMap<ContactId, usize> = BTreeMap::new();
    let mut refused_accepts = 0;
    for a in history {
        let actions = a.result.as_deref().unwrap_or_default();
        for action in actions {
            if let Action::Withdraw { contact, agent } = action {
                assert_eq!(by_agent.remove(agent).as_ref(), Some(contact), "{}: withdrawn, not offered", a.id);
                by_contact.remove(contact);
            }
        }
        match (&a.event, &a.result) {
            (Event::Accept { agent, contact } | Event::Decline { agent, contact }, Ok(_)) => {
                assert_eq!(by_agent.remove(agent).as_ref(), Some(contact), "{}: answered, not offered", a.id);
                by_contact.remove(contact);
                if matches!(a.event, Event::Accept { .. }) {
                    *accepted.entry(contact.clone()).or_default() += 1;
                }
            }
            (Event::Accept { .. }, Err(_)) => refused_accepts += 1,
            _ => {}
        }
        for action in actions {
            if let Action::Offer { contact, agent, .. } = action {
                assert!(!by_agent.contains_key(agent), "{}: agent {agent:?} holds two offers", a.id);
                assert!(!by_contact.contains_key(contact), "{}: {contact:?} offered to two agents", a.id);
                by_agent.insert(*agent, contact.clone());
                by_contact.insert(contact.clone(), *agent);
            }
        }
    }
    for (contact, n) in &accepted {
        assert_eq!(*n, 1, "{contact:?} accepted {n} times");
    }
    (accepted.len(), refused_accepts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_nodes_agree_and_never_double_offer() {
    let mut conn = redis().await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let key = format!("careline:test:routing:{}:{nanos}", std::process::id());
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();

    let start = Arc::new(Barrier::new(NODES));
    let tasks: Vec<_> = (0..NODES).map(|i| tokio::spawn(node(i, key.clone(), start.clone()))).collect();
    let mut replicas = Vec::new();
    for t in tasks {
        replicas.push(t.await.expect("node task"));
    }
    // A node that joins late replays the whole stream to the same state.
    let mut late = SharedEngine::connect(URL, &key, "late", roster(), cfg()).await.unwrap();
    let history = late.sync().await.unwrap();
    assert!(history.is_empty(), "connect applies the whole stream");
    let late_state = late.engine().clone();
    let len: usize = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await.unwrap();
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();

    let (first, state) = &replicas[0];
    assert_eq!(first.len(), len, "node 0 applied every entry");
    for (i, (seen, s)) in replicas.iter().enumerate() {
        assert_eq!(seen.len(), first.len(), "node {i} applied every entry");
        if let Some(k) = (0..seen.len()).find(|k| seen[*k] != first[*k]) {
            panic!("node {i} differs from node 0 at entry {k}:\n{:?}\n{:?}", seen[k], first[k]);
        }
        assert_eq!(s, state, "node {i} ends in the same state");
    }
    assert_eq!(&late_state, state, "a late replica ends in the same state");
    let (accepted, refused) = check_offers(first);
    assert!(accepted >= NODES * ROUNDS / 2, "most contacts were taken: {accepted}");
    assert!(refused > 0, "nodes raced to accept the same offers");
    assert!(first.iter().any(|a| a.node != first[0].node && a.id > first[0].id), "entries from several nodes");
}

/// The roster goes through the stream: replicas that start with none agree once it is set.
#[tokio::test]
async fn the_roster_travels_in_the_stream() {
    let mut conn = redis().await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let key = format!("careline:test:roster:{}:{nanos}", std::process::id());
    let mut a = SharedEngine::connect(URL, &key, "a", Roster::default(), cfg()).await.unwrap();
    let login = Event::Login { agent: AgentId(1), seat: SeatId(1) };
    let refused = a.submit(7 * H, login.clone()).await.unwrap().result;
    assert!(refused.is_err(), "no roster yet: {refused:?}");
    a.set_roster(7 * H, &roster()).await.unwrap();
    assert_eq!(a.submit(7 * H, login).await.unwrap().result, Ok(vec![]));
    let b = SharedEngine::connect(URL, &key, "b", Roster::default(), cfg()).await.unwrap();
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(b.engine().agent_state(AgentId(1)), a.engine().agent_state(AgentId(1)));
    assert!(b.engine().agent_state(AgentId(1)).is_some(), "the late replica applied the roster, then the login");
    assert_eq!(b.skipped(), 0);
}

/// A replica that applied an entry the stream no longer holds (deleted, or
/// lost in a failover) and whose own next entry sorts before it gets an
/// error to rebuild on, not a panic.
#[tokio::test]
async fn an_entry_that_does_not_come_back_is_an_error_not_a_panic() {
    let mut conn = redis().await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let key = format!("careline:test:lost:{}:{nanos}", std::process::id());
    // An entry stamped far in the future, as a diverged primary could have held.
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("99999999999999-0")
        .arg("node")
        .arg("other")
        .arg("at")
        .arg(0)
        .arg("event")
        .arg(serde_json::to_string(&Event::Tick).unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut a = SharedEngine::connect(URL, &key, "a", roster(), cfg()).await.unwrap();
    assert_eq!(a.last_id(), Some("99999999999999-0"));
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    let login = Event::Login { agent: AgentId(1), seat: SeatId(1) };
    match a.submit(7 * H, login).await {
        Err(e @ routing::redis_log::LogError::Lost(_)) => assert!(e.to_string().contains("trimmed or deleted"), "{e}"),
        other => panic!("expected LogError::Lost, got {other:?}"),
    }
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
}
