//! The phone channel's IVR: what a caller hears and keys before an agent
//! answers. Sans-IO, like the routing engine: one [`Ivr`] per phone call,
//! [`Ivr::handle`] applies one [`Event`] at an instant and returns the
//! [`Action`]s the phone leg must carry out; [`Ivr::next_timer`] says when
//! to send the next [`Event::Tick`]. It never reads a clock (time is
//! [`Millis`], milliseconds since the Unix epoch, as in `routing`), does no
//! I/O, and the same events at the same instants give the same actions.
//!
//! ## The flow
//! 1. Welcome, the recording notice and "press 9 in an emergency", in Hindi
//!    then English, then the language menu (1 Hindi, 2 English). After
//!    [`IvrConfig::language_timeouts`] silences the caller gets Hindi.
//! 2. The main menu: 1 the helpline's hours, 2 vacant beds, 0 an operator.
//!    Silence after the main menu means the queue: callers who never press
//!    anything go Hindi, then the queue.
//! 3. Vacant beds: a 6-digit PIN code keyed in (ended by `#` or by the sixth
//!    digit), or `*` for the district menu (eight districts a page, keys
//!    1–8; 0 for the next page). The answer is followed by the main menu.
//! 4. The queue: hold music, with position and wait said on the IVR's own
//!    cadence (see [`IvrConfig::announce_every`]); 5 asks for a callback
//!    that keeps the place, collecting a 10-digit number when the caller ID
//!    was withheld.
//!
//! A blocked (nuisance) caller hears a short message and is hung up on
//! instead of being queued.
//!
//! ## Rules that other systems got wrong
//! - **9 is emergency at any moment**: during the welcome, any menu, the
//!   queue, even for a blocked caller; the call is enqueued at once as an
//!   emergency. The one exception is a number being keyed in, where 9 is a
//!   digit: a PIN code's digits after the first (no PIN code starts with 9
//!   but the Army's, and Delhi's all start with 11) and the callback number
//!   (Indian mobile numbers start with 6–9). `*` leaves either entry, and 9
//!   is emergency again.
//! - **A key is never ignored while a prompt plays**: every prompt is
//!   interruptible, and a key acts at once. A key that means nothing in the
//!   current menu says "invalid choice" and the menu again.
//! - **A prompt never delays an agent**: when the call is offered to an
//!   agent every prompt stops (hold music plays while the agent's phone
//!   rings) and nothing more is said; at the connection all playback stops.
//!   While an offer rings, keys other than 9 do nothing, since any answer
//!   would be a prompt.
//! - **Announcements keep their promise**: one about every
//!   [`IvrConfig::announce_every`] from the last one said, not one per
//!   routing update; a place worse than the last one said is never spoken
//!   (that announcement is skipped, and the next update that is not worse is
//!   spoken), nor a longer wait than the last one said (the wait is left
//!   out); at the head of the queue no position is said, only "you are next",
//!   once. A place equal to the last one said is spoken again, so that
//!   announcements never fall silent for good.
//!
//! ## Playback
//! [`Action::Play`] and [`Action::HoldMusic`] each replace whatever is
//! playing; [`Action::StopPlayback`] is sent when something must stop and
//! nothing replaces it (a key that starts a number entry, a connection).
//! Each play has a [`PlaybackId`], and the phone leg reports the end of a
//! play with that id, so that a stale report (of a play a key already
//! replaced) is ignored.

pub mod prompt;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use prompt::{District, Language, Phrase, Prompt};

/// Milliseconds since the Unix epoch, UTC (as in `routing`).
pub type Millis = i64;

/// One play of a prompt sequence, numbered per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlaybackId(pub u32);

/// A 10-digit Indian phone number keyed in by the caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Ten ASCII digits, or nothing.
    pub fn parse(s: &str) -> Option<PhoneNumber> {
        (s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit())).then(|| PhoneNumber(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An Indian postal index number: six digits, the first not 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pin(u32);

impl Pin {
    pub fn parse(s: &str) -> Option<Pin> {
        let ok = s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
        ok.then(|| Pin(s.parse().expect("six ASCII digits parse")))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IvrConfig {
    /// Silence after a menu has been said before the IVR takes the default.
    pub menu_timeout: Millis,
    /// Silence between two digits of a PIN code or phone number before the
    /// entry is taken as finished.
    pub digit_timeout: Millis,
    /// Silences at the language menu before Hindi is chosen.
    pub language_timeouts: u32,
    /// Time from one queue announcement to the next: callers want news,
    /// not a voice at every routing update (the engine reviews positions
    /// every 10 s).
    pub announce_every: Millis,
    /// Keys other than 9 a blocked caller may press (each says the message
    /// again) before the IVR hangs up.
    pub blocked_replays: u32,
}

impl Default for IvrConfig {
    fn default() -> Self {
        IvrConfig {
            menu_timeout: 5_000,
            digit_timeout: 5_000,
            language_timeouts: 2,
            announce_every: 60_000,
            blocked_replays: 2,
        }
    }
}

/// What the phone leg knows of the caller when the call arrives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    /// On the nuisance list: no queue, but emergencies still go through.
    pub blocked: bool,
    /// No caller ID: a callback needs a number keyed in.
    pub number_withheld: bool,
}

/// When operators answer (doctors answer around the clock): whole hours of
/// the local day, `from` 0–23 and `until` 1–24. Numbers, not text, because
/// every prompt is a recording: spoken on a 12-hour clock with the part of
/// the day ("6 in the morning to 10 at night"). One range: the operators'
/// shifts join into one; a 24-hour desk would need its own prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hours {
    pub operators_from: u8,
    pub operators_until: u8,
}

impl Default for Hours {
    /// The operators' shifts: 06:00–14:00, 10:00–18:00 and 14:00–22:00.
    fn default() -> Self {
        Hours { operators_from: 6, operators_until: 22 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistrictBeds {
    pub district: District,
    /// Vacant beds in the district's facilities, all kinds together.
    pub vacant: u32,
}

/// Vacant beds by district, as the facility data had them when the call
/// began (a caller hears one snapshot).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Beds {
    /// In the order of the district menu's keys.
    pub districts: Vec<DistrictBeds>,
    pub pins: BTreeMap<Pin, District>,
}

/// What the IVR can tell without an agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfService {
    pub hours: Hours,
    pub beds: Beds,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The call was answered: the IVR starts.
    Answered,
    /// A key: `0`–`9`, `*`, `#` (or `A`–`D`), from RFC 4733, SIP INFO or
    /// in-band detection alike.
    Key { key: char },
    /// A play ended by itself.
    PlaybackFinished { playback: PlaybackId },
    /// Time passed (see [`Ivr::next_timer`]).
    Tick,
    /// The routing engine's `Position` for this call.
    QueueUpdate { position: u32, estimated_wait_secs: u32 },
    /// An agent's phone rings with this call.
    Offered,
    /// The offer ran out or was declined: the call waits again.
    OfferWithdrawn,
    /// An agent answered.
    Connected,
    /// The caller hung up.
    HungUp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Play `prompts` one after the other, replacing whatever plays, and
    /// report [`Event::PlaybackFinished`] at the end. `interruptible`: the
    /// phone leg may cut the play as soon as it detects a key, without
    /// waiting for the IVR's answer. Every prompt today is; the flag lets a
    /// future one that must be heard whole say so.
    Play {
        playback: PlaybackId,
        prompts: Vec<Prompt>,
        interruptible: bool,
    },
    /// Stop whatever plays (prompt or music); silence.
    StopPlayback,
    /// Loop hold music until the next play or stop.
    HoldMusic,
    /// Queue the call (routing's `ContactArrived`, voice). Sent a second
    /// time, with `emergency`, when a queued caller presses 9: the contact
    /// is filed again as an emergency.
    Enqueue {
        language: Language,
        emergency: bool,
    },
    /// Routing's `RequestCallback`: call back, keeping the place. `number`
    /// is the one keyed in when the caller ID was withheld, else `None`
    /// (call the caller ID).
    RequestCallback {
        number: Option<PhoneNumber>,
    },
    HangUp {
        reason: HangUpReason,
    },
    /// For the metrics; exactly once per call.
    Record {
        outcome: Outcome,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangUpReason {
    Blocked,
    CallbackRequested,
}

/// How the call left the IVR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Hung up before the queue without hearing an answer.
    AbandonedInIvr,
    /// Hung up before the queue after hearing the hours or vacant beds.
    SelfServed,
    /// Handed to the routing queue (what happens there is routing's to count).
    Queued { emergency: bool },
    /// A blocked caller, hung up on (or who hung up) without pressing 9.
    Blocked,
}

/// Where the call is in the flow.
#[derive(Clone, Debug, PartialEq)]
enum Stage {
    /// Not answered yet.
    Ringing,
    Blocked {
        replays: u32,
    },
    Language {
        timeouts: u32,
    },
    Main,
    BedsMenu,
    Pin {
        digits: String,
    },
    Districts {
        page: usize,
    },
    Queued(Wait),
    /// With an agent: the IVR's part is over.
    Connected,
    Ended,
}

#[derive(Clone, Debug, PartialEq)]
struct Wait {
    step: Step,
    /// An agent's phone rings: nothing may be said.
    offered: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Hold,
    /// Keying in a callback number.
    Number {
        digits: String,
    },
    Confirm {
        number: PhoneNumber,
    },
    /// "We will call you back", then the hang-up.
    Farewell,
}

/// The queue announcements' memory.
#[derive(Clone, Debug, Default, PartialEq)]
struct Announcer {
    emergency: bool,
    /// The routing engine's last position and estimated wait (s).
    latest: Option<(u32, u32)>,
    /// The last position said ("you are next" counts as 1).
    said_position: Option<u32>,
    /// The last wait said, in whole minutes.
    said_minutes: Option<u32>,
    /// The next announcement is due at or after this.
    due: Millis,
}

/// One phone call's IVR.
#[derive(Clone, Debug)]
pub struct Ivr {
    config: IvrConfig,
    caller: Caller,
    info: SelfService,
    /// Hindi until the caller chooses.
    language: Language,
    stage: Stage,
    /// The prompt sequence playing now, if any.
    playing: Option<PlaybackId>,
    /// Hold music plays (never together with a prompt).
    music: bool,
    plays: u32,
    /// When the current menu or entry times out.
    timer: Option<Millis>,
    announcer: Announcer,
    /// The caller heard an answer (hours or beds).
    self_served: bool,
    /// An entry was just completed by its last digit: a `#` right after it
    /// is the entry's terminator (callers are told to end with `#`), not a
    /// key for what follows. Cleared by the next key, play end or tick.
    hash_ends_entry: bool,
    recorded: bool,
    /// The instant of the last event, so [`Ivr::next_timer`] never names a
    /// past announcement the IVR is already waiting on an event for.
    now: Millis,
}

impl Ivr {
    pub fn new(config: IvrConfig, caller: Caller, info: SelfService) -> Ivr {
        Ivr {
            config,
            caller,
            info,
            language: Language::Hi,
            stage: Stage::Ringing,
            playing: None,
            music: false,
            plays: 0,
            timer: None,
            announcer: Announcer::default(),
            self_served: false,
            hash_ends_entry: false,
            recorded: false,
            now: Millis::MIN,
        }
    }

    /// The caller's language: Hindi until chosen.
    pub fn language(&self) -> Language {
        self.language
    }

    /// When the caller should send [`Event::Tick`] next, if ever.
    pub fn next_timer(&self) -> Option<Millis> {
        let announce = match &self.stage {
            Stage::Queued(_) if self.announcer.due > self.now => Some(self.announcer.due),
            _ => None,
        };
        [self.timer, announce].into_iter().flatten().min()
    }

    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        if matches!(self.stage, Stage::Ended) {
            return out;
        }
        if matches!(event, Event::PlaybackFinished { .. } | Event::Tick) {
            self.hash_ends_entry = false;
        }
        match event {
            Event::Answered => {
                if self.stage == Stage::Ringing {
                    self.answer(&mut out);
                }
            }
            Event::Key { key } => self.key(now, key, &mut out),
            Event::PlaybackFinished { playback } => {
                if self.playing == Some(playback) {
                    self.playing = None;
                    self.finished(now, &mut out);
                }
            }
            Event::Tick => {
                if self.timer.is_some_and(|t| t <= now) {
                    self.timer = None;
                    self.timeout(now, &mut out);
                }
                self.announce(now, &mut out);
            }
            Event::QueueUpdate { position, estimated_wait_secs } => {
                self.announcer.latest = Some((position, estimated_wait_secs));
                self.announce(now, &mut out);
            }
            Event::Offered => {
                if let Stage::Queued(w) = &mut self.stage {
                    w.offered = true;
                    w.step = Step::Hold;
                    self.timer = None;
                    if self.playing.is_some() {
                        out.push(Action::StopPlayback);
                        self.playing = None;
                    }
                    self.hold_music(&mut out);
                }
            }
            Event::OfferWithdrawn => {
                if let Stage::Queued(w) = &mut self.stage {
                    w.offered = false;
                    self.announce(now, &mut out);
                }
            }
            Event::Connected => {
                if !matches!(self.stage, Stage::Connected) {
                    self.stop(&mut out);
                    self.timer = None;
                    self.stage = Stage::Connected;
                }
            }
            Event::HungUp => {
                let outcome = match self.stage {
                    Stage::Blocked { .. } => Outcome::Blocked,
                    _ if self.self_served => Outcome::SelfServed,
                    _ => Outcome::AbandonedInIvr,
                };
                self.record(outcome, &mut out);
                self.end();
            }
        }
        out
    }

    fn answer(&mut self, out: &mut Vec<Action>) {
        if self.caller.blocked {
            self.stage = Stage::Blocked { replays: 0 };
            self.play(blocked(), out);
            return;
        }
        self.stage = Stage::Language { timeouts: 0 };
        let mut prompts = Vec::new();
        for phrase in [Phrase::Welcome, Phrase::RecordingNotice, Phrase::EmergencyAnyTime] {
            prompts.extend(Language::ALL.map(|l| Prompt::new(l, phrase)));
        }
        prompts.extend(language_menu());
        self.play(prompts, out);
    }

    fn key(&mut self, now: Millis, key: char, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.hash_ends_entry) && key == '#' {
            return;
        }
        let lang = self.language;
        let say = |p| Prompt::new(lang, p);
        // Entries where 9 is a digit come first.
        match &mut self.stage {
            Stage::Pin { digits } if key.is_ascii_digit() => {
                digits.push(key);
                self.timer = Some(now + self.config.digit_timeout);
                if digits.len() == 6 {
                    self.hash_ends_entry = true;
                    self.submit_pin(out);
                }
                return;
            }
            Stage::Queued(Wait { step: Step::Number { digits }, offered: false }) if key.is_ascii_digit() => {
                digits.push(key);
                let number = PhoneNumber::parse(digits);
                self.stop(out);
                self.timer = Some(now + self.config.digit_timeout);
                if let Some(number) = number {
                    self.hash_ends_entry = true;
                    self.confirm(number, Vec::new(), out);
                }
                return;
            }
            Stage::Ringing | Stage::Connected | Stage::Ended => return,
            _ => {}
        }
        if key == '9' {
            self.emergency(now, out);
            return;
        }
        match self.stage.clone() {
            Stage::Ringing | Stage::Connected | Stage::Ended => {}
            Stage::Blocked { replays } => {
                if replays >= self.config.blocked_replays {
                    self.record(Outcome::Blocked, out);
                    self.hang_up(HangUpReason::Blocked, out);
                } else {
                    self.stage = Stage::Blocked { replays: replays + 1 };
                    self.play(blocked(), out);
                }
            }
            Stage::Language { .. } => match key {
                '1' => self.choose(Language::Hi, out),
                '2' => self.choose(Language::En, out),
                _ => {
                    let mut prompts: Vec<Prompt> = Language::ALL.map(|l| Prompt::new(l, Phrase::InvalidChoice)).into();
                    prompts.extend(language_menu());
                    self.play(prompts, out);
                }
            },
            Stage::Main => self.main_key(now, key, out),
            Stage::BedsMenu => match key {
                '*' => self.districts(0, Vec::new(), out),
                '1'..='8' => {
                    self.stop(out);
                    self.stage = Stage::Pin { digits: key.to_string() };
                    self.timer = Some(now + self.config.digit_timeout);
                }
                _ => self.beds_menu(vec![say(Phrase::InvalidChoice)], out),
            },
            Stage::Pin { .. } => match key {
                '#' => self.submit_pin(out),
                '*' => self.districts(0, Vec::new(), out),
                _ => self.beds_menu(vec![say(Phrase::InvalidChoice)], out),
            },
            Stage::Districts { page } => {
                let pages = self.pages();
                let on_page = self.page(page).len();
                match key {
                    '1'..='8' if (key as usize - '0' as usize) <= on_page => {
                        let row = &self.page(page)[key as usize - '1' as usize];
                        let answer = prompt::beds(lang, row.district, row.vacant);
                        self.self_served = true;
                        self.main_menu(answer, out);
                    }
                    '0' if pages > 1 => self.districts((page + 1) % pages, Vec::new(), out),
                    '*' => self.beds_menu(Vec::new(), out),
                    _ => self.districts(page, vec![say(Phrase::InvalidChoice)], out),
                }
            }
            Stage::Queued(w) => self.queue_key(now, w, key, out),
        }
    }

    fn main_key(&mut self, now: Millis, key: char, out: &mut Vec<Action>) {
        let lang = self.language;
        match key {
            '1' => {
                self.self_served = true;
                let hours = &self.info.hours;
                self.main_menu(prompt::hours(lang, hours.operators_from, hours.operators_until), out);
            }
            '2' => self.beds_menu(Vec::new(), out),
            '0' => self.enqueue(now, out),
            _ => self.main_menu(vec![Prompt::new(lang, Phrase::InvalidChoice)], out),
        }
    }

    fn queue_key(&mut self, now: Millis, w: Wait, key: char, out: &mut Vec<Action>) {
        let lang = self.language;
        let say = |p| Prompt::new(lang, p);
        if w.offered {
            // An agent's phone rings: any answer would be a prompt that
            // delays them. 9 was handled before.
            return;
        }
        match w.step {
            Step::Hold if self.announcer.emergency => self.play(vec![say(Phrase::EmergencyConnecting)], out),
            Step::Hold if key == '5' => {
                if self.caller.number_withheld {
                    self.set_step(Step::Number { digits: String::new() });
                    self.play(vec![say(Phrase::CallbackEnterNumber)], out);
                } else {
                    self.request_callback(None, out);
                }
            }
            Step::Hold => self.play(vec![say(Phrase::InvalidChoice), say(Phrase::QueueOptions)], out),
            Step::Number { digits } => match key {
                '#' => match PhoneNumber::parse(&digits) {
                    Some(number) => self.confirm(number, Vec::new(), out),
                    None => self.reenter(out),
                },
                '*' => self.back_to_hold(now, out),
                _ => self.reenter(out),
            },
            Step::Confirm { number } => match key {
                '1' => self.request_callback(Some(number), out),
                '2' => {
                    self.set_step(Step::Number { digits: String::new() });
                    self.play(vec![say(Phrase::CallbackEnterNumber)], out);
                }
                '*' => self.back_to_hold(now, out),
                _ => self.confirm(number, vec![say(Phrase::InvalidChoice)], out),
            },
            // The callback is asked for and the farewell said: a key ends it.
            Step::Farewell => self.hang_up(HangUpReason::CallbackRequested, out),
        }
    }

    /// A play ended by itself.
    fn finished(&mut self, now: Millis, out: &mut Vec<Action>) {
        match &self.stage {
            Stage::Blocked { .. }
            | Stage::Language { .. }
            | Stage::Main
            | Stage::BedsMenu
            | Stage::Pin { .. }
            | Stage::Districts { .. } => self.timer = Some(now + self.config.menu_timeout),
            Stage::Queued(w) => match w.step {
                Step::Hold => {
                    if !self.announce(now, out) {
                        self.hold_music(out);
                    }
                }
                Step::Number { .. } | Step::Confirm { .. } => self.timer = Some(now + self.config.menu_timeout),
                Step::Farewell => self.hang_up(HangUpReason::CallbackRequested, out),
            },
            Stage::Ringing | Stage::Connected | Stage::Ended => {}
        }
    }

    fn timeout(&mut self, now: Millis, out: &mut Vec<Action>) {
        match self.stage.clone() {
            Stage::Blocked { .. } => {
                self.record(Outcome::Blocked, out);
                self.hang_up(HangUpReason::Blocked, out);
            }
            Stage::Language { timeouts } => {
                if timeouts + 1 >= self.config.language_timeouts {
                    self.choose(Language::Hi, out);
                } else {
                    self.stage = Stage::Language { timeouts: timeouts + 1 };
                    self.play(language_menu(), out);
                }
            }
            Stage::Main => self.enqueue(now, out),
            Stage::BedsMenu | Stage::Districts { .. } => self.main_menu(Vec::new(), out),
            Stage::Pin { .. } => self.submit_pin(out),
            Stage::Queued(w) => match w.step {
                Step::Number { digits } if digits.is_empty() => self.back_to_hold(now, out),
                Step::Number { .. } => self.reenter(out),
                Step::Confirm { .. } => self.back_to_hold(now, out),
                Step::Hold | Step::Farewell => {}
            },
            Stage::Ringing | Stage::Connected | Stage::Ended => {}
        }
    }

    fn choose(&mut self, language: Language, out: &mut Vec<Action>) {
        self.language = language;
        self.main_menu(Vec::new(), out);
    }

    fn main_menu(&mut self, mut before: Vec<Prompt>, out: &mut Vec<Action>) {
        self.stage = Stage::Main;
        before.push(Prompt::new(self.language, Phrase::MainMenu));
        self.play(before, out);
    }

    fn beds_menu(&mut self, mut before: Vec<Prompt>, out: &mut Vec<Action>) {
        let say = |p| Prompt::new(self.language, p);
        if self.info.beds.districts.is_empty() {
            self.main_menu(vec![say(Phrase::BedsUnavailable)], out);
            return;
        }
        self.stage = Stage::BedsMenu;
        before.push(say(Phrase::BedsMenu));
        self.play(before, out);
    }

    /// The district menu's pages hold eight: 9 is emergency, 0 the next page.
    const PAGE: usize = 8;

    fn pages(&self) -> usize {
        self.info.beds.districts.len().div_ceil(Self::PAGE)
    }

    fn page(&self, page: usize) -> &[DistrictBeds] {
        let all = &self.info.beds.districts;
        let start = (page * Self::PAGE).min(all.len());
        &all[start..(start + Self::PAGE).min(all.len())]
    }

    fn districts(&mut self, page: usize, mut prompts: Vec<Prompt>, out: &mut Vec<Action>) {
        let lang = self.language;
        for (i, row) in self.page(page).iter().enumerate() {
            prompts.extend(prompt::district_choice(lang, row.district, i as u8 + 1));
        }
        if self.pages() > 1 {
            prompts.push(Prompt::new(lang, Phrase::DistrictsMore));
        }
        prompts.push(Prompt::new(lang, Phrase::DistrictsBack));
        self.stage = Stage::Districts { page };
        self.play(prompts, out);
    }

    fn submit_pin(&mut self, out: &mut Vec<Action>) {
        let Stage::Pin { digits } = &self.stage else { return };
        let say = |p| Prompt::new(self.language, p);
        let Some(pin) = Pin::parse(digits) else {
            self.beds_menu(vec![say(Phrase::PinInvalid)], out);
            return;
        };
        let beds = &self.info.beds;
        let row = beds.pins.get(&pin).and_then(|d| beds.districts.iter().find(|r| r.district == *d));
        match row {
            Some(row) => {
                let answer = prompt::beds(self.language, row.district, row.vacant);
                self.self_served = true;
                self.main_menu(answer, out);
            }
            None => self.beds_menu(vec![say(Phrase::PinUnknown)], out),
        }
    }

    fn enqueue(&mut self, now: Millis, out: &mut Vec<Action>) {
        out.push(Action::Enqueue { language: self.language, emergency: false });
        self.record(Outcome::Queued { emergency: false }, out);
        self.stage = Stage::Queued(Wait { step: Step::Hold, offered: false });
        self.announcer.due = now;
        let say = |p| Prompt::new(self.language, p);
        self.play(vec![say(Phrase::QueueConnecting), say(Phrase::QueueOptions)], out);
    }

    fn emergency(&mut self, now: Millis, out: &mut Vec<Action>) {
        let offered = match &self.stage {
            Stage::Queued(w) => w.offered,
            _ => false,
        };
        if !self.announcer.emergency {
            self.announcer.emergency = true;
            out.push(Action::Enqueue { language: self.language, emergency: true });
            self.record(Outcome::Queued { emergency: true }, out);
            if !matches!(self.stage, Stage::Queued(_)) {
                self.announcer.due = now;
            }
        }
        self.stage = Stage::Queued(Wait { step: Step::Hold, offered });
        self.timer = None;
        if !offered {
            self.play(vec![Prompt::new(self.language, Phrase::EmergencyConnecting)], out);
        }
    }

    fn set_step(&mut self, step: Step) {
        if let Stage::Queued(w) = &mut self.stage {
            w.step = step;
        }
    }

    fn back_to_hold(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.set_step(Step::Hold);
        self.timer = None;
        if !self.announce(now, out) {
            self.hold_music(out);
        }
    }

    fn reenter(&mut self, out: &mut Vec<Action>) {
        self.set_step(Step::Number { digits: String::new() });
        let say = |p| Prompt::new(self.language, p);
        self.play(vec![say(Phrase::CallbackInvalidNumber), say(Phrase::CallbackEnterNumber)], out);
    }

    fn confirm(&mut self, number: PhoneNumber, mut prompts: Vec<Prompt>, out: &mut Vec<Action>) {
        let lang = self.language;
        prompts.push(Prompt::new(lang, Phrase::CallbackYouEntered));
        prompts.extend(prompt::digits(lang, number.as_str()));
        prompts.push(Prompt::new(lang, Phrase::CallbackConfirmMenu));
        self.set_step(Step::Confirm { number });
        self.play(prompts, out);
    }

    fn request_callback(&mut self, number: Option<PhoneNumber>, out: &mut Vec<Action>) {
        out.push(Action::RequestCallback { number });
        self.set_step(Step::Farewell);
        self.play(vec![Prompt::new(self.language, Phrase::CallbackConfirmed)], out);
    }

    /// Says the position and wait if one is due and may be said now;
    /// returns whether it did.
    fn announce(&mut self, now: Millis, out: &mut Vec<Action>) -> bool {
        let Stage::Queued(Wait { step: Step::Hold, offered: false }) = self.stage else { return false };
        let a = &self.announcer;
        if self.playing.is_some() || now < a.due {
            return false;
        }
        let Some((position, wait_secs)) = a.latest else { return false };
        let lang = self.language;
        let prompts = if position <= 1 {
            // At the head: no position, and "you are next" once at most.
            if a.said_position == Some(1) {
                return false;
            }
            self.announcer.said_position = Some(1);
            vec![Prompt::new(lang, Phrase::YouAreNext)]
        } else {
            if a.said_position.is_some_and(|said| position > said) {
                return false;
            }
            let mut prompts = prompt::position(lang, position);
            let minutes = prompt::wait_minutes(wait_secs);
            if a.said_minutes.is_none_or(|said| minutes <= said) {
                prompts.extend(prompt::wait(lang, wait_secs));
                self.announcer.said_minutes = Some(minutes);
            }
            self.announcer.said_position = Some(position);
            prompts
        };
        self.announcer.due = now + self.config.announce_every;
        self.play(prompts, out);
        true
    }

    fn play(&mut self, prompts: Vec<Prompt>, out: &mut Vec<Action>) {
        self.plays += 1;
        let playback = PlaybackId(self.plays);
        self.playing = Some(playback);
        self.music = false;
        self.timer = None;
        out.push(Action::Play { playback, prompts, interruptible: true });
    }

    fn hold_music(&mut self, out: &mut Vec<Action>) {
        if !self.music {
            self.music = true;
            self.playing = None;
            out.push(Action::HoldMusic);
        }
    }

    fn stop(&mut self, out: &mut Vec<Action>) {
        if self.playing.is_some() || self.music {
            out.push(Action::StopPlayback);
        }
        self.playing = None;
        self.music = false;
    }

    fn hang_up(&mut self, reason: HangUpReason, out: &mut Vec<Action>) {
        out.push(Action::HangUp { reason });
        self.end();
    }

    fn end(&mut self) {
        self.stage = Stage::Ended;
        self.playing = None;
        self.music = false;
        self.timer = None;
    }

    fn record(&mut self, outcome: Outcome, out: &mut Vec<Action>) {
        if !self.recorded {
            self.recorded = true;
            out.push(Action::Record { outcome });
        }
    }
}

/// Said before the language is chosen, so in both.
fn language_menu() -> Vec<Prompt> {
    Language::ALL.map(|l| Prompt::new(l, Phrase::LanguageMenu)).into()
}

fn blocked() -> Vec<Prompt> {
    Language::ALL.map(|l| Prompt::new(l, Phrase::Blocked)).into()
}
