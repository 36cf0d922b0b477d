//! The header values a trunk leg reads, from their text. Pure: the stack
//! module hands over header values as strings.

use std::time::Duration;

/// Who is calling, as the trunk said.
///
/// The number is kept as sent: a landline `01123456789`, an international
/// `+919812345678`, a short code; it is never forced into a 10-digit mobile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallerId {
    /// The user part of `P-Asserted-Identity` (RFC 3325), else of `From`;
    /// `None` when the caller sent none or `anonymous`.
    pub number: Option<String>,
    /// The display name, if any.
    pub name: Option<String>,
    /// `Privacy: id` (RFC 3323 §4.2, RFC 3325 §9.3) or an anonymous From:
    /// the caller asked that the number not be shown. The number is still
    /// kept when the trunk asserted it: the helpline is inside the trust
    /// domain (RFC 3325 §5), and a callback in an emergency may need it;
    /// consoles must not display it.
    pub withheld: bool,
}

impl CallerId {
    /// Read the caller from the INVITE's headers. `P-Asserted-Identity` is
    /// trusted only because every peer that reaches this code is a
    /// configured trunk (RFC 3325 §2: a trust domain).
    pub fn from_headers(pai: Option<&str>, from: Option<&str>, privacy: Option<&str>) -> CallerId {
        let privacy_id = privacy
            .is_some_and(|p| p.split(';').any(|t| matches!(t.trim().to_ascii_lowercase().as_str(), "id" | "user")));
        let asserted = pai.and_then(parse_name_addr);
        let from = from.and_then(parse_name_addr);
        let (number, name, anonymous) = match (asserted, &from) {
            (Some(a), _) => a,
            (None, Some(f)) => f.clone(),
            (None, None) => (None, None, true),
        };
        let from_anonymous = from.as_ref().is_some_and(|f| f.2);
        CallerId { number, name, withheld: privacy_id || anonymous || (from_anonymous && pai.is_none()) }
    }
}

/// `"Name" <sip:user@host;p>;tag=x` or `<tel:+91…>` or a bare URI: the user
/// part, the display name, and whether it is anonymous (RFC 3323 §4.1.1.3).
fn parse_name_addr(value: &str) -> Option<(Option<String>, Option<String>, bool)> {
    // Several identities may be comma-separated (sip and tel, RFC 3325 §9.1).
    let value = value.trim();
    let (name, uri) = match (value.find('<'), value.find('>')) {
        (Some(l), Some(r)) if l < r => (value[..l].trim(), &value[l + 1..r]),
        _ => ("", value.split(';').next().unwrap_or(value)),
    };
    let name = name.trim_matches('"').trim();
    let name = (!name.is_empty() && !name.eq_ignore_ascii_case("anonymous")).then(|| name.to_owned());
    let uri = uri.trim();
    let user = if let Some(rest) = strip_scheme(uri, "tel:") {
        rest.split(';').next().unwrap_or(rest)
    } else if let Some(rest) = strip_scheme(uri, "sip:").or_else(|| strip_scheme(uri, "sips:")) {
        let user = rest.split_once('@')?.0;
        // A user part may carry user parameters (";isub=…"), and a password.
        let user = user.split(';').next().unwrap_or(user);
        user.split(':').next().unwrap_or(user)
    } else {
        return None;
    };
    let anonymous = user.is_empty()
        || user.eq_ignore_ascii_case("anonymous")
        || uri.to_ascii_lowercase().contains("@anonymous.invalid");
    let number = (!anonymous).then(|| user.to_owned());
    Some((number, name, anonymous))
}

/// The user part of a URI or name-addr (`sip:104@host`, `<tel:+91…>`),
/// `None` when it has none.
pub fn user_of(value: &str) -> Option<String> {
    parse_name_addr(value).and_then(|(number, _, _)| number)
}

fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    uri.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).map(|_| &uri[scheme.len()..])
}

/// A DTMF digit from a SIP INFO body: `application/dtmf-relay`
/// (`Signal=5`, the de facto Cisco format) or `application/dtmf` (the digit
/// alone). Event codes 10 and 11 (RFC 4733 §3.2) are `*` and `#`.
pub fn dtmf_from_info(content_type: &str, body: &str) -> Option<char> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let signal = if ct.eq_ignore_ascii_case("application/dtmf-relay") {
        body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?
    } else if ct.eq_ignore_ascii_case("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    match signal {
        "10" => Some('*'),
        "11" => Some('#'),
        s if s.len() == 1 => {
            let c = s.chars().next()?.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => None,
    }
}

/// A `Session-Expires` value (RFC 4028 §4): `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub interval: Duration,
    /// Whether the caller (the UAC) refreshes; otherwise we would.
    pub refresher_uac: Option<bool>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Option<SessionExpires> {
        let mut parts = value.split(';');
        let secs: u64 = parts.next()?.trim().parse().ok()?;
        let refresher_uac = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("refresher") {
                return None;
            }
            match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(true),
                "uas" => Some(false),
                _ => None,
            }
        });
        Some(SessionExpires { interval: Duration::from_secs(secs), refresher_uac })
    }
}

/// Whether a comma-separated option-tag header (`Supported`, `Require`)
/// lists `tag`.
pub fn lists_tag(value: &str, tag: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_id_table() {
        // (P-Asserted-Identity, From, Privacy) and the caller they make.
        type Row = (Option<&'static str>, Option<&'static str>, Option<&'static str>, CallerId);
        let table: [Row; 6] = [
            (
                Some("<sip:+919812345678@carrier.example;user=phone>"),
                Some("<sip:0000@10.0.0.1>;tag=1"),
                None,
                CallerId { number: Some("+919812345678".into()), name: None, withheld: false },
            ),
            (
                None,
                Some("\"Delhi Office\" <sip:01123456789@10.0.0.1>;tag=9"),
                None,
                CallerId { number: Some("01123456789".into()), name: Some("Delhi Office".into()), withheld: false },
            ),
            (
                Some("<tel:+911123456789;phone-context=+91>"),
                Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=2"),
                Some("id"),
                CallerId { number: Some("+911123456789".into()), name: None, withheld: true },
            ),
            (
                None,
                Some("<sip:anonymous@anonymous.invalid>;tag=3"),
                None,
                CallerId { number: None, name: None, withheld: true },
            ),
            (
                None,
                Some("sip:108@10.0.0.1;tag=4"),
                Some("header; id"),
                CallerId { number: Some("108".into()), name: None, withheld: true },
            ),
            (None, None, None, CallerId { number: None, name: None, withheld: true }),
        ];
        for (pai, from, privacy, want) in table {
            assert_eq!(CallerId::from_headers(pai, from, privacy), want, "{from:?}");
        }
    }

    #[test]
    fn dtmf_bodies() {
        assert_eq!(dtmf_from_info("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(dtmf_from_info("application/dtmf-relay", "Signal= 11\r\n"), Some('#'));
        assert_eq!(dtmf_from_info("application/dtmf", "*"), Some('*'));
        assert_eq!(dtmf_from_info("application/dtmf", "x"), None);
        assert_eq!(dtmf_from_info("text/plain", "5"), None);
    }

    #[test]
    fn session_expires() {
        assert_eq!(
            SessionExpires::parse("1800;refresher=uac"),
            Some(SessionExpires { interval: Duration::from_secs(1800), refresher_uac: Some(true) })
        );
        assert_eq!(SessionExpires::parse("90").unwrap().refresher_uac, None);
        assert_eq!(SessionExpires::parse("x"), None);
        assert!(lists_tag("100rel, timer", "timer"));
        assert!(!lists_tag("100rel", "timer"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A display name as trunks send them: letters and inner spaces,
        /// never the word that means "withheld".
        fn display_name() -> impl Strategy<Value = String> {
            "[A-Za-z][A-Za-z .]{0,14}[A-Za-z]"
                .prop_filter("anonymous is a withheld name", |n| !n.trim().eq_ignore_ascii_case("anonymous"))
        }

        /// An identity header carrying `number` (and `name`): a SIP or tel
        /// URI, bracketed or bare, with the parameters carriers add.
        fn identity(number: &str, name: Option<&str>, host: &str, form: u8) -> String {
            let display = name.map(|n| format!("\"{n}\" ")).unwrap_or_default();
            match form % 4 {
                0 => format!("{display}<sip:{number}@{host};user=phone>;tag=a1"),
                1 => format!("{display}<tel:{number};phone-context=+91>"),
                2 => format!("{display}<sips:{number};isub=7@{host}:5061>"),
                _ => format!("sip:{number}@{host};tag=b2"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_header_values_never_panic(
                pai in proptest::option::of(any::<String>()),
                from in proptest::option::of(any::<String>()),
                privacy in proptest::option::of(any::<String>()),
                content_type in any::<String>(),
                body in any::<String>(),
            ) {
                let id = CallerId::from_headers(pai.as_deref(), from.as_deref(), privacy.as_deref());
                // No number is the same as a withheld one.
                prop_assert!(id.number.is_some() || id.withheld);
                let _ = user_of(&body);
                let _ = SessionExpires::parse(&body);
                let _ = lists_tag(&content_type, &body);
                if let Some(key) = dtmf_from_info(&content_type, &body) {
                    prop_assert!("0123456789*#ABCD".contains(key), "{key:?}");
                }
            }

            /// Text shaped like the headers (angle brackets, schemes, `@`,
            /// `;`) reaches the branches that arbitrary text rarely does.
            #[test]
            fn header_shaped_values_never_panic(
                value in "[\"<>a-zA-Z0-9:@;=+. ]{0,40}",
                other in "(sips?|tel):[a-z0-9@;=+<>\" ]{0,30}",
            ) {
                let _ = CallerId::from_headers(Some(&value), Some(&other), Some(&value));
                let _ = CallerId::from_headers(None, Some(&value), None);
                let _ = user_of(&other);
                let _ = SessionExpires::parse(&value);
                let _ = dtmf_from_info("application/dtmf-relay", &value);
            }

            #[test]
            fn an_asserted_identity_gives_its_number_and_name(
                number in "\\+?[0-9]{3,15}",
                name in proptest::option::of(display_name()),
                host in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,2}",
                form in any::<u8>(),
                from_form in any::<u8>(),
            ) {
                let pai = identity(&number, name.as_deref(), &host, form);
                // The tel form and a bare URI carry no display name.
                let name = name.filter(|_| form % 4 != 3);
                let from = identity("0000", None, "10.0.0.1", from_form);
                let want = CallerId { number: Some(number.clone()), name: name.clone(), withheld: false };
                prop_assert_eq!(CallerId::from_headers(Some(&pai), Some(&from), None), want.clone());
                // Without an asserted identity, From says the same.
                prop_assert_eq!(CallerId::from_headers(None, Some(&pai), None), want);
                prop_assert_eq!(user_of(&pai), Some(number.clone()));
                // RFC 3323 Privacy: id withholds it, whatever the case and other values.
                let id = CallerId::from_headers(Some(&pai), None, Some("header; ID "));
                prop_assert_eq!(id, CallerId { number: Some(number), name, withheld: true });
            }

            #[test]
            fn a_session_expires_value_round_trips(
                secs in any::<u64>(),
                refresher in proptest::option::of(any::<bool>()),
                upper in any::<bool>(),
                spaced in any::<bool>(),
            ) {
                let sep = if spaced { " ; " } else { ";" };
                let mut value = secs.to_string();
                if let Some(uac) = refresher {
                    let r = if uac { "refresher=uac" } else { "refresher=uas" };
                    value += sep;
                    value += &if upper { r.to_ascii_uppercase() } else { r.to_owned() };
                }
                // Other parameters (RFC 4028 allows extensions) do not change it.
                value += ";x-vendor=1";
                let want = SessionExpires { interval: Duration::from_secs(secs), refresher_uac: refresher };
                prop_assert_eq!(SessionExpires::parse(&value), Some(want));
                prop_assert_eq!(SessionExpires::parse(&format!("-{value}")), None);
            }

            #[test]
            fn an_info_key_round_trips(
                key in proptest::sample::select("0123456789*#ABCDabcd".chars().collect::<Vec<_>>()),
                duration in 0u32..10_000,
                as_event in any::<bool>(),
            ) {
                let want = Some(key.to_ascii_uppercase());
                // RFC 4733 §3.2 codes 10 and 11, as some gear writes * and #.
                let signal = match key {
                    '*' if as_event => "10".to_owned(),
                    '#' if as_event => "11".to_owned(),
                    k => k.to_string(),
                };
                let relay = format!("Signal= {signal}\r\nDuration={duration}\r\n");
                prop_assert_eq!(dtmf_from_info("application/dtmf-relay", &relay), want);
                prop_assert_eq!(dtmf_from_info("Application/DTMF-Relay; charset=utf-8", &relay), want);
                prop_assert_eq!(dtmf_from_info("application/dtmf", &format!(" {key}\r\n")), want);
                prop_assert_eq!(dtmf_from_info("text/plain", &relay), None);
            }
        }
    }
}
