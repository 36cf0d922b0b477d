//! # tests: end-to-end tests against the real `careline` binary
//!
//! Each test starts `careline` as a child process on a free loopback port
//! (`--listen 127.0.0.1:0`), in a temporary working directory, and talks to
//! it over HTTP or drives it with headless Chromium (`tests/node`). The
//! binary is the one `cargo test --workspace` builds beside the tests.
//!
//! [`Careline`] is the harness: it starts the server, reads the address it
//! printed and the demo passwords, and stops it with SIGTERM on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `careline` binary built beside the running test (`target/<profile>/careline`).
pub fn careline_bin() -> PathBuf {
    // Another build of the binary than the one beside the tests (a release build, or one of
    // several worktrees sharing a target directory).
    if let Some(bin) = std::env::var_os("CARELINE_TEST_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/careline
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join(format!("careline{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p agent-console` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// The repository root (for `tests/node`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Runs a Python `script` that needs the PyPI module `module` (checked
/// first, naming the install step when it is missing), with `input` on its
/// stdin; returns its stdout, or the script's stderr as the error.
pub fn python(module: &str, script: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let check = Command::new("python3").args(["-c", &format!("import {module}")]).status().expect("python3");
    assert!(check.success(), "{module} is missing: `python3 -m pip install {module}` (bash .ci/run does)");
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("piped stdin").write_all(input).expect("write to python3");
    let out = child.wait_with_output().expect("python3 ran");
    if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// The command that runs `tests/node/SCRIPT` (playwright-core, headless
/// Chromium) against `server`, signed in as `user`; screenshots go to
/// `tests/artifacts`.
pub fn node_script(script: &str, server: &Careline, user: &str) -> Command {
    let root = repo_root();
    assert!(
        root.join("tests/node/node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/node` (bash .ci/run does)"
    );
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/node").join(script))
        .env("CARELINE_URL", &server.base)
        .env("CARELINE_USER", user)
        .env("CARELINE_PASSWORD", &server.passwords[user])
        .env("CARELINE_ARTIFACTS", root.join("tests/artifacts"));
    command
}

/// A running `careline serve`.
pub struct Careline {
    child: Child,
    pub base: String,
    /// Demo accounts printed at start: username → password.
    pub passwords: HashMap<String, String>,
    /// The SIP trunk's address, when started with `--sip-listen`.
    pub sip: Option<String>,
    /// Lines the server printed on stdout after it started listening, and its stderr.
    lines: mpsc::Receiver<String>,
}

impl Careline {
    /// Starts `careline serve --listen 127.0.0.1:0 ARGS...` in `dir` (ARGS may
    /// name the address instead, to restart on the same one) and waits
    /// (at most 60 s) until it prints the address it listens on.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Careline {
        let mut cmd = Command::new(careline_bin());
        cmd.current_dir(dir)
            .arg("serve")
            .args(if args.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("CARELINE_LISTEN")
            .env_remove("CARELINE_DEMO")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Waited for in `Drop` (and in `stop`), which clippy cannot see through the struct.
        #[allow(clippy::zombie_processes)]
        let mut child = cmd.spawn().expect("spawn careline");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut passwords = HashMap::new();
        let mut sip = None;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("careline listening on ") {
                        return Careline { child, base: addr.trim().to_owned(), passwords, sip, lines: rx };
                    }
                    if let Some(addr) = line.strip_prefix("careline sip listening on ") {
                        sip = Some(addr.trim().to_owned());
                    }
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if let [role, user, pass] = words[..]
                        && ["operator", "doctor", "supervisor", "admin"].contains(&role)
                    {
                        passwords.insert(user.to_owned(), pass.to_owned());
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("careline did not start within 60 s; it printed:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// Sends SIGTERM and waits (at most 20 s) for the process to exit; returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("careline did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: the process dies at once, as a machine that fails (nothing is flushed or handed over).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Everything printed since start-up, for assertions about logs.
    pub fn drain_output(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for Careline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that keeps cookies, like a browser.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

impl Careline {
    /// Signs a demo account in and returns its bearer token.
    pub async fn bearer(&self, user: &str) -> String {
        let password = self.passwords.get(user).unwrap_or_else(|| panic!("no demo password for {user}"));
        let login = serde_json::json!({"username": user, "password": password, "kind": "bearer"});
        let res = client().post(self.url("/api/auth/login")).json(&login).send().await.expect("login request");
        assert_eq!(res.status(), 200, "login of {user}");
        let body: serde_json::Value = res.json().await.expect("login answer");
        body["token"].as_str().expect("a bearer token").to_owned()
    }
}

impl Careline {
    /// Puts `user` on a round-the-clock `role` shift (`operator` or `doctor`) for
    /// yesterday and today in Delhi, so a test passes at any hour (the demo rota
    /// has no operators from 22:00 to 06:00).
    pub async fn round_the_clock(&self, role: &str, user: &str) {
        let http = client();
        let admin = self.bearer("admin").await;
        let shift = serde_json::json!({"name": format!("test-{role}-24h-{user}"), "role": role, "starts_minute": 0, "ends_minute": 1440});
        let res = http.post(self.url("/api/shifts")).bearer_auth(&admin).json(&shift).send().await.expect("add shift");
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
        let shift: serde_json::Value = res.json().await.expect("shift");
        let staff: serde_json::Value = http
            .get(self.url("/api/staff"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("staff")
            .json()
            .await
            .expect("staff");
        let id =
            staff.as_array().expect("list").iter().find(|s| s["username"] == user).expect("user")["staff_id"].clone();
        let ist = chrono::FixedOffset::east_opt(5 * 3600 + 1800).expect("IST");
        let today = chrono::Utc::now().with_timezone(&ist).date_naive();
        for day in [today.pred_opt().expect("yesterday"), today] {
            let entry = serde_json::json!({"shift_id": shift["shift_id"], "staff_id": id, "day": day});
            let res = http.post(self.url("/api/roster")).bearer_auth(&admin).json(&entry).send().await.expect("roster");
            assert_eq!(res.status(), 204);
        }
    }

    /// POSTs JSON as `token` and returns the answer's status and body.
    pub async fn post(&self, token: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = client().post(self.url(path)).bearer_auth(token).json(&body).send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }
}

/// A free TCP port on loopback (for a server started after the test picks it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// A real SMTP server on loopback: Python's aiosmtpd, delivering into a Maildir.
/// Stopped on drop.
pub struct Smtpd {
    child: Child,
    pub maildir: PathBuf,
}

impl Smtpd {
    /// Starts `python3 -m aiosmtpd` on 127.0.0.1:`port`, delivering into `maildir`.
    pub fn start(port: u16, maildir: &Path) -> Smtpd {
        let check = Command::new("python3").args(["-c", "import aiosmtpd"]).status().expect("python3");
        assert!(check.success(), "aiosmtpd is missing: `python3 -m pip install aiosmtpd` (bash .ci/run does)");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        Smtpd { child, maildir: maildir.to_path_buf() }
    }

    /// The first message delivered, waiting at most `within`; panics with `server`'s output if none came.
    pub fn first_message(&self, within: Duration, server: &Careline) -> PathBuf {
        let deadline = Instant::now() + within;
        loop {
            let found =
                std::fs::read_dir(self.maildir.join("new")).ok().and_then(|mut d| d.next()).and_then(Result::ok);
            if let Some(entry) = found {
                return entry.path();
            }
            assert!(
                Instant::now() < deadline,
                "no mail arrived within {within:?}; careline said:\n{}",
                server.drain_output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A delivered message read by Python's email parser: its `To`, the plain
/// text part, and the iCalendar part unfolded (RFC 5545 §3.1).
pub struct Mail {
    pub to: String,
    pub text: String,
    pub ics: String,
}

pub fn read_mail(path: &Path) -> Mail {
    let script = "import email,json,sys\n\
        m=email.message_from_binary_file(open(sys.argv[1],'rb'))\n\
        part=lambda t:[p for p in m.walk() if p.get_content_type()==t][-1].get_payload(decode=True).decode()\n\
        print(json.dumps({'to':m['To'],'text':part('text/plain'),'ics':part('text/calendar')}))";
    let out = Command::new("python3").args(["-c", script]).arg(path).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parsed mail");
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Mail { to: s("to"), text: s("text"), ics: s("ics").replace("\r\n ", "").replace("\n ", "") }
}

/// A server-sent event stream at `url`, each event's JSON data on the channel (until the stream ends).
pub async fn sse(url: String, bearer: Option<&str>) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
    // No overall timeout: the stream stays open.
    let mut req = reqwest::Client::new().get(&url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let mut res = req.send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block);
                let data: Vec<&str> =
                    block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data.join("\n"))
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// The next update that `want` accepts, within `secs`; panics with what came instead.
pub async fn next_where(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    secs: u64,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(v)) if want(&v) => return v,
            Ok(Some(v)) => seen.push(v),
            _ => panic!("no matching update within {secs} s; got {seen:#?}"),
        }
    }
}

/// A fresh PostgreSQL database and Redis key prefix for one multi-node test
/// (`CARELINE_TEST_POSTGRES_URL`, `CARELINE_TEST_REDIS_URL`; it fails,
/// saying so, without them); [`Shared::drop_all`] deletes both at the end.
pub struct Shared {
    admin: sqlx::PgConnection,
    name: String,
    /// The test's database.
    pub url: String,
    pub redis: String,
    /// The nodes' `CARELINE_REDIS_PREFIX`.
    pub prefix: String,
    /// The nodes' working directory.
    pub dir: tempfile::TempDir,
}

impl Shared {
    /// `label` names the database (`careline_LABEL_<id>`), for whoever finds one left behind.
    pub async fn new(label: &str) -> Shared {
        use sqlx::Connection;
        let admin_url = std::env::var("CARELINE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let name = format!("careline_{label}_{id}");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required: cannot connect to {admin_url}: {e}"));
        sqlx::query(&format!("create database {name}")).execute(&mut admin).await.expect("create database");
        let url = format!("{}/{name}", admin_url.rsplit_once('/').expect("a database URL").0);
        let redis = std::env::var("CARELINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let prefix = format!("careline-test-{id}");
        Shared { admin, name, url, redis, prefix, dir: tempfile::tempdir().expect("temporary directory") }
    }

    /// Starts a node on the shared database and Redis.
    pub fn node(&self, args: &[&str]) -> Careline {
        Careline::start(
            self.dir.path(),
            args,
            &[("DATABASE_URL", &self.url), ("REDIS_URL", &self.redis), ("CARELINE_REDIS_PREFIX", &self.prefix)],
        )
    }

    /// The rows `sql` selects from the shared database.
    pub async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&self.url).await.expect("the test database");
        let rows = sqlx::query_as(sql).fetch_all(&mut db).await.expect("select");
        db.close().await.ok();
        rows
    }

    /// Deletes the routing stream and the database.
    pub async fn drop_all(mut self) {
        let client = redis::Client::open(self.redis.as_str())
            .unwrap_or_else(|e| panic!("Redis is required at {}: {e}", self.redis));
        let mut conn = client.get_multiplexed_async_connection().await.expect("Redis");
        let _: () = redis::cmd("DEL")
            .arg(format!("{}:routing", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("delete the stream");
        sqlx::query(&format!("drop database {} with (force)", self.name))
            .execute(&mut self.admin)
            .await
            .expect("drop database");
    }
}
