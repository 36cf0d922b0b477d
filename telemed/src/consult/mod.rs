//! The tele-consultation record: consent, notes, and the e-prescription checked against the Telemedicine Practice Guidelines 2020 (India).
