//! Ambulance requests reach the dispatch service's webhook, a real HTTP
//! server on loopback here; when it cannot be reached the request is still
//! stored, with the reason, retried seconds apart and never given up, and
//! after `--dispatch-alarm-seconds` the supervisors' wallboard raises the
//! alarm to phone 102/108 until dispatch takes it. Two nodes on one
//! PostgreSQL database and Redis send each request, and each mail, once.
//!
//! The two-node test needs PostgreSQL (`CARELINE_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), Redis
//! (`CARELINE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and aiosmtpd;
//! it fails, saying so, without them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use tests::{Careline, Shared, Smtpd, free_port};

/// Answers one HTTP request with 200 and hands its JSON body over.
fn webhook() -> (String, mpsc::Receiver<(String, Value)>) {
    webhook_on(TcpListener::bind("127.0.0.1:0").unwrap())
}

fn webhook_on(listener: TcpListener) -> (String, mpsc::Receiver<(String, Value)>) {
    let url = format!("http://{}/dispatch", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
        let _ = tx.send((request_line, serde_json::from_slice(&body).unwrap()));
    });
    (url, rx)
}

/// Answers every HTTP request: the first `failures` with 503, then 200;
/// hands over each request's JSON body with the status it was answered.
fn flaky_webhook(failures: usize) -> (String, mpsc::Receiver<(u16, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/dispatch", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = if n < failures { 503 } else { 200 };
            let reason = if status == 200 { "OK" } else { "Service Unavailable" };
            let mut stream = stream;
            write!(stream, "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            if tx.send((status, serde_json::from_slice(&body).unwrap())).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// Careline's own record of a request and its attempts (their errors), read from its database.
async fn stored_delivery(dir: &std::path::Path, id: &str) -> (i64, bool, Vec<Option<String>>) {
    let url = format!("sqlite://{}", dir.join("careline.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open careline's database");
    let (attempts, delivered): (i64, Option<String>) =
        sqlx::query_as("select attempts, delivered_at from ambulance_request where ambulance_request_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let errors: Vec<(Option<String>,)> = sqlx::query_as(
        "select error from ambulance_attempt where ambulance_request_id = $1 order by ambulance_attempt_id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    (attempts, delivered.is_some(), errors.into_iter().map(|e| e.0).collect())
}

/// Polls `probe` every 200 ms until it gives a value, for at most `seconds`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(seconds: u64, what: &str, probe: impl Fn() -> F) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "not within {seconds} s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn wallboard_alarms(server: &Careline, token: &str) -> Vec<Value> {
    let res = tests::client().get(server.url("/api/wallboard")).bearer_auth(token).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let board: Value = res.json().await.unwrap();
    board["ambulance_alarms"].as_array().unwrap_or_else(|| panic!("no ambulance_alarms: {board}")).clone()
}

async fn answered_contact(server: &Careline, token: &str) -> String {
    let start = json!({"language": "hi", "phone": "9810012345", "channel": "chat", "emergency": true, "location": "Gate 3, Kalkaji Mandir"});
    let started: Value =
        tests::client().post(server.url("/api/contacts")).json(&start).send().await.unwrap().json().await.unwrap();
    let id = started["contact_id"].as_str().unwrap().to_owned();
    server.post(token, "/api/agent/session", json!({"seat_id": 1})).await;
    let res = tests::client().post(server.url("/api/agent/ready")).bearer_auth(token).send().await.unwrap();
    assert!(res.status().is_success());
    let res = tests::client()
        .post(server.url(&format!("/api/contacts/{id}/accept")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    id
}

#[tokio::test]
async fn an_ambulance_request_reaches_the_dispatch_webhook() {
    let (url, received) = webhook();
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo", "--dispatch-webhook", &url], &[]);
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;
    let id = answered_contact(&server, &asha).await;
    let (status, bad) =
        server.post(&asha, &format!("/api/contacts/{id}/ambulance"), json!({"location": "", "urgency": "soon"})).await;
    assert_eq!(status, 422, "{bad}");
    let (status, request) = server
        .post(
            &asha,
            &format!("/api/contacts/{id}/ambulance"),
            json!({"location": "Gate 3, Kalkaji Mandir", "urgency": "critical", "note": "Chest pain, 60 years"}),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    assert!(request["delivered_at"].is_string(), "{request}");
    let (line, body) = received.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(line.starts_with("POST /dispatch "), "{line}");
    assert_eq!(body["urgency"], "critical");
    assert_eq!(body["location"], "Gate 3, Kalkaji Mandir");
    assert_eq!(body["caller_phone"], "+919810012345");
    assert_eq!(body["contact_id"], id.as_str());
}

#[tokio::test]
async fn an_unreachable_dispatch_service_still_stores_the_request_and_it_is_resent() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{closed}/dispatch");
    let server =
        Careline::start(dir.path(), &["--demo", "--dispatch-webhook", &url, "--dispatch-retry-seconds", "1"], &[]);
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;
    let id = answered_contact(&server, &asha).await;
    let (status, request) = server
        .post(
            &asha,
            &format!("/api/contacts/{id}/ambulance"),
            json!({"location": "Sector 6, Rohini", "urgency": "urgent"}),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    assert!(request["delivered_at"].is_null());
    assert_eq!(request["attempts"], 1);
    assert!(request["last_error"].as_str().unwrap().contains("could not be reached"), "{request}");
    // The dispatch service comes back on the same address: the request is resent.
    let (_, received) = webhook_on(TcpListener::bind(closed).expect("the port is free again"));
    let (_, body) = received.recv_timeout(std::time::Duration::from_secs(15)).expect("resent within 15 s");
    assert_eq!(body["location"], "Sector 6, Rohini");
    assert_eq!(body["request_id"], request["ambulance_request_id"]);
}

#[tokio::test]
async fn a_webhook_that_fails_for_a_while_gets_the_request_once_it_recovers() {
    let (url, received) = flaky_webhook(2);
    let dir = tempfile::tempdir().unwrap();
    let server =
        Careline::start(dir.path(), &["--demo", "--dispatch-webhook", &url, "--dispatch-retry-seconds", "1"], &[]);
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;
    let id = answered_contact(&server, &asha).await;
    let (status, request) = server
        .post(
            &asha,
            &format!("/api/contacts/{id}/ambulance"),
            json!({"location": "Sector 6, Rohini", "urgency": "critical"}),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    assert_eq!((request["attempts"].as_i64(), request["delivered_at"].is_null()), (Some(1), true), "{request}");
    assert!(request["last_error"].as_str().unwrap().contains("503"), "{request}");
    let request_id = request["ambulance_request_id"].as_str().unwrap().to_owned();
    // Two refusals, then taken: 1 s and 2 s apart.
    let wait = std::time::Duration::from_secs(15);
    let answered: Vec<(u16, Value)> =
        (0..3).map(|_| received.recv_timeout(wait).expect("a delivery attempt")).collect();
    assert_eq!(answered.iter().map(|a| a.0).collect::<Vec<_>>(), [503, 503, 200]);
    assert!(answered.iter().all(|(_, body)| body["request_id"] == request_id.as_str()));
    let (attempts, delivered, errors) = wait_for(10, "the delivery recorded", || async {
        let stored = stored_delivery(dir.path(), &request_id).await;
        stored.1.then_some(stored)
    })
    .await;
    assert_eq!((attempts, delivered), (3, true));
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[..2].iter().all(|e| e.as_deref().is_some_and(|e| e.contains("503"))), "{errors:?}");
    assert_eq!(errors[2], None, "the attempt that delivered it has no error");
    // Delivered once: no more attempts come (the retry period, twice over).
    assert!(received.recv_timeout(std::time::Duration::from_secs(3)).is_err(), "a delivered request is not resent");
    server.stop();
}

#[tokio::test]
async fn an_undelivered_request_raises_the_wallboard_alarm_until_dispatch_takes_it() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{closed}/dispatch");
    let flags =
        ["--demo", "--dispatch-webhook", &url, "--dispatch-retry-seconds", "1", "--dispatch-alarm-seconds", "2"];
    let server = Careline::start(dir.path(), &flags, &[]);
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;
    let meera = server.bearer("meera").await;
    let id = answered_contact(&server, &asha).await;
    let (status, request) = server
        .post(
            &asha,
            &format!("/api/contacts/{id}/ambulance"),
            json!({"location": "Gate 3, Kalkaji Mandir", "urgency": "critical"}),
        )
        .await;
    assert_eq!(status, 201, "{request}");
    let request_id = request["ambulance_request_id"].as_str().unwrap().to_owned();
    // The supervisor's wallboard raises the alarm, with what the attempts said.
    let alarm = wait_for(20, "the ambulance alarm on the wallboard", || async {
        wallboard_alarms(&server, &meera).await.into_iter().find(|a| a["ambulance_request_id"] == request_id.as_str())
    })
    .await;
    assert_eq!(
        (alarm["urgency"].as_str(), alarm["location"].as_str()),
        (Some("critical"), Some("Gate 3, Kalkaji Mandir"))
    );
    assert_eq!(alarm["contact_id"], id.as_str());
    assert!(alarm["undelivered_seconds"].as_i64().unwrap() >= 2, "{alarm}");
    assert!(alarm["last_error"].as_str().unwrap().contains("could not be reached"), "{alarm}");
    // The wallboard says what to do, in English and in Hindi.
    for (lang, words) in [("en", "phone 102 / 108 now"), ("hi", "अभी 102 / 108 पर फ़ोन करें")]
    {
        let page = tests::client()
            .get(server.url(&format!("/supervisor?lang={lang}")))
            .bearer_auth(&meera)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(words), "the {lang} wallboard lacks `{words}`");
    }
    // Never given up: the attempts go on, recorded each with its error.
    let (attempts, _, errors) = wait_for(20, "a fourth attempt", || async {
        let stored = stored_delivery(dir.path(), &request_id).await;
        (stored.0 >= 4).then_some(stored)
    })
    .await;
    assert_eq!(errors.len() as i64, attempts);
    assert!(errors.iter().all(|e| e.as_deref().is_some_and(|e| e.contains("could not be reached"))), "{errors:?}");
    // Dispatch comes back: the request is taken, and the alarm is cleared.
    let (_, received) = webhook_on(TcpListener::bind(closed).expect("the port is free again"));
    let (_, body) = received.recv_timeout(std::time::Duration::from_secs(40)).expect("resent within 40 s");
    assert_eq!(body["request_id"], request_id.as_str());
    wait_for(10, "the alarm cleared", || async {
        let alarms = wallboard_alarms(&server, &meera).await;
        (!alarms.iter().any(|a| a["ambulance_request_id"] == request_id.as_str())).then_some(())
    })
    .await;
    server.stop();
}

/// Answers every HTTP request after `delay`, each in its own thread: the
/// first `failures` requests for each `request_id` with 503, later ones with
/// 200; hands over each request's id with the status it was answered and
/// whether another post of the same request was in flight when it came. The
/// delay keeps a send in flight across the nodes' retry rounds, so a node
/// that sent what another holds would be seen.
fn slow_flaky_webhook(failures: usize, delay: Duration) -> (String, mpsc::Receiver<(String, u16, bool)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/dispatch", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    // Per request: posts so far, posts in flight now.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, (usize, usize)>::new()));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (tx, seen) = (tx.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap();
                let id = body["request_id"].as_str().unwrap().to_owned();
                let (n, overlapped) = {
                    let mut seen = seen.lock().unwrap();
                    let (posts, in_flight) = seen.entry(id.clone()).or_default();
                    *posts += 1;
                    *in_flight += 1;
                    (*posts, *in_flight > 1)
                };
                std::thread::sleep(delay);
                let status = if n > failures { 200 } else { 503 };
                let reason = if status == 200 { "OK" } else { "Service Unavailable" };
                let mut stream = stream;
                // The node may have given up waiting; what it was answered is still counted.
                let _ = write!(stream, "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                seen.lock().unwrap().get_mut(&id).unwrap().1 -= 1;
                let _ = tx.send((id, status, overlapped));
            });
        }
    });
    (url, rx)
}

/// Books an appointment for a new patient with `email`, as `token` on `node`: its confirmation mail is queued.
async fn book_for(node: &Careline, token: &str, n: usize, email: &str) {
    let http = tests::client();
    let patient =
        json!({"name": format!("Patient {n}"), "phone": format!("98100200{n:02}"), "email": email, "age_years": 40});
    let (status, patient) = node.post(token, "/api/patients", patient).await;
    assert!((200..300).contains(&status), "{status} {patient}");
    let facilities: Value = http
        .get(node.url("/api/facilities?q=lok%20nayak"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fid = facilities[0]["facility_id"].as_i64().unwrap();
    let slots: Value = http
        .get(node.url(&format!("/api/facilities/{fid}/slots?department=general%20medicine")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slot = &slots[n];
    let booking = json!({"slot_id": slot["slot_id"], "patient_id": patient["patient_id"]});
    let (status, body) = node.post(token, "/api/appointments", booking).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_send_each_dispatch_and_each_mail_once() {
    const REQUESTS: usize = 4;
    const MAILS: usize = 4;
    let shared = Shared::new("dispatch").await;
    // Each request is refused twice, each answer after 1.5 s: both nodes' retriers (every second) see it due
    // while another send of it is in flight.
    let (webhook, received) = slow_flaky_webhook(2, Duration::from_millis(1500));
    let smtp_port = free_port();
    let smtp = format!("smtp://127.0.0.1:{smtp_port}");
    let flags = [
        "--dispatch-webhook",
        &webhook,
        "--dispatch-retry-seconds",
        "1",
        "--smtp-url",
        &smtp,
        "--mail-retry-seconds",
        "1",
    ];
    let a = shared.node(&[&["--demo"], &flags[..]].concat());
    let b = shared.node(&flags);
    a.round_the_clock("operator", "asha").await;
    let asha = a.bearer("asha").await;
    let meera = a.bearer("meera").await;
    let contact = answered_contact(&a, &asha).await;

    // Ambulance requests made on both nodes at once; each is sent at once by the node that made it (refused).
    let made: Vec<_> = (0..REQUESTS)
        .map(|n| {
            let node = if n % 2 == 0 { &a } else { &b };
            let (base, token, contact) = (node.base.clone(), asha.clone(), contact.clone());
            tokio::spawn(async move {
                let body = json!({"location": format!("Sector {n}, Rohini"), "urgency": "critical"});
                let res = tests::client()
                    .post(format!("{base}/api/contacts/{contact}/ambulance"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                let request: Value = res.json().await.unwrap();
                request["ambulance_request_id"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for m in made {
        ids.push(m.await.unwrap());
    }
    // Mails queued on both nodes while the SMTP server is down.
    let emails: Vec<String> = (0..MAILS).map(|n| format!("patient{n}@example.in")).collect();
    for (n, email) in emails.iter().enumerate() {
        book_for(if n % 2 == 0 { &a } else { &b }, &meera, n, email).await;
    }
    wait_for(30, "every mail tried once and refused", || async {
        let rows: Vec<(i64,)> = shared.rows("select attempts from mail_outbox").await;
        (rows.len() == MAILS && rows.iter().all(|r| r.0 >= 1)).then_some(())
    })
    .await;
    let smtpd = Smtpd::start(smtp_port, &shared.dir.path().join("maildir"));

    // Every request delivered, on its third attempt; every mail sent.
    wait_for(60, "every ambulance request delivered", || async {
        let rows: Vec<(i64,)> =
            shared.rows("select attempts from ambulance_request where delivered_at is not null").await;
        (rows.len() == REQUESTS).then_some(())
    })
    .await;
    wait_for(60, "every mail sent", || async {
        let rows: Vec<(i64,)> = shared.rows("select mail_id from mail_outbox where sent_at is not null").await;
        (rows.len() == MAILS).then_some(())
    })
    .await;
    // Twice the retry rounds more, for any second send to show.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut posts: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let mut overlaps = Vec::new();
    for (id, status, overlapped) in received.try_iter() {
        if overlapped {
            overlaps.push(id.clone());
        }
        posts.entry(id).or_default().push(status);
    }
    assert!(overlaps.is_empty(), "posted again while a post of it was in flight: {overlaps:?}; all: {posts:?}");
    let expected: BTreeMap<String, Vec<u16>> = ids.iter().map(|id| (id.clone(), vec![503, 503, 200])).collect();
    assert_eq!(posts, expected, "each request posted three times in turn, taken once");
    let attempts: Vec<(String, i64, i64)> = shared
        .rows(
            "select r.ambulance_request_id, r.attempts, count(t.ambulance_attempt_id) from ambulance_request r \
             join ambulance_attempt t using (ambulance_request_id) group by r.ambulance_request_id, r.attempts",
        )
        .await;
    assert_eq!(attempts.len(), REQUESTS);
    assert!(attempts.iter().all(|(_, n, recorded)| (*n, *recorded) == (3, 3)), "{attempts:?}");

    let delivered: Vec<std::path::PathBuf> =
        std::fs::read_dir(smtpd.maildir.join("new")).expect("the maildir").map(|e| e.unwrap().path()).collect();
    let mut to: Vec<String> = delivered.iter().map(|p| tests::read_mail(p).to).collect();
    to.sort();
    assert_eq!(to.len(), MAILS, "each mail delivered once: {to:?}");
    for email in &emails {
        assert_eq!(to.iter().filter(|t| t.contains(email.as_str())).count(), 1, "{email} in {to:?}");
    }
    for table in ["mail_outbox", "ambulance_request"] {
        let held: Vec<(i64,)> =
            shared.rows(&format!("select count(*) from {table} where claimed_by is not null")).await;
        assert_eq!(held, [(0,)], "{table}: every claim ended with its recorded attempt");
    }

    drop((a, b, smtpd));
    shared.drop_all().await;
}
