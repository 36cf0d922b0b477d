//! The media signaling socket against the real server: who may join a
//! call, and bad messages answered with an error that leaves the call as it
//! was.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::{Careline, client};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start_call(server: &Careline) -> (String, String) {
    let start = json!({"language": "en", "phone": "9810012345", "channel": "webrtc"});
    let res = client().post(server.url("/api/contacts")).json(&start).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let started: Value = res.json().await.unwrap();
    (started["contact_id"].as_str().unwrap().to_owned(), started["token"].as_str().unwrap().to_owned())
}

/// Opens the socket; `Err(status)` when the upgrade is refused.
async fn open(server: &Careline, contact: &str, token: Option<&str>, bearer: Option<&str>) -> Result<Socket, u16> {
    let mut url = format!("{}/api/contacts/{contact}/media", server.base.replace("http://", "ws://"));
    if let Some(t) = token {
        url.push_str(&format!("?token={t}"));
    }
    let mut request = url.into_client_request().unwrap();
    if let Some(b) = bearer {
        request.headers_mut().insert("authorization", format!("Bearer {b}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

async fn receive(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a message");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn send(socket: &mut Socket, text: &str) -> Value {
    socket.send(Message::Text(text.into())).await.unwrap();
    receive(socket).await
}

#[tokio::test]
async fn only_the_contacts_own_patient_and_its_staff_may_join_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    let (mine, my_token) = start_call(&server).await;
    let (other, _) = start_call(&server).await;

    // The patient's token opens their own call and no other.
    let mut socket = open(&server, &mine, Some(&my_token), None).await.expect("the patient joins");
    let welcome = receive(&mut socket).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["role"], "patient");
    assert_eq!(open(&server, &other, Some(&my_token), None).await.err(), Some(403));
    assert_eq!(open(&server, &other, Some("forged"), None).await.err(), Some(401));
    assert_eq!(open(&server, &other, None, None).await.err(), Some(401));
    // Staff not on the contact are refused; a supervisor may monitor any call.
    let asha = server.bearer("asha").await;
    assert_eq!(open(&server, &mine, None, Some(&asha)).await.err(), Some(403));
    let meera = server.bearer("meera").await;
    let mut supervisor = open(&server, &mine, None, Some(&meera)).await.expect("a supervisor joins");
    assert_eq!(receive(&mut supervisor).await["role"], "supervisor");
    assert_eq!(open(&server, "no-such-contact", None, Some(&meera)).await.err(), Some(404));
    // The refusals are logged.
    let logs = server.drain_output().join("\n");
    assert!(logs.contains("a join to a call was refused"), "{logs}");
}

#[tokio::test]
async fn bad_signaling_gets_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Careline::start(dir.path(), &["--demo"], &[]);
    let (contact, token) = start_call(&server).await;
    let mut socket = open(&server, &contact, Some(&token), None).await.unwrap();
    assert_eq!(receive(&mut socket).await["type"], "welcome");

    let cases = [
        ("{not json", "malformed message"),
        (r#"{"type":"dance"}"#, "malformed message"),
        (r#"{"type":"offer"}"#, "missing field `sdp`"),
        (r#"{"type":"offer","sdp":"hello"}"#, "no audio m-line"),
        (r#"{"type":"offer","sdp":"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"}"#, "Opus"),
        (
            r#"{"type":"offer","sdp":"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"}"#,
            "offer was refused",
        ),
        (r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}"#, "send an offer first"),
        (r#"{"type":"hold","participant":"patient","on":true}"#, "send an offer first"),
    ];
    for (text, expected) in cases {
        let answer = send(&mut socket, text).await;
        assert_eq!(answer["type"], "error", "{text}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(expected), "{text}: {message}");
    }
    // Nobody joined the call: a supervisor sees an empty roster once they join.
    let meera = server.bearer("meera").await;
    let mut supervisor = open(&server, &contact, None, Some(&meera)).await.unwrap();
    assert_eq!(receive(&mut supervisor).await["type"], "welcome");
    let answer = send(&mut supervisor, r#"{"type":"supervise","mode":"barge"}"#).await;
    assert_eq!(answer["type"], "error");
    // The patient's socket still works after all that.
    let answer = send(&mut socket, r#"{"type":"mute","muted":true}"#).await;
    assert!(answer["message"].as_str().unwrap().contains("send an offer first"), "{answer}");
}
