//! `careline serve` and `careline user add` as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sqlx::Connection;
use tests::{Careline, careline_bin, client};

#[tokio::test]
async fn demo_serves_login_and_role_pages_on_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    assert!(dir.path().join("careline.db").exists(), "the default store is careline.db in the working directory");
    let http = client();

    assert_eq!(http.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    let ready: Value = http.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "ok");
    let login = http.get(server.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("<form id=\"login\""), "{login}");

    // Each demo role lands on its own page.
    for (user, home) in [("asha", "/operator"), ("dr.mehta", "/doctor"), ("meera", "/supervisor"), ("admin", "/admin")]
    {
        let http = client();
        let password = server.passwords.get(user).unwrap_or_else(|| panic!("demo password for {user}"));
        let res = http
            .post(server.url("/api/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["home"], home);
        let page = http.get(server.url(home)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("id=\"console-title\""), "{html}");
        // Another role's page sends the browser home.
        let other = if home == "/admin" { "/operator" } else { "/admin" };
        let res = http.get(server.url(other)).send().await.unwrap();
        assert!(res.status().is_redirection());
        assert_eq!(res.headers()["location"], home);
    }
    // The supervisor sees the 45 seats.
    assert_eq!(server.passwords.len(), 12);

    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0, got {status:?}");

    // A second start on the same database does not seed again nor print passwords.
    let again = Careline::start(dir.path(), &["--demo"], &[]);
    assert!(again.passwords.is_empty());
    assert!(again.stop().success());
}

#[tokio::test]
async fn user_add_reads_the_password_from_stdin_and_the_account_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("staff.db").display().to_string();
    let add = |args: &[&str], password: &str| {
        let mut child = Command::new(careline_bin())
            .current_dir(dir.path())
            .args(["user", "add"])
            .args(args)
            .args(["--password-stdin", "--database-url", &db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = add(
        &[
            "dr.rao",
            "--role",
            "doctor",
            "--name",
            "Dr. Lakshmi Rao",
            "--languages",
            "hi,en,te",
            "--specialty",
            "paediatrics",
            "--qualification",
            "MBBS, MD (Paediatrics)",
            "--registration-number",
            "DMC/R/55555",
        ],
        "a long enough password",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A doctor without a registration number, or a bad role, is refused with the reason.
    let out = add(&["dr.none", "--role", "doctor", "--name", "Dr. None"], "a long enough password");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("registration"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = add(&["nurse", "--role", "nurse", "--name", "N"], "a long enough password");
    assert!(!out.status.success());

    let server = Careline::start(dir.path(), &["--database-url", &db], &[]);
    let http = client();
    let res = http
        .post(server.url("/api/auth/login"))
        .json(&json!({"username": "dr.rao", "password": "a long enough password", "kind": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["staff"]["languages"], json!(["hi", "en", "te"]));
    assert_eq!(body["staff"]["registration_number"], "DMC/R/55555");
    assert!(server.stop().success());
}

#[tokio::test]
async fn serves_on_postgresql_with_redis_checked_by_readyz() {
    let admin = std::env::var("CARELINE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("careline_e2e_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required: cannot connect to {admin}: {e}"));
    sqlx::query(&format!("create database {name}")).execute(&mut conn).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let redis = std::env::var("CARELINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());

    // Its own Redis keys (deleted below): routing goes through Redis when it is configured.
    let prefix = format!("careline-test-{name}");

    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(
        dir.path(),
        &["--demo"],
        &[("DATABASE_URL", &url), ("REDIS_URL", &redis), ("CARELINE_REDIS_PREFIX", &prefix)],
    );
    assert!(!dir.path().join("careline.db").exists(), "no SQLite file when PostgreSQL is configured");
    let ready: Value = client().get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["database"], "ok", "{ready}");
    assert_eq!(ready["redis"], "ok", "{ready}");
    assert_eq!(server.passwords.len(), 12);
    assert!(server.stop().success());
    let mut r = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{prefix}:routing")).query_async(&mut r).await.unwrap();

    // An unreachable Redis makes the node not ready, but alive.
    let server = Careline::start(dir.path(), &[], &[("DATABASE_URL", &url), ("REDIS_URL", "redis://127.0.0.1:1")]);
    let res = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(client().get(server.url("/healthz")).send().await.unwrap().status(), 200);
    assert!(server.stop().success());

    sqlx::query(&format!("drop database {name} with (force)")).execute(&mut conn).await.unwrap();
}

/// `kill -9` in the middle of bursts of arrivals, answers, ends and
/// hang-ups, five times over one SQLite file. After each restart the
/// contact records agree with the routing log the engine is rebuilt from
/// (every stored contact arrived in the log and every logged arrival is
/// stored; a record is answered exactly when the log accepted it, abandoned
/// exactly when the log abandoned it), no contact that got its 201 is lost,
/// and the callers still waiting keep their places in order.
#[tokio::test]
async fn records_agree_with_the_routing_log_after_kill_9_in_bursts() {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Careline::start(dir.path(), &["--demo"], &[]);
    let passwords = server.passwords.clone();
    server.round_the_clock("operator", "asha").await;
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    for round in 0..5u64 {
        let asha = server.bearer("asha").await;
        server.post(&asha, "/api/agent/session", json!({"seat_id": 1})).await;
        server.post(&asha, "/api/agent/ready", json!({})).await;
        let mut tasks = Vec::new();
        for n in 0..120 {
            let (url, acknowledged) = (server.url("/api/contacts"), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                let body =
                    json!({"language": if n % 2 == 0 { "hi" } else { "en" }, "phone": format!("98{round:02}{n:06}"), "channel": "chat"});
                // Each patient from an address of their own on loopback, as from their own phone
                // (starting contacts is limited per address).
                let from = std::net::IpAddr::from([127, 0, 1 + round as u8, 2 + n as u8]);
                let http = reqwest::Client::builder().local_address(from).build().unwrap();
                if let Ok(res) = http.post(url).json(&body).send().await
                    && res.status() == 201
                    && let Ok(v) = res.json::<Value>().await
                {
                    let id = v["contact_id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push((id, v["token"].as_str().unwrap().to_owned()));
                }
            }));
        }
        // The operator takes, ends and wraps up what she is offered; some patients hang up.
        let base = server.base.clone();
        let (token, acked) = (asha.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            for i in 0.. {
                let state: Value = match http.get(format!("{base}/api/agent/state")).bearer_auth(&token).send().await {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => return,
                };
                if let Some(id) = state["offer"]["contact_id"].as_str() {
                    for step in ["accept", "end"] {
                        let _ = http.post(format!("{base}/api/contacts/{id}/{step}")).bearer_auth(&token).send().await;
                    }
                    let wrap = json!({"disposition": "information"});
                    let url = format!("{base}/api/contacts/{id}/wrap-up");
                    let _ = http.post(url).bearer_auth(&token).json(&wrap).send().await;
                }
                let gone = acked.lock().unwrap().get(i * 7 % 50).cloned();
                if let Some((id, patient)) = gone.filter(|_| i % 3 == 0) {
                    let _ = http.post(format!("{base}/api/contacts/{id}/hangup?token={patient}")).send().await;
                }
            }
        }));
        // Somewhere in the burst (a different point each round): kill -9.
        tokio::time::sleep(std::time::Duration::from_millis(100 + round * 60)).await;
        drop(server);
        for t in &tasks {
            t.abort();
        }
        server = Careline::start(dir.path(), &["--demo"], &[]);
        server.passwords = passwords.clone();

        let url = format!("sqlite://{}", dir.path().join("careline.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let ids = |kind: &'static str| {
            sqlx::query_as::<_, (String,)>("select distinct contact_id from routing_event where kind = $1").bind(kind)
        };
        let set = |rows: Vec<(String,)>| rows.into_iter().map(|(id,)| id).collect::<BTreeSet<String>>();
        let arrived = set(ids("contact_arrived").fetch_all(&mut db).await.unwrap());
        let accepted = set(ids("accept").fetch_all(&mut db).await.unwrap());
        let abandoned = set(ids("abandon").fetch_all(&mut db).await.unwrap());
        let records: Vec<(String, String, Option<i64>)> =
            sqlx::query_as("select contact_id, status, answered_by from contact").fetch_all(&mut db).await.unwrap();
        let stored: BTreeSet<String> = records.iter().map(|r| r.0.clone()).collect();
        let answered: BTreeSet<String> = records.iter().filter(|r| r.2.is_some()).map(|r| r.0.clone()).collect();
        let gave_up: BTreeSet<String> = records.iter().filter(|r| r.1 == "abandoned").map(|r| r.0.clone()).collect();
        assert_eq!(stored, arrived, "round {round}: stored contacts and logged arrivals");
        assert_eq!(answered, accepted, "round {round}: answered records and logged accepts");
        assert_eq!(gave_up, abandoned, "round {round}: abandoned records and logged abandons");
        let acked: BTreeSet<String> = acknowledged.lock().unwrap().iter().map(|(id, _)| id.clone()).collect();
        assert!(acked.is_subset(&stored), "round {round}: a contact that got its 201 was lost");
    }

    // Those still waiting keep their places, in the order they came.
    let url = format!("sqlite://{}", dir.path().join("careline.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // In the order the engine took them: the log's.
    let waiting: Vec<(String, String)> = sqlx::query_as(
        "select c.contact_id, c.language from contact c join routing_event e \
           on e.contact_id = c.contact_id and e.kind = 'contact_arrived' \
          where c.status = 'waiting' order by e.routing_event_id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    // The operator serves them in that order: first come, first served.
    let asha = server.bearer("asha").await;
    let http = client();
    // The last kill may have caught her mid-contact: she finishes what she holds first.
    let state: Value =
        http.get(server.url("/api/agent/state")).bearer_auth(&asha).send().await.unwrap().json().await.unwrap();
    for held in state["contacts"].as_array().into_iter().flatten() {
        let id = held["contact_id"].as_str().unwrap();
        if held["status"] == "connected" {
            let (status, body) = server.post(&asha, &format!("/api/contacts/{id}/end"), json!({})).await;
            assert!(status < 300, "end {id}: {status} {body}");
        }
        let wrap = json!({"disposition": "information"});
        let (status, body) = server.post(&asha, &format!("/api/contacts/{id}/wrap-up"), wrap).await;
        assert_eq!(status, 200, "wrap up {id}: {body}");
    }
    server.post(&asha, "/api/agent/ready", json!({})).await;
    let state: Value =
        http.get(server.url("/api/agent/state")).bearer_auth(&asha).send().await.unwrap().json().await.unwrap();
    assert!(["idle", "offered"].contains(&state["state"].as_str().unwrap_or_default()), "open to offers: {state}");
    let mut served: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while served.len() < 12.min(waiting.len()) && std::time::Instant::now() < deadline {
        let state: Value =
            http.get(server.url("/api/agent/state")).bearer_auth(&asha).send().await.unwrap().json().await.unwrap();
        let Some(id) = state["offer"]["contact_id"].as_str().map(str::to_owned) else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        for step in ["accept", "end"] {
            let (status, body) = server.post(&asha, &format!("/api/contacts/{id}/{step}"), json!({})).await;
            assert!(status < 300, "{step} {id}: {status} {body}");
        }
        let wrap = json!({"disposition": "information"});
        assert_eq!(server.post(&asha, &format!("/api/contacts/{id}/wrap-up"), wrap).await.0, 200);
        served.push(id);
    }
    let expected: Vec<String> = waiting.iter().take(served.len()).map(|(id, _)| id.clone()).collect();
    assert!(!served.is_empty(), "some callers still wait after the last burst");
    assert_eq!(served, expected, "served in the order they arrived");
}
