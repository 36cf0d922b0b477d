//! The RTP fixed header (RFC 3550 §5.1), parsed and built. Pure and
//! minimal: the phone leg carries payloads as opaque bytes; CSRCs, the
//! header extension and padding are skipped on the way in and never sent.

/// Why a datagram is not an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("RTP padding longer than the payload")]
    Padding,
}

/// The fixed header fields a leg uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A parsed packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub payload: &'a [u8],
}

const FIXED: usize = 12;

/// Whether a datagram on the RTP port is RTCP (RFC 5761 §4: packet types
/// 192–223 occupy the second byte where RTP has marker and payload type).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

/// Parse a datagram. Never panics.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if buf.len() < FIXED {
        return Err(RtpError::Short(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrc_count = usize::from(buf[0] & 0x0f);
    let mut start = FIXED + 4 * csrc_count;
    if extension {
        // RFC 3550 §5.3.1: 16-bit profile word, 16-bit length in 32-bit words.
        let ext = buf.get(start..start + 4).ok_or(RtpError::Short(buf.len()))?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = buf.len();
    if start > end {
        return Err(RtpError::Short(buf.len()));
    }
    if padding {
        let pad = usize::from(buf[end - 1]);
        if pad == 0 || pad > end - start {
            return Err(RtpError::Padding);
        }
        end -= pad;
    }
    Ok(RtpPacket {
        header: RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        },
        payload: &buf[start..end],
    })
}

/// Build a packet: the fixed header, then the payload.
pub fn build(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED + payload.len());
    out.push(0x80);
    out.push(u8::from(header.marker) << 7 | (header.payload_type & 0x7f));
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.extend_from_slice(&header.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse_round_trips() {
        let h = RtpHeader { marker: true, payload_type: 101, seq: 65535, timestamp: 0xdead_beef, ssrc: 42 };
        let buf = build(&h, &[1, 2, 3]);
        let p = parse(&buf).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.payload, [1, 2, 3]);
        assert!(!is_rtcp(&buf));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut buf = vec![0xb1, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        buf.extend_from_slice(&[0, 0, 0, 5]); // one CSRC
        buf.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, one word
        buf.extend_from_slice(&[0xd5, 0xd5]);
        buf.extend_from_slice(&[0, 0, 3]); // padding of 3
        let p = parse(&buf).unwrap();
        assert_eq!(p.payload, [0xd5, 0xd5]);
        assert_eq!(p.header.payload_type, 8);
    }

    #[test]
    fn short_and_wrong_packets_are_errors() {
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::Short(11)));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version(1)));
        let mut csrc_past_end = vec![0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        csrc_past_end.push(0);
        assert!(matches!(parse(&csrc_past_end), Err(RtpError::Short(_))));
        let mut pad = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        pad.push(9);
        assert_eq!(parse(&pad), Err(RtpError::Padding));
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..4000usize {
            let buf: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse(&buf);
        }
    }
}
