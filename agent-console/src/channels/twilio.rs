//! SMS (and WhatsApp) through Twilio Programmable Messaging.
//!
//! - Webhooks: form-encoded POSTs (`application/x-www-form-urlencoded`).
//!   A patient's message (`/webhooks/twilio/sms`) carries `MessageSid`,
//!   `AccountSid`, `From`, `To`, `Body`, `NumMedia` (and `OptOutType` with
//!   Advanced Opt-Out); a status callback (`/webhooks/twilio/status`)
//!   carries `MessageSid`, `MessageStatus` and, on failure, `ErrorCode`
//!   (Twilio, "Messaging webhooks" and "Outbound message status in status
//!   callbacks").
//! - Signatures: `X-Twilio-Signature` is the base64 HMAC-SHA1, under the
//!   account's auth token, of the full URL Twilio requested (the public one,
//!   so behind a proxy the configured public base URL, not our Host)
//!   followed by each POST parameter's name and value, sorted by name
//!   (Twilio, "Webhooks security"; the PyPI `twilio` package's
//!   `RequestValidator` computes the same, and the tests check against it).
//! - Sends: `POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json`
//!   with HTTP basic auth (account SID, auth token) and the form `To`,
//!   `From` (or `MessagingServiceSid`), `Body`, `StatusCallback`; the
//!   answer is JSON with the message's `sid`, an error is JSON with `code`
//!   (e.g. 21610: the recipient has replied STOP) (Twilio REST API, "Message
//!   resource"). Our outbox key rides in the status callback's URL
//!   (`?careline_ref=`), so a send whose answer never came is settled by
//!   its first status callback.
//!
//! Parsing, signing and segment counting are pure; [`Twilio::post`] is the one I/O.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{Inbound, Posted};
use crate::store::{Channel, EventKind, NewChannelEvent};

/// The path of Twilio's inbound message webhook (configure the number's
/// "A message comes in" URL as `{public}/webhooks/twilio/sms`).
pub const MESSAGE_PATH: &str = "/webhooks/twilio/sms";
/// The path of the status callbacks Careline asks for on each send.
pub const STATUS_PATH: &str = "/webhooks/twilio/status";
/// The query parameter of the status callback URL that carries our outbox key.
pub const REF_PARAM: &str = "careline_ref";

/// A Twilio account sending and receiving SMS.
#[derive(Clone)]
pub struct Twilio {
    /// `AC…`: the account the webhooks must name, and the sends' user name.
    pub account_sid: String,
    /// Signs the webhooks, and is the sends' password.
    pub auth_token: String,
    /// The sender: a Twilio number (`From`) or a messaging service (`MG…`, `MessagingServiceSid`).
    pub sender: Sender,
    /// The REST API base, e.g. `https://api.twilio.com`.
    pub api_url: String,
    /// The helpline's public base URL as Twilio reaches it (scheme, host,
    /// any path prefix of a proxy): signatures are over the URL Twilio used.
    pub public_url: String,
}

/// Who a Twilio send comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Sender {
    /// A Twilio phone number in E.164, sent as `From`.
    Number(String),
    /// A messaging service (`MG…`), sent as `MessagingServiceSid`: Twilio picks the number.
    Service(String),
}

/// Secrets never reach the logs.
impl std::fmt::Debug for Twilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twilio")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .field("sender", &self.sender)
            .field("api_url", &self.api_url)
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// The `X-Twilio-Signature` of a request to `url` with form `params`:
/// base64(HMAC-SHA1(token, url + name₁value₁ + name₂value₂ …)), names sorted
/// (byte order, which is code-point order as in Python's `sorted`) and, for a
/// repeated name, its values sorted too, as `twilio`'s `RequestValidator` does.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Does `header` sign a request to `url` with form `params`? Constant-time comparison.
pub fn signature_ok(auth_token: &str, url: &str, params: &[(String, String)], header: Option<&str>) -> bool {
    let Some(given) = header.map(str::trim).filter(|h| !h.is_empty()) else { return false };
    use subtle::ConstantTimeEq;
    let expected = sign(auth_token, url, params);
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Why a webhook is refused: 400 (malformed, naming the field) or 404 (another account's).
#[derive(Debug, PartialEq)]
pub enum ParseError {
    Malformed(String),
    UnknownAccount(String),
}

/// A form-encoded body as its name-value pairs, in order.
pub fn form(body: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    serde_urlencoded::from_bytes(body).map_err(|e| {
        ParseError::Malformed(format!("the body is not form-encoded (application/x-www-form-urlencoded): {e}"))
    })
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a [(String, String)], name: &str) -> Result<&'a str, ParseError> {
    get(params, name).filter(|v| !v.trim().is_empty()).ok_or_else(|| ParseError::Malformed(format!("{name}: missing")))
}

fn check_account(params: &[(String, String)], account_sid: &str) -> Result<(), ParseError> {
    let given = required(params, "AccountSid")?;
    if given != account_sid {
        return Err(ParseError::UnknownAccount(format!("AccountSid: `{given}` is not this helpline's Twilio account")));
    }
    Ok(())
}

/// Twilio's opt-out and opt-in keywords (its default Advanced Opt-Out
/// lists; case-insensitive, the whole message): what a patient's message
/// asks of SMS from the helpline, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKeyword {
    Out,
    In,
}

impl OptKeyword {
    /// From Twilio's `OptOutType` when it sends one, else from the body.
    pub fn of(opt_out_type: Option<&str>, body: &str) -> Option<OptKeyword> {
        let word = match opt_out_type {
            Some(t) if !t.trim().is_empty() => t.trim().to_ascii_uppercase(),
            _ => body.trim().trim_matches(|c: char| c.is_ascii_punctuation()).trim().to_ascii_uppercase(),
        };
        match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE" | "OPTOUT" => {
                Some(OptKeyword::Out)
            }
            "START" | "YES" | "UNSTOP" | "SUBSCRIBE" => Some(OptKeyword::In),
            _ => None,
        }
    }
}

/// A patient's message as a journal entry (`now`: Twilio sends no timestamp).
pub fn parse_message(
    params: &[(String, String)],
    account_sid: &str,
    now: DateTime<Utc>,
) -> Result<NewChannelEvent, ParseError> {
    check_account(params, account_sid)?;
    let sid = get(params, "MessageSid").or_else(|| get(params, "SmsSid")).filter(|s| !s.trim().is_empty());
    let sid = sid.ok_or_else(|| ParseError::Malformed("MessageSid: missing".into()))?.to_owned();
    let from = required(params, "From")?.to_owned();
    let body = get(params, "Body").unwrap_or_default().to_owned();
    let media: u32 = match get(params, "NumMedia") {
        None | Some("") => 0,
        Some(n) => n.parse().map_err(|_| ParseError::Malformed(format!("NumMedia: `{n}` is not a count")))?,
    };
    // Twilio's WhatsApp addresses are `whatsapp:+…`; anything else is SMS.
    let channel = if from.starts_with("whatsapp:") { Channel::Whatsapp } else { Channel::Sms };
    let opt = OptKeyword::of(get(params, "OptOutType"), &body);
    let raw: serde_json::Map<String, serde_json::Value> =
        params.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let inbound = Inbound::Message {
        from,
        name: None,
        message_id: sid.clone(),
        sent_at: now,
        // A message with pictures (MMS) shows its text; the media stay at Twilio (`raw` has their URLs).
        message_type: if media > 0 { "media".into() } else { "text".into() },
        text: (!body.trim().is_empty()).then_some(body),
        raw: serde_json::Value::Object(raw),
        channel: Some(channel),
        opt: opt.map(|o| o == OptKeyword::Out),
    };
    Ok(NewChannelEvent {
        kind: EventKind::Message,
        event_key: sid.clone(),
        message_ref: Some(sid),
        opaque: None,
        payload: serde_json::to_string(&inbound).expect("JSON values serialise"),
    })
}

/// Twilio's `MessageStatus` in Careline's words: `sent`, `delivered`,
/// `read`, `failed` (`undelivered` and `canceled` are failures), or one of
/// the [`super::INTERIM_STATUSES`] before `sent`.
fn status_word(s: &str) -> Result<&'static str, ParseError> {
    Ok(match s {
        "sent" => "sent",
        "delivered" => "delivered",
        "read" => "read",
        "failed" | "undelivered" | "canceled" => "failed",
        "accepted" => "accepted",
        "scheduled" => "scheduled",
        "queued" => "queued",
        "sending" => "sending",
        other => {
            return Err(ParseError::Malformed(format!("MessageStatus: `{other}` is not one of Twilio's statuses")));
        }
    })
}

/// A status callback as a journal entry; `opaque` is our key from the
/// callback URL's query, if it carried one.
pub fn parse_status(
    params: &[(String, String)],
    account_sid: &str,
    opaque: Option<String>,
    now: DateTime<Utc>,
) -> Result<NewChannelEvent, ParseError> {
    check_account(params, account_sid)?;
    let sid = get(params, "MessageSid").or_else(|| get(params, "SmsSid")).filter(|s| !s.trim().is_empty());
    let sid = sid.ok_or_else(|| ParseError::Malformed("MessageSid: missing".into()))?.to_owned();
    let given = get(params, "MessageStatus").or_else(|| get(params, "SmsStatus"));
    let status = status_word(given.ok_or_else(|| ParseError::Malformed("MessageStatus: missing".into()))?)?;
    let error = get(params, "ErrorCode").filter(|c| !c.trim().is_empty()).map(|c| {
        let message = get(params, "ErrorMessage").unwrap_or_default();
        format!("{c} {message}").trim().to_owned()
    });
    let raw: serde_json::Map<String, serde_json::Value> =
        params.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let inbound = Inbound::Status {
        message_id: sid.clone(),
        status: status.to_owned(),
        opaque: opaque.clone(),
        at: now,
        error,
        raw: serde_json::Value::Object(raw),
    };
    Ok(NewChannelEvent {
        kind: EventKind::Status,
        // `undelivered` and `failed` are one failure: keyed by Careline's word.
        event_key: format!("{sid}:{status}"),
        message_ref: Some(sid),
        opaque,
        payload: serde_json::to_string(&inbound).expect("JSON values serialise"),
    })
}

impl Twilio {
    /// The form of a text reply to `to`; `opaque` rides in the status callback URL.
    pub fn text_request(&self, to: &str, body: &str, opaque: &str) -> String {
        let callback = format!(
            "{}{STATUS_PATH}?{}",
            self.public_url.trim_end_matches('/'),
            serde_urlencoded::to_string([(REF_PARAM, opaque)]).expect("strings encode")
        );
        // A reply on a Twilio WhatsApp thread comes from the WhatsApp form of our number.
        let whatsapp = to.starts_with("whatsapp:");
        let from = match &self.sender {
            Sender::Number(n) if whatsapp && !n.starts_with("whatsapp:") => ("From", format!("whatsapp:{n}")),
            Sender::Number(n) => ("From", n.clone()),
            Sender::Service(s) => ("MessagingServiceSid", s.clone()),
        };
        serde_urlencoded::to_string([
            ("To", to),
            (from.0, from.1.as_str()),
            ("Body", body),
            ("StatusCallback", callback.as_str()),
        ])
        .expect("strings encode")
    }

    /// Posts a stored request to Twilio's Messages resource.
    pub async fn post(&self, http: &reqwest::Client, request: &str) -> Posted {
        let url =
            format!("{}/2010-04-01/Accounts/{}/Messages.json", self.api_url.trim_end_matches('/'), self.account_sid);
        let sent = http
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(request.to_owned())
            .send()
            .await;
        Posted::from_reqwest(sent).await
    }

    /// The message's `sid` in a send's answer.
    pub fn message_id(answer: &str) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(answer).ok()?;
        v["sid"].as_str().filter(|s| !s.is_empty()).map(str::to_owned)
    }

    /// Twilio's error code in a refusal's answer (`{"code": 21610, …}`).
    pub fn error_code(answer: &str) -> Option<i64> {
        let v: serde_json::Value = serde_json::from_str(answer).ok()?;
        v["code"].as_i64()
    }
}

/// Twilio's error for a recipient who replied STOP: never retried, and recorded as an opt-out.
pub const UNSUBSCRIBED: i64 = 21610;

/// How an SMS is encoded, which sets its segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet: 160 characters alone, 153 per part.
    Gsm7,
    /// Anything else (Devanagari, most emoji): UCS-2, 70 alone, 67 per part.
    Ucs2,
}

/// An SMS's size as the network carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Segments {
    pub encoding: Encoding,
    /// Parts the message is sent in (each billed as one SMS).
    pub segments: u32,
}

/// The most segments a reply may have: past it, a long text is better
/// split by the operator, or sent as a link (and costs ten SMS).
pub const MAX_SEGMENTS: u32 = 10;

/// GSM 03.38's basic character set (3GPP TS 23.038, 6.2.1), escape excluded.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Its extension table: each takes two septets (an escape, then the character).
const GSM_EXTENSION: &str = "\u{000C}^{}\\[~]|€";

/// The septets a character takes in GSM-7, or `None` if it has none there.
fn gsm_septets(c: char) -> Option<u32> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs units of `costs` into parts of `part` units (a character is never
/// split across two: an escape and its character, or a surrogate pair,
/// stay together, as handsets join them).
fn parts(costs: impl Iterator<Item = u32>, part: u32) -> u32 {
    let (mut n, mut used) = (1, 0);
    for cost in costs {
        if used + cost > part {
            n += 1;
            used = 0;
        }
        used += cost;
    }
    n
}

/// How many segments `text` is sent in: GSM-7 when every character is in
/// its alphabet, else UCS-2 (UTF-16 code units), as Twilio and the
/// carriers count (3GPP TS 23.038 and 23.040: a concatenated part's header
/// leaves 153 septets or 67 UCS-2 characters).
pub fn segments(text: &str) -> Segments {
    let gsm: Option<Vec<u32>> = text.chars().map(gsm_septets).collect();
    match gsm {
        Some(costs) => {
            let total: u32 = costs.iter().sum();
            let segments = if total <= 160 { 1 } else { parts(costs.into_iter(), 153) };
            Segments { encoding: Encoding::Gsm7, segments }
        }
        None => {
            let total = text.encode_utf16().count() as u32;
            let segments = if total <= 70 { 1 } else { parts(text.chars().map(|c| c.len_utf16() as u32), 67) };
            Segments { encoding: Encoding::Ucs2, segments }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The example of Twilio's "Webhooks security" page and of the `twilio`
    /// package's `RequestValidator` docs: token `12345`, this URL and these
    /// parameters sign to `0/KCTR6DLpKmkAf8muzZqo1nDgQ=`.
    #[test]
    fn twilio_s_documented_signature() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(sign("12345", url, &params), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        // The order the form came in does not matter.
        let mut reversed = params.clone();
        reversed.reverse();
        assert!(signature_ok("12345", url, &reversed, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")));
        assert!(!signature_ok("12346", url, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), "another token");
        assert!(
            !signature_ok(
                "12345",
                "https://mycompany.com/myapp.php?foo=1",
                &params,
                Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
            ),
            "another URL"
        );
        let mut changed = params.clone();
        changed[2].1 = "1235".into();
        assert!(!signature_ok("12345", url, &changed, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")), "another value");
        assert!(!signature_ok("12345", url, &params, None), "no header");
        assert!(!signature_ok("12345", url, &params, Some("")), "empty header");
    }

    const ACCOUNT: &str = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";

    fn inbound(body: &str) -> Vec<(String, String)> {
        pairs(&[
            ("ToCountry", "US"),
            ("SmsMessageSid", "SM1a2b"),
            ("NumMedia", "0"),
            ("SmsSid", "SM1a2b"),
            ("SmsStatus", "received"),
            ("Body", body),
            ("To", "+15005550006"),
            ("NumSegments", "1"),
            ("MessageSid", "SM1a2b"),
            ("AccountSid", ACCOUNT),
            ("From", "+919810012345"),
            ("ApiVersion", "2010-04-01"),
        ])
    }

    #[test]
    fn a_message_becomes_one_journal_entry() {
        let now = Utc::now();
        let e = parse_message(&inbound("मुझे बुखार है"), ACCOUNT, now).unwrap();
        assert_eq!((e.kind, e.event_key.as_str()), (EventKind::Message, "SM1a2b"));
        let Inbound::Message { from, text, channel, opt, sent_at, .. } = serde_json::from_str(&e.payload).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (from.as_str(), text.as_deref(), channel, opt, sent_at),
            ("+919810012345", Some("मुझे बुखार है"), Some(Channel::Sms), None, now)
        );
        let mut wa = inbound("hi");
        wa.iter_mut().find(|(k, _)| k == "From").unwrap().1 = "whatsapp:+919810012345".into();
        let Inbound::Message { channel, .. } =
            serde_json::from_str(&parse_message(&wa, ACCOUNT, now).unwrap().payload).unwrap()
        else {
            panic!()
        };
        assert_eq!(channel, Some(Channel::Whatsapp));
    }

    #[test]
    fn bad_messages_name_what_is_wrong() {
        let now = Utc::now();
        assert!(
            matches!(parse_message(&inbound("x"), "ACother", now), Err(ParseError::UnknownAccount(m)) if m.contains("AccountSid"))
        );
        for (drop, want) in [("From", "From: missing"), ("AccountSid", "AccountSid: missing")] {
            let p: Vec<_> = inbound("x").into_iter().filter(|(k, _)| k != drop).collect();
            assert_eq!(parse_message(&p, ACCOUNT, now), Err(ParseError::Malformed(want.into())));
        }
        let p: Vec<_> = inbound("x").into_iter().filter(|(k, _)| !k.ends_with("Sid") || k == "AccountSid").collect();
        assert_eq!(parse_message(&p, ACCOUNT, now), Err(ParseError::Malformed("MessageSid: missing".into())));
        let mut p = inbound("x");
        p.iter_mut().find(|(k, _)| k == "NumMedia").unwrap().1 = "many".into();
        assert!(matches!(parse_message(&p, ACCOUNT, now), Err(ParseError::Malformed(m)) if m.starts_with("NumMedia")));
    }

    #[test]
    fn opt_out_keywords() {
        for b in ["STOP", "stop", " Stop. ", "UNSUBSCRIBE", "cancel", "End", "quit", "STOPALL"] {
            assert_eq!(OptKeyword::of(None, b), Some(OptKeyword::Out), "{b}");
        }
        for b in ["START", "start!", "UNSTOP", "yes"] {
            assert_eq!(OptKeyword::of(None, b), Some(OptKeyword::In), "{b}");
        }
        for b in ["please stop the pain", "HELP", "मदद", "", "stopp"] {
            assert_eq!(OptKeyword::of(None, b), None, "{b}");
        }
        // Twilio's Advanced Opt-Out names it, whatever the (custom) keyword was.
        assert_eq!(OptKeyword::of(Some("STOP"), "बंद"), Some(OptKeyword::Out));
        assert_eq!(OptKeyword::of(Some("HELP"), "STOP"), None);
    }

    #[test]
    fn statuses_are_keyed_by_message_and_careline_s_word() {
        let now = Utc::now();
        let status = |s: &str| {
            pairs(&[("MessageSid", "SM9"), ("MessageStatus", s), ("AccountSid", ACCOUNT), ("ErrorCode", "30003")])
        };
        let e = parse_status(&status("undelivered"), ACCOUNT, Some("op-1".into()), now).unwrap();
        assert_eq!((e.event_key.as_str(), e.opaque.as_deref()), ("SM9:failed", Some("op-1")));
        let Inbound::Status { error, status: word, .. } = serde_json::from_str(&e.payload).unwrap() else { panic!() };
        assert_eq!((word.as_str(), error.as_deref()), ("failed", Some("30003")));
        assert_eq!(parse_status(&status("queued"), ACCOUNT, None, now).unwrap().event_key, "SM9:queued");
        assert_eq!(parse_status(&status("delivered"), ACCOUNT, None, now).unwrap().event_key, "SM9:delivered");
        assert!(
            matches!(parse_status(&status("lost"), ACCOUNT, None, now), Err(ParseError::Malformed(m)) if m.contains("`lost`"))
        );
    }

    #[test]
    fn the_send_form_and_its_answer() {
        let t = Twilio {
            account_sid: ACCOUNT.into(),
            auth_token: "s3cr3t-token".into(),
            sender: Sender::Number("+15005550006".into()),
            api_url: "http://x".into(),
            public_url: "https://helpline.example/".into(),
        };
        let form: Vec<(String, String)> =
            serde_urlencoded::from_str(&t.text_request("+919810012345", "Drink fluids & rest", "op-1")).unwrap();
        assert_eq!(
            form,
            pairs(&[
                ("To", "+919810012345"),
                ("From", "+15005550006"),
                ("Body", "Drink fluids & rest"),
                ("StatusCallback", "https://helpline.example/webhooks/twilio/status?careline_ref=op-1"),
            ])
        );
        let service = Twilio { sender: Sender::Service("MG1".into()), ..t.clone() };
        assert!(service.text_request("+91", "b", "o").contains("MessagingServiceSid=MG1"));
        assert!(t.text_request("whatsapp:+91", "b", "o").contains("From=whatsapp%3A%2B15005550006"));
        assert_eq!(Twilio::message_id(r#"{"sid":"SMabc","status":"queued"}"#).as_deref(), Some("SMabc"));
        assert_eq!(Twilio::message_id("{}"), None);
        assert_eq!(Twilio::error_code(r#"{"code":21610,"message":"unsubscribed","status":400}"#), Some(UNSUBSCRIBED));
        assert!(!format!("{t:?}").contains("s3cr3t"), "the token is hidden");
    }

    #[test]
    fn segments_of_gsm_and_ucs2_texts() {
        let g = |n: u32| Segments { encoding: Encoding::Gsm7, segments: n };
        let u = |n: u32| Segments { encoding: Encoding::Ucs2, segments: n };
        let cases: Vec<(String, Segments)> = vec![
            ("Drink fluids".into(), g(1)),
            ("a".repeat(160), g(1)),
            ("a".repeat(161), g(2)),
            ("a".repeat(306), g(2)),
            ("a".repeat(307), g(3)),
            // Each of the extension table takes two septets.
            ("€".repeat(80), g(1)),
            ("€".repeat(81), g(2)),
            // An escape pair is not split: 152 + a 2-septet character does not fit in 153.
            (format!("{}€{}", "a".repeat(152), "a".repeat(10)), g(2)),
            (format!("{}€{}", "a".repeat(152), "a".repeat(152)), g(3)),
            ("Ça va? £5 @ 10:00 è".into(), g(1)),
            // Devanagari, or one character outside GSM-7, makes it UCS-2.
            ("क".repeat(70), u(1)),
            ("क".repeat(71), u(2)),
            ("क".repeat(134), u(2)),
            ("क".repeat(135), u(3)),
            (format!("{}✓", "a".repeat(69)), u(1)),
            (format!("{}✓", "a".repeat(70)), u(2)),
            // An emoji is two UTF-16 units and is not split.
            ("😀".repeat(35), u(1)),
            (format!("{}😀", "a".repeat(69)), u(2)),
        ];
        for (text, want) in cases {
            assert_eq!(segments(&text), want, "{} chars: {text}", text.chars().count());
        }
        assert_eq!(segments(&"क".repeat(670)).segments, MAX_SEGMENTS);
        assert_eq!(segments(&"a".repeat(1530)).segments, MAX_SEGMENTS);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Names Twilio's webhooks carry (and the parsers read), or others.
        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::sample::select(
                    &[
                        "AccountSid",
                        "MessageSid",
                        "SmsSid",
                        "From",
                        "To",
                        "Body",
                        "NumMedia",
                        "OptOutType",
                        "MessageStatus",
                        "SmsStatus",
                        "ErrorCode",
                        "ErrorMessage",
                    ][..]
                )
                .prop_map(str::to_owned),
                "\\PC{0,8}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(ACCOUNT.to_owned()),
                proptest::sample::select(
                    &["", " ", "0", "3", "-1", "STOP", "delivered", "undelivered", "whatsapp:+91"][..]
                )
                .prop_map(str::to_owned),
                any::<String>(),
            ]
        }

        fn params() -> impl Strategy<Value = Vec<(String, String)>> {
            proptest::collection::vec((name(), value()), 0..10)
        }

        /// Parameters with distinct names, as a signed webhook carries.
        fn distinct_params() -> impl Strategy<Value = Vec<(String, String)>> {
            proptest::collection::btree_map("[A-Za-z]{1,12}", "[ -~]{0,20}", 1..8)
                .prop_map(|m| m.into_iter().collect::<Vec<_>>())
                .prop_shuffle()
        }

        /// A one-character change of `s` at `at` (a different ASCII
        /// character in place of one), or one more character if `s` is empty.
        fn one_change(s: &str, at: proptest::sample::Index) -> String {
            let chars: Vec<char> = s.chars().collect();
            if chars.is_empty() {
                return "x".into();
            }
            let i = at.index(chars.len());
            let replacement = if chars[i] == 'a' { 'b' } else { 'a' };
            chars.iter().enumerate().map(|(j, c)| if j == i { replacement } else { *c }).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn form_of_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
                match form(&body) {
                    Ok(pairs) => prop_assert!(pairs.len() <= body.len() / 2 + 1),
                    Err(ParseError::Malformed(m)) => prop_assert!(m.contains("form-encoded")),
                    Err(e) => return Err(TestCaseError::fail(format!("{e:?}"))),
                }
            }

            /// What a form encoder writes, `form` reads back pair for pair,
            /// in order (names repeat in Twilio's media fields).
            #[test]
            fn form_round_trips(pairs in proptest::collection::vec((any::<String>(), any::<String>()), 0..8)) {
                let body = serde_urlencoded::to_string(&pairs).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(form(body.as_bytes()), Ok(pairs));
            }

            #[test]
            fn arbitrary_parameters_never_panic(p in params(), opaque in proptest::option::of(any::<String>())) {
                let now = Utc::now();
                let account_ok = get(&p, "AccountSid") == Some(ACCOUNT);
                for result in [parse_message(&p, ACCOUNT, now), parse_status(&p, ACCOUNT, opaque, now)] {
                    match result {
                        Ok(e) => {
                            prop_assert!(account_ok);
                            serde_json::from_str::<Inbound>(&e.payload).map_err(|err| TestCaseError::fail(err.to_string()))?;
                        }
                        Err(ParseError::UnknownAccount(m)) => prop_assert!(m.starts_with("AccountSid")),
                        Err(ParseError::Malformed(m)) => prop_assert!(!m.is_empty()),
                    }
                }
            }

            /// A generated inbound SMS gives the entry it describes.
            #[test]
            fn a_built_message_parses_back(
                sid in "SM[0-9a-f]{32}",
                from in "(whatsapp:)?\\+[1-9][0-9]{9,13}",
                body in any::<String>(),
                media in 0u32..10,
            ) {
                let now = Utc::now();
                let p = vec![
                    ("AccountSid".to_owned(), ACCOUNT.to_owned()),
                    ("MessageSid".to_owned(), sid.clone()),
                    ("From".to_owned(), from.clone()),
                    ("Body".to_owned(), body.clone()),
                    ("NumMedia".to_owned(), media.to_string()),
                ];
                let e = parse_message(&p, ACCOUNT, now).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(&e.event_key, &sid);
                let inbound: Inbound = serde_json::from_str(&e.payload).map_err(|err| TestCaseError::fail(err.to_string()))?;
                let Inbound::Message { from: f, text, channel, message_type, opt, .. } = inbound else {
                    return Err(TestCaseError::fail("not a message"));
                };
                let want_channel = if from.starts_with("whatsapp:") { Channel::Whatsapp } else { Channel::Sms };
                prop_assert_eq!((f, channel), (from, Some(want_channel)));
                prop_assert_eq!(text, Some(body.clone()).filter(|b| !b.trim().is_empty()));
                prop_assert_eq!(message_type, if media > 0 { "media" } else { "text" });
                prop_assert_eq!(opt, OptKeyword::of(None, &body).map(|o| o == OptKeyword::Out));
            }

            #[test]
            fn a_signature_signs_the_url_and_every_parameter(
                token in "[ -~]{1,32}",
                url in "https://[a-z]{1,10}\\.example(/[a-z]{1,8}){0,3}(\\?[a-z]=[0-9]{1,3})?",
                params in distinct_params(),
                at in any::<proptest::sample::Index>(),
                which in any::<proptest::sample::Index>(),
            ) {
                let sig = sign(&token, &url, &params);
                prop_assert!(signature_ok(&token, &url, &params, Some(&sig)));
                // Order does not matter: Twilio signs the sorted names.
                let mut reversed = params.clone();
                reversed.reverse();
                prop_assert!(signature_ok(&token, &url, &reversed, Some(&sig)));
                prop_assert!(!signature_ok(&token, &one_change(&url, at), &params, Some(&sig)), "URL changed");
                let i = which.index(params.len());
                let mut changed = params.clone();
                changed[i].1 = one_change(&changed[i].1, at);
                prop_assert!(!signature_ok(&token, &url, &changed, Some(&sig)), "value changed");
                let mut renamed = params.clone();
                renamed[i].0 = one_change(&renamed[i].0, at);
                prop_assert!(!signature_ok(&token, &url, &renamed, Some(&sig)), "name changed");
                let mut dropped = params.clone();
                dropped.remove(i);
                prop_assert!(!signature_ok(&token, &url, &dropped, Some(&sig)), "parameter dropped");
                prop_assert!(!signature_ok(&one_change(&token, at), &url, &params, Some(&sig)), "another token");
            }

            /// Segments are at least one, and as many as the text needs: at
            /// least its size over a part's, and at most one more unit of
            /// waste per part (a 2-septet character or a surrogate pair is
            /// never split).
            #[test]
            fn segments_fit_the_text(text in "\\PC{0,400}|[a-z€{} ]{0,400}|[a-z😀]{0,200}") {
                let s = segments(&text);
                prop_assert!(s.segments >= 1);
                let gsm: Option<u32> = text.chars().map(gsm_septets).sum();
                match (s.encoding, gsm) {
                    (Encoding::Gsm7, Some(septets)) if septets <= 160 => prop_assert_eq!(s.segments, 1),
                    (Encoding::Gsm7, Some(septets)) => {
                        prop_assert!(s.segments >= septets.div_ceil(153) && s.segments <= septets.div_ceil(152));
                    }
                    (Encoding::Ucs2, None) => {
                        let units = text.encode_utf16().count() as u32;
                        if units <= 70 {
                            prop_assert_eq!(s.segments, 1);
                        } else {
                            prop_assert!(s.segments >= units.div_ceil(67) && s.segments <= units.div_ceil(66));
                        }
                    }
                    (encoding, gsm) => return Err(TestCaseError::fail(format!("{encoding:?} for a text of {gsm:?} septets"))),
                }
                // A longer text never takes fewer segments.
                let longer = segments(&format!("{text}a"));
                prop_assert!(longer.segments >= s.segments);
            }
        }
    }
}
