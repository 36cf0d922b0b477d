//! The IVR's spoken prompts: ids that name recorded files, and numbers,
//! waits and hours spoken as prompt sequences.
//!
//! A [`Prompt`] is a [`Language`] and a [`Phrase`]; its file is
//! `prompts/{language}/{phrase}.wav` (for example `hi/welcome`,
//! `en/position-is`, `hi/number-42`), so a recorded human voice can replace
//! any file without touching code. The texts live in one place only,
//! `telemed/prompts/prompts.tsv`, which `scripts/make-prompts.sh` turns into
//! the files; a test checks that [`Prompt::all`] and that table agree.
//!
//! ## Numbers
//! Hindi numbers up to a hundred are irregular words (४२ is बयालीस, not
//! "forty two"), so each of 0–100 has its own file in both languages.
//! Larger numbers are composed: thousands (up to 99,999) and hundreds before
//! the remainder ("three hundred and forty-two", तीन सौ बयालीस); one lakh
//! (100,000) or more is said as "a hundred thousand or more", since no
//! district of Delhi has that many vacant beds and no caller waits that long.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The caller's language. The helpline's IVR speaks Hindi and English;
/// Hindi is the default for callers who choose nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Hi,
    En,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Hi, Language::En];

    /// The ISO 639-1 code, as the routing engine's contacts carry it.
    pub fn code(self) -> &'static str {
        match self {
            Language::Hi => "hi",
            Language::En => "en",
        }
    }
}

/// Delhi's eleven revenue districts, the unit the helpline quotes vacant
/// beds by. An enum rather than a name, because each needs a recorded name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum District {
    Central,
    East,
    NewDelhi,
    North,
    NorthEast,
    NorthWest,
    Shahdara,
    South,
    SouthEast,
    SouthWest,
    West,
}

impl District {
    pub const ALL: [District; 11] = [
        District::Central,
        District::East,
        District::NewDelhi,
        District::North,
        District::NorthEast,
        District::NorthWest,
        District::Shahdara,
        District::South,
        District::SouthEast,
        District::SouthWest,
        District::West,
    ];

    /// The name as the facility data writes it (`facilities.csv`'s `district`).
    pub fn name(self) -> &'static str {
        match self {
            District::Central => "Central",
            District::East => "East",
            District::NewDelhi => "New Delhi",
            District::North => "North",
            District::NorthEast => "North East",
            District::NorthWest => "North West",
            District::Shahdara => "Shahdara",
            District::South => "South",
            District::SouthEast => "South East",
            District::SouthWest => "South West",
            District::West => "West",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            District::Central => "central",
            District::East => "east",
            District::NewDelhi => "new-delhi",
            District::North => "north",
            District::NorthEast => "north-east",
            District::NorthWest => "north-west",
            District::Shahdara => "shahdara",
            District::South => "south",
            District::SouthEast => "south-east",
            District::SouthWest => "south-west",
            District::West => "west",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown district {0:?}")]
pub struct UnknownDistrict(pub String);

impl FromStr for District {
    type Err = UnknownDistrict;

    /// Accepts the facility data's names, in any case, with or without
    /// "Delhi" after them ("North East", "north east delhi").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String =
            s.trim().to_lowercase().split([' ', '-', '_']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        let norm = norm.strip_suffix(" delhi").filter(|_| norm != "new delhi").unwrap_or(&norm);
        District::ALL.into_iter().find(|d| d.name().to_lowercase() == norm).ok_or_else(|| UnknownDistrict(s.to_owned()))
    }
}

/// What a prompt says, independent of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phrase {
    Welcome,
    RecordingNotice,
    EmergencyAnyTime,
    LanguageMenu,
    InvalidChoice,
    MainMenu,
    /// "Our operators answer calls every day from" / "हमारे ऑपरेटर रोज़".
    HoursFrom,
    /// English only: "to", between the two hours.
    HoursTo,
    /// Hindi only: "बजे से", after the first hour.
    OclockFrom,
    /// Hindi only: "बजे तक", after the second hour.
    OclockUntil,
    /// Hindi only: the verb that closes the sentence.
    HoursEnd,
    HoursDoctors,
    PeriodMorning,
    PeriodAfternoon,
    PeriodEvening,
    PeriodNight,
    BedsMenu,
    BedsUnavailable,
    PinInvalid,
    PinUnknown,
    /// "Vacant beds in" (English, before the district) / "में खाली बिस्तर"
    /// (Hindi, after it).
    BedsVacantIn,
    /// "For" (English, before the district) / "के लिए" (Hindi, after it).
    For,
    /// "press" / "दबाएँ", around the key's number.
    Press,
    DistrictsMore,
    DistrictsBack,
    District(District),
    QueueConnecting,
    QueueOptions,
    PositionIs,
    WaitAbout,
    WaitUnderMinute,
    Minute,
    Minutes,
    YouAreNext,
    EmergencyConnecting,
    CallbackEnterNumber,
    CallbackInvalidNumber,
    CallbackYouEntered,
    CallbackConfirmMenu,
    CallbackConfirmed,
    Blocked,
    /// 0–100, each its own recording.
    Number(u8),
    Hundred,
    Thousand,
    /// English only: "and" before the last part of a composed number.
    And,
    LakhOrMore,
}

/// The phrases without a parameter, in the order of `prompts.tsv`.
const FIXED: [Phrase; 44] = [
    Phrase::Welcome,
    Phrase::RecordingNotice,
    Phrase::EmergencyAnyTime,
    Phrase::LanguageMenu,
    Phrase::InvalidChoice,
    Phrase::MainMenu,
    Phrase::HoursFrom,
    Phrase::HoursTo,
    Phrase::OclockFrom,
    Phrase::OclockUntil,
    Phrase::HoursEnd,
    Phrase::HoursDoctors,
    Phrase::PeriodMorning,
    Phrase::PeriodAfternoon,
    Phrase::PeriodEvening,
    Phrase::PeriodNight,
    Phrase::BedsMenu,
    Phrase::BedsUnavailable,
    Phrase::PinInvalid,
    Phrase::PinUnknown,
    Phrase::BedsVacantIn,
    Phrase::For,
    Phrase::Press,
    Phrase::DistrictsMore,
    Phrase::DistrictsBack,
    Phrase::QueueConnecting,
    Phrase::QueueOptions,
    Phrase::PositionIs,
    Phrase::WaitAbout,
    Phrase::WaitUnderMinute,
    Phrase::Minute,
    Phrase::Minutes,
    Phrase::YouAreNext,
    Phrase::EmergencyConnecting,
    Phrase::CallbackEnterNumber,
    Phrase::CallbackInvalidNumber,
    Phrase::CallbackYouEntered,
    Phrase::CallbackConfirmMenu,
    Phrase::CallbackConfirmed,
    Phrase::Blocked,
    Phrase::Hundred,
    Phrase::Thousand,
    Phrase::And,
    Phrase::LakhOrMore,
];

impl Phrase {
    /// The file's name without language or extension.
    pub fn stem(self) -> String {
        let fixed = match self {
            Phrase::Number(n) => return format!("number-{n}"),
            Phrase::District(d) => return format!("district-{}", d.slug()),
            Phrase::Welcome => "welcome",
            Phrase::RecordingNotice => "recording-notice",
            Phrase::EmergencyAnyTime => "emergency-any-time",
            Phrase::LanguageMenu => "language-menu",
            Phrase::InvalidChoice => "invalid-choice",
            Phrase::MainMenu => "main-menu",
            Phrase::HoursFrom => "hours-from",
            Phrase::HoursTo => "hours-to",
            Phrase::OclockFrom => "oclock-from",
            Phrase::OclockUntil => "oclock-until",
            Phrase::HoursEnd => "hours-end",
            Phrase::HoursDoctors => "hours-doctors",
            Phrase::PeriodMorning => "period-morning",
            Phrase::PeriodAfternoon => "period-afternoon",
            Phrase::PeriodEvening => "period-evening",
            Phrase::PeriodNight => "period-night",
            Phrase::BedsMenu => "beds-menu",
            Phrase::BedsUnavailable => "beds-unavailable",
            Phrase::PinInvalid => "pin-invalid",
            Phrase::PinUnknown => "pin-unknown",
            Phrase::BedsVacantIn => "beds-vacant-in",
            Phrase::For => "for",
            Phrase::Press => "press",
            Phrase::DistrictsMore => "districts-more",
            Phrase::DistrictsBack => "districts-back",
            Phrase::QueueConnecting => "queue-connecting",
            Phrase::QueueOptions => "queue-options",
            Phrase::PositionIs => "position-is",
            Phrase::WaitAbout => "wait-about",
            Phrase::WaitUnderMinute => "wait-under-minute",
            Phrase::Minute => "minute",
            Phrase::Minutes => "minutes",
            Phrase::YouAreNext => "you-are-next",
            Phrase::EmergencyConnecting => "emergency-connecting",
            Phrase::CallbackEnterNumber => "callback-enter-number",
            Phrase::CallbackInvalidNumber => "callback-invalid-number",
            Phrase::CallbackYouEntered => "callback-you-entered",
            Phrase::CallbackConfirmMenu => "callback-confirm-menu",
            Phrase::CallbackConfirmed => "callback-confirmed",
            Phrase::Blocked => "blocked",
            Phrase::Hundred => "hundred",
            Phrase::Thousand => "thousand",
            Phrase::And => "and",
            Phrase::LakhOrMore => "lakh-or-more",
        };
        fixed.to_owned()
    }

    /// Whether `language` uses this phrase: word order differs, so a few
    /// connecting words exist in one language only.
    pub fn used_in(self, language: Language) -> bool {
        match self {
            Phrase::HoursTo | Phrase::And => language == Language::En,
            Phrase::OclockFrom | Phrase::OclockUntil | Phrase::HoursEnd => language == Language::Hi,
            Phrase::Number(n) => n <= 100,
            _ => true,
        }
    }
}

/// One recorded prompt: what is said, in which language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Prompt {
    pub language: Language,
    pub phrase: Phrase,
}

impl Prompt {
    pub fn new(language: Language, phrase: Phrase) -> Prompt {
        Prompt { language, phrase }
    }

    /// The file's path under `prompts/`, without extension: `hi/number-42`.
    pub fn file(&self) -> String {
        format!("{}/{}", self.language.code(), self.phrase.stem())
    }

    /// Every prompt the IVR can play: the rows `prompts.tsv` must have.
    pub fn all() -> Vec<Prompt> {
        let phrases = FIXED
            .into_iter()
            .chain(District::ALL.into_iter().map(Phrase::District))
            .chain((0..=100).map(Phrase::Number));
        let phrases: Vec<Phrase> = phrases.collect();
        Language::ALL
            .into_iter()
            .flat_map(|l| phrases.iter().filter(move |p| p.used_in(l)).map(move |&p| Prompt::new(l, p)))
            .collect()
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file())
    }
}

impl From<Prompt> for String {
    fn from(p: Prompt) -> String {
        p.file()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown prompt {0:?}")]
pub struct UnknownPrompt(pub String);

impl FromStr for Prompt {
    type Err = UnknownPrompt;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Prompt::all().into_iter().find(|p| p.file() == s).ok_or_else(|| UnknownPrompt(s.to_owned()))
    }
}

impl TryFrom<String> for Prompt {
    type Error = UnknownPrompt;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// `n` spoken in `language` (see the module docs for numbers above 100).
pub fn number(language: Language, n: u32) -> Vec<Prompt> {
    let say = |p| Prompt::new(language, p);
    if n >= 100_000 {
        return vec![say(Phrase::LakhOrMore)];
    }
    if n <= 100 {
        return vec![say(Phrase::Number(n as u8))];
    }
    let (thousands, hundreds, rest) = (n / 1000, n / 100 % 10, n % 100);
    let mut out = Vec::new();
    if thousands > 0 {
        out.extend(number(language, thousands));
        out.push(say(Phrase::Thousand));
    }
    if hundreds > 0 {
        out.push(say(Phrase::Number(hundreds as u8)));
        out.push(say(Phrase::Hundred));
    }
    if rest > 0 {
        // "three hundred and forty-two"; Hindi has no "and" (तीन सौ बयालीस).
        if language == Language::En {
            out.push(say(Phrase::And));
        }
        out.push(say(Phrase::Number(rest as u8)));
    }
    out
}

/// A phone number (or any digit string) read digit by digit.
pub fn digits(language: Language, s: &str) -> Vec<Prompt> {
    s.chars().filter_map(|c| c.to_digit(10)).map(|d| Prompt::new(language, Phrase::Number(d as u8))).collect()
}

/// The estimated wait: "about N minutes", rounded up to whole minutes, or
/// "less than a minute".
pub fn wait(language: Language, wait_secs: u32) -> Vec<Prompt> {
    let say = |p| Prompt::new(language, p);
    let minutes = wait_minutes(wait_secs);
    if minutes == 0 {
        return vec![say(Phrase::WaitUnderMinute)];
    }
    let mut out = vec![say(Phrase::WaitAbout)];
    out.extend(number(language, minutes));
    out.push(say(if minutes == 1 { Phrase::Minute } else { Phrase::Minutes }));
    out
}

/// Whole minutes as [`wait`] says them: 0 for under a minute, else rounded up.
pub fn wait_minutes(wait_secs: u32) -> u32 {
    if wait_secs < 60 { 0 } else { wait_secs.div_ceil(60) }
}

/// A clock hour (0–24) as said on a 12-hour clock with the part of the day:
/// "6 in the morning" / "सुबह 6", "10 at night" / "रात 10".
fn hour(language: Language, h: u8) -> Vec<Prompt> {
    let say = |p| Prompt::new(language, p);
    let h = h % 24;
    let period = say(match h {
        4..=11 => Phrase::PeriodMorning,
        12..=15 => Phrase::PeriodAfternoon,
        16..=19 => Phrase::PeriodEvening,
        _ => Phrase::PeriodNight,
    });
    let twelve = say(Phrase::Number(match h % 12 {
        0 => 12,
        x => x,
    }));
    match language {
        Language::En => vec![twelve, period],
        Language::Hi => vec![period, twelve],
    }
}

/// The helpline's hours: when operators answer, and that doctors are there
/// around the clock.
pub fn hours(language: Language, from: u8, until: u8) -> Vec<Prompt> {
    let say = |p| Prompt::new(language, p);
    let mut out = vec![say(Phrase::HoursFrom)];
    match language {
        Language::En => {
            out.extend(hour(language, from));
            out.push(say(Phrase::HoursTo));
            out.extend(hour(language, until));
        }
        Language::Hi => {
            out.extend(hour(language, from));
            out.push(say(Phrase::OclockFrom));
            out.extend(hour(language, until));
            out.push(say(Phrase::OclockUntil));
            out.push(say(Phrase::HoursEnd));
        }
    }
    out.push(say(Phrase::HoursDoctors));
    out
}

/// "Vacant beds in Central Delhi: 86" / "मध्य दिल्ली में खाली बिस्तर: छियासी".
pub fn beds(language: Language, district: District, vacant: u32) -> Vec<Prompt> {
    let say = |p| Prompt::new(language, p);
    let mut out = match language {
        Language::En => vec![say(Phrase::BedsVacantIn), say(Phrase::District(district))],
        Language::Hi => vec![say(Phrase::District(district)), say(Phrase::BedsVacantIn)],
    };
    out.extend(number(language, vacant));
    out
}

/// One entry of the district menu: "For Central Delhi, press 1" /
/// "मध्य दिल्ली के लिए एक दबाएँ".
pub fn district_choice(language: Language, district: District, key: u8) -> Vec<Prompt> {
    let say = |p| Prompt::new(language, p);
    match language {
        Language::En => {
            vec![say(Phrase::For), say(Phrase::District(district)), say(Phrase::Press), say(Phrase::Number(key))]
        }
        Language::Hi => {
            vec![say(Phrase::District(district)), say(Phrase::For), say(Phrase::Number(key)), say(Phrase::Press)]
        }
    }
}

/// "Your place in the queue is 4" / "कतार में आपका स्थान है चार".
pub fn position(language: Language, position: u32) -> Vec<Prompt> {
    let mut out = vec![Prompt::new(language, Phrase::PositionIs)];
    out.extend(number(language, position));
    out
}
