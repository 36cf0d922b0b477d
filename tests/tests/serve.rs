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
