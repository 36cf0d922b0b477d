//! Ambulance requests reach the dispatch service's webhook, a real HTTP
//! server on loopback here; when it cannot be reached the request is still
//! stored, with the reason.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use serde_json::{Value, json};
use tests::Careline;

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
