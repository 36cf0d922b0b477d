//! WhatsApp through Meta's Cloud API.
//!
//! - Webhook verification: a GET with `hub.mode=subscribe`,
//!   `hub.verify_token` and `hub.challenge`; the challenge is answered when
//!   the token is ours, else 403 (Meta, "Create a webhook endpoint").
//! - Notifications: POSTs of `{object: "whatsapp_business_account", entry:
//!   [{changes: [{value: {metadata, contacts, messages | statuses}}]}]}`,
//!   every level an array, signed with `X-Hub-Signature-256: sha256=` the
//!   hex HMAC-SHA256 of the raw body under the app secret (Meta, "Webhooks:
//!   Event notifications", validating payloads).
//! - Sends: `POST {api}/{phone_number_id}/messages` with a bearer token and
//!   `{messaging_product: "whatsapp", to, type: "text", text: {body}}`;
//!   `biz_opaque_callback_data` comes back in the message's status
//!   callbacks (Cloud API reference, "Messages").
//!
//! Parsing and signing are pure; [`WhatsApp::post`] is the one I/O.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{Inbound, Posted};
use crate::store::{EventKind, NewChannelEvent};

/// A WhatsApp Business phone number on the Cloud API.
#[derive(Clone)]
pub struct WhatsApp {
    /// Signs the webhooks (the Meta app's secret).
    pub app_secret: String,
    /// Our answer to Meta's verification GET, chosen when subscribing.
    pub verify_token: String,
    /// The bearer token of the sends (a system user's access token).
    pub token: String,
    /// The number's id: sends go to `{api}/{phone_number_id}/messages`,
    /// and notifications for another number are refused (404).
    pub phone_number_id: String,
    /// The Graph API base, e.g. `https://graph.facebook.com/v21.0`.
    pub api_url: String,
    /// Approved message templates the console may send outside the 24-hour window.
    pub templates: Vec<String>,
}

/// Secrets never reach the logs.
impl std::fmt::Debug for WhatsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsApp")
            .field("app_secret", &"***")
            .field("verify_token", &"***")
            .field("token", &"***")
            .field("phone_number_id", &self.phone_number_id)
            .field("api_url", &self.api_url)
            .field("templates", &self.templates)
            .finish()
    }
}

/// Does `header` (`X-Hub-Signature-256`) sign `body` under `secret`? The
/// comparison is constant-time (`Mac::verify_slice`), on the raw bytes.
pub fn signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else { return false };
    let Ok(sig) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The `X-Hub-Signature-256` value of `body` under `secret` (as Meta computes it).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Deserialize)]
struct Notification {
    object: String,
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    value: Value,
}

#[derive(Deserialize)]
struct Value {
    metadata: Metadata,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<serde_json::Value>,
    #[serde(default)]
    statuses: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct Contact {
    wa_id: String,
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

/// The fields of a message that Careline reads; the rest is kept as it came.
#[derive(Deserialize)]
struct Message {
    from: String,
    id: String,
    timestamp: String,
    #[serde(rename = "type")]
    kind: String,
    text: Option<Text>,
}

#[derive(Deserialize)]
struct Text {
    body: String,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    timestamp: String,
    biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Deserialize)]
struct StatusError {
    code: Option<i64>,
    title: Option<String>,
}

/// Why a notification is refused: 400 (malformed, naming where) or 404 (another number's).
#[derive(Debug, PartialEq)]
pub enum ParseError {
    Malformed(String),
    UnknownAccount(String),
}

fn field<T: serde::de::DeserializeOwned>(value: &serde_json::Value, at: &str) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." { at.to_owned() } else { format!("{at}.{inner}") };
        ParseError::Malformed(format!("{path}: {}", e.inner()))
    })
}

fn unix_time(s: &str, at: &str) -> Result<DateTime<Utc>, ParseError> {
    s.parse::<i64>()
        .ok()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .ok_or_else(|| ParseError::Malformed(format!("{at}: `{s}` is not a Unix time in seconds")))
}

/// A notification's messages and statuses, as journal entries; `phone_number_id`
/// is ours, and a notification for another number is refused.
pub fn parse(body: &[u8], phone_number_id: &str) -> Result<Vec<NewChannelEvent>, ParseError> {
    let root: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::Malformed(format!("the body is not JSON: {e}")))?;
    let n: Notification = field(&root, "$")?;
    if n.object != "whatsapp_business_account" {
        return Err(ParseError::Malformed(format!("object: `{}`, not `whatsapp_business_account`", n.object)));
    }
    let mut events = Vec::new();
    for (i, entry) in n.entry.iter().enumerate() {
        for (j, change) in entry.changes.iter().enumerate() {
            let at = format!("entry[{i}].changes[{j}].value");
            let v = &change.value;
            if v.metadata.phone_number_id != phone_number_id {
                return Err(ParseError::UnknownAccount(format!(
                    "{at}.metadata.phone_number_id: `{}` is not this helpline's number",
                    v.metadata.phone_number_id
                )));
            }
            for (k, raw) in v.messages.iter().enumerate() {
                let at = format!("{at}.messages[{k}]");
                let m: Message = field(raw, &at)?;
                let sent_at = unix_time(&m.timestamp, &format!("{at}.timestamp"))?;
                let name = v.contacts.iter().find(|c| c.wa_id == m.from).and_then(|c| c.profile.as_ref()?.name.clone());
                let inbound = Inbound::Message {
                    from: m.from.clone(),
                    name,
                    message_id: m.id.clone(),
                    sent_at,
                    message_type: m.kind.clone(),
                    text: if m.kind == "text" { m.text.map(|t| t.body) } else { None },
                    raw: raw.clone(),
                    channel: None,
                    opt: None,
                };
                events.push(NewChannelEvent {
                    kind: EventKind::Message,
                    event_key: m.id.clone(),
                    message_ref: Some(m.id),
                    opaque: None,
                    payload: serde_json::to_string(&inbound).expect("JSON values serialise"),
                });
            }
            for (k, raw) in v.statuses.iter().enumerate() {
                let at = format!("{at}.statuses[{k}]");
                let s: Status = field(raw, &at)?;
                let when = unix_time(&s.timestamp, &format!("{at}.timestamp"))?;
                let error = s.errors.first().map(|e| {
                    format!(
                        "{} {}",
                        e.code.map(|c| c.to_string()).unwrap_or_default(),
                        e.title.clone().unwrap_or_default()
                    )
                    .trim()
                    .to_owned()
                });
                let inbound = Inbound::Status {
                    message_id: s.id.clone(),
                    status: s.status.clone(),
                    opaque: s.biz_opaque_callback_data.clone(),
                    at: when,
                    error,
                    raw: raw.clone(),
                };
                events.push(NewChannelEvent {
                    kind: EventKind::Status,
                    event_key: format!("{}:{}", s.id, s.status),
                    message_ref: Some(s.id),
                    opaque: s.biz_opaque_callback_data,
                    payload: serde_json::to_string(&inbound).expect("JSON values serialise"),
                });
            }
        }
    }
    Ok(events)
}

impl WhatsApp {
    /// The send request of a text reply (Cloud API, "Send text messages").
    pub fn text_request(&self, to: &str, body: &str, opaque: &str) -> serde_json::Value {
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": false, "body": body},
            "biz_opaque_callback_data": opaque,
        })
    }

    /// The send request of an approved template (allowed outside the 24-hour window).
    pub fn template_request(&self, to: &str, name: &str, language: &str, opaque: &str) -> serde_json::Value {
        serde_json::json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {"name": name, "language": {"code": language}},
            "biz_opaque_callback_data": opaque,
        })
    }

    /// Posts a stored request to the Cloud API.
    pub async fn post(&self, http: &reqwest::Client, request: &str) -> Posted {
        let url = format!("{}/{}/messages", self.api_url.trim_end_matches('/'), self.phone_number_id);
        let sent = http
            .post(url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.to_owned())
            .send()
            .await;
        Posted::from_reqwest(sent).await
    }

    /// The message id in a send's answer: `{messages: [{id}]}`.
    pub fn message_id(answer: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(answer).ok()?;
        v["messages"][0]["id"].as_str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meta's documented example of a text message notification ("Webhooks
    /// payload examples: text messages"), with our number id.
    const TEXT: &str = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],"messages":[{"from":"16505551234","id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=","timestamp":"1749416383","text":{"body":"Does it come in another color?"},"type":"text"}]},"field":"messages"}]}]}"#;

    #[test]
    fn signatures_are_checked_on_the_raw_body() {
        let body = TEXT.as_bytes();
        let good = sign("app-secret", body);
        assert!(good.starts_with("sha256=") && good.len() == 7 + 64);
        assert!(signature_ok("app-secret", body, Some(&good)));
        assert!(!signature_ok("other-secret", body, Some(&good)), "another secret");
        assert!(!signature_ok("app-secret", &body[1..], Some(&good)), "another body");
        assert!(!signature_ok("app-secret", body, None), "no header");
        assert!(!signature_ok("app-secret", body, Some(&good[7..])), "no sha256= prefix");
        assert!(!signature_ok("app-secret", body, Some("sha256=zz")), "not hex");
        assert!(!signature_ok("app-secret", body, Some(&good[..good.len() - 2])), "truncated");
        // The same JSON re-serialised is another body: the signature is of the bytes.
        let reformatted =
            serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(body).unwrap()).unwrap();
        assert!(!signature_ok("app-secret", &reformatted, Some(&good)));
    }

    #[test]
    fn a_text_message_becomes_one_journal_entry() {
        let events = parse(TEXT.as_bytes(), "106540352242922").unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Message);
        assert_eq!(e.event_key, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
        let inbound: Inbound = serde_json::from_str(&e.payload).unwrap();
        let Inbound::Message { from, name, text, sent_at, message_type, .. } = inbound else { panic!("{inbound:?}") };
        assert_eq!(from, "16505551234");
        assert_eq!(name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(text.as_deref(), Some("Does it come in another color?"));
        assert_eq!(message_type, "text");
        assert_eq!(sent_at.timestamp(), 1749416383);
    }

    #[test]
    fn statuses_are_keyed_by_message_and_status() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"P"},"statuses":[{"id":"wamid.X","status":"read","timestamp":"1750263773","recipient_id":"16505551234","biz_opaque_callback_data":"op-1"},{"id":"wamid.X","status":"failed","timestamp":"1750263774","recipient_id":"1","errors":[{"code":131047,"title":"Re-engagement message"}]}]}}]}]}"#;
        let events = parse(body.as_bytes(), "P").unwrap();
        let keys: Vec<_> = events.iter().map(|e| (e.event_key.as_str(), e.opaque.as_deref())).collect();
        assert_eq!(keys, [("wamid.X:read", Some("op-1")), ("wamid.X:failed", None)]);
        let Inbound::Status { error, .. } = serde_json::from_str(&events[1].payload).unwrap() else { panic!() };
        assert_eq!(error.as_deref(), Some("131047 Re-engagement message"));
    }

    #[test]
    fn malformed_notifications_name_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("not json", "the body is not JSON"),
            (r#"{"object":"page","entry":[]}"#, "object: `page`"),
            (r#"{"object":"whatsapp_business_account"}"#, "missing field `entry`"),
            (r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{}}]}]}"#, "metadata"),
            (
                r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"P"},"messages":[{"from":"1","timestamp":"1","type":"text"}]}}]}]}"#,
                "entry[0].changes[0].value.messages[0]: missing field `id`",
            ),
            (
                r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"P"},"messages":[{"from":"1","id":"m","timestamp":"soon","type":"text"}]}}]}]}"#,
                "entry[0].changes[0].value.messages[0].timestamp: `soon`",
            ),
        ];
        for (body, want) in cases {
            match parse(body.as_bytes(), "P") {
                Err(ParseError::Malformed(m)) => assert!(m.contains(want), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        assert!(
            matches!(parse(TEXT.as_bytes(), "P"), Err(ParseError::UnknownAccount(m)) if m.contains("106540352242922"))
        );
    }

    #[test]
    fn other_types_are_kept_without_text() {
        let body = r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"metadata":{"phone_number_id":"P"},"messages":[{"from":"1","id":"m","timestamp":"1","type":"image","image":{"id":"media-1","mime_type":"image/jpeg"}}]}}]}]}"#;
        let events = parse(body.as_bytes(), "P").unwrap();
        let Inbound::Message { text, message_type, raw, .. } = serde_json::from_str(&events[0].payload).unwrap() else {
            panic!()
        };
        assert_eq!((text, message_type.as_str()), (None, "image"));
        assert_eq!(raw["image"]["id"], "media-1");
    }

    #[test]
    fn debug_hides_the_secrets() {
        let w = WhatsApp {
            app_secret: "s3cret-app".into(),
            verify_token: "s3cret-verify".into(),
            token: "s3cret-token".into(),
            phone_number_id: "P".into(),
            api_url: "http://x".into(),
            templates: vec![],
        };
        let shown = format!("{w:?}");
        assert!(!shown.contains("s3cret") && shown.contains("\"P\""), "{shown}");
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;
        use crate::arbitrary;

        /// A notification for number `P` around `value`: the envelope is
        /// right, so the parser reaches whatever `value` holds.
        fn envelope(value: Value) -> Vec<u8> {
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": value}]}]})
                .to_string()
                .into_bytes()
        }

        fn well_formed_or_typed_error(body: &[u8]) -> Result<(), TestCaseError> {
            match parse(body, "P") {
                Ok(events) => {
                    for e in events {
                        // Every entry's payload is the journal's JSON, and reads back.
                        serde_json::from_str::<Inbound>(&e.payload)
                            .map_err(|err| TestCaseError::fail(err.to_string()))?;
                        prop_assert!(e.message_ref.is_some());
                    }
                }
                Err(ParseError::Malformed(m)) | Err(ParseError::UnknownAccount(m)) => prop_assert!(!m.is_empty()),
            }
            Ok(())
        }

        #[derive(Debug, Clone)]
        struct GenMessage {
            from: String,
            id: String,
            timestamp: i64,
            text: Option<String>,
            name: Option<String>,
        }

        #[derive(Debug, Clone)]
        struct GenStatus {
            id: String,
            status: &'static str,
            timestamp: i64,
            opaque: Option<String>,
        }

        fn message() -> impl Strategy<Value = GenMessage> {
            (
                "[1-9][0-9]{9,13}",
                "wamid\\.[A-Za-z0-9=]{1,30}",
                0i64..4_000_000_000,
                proptest::option::of(any::<String>()),
                proptest::option::of("\\PC{1,20}"),
            )
                .prop_map(|(from, id, timestamp, text, name)| GenMessage {
                    from,
                    id,
                    timestamp,
                    text,
                    name,
                })
        }

        fn status() -> impl Strategy<Value = GenStatus> {
            (
                "wamid\\.[A-Za-z0-9=]{1,30}",
                proptest::sample::select(&["sent", "delivered", "read", "failed"][..]),
                0i64..4_000_000_000,
                proptest::option::of("[a-z0-9-]{1,20}"),
            )
                .prop_map(|(id, status, timestamp, opaque)| GenStatus { id, status, timestamp, opaque })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
                well_formed_or_typed_error(&body)?;
            }

            #[test]
            fn arbitrary_json_never_panics(root in arbitrary::json(), value in arbitrary::json(), item in arbitrary::json()) {
                well_formed_or_typed_error(root.to_string().as_bytes())?;
                well_formed_or_typed_error(&envelope(value))?;
                // An arbitrary message and status inside a valid value.
                let v = json!({"metadata": {"phone_number_id": "P"}, "messages": [item.clone()], "statuses": [item]});
                well_formed_or_typed_error(&envelope(v))?;
            }

            /// A notification built from generated messages and statuses
            /// gives one journal entry each, in order, saying what was sent.
            #[test]
            fn a_built_notification_parses_back(
                messages in proptest::collection::vec(message(), 0..4),
                statuses in proptest::collection::vec(status(), 0..4),
            ) {
                let contacts: Vec<Value> = messages
                    .iter()
                    .filter_map(|m| Some(json!({"wa_id": m.from, "profile": {"name": m.name.clone()?}})))
                    .collect();
                let wire_messages: Vec<Value> = messages
                    .iter()
                    .map(|m| match &m.text {
                        Some(t) => json!({"from": m.from, "id": m.id, "timestamp": m.timestamp.to_string(), "type": "text", "text": {"body": t}}),
                        None => json!({"from": m.from, "id": m.id, "timestamp": m.timestamp.to_string(), "type": "image", "image": {"id": "media-1"}}),
                    })
                    .collect();
                let wire_statuses: Vec<Value> = statuses
                    .iter()
                    .map(|s| {
                        let mut v = json!({"id": s.id, "status": s.status, "timestamp": s.timestamp.to_string(), "recipient_id": "1"});
                        if let Some(o) = &s.opaque {
                            v["biz_opaque_callback_data"] = json!(o);
                        }
                        v
                    })
                    .collect();
                let value = json!({
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "P"},
                    "contacts": contacts,
                    "messages": wire_messages,
                    "statuses": wire_statuses,
                });
                let events = parse(&envelope(value.clone()), "P").map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(events.len(), messages.len() + statuses.len());
                for (m, e) in messages.iter().zip(&events) {
                    prop_assert_eq!((e.kind, e.event_key.as_str()), (EventKind::Message, m.id.as_str()));
                    let inbound: Inbound = serde_json::from_str(&e.payload).map_err(|err| TestCaseError::fail(err.to_string()))?;
                    let Inbound::Message { from, name, text, sent_at, .. } = inbound else {
                        return Err(TestCaseError::fail("not a message"));
                    };
                    // The first contact with this wa_id names the sender (only
                    // messages with a name were given a contact).
                    let want_name = messages.iter().filter(|o| o.from == m.from).find_map(|o| o.name.clone());
                    prop_assert_eq!((from.as_str(), name, text.as_ref()), (m.from.as_str(), want_name, m.text.as_ref()));
                    prop_assert_eq!(sent_at.timestamp(), m.timestamp);
                }
                for (s, e) in statuses.iter().zip(&events[messages.len()..]) {
                    prop_assert_eq!(e.kind, EventKind::Status);
                    prop_assert_eq!(&e.event_key, &format!("{}:{}", s.id, s.status));
                    prop_assert_eq!(&e.opaque, &s.opaque);
                }
                // The same notification for another number is refused as such.
                prop_assert!(matches!(parse(&envelope(value), "Q"), Err(ParseError::UnknownAccount(_))));
            }

            #[test]
            fn a_signature_is_of_the_exact_body(
                secret in "\\PC{0,20}",
                body in proptest::collection::vec(any::<u8>(), 0..200),
                at in any::<proptest::sample::Index>(),
                flip in 1u8..=255,
            ) {
                let sig = sign(&secret, &body);
                prop_assert!(signature_ok(&secret, &body, Some(&sig)));
                if !body.is_empty() {
                    let mut changed = body.clone();
                    changed[at.index(body.len())] ^= flip;
                    prop_assert!(!signature_ok(&secret, &changed, Some(&sig)));
                }
                let other_secret = format!("{secret}x");
                prop_assert!(!signature_ok(&other_secret, &body, Some(&sig)));
            }
        }
    }
}
