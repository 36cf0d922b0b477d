//! The consoles' words in Hindi and English. Every page takes its text from
//! here, so a missing translation is a compile error, not an English gap.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Hi,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Hi => "hi",
            Lang::En => "en",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::Hi => Lang::En,
            Lang::En => Lang::Hi,
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "hi" => Some(Lang::Hi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn words(self) -> &'static Words {
        match self {
            Lang::Hi => &HI,
            Lang::En => &EN,
        }
    }
}

/// The words of one language.
pub struct Words {
    pub app_name: &'static str,
    pub tagline: &'static str,
    pub sign_in: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub sign_out: &'static str,
    pub switch_language: &'static str,
    pub signed_in_as: &'static str,
    pub bad_credentials: &'static str,
    pub too_many_attempts: &'static str,
    pub operator_console: &'static str,
    pub doctor_console: &'static str,
    pub supervisor_console: &'static str,
    pub admin_console: &'static str,
    pub shift_today: &'static str,
    pub seats: &'static str,
    pub peak_seat: &'static str,
    pub not_rostered: &'static str,
}

pub static EN: Words = Words {
    app_name: "Careline",
    tagline: "Delhi Health Helpline",
    sign_in: "Sign in",
    username: "Username",
    password: "Password",
    sign_out: "Sign out",
    switch_language: "हिन्दी",
    signed_in_as: "Signed in as",
    bad_credentials: "Wrong username or password.",
    too_many_attempts: "Too many attempts. Try again later.",
    operator_console: "Operator console",
    doctor_console: "Doctor console",
    supervisor_console: "Supervisor wallboard",
    admin_console: "Administration",
    shift_today: "Your shifts today",
    seats: "Seats",
    peak_seat: "peak",
    not_rostered: "You are not rostered today.",
};

pub static HI: Words = Words {
    app_name: "केयरलाइन",
    tagline: "दिल्ली स्वास्थ्य हेल्पलाइन",
    sign_in: "साइन इन करें",
    username: "उपयोगकर्ता नाम",
    password: "पासवर्ड",
    sign_out: "साइन आउट",
    switch_language: "English",
    signed_in_as: "साइन इन:",
    bad_credentials: "उपयोगकर्ता नाम या पासवर्ड गलत है।",
    too_many_attempts: "बहुत अधिक प्रयास। कुछ देर बाद फिर कोशिश करें।",
    operator_console: "ऑपरेटर कंसोल",
    doctor_console: "डॉक्टर कंसोल",
    supervisor_console: "सुपरवाइज़र वॉलबोर्ड",
    admin_console: "प्रशासन",
    shift_today: "आज की आपकी शिफ्ट",
    seats: "सीटें",
    peak_seat: "पीक",
    not_rostered: "आज आपकी कोई शिफ्ट नहीं है।",
};
