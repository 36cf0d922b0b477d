//! # telemed: WebRTC sessions and tele-consultations
//!
//! The media plane of the helpline: every call and consult runs through the
//! server, which is a WebRTC peer (a small SFU) for each participant. Signaling,
//! session state and the media adapter are separate modules; only the adapter
//! imports `webrtc`.
