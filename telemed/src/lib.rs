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
//!
//! The WebRTC media plane (issue 4) is not built yet.

pub mod consult;
pub mod fhir;
