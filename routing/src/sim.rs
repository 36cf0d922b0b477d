//! The day simulator: a day of arrivals through the real engine on a
//! simulated clock, to compare what the helpline achieves with what Erlang C
//! predicts, and to measure the error of the estimated waits callers hear.
//!
//! Arrivals are Poisson per 30-minute interval of a [`DayProfile`]; handle
//! times and caller patience are exponential with configurable means. Agents
//! accept every offer after a short ring. Everything is drawn from one seeded
//! generator, so a seed gives the same day.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::Serialize;

use crate::engine::*;
use crate::staffing::{StaffingInput, evaluate};

const MIN: Millis = 60_000;

/// Contacts expected per 30-minute interval, from local midnight.
#[derive(Clone, Debug, PartialEq)]
pub struct DayProfile {
    pub calls: Vec<f64>,
}

impl DayProfile {
    /// Reads `start,calls` rows (48 of them, `HH:MM` on the half hour).
    pub fn from_csv(text: &str) -> Result<DayProfile, String> {
        let mut calls = vec![0.0; 48];
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let (start, count) = line.split_once(',').ok_or_else(|| format!("line {}: expected start,calls", n + 1))?;
            let (h, m) = start.trim().split_once(':').ok_or_else(|| format!("line {}: start is HH:MM", n + 1))?;
            let slot =
                h.parse::<usize>().ok().zip(m.parse::<usize>().ok()).filter(|(h, m)| *h < 24 && (*m == 0 || *m == 30));
            let (h, m) = slot.ok_or_else(|| format!("line {}: `{start}` is not a half hour", n + 1))?;
            let count: f64 =
                count.trim().parse().map_err(|_| format!("line {}: calls `{count}` is not a number", n + 1))?;
            if !(count.is_finite() && count >= 0.0) {
                return Err(format!("line {}: calls must be zero or more", n + 1));
            }
            calls[h * 2 + m / 30] = count;
        }
        Ok(DayProfile { calls })
    }
}

/// How the simulated helpline is staffed and behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    /// Operators on the 06–14, 14–22 and 10–18 (peak) shifts.
    pub operators: [usize; 3],
    pub aht_seconds: f64,
    /// Mean patience before a waiting caller hangs up.
    pub patience_seconds: f64,
    pub target_seconds: f64,
    pub routing: RoutingConfig,
}

impl SimConfig {
    /// The helpline of the brief: 40 regular seats over two shifts and 5 peak seats.
    pub fn helpline(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            operators: [20, 18, 5],
            aht_seconds: 240.0,
            patience_seconds: 180.0,
            target_seconds: 20.0,
            routing: RoutingConfig { night_to_idle_doctor: false, ..RoutingConfig::default() },
        }
    }
}

/// One interval's results beside the Erlang C and Erlang A predictions for the agents on duty.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntervalResult {
    pub start: String,
    pub offered: u32,
    /// Night callers promised a callback at 06:00 (not in the other figures).
    pub callbacks: u32,
    pub answered: u32,
    pub abandoned: u32,
    pub service_level: Option<f64>,
    pub asa_seconds: Option<f64>,
    pub agents: u32,
    pub erlang_c_service_level: Option<f64>,
    /// Erlang A with the callers' mean patience.
    pub erlang_a_service_level: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub intervals: Vec<IntervalResult>,
    pub offered: u32,
    pub answered: u32,
    pub abandoned: u32,
    pub callbacks: u32,
    pub service_level: f64,
    /// Mean absolute error of each model's service level over the intervals
    /// with operators and at least 20 contacts.
    pub erlang_c_error: f64,
    pub erlang_a_error: f64,
    /// Mean absolute error of the first estimated wait a caller heard, against
    /// the wait they had until answered, seconds.
    pub estimate_mae_seconds: f64,
    /// The same, as a share of the mean actual wait.
    pub estimate_mean_wait_seconds: f64,
}

/// xorshift64*: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.next()).ln()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pending {
    Arrive(usize),
    Accept(i64, usize),
    End(usize),
    Abandon(usize),
}

#[derive(Clone, Debug, Default)]
struct Fate {
    arrived: Millis,
    answered: Option<Millis>,
    abandoned: bool,
    /// Told they will be called back (at night): they hang up and wait.
    callback: bool,
    first_estimate: Option<Millis>,
}

fn roster(cfg: &SimConfig) -> Roster {
    let windows = [(6, 14, false), (14, 22, false), (10, 18, true)];
    let mut agents = Vec::new();
    let mut shifts = Vec::new();
    let mut next_id = 1;
    for (i, (start, end, peak)) in windows.iter().enumerate() {
        let ids: Vec<AgentId> = (0..cfg.operators[i]).map(|k| AgentId(next_id + k as i64)).collect();
        next_id += cfg.operators[i] as i64;
        for id in &ids {
            agents.push(AgentProfile {
                id: *id,
                role: Role::Operator,
                languages: vec!["hi".into(), "en".into()],
                specialty: None,
            });
        }
        shifts.push(Shift {
            role: Role::Operator,
            start: start * 60 * MIN,
            end: end * 60 * MIN,
            peak: *peak,
            agents: ids,
        });
    }
    // Tomorrow's morning shift, so that night callers are promised a callback at 06:00.
    let morning = shifts[0].clone();
    shifts.push(Shift { start: morning.start + 24 * 60 * MIN, end: morning.end + 24 * 60 * MIN, ..morning });
    let seats = (1..=45).map(|i| Seat { id: SeatId(i), peak: i > 40 }).collect();
    Roster { agents, seats, shifts }
}

/// Runs a day and reports it.
pub fn simulate(profile: &DayProfile, cfg: &SimConfig) -> SimReport {
    let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let roster = roster(cfg);
    let mut engine = Engine::new(roster.clone(), cfg.routing.clone());
    let mut queue: BinaryHeap<Reverse<(Millis, u64, Pending)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |q: &mut BinaryHeap<Reverse<(Millis, u64, Pending)>>, at: Millis, p: Pending| {
        seq += 1;
        q.push(Reverse((at, seq, p)));
    };
    // Arrivals.
    let mut fates: Vec<Fate> = Vec::new();
    for (slot, calls) in profile.calls.iter().enumerate() {
        if *calls <= 0.0 {
            continue;
        }
        let start = slot as Millis * 30 * MIN;
        let mean_gap = 30.0 * 60.0 / calls;
        let mut t = rng.exp(mean_gap);
        while t < 30.0 * 60.0 {
            let at = start + (t * 1000.0) as Millis;
            fates.push(Fate { arrived: at, ..Fate::default() });
            push(&mut queue, at, Pending::Arrive(fates.len() - 1));
            t += rng.exp(mean_gap);
        }
    }
    // Agents log in at the start of their shift, ready: the morning and
    // evening shifts on seats 1–40 (the evening after the morning's, since
    // agents finish their last call before they leave), the peak shift on 41–45.
    let mut logged: Vec<(Millis, Millis, AgentId, i64)> = Vec::new();
    let mut regular = 1..=40i64;
    for shift in &roster.shifts {
        let mut peak = 41..=45i64;
        for a in &shift.agents {
            let seat = if shift.peak { peak.next() } else { regular.next() };
            if let Some(seat) = seat {
                logged.push((shift.start, shift.end, *a, seat));
            }
        }
    }
    let mut actions_at: Vec<(Millis, Event)> = Vec::new();
    for (start, end, agent, seat) in &logged {
        actions_at.push((*start, Event::Login { agent: *agent, seat: SeatId(*seat) }));
        actions_at.push((*start, Event::Ready { agent: *agent }));
        actions_at.push((*end + 15 * MIN, Event::Logout { agent: *agent }));
    }
    let mut scripted: BinaryHeap<Reverse<(Millis, u64, String)>> = BinaryHeap::new();
    let mut scripted_events: HashMap<u64, Event> = HashMap::new();
    for (i, (at, ev)) in actions_at.into_iter().enumerate() {
        scripted.push(Reverse((at, i as u64, String::new())));
        scripted_events.insert(i as u64, ev);
    }
    let mut callbacks = 0u32;
    let contact_id = |i: usize| ContactId(format!("c{i}"));
    let index = |c: &ContactId| c.0[1..].parse::<usize>().expect("simulated id");
    let end_of_day = 26 * 60 * MIN;
    loop {
        let next_pending = queue.peek().map(|Reverse((t, _, _))| *t);
        let next_scripted = scripted.peek().map(|Reverse((t, _, _))| *t);
        let next_timer = engine.next_timer().filter(|t| *t <= end_of_day);
        let Some(now) = [next_pending, next_scripted, next_timer].into_iter().flatten().min() else { break };
        let event = if next_scripted == Some(now) {
            let Reverse((_, k, _)) = scripted.pop().expect("peeked");
            scripted_events.remove(&k).expect("scripted")
        } else if next_pending == Some(now) {
            let Reverse((_, _, p)) = queue.pop().expect("peeked");
            match p {
                Pending::Arrive(i) => {
                    let r = rng.next();
                    let language = if r < 0.7 {
                        "hi"
                    } else if r < 0.97 {
                        "en"
                    } else {
                        "pa"
                    };
                    let patience = (rng.exp(cfg.patience_seconds) * 1000.0) as Millis;
                    push(&mut queue, now + patience, Pending::Abandon(i));
                    Event::ContactArrived(NewContact {
                        id: contact_id(i),
                        media: Media::Voice,
                        language: language.into(),
                        emergency: rng.next() < 0.02,
                        specialty: None,
                    })
                }
                Pending::Accept(agent, i) => Event::Accept { agent: AgentId(agent), contact: contact_id(i) },
                Pending::End(i) => Event::End { contact: contact_id(i) },
                Pending::Abandon(i) => {
                    if fates[i].answered.is_some() || fates[i].callback {
                        continue;
                    }
                    Event::Abandon { contact: contact_id(i) }
                }
            }
        } else {
            Event::Tick
        };
        let accepted = match &event {
            Event::Accept { contact, .. } => Some(index(contact)),
            Event::Abandon { contact } => {
                let i = index(contact);
                if let Ok(out) = engine.handle(now, event.clone()) {
                    fates[i].abandoned = true;
                    handle_actions(&out, now, &mut fates, &mut queue, &mut push, &mut callbacks, &index);
                }
                continue;
            }
            _ => None,
        };
        match engine.handle(now, event) {
            Ok(out) => {
                if let Some(i) = accepted {
                    fates[i].answered = Some(now);
                    let handle =
                        (rng.exp(cfg.aht_seconds - cfg.routing.wrap_up as f64 / 1000.0).max(10.0) * 1000.0) as Millis;
                    push(&mut queue, now + handle, Pending::End(i));
                }
                handle_actions(&out, now, &mut fates, &mut queue, &mut push, &mut callbacks, &index);
            }
            Err(_) => {
                // An accept that lost to an abandon or a timeout: nothing to do.
            }
        }
    }
    report(profile, cfg, &roster, &fates, callbacks)
}

fn handle_actions(
    out: &[Action],
    now: Millis,
    fates: &mut [Fate],
    queue: &mut BinaryHeap<Reverse<(Millis, u64, Pending)>>,
    push: &mut impl FnMut(&mut BinaryHeap<Reverse<(Millis, u64, Pending)>>, Millis, Pending),
    callbacks: &mut u32,
    index: &impl Fn(&ContactId) -> usize,
) {
    for a in out {
        match a {
            Action::Offer { contact, agent, .. } => push(queue, now + 2_000, Pending::Accept(agent.0, index(contact))),
            Action::Position { contact, estimated_wait, .. } => {
                let f = &mut fates[index(contact)];
                if f.first_estimate.is_none() {
                    f.first_estimate = Some(*estimated_wait);
                }
            }
            Action::ScheduleCallback { contact, .. } => {
                *callbacks += 1;
                fates[index(contact)].callback = true;
            }
            _ => {}
        }
    }
}

fn report(profile: &DayProfile, cfg: &SimConfig, roster: &Roster, fates: &[Fate], callbacks: u32) -> SimReport {
    let target = (cfg.target_seconds * 1000.0) as Millis;
    let mut intervals = Vec::new();
    for slot in 0..48 {
        let start = slot as Millis * 30 * MIN;
        let all: Vec<&Fate> = fates.iter().filter(|f| f.arrived >= start && f.arrived < start + 30 * MIN).collect();
        let called_back = all.iter().filter(|f| f.callback).count() as u32;
        // Night callers promised a callback are counted apart: their wait is the night.
        let here: Vec<&Fate> = all.into_iter().filter(|f| !f.callback).collect();
        let answered: Vec<Millis> = here.iter().filter_map(|f| f.answered.map(|a| a - f.arrived)).collect();
        let abandoned = here.iter().filter(|f| f.abandoned && f.answered.is_none()).count() as u32;
        let in_target = answered.iter().filter(|w| **w <= target).count();
        let agents = roster
            .shifts
            .iter()
            .filter(|s| s.start <= start + 15 * MIN && start + 15 * MIN < s.end)
            .map(|s| s.agents.len() as u32)
            .sum();
        let input = StaffingInput {
            calls: profile.calls[slot],
            interval_minutes: 30.0,
            aht_seconds: cfg.aht_seconds,
            target_seconds: cfg.target_seconds,
            service_level: 0.8,
            shrinkage: 0.0,
            max_occupancy: 1.0,
            patience_seconds: None,
        };
        let staffed = agents > 0 && profile.calls[slot] > 0.0;
        let predicted = staffed.then(|| evaluate(&input, agents).service_level);
        let with_patience = staffed.then(|| {
            evaluate(&StaffingInput { patience_seconds: Some(cfg.patience_seconds), ..input }, agents).service_level
        });
        let denominator = answered.len() + here.iter().filter(|f| f.abandoned && f.answered.is_none()).count();
        intervals.push(IntervalResult {
            start: format!("{:02}:{:02}", slot / 2, (slot % 2) * 30),
            offered: here.len() as u32 + called_back,
            callbacks: called_back,
            answered: answered.len() as u32,
            abandoned,
            service_level: (denominator > 0).then(|| in_target as f64 / denominator as f64),
            asa_seconds: (!answered.is_empty())
                .then(|| answered.iter().sum::<Millis>() as f64 / answered.len() as f64 / 1000.0),
            agents,
            erlang_c_service_level: predicted,
            erlang_a_service_level: with_patience,
        });
    }
    let answered: Vec<&Fate> = fates.iter().filter(|f| f.answered.is_some() && !f.callback).collect();
    let in_target = answered.iter().filter(|f| f.answered.unwrap_or_default() - f.arrived <= target).count();
    let abandoned = fates.iter().filter(|f| f.abandoned && f.answered.is_none() && !f.callback).count();
    let errors: Vec<(f64, f64)> = answered
        .iter()
        .filter_map(|f| {
            let actual = (f.answered? - f.arrived) as f64 / 1000.0;
            Some(((f.first_estimate? as f64 / 1000.0 - actual).abs(), actual))
        })
        .collect();
    let n = errors.len().max(1) as f64;
    let model_error = |model: fn(&IntervalResult) -> Option<f64>| {
        let gaps: Vec<f64> = intervals
            .iter()
            .filter(|i| i.offered >= 20)
            .filter_map(|i| Some((model(i)? - i.service_level?).abs()))
            .collect();
        gaps.iter().sum::<f64>() / gaps.len().max(1) as f64
    };
    let erlang_c_error = model_error(|i| i.erlang_c_service_level);
    let erlang_a_error = model_error(|i| i.erlang_a_service_level);
    SimReport {
        seed: cfg.seed,
        intervals,
        offered: fates.len() as u32,
        answered: answered.len() as u32,
        abandoned: abandoned as u32,
        callbacks,
        service_level: in_target as f64 / (answered.len() + abandoned).max(1) as f64,
        erlang_c_error,
        erlang_a_error,
        estimate_mae_seconds: errors.iter().map(|e| e.0).sum::<f64>() / n,
        estimate_mean_wait_seconds: errors.iter().map(|e| e.1).sum::<f64>() / n,
    }
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "start  offered  callback  answered  abandoned  agents  SL      ASA(s)  Erlang C SL  Erlang A SL")?;
        let opt = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
        for i in self.intervals.iter().filter(|i| i.offered > 0) {
            writeln!(
                f,
                "{:<6} {:>7}  {:>8}  {:>8}  {:>9}  {:>6}  {:<6}  {:<6}  {:<11}  {}",
                i.start,
                i.offered,
                i.callbacks,
                i.answered,
                i.abandoned,
                i.agents,
                opt(i.service_level, 3),
                opt(i.asa_seconds, 1),
                opt(i.erlang_c_service_level, 3),
                opt(i.erlang_a_service_level, 3)
            )?;
        }
        writeln!(
            f,
            "day: {} offered, {} answered, {} abandoned, {} callbacks at night, service level {:.3}",
            self.offered, self.answered, self.abandoned, self.callbacks, self.service_level
        )?;
        writeln!(
            f,
            "predicted service level, mean absolute error per interval: Erlang C {:.3}, Erlang A {:.3}",
            self.erlang_c_error, self.erlang_a_error
        )?;
        write!(
            f,
            "estimated wait: mean absolute error {:.1} s against a mean actual wait of {:.1} s (seed {})",
            self.estimate_mae_seconds, self.estimate_mean_wait_seconds, self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> DayProfile {
        DayProfile::from_csv(include_str!("../profiles/helpline-day.csv")).unwrap()
    }

    #[test]
    fn a_seed_gives_the_same_day() {
        let a = simulate(&profile(), &SimConfig::helpline(7));
        let b = simulate(&profile(), &SimConfig::helpline(7));
        assert_eq!(a, b);
        let c = simulate(&profile(), &SimConfig::helpline(8));
        assert_ne!(a.offered, c.offered);
    }

    #[test]
    fn a_day_is_served_and_night_calls_get_callbacks() {
        let r = simulate(&profile(), &SimConfig::helpline(1));
        let expected: f64 = profile().calls.iter().sum();
        assert!((r.offered as f64 - expected).abs() < expected * 0.1, "{} vs {expected}", r.offered);
        assert!(r.answered + r.abandoned + r.callbacks >= r.offered * 9 / 10, "{r}");
        let night = &r.intervals[46];
        assert_eq!(night.callbacks, night.offered, "after 22:00 every caller is promised a callback: {r}");
        assert!(r.service_level > 0.5, "{r}");
        assert!(r.callbacks > 0, "night calls are called back at 06:00");
        assert!(r.estimate_mae_seconds.is_finite());
    }

    #[test]
    fn erlang_a_predicts_an_understaffed_day_better_than_erlang_c() {
        // Too few operators for the peak, impatient callers: many hang up, which
        // Erlang C ignores and Erlang A expects.
        let cfg = SimConfig { operators: [9, 9, 3], patience_seconds: 60.0, ..SimConfig::helpline(3) };
        let r = simulate(&profile(), &cfg);
        assert!(r.abandoned * 10 > r.offered, "the day must be understaffed: {r}");
        // Intervals are not independent (a backlog carries over), so neither is exact;
        // Erlang A is measured at 0.115 against Erlang C's 0.417 for this seed.
        assert!(r.erlang_a_error * 2.0 < r.erlang_c_error, "{r}");
        assert!(r.erlang_a_error < 0.15, "{r}");
    }

    #[test]
    fn a_bad_profile_names_its_line() {
        assert_eq!(DayProfile::from_csv("start,calls\n25:00,3\n").unwrap_err(), "line 2: `25:00` is not a half hour");
        assert!(DayProfile::from_csv("start,calls\n10:00,many\n").unwrap_err().contains("not a number"));
    }
}
