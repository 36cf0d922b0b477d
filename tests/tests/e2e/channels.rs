//! WhatsApp and SMS in the same queue as calls and web chats, end to end
//! against the real binary.
//!
//! The webhooks are built from Meta's documented example payloads
//! ("Webhooks payload examples": a text message; statuses `sent`,
//! `delivered`, `read`) and signed by the test itself with the app secret
//! (`X-Hub-Signature-256`: HMAC-SHA256 of the raw body). Meta's send API
//! is not reachable here: replies go to [`fake_api`], a loopback HTTP
//! server of the test's own that checks each request against Meta's
//! documented send format (Cloud API reference, "Messages": `POST
//! /{version}/{phone_number_id}/messages`, `Authorization: Bearer`, JSON
//! with `messaging_product: "whatsapp"`, `to`, `type: "text"`,
//! `text.body`) and answers as the documentation shows
//! (`{messaging_product, contacts: [{input, wa_id}], messages: [{id}]}`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tests::{Careline, client, node_script, python};

const APP_SECRET: &str = "test-app-secret";
const VERIFY_TOKEN: &str = "test-verify-token";
const ACCESS_TOKEN: &str = "test-access-token";
const PHONE_NUMBER_ID: &str = "106540352242922";

fn flags(api: &str) -> Vec<String> {
    [
        "--demo",
        "--presence-grace-seconds",
        "600",
        "--whatsapp-app-secret",
        APP_SECRET,
        "--whatsapp-verify-token",
        VERIFY_TOKEN,
        "--whatsapp-token",
        ACCESS_TOKEN,
        "--whatsapp-phone-number-id",
        PHONE_NUMBER_ID,
        "--whatsapp-api-url",
        api,
        "--whatsapp-templates",
        "appointment_reminder:hi",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(dir: &Path, api: &str) -> Careline {
    let args = flags(api);
    Careline::start(dir, &args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
}

/// The `X-Hub-Signature-256` of `body`, as Meta computes it.
fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Meta's example notification of a text message (with our number's id).
fn text_message(from: &str, name: &str, id: &str, text: &str, sent_at: i64) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                    "contacts": [{"profile": {"name": name}, "wa_id": from}],
                    "messages": [{"from": from, "id": id, "timestamp": sent_at.to_string(), "text": {"body": text}, "type": "text"}]
                },
                "field": "messages"
            }]
        }]
    })
}

/// Meta's example notification of a message's status.
fn status_of(message_id: &str, status: &str, opaque: Option<&str>) -> Value {
    let mut s = json!({
        "id": message_id,
        "status": status,
        "timestamp": chrono::Utc::now().timestamp().to_string(),
        "recipient_id": "919810012345",
        "pricing": {"billable": true, "pricing_model": "PMP", "category": "service"}
    });
    if let Some(o) = opaque {
        s["biz_opaque_callback_data"] = json!(o);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "statuses": [s]
        }}]}]
    })
}

/// POSTs a notification with `signature` (or none); returns the status and body.
async fn deliver(server: &Careline, body: &[u8], signature: Option<&str>) -> (u16, String) {
    let mut req = client().post(server.url("/webhooks/whatsapp")).header("content-type", "application/json");
    if let Some(s) = signature {
        req = req.header("x-hub-signature-256", s);
    }
    let res = req.body(body.to_vec()).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn deliver_signed(server: &Careline, notification: &Value) -> u16 {
    let body = serde_json::to_vec(notification).unwrap();
    let (status, text) = deliver(server, &body, Some(&sign(&body))).await;
    assert_eq!(status, 200, "{text}");
    status
}

/// One request a fake provider API received.
#[derive(Debug)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (Meta's sends), or `null`.
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The body as a form (Twilio's sends).
    fn form(&self) -> HashMap<String, String> {
        serde_urlencoded::from_str(&self.body).expect("a form body")
    }
}

/// The answer a fake API gives: its status code and JSON body.
type Answer = mpsc::Sender<(u16, String)>;
/// The requests a fake API received, each with its [`Answer`].
type Requests = mpsc::Receiver<(Received, Answer)>;

/// A fake provider API on loopback (its base URL is `http://ADDR{base}`):
/// each request is handed to the test with a sender for its answer; it is
/// answered only when the test sends one (so the test decides when the
/// send's answer arrives).
fn fake_api(base: &str) -> (String, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{base}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length: usize =
                headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).expect("a UTF-8 body");
            let (answer_tx, answer_rx) = mpsc::channel::<(u16, String)>();
            if tx.send((Received { request_line: request_line.trim().to_owned(), headers, body }, answer_tx)).is_err() {
                return;
            }
            let Ok((status, answer)) = answer_rx.recv() else { return };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Answer\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, rx)
}

/// The fake Graph API, answering a send as Meta documents it.
fn graph_answer(to: &Value, message_id: &str) -> (u16, String) {
    let answer = json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}], "messages": [{"id": message_id}]});
    (200, answer.to_string())
}

/// Careline's database, read directly.
async fn db(dir: &Path) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}", dir.join("careline.db").display());
    sqlx::SqlitePool::connect(&url).await.expect("open careline's database")
}

async fn count(dir: &Path, sql: &str) -> i64 {
    let pool = db(dir).await;
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

async fn text(dir: &Path, sql: &str) -> Option<String> {
    let pool = db(dir).await;
    let row: Option<(Option<String>,)> = sqlx::query_as(sql).fetch_optional(&pool).await.unwrap();
    pool.close().await;
    row.and_then(|r| r.0)
}

/// Polls `probe` every 200 ms until it gives a value, for at most `seconds`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(seconds: u64, what: &str, probe: impl Fn() -> F) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "not within {seconds} s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The contact a message's journal entry opened, once it is processed.
async fn contact_of(dir: &Path, message_id: &str) -> String {
    let sql =
        format!("select contact_id from channel_event where event_key = '{message_id}' and processed_at is not null");
    wait_for(20, "the message is processed into a contact", || text(dir, &sql)).await
}

async fn agent_state(server: &Careline, token: &str) -> Value {
    let res = client().get(server.url("/api/agent/state")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// `asha` takes a seat, gets ready, is offered `contact` and accepts it.
async fn operator_takes(server: &Careline, asha: &str, contact: &str, first: bool) {
    if first {
        let (status, body) = server.post(asha, "/api/agent/session", json!({"seat_id": 1})).await;
        assert!(status < 300, "{body}");
        let (status, body) = server.post(asha, "/api/agent/ready", json!({})).await;
        assert!(status < 300, "{body}");
    }
    let offered = wait_for(20, "the operator is offered the WhatsApp contact", || async {
        let s = agent_state(server, asha).await;
        (s["offer"]["contact_id"] == contact).then_some(s)
    })
    .await;
    assert_eq!(offered["offer"]["contact_id"], contact);
    let (status, body) = server.post(asha, &format!("/api/contacts/{contact}/accept"), json!({})).await;
    assert!(status < 300, "accept: {body}");
}

#[tokio::test]
async fn a_whatsapp_message_is_routed_answered_and_its_statuses_only_move_forward() {
    let (api, requests) = fake_api("/v21.0");
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &api);
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;

    // Meta's verification handshake.
    let verify = |token: &str, mode: &str| {
        server.url(&format!("/webhooks/whatsapp?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444"))
    };
    let res = client().get(verify(VERIFY_TOKEN, "subscribe")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "1158201444");
    for (token, mode) in [("wrong", "subscribe"), (VERIFY_TOKEN, "unsubscribe"), ("", "subscribe")] {
        let res = client().get(verify(token, mode)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{token} {mode}");
    }

    // Unsigned and wrongly signed: 401, and nothing stored.
    let now = chrono::Utc::now().timestamp();
    let wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=";
    let first =
        serde_json::to_vec(&text_message("919810012345", "Ramesh Kumar", wamid, "मुझे तीन दिन से बुखार है", now)).unwrap();
    let (status, body) = deliver(&server, &first, None).await;
    assert_eq!(status, 401, "{body}");
    let mut other = first.clone();
    other[0] = b' ';
    for signature in [sign(&other), "sha256=00".into(), sign(&first).replace("sha256=", "")] {
        let (status, _) = deliver(&server, &first, Some(&signature)).await;
        assert_eq!(status, 401, "{signature}");
    }
    assert!(
        server.drain_output().iter().any(|l| l.contains("WhatsApp webhook refused")),
        "a refused webhook is logged"
    );
    assert_eq!(count(dir.path(), "select count(*) from channel_event").await, 0);

    // Malformed, and another number's: 400 naming what is wrong, 404; nothing stored.
    let bad = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
        "metadata": {"phone_number_id": PHONE_NUMBER_ID}, "messages": [{"from": "1", "timestamp": "1", "type": "text"}]}}]}]}))
    .unwrap();
    let (status, body) = deliver(&server, &bad, Some(&sign(&bad))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("entry[0].changes[0].value.messages[0]") && body.contains("`id`"), "{body}");
    let mut theirs = text_message("919810012345", "R", "wamid.other", "hi", now);
    theirs["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!("999");
    let theirs = serde_json::to_vec(&theirs).unwrap();
    let (status, body) = deliver(&server, &theirs, Some(&sign(&theirs))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(count(dir.path(), "select count(*) from channel_event").await, 0);

    // The same webhook three times at once: one message.
    let signature = sign(&first);
    let (a, b, c) = tokio::join!(
        deliver(&server, &first, Some(&signature)),
        deliver(&server, &first, Some(&signature)),
        deliver(&server, &first, Some(&signature))
    );
    assert_eq!([a.0, b.0, c.0], [200, 200, 200], "{a:?} {b:?} {c:?}");
    let contact = contact_of(dir.path(), wamid).await;
    assert_eq!(count(dir.path(), "select count(*) from channel_event").await, 1);
    assert_eq!(
        count(dir.path(), &format!("select count(*) from chat_message where contact_id = '{contact}'")).await,
        1
    );
    assert_eq!(count(dir.path(), "select count(*) from contact").await, 1);
    let (channel, language) = {
        let pool = db(dir.path()).await;
        let row: (String, String) = sqlx::query_as("select channel, language from contact where contact_id = $1")
            .bind(&contact)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        row
    };
    assert_eq!((channel.as_str(), language.as_str()), ("whatsapp", "hi"), "Devanagari is Hindi");

    // An operator is offered it, takes it and reads it.
    operator_takes(&server, &asha, &contact, true).await;
    let res =
        client().get(server.url(&format!("/api/contacts/{contact}/messages"))).bearer_auth(&asha).send().await.unwrap();
    let messages: Value = res.json().await.unwrap();
    assert_eq!(messages[0]["body"], "मुझे तीन दिन से बुखार है");
    assert_eq!(messages[0]["sender"], "patient");

    // A second message on the thread joins the live contact.
    let second = text_message("919810012345", "Ramesh Kumar", "wamid.second", "और खांसी भी", now + 1);
    deliver_signed(&server, &second).await;
    assert_eq!(contact_of(dir.path(), "wamid.second").await, contact, "the same contact");

    // The operator's reply reaches the Graph API in Meta's send format.
    let (status, reply) =
        server.post(&asha, &format!("/api/contacts/{contact}/messages"), json!({"body": "Please drink fluids"})).await;
    assert_eq!(status, 201, "{reply}");
    let (got, answer) = tokio::task::spawn_blocking(move || {
        requests.recv_timeout(Duration::from_secs(20)).expect("the reply reaches the Graph API")
    })
    .await
    .unwrap();
    assert_eq!(got.request_line, format!("POST /v21.0/{PHONE_NUMBER_ID}/messages HTTP/1.1"));
    assert_eq!(got.header("authorization"), Some(format!("Bearer {ACCESS_TOKEN}").as_str()));
    assert!(got.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{got:?}");
    let sent = got.json();
    assert_eq!(sent["messaging_product"], "whatsapp");
    assert_eq!(sent["to"], "919810012345");
    assert_eq!(sent["type"], "text");
    assert_eq!(sent["text"]["body"], "Please drink fluids");
    let opaque = sent["biz_opaque_callback_data"].as_str().expect("our key for the statuses").to_owned();

    // A status before the send's own answer is kept, and matched when the answer names the message.
    let out_id = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QTIzRjhDRUI1RTM0OTU5QjQA";
    deliver_signed(&server, &status_of(out_id, "delivered", Some(&opaque))).await;
    let sql = format!(
        "select outcome from channel_event where event_key = '{out_id}:delivered' and processed_at is not null"
    );
    let early = wait_for(20, "the early status is processed", || text(dir.path(), &sql)).await;
    // Matched already by its opaque key, or kept unmatched until the answer: never lost.
    assert!(early == "unmatched" || early == "processed", "{early}");
    answer.send(graph_answer(&sent["to"], out_id)).unwrap();
    let delivery = |want: &'static str| {
        let dir = dir.path().to_owned();
        async move {
            let d = text(&dir, "select delivery from channel_outbox").await;
            (d.as_deref() == Some(want)).then_some(())
        }
    };
    wait_for(20, "the reply is sent and its early status matched", || delivery("delivered")).await;
    // The early status may be matched by its opaque key before the send's own
    // answer is recorded: wait for that answer too, rather than race it.
    wait_for(20, "the send's answer is recorded", || {
        let dir = dir.path().to_owned();
        async move { (text(&dir, "select state from channel_outbox").await.as_deref() == Some("sent")).then_some(()) }
    })
    .await;
    assert_eq!(text(dir.path(), "select provider_message_id from channel_outbox").await.as_deref(), Some(out_id));

    // "read" before "sent": it ends read.
    deliver_signed(&server, &status_of(out_id, "read", None)).await;
    wait_for(20, "the reply is read", || delivery("read")).await;
    deliver_signed(&server, &status_of(out_id, "sent", None)).await;
    wait_for(20, "the late status is processed", || async {
        let n = count(dir.path(), "select count(*) from channel_event where kind = 'status' and processed_at is null")
            .await;
        (n == 0).then_some(())
    })
    .await;
    assert_eq!(text(dir.path(), "select delivery from channel_outbox").await.as_deref(), Some("read"));

    // An image is kept, marked unprocessable for staff; it opens nothing.
    let mut image = text_message("919811122233", "Sita", "wamid.image", "", now);
    image["entry"][0]["changes"][0]["value"]["messages"][0] = json!({"from": "919811122233", "id": "wamid.image", "timestamp": now.to_string(), "type": "image",
               "image": {"mime_type": "image/jpeg", "sha256": "abc", "id": "1003383421387256"}});
    deliver_signed(&server, &image).await;
    let sql = "select outcome from channel_event where event_key = 'wamid.image' and processed_at is not null";
    assert_eq!(wait_for(20, "the image is processed", || text(dir.path(), sql)).await, "unprocessable");
    assert_eq!(count(dir.path(), "select count(*) from contact").await, 1);

    // Outside the 24-hour window free text is refused before anything is stored.
    let old = now - 25 * 3600;
    deliver_signed(&server, &text_message("919812233344", "Old Thread", "wamid.old", "hello", old)).await;
    let late = contact_of(dir.path(), "wamid.old").await;
    assert_eq!(
        text(dir.path(), &format!("select language from contact where contact_id = '{late}'")).await.as_deref(),
        Some("en")
    );
    operator_takes(&server, &asha, &late, false).await;
    let before = count(dir.path(), "select count(*) from chat_message").await;
    let (status, problem) =
        server.post(&asha, &format!("/api/contacts/{late}/messages"), json!({"body": "Are you better?"})).await;
    assert_eq!(status, 422, "{problem}");
    let said = problem.to_string();
    assert!(said.contains("body") && said.contains("24 hours") && said.contains("appointment_reminder"), "{said}");
    assert_eq!(count(dir.path(), "select count(*) from chat_message").await, before);
    assert_eq!(count(dir.path(), "select count(*) from channel_outbox").await, 1);
    // The console is told the window is closed, and which templates may go.
    let url = server.url(&format!("/api/contacts/{late}/conversation"));
    let seen: Value = client().get(url).bearer_auth(&asha).send().await.unwrap().json().await.unwrap();
    let closes: chrono::DateTime<chrono::Utc> = seen["window_closes_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(closes.timestamp(), old + 24 * 3600, "{seen}");
    assert_eq!(seen["templates"], json!(["appointment_reminder:hi"]), "{seen}");
}

#[tokio::test]
async fn an_acknowledged_webhook_survives_kill_9_and_is_routed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Not configured: the webhook is 404.
    let off = Careline::start(dir.path(), &["--demo"], &[]);
    let res = client().post(off.url("/webhooks/whatsapp")).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = client().get(off.url("/webhooks/whatsapp?hub.mode=subscribe")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    off.round_the_clock("operator", "asha").await;
    let passwords = off.passwords.clone();
    drop(off);

    let (api, _requests) = fake_api("/v21.0");
    let server = start(dir.path(), &api);
    let now = chrono::Utc::now().timestamp();
    let note = text_message("919810099887", "Meena", "wamid.crash", "I need a doctor", now);
    deliver_signed(&server, &note).await;
    // SIGKILL right after the 200 (dropping the harness kills the child).
    drop(server);

    let mut server = start(dir.path(), &api);
    server.passwords = passwords;
    let contact = contact_of(dir.path(), "wamid.crash").await;
    assert_eq!(count(dir.path(), "select count(*) from channel_event").await, 1);
    let body = text(dir.path(), &format!("select body from chat_message where contact_id = '{contact}'")).await;
    assert_eq!(body.as_deref(), Some("I need a doctor"));
    let asha = server.bearer("asha").await;
    operator_takes(&server, &asha, &contact, true).await;
}

// --- SMS through Twilio -------------------------------------------------------
//
// Twilio's webhooks are form posts signed with `X-Twilio-Signature`; the test
// signs them with Twilio's own code (PyPI `twilio`, `RequestValidator`), not
// Careline's. Twilio's REST API is not reachable here: sends go to
// [`fake_api`], which checks each against Twilio's documented Messages
// resource (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP
// basic auth, a form with `To`, `From`, `Body`, `StatusCallback`) and answers
// as the documentation shows (201 with the message's `sid`, or an error
// object with its `code`).

const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TWILIO_TOKEN: &str = "test-twilio-auth-token";
const TWILIO_FROM: &str = "+15017122661";
/// Careline's address as Twilio reaches it, behind a proxy: what Twilio signs.
const PUBLIC_URL: &str = "https://helpline.example.in/careline";

fn start_sms(dir: &Path, api: &str) -> Careline {
    let args = [
        "--demo",
        "--presence-grace-seconds",
        "600",
        "--twilio-account-sid",
        TWILIO_SID,
        "--twilio-auth-token",
        TWILIO_TOKEN,
        "--twilio-from",
        TWILIO_FROM,
        "--twilio-api-url",
        api,
        "--public-url",
        PUBLIC_URL,
    ];
    Careline::start(dir, &args, &[])
}

/// `X-Twilio-Signature` of a request to `url` with `params`, computed by the
/// PyPI `twilio` package.
fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let script = "import json,sys\n\
        from twilio.request_validator import RequestValidator\n\
        d=json.load(sys.stdin)\n\
        print(RequestValidator(d['token']).compute_signature(d['url'], dict(d['params'])))";
    let input = json!({"token": token, "url": url, "params": params}).to_string();
    let out = python("twilio.request_validator", script, input.as_bytes())
        .unwrap_or_else(|e| panic!("twilio's signature: {e}"));
    String::from_utf8(out).unwrap().trim().to_owned()
}

/// Twilio's documented inbound SMS webhook parameters.
fn sms_from(from: &str, sid: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", ""),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "IN"),
        ("To", TWILIO_FROM),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", TWILIO_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// Twilio's documented status callback parameters for our message `sid`.
fn sms_status(sid: &str, to: &str, status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", TWILIO_SID),
        ("From", TWILIO_FROM),
        ("To", to),
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("MessageStatus", status),
        ("SmsStatus", status),
        ("ApiVersion", "2010-04-01"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// POSTs a form to `path` (with its query) with `signature`; returns the status, content type and body.
async fn post_twilio(
    server: &Careline,
    path: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> (u16, String, String) {
    let mut req = client().post(server.url(path)).form(params);
    if let Some(s) = signature {
        req = req.header("x-twilio-signature", s);
    }
    let res = req.send().await.unwrap();
    let kind = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (res.status().as_u16(), kind, res.text().await.unwrap())
}

/// POSTs a form signed as Twilio signs it (over the public URL); asserts 200.
async fn post_twilio_signed(server: &Careline, path: &str, params: &[(String, String)]) {
    let signature = twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC_URL}{path}"), params);
    let (status, _, body) = post_twilio(server, path, params, Some(&signature)).await;
    assert_eq!(status, 200, "{path}: {body}");
}

/// Waits for the next request to the fake API (20 s at most).
async fn next_request(requests: &Arc<Mutex<Requests>>) -> (Received, Answer) {
    let requests = requests.clone();
    tokio::task::spawn_blocking(move || {
        requests.lock().unwrap().recv_timeout(Duration::from_secs(20)).expect("the send reaches the provider")
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn an_sms_is_routed_answered_and_stop_is_honoured_until_start() {
    let (api, requests) = fake_api("");
    let requests = Arc::new(Mutex::new(requests));
    let dir = tempfile::tempdir().unwrap();
    let server = start_sms(dir.path(), &api);
    server.round_the_clock("operator", "asha").await;
    let asha = server.bearer("asha").await;
    let patient = "+919810054321";
    let sid = "SM1f0e8ae6ade43cb3c0ce4525424e404f";
    let first = sms_from(patient, sid, "Is the Lok Nayak fever clinic open on Sunday?");

    // Unsigned, signed over Careline's own URL rather than the public one, or with another token: 403, nothing stored.
    let path = "/webhooks/twilio/sms";
    let public = format!("{PUBLIC_URL}{path}");
    let (status, _, body) = post_twilio(&server, path, &first, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("X-Twilio-Signature"), "{body}");
    for signature in [
        twilio_signature(TWILIO_TOKEN, &server.url(path), &first),
        twilio_signature("another-token", &public, &first),
        twilio_signature(TWILIO_TOKEN, &public, &sms_from(patient, sid, "Is the clinic open?")),
    ] {
        let (status, _, body) = post_twilio(&server, path, &first, Some(&signature)).await;
        assert_eq!(status, 403, "{signature}: {body}");
    }
    assert!(server.drain_output().iter().any(|l| l.contains("Twilio webhook refused")), "a refused webhook is logged");
    // Another account's, or without a sender: 404, 400 naming the field; nothing stored.
    let mut theirs = first.clone();
    theirs.iter_mut().find(|(k, _)| k == "AccountSid").unwrap().1 = "AC99999999999999999999999999999999".into();
    let signature = twilio_signature(TWILIO_TOKEN, &public, &theirs);
    assert_eq!(post_twilio(&server, path, &theirs, Some(&signature)).await.0, 404);
    let nameless: Vec<_> = first.iter().filter(|(k, _)| k != "From").cloned().collect();
    let signature = twilio_signature(TWILIO_TOKEN, &public, &nameless);
    let (status, _, body) = post_twilio(&server, path, &nameless, Some(&signature)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("From"), "{body}");
    assert_eq!(count(dir.path(), "select count(*) from channel_event").await, 0);

    // Signed as Twilio signs it, twice at once (Twilio retries once): one message, an empty TwiML answer.
    let signature = twilio_signature(TWILIO_TOKEN, &public, &first);
    let (a, b) = tokio::join!(
        post_twilio(&server, path, &first, Some(&signature)),
        post_twilio(&server, path, &first, Some(&signature))
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert!(a.1.starts_with("text/xml") && a.2.contains("<Response/>"), "{a:?}");
    let contact = contact_of(dir.path(), sid).await;
    assert_eq!(count(dir.path(), "select count(*) from channel_event").await, 1);
    assert_eq!(
        text(dir.path(), &format!("select channel from contact where contact_id = '{contact}'")).await.as_deref(),
        Some("sms")
    );
    operator_takes(&server, &asha, &contact, true).await;
    let res =
        client().get(server.url(&format!("/api/contacts/{contact}/messages"))).bearer_auth(&asha).send().await.unwrap();
    let messages: Value = res.json().await.unwrap();
    assert_eq!(messages[0]["body"], "Is the Lok Nayak fever clinic open on Sunday?");

    // The reply reaches Twilio's Messages resource in its documented form.
    let reply = "Yes, 9 am to 1 pm. Bring your e-health card.";
    let (status, body) = server.post(&asha, &format!("/api/contacts/{contact}/messages"), json!({"body": reply})).await;
    assert_eq!(status, 201, "{body}");
    let (got, answer) = next_request(&requests).await;
    assert_eq!(got.request_line, format!("POST /2010-04-01/Accounts/{TWILIO_SID}/Messages.json HTTP/1.1"));
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"));
    assert_eq!(got.header("authorization"), Some(format!("Basic {basic}").as_str()));
    assert_eq!(got.header("content-type"), Some("application/x-www-form-urlencoded"));
    let form = got.form();
    assert_eq!((form["To"].as_str(), form["From"].as_str(), form["Body"].as_str()), (patient, TWILIO_FROM, reply));
    let callback = form["StatusCallback"].clone();
    let callback_path =
        callback.strip_prefix(PUBLIC_URL).expect("the status callback is under the public URL").to_owned();
    assert!(callback_path.starts_with("/webhooks/twilio/status?careline_ref="), "{callback}");
    let out_sid = "SMb7c0a2ce80504485a6f653a7110836f5";
    let created = json!({"sid": out_sid, "account_sid": TWILIO_SID, "to": patient, "from": TWILIO_FROM, "body": reply, "status": "queued"});
    answer.send((201, created.to_string())).unwrap();
    let delivery = |want: &'static str| {
        let dir = dir.path().to_owned();
        async move { (text(&dir, "select delivery from channel_outbox").await.as_deref() == Some(want)).then_some(()) }
    };
    wait_for(20, "the send's answer is recorded", || {
        let dir = dir.path().to_owned();
        async move { (text(&dir, "select state from channel_outbox").await.as_deref() == Some("sent")).then_some(()) }
    })
    .await;
    assert_eq!(text(dir.path(), "select provider_message_id from channel_outbox").await.as_deref(), Some(out_sid));

    // Status callbacks, signed over the callback URL with its query: interim ones change nothing, and
    // a late `sent` does not undo `delivered`.
    for status in ["queued", "sent", "delivered"] {
        post_twilio_signed(&server, &callback_path, &sms_status(out_sid, patient, status)).await;
    }
    wait_for(20, "the reply is delivered", || delivery("delivered")).await;
    post_twilio_signed(&server, &callback_path, &sms_status(out_sid, patient, "sent")).await;
    wait_for(20, "every status is processed", || async {
        let n = count(dir.path(), "select count(*) from channel_event where processed_at is null").await;
        (n == 0).then_some(())
    })
    .await;
    assert_eq!(text(dir.path(), "select delivery from channel_outbox").await.as_deref(), Some("delivered"));
    // The operator's console sees the channel and how far the reply got.
    let conversation = |contact: String| {
        let (server, asha) = (&server, &asha);
        async move {
            let url = server.url(&format!("/api/contacts/{contact}/conversation"));
            let res = client().get(url).bearer_auth(asha).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let seen = conversation(contact.clone()).await;
    assert_eq!((seen["channel"].as_str(), seen["address"].as_str()), (Some("sms"), Some(patient)), "{seen}");
    assert_eq!(seen["window_closes_at"], Value::Null, "SMS has no 24-hour window: {seen}");
    assert_eq!(seen["opted_out"], Value::Null, "{seen}");
    let replies = seen["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 1, "{seen}");
    assert_eq!(
        (replies[0]["state"].as_str(), replies[0]["delivery"].as_str()),
        (Some("sent"), Some("delivered")),
        "{seen}"
    );
    let forged = sms_status(out_sid, patient, "failed");
    let (status, _, _) = post_twilio(&server, &callback_path, &forged, Some("bm90IGEgc2lnbmF0dXJl")).await;
    assert_eq!(status, 403);

    // Too long for 10 segments (GSM-7 153 characters each; Hindi is UCS-2, 67 each): 422, nothing stored.
    let messages_before = count(dir.path(), "select count(*) from chat_message").await;
    for (long, says) in [("a".repeat(153 * 10 + 1), "GSM-7"), ("बु".repeat(34 * 10), "UCS-2")] {
        let (status, problem) =
            server.post(&asha, &format!("/api/contacts/{contact}/messages"), json!({"body": long})).await;
        assert_eq!(status, 422, "{problem}");
        let said = problem.to_string();
        assert!(said.contains("segments") && said.contains(says), "{said}");
    }

    // STOP: recorded; replies are refused with a reason the operator can act on, and nothing is stored.
    post_twilio_signed(&server, path, &sms_from(patient, "SM00000000000000000000000000000stop", "STOP")).await;
    wait_for(20, "the STOP is recorded", || async {
        let n = count(dir.path(), "select count(*) from channel_opt_out where opted_out").await;
        (n == 1).then_some(())
    })
    .await;
    let messages_before = messages_before + 1;
    wait_for(20, "the STOP is on the conversation", || async {
        (count(dir.path(), "select count(*) from chat_message").await == messages_before).then_some(())
    })
    .await;
    let (status, problem) =
        server.post(&asha, &format!("/api/contacts/{contact}/messages"), json!({"body": "Get well soon"})).await;
    assert_eq!(status, 422, "{problem}");
    let said = problem.to_string();
    assert!(said.contains("opted out") && said.contains("START"), "{said}");
    assert_eq!(count(dir.path(), "select count(*) from chat_message").await, messages_before);
    assert_eq!(count(dir.path(), "select count(*) from channel_outbox").await, 1);
    let seen = conversation(contact.clone()).await;
    assert_eq!(seen["opted_out"]["keyword"], "STOP", "the console shows the STOP: {seen}");

    // START: replies go again. Twilio refusing one as unsubscribed (21610) records the opt-out again.
    post_twilio_signed(&server, path, &sms_from(patient, "SM0000000000000000000000000000start", "START")).await;
    wait_for(20, "the START is recorded", || async {
        let n = count(dir.path(), "select count(*) from channel_opt_out where not opted_out").await;
        (n == 1).then_some(())
    })
    .await;
    let (status, body) =
        server.post(&asha, &format!("/api/contacts/{contact}/messages"), json!({"body": "Welcome back"})).await;
    assert_eq!(status, 201, "{body}");
    let (got, answer) = next_request(&requests).await;
    assert_eq!(got.form()["Body"], "Welcome back");
    let refused = json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400});
    answer.send((400, refused.to_string())).unwrap();
    wait_for(20, "the refused send is failed and the opt-out recorded", || async {
        let failed = text(dir.path(), "select state from channel_outbox order by channel_outbox_id desc limit 1").await;
        let out = count(dir.path(), "select count(*) from channel_opt_out where opted_out").await;
        (failed.as_deref() == Some("failed") && out == 1).then_some(())
    })
    .await;
    let (status, problem) =
        server.post(&asha, &format!("/api/contacts/{contact}/messages"), json!({"body": "Hello?"})).await;
    assert_eq!(status, 422, "{problem}");
    let seen = conversation(contact.clone()).await;
    let last = seen["replies"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["state"], "failed", "{seen}");
    assert!(last["last_error"].as_str().unwrap().contains("21610"), "the provider's reason is shown: {seen}");
}

#[tokio::test]
async fn an_operator_answers_an_sms_in_the_console_and_sees_it_delivered_then_stopped() {
    let (api, requests) = fake_api("");
    // Twilio takes every send.
    std::thread::spawn(move || {
        for (n, (_, answer)) in requests.into_iter().enumerate() {
            let created = json!({"sid": format!("SMconsole{n:025}"), "account_sid": TWILIO_SID, "status": "queued"});
            let _ = answer.send((201, created.to_string()));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = start_sms(dir.path(), &api);
    server.round_the_clock("operator", "asha").await;
    let patient = "+919810067890";
    // The browser's output goes to files, to be shown whenever the story stops.
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let mut browser = node_script("sms-conversation.mjs", &server, "asha")
        .env("CARELINE_PATIENT", patient)
        .stdout(log("node.out"))
        .stderr(log("node.err"))
        .spawn()
        .expect("run node (install Node.js)");
    let said = || {
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        format!("{}\n{}", read("node.out"), read("node.err"))
    };

    // The patient writes once the operator is ready in the browser.
    let asha = server.bearer("asha").await;
    wait_for(60, "the operator is ready in the console", || async {
        (agent_state(&server, &asha).await["state"] == "idle").then_some(())
    })
    .await;
    post_twilio_signed(
        &server,
        "/webhooks/twilio/sms",
        &sms_from(patient, "SMconsole0000000000000000000000in", "Is the Lok Nayak fever clinic open on Sunday?"),
    )
    .await;

    // Once Twilio has the reply, its status callback says delivered; then the patient sends STOP.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let sent = loop {
        let pool = db(dir.path()).await;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("select opaque, provider_message_id from channel_outbox where state = 'sent'")
                .fetch_optional(&pool)
                .await
                .unwrap();
        pool.close().await;
        if let Some(row) = row {
            break row;
        }
        let stopped = browser.try_wait().unwrap();
        assert!(stopped.is_none() && std::time::Instant::now() < deadline, "no reply was sent:\n{}", said());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let callback = format!("/webhooks/twilio/status?careline_ref={}", sent.0);
    post_twilio_signed(&server, &callback, &sms_status(&sent.1.unwrap(), patient, "delivered")).await;
    wait_for(20, "the delivery is recorded", || async {
        (text(dir.path(), "select delivery from channel_outbox").await.as_deref() == Some("delivered")).then_some(())
    })
    .await;
    post_twilio_signed(
        &server,
        "/webhooks/twilio/sms",
        &sms_from(patient, "SMconsole000000000000000000000stop", "STOP"),
    )
    .await;

    let status = tokio::task::spawn_blocking(move || browser.wait()).await.unwrap().unwrap();
    let output = said();
    assert!(status.success(), "the console story failed:\n{output}");
    assert!(output.contains("the STOP is shown and the reply refused"), "{output}");
}
