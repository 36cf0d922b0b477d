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
/// written as 2 whatever it holds; a padded header is refused.
pub fn build(header: &Header, payload: &[u8]) -> Result<Vec<u8>, RtpError> {
    if header.padding {
        return Err(RtpError::PaddingRequested);
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
}
