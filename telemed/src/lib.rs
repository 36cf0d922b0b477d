//! # telemed: WebRTC sessions and tele-consultations
//!
//! The media plane of the helpline and the tier-2 consult: every call and
//! consult runs through the server, which is a WebRTC peer (a small SFU) for
//! each participant. Signaling, session state and the media adapter are
//! separate modules; only the adapter imports `webrtc`.
//!
//! ## Layout
//! - [`consult`]: the tele-consultation record: consent, notes and the
//!   e-prescription checked against the Telemedicine Practice Guidelines 2020.
//! - [`fhir`]: the consult as FHIR R4 resources for the patient's HIMS record.
//! - [`ivr`]: the phone channel's IVR, sans-IO: welcome, language, emergency
//!   key, self-service (hours, vacant beds), queue announcements and
//!   callbacks, as prompts to play; `prompts/` holds their texts
//!   (`prompts.tsv`) and recordings, made by `scripts/make-prompts.sh`. Pure.
//! - [`media`]: a call's participants, who hears whom (hold, mute,
//!   supervisor listen/whisper/barge), slots, rejoin grace, and the
//!   signaling messages. Pure.
//! - [`mixer`]: the audio bridge of a phone leg in a call: the Opus of
//!   everyone it hears decoded to 8 kHz and mixed (playout buffer, PLC),
//!   its own 8 kHz voice encoded to Opus once for every listener. Pure.
//! - [`phone`]: the audio of a phone leg: G.711 A-law/µ-law, DTMF (RFC 4733
//!   events and in-band Goertzel detection) and the playout jitter buffer.
//!   Pure.
//! - [`sfu`]: the media adapter, the only module that imports `webrtc`: one
//!   peer connection per participant, RTP forwarded by the routes of
//!   [`media::Session`], audio taps decoded to 16 kHz PCM.
//! - [`sip`]: the phone leg: a SIP UAS for trunk calls (RFC 3261/3264) and
//!   each call's RTP; only `sip::stack` imports `rsipstack`.

pub mod consult;
pub mod fhir;
pub mod ivr;
pub mod media;
pub mod mixer;
pub mod phone;
pub mod sfu;
pub mod sip;
