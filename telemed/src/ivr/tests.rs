//! Scenario tests through the public API, on a simulated phone leg and clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::prompt::{self, District, Language, Phrase, Prompt};
use super::*;

const T0: Millis = 1_700_000_000_000;
/// Each prompt of a sequence takes this long on the simulated line.
const PROMPT_MS: Millis = 1_000;

fn p(language: Language, phrase: Phrase) -> Prompt {
    Prompt::new(language, phrase)
}
fn hi(phrase: Phrase) -> Prompt {
    p(Language::Hi, phrase)
}
fn en(phrase: Phrase) -> Prompt {
    p(Language::En, phrase)
}

/// What the caller hears now.
#[derive(Clone, Debug, PartialEq)]
enum Line {
    Silence,
    Prompts { playback: PlaybackId, prompts: Vec<Prompt>, ends: Millis },
    Music,
    Gone,
}

/// A phone leg that carries out the IVR's actions: plays end by themselves
/// after `PROMPT_MS` per prompt, and timers fire when due.
struct Phone {
    ivr: Ivr,
    now: Millis,
    line: Line,
    /// Every action with its instant.
    log: Vec<(Millis, Action)>,
}

impl Phone {
    fn new(caller: Caller) -> Phone {
        Phone::with(caller, self_service())
    }

    fn with(caller: Caller, info: SelfService) -> Phone {
        Phone { ivr: Ivr::new(IvrConfig::default(), caller, info), now: T0, line: Line::Silence, log: Vec::new() }
    }

    /// Answers the call; returns the actions.
    fn answer() -> Phone {
        let mut phone = Phone::new(Caller::default());
        phone.send(Event::Answered);
        phone
    }

    fn send(&mut self, event: Event) -> Vec<Action> {
        let actions = self.ivr.handle(self.now, event);
        for a in &actions {
            self.apply(a);
            self.log.push((self.now, a.clone()));
        }
        actions
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::Play { playback, prompts, interruptible } => {
                assert!(*interruptible, "every prompt is interruptible");
                assert!(!prompts.is_empty(), "an empty play");
                let all = Prompt::all();
                for p in prompts {
                    assert!(all.contains(p), "{p} is not in Prompt::all()");
                }
                let ends = self.now + PROMPT_MS * prompts.len() as Millis;
                self.line = Line::Prompts { playback: *playback, prompts: prompts.clone(), ends };
            }
            Action::StopPlayback => self.line = Line::Silence,
            Action::HoldMusic => self.line = Line::Music,
            Action::HangUp { .. } => self.line = Line::Gone,
            Action::Enqueue { .. } | Action::RequestCallback { .. } | Action::Record { .. } => {}
        }
    }

    fn press(&mut self, keys: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for key in keys.chars() {
            out.extend(self.send(Event::Key { key }));
        }
        out
    }

    /// Lets time pass to `until`, playing prompts to their end and firing timers.
    fn run_until(&mut self, until: Millis) -> Vec<Action> {
        let mut out = Vec::new();
        loop {
            let play_end = match &self.line {
                Line::Prompts { ends, .. } => Some(*ends),
                _ => None,
            };
            let next = [play_end, self.ivr.next_timer()].into_iter().flatten().min();
            let Some(next) = next.filter(|&t| t <= until) else { break };
            assert!(next >= self.now, "a timer in the past: {next} < {}", self.now);
            self.now = next;
            if play_end == Some(next) {
                let Line::Prompts { playback, .. } = self.line.clone() else { unreachable!() };
                self.line = Line::Silence;
                out.extend(self.send(Event::PlaybackFinished { playback }));
            } else {
                out.extend(self.send(Event::Tick));
            }
        }
        self.now = until;
        out
    }

    fn wait(&mut self, ms: Millis) -> Vec<Action> {
        self.run_until(self.now + ms)
    }

    /// Plays whatever plays to its end (and the reaction).
    fn hear_out(&mut self) -> Vec<Action> {
        match &self.line {
            Line::Prompts { ends, .. } => self.run_until(*ends),
            _ => Vec::new(),
        }
    }

    fn playing(&self) -> Vec<Prompt> {
        match &self.line {
            Line::Prompts { prompts, .. } => prompts.clone(),
            _ => Vec::new(),
        }
    }

    fn update(&mut self, position: u32, wait_secs: u32) -> Vec<Action> {
        self.send(Event::QueueUpdate { position, estimated_wait_secs: wait_secs })
    }

    fn outcomes(&self) -> Vec<Outcome> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Record { outcome } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    fn enqueues(&self) -> Vec<(Language, bool)> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Enqueue { language, emergency } => Some((*language, *emergency)),
                _ => None,
            })
            .collect()
    }

    /// The announcements said (plays with a position or "you are next"), with their instants.
    fn announcements(&self) -> Vec<(Millis, Vec<Prompt>)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Play { prompts, .. }
                    if prompts.iter().any(|p| matches!(p.phrase, Phrase::PositionIs | Phrase::YouAreNext)) =>
                {
                    Some((*t, prompts.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// To the Hindi or English main menu by keys.
    fn to_main(language: Language) -> Phone {
        let mut phone = Phone::answer();
        phone.press(if language == Language::Hi { "1" } else { "2" });
        phone
    }

    /// Queued, in `language`, with the connecting prompt heard.
    fn queued(language: Language, caller: Caller) -> Phone {
        let mut phone = Phone::new(caller);
        phone.send(Event::Answered);
        phone.press(if language == Language::Hi { "1" } else { "2" });
        phone.press("0");
        phone.hear_out();
        phone
    }
}

fn self_service() -> SelfService {
    let districts = District::ALL
        .iter()
        .enumerate()
        .map(|(i, &district)| DistrictBeds { district, vacant: 10 * i as u32 + 3 })
        .collect();
    let pins = BTreeMap::from([
        (Pin::parse("110002").unwrap(), District::Central),
        (Pin::parse("110095").unwrap(), District::Shahdara),
    ]);
    SelfService { hours: Hours::default(), beds: Beds { districts, pins } }
}

fn welcome() -> Vec<Prompt> {
    vec![
        hi(Phrase::Welcome),
        en(Phrase::Welcome),
        hi(Phrase::RecordingNotice),
        en(Phrase::RecordingNotice),
        hi(Phrase::EmergencyAnyTime),
        en(Phrase::EmergencyAnyTime),
        hi(Phrase::LanguageMenu),
        en(Phrase::LanguageMenu),
    ]
}

fn play(actions: &[Action]) -> Vec<Prompt> {
    let plays: Vec<&Vec<Prompt>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Play { prompts, .. } => Some(prompts),
            _ => None,
        })
        .collect();
    assert_eq!(plays.len(), 1, "one play in {actions:?}");
    plays[0].clone()
}

// ---- the flow ----

#[test]
fn ivr_default_path_is_hindi_then_the_queue() {
    let mut phone = Phone::new(Caller::default());
    let out = phone.send(Event::Answered);
    assert_eq!(play(&out), welcome());
    // Welcome, then two silences at the language menu: Hindi.
    let out = phone.hear_out();
    assert!(out.is_empty(), "silence after the language menu: {out:?}");
    let out = phone.wait(5_000);
    assert_eq!(play(&out), vec![hi(Phrase::LanguageMenu), en(Phrase::LanguageMenu)]);
    phone.hear_out();
    let out = phone.wait(5_000);
    assert_eq!(play(&out), vec![hi(Phrase::MainMenu)]);
    assert_eq!(phone.ivr.language(), Language::Hi);
    phone.hear_out();
    let out = phone.wait(5_000);
    assert_eq!(
        out,
        vec![
            Action::Enqueue { language: Language::Hi, emergency: false },
            Action::Record { outcome: Outcome::Queued { emergency: false } },
            Action::Play {
                playback: PlaybackId(4),
                prompts: vec![hi(Phrase::QueueConnecting), hi(Phrase::QueueOptions)],
                interruptible: true
            },
        ]
    );
    // No update yet: music.
    assert_eq!(phone.hear_out(), vec![Action::HoldMusic]);
    assert_eq!(phone.ivr.next_timer(), None);
}

#[test]
fn ivr_language_choice_by_key() {
    for (key, language) in [("1", Language::Hi), ("2", Language::En)] {
        let mut phone = Phone::answer();
        let out = phone.press(key);
        assert_eq!(play(&out), vec![p(language, Phrase::MainMenu)], "key {key}");
        assert_eq!(phone.ivr.language(), language);
        phone.press("0");
        assert_eq!(phone.enqueues(), vec![(language, false)]);
    }
}

#[test]
fn ivr_language_menu_invalid_key_says_it_again_in_both() {
    let mut phone = Phone::answer();
    phone.hear_out();
    for key in ["3", "#", "*", "0", "A"] {
        let out = phone.press(key);
        assert_eq!(
            play(&out),
            vec![
                hi(Phrase::InvalidChoice),
                en(Phrase::InvalidChoice),
                hi(Phrase::LanguageMenu),
                en(Phrase::LanguageMenu)
            ],
            "key {key}"
        );
    }
}

#[test]
fn ivr_main_menu_timeout_goes_to_the_queue_in_english_too() {
    let mut phone = Phone::to_main(Language::En);
    phone.hear_out();
    phone.wait(4_999);
    assert!(phone.enqueues().is_empty());
    phone.wait(1);
    assert_eq!(phone.enqueues(), vec![(Language::En, false)]);
    assert_eq!(phone.playing(), vec![en(Phrase::QueueConnecting), en(Phrase::QueueOptions)]);
}

#[test]
fn ivr_main_menu_invalid_keys() {
    for key in ["3", "4", "5", "6", "7", "8", "*", "#", "D"] {
        let mut phone = Phone::to_main(Language::En);
        let out = phone.press(key);
        assert_eq!(play(&out), vec![en(Phrase::InvalidChoice), en(Phrase::MainMenu)], "key {key}");
        assert!(phone.enqueues().is_empty());
    }
}

// ---- emergencies ----

#[test]
fn ivr_emergency_during_the_welcome_is_hindi_and_at_once() {
    let mut phone = Phone::answer();
    phone.wait(1_500); // the welcome still plays
    let out = phone.press("9");
    assert_eq!(
        out,
        vec![
            Action::Enqueue { language: Language::Hi, emergency: true },
            Action::Record { outcome: Outcome::Queued { emergency: true } },
            Action::Play {
                playback: PlaybackId(2),
                prompts: vec![hi(Phrase::EmergencyConnecting)],
                interruptible: true
            },
        ]
    );
}

#[test]
fn ivr_emergency_from_every_menu() {
    // (how to get there, language expected)
    let paths: [(&str, Language); 6] = [
        ("", Language::Hi),
        ("2", Language::En),
        ("22", Language::En),  // beds menu
        ("22*", Language::En), // district menu
        ("21", Language::En),  // hours, then the main menu
        ("1*", Language::Hi),  // invalid key at the main menu
    ];
    for (keys, language) in paths {
        let mut phone = Phone::answer();
        phone.press(keys);
        let out = phone.press("9");
        assert_eq!(out[0], Action::Enqueue { language, emergency: true }, "after {keys:?}");
        assert_eq!(play(&out), vec![p(language, Phrase::EmergencyConnecting)]);
        assert_eq!(phone.enqueues().len(), 1);
    }
}

#[test]
fn ivr_emergency_while_queued_refiles_the_call_once() {
    let mut phone = Phone::queued(Language::En, Caller::default());
    phone.update(12, 600);
    let out = phone.press("9");
    assert_eq!(out[0], Action::Enqueue { language: Language::En, emergency: true });
    assert_eq!(play(&out), vec![en(Phrase::EmergencyConnecting)]);
    // The outcome stays the first one: the call reached the queue.
    assert_eq!(phone.outcomes(), vec![Outcome::Queued { emergency: false }]);
    // 9 again, or any key: said again, not filed again; no callback for emergencies.
    for key in ["9", "5", "1"] {
        let out = phone.press(key);
        assert_eq!(play(&out), vec![en(Phrase::EmergencyConnecting)], "key {key}");
    }
    assert_eq!(phone.enqueues().len(), 2);
    assert!(!phone.log.iter().any(|(_, a)| matches!(a, Action::RequestCallback { .. })));
}

#[test]
fn ivr_nine_is_a_digit_inside_a_pin_but_emergency_as_its_first_key() {
    let mut phone = Phone::to_main(Language::En);
    phone.press("2");
    let out = phone.press("110095");
    assert_eq!(play(&out)[..2], [en(Phrase::BedsVacantIn), en(Phrase::District(District::Shahdara))]);
    assert!(phone.enqueues().is_empty());
    phone.press("2");
    phone.press("9");
    assert_eq!(phone.enqueues(), vec![(Language::En, true)]);
}

// ---- interrupting prompts ----

#[test]
fn ivr_a_key_interrupts_every_prompt_at_once() {
    // Each case: keys to reach a prompt, the prompt's first phrase, a key, what that key does.
    struct Case {
        keys: &'static str,
        first: Prompt,
        key: char,
        then: Prompt,
    }
    let cases = [
        Case { keys: "", first: hi(Phrase::Welcome), key: '2', then: en(Phrase::MainMenu) },
        Case { keys: "2", first: en(Phrase::MainMenu), key: '1', then: en(Phrase::HoursFrom) },
        Case { keys: "21", first: en(Phrase::HoursFrom), key: '2', then: en(Phrase::BedsMenu) },
        Case { keys: "22", first: en(Phrase::BedsMenu), key: '*', then: en(Phrase::For) },
        Case { keys: "22*", first: en(Phrase::For), key: '3', then: en(Phrase::BedsVacantIn) },
        Case { keys: "22*3", first: en(Phrase::BedsVacantIn), key: '1', then: en(Phrase::HoursFrom) },
        Case { keys: "2#", first: en(Phrase::InvalidChoice), key: '0', then: en(Phrase::QueueConnecting) },
        Case { keys: "20", first: en(Phrase::QueueConnecting), key: '7', then: en(Phrase::InvalidChoice) },
    ];
    for c in cases {
        let mut phone = Phone::answer();
        phone.press(c.keys);
        phone.wait(PROMPT_MS / 2);
        assert_eq!(phone.playing().first(), Some(&c.first), "after {:?}", c.keys);
        let out = phone.press(&c.key.to_string());
        assert_eq!(play(&out).first(), Some(&c.then), "{:?} then {}", c.keys, c.key);
    }
}

#[test]
fn ivr_a_key_starting_an_entry_stops_the_prompt() {
    let mut phone = Phone::to_main(Language::Hi);
    phone.press("2");
    assert_eq!(phone.press("1"), vec![Action::StopPlayback]);
    assert_eq!(phone.line, Line::Silence);
}

#[test]
fn ivr_stale_playback_finished_is_ignored() {
    let mut phone = Phone::answer();
    let Line::Prompts { playback: welcome, .. } = phone.line.clone() else { panic!() };
    phone.press("2");
    // The phone leg reports the end of the welcome the key replaced.
    assert_eq!(phone.send(Event::PlaybackFinished { playback: welcome }), vec![]);
    assert_eq!(phone.ivr.next_timer(), None, "the main menu still plays: no timeout started");
}

// ---- self-service ----

#[test]
fn ivr_hours_in_both_languages() {
    let mut phone = Phone::to_main(Language::En);
    let out = phone.press("1");
    let n = |x| en(Phrase::Number(x));
    assert_eq!(
        play(&out),
        vec![
            en(Phrase::HoursFrom),
            n(6),
            en(Phrase::PeriodMorning),
            en(Phrase::HoursTo),
            n(10),
            en(Phrase::PeriodNight),
            en(Phrase::HoursDoctors),
            en(Phrase::MainMenu),
        ]
    );
    let mut phone = Phone::to_main(Language::Hi);
    let out = phone.press("1");
    let n = |x| hi(Phrase::Number(x));
    assert_eq!(
        play(&out),
        vec![
            hi(Phrase::HoursFrom),
            hi(Phrase::PeriodMorning),
            n(6),
            hi(Phrase::OclockFrom),
            hi(Phrase::PeriodNight),
            n(10),
            hi(Phrase::OclockUntil),
            hi(Phrase::HoursEnd),
            hi(Phrase::HoursDoctors),
            hi(Phrase::MainMenu),
        ]
    );
    // After the answer and the menu, silence means the queue.
    phone.hear_out();
    phone.wait(5_000);
    assert_eq!(phone.enqueues(), vec![(Language::Hi, false)]);
}

#[test]
fn ivr_beds_by_district_menu_with_pages() {
    let mut phone = Phone::to_main(Language::En);
    phone.press("2");
    let out = phone.press("*");
    let mut expected = Vec::new();
    for (i, d) in District::ALL[..8].iter().enumerate() {
        expected.extend(prompt::district_choice(Language::En, *d, i as u8 + 1));
    }
    expected.extend([en(Phrase::DistrictsMore), en(Phrase::DistrictsBack)]);
    assert_eq!(play(&out), expected);
    // Page two: three districts; key 4 means nothing there.
    let out = phone.press("0");
    assert_eq!(play(&out)[..4], prompt::district_choice(Language::En, District::SouthEast, 1)[..]);
    let out = phone.press("4");
    assert_eq!(play(&out)[..2], [en(Phrase::InvalidChoice), en(Phrase::For)]);
    // South West is the tenth: 13 + 10 * 9 = 93 vacant.
    let out = phone.press("2");
    let mut answer = prompt::beds(Language::En, District::SouthWest, 93);
    answer.push(en(Phrase::MainMenu));
    assert_eq!(play(&out), answer);
    assert_eq!(
        answer[..3],
        [en(Phrase::BedsVacantIn), en(Phrase::District(District::SouthWest)), en(Phrase::Number(93))]
    );
    // 0 wraps to the first page; * goes back to the PIN code.
    phone.press("22*0");
    let out = phone.press("0");
    assert_eq!(play(&out)[..4], prompt::district_choice(Language::En, District::Central, 1)[..]);
    let out = phone.press("*");
    assert_eq!(play(&out), vec![en(Phrase::BedsMenu)]);
    // Hanging up now: self-served.
    phone.send(Event::HungUp);
    assert_eq!(phone.outcomes(), vec![Outcome::SelfServed]);
}

#[test]
fn ivr_beds_by_pin_code() {
    // (keys after the beds menu, what is said first)
    let cases: [(&str, Vec<Prompt>); 6] = [
        ("110002", prompt::beds(Language::Hi, District::Central, 3)),
        // The # after a sixth digit ends the entry, not the answer.
        ("110002#", prompt::beds(Language::Hi, District::Central, 3)),
        ("110001", vec![hi(Phrase::PinUnknown), hi(Phrase::BedsMenu)]),
        ("1100#", vec![hi(Phrase::PinInvalid), hi(Phrase::BedsMenu)]),
        ("#", vec![hi(Phrase::InvalidChoice), hi(Phrase::BedsMenu)]),
        ("0", vec![hi(Phrase::InvalidChoice), hi(Phrase::BedsMenu)]),
    ];
    for (keys, said) in cases {
        let mut phone = Phone::to_main(Language::Hi);
        phone.press("2");
        phone.press(keys);
        let playing = phone.playing();
        assert_eq!(playing[..said.len()], said[..], "keys {keys}");
    }
}

#[test]
fn ivr_pin_entry_times_out_between_digits() {
    let mut phone = Phone::to_main(Language::En);
    phone.press("2");
    phone.press("110");
    assert_eq!(phone.line, Line::Silence);
    let out = phone.wait(5_000);
    assert_eq!(play(&out), vec![en(Phrase::PinInvalid), en(Phrase::BedsMenu)]);
    // Silence at the beds menu: back to the main menu, then the queue.
    phone.hear_out();
    let out = phone.wait(5_000);
    assert_eq!(play(&out), vec![en(Phrase::MainMenu)]);
    phone.hear_out();
    phone.wait(5_000);
    assert_eq!(phone.enqueues(), vec![(Language::En, false)]);
    // Nothing was answered: hanging up in the queue keeps the outcome Queued.
    phone.send(Event::HungUp);
    assert_eq!(phone.outcomes(), vec![Outcome::Queued { emergency: false }]);
}

#[test]
fn ivr_no_bed_data_says_so() {
    let mut phone = Phone::with(Caller::default(), SelfService::default());
    phone.send(Event::Answered);
    phone.press("2");
    let out = phone.press("2");
    assert_eq!(play(&out), vec![en(Phrase::BedsUnavailable), en(Phrase::MainMenu)]);
}

// ---- the queue ----

#[test]
fn ivr_queue_announcements_every_minute_from_the_last() {
    let mut phone = Phone::queued(Language::En, Caller::default());
    assert_eq!(phone.line, Line::Music);
    let start = phone.now;
    // The first update is said at once (the connecting prompt is over).
    let out = phone.update(5, 290);
    let mut first = prompt::position(Language::En, 5);
    first.extend(prompt::wait(Language::En, 290));
    assert_eq!(play(&out), first);
    assert_eq!(first[first.len() - 2..], [en(Phrase::Number(5)), en(Phrase::Minutes)]);
    assert_eq!(phone.hear_out(), vec![Action::HoldMusic]);
    // Updates every 10 s say nothing before the minute is up.
    for i in 1..6 {
        phone.run_until(start + i * 10_000);
        assert!(phone.update(4, 230).is_empty(), "update {i}");
    }
    let out = phone.run_until(start + 60_000);
    let mut second = prompt::position(Language::En, 4);
    second.extend(prompt::wait(Language::En, 230));
    assert_eq!(play(&out), second);
    phone.hear_out();
    phone.run_until(start + 120_000);
    assert_eq!(phone.announcements().iter().map(|(t, _)| t - start).collect::<Vec<_>>(), vec![0, 60_000, 120_000]);
}

#[test]
fn ivr_queue_never_says_a_worse_place_or_a_longer_wait() {
    let mut phone = Phone::queued(Language::Hi, Caller::default());
    let start = phone.now;
    phone.update(3, 170);
    phone.hear_out();
    // Staff logged out: worse. Skipped at the minute, and no busy timer.
    phone.update(6, 400);
    assert!(phone.run_until(start + 60_000).is_empty());
    assert_eq!(phone.ivr.next_timer(), None);
    // Back to 3 (equal is said again, so announcements never fall silent),
    // but the wait is longer than said: left out.
    phone.run_until(start + 65_000);
    let out = phone.update(3, 250);
    assert_eq!(play(&out), prompt::position(Language::Hi, 3));
    phone.hear_out();
    // Better, and a shorter wait.
    phone.run_until(start + 124_000);
    assert!(phone.update(2, 50).is_empty(), "not a minute since the last");
    let out = phone.run_until(start + 125_000);
    let mut expected = prompt::position(Language::Hi, 2);
    expected.push(hi(Phrase::WaitUnderMinute));
    assert_eq!(play(&out), expected);
    let said: Vec<u32> = phone
        .announcements()
        .iter()
        .map(|(_, ps)| match ps[1].phrase {
            Phrase::Number(n) => n as u32,
            _ => panic!(),
        })
        .collect();
    assert_eq!(said, vec![3, 3, 2]);
    assert!(said.windows(2).all(|w| w[1] <= w[0]));
}

#[test]
fn ivr_queue_head_hears_you_are_next_once_and_no_position() {
    let mut phone = Phone::queued(Language::En, Caller::default());
    let start = phone.now;
    let out = phone.update(1, 20);
    assert_eq!(play(&out), vec![en(Phrase::YouAreNext)]);
    phone.hear_out();
    for i in 1..=5 {
        phone.run_until(start + i * 60_000);
        assert!(phone.update(1, 10).is_empty());
    }
    // A worse place later is not said either.
    assert!(phone.update(2, 100).is_empty());
    phone.wait(120_000);
    assert_eq!(phone.announcements().len(), 1);
    assert_eq!(phone.line, Line::Music);
}

#[test]
fn ivr_queue_says_nothing_while_offered_and_stops_at_once() {
    let mut phone = Phone::queued(Language::En, Caller::default());
    let start = phone.now;
    phone.update(4, 200);
    // Offered while the announcement plays: it stops at once, music rings on.
    phone.wait(500);
    assert!(!phone.playing().is_empty());
    assert_eq!(phone.send(Event::Offered), vec![Action::StopPlayback, Action::HoldMusic]);
    // Updates and the minute pass: nothing said; keys other than 9 do nothing.
    phone.run_until(start + 61_000);
    assert!(phone.update(2, 60).is_empty());
    assert!(phone.press("5").is_empty());
    assert!(phone.run_until(start + 130_000).is_empty());
    // Withdrawn: the due announcement is said now.
    let out = phone.send(Event::OfferWithdrawn);
    assert_eq!(play(&out)[..2], [en(Phrase::PositionIs), en(Phrase::Number(2))]);
    // Offered again, then connected: all playback stops, and the IVR is done.
    phone.hear_out();
    assert_eq!(phone.send(Event::Offered), vec![]);
    assert_eq!(phone.send(Event::Connected), vec![Action::StopPlayback]);
    assert_eq!(phone.line, Line::Silence);
    assert!(phone.update(1, 0).is_empty());
    assert!(phone.press("9").is_empty());
    assert_eq!(phone.ivr.next_timer(), None);
    assert!(phone.wait(600_000).is_empty());
}

#[test]
fn ivr_connection_stops_even_the_welcome() {
    // Offered and connected straight after an emergency during the welcome.
    let mut phone = Phone::answer();
    phone.press("9");
    assert_eq!(phone.send(Event::Offered), vec![Action::StopPlayback, Action::HoldMusic]);
    assert_eq!(phone.send(Event::Connected), vec![Action::StopPlayback]);
}

#[test]
fn ivr_offered_during_a_callback_number_entry() {
    let mut phone = Phone::queued(Language::En, Caller { blocked: false, number_withheld: true });
    phone.press("5981");
    assert_eq!(phone.line, Line::Silence);
    assert_eq!(phone.send(Event::Offered), vec![Action::HoldMusic]);
    assert_eq!(phone.ivr.next_timer(), None);
    phone.send(Event::Connected);
    assert!(!phone.log.iter().any(|(_, a)| matches!(a, Action::RequestCallback { .. })));
}

#[test]
fn ivr_callback_with_caller_id() {
    let mut phone = Phone::queued(Language::Hi, Caller::default());
    let out = phone.press("5");
    assert_eq!(out[0], Action::RequestCallback { number: None });
    assert_eq!(play(&out), vec![hi(Phrase::CallbackConfirmed)]);
    assert_eq!(phone.hear_out(), vec![Action::HangUp { reason: HangUpReason::CallbackRequested }]);
    assert_eq!(phone.outcomes(), vec![Outcome::Queued { emergency: false }]);
    assert!(phone.send(Event::HungUp).is_empty());
}

#[test]
fn ivr_callback_with_withheld_caller_id_collects_the_number() {
    let mut phone = Phone::queued(Language::En, Caller { blocked: false, number_withheld: true });
    let out = phone.press("5");
    assert_eq!(play(&out), vec![en(Phrase::CallbackEnterNumber)]);
    // Too short, then #: asked again.
    phone.press("98765#");
    assert_eq!(phone.playing(), vec![en(Phrase::CallbackInvalidNumber), en(Phrase::CallbackEnterNumber)]);
    // Ten digits (with 9s): read back.
    let out = phone.press("9876543210");
    let mut readback = vec![en(Phrase::CallbackYouEntered)];
    readback.extend(prompt::digits(Language::En, "9876543210"));
    readback.push(en(Phrase::CallbackConfirmMenu));
    assert_eq!(play(&out), readback);
    assert_eq!(readback[1], en(Phrase::Number(9)));
    // Re-enter, then confirm.
    phone.press("2");
    phone.press("8800112233#");
    assert_eq!(phone.playing().last(), Some(&en(Phrase::CallbackConfirmMenu)), "the # ended the entry");
    let out = phone.press("1");
    assert_eq!(out[0], Action::RequestCallback { number: PhoneNumber::parse("8800112233") });
    assert_eq!(phone.hear_out(), vec![Action::HangUp { reason: HangUpReason::CallbackRequested }]);
    // 9s during the entry were digits: no emergency.
    assert_eq!(phone.enqueues(), vec![(Language::En, false)]);
}

#[test]
fn ivr_callback_entry_star_and_timeouts_go_back_to_the_queue() {
    let mut phone = Phone::queued(Language::En, Caller { blocked: false, number_withheld: true });
    phone.press("5");
    assert_eq!(phone.press("*"), vec![Action::HoldMusic]);
    // Silence at the prompt: back to hold.
    phone.press("5");
    phone.hear_out();
    assert_eq!(phone.wait(5_000), vec![Action::HoldMusic]);
    // Part of a number, then silence: asked again.
    phone.press("5");
    phone.press("98");
    let out = phone.wait(5_000);
    assert_eq!(play(&out), vec![en(Phrase::CallbackInvalidNumber), en(Phrase::CallbackEnterNumber)]);
    // At the confirmation, 9 is emergency again.
    phone.press("9876543210");
    let out = phone.press("9");
    assert_eq!(out[0], Action::Enqueue { language: Language::En, emergency: true });
    assert!(!phone.log.iter().any(|(_, a)| matches!(a, Action::RequestCallback { .. })));
}

#[test]
fn ivr_queue_invalid_key_says_the_options() {
    let mut phone = Phone::queued(Language::Hi, Caller::default());
    let out = phone.press("3");
    assert_eq!(play(&out), vec![hi(Phrase::InvalidChoice), hi(Phrase::QueueOptions)]);
    assert_eq!(phone.hear_out(), vec![Action::HoldMusic]);
}

#[test]
fn ivr_a_key_interrupts_an_announcement() {
    let mut phone = Phone::queued(Language::En, Caller::default());
    phone.update(6, 500);
    phone.wait(PROMPT_MS);
    assert_eq!(phone.playing()[0], en(Phrase::PositionIs));
    let out = phone.press("5");
    assert_eq!(out[0], Action::RequestCallback { number: None });
    assert_eq!(play(&out), vec![en(Phrase::CallbackConfirmed)]);
    // A key during the farewell hangs up at once.
    assert_eq!(phone.press("1"), vec![Action::HangUp { reason: HangUpReason::CallbackRequested }]);
}

#[test]
fn ivr_announcement_waits_for_a_playing_prompt() {
    let mut phone = Phone::queued(Language::En, Caller::default());
    phone.press("3");
    // The update comes while the options play: said right after them.
    assert!(phone.update(7, 400).is_empty());
    let out = phone.hear_out();
    assert_eq!(play(&out)[..2], [en(Phrase::PositionIs), en(Phrase::Number(7))]);
}

// ---- blocked callers ----

#[test]
fn ivr_blocked_caller_hears_the_message_and_is_hung_up_on() {
    let mut phone = Phone::new(Caller { blocked: true, number_withheld: false });
    let out = phone.send(Event::Answered);
    assert_eq!(play(&out), vec![hi(Phrase::Blocked), en(Phrase::Blocked)]);
    phone.hear_out();
    let out = phone.wait(5_000);
    assert_eq!(
        out,
        vec![Action::Record { outcome: Outcome::Blocked }, Action::HangUp { reason: HangUpReason::Blocked }]
    );
    assert!(phone.enqueues().is_empty());
}

#[test]
fn ivr_blocked_caller_keys_replay_then_hang_up() {
    let mut phone = Phone::new(Caller { blocked: true, number_withheld: false });
    phone.send(Event::Answered);
    for _ in 0..2 {
        let out = phone.press("0");
        assert_eq!(play(&out), vec![hi(Phrase::Blocked), en(Phrase::Blocked)]);
    }
    let out = phone.press("0");
    assert_eq!(out.last(), Some(&Action::HangUp { reason: HangUpReason::Blocked }));
    assert!(phone.enqueues().is_empty());
}

#[test]
fn ivr_blocked_caller_pressing_9_is_an_emergency() {
    let mut phone = Phone::new(Caller { blocked: true, number_withheld: false });
    phone.send(Event::Answered);
    phone.wait(300);
    let out = phone.press("9");
    assert_eq!(out[0], Action::Enqueue { language: Language::Hi, emergency: true });
    assert_eq!(phone.outcomes(), vec![Outcome::Queued { emergency: true }]);
    phone.wait(60_000);
    assert!(!phone.log.iter().any(|(_, a)| matches!(a, Action::HangUp { .. })));
}

// ---- hang-ups ----

#[test]
fn ivr_hang_up_at_each_stage() {
    // (keys before hanging up, blocked, outcome)
    let cases: [(&str, bool, Outcome); 10] = [
        ("", false, Outcome::AbandonedInIvr),
        ("2", false, Outcome::AbandonedInIvr),
        ("22", false, Outcome::AbandonedInIvr),
        ("22110", false, Outcome::AbandonedInIvr),
        ("21", false, Outcome::SelfServed),
        ("22110002", false, Outcome::SelfServed),
        ("22*1", false, Outcome::SelfServed),
        ("20", false, Outcome::Queued { emergency: false }),
        ("", true, Outcome::Blocked),
        ("9", true, Outcome::Queued { emergency: true }),
    ];
    for (keys, blocked, outcome) in cases {
        let mut phone = Phone::new(Caller { blocked, number_withheld: false });
        phone.send(Event::Answered);
        phone.press(keys);
        let out = phone.send(Event::HungUp);
        assert!(out.iter().all(|a| matches!(a, Action::Record { .. })), "{keys}: {out:?}");
        assert_eq!(phone.outcomes(), vec![outcome], "keys {keys:?}, blocked {blocked}");
        assert_eq!(phone.ivr.next_timer(), None);
        assert!(phone.press("9").is_empty(), "nothing after the hang-up");
    }
    // Before the answer.
    let mut phone = Phone::new(Caller::default());
    assert!(phone.press("1").is_empty());
    phone.send(Event::HungUp);
    assert_eq!(phone.outcomes(), vec![Outcome::AbandonedInIvr]);
}

#[test]
fn ivr_same_inputs_same_outputs() {
    let run = || {
        let mut phone = Phone::queued(Language::En, Caller { blocked: false, number_withheld: true });
        phone.update(9, 900);
        phone.wait(70_000);
        phone.update(8, 800);
        phone.press("5123");
        phone.wait(20_000);
        phone.log
    };
    assert_eq!(run(), run());
}

// ---- prompts ----

#[test]
fn ivr_numbers_compose_above_a_hundred() {
    let n = |l, x| p(l, Phrase::Number(x));
    assert_eq!(prompt::number(Language::Hi, 42), vec![n(Language::Hi, 42)]);
    assert_eq!(prompt::number(Language::En, 100), vec![n(Language::En, 100)]);
    assert_eq!(prompt::number(Language::Hi, 342), vec![n(Language::Hi, 3), hi(Phrase::Hundred), n(Language::Hi, 42)]);
    assert_eq!(
        prompt::number(Language::En, 342),
        vec![n(Language::En, 3), en(Phrase::Hundred), en(Phrase::And), n(Language::En, 42)]
    );
    assert_eq!(prompt::number(Language::En, 300), vec![n(Language::En, 3), en(Phrase::Hundred)]);
    assert_eq!(
        prompt::number(Language::Hi, 12_005),
        vec![n(Language::Hi, 12), hi(Phrase::Thousand), n(Language::Hi, 5)]
    );
    assert_eq!(
        prompt::number(Language::En, 99_999),
        vec![
            n(Language::En, 99),
            en(Phrase::Thousand),
            n(Language::En, 9),
            en(Phrase::Hundred),
            en(Phrase::And),
            n(Language::En, 99)
        ]
    );
    assert_eq!(prompt::number(Language::Hi, 100_000), vec![hi(Phrase::LakhOrMore)]);
    let all: BTreeSet<Prompt> = Prompt::all().into_iter().collect();
    for l in Language::ALL {
        for x in (0..2_000).chain([54_321, 99_999, 100_000, u32::MAX]) {
            for p in prompt::number(l, x) {
                assert!(all.contains(&p), "{p} for {x}");
            }
        }
    }
}

#[test]
fn ivr_wait_in_minutes() {
    assert_eq!(prompt::wait(Language::En, 59), vec![en(Phrase::WaitUnderMinute)]);
    assert_eq!(prompt::wait(Language::En, 60), vec![en(Phrase::WaitAbout), en(Phrase::Number(1)), en(Phrase::Minute)]);
    assert_eq!(prompt::wait(Language::Hi, 61), vec![hi(Phrase::WaitAbout), hi(Phrase::Number(2)), hi(Phrase::Minutes)]);
}

#[test]
fn ivr_prompt_ids_round_trip() {
    let p = hi(Phrase::Number(42));
    assert_eq!(p.file(), "hi/number-42");
    assert_eq!(en(Phrase::PositionIs).file(), "en/position-is");
    assert_eq!(en(Phrase::District(District::NorthEast)).file(), "en/district-north-east");
    assert_eq!(serde_json::to_string(&p).unwrap(), "\"hi/number-42\"");
    for p in Prompt::all() {
        assert_eq!(p.file().parse::<Prompt>(), Ok(p));
    }
    assert!("hi/and".parse::<Prompt>().is_err(), "Hindi has no 'and'");
    assert_eq!("North East".parse(), Ok(District::NorthEast));
    assert_eq!("new delhi".parse(), Ok(District::NewDelhi));
    assert_eq!("Shahdara".parse(), Ok(District::Shahdara));
    assert!("Gurugram".parse::<District>().is_err());
}

/// The one list of prompts: `prompts.tsv` has exactly the prompts the IVR
/// can play, and each has its recording.
#[test]
fn ivr_every_prompt_has_a_row_and_a_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let table = std::fs::read_to_string(dir.join("prompts.tsv")).expect("prompts/prompts.tsv");
    let mut rows = BTreeSet::new();
    for line in table.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "row {line:?}");
        assert!(!cols[2].trim().is_empty(), "no text for {line:?}");
        assert!(rows.insert(format!("{}/{}", cols[0], cols[1])), "{line:?} is listed twice");
    }
    let all: BTreeSet<String> = Prompt::all().iter().map(Prompt::file).collect();
    let missing: Vec<_> = all.difference(&rows).collect();
    let unused: Vec<_> = rows.difference(&all).collect();
    assert!(missing.is_empty(), "prompts with no row in prompts.tsv: {missing:?}");
    assert!(unused.is_empty(), "rows of prompts the IVR never plays: {unused:?}");
    let absent: Vec<_> = all.iter().filter(|f| !dir.join(format!("{f}.wav")).is_file()).collect();
    assert!(absent.is_empty(), "run telemed/scripts/make-prompts.sh; no recording for {absent:?}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Exactly ten ASCII digits, kept as keyed; anything else (other
        /// lengths, Unicode digits such as Devanagari ४) is refused.
        #[test]
        fn a_phone_number_is_ten_ascii_digits(s in "\\PC{0,12}|[0-9]{9,11}|[0-9०-९]{10}") {
            let ten_digits = s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit());
            match PhoneNumber::parse(&s) {
                Some(n) => {
                    prop_assert!(ten_digits, "{s:?}");
                    prop_assert_eq!(n.as_str(), s.as_str());
                }
                None => prop_assert!(!ten_digits, "{s:?}"),
            }
        }

        #[test]
        fn a_pin_is_six_digits_not_starting_with_0(s in "\\PC{0,8}|[0-9]{5,7}|[0-9०-९]{6}") {
            let valid = s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
            match Pin::parse(&s) {
                Some(pin) => {
                    prop_assert!(valid, "{s:?}");
                    prop_assert_eq!(pin.get().to_string(), s);
                }
                None => prop_assert!(!valid, "{s:?}"),
            }
        }

        #[test]
        fn every_pin_code_round_trips(code in 100_000u32..1_000_000) {
            prop_assert_eq!(Pin::parse(&code.to_string()).map(Pin::get), Some(code));
            prop_assert_eq!(Pin::parse(&format!("0{}", code % 100_000)), None);
        }
    }
}
