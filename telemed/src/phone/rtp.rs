//! RTP packets of a phone leg (RFC 3550 §5.1), on `rtc::rtp`.
//!
//! webrtc-rs's sans-IO RTP (`rtc` is already a dependency, for the SFU)
//! parses the fixed header, CSRCs, RFC 8285 extensions and padding, and
//! builds packets; we use its [`Packet`] and [`Header`] rather than a second
//! parser. What it leaves out, and a trunk's datagrams need, is added
//! here: packets that are not version 2 (STUN or stray traffic on the port)
//! and a padding count of zero (§5.1: the count includes itself) are
//! errors, and building never emits padding (G.711 needs none).

pub use rtc::rtp::header::Header;
pub use rtc::rtp::packet::Packet;
use rtc::shared::marshal::{Marshal, Unmarshal};

/// A datagram that is not an RTP packet we can use.
#[derive(Debug, thiserror::Error)]
pub enum RtpError {
    /// RFC 3550 §5.1: V is 2. Anything else on an RTP port is another
    /// protocol (RFC 7983 demultiplexes STUN, DTLS and RTP on the first
    /// octet).
    #[error("RTP version {0}; RFC 3550 §5.1 defines 2")]
    Version(u8),
    /// RFC 3550 §5.1: the last padding octet counts the padding, itself
    /// included, so it is at least 1.
    #[error("RTP padding count of 0; RFC 3550 §5.1 counts the count octet")]
    Padding,
    /// Building a packet with the padding bit set: never needed here.
    #[error("refusing to build a padded RTP packet")]
    PaddingRequested,
    /// Building with a payload type that does not fit its 7 bits: the
    /// eighth would be written over the marker bit.
    #[error("RTP payload type {0}; RFC 3550 §5.1 has 7 bits (0–127)")]
    PayloadType(u8),
    /// Building with more CSRCs than CC's 4 bits count: the count would
    /// spill into the extension and padding bits.
    #[error("{0} CSRCs; RFC 3550 §5.1 allows at most 15")]
    Csrcs(usize),
    /// Too short for its header, CSRC list, extension or padding.
    #[error("malformed RTP packet: {0}")]
    Malformed(#[from] rtc::shared::error::Error),
}

/// Whether a datagram on the RTP port is RTCP (RFC 5761 §4: packet types
/// 192–223 occupy the second octet where RTP has marker and payload type).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// Parses one datagram as an RTP packet. The payload excludes padding.
pub fn parse(datagram: &[u8]) -> Result<Packet, RtpError> {
    if let Some(&first) = datagram.first() {
        let version = first >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padded = first & 0x20 != 0;
        if padded && datagram.last() == Some(&0) {
            return Err(RtpError::Padding);
        }
    }
    let mut buf = datagram;
    Ok(Packet::unmarshal(&mut buf)?)
}

/// Builds a datagram from a header and a payload. The header's version is
/// written as 2 whatever it holds; a padded header is refused, and so is one
/// the fixed header cannot say (`rtc` would OR the excess into the
/// neighbouring bits and send a packet that reads back as another).
pub fn build(header: &Header, payload: &[u8]) -> Result<Vec<u8>, RtpError> {
    if header.padding {
        return Err(RtpError::PaddingRequested);
    }
    if header.payload_type > 0x7F {
        return Err(RtpError::PayloadType(header.payload_type));
    }
    if header.csrc.len() > 15 {
        return Err(RtpError::Csrcs(header.csrc.len()));
    }
    let header = Header { version: 2, ..header.clone() };
    let mut out = header.marshal()?.to_vec();
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16) -> Header {
        Header {
            version: 2,
            marker: true,
            payload_type: 8,
            sequence_number: seq,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x1234_5678,
            ..Header::default()
        }
    }

    #[test]
    fn phone_rtp_round_trip() {
        let bytes = build(&header(65_535), &[0xD5; 160]).unwrap();
        assert_eq!(bytes.len(), 12 + 160);
        assert_eq!(bytes[..4], [0x80, 0x88, 0xFF, 0xFF]);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.header.sequence_number, 65_535);
        assert_eq!(p.header.timestamp, 0xDEAD_BEEF);
        assert_eq!(p.header.ssrc, 0x1234_5678);
        assert!(p.header.marker);
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(&p.payload[..], &[0xD5; 160][..]);
    }

    #[test]
    fn phone_rtp_csrcs_extension_and_padding_skipped() {
        // V=2 P=1 X=1 CC=2, PT 0, then 2 CSRCs, a one-word extension with
        // an unknown profile, 3 payload octets and 2 of padding.
        let mut d = vec![0xB2, 0x00, 0x00, 0x07, 0, 0, 0, 160, 0, 0, 0, 1];
        d.extend([0, 0, 0, 2, 0, 0, 0, 3]);
        d.extend([0x12, 0x34, 0x00, 0x01, 9, 9, 9, 9]);
        d.extend([0xAA, 0xBB, 0xCC, 0x00, 0x02]);
        let p = parse(&d).unwrap();
        assert_eq!(p.header.csrc, vec![2, 3]);
        assert_eq!(p.header.sequence_number, 7);
        assert_eq!(&p.payload[..], &[0xAA, 0xBB, 0xCC][..]);
    }

    #[test]
    fn phone_rtp_rejects_bad_datagrams() {
        let good = build(&header(1), &[1, 2, 3]).unwrap();
        assert!(matches!(parse(&[]), Err(RtpError::Malformed(_))));
        assert!(matches!(parse(&good[..11]), Err(RtpError::Malformed(_))));
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert!(matches!(parse(&v1), Err(RtpError::Version(1))));
        // A STUN binding request starts 0x00 0x01.
        assert!(matches!(parse(&[0x00, 0x01, 0, 0]), Err(RtpError::Version(0))));
        // CC says 15 CSRCs that are not there.
        let mut cc = good.clone();
        cc[0] = 0x8F;
        assert!(matches!(parse(&cc), Err(RtpError::Malformed(_))));
        // Padding count 0, and a count longer than the payload.
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 0;
        assert!(matches!(parse(&pad), Err(RtpError::Padding)));
        *pad.last_mut().unwrap() = 200;
        assert!(matches!(parse(&pad), Err(RtpError::Malformed(_))));
        let padded = Header { padding: true, ..header(1) };
        assert!(matches!(build(&padded, &[]), Err(RtpError::PaddingRequested)));
    }

    #[test]
    fn phone_rtp_tells_rtcp_from_rtp() {
        // A receiver report (PT 201) and a sender report (PT 200).
        assert!(is_rtcp(&[0x81, 201, 0, 7]));
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        // PCMA with and without the marker bit: 8 and 136.
        assert!(!is_rtcp(&build(&header(1), &[0xD5]).unwrap()));
        assert!(!is_rtcp(&[0x80, 0x08]));
        assert!(!is_rtcp(&[0x80]));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A header as the phone leg could be asked to build: any field,
        /// including out-of-range payload types and CSRC counts, never padded.
        fn any_header() -> impl Strategy<Value = Header> {
            (
                0u8..4,
                any::<bool>(),
                any::<u8>(),
                any::<u16>(),
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u32>(), 0..20),
            )
                .prop_map(|(version, marker, payload_type, sequence_number, timestamp, ssrc, csrc)| {
                    Header {
                        version,
                        marker,
                        payload_type,
                        sequence_number,
                        timestamp,
                        ssrc,
                        csrc,
                        ..Header::default()
                    }
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_datagrams_never_panic(datagram in proptest::collection::vec(any::<u8>(), 0..200)) {
                if let Ok(p) = parse(&datagram) {
                    prop_assert_eq!(p.header.version, 2);
                    prop_assert!(p.payload.len() <= datagram.len());
                }
                let _ = is_rtcp(&datagram);
            }

            /// Version 2 with any flags: past the version check into the
            /// CSRC, extension and padding arithmetic.
            #[test]
            fn version_2_datagrams_never_panic(
                first in 0u8..64,
                rest in proptest::collection::vec(any::<u8>(), 0..120),
            ) {
                let mut datagram = vec![0x80 | first];
                datagram.extend(rest);
                if let Ok(p) = parse(&datagram) {
                    prop_assert!(12 + 4 * p.header.csrc.len() + p.payload.len() <= datagram.len());
                }
            }

            /// Building never emits a packet that reads back as another: a
            /// header RTP can carry round-trips with its payload, one it
            /// cannot (a payload type over 127, more than 15 CSRCs) is refused.
            #[test]
            fn build_then_parse_gives_the_header_and_payload_back(
                header in any_header(),
                payload in proptest::collection::vec(any::<u8>(), 0..300),
            ) {
                let representable = header.payload_type <= 0x7F && header.csrc.len() <= 15;
                match build(&header, &payload) {
                    Ok(datagram) => {
                        prop_assert!(representable, "built an unrepresentable header {header:?}");
                        let p = parse(&datagram).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(p.header, Header { version: 2, ..header.clone() });
                        prop_assert_eq!(&p.payload[..], &payload[..]);
                    }
                    Err(RtpError::PayloadType(pt)) => prop_assert_eq!(pt, header.payload_type),
                    Err(RtpError::Csrcs(n)) => prop_assert_eq!(n, header.csrc.len()),
                    Err(e) => return Err(TestCaseError::fail(format!("{e} for {header:?}"))),
                }
            }

            /// RFC 8285 one-byte and two-byte header extensions, set through
            /// `set_extension` (which checks ids and lengths), survive too.
            #[test]
            fn extensions_round_trip(
                two_byte in any::<bool>(),
                exts in proptest::collection::btree_map(1u8..15, proptest::collection::vec(any::<u8>(), 1..17), 0..4),
                payload in proptest::collection::vec(any::<u8>(), 0..40),
            ) {
                let profile = if two_byte { 0x1000 } else { 0xBEDE };
                let mut header = Header { version: 2, payload_type: 8, extension: true, extension_profile: profile, ..Header::default() };
                for (id, bytes) in &exts {
                    header
                        .set_extension(*id, bytes::Bytes::copy_from_slice(bytes))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                let datagram = build(&header, &payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let p = parse(&datagram).map_err(|e| TestCaseError::fail(e.to_string()))?;
                for (id, bytes) in &exts {
                    let got = p.header.get_extension(*id);
                    prop_assert_eq!(got.as_deref(), Some(&bytes[..]));
                }
                prop_assert_eq!(p.header.extensions.len(), exts.len());
                prop_assert_eq!(&p.payload[..], &payload[..]);
            }
        }
    }
}
