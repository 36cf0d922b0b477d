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
    pub identify: &'static str,
    pub card_or_qr: &'static str,
    pub abha: &'static str,
    pub phone: &'static str,
    pub find: &'static str,
    pub no_patient: &'static str,
    pub family: &'static str,
    pub schemes: &'static str,
    pub appointments: &'static str,
    pub age: &'static str,
    pub info_desk: &'static str,
    pub search_facilities: &'static str,
    pub vacant_bed: &'static str,
    pub any: &'static str,
    pub medicine: &'static str,
    pub search: &'static str,
    pub answers: &'static str,
    pub bed_general: &'static str,
    pub bed_icu: &'static str,
    pub bed_ventilator: &'static str,
    pub bed_oxygen: &'static str,
    pub complaint: &'static str,
    pub category: &'static str,
    pub facility: &'static str,
    pub description: &'static str,
    pub register: &'static str,
    pub ticket: &'static str,
    pub due_by: &'static str,
    pub book_appointment: &'static str,
    pub department: &'static str,
    pub free_slots: &'static str,
    pub book: &'static str,
    pub booked: &'static str,
    pub reminders: &'static str,
    pub select_patient_first: &'static str,
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
    identify: "Identify the caller",
    card_or_qr: "E-health card (or scanned QR)",
    abha: "ABHA number",
    phone: "Phone",
    find: "Find",
    no_patient: "No patient found.",
    family: "Family",
    schemes: "Schemes",
    appointments: "Appointments",
    age: "Age",
    info_desk: "Information desk",
    search_facilities: "Hospital, clinic, service or area",
    vacant_bed: "Vacant bed",
    any: "Any",
    medicine: "Medicine",
    search: "Search",
    answers: "Approved answers",
    bed_general: "General",
    bed_icu: "ICU",
    bed_ventilator: "Ventilator",
    bed_oxygen: "Oxygen",
    complaint: "Register a complaint",
    category: "Category",
    facility: "Facility",
    description: "What happened",
    register: "Register",
    ticket: "Ticket number",
    due_by: "Due by",
    book_appointment: "Book an appointment",
    department: "Department",
    free_slots: "Free slots",
    book: "Book",
    booked: "Booked",
    reminders: "Follow-ups due",
    select_patient_first: "Identify the patient first.",
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
    identify: "कॉलर की पहचान",
    card_or_qr: "ई-हेल्थ कार्ड (या स्कैन किया क्यूआर)",
    abha: "आभा नंबर",
    phone: "फ़ोन",
    find: "खोजें",
    no_patient: "कोई मरीज़ नहीं मिला।",
    family: "परिवार",
    schemes: "योजनाएं",
    appointments: "अपॉइंटमेंट",
    age: "उम्र",
    info_desk: "सूचना डेस्क",
    search_facilities: "अस्पताल, क्लिनिक, सेवा या इलाका",
    vacant_bed: "खाली बिस्तर",
    any: "कोई भी",
    medicine: "दवा",
    search: "खोजें",
    answers: "स्वीकृत उत्तर",
    bed_general: "सामान्य",
    bed_icu: "आईसीयू",
    bed_ventilator: "वेंटिलेटर",
    bed_oxygen: "ऑक्सीजन",
    complaint: "शिकायत दर्ज करें",
    category: "श्रेणी",
    facility: "स्वास्थ्य केंद्र",
    description: "क्या हुआ",
    register: "दर्ज करें",
    ticket: "टिकट नंबर",
    due_by: "समय सीमा",
    book_appointment: "अपॉइंटमेंट बुक करें",
    department: "विभाग",
    free_slots: "खाली स्लॉट",
    book: "बुक करें",
    booked: "बुक हो गया",
    reminders: "बकाया फ़ॉलो-अप",
    select_patient_first: "पहले मरीज़ की पहचान करें।",
};
