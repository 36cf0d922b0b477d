//! The audio of a phone leg (SIP trunk and IVR), sans-IO: packets and
//! samples go in, digits and frames come out. Nothing here opens a socket,
//! spawns a thread or reads a clock; the caller's 20 ms tick drives playout.
//!
//! ## Layout
//! - [`g711`]: A-law and µ-law (ITU-T G.711), the trunk's codecs.
//! - [`dtmf`]: key presses, as RFC 4733 telephone-events and as in-band
//!   Q.23 tones (Goertzel).
//! - [`jitter`]: the playout buffer of one G.711 stream: reordering,
//!   duplicates, loss concealment, and the counts for metrics.
//! - [`rtp`]: RFC 3550 packets, `rtc::rtp`'s parser and builder with the
//!   version and padding checks it leaves out.

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod rtp;

#[cfg(test)]
mod robustness;
