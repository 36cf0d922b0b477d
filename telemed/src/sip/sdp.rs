//! SDP offer/answer for a G.711 phone leg (RFC 4566, RFC 3264). Pure.
//!
//! A trunk offers one audio stream (sometimes with video or T.38 m-lines we
//! refuse); we answer PCMA or PCMU, in the offer's order of preference
//! (RFC 3264 §6.1: the answerer SHOULD keep the offerer's order), plus
//! `telephone-event` (RFC 4733) when offered, under the offer's payload type
//! number. Hold arrives as a new offer with `sendonly`/`inactive` (RFC 3264
//! §8.4) or, from older gear, `c=0.0.0.0` (RFC 2543).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What we can answer, named the way a 488's `Warning` header lists it.
pub const SUPPORTED: &str = "PCMA/8000 PCMU/8000 telephone-event/8000";

/// The packet time we send when the offer names none (RFC 3551 §4.5: G.711
/// defaults to 20 ms frames).
pub const DEFAULT_PTIME_MS: u32 = 20;

/// Why an SDP body cannot be used. Every variant maps to a SIP answer: the
/// UAS sends 488 Not Acceptable Here for [`SdpError::NoCommonCodec`] and
/// [`SdpError::NoAudio`], 400 for the rest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP line {line}: {reason}")]
    BadLine { line: usize, reason: &'static str },
    #[error("SDP has no c= connection address for the audio stream")]
    NoConnection,
    #[error("SDP offers no audio stream")]
    NoAudio,
    #[error("no supported codec offered (offered: {offered}); supported: {SUPPORTED}")]
    NoCommonCodec { offered: String },
}

impl SdpError {
    /// Whether a 488 (the media is the problem, RFC 3261 §21.4.26) rather
    /// than a 400 (the body is broken) answers this.
    pub fn is_not_acceptable(&self) -> bool {
        matches!(self, SdpError::NoCommonCodec { .. } | SdpError::NoAudio)
    }
}

/// The media direction attribute (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction of the answer to an offer with this direction
    /// (RFC 3264 §6.1): sendonly is answered recvonly and the reverse.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the caller stopped sending to us: a hold (RFC 3264 §8.4).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// One payload format of an m-line with its rtpmap and fmtp, if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub payload_type: u8,
    /// `PCMA`, `telephone-event`… from `a=rtpmap`; `None` for a static type
    /// given without one (RFC 3551 Table 4 then says what it is).
    pub encoding: Option<String>,
    pub clock_rate: Option<u32>,
    pub fmtp: Option<String>,
}

impl Format {
    fn name(&self) -> String {
        match (&self.encoding, self.clock_rate) {
            (Some(e), Some(r)) => format!("{e}/{r}"),
            (Some(e), None) => e.clone(),
            (None, _) => match self.payload_type {
                0 => "PCMU/8000".into(),
                8 => "PCMA/8000".into(),
                18 => "G729/8000".into(),
                pt => format!("PT {pt}"),
            },
        }
    }

    fn is(&self, encoding: &str, static_pt: Option<u8>) -> bool {
        match &self.encoding {
            Some(e) => e.eq_ignore_ascii_case(encoding) && self.clock_rate.is_none_or(|r| r == 8000),
            None => static_pt == Some(self.payload_type),
        }
    }
}

/// One m-line of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `image`…
    pub kind: String,
    pub port: u16,
    /// `RTP/AVP` from a trunk; kept to echo in the answer.
    pub proto: String,
    /// The format tokens as written, for refusing non-audio lines.
    pub format_tokens: Vec<String>,
    pub formats: Vec<Format>,
    /// The media-level c= address, else the session-level one.
    pub connection: Option<IpAddr>,
    pub ptime: Option<u32>,
    pub direction: Direction,
}

/// The parts of an SDP body the answer depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub media: Vec<Media>,
}

/// A G.711 codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 A-law, static payload type 8: what Indian (and European) trunks carry.
    Pcma,
    /// G.711 µ-law, static payload type 0.
    Pcmu,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcma => 8,
            Codec::Pcmu => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcma => "PCMA",
            Codec::Pcmu => "PCMU",
        }
    }
}

/// What the offer and our capabilities agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// The offer's payload type for RFC 4733 `telephone-event`, if offered.
    pub telephone_event: Option<u8>,
    pub ptime_ms: u32,
    /// Where the caller wants its RTP, from c= and m= (symmetric RTP may
    /// move it once packets arrive).
    pub remote: SocketAddr,
    /// The offer's direction; `Inactive` too for a `c=0.0.0.0` hold.
    pub direction: Direction,
    /// Which m-line is the audio one, so the answer keeps the order.
    media_index: usize,
    /// The offer's m-lines as (kind, proto, first format), to refuse the
    /// others with port 0 (RFC 3264 §6: as many m-lines as the offer).
    refused: Vec<(String, String, String)>,
}

/// Parse an SDP body. Never panics, whatever the bytes.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut session_connection = None;
    let mut session_direction = Direction::SendRecv;
    let mut media: Vec<Media> = Vec::new();
    let mut saw_version = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.is_empty() {
            continue;
        }
        let bad = |reason| SdpError::BadLine { line, reason };
        let (kind, value) = raw.split_once('=').filter(|(k, _)| k.len() == 1).ok_or(bad("not <type>=<value>"))?;
        match kind {
            "v" => {
                if value != "0" {
                    return Err(bad("v= is not 0"));
                }
                saw_version = true;
            }
            "c" => {
                let addr = parse_connection(value).ok_or(bad("bad c= line"))?;
                match media.last_mut() {
                    Some(m) => m.connection = Some(addr),
                    None => session_connection = Some(addr),
                }
            }
            "m" => {
                let mut parts = value.split_ascii_whitespace();
                let kind = parts.next().ok_or(bad("empty m= line"))?;
                let port = parts.next().ok_or(bad("m= without a port"))?;
                // "49170/2" is a port count (RFC 4566 §5.14); one stream is enough.
                let port = port.split('/').next().unwrap_or(port);
                let port: u16 = port.parse().map_err(|_| bad("bad m= port"))?;
                let proto = parts.next().ok_or(bad("m= without a protocol"))?;
                let format_tokens: Vec<String> = parts.map(str::to_owned).collect();
                if format_tokens.is_empty() {
                    return Err(bad("m= without formats"));
                }
                let formats = if proto.starts_with("RTP/") {
                    format_tokens
                        .iter()
                        .map(|t| {
                            t.parse::<u8>()
                                .ok()
                                .filter(|pt| *pt < 128)
                                .map(|payload_type| Format {
                                    payload_type,
                                    encoding: None,
                                    clock_rate: None,
                                    fmtp: None,
                                })
                                .ok_or(bad("RTP format is not a payload type"))
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                media.push(Media {
                    kind: kind.to_owned(),
                    port,
                    proto: proto.to_owned(),
                    format_tokens,
                    formats,
                    connection: None,
                    ptime: None,
                    direction: session_direction,
                });
            }
            "a" => {
                let (name, arg) = match value.split_once(':') {
                    Some((n, a)) => (n, Some(a)),
                    None => (value, None),
                };
                let direction = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                let Some(m) = media.last_mut() else {
                    if let Some(d) = direction {
                        session_direction = d;
                    }
                    continue;
                };
                if let Some(d) = direction {
                    m.direction = d;
                    continue;
                }
                match (name, arg) {
                    ("rtpmap", Some(arg)) => {
                        let (pt, rest) = arg.split_once(' ').ok_or(bad("bad rtpmap"))?;
                        let pt: u8 = pt.parse().map_err(|_| bad("bad rtpmap payload type"))?;
                        let mut enc = rest.trim().split('/');
                        let name = enc.next().unwrap_or_default();
                        let rate = enc.next().map(str::parse::<u32>).transpose();
                        let rate = rate.map_err(|_| bad("bad rtpmap clock rate"))?;
                        if let Some(f) = m.formats.iter_mut().find(|f| f.payload_type == pt) {
                            f.encoding = Some(name.to_owned());
                            f.clock_rate = rate;
                        }
                    }
                    ("fmtp", Some(arg)) => {
                        let (pt, rest) = arg.split_once(' ').ok_or(bad("bad fmtp"))?;
                        let pt: u8 = pt.parse().map_err(|_| bad("bad fmtp payload type"))?;
                        if let Some(f) = m.formats.iter_mut().find(|f| f.payload_type == pt) {
                            f.fmtp = Some(rest.trim().to_owned());
                        }
                    }
                    ("ptime", Some(arg)) => {
                        m.ptime = Some(arg.trim().parse().map_err(|_| bad("bad ptime"))?);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(SdpError::BadLine { line: 1, reason: "no v= line" });
    }
    for m in &mut media {
        if m.connection.is_none() {
            m.connection = session_connection;
        }
    }
    Ok(SessionDescription { media })
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_ascii_whitespace();
    if parts.next()? != "IN" {
        return None;
    }
    let family = parts.next()?;
    // A multicast address may carry "/ttl"; a trunk never sends one, but it parses.
    let addr = parts.next()?.split('/').next()?;
    match family {
        "IP4" => addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => addr.parse().ok().map(IpAddr::V6),
        _ => None,
    }
}

/// Choose the codec and telephone-event from an offer (RFC 3264 §6.1).
pub fn negotiate(offer: &SessionDescription) -> Result<Negotiated, SdpError> {
    negotiate_keeping(offer, None)
}

/// As [`negotiate`], but keep `current` when a new offer in the dialog
/// still has it (RFC 3264 §8: a re-offer need not change the codec, and
/// the application decodes the one it was told).
pub fn negotiate_keeping(offer: &SessionDescription, current: Option<Codec>) -> Result<Negotiated, SdpError> {
    let (media_index, audio) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == "audio" && m.port != 0 && m.proto.starts_with("RTP/"))
        .ok_or(SdpError::NoAudio)?;
    let keep = current.filter(|c| audio.formats.iter().any(|f| f.is(c.name(), Some(c.payload_type()))));
    let codec = keep
        .or_else(|| {
            audio.formats.iter().find_map(|f| {
                if f.is("PCMA", Some(8)) {
                    Some(Codec::Pcma)
                } else if f.is("PCMU", Some(0)) {
                    Some(Codec::Pcmu)
                } else {
                    None
                }
            })
        })
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: audio.formats.iter().map(Format::name).collect::<Vec<_>>().join(" "),
        })?;
    let telephone_event = audio.formats.iter().find(|f| f.is("telephone-event", None)).map(|f| f.payload_type);
    let ip = audio.connection.ok_or(SdpError::NoConnection)?;
    // RFC 2543 hold: a zero address means "do not send to me".
    let direction = if ip.is_unspecified() { Direction::Inactive } else { audio.direction };
    Ok(Negotiated {
        codec,
        telephone_event,
        ptime_ms: audio.ptime.filter(|p| (10..=60).contains(p)).unwrap_or(DEFAULT_PTIME_MS),
        remote: SocketAddr::new(ip, audio.port),
        direction,
        media_index,
        refused: offer
            .media
            .iter()
            .map(|m| (m.kind.clone(), m.proto.clone(), m.format_tokens.first().cloned().unwrap_or_default()))
            .collect(),
    })
}

/// The `o=` values of our answers: one session id per leg, and a version
/// that goes up when the answer changes (RFC 3264 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub session_id: u64,
    pub version: u64,
}

/// Build the answer to a negotiated offer with our RTP address.
pub fn answer(neg: &Negotiated, local: SocketAddr, origin: Origin) -> String {
    let family = if local.is_ipv4() { "IP4" } else { "IP6" };
    let ip = local.ip();
    let mut out = String::new();
    out += &format!(
        "v=0\r\no=careline {} {} IN {family} {ip}\r\ns=careline\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        origin.session_id, origin.version
    );
    for (index, (kind, proto, first)) in neg.refused.iter().enumerate() {
        if index != neg.media_index {
            out += &format!("m={kind} 0 {proto} {first}\r\n");
            continue;
        }
        let pt = neg.codec.payload_type();
        out += &format!("m=audio {} RTP/AVP {pt}", local.port());
        if let Some(te) = neg.telephone_event {
            out += &format!(" {te}");
        }
        out += &format!("\r\na=rtpmap:{pt} {}/8000\r\n", neg.codec.name());
        if let Some(te) = neg.telephone_event {
            out += &format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n");
        }
        out += &format!("a=ptime:{}\r\na={}\r\n", neg.ptime_ms, neg.direction.answer().attribute());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\r\ns=-\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\n\
        m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

    fn neg(body: &str) -> Result<Negotiated, SdpError> {
        negotiate(&parse(body.as_bytes())?)
    }

    #[test]
    fn pcma_with_telephone_event_in_the_offers_order() {
        let n = neg(OFFER).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "10.1.1.1:40000".parse::<SocketAddr>().unwrap());
        assert_eq!(n.direction, Direction::SendRecv);
        let pcmu_first = OFFER.replace("8 0 101", "0 8 101");
        assert_eq!(neg(&pcmu_first).unwrap().codec, Codec::Pcmu);
    }

    #[test]
    fn static_types_without_rtpmap_and_session_level_direction() {
        let body = "v=0\r\nc=IN IP4 192.0.2.7\r\na=sendonly\r\nm=audio 5004 RTP/AVP 18 0\r\n";
        let n = neg(body).unwrap();
        assert_eq!((n.codec, n.telephone_event), (Codec::Pcmu, None));
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.ptime_ms, DEFAULT_PTIME_MS);
    }

    #[test]
    fn the_answer_has_our_port_the_codec_and_the_offers_event_type() {
        let n = neg(OFFER).unwrap();
        let origin = Origin { session_id: 7, version: 1 };
        let a = answer(&n, "127.0.0.1:30000".parse().unwrap(), origin);
        assert_eq!(
            a,
            "v=0\r\no=careline 7 1 IN IP4 127.0.0.1\r\ns=careline\r\nc=IN IP4 127.0.0.1\r\n\
             t=0 0\r\nm=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        );
        // Our own answer parses back to the same choice.
        let back = neg(&a).unwrap();
        assert_eq!((back.codec, back.telephone_event), (Codec::Pcma, Some(101)));
    }

    #[test]
    fn hold_offers_are_answered_with_the_reverse_direction() {
        for (attr, hold, answered) in [
            ("sendonly", Direction::SendOnly, "recvonly"),
            ("inactive", Direction::Inactive, "inactive"),
            ("recvonly", Direction::RecvOnly, "sendonly"),
        ] {
            let n = neg(&OFFER.replace("sendrecv", attr)).unwrap();
            assert_eq!(n.direction, hold);
            let origin = Origin { session_id: 1, version: 2 };
            let a = answer(&n, "127.0.0.1:30000".parse().unwrap(), origin);
            assert!(a.ends_with(&format!("a={answered}\r\n")), "{a}");
        }
        let legacy = OFFER.replace("c=IN IP4 10.1.1.1", "c=IN IP4 0.0.0.0");
        assert!(neg(&legacy).unwrap().direction.is_hold());
    }

    #[test]
    fn other_media_lines_are_refused_with_port_zero_in_order() {
        let body = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4000 RTP/AVP 31\r\n\
                    m=audio 4002 RTP/AVP 0\r\nm=image 4004 udptl t38\r\n";
        let n = neg(body).unwrap();
        let origin = Origin { session_id: 1, version: 1 };
        let a = answer(&n, "10.0.0.9:30000".parse().unwrap(), origin);
        let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m_lines, ["m=video 0 RTP/AVP 31", "m=audio 30000 RTP/AVP 0", "m=image 0 udptl t38"]);
    }

    #[test]
    fn a_re_offer_keeps_the_current_codec() {
        let sd = parse(OFFER.as_bytes()).unwrap();
        assert_eq!(negotiate_keeping(&sd, Some(Codec::Pcmu)).unwrap().codec, Codec::Pcmu);
        let pcma_only = OFFER.replace("8 0 101", "8 101");
        let sd = parse(pcma_only.as_bytes()).unwrap();
        assert_eq!(negotiate_keeping(&sd, Some(Codec::Pcmu)).unwrap().codec, Codec::Pcma);
    }

    #[test]
    fn g729_only_names_what_is_supported() {
        let body = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let err = neg(body).unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec { offered: "G729/8000".into() });
        assert!(err.is_not_acceptable());
        assert!(err.to_string().contains(SUPPORTED));
        // A wideband PCMA (not 8 kHz) is not G.711 either.
        let wide = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMA/16000\r\n";
        assert!(matches!(neg(wide), Err(SdpError::NoCommonCodec { .. })));
    }

    #[test]
    fn broken_bodies_are_errors() {
        assert_eq!(parse(b"\xff\xfe"), Err(SdpError::NotUtf8));
        assert!(matches!(parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n"), Err(SdpError::BadLine { line: 2, .. })));
        assert!(matches!(parse(b"hello"), Err(SdpError::BadLine { .. })));
        assert_eq!(neg("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), Err(SdpError::NoConnection));
        assert_eq!(neg("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n"), Err(SdpError::NoAudio));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A xorshift generator: deterministic, so a failure reproduces.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"vocmat=/ :\r\n0123456789INIP4.RTP/AVPrtpmapfmtpsendonly";
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 { r as u8 } else { alphabet[(r >> 8) as usize % alphabet.len()] }
                })
                .collect();
            if let Ok(sd) = parse(&bytes) {
                let _ = negotiate(&sd);
            }
        }
        // Mutations of a good offer reach the deeper branches.
        for _ in 0..20_000 {
            let mut bytes = OFFER.as_bytes().to_vec();
            for _ in 0..3 {
                let i = (next() as usize) % bytes.len();
                bytes[i] = alphabet[(next() as usize) % alphabet.len()];
            }
            if let Ok(sd) = parse(&bytes) {
                let _ = negotiate(&sd);
            }
        }
    }

    mod properties {
        use std::net::{Ipv6Addr, SocketAddrV4};

        use proptest::prelude::*;

        use super::*;

        /// One payload format as a generator builds it, with the lines that say it.
        #[derive(Debug, Clone)]
        struct GenFormat {
            payload_type: u8,
            rtpmap: Option<(String, Option<u32>)>,
            fmtp: Option<String>,
        }

        #[derive(Debug, Clone)]
        struct GenMedia {
            kind: &'static str,
            port: u16,
            port_count: Option<u8>,
            formats: Vec<GenFormat>,
            connection: Option<IpAddr>,
            ptime: Option<u32>,
            direction: Option<Direction>,
        }

        #[derive(Debug, Clone)]
        struct GenOffer {
            connection: Option<IpAddr>,
            direction: Option<Direction>,
            media: Vec<GenMedia>,
        }

        fn direction() -> impl Strategy<Value = Direction> {
            prop_oneof![
                Just(Direction::SendRecv),
                Just(Direction::SendOnly),
                Just(Direction::RecvOnly),
                Just(Direction::Inactive),
            ]
        }

        fn address() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<Ipv4Addr>().prop_map(IpAddr::V4),
                any::<Ipv6Addr>().prop_map(IpAddr::V6),
                // The RFC 2543 hold address.
                Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ]
        }

        fn formats() -> impl Strategy<Value = Vec<GenFormat>> {
            // Distinct payload types: an rtpmap names one format.
            let types = proptest::sample::subsequence((0u8..128).collect::<Vec<_>>(), 1..5).prop_shuffle();
            types.prop_flat_map(|types| {
                let n = types.len();
                let encoding = prop_oneof![
                    Just("PCMA"),
                    Just("PCMU"),
                    Just("pcmu"),
                    Just("telephone-event"),
                    Just("G729"),
                    Just("opus"),
                ];
                let rate = proptest::option::of(prop_oneof![Just(8000u32), Just(16000), Just(48000)]);
                let rtpmap = proptest::option::of((encoding.prop_map(str::to_owned), rate));
                let fmtp = proptest::option::of("[!-~]{1,12}");
                (Just(types), proptest::collection::vec((rtpmap, fmtp), n)).prop_map(|(types, extra)| {
                    types
                        .into_iter()
                        .zip(extra)
                        .map(|(payload_type, (rtpmap, fmtp))| GenFormat { payload_type, rtpmap, fmtp })
                        .collect()
                })
            })
        }

        fn media() -> impl Strategy<Value = GenMedia> {
            (
                prop_oneof![3 => Just("audio"), 1 => Just("video"), 1 => Just("image")],
                any::<u16>(),
                proptest::option::of(1u8..4),
                formats(),
                proptest::option::of(address()),
                proptest::option::of(any::<u32>()),
                proptest::option::of(direction()),
            )
                .prop_map(|(kind, port, port_count, formats, connection, ptime, direction)| GenMedia {
                    kind,
                    port,
                    port_count,
                    formats,
                    connection,
                    ptime,
                    direction,
                })
        }

        fn offer() -> impl Strategy<Value = GenOffer> {
            (
                proptest::option::of(address()),
                proptest::option::of(direction()),
                proptest::collection::vec(media(), 1..4),
            )
                .prop_map(|(connection, direction, media)| GenOffer { connection, direction, media })
        }

        fn connection_line(ip: IpAddr) -> String {
            match ip {
                IpAddr::V4(v4) => format!("c=IN IP4 {v4}\r\n"),
                IpAddr::V6(v6) => format!("c=IN IP6 {v6}\r\n"),
            }
        }

        /// The SDP text of a generated offer, lines in RFC 4566 §5's order.
        fn render(o: &GenOffer) -> String {
            let mut out = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n");
            if let Some(ip) = o.connection {
                out += &connection_line(ip);
            }
            out += "t=0 0\r\n";
            if let Some(d) = o.direction {
                out += &format!("a={}\r\n", d.attribute());
            }
            for m in &o.media {
                let port = match m.port_count {
                    Some(n) => format!("{}/{n}", m.port),
                    None => m.port.to_string(),
                };
                if m.kind == "image" {
                    out += &format!("m=image {port} udptl t38\r\n");
                } else {
                    let pts: Vec<String> = m.formats.iter().map(|f| f.payload_type.to_string()).collect();
                    out += &format!("m={} {port} RTP/AVP {}\r\n", m.kind, pts.join(" "));
                }
                if let Some(ip) = m.connection {
                    out += &connection_line(ip);
                }
                if m.kind != "image" {
                    for f in &m.formats {
                        match &f.rtpmap {
                            Some((name, Some(rate))) => {
                                out += &format!("a=rtpmap:{} {name}/{rate}\r\n", f.payload_type)
                            }
                            Some((name, None)) => out += &format!("a=rtpmap:{} {name}\r\n", f.payload_type),
                            None => {}
                        }
                        if let Some(fmtp) = &f.fmtp {
                            out += &format!("a=fmtp:{} {fmtp}\r\n", f.payload_type);
                        }
                    }
                }
                if let Some(p) = m.ptime {
                    out += &format!("a=ptime:{p}\r\n");
                }
                if let Some(d) = m.direction {
                    out += &format!("a={}\r\n", d.attribute());
                }
            }
            out
        }

        /// What parsing the rendered offer must give: written out from the
        /// generated parts, not from the parser's own rules.
        fn expected(o: &GenOffer) -> SessionDescription {
            let media = o
                .media
                .iter()
                .map(|m| {
                    let rtp = m.kind != "image";
                    Media {
                        kind: m.kind.to_owned(),
                        port: m.port,
                        proto: if rtp { "RTP/AVP" } else { "udptl" }.to_owned(),
                        format_tokens: if rtp {
                            m.formats.iter().map(|f| f.payload_type.to_string()).collect()
                        } else {
                            vec!["t38".to_owned()]
                        },
                        formats: if rtp {
                            m.formats
                                .iter()
                                .map(|f| Format {
                                    payload_type: f.payload_type,
                                    encoding: f.rtpmap.as_ref().map(|(n, _)| n.clone()),
                                    clock_rate: f.rtpmap.as_ref().and_then(|(_, r)| *r),
                                    fmtp: f.fmtp.clone(),
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                        connection: m.connection.or(o.connection),
                        ptime: m.ptime,
                        direction: m.direction.or(o.direction).unwrap_or_default(),
                    }
                })
                .collect();
            SessionDescription { media }
        }

        /// The G.711 codec a format is, by RFC 3551: an 8 kHz (or unstated
        /// rate) rtpmap name, else the static payload type.
        fn g711(f: &Format) -> Option<Codec> {
            match (&f.encoding, f.clock_rate) {
                (Some(e), None | Some(8000)) if e.eq_ignore_ascii_case("PCMA") => Some(Codec::Pcma),
                (Some(e), None | Some(8000)) if e.eq_ignore_ascii_case("PCMU") => Some(Codec::Pcmu),
                (Some(_), _) => None,
                (None, _) => match f.payload_type {
                    8 => Some(Codec::Pcma),
                    0 => Some(Codec::Pcmu),
                    _ => None,
                },
            }
        }

        /// Negotiating `sd` either agrees on the offer's first G.711 format
        /// and answers with it (an answer that negotiates back to the same
        /// choice), or is refused with the error that says why.
        fn check_negotiation(sd: &SessionDescription) -> Result<(), TestCaseError> {
            let audio = sd.media.iter().find(|m| m.kind == "audio" && m.port != 0 && m.proto.starts_with("RTP/"));
            match negotiate(sd) {
                Ok(n) => {
                    let audio = audio.ok_or_else(|| TestCaseError::fail("negotiated without an audio stream"))?;
                    prop_assert_eq!(Some(n.codec), audio.formats.iter().find_map(g711));
                    prop_assert_eq!(Some(n.remote.port()), Some(audio.port));
                    // An offered ptime outside 10–60 ms is not one a G.711 leg sends.
                    let ptime = audio.ptime.filter(|p| (10..=60).contains(p)).unwrap_or(DEFAULT_PTIME_MS);
                    prop_assert_eq!(n.ptime_ms, ptime);
                    let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 30000));
                    let a = answer(&n, local, Origin { session_id: 1, version: 1 });
                    let back = parse(a.as_bytes()).map_err(|e| TestCaseError::fail(format!("our answer: {e}\n{a}")))?;
                    // RFC 3264 §6: as many m-lines as the offer, in its order.
                    prop_assert_eq!(back.media.len(), sd.media.len());
                    let again = negotiate(&back).map_err(|e| TestCaseError::fail(format!("our answer: {e}\n{a}")))?;
                    prop_assert_eq!((again.codec, again.telephone_event), (n.codec, n.telephone_event));
                    prop_assert_eq!(again.direction, n.direction.answer());
                }
                Err(e @ SdpError::NoCommonCodec { .. }) => {
                    let audio = audio.ok_or_else(|| TestCaseError::fail("NoCommonCodec without an audio stream"))?;
                    prop_assert!(audio.formats.iter().all(|f| g711(f).is_none()), "{audio:?}");
                    prop_assert!(e.to_string().contains(SUPPORTED), "{e}");
                    prop_assert!(e.is_not_acceptable());
                }
                Err(SdpError::NoAudio) => prop_assert!(audio.is_none()),
                Err(SdpError::NoConnection) => {
                    let audio = audio.ok_or_else(|| TestCaseError::fail("NoConnection without an audio stream"))?;
                    prop_assert!(audio.connection.is_none());
                    prop_assert!(audio.formats.iter().any(|f| g711(f).is_some()));
                }
                Err(e) => return Err(TestCaseError::fail(format!("negotiate gave a parse error: {e}"))),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(sd) = parse(&body) {
                    check_negotiation(&sd)?;
                }
            }

            /// Lines that look like SDP, in any order and with any values,
            /// reach the deeper branches that random bytes rarely do.
            #[test]
            fn sdp_like_lines_never_panic(
                lines in proptest::collection::vec(
                    ("[vcmaost]", "(IN IP[46] )?[0-9a-fA-F.:/ ]{0,20}|(rtpmap|fmtp|ptime):[0-9]{0,4} ?[A-Za-z0-9/-]{0,12}|(audio|video) [0-9/]{0,7} (RTP/AVP|udptl)( [0-9]{1,3}){0,4}|sendonly|inactive"),
                    0..12,
                ),
            ) {
                let body: String = std::iter::once("v=0".to_owned())
                    .chain(lines.iter().map(|(k, v)| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join("\r\n");
                if let Ok(sd) = parse(body.as_bytes()) {
                    check_negotiation(&sd)?;
                }
            }

            #[test]
            fn a_built_offer_parses_back_to_its_parts(o in offer()) {
                let text = render(&o);
                let sd = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                prop_assert_eq!(&sd, &expected(&o), "{}", text);
                check_negotiation(&sd)?;
            }
        }
    }
}
