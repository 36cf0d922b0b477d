//! The staffing planner: how many agents an interval needs, by Erlang C,
//! or by Erlang A when callers' patience is given, and how many seats each
//! shift needs for a day's forecast.
//!
//! Traffic `A = λ·AHT` erlangs is offered to `N` agents. Erlang C gives the
//! probability that a caller waits, `Pw`; from it the service level
//! `SL = 1 − Pw·e^(−(N−A)·T/AHT)`, the average speed of answer
//! `ASA = Pw·AHT/(N−A)` and the occupancy `A/N`. The planner takes the
//! fewest agents that meet the service-level target and stay at or under the
//! occupancy ceiling, then adds shrinkage (breaks, training, absence):
//! `staff = ⌈N/(1−shrinkage)⌉`.
//!
//! Erlang C assumes callers never hang up, so it overstates waits when they
//! do. Erlang A (M/M/N+M, Palm's model with exponential patience of mean
//! `1/θ`) allows for it: the number in the system is a birth–death chain
//! with births `λ` and deaths `min(n,N)·μ + max(n−N,0)·θ`, whose stationary
//! distribution gives the probability of waiting; a caller who arrives with
//! `i` callers ahead of them moves up at rate `N·μ + i·θ` and hangs up at
//! rate `θ`, which gives each caller's chance of being answered, within the
//! target or at all, and their expected wait. Under Erlang A the service
//! level counts every offered contact (one that hangs up counts as missed),
//! as the simulator does, and the ASA is that of answered contacts. The
//! simulator compares both with what the real engine achieves.

use serde::{Deserialize, Serialize};

/// One interval's forecast and the targets to meet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffingInput {
    /// Contacts expected in the interval.
    pub calls: f64,
    pub interval_minutes: f64,
    /// Average handle time (talk plus wrap-up), seconds.
    pub aht_seconds: f64,
    /// Answer within this many seconds...
    pub target_seconds: f64,
    /// ...this share of contacts, e.g. 0.8.
    pub service_level: f64,
    /// Share of paid time not on the phones, e.g. 0.3.
    pub shrinkage: f64,
    /// The highest acceptable occupancy, e.g. 0.85.
    pub max_occupancy: f64,
    /// Mean patience of a waiting caller, seconds: plan by Erlang A. `None`
    /// plans by Erlang C (nobody hangs up).
    #[serde(default)]
    pub patience_seconds: Option<f64>,
}

/// What the planner found.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaffingPlan {
    /// Offered traffic in erlangs.
    pub traffic_erlangs: f64,
    /// Agents on the phones.
    pub agents: u32,
    pub service_level: f64,
    /// Probability that a contact waits at all (Erlang C).
    pub p_wait: f64,
    pub asa_seconds: f64,
    pub occupancy: f64,
    /// Agents to roster once shrinkage is allowed for.
    pub staff_with_shrinkage: u32,
    /// Share of contacts that hang up before an answer (0 under Erlang C).
    pub p_abandon: f64,
    pub model: Model,
}

/// Which queueing model a plan was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    ErlangC,
    ErlangA,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StaffingError {
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no staffing up to {0} agents meets the target")]
    Unreachable(u32),
}

fn invalid(field: &'static str, message: impl Into<String>) -> StaffingError {
    StaffingError::Invalid { field, message: message.into() }
}

impl StaffingInput {
    fn check(&self) -> Result<(), StaffingError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(self.calls.is_finite() && self.calls >= 0.0) {
            return Err(invalid("calls", "must be zero or more"));
        }
        if !positive(self.interval_minutes) {
            return Err(invalid("interval_minutes", "must be more than zero"));
        }
        if !positive(self.aht_seconds) {
            return Err(invalid("aht_seconds", "must be more than zero"));
        }
        if !(self.target_seconds.is_finite() && self.target_seconds >= 0.0) {
            return Err(invalid("target_seconds", "must be zero or more"));
        }
        if !(self.service_level > 0.0 && self.service_level < 1.0) {
            return Err(invalid("service_level", "must be between 0 and 1, e.g. 0.8"));
        }
        if !(0.0..1.0).contains(&self.shrinkage) {
            return Err(invalid("shrinkage", "must be at least 0 and below 1, e.g. 0.3"));
        }
        if !(self.max_occupancy > 0.0 && self.max_occupancy <= 1.0) {
            return Err(invalid("max_occupancy", "must be above 0 and at most 1, e.g. 0.85"));
        }
        if let Some(patience) = self.patience_seconds
            && !positive(patience)
        {
            return Err(invalid("patience_seconds", "must be more than zero"));
        }
        Ok(())
    }

    /// Offered traffic in erlangs.
    pub fn traffic(&self) -> f64 {
        self.calls * self.aht_seconds / (self.interval_minutes * 60.0)
    }
}

/// Erlang C: the probability that a contact waits, with `agents` serving `traffic` erlangs.
/// Computed through the Erlang B recursion, which stays stable for large `agents`.
pub fn erlang_c(traffic: f64, agents: u32) -> f64 {
    if traffic <= 0.0 {
        return 0.0;
    }
    if f64::from(agents) <= traffic {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=agents {
        b = traffic * b / (f64::from(k) + traffic * b);
    }
    let n = f64::from(agents);
    n * b / (n - traffic * (1.0 - b))
}

/// The figures for a given number of agents, by Erlang A when the input
/// has a patience and by Erlang C otherwise.
pub fn evaluate(input: &StaffingInput, agents: u32) -> StaffingPlan {
    match input.patience_seconds {
        Some(patience) => evaluate_erlang_a(input, agents, patience),
        None => evaluate_erlang_c(input, agents),
    }
}

fn staff_with_shrinkage(input: &StaffingInput, agents: u32) -> u32 {
    (f64::from(agents) / (1.0 - input.shrinkage) - 1e-9).ceil() as u32
}

fn evaluate_erlang_c(input: &StaffingInput, agents: u32) -> StaffingPlan {
    let a = input.traffic();
    let n = f64::from(agents);
    let p_wait = erlang_c(a, agents);
    let (service_level, asa_seconds) = if n > a {
        (
            1.0 - p_wait * (-(n - a) * input.target_seconds / input.aht_seconds).exp(),
            p_wait * input.aht_seconds / (n - a),
        )
    } else {
        (0.0, f64::INFINITY)
    };
    StaffingPlan {
        traffic_erlangs: a,
        agents,
        service_level,
        p_wait,
        asa_seconds,
        occupancy: if agents == 0 { 0.0 } else { (a / n).min(1.0) },
        staff_with_shrinkage: staff_with_shrinkage(input, agents),
        p_abandon: 0.0,
        model: Model::ErlangC,
    }
}

/// Erlang A's figures for one staffing (see the module docs).
fn evaluate_erlang_a(input: &StaffingInput, agents: u32, patience_seconds: f64) -> StaffingPlan {
    let a = input.traffic();
    let lambda = input.calls / (input.interval_minutes * 60.0);
    let mu = 1.0 / input.aht_seconds;
    let theta = 1.0 / patience_seconds;
    let n = agents as usize;
    let mut plan = StaffingPlan {
        traffic_erlangs: a,
        agents,
        service_level: 1.0,
        p_wait: 0.0,
        asa_seconds: 0.0,
        occupancy: 0.0,
        staff_with_shrinkage: staff_with_shrinkage(input, agents),
        p_abandon: 0.0,
        model: Model::ErlangA,
    };
    if lambda <= 0.0 {
        return plan;
    }
    if agents == 0 {
        // Nobody answers: everyone waits and, in the end, hangs up.
        plan.service_level = 0.0;
        plan.p_wait = 1.0;
        plan.p_abandon = 1.0;
        plan.asa_seconds = f64::INFINITY;
        return plan;
    }
    // The stationary distribution, in logs (π_n overflows for big floors),
    // truncated where the chain's tail no longer matters.
    let death = |k: usize| (k.min(n) as f64) * mu + (k.saturating_sub(n) as f64) * theta;
    let mut log_pi = vec![0.0_f64];
    let mut peak = 0.0_f64;
    loop {
        let k = log_pi.len();
        let next = log_pi[k - 1] + (lambda / death(k)).ln();
        log_pi.push(next);
        peak = peak.max(next);
        // Past the floor and the mode, the ratio only falls: stop when negligible.
        if k > n && lambda < death(k) && next < peak - 40.0 {
            break;
        }
    }
    let pi: Vec<f64> = {
        let weights: Vec<f64> = log_pi.iter().map(|l| (l - peak).exp()).collect();
        let total: f64 = weights.iter().sum();
        weights.into_iter().map(|w| w / total).collect()
    };
    // Arrivals see the stationary distribution (PASTA): one who finds `n + i`
    // in the system waits with `i` callers ahead.
    let queued = &pi[n..];
    let p_wait: f64 = queued.iter().sum();
    let busy: f64 = pi.iter().enumerate().map(|(k, p)| (k.min(n) as f64) * p).sum();
    // From `i` ahead: moves up at r_i = Nμ + iθ, leaves at R_i = r_i + θ.
    // g(i): chance of being answered; f(i): E[wait · 1{answered}].
    let (mut g, mut f) = (Vec::with_capacity(queued.len()), Vec::with_capacity(queued.len()));
    for i in 0..queued.len() {
        let r = n as f64 * mu + i as f64 * theta;
        let total = r + theta;
        let (g_prev, f_prev) = if i == 0 { (1.0, 0.0) } else { (g[i - 1], f[i - 1]) };
        let gi = r / total * g_prev;
        g.push(gi);
        f.push(gi / total + r / total * f_prev);
    }
    let answered_after_wait: f64 = queued.iter().zip(&g).map(|(p, g)| p * g).sum();
    let p_answered = (1.0 - p_wait) + answered_after_wait;
    let wait_answered: f64 = queued.iter().zip(&f).map(|(p, f)| p * f).sum();
    let within = answered_within(queued, n as f64 * mu, theta, input.target_seconds);
    plan.p_wait = p_wait;
    plan.p_abandon = (1.0 - p_answered).max(0.0);
    plan.asa_seconds = if p_answered > 0.0 { wait_answered / p_answered } else { f64::INFINITY };
    plan.service_level = ((1.0 - p_wait) + within).min(1.0);
    plan.occupancy = (busy / agents as f64).min(1.0);
    plan
}

/// The probability mass of queued arrivals (`start[i]`: `i` ahead) answered
/// within `target` seconds: the transient of the "callers ahead" chain,
/// integrated with RK4 (it is linear, so a step of half the fastest rate is
/// accurate and stable).
fn answered_within(start: &[f64], service: f64, theta: f64, target: f64) -> f64 {
    if target <= 0.0 || start.is_empty() {
        return 0.0;
    }
    let rate = |i: usize| service + i as f64 * theta;
    let fastest = rate(start.len() - 1) + theta;
    let steps = ((target * fastest / 0.5).ceil() as usize).max(1);
    let dt = target / steps as f64;
    // d p_i/dt = −(r_i + θ) p_i + r_{i+1} p_{i+1}; d answered/dt = r_0 p_0.
    let derive = |p: &[f64], out: &mut [f64]| {
        let last = p.len() - 1;
        for i in 0..=last {
            let inflow = if i < last { rate(i + 1) * p[i + 1] } else { 0.0 };
            out[i] = inflow - (rate(i) + theta) * p[i];
        }
    };
    let mut p = start.to_vec();
    let mut answered = 0.0;
    let len = p.len();
    let (mut k1, mut k2, mut k3, mut k4, mut tmp) =
        (vec![0.0; len], vec![0.0; len], vec![0.0; len], vec![0.0; len], vec![0.0; len]);
    for _ in 0..steps {
        derive(&p, &mut k1);
        tmp.iter_mut().zip(&p).zip(&k1).for_each(|((t, p), k)| *t = p + 0.5 * dt * k);
        let a2 = tmp[0];
        derive(&tmp, &mut k2);
        tmp.iter_mut().zip(&p).zip(&k2).for_each(|((t, p), k)| *t = p + 0.5 * dt * k);
        let a3 = tmp[0];
        derive(&tmp, &mut k3);
        tmp.iter_mut().zip(&p).zip(&k3).for_each(|((t, p), k)| *t = p + dt * k);
        let a4 = tmp[0];
        derive(&tmp, &mut k4);
        answered += dt / 6.0 * service * (p[0] + 2.0 * a2 + 2.0 * a3 + a4);
        for i in 0..len {
            p[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
    }
    answered
}

/// The fewest agents that meet the service level within the occupancy ceiling.
pub fn plan(input: &StaffingInput) -> Result<StaffingPlan, StaffingError> {
    input.check()?;
    const LIMIT: u32 = 10_000;
    if input.calls == 0.0 {
        return Ok(evaluate(input, 0));
    }
    // Erlang C needs more agents than erlangs; with abandonment fewer can
    // meet a target, but never fewer than the target's share of the traffic.
    let start = match input.patience_seconds {
        None => input.traffic().floor() as u32 + 1,
        Some(_) => (input.traffic() * input.service_level).floor() as u32,
    };
    (start.max(1)..=LIMIT)
        .map(|n| evaluate(input, n))
        .find(|p| p.service_level >= input.service_level && p.occupancy <= input.max_occupancy)
        .ok_or(StaffingError::Unreachable(LIMIT))
}

impl std::fmt::Display for StaffingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "traffic               {:.2} erlangs", self.traffic_erlangs)?;
        writeln!(
            f,
            "model                 {}",
            match self.model {
                Model::ErlangC => "Erlang C",
                Model::ErlangA => "Erlang A (with patience)",
            }
        )?;
        writeln!(f, "agents needed         {}", self.agents)?;
        writeln!(f, "service level         {:.3}", self.service_level)?;
        writeln!(f, "probability of wait   {:.3}", self.p_wait)?;
        writeln!(f, "average speed answer  {:.1} s", self.asa_seconds)?;
        writeln!(f, "occupancy             {:.3}", self.occupancy)?;
        if self.model == Model::ErlangA {
            writeln!(f, "abandoned             {:.3}", self.p_abandon)?;
        }
        write!(f, "staff with shrinkage  {}", self.staff_with_shrinkage)
    }
}

/// The helpline's operator shifts (local time) and which one opens the peak seats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftWindow {
    pub name: String,
    /// Minutes from local midnight.
    pub start_minute: u32,
    pub end_minute: u32,
    /// The peak seats are open only during this shift.
    pub peak: bool,
}

impl ShiftWindow {
    fn covers(&self, minute: u32) -> bool {
        self.start_minute <= minute && minute < self.end_minute
    }
}

/// Careline's three operator shifts: 06–14, 14–22 and the 10–18 peak shift.
pub fn helpline_shifts() -> Vec<ShiftWindow> {
    let shift = |name: &str, start: u32, end: u32, peak| ShiftWindow {
        name: name.to_owned(),
        start_minute: start * 60,
        end_minute: end * 60,
        peak,
    };
    vec![shift("morning", 6, 14, false), shift("evening", 14, 22, false), shift("peak", 10, 18, true)]
}

/// The seats of the floor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seats {
    pub total: u32,
    /// Of the total, open only during the peak shift.
    pub peak: u32,
}

/// A day's plan: agents per interval, operators per shift, and where the
/// helpline's seats are not enough.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DayPlan {
    pub intervals: Vec<IntervalPlan>,
    pub shifts: Vec<ShiftPlan>,
    pub seats: u32,
    pub peak_seats: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalPlan {
    /// `HH:MM`, local time.
    pub start: String,
    pub calls: f64,
    pub plan: StaffingPlan,
    /// Seats open then (the peak seats only in the peak shift).
    pub seats_open: u32,
    /// Operators on the phones then under the shift plan (0 at night).
    pub rostered: u32,
    /// No operator shift covers it: doctors answer emergencies, others get a callback.
    pub night: bool,
    /// More agents needed than seats are open.
    pub over_seats: bool,
}

/// Operators to put on one shift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShiftPlan {
    pub name: String,
    /// `HH:MM`, local time.
    pub start: String,
    pub end: String,
    /// Operators at seats through the shift.
    pub seats: u32,
    /// Operators to roster once shrinkage is allowed for.
    pub staff_with_shrinkage: u32,
}

fn hhmm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn parse_hhmm(text: &str) -> Result<u32, StaffingError> {
    let bad = || invalid("start", format!("`{text}` is not a time of day HH:MM"));
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h >= 24 || m >= 60 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Plans each interval of a forecast (`(start, calls)` pairs) with shared
/// targets, then the fewest operators per shift that cover every interval's
/// need (the peak shift tried at every size, the other two sized to what it
/// leaves), and flags intervals that need more agents than seats are open.
pub fn plan_day(
    forecast: &[(String, f64)],
    template: &StaffingInput,
    seats: Seats,
    shifts: &[ShiftWindow],
) -> Result<DayPlan, StaffingError> {
    if seats.peak > seats.total {
        return Err(invalid("peak_seats", "cannot be more than the seats"));
    }
    let mut intervals = Vec::with_capacity(forecast.len());
    let mut minutes = Vec::with_capacity(forecast.len());
    for (start, calls) in forecast {
        let minute = parse_hhmm(start)?;
        let input = StaffingInput { calls: *calls, ..*template };
        let plan = plan(&input)?;
        let peak_open = shifts.iter().any(|s| s.peak && s.covers(minute));
        let seats_open = if peak_open { seats.total } else { seats.total - seats.peak };
        let night = !shifts.iter().any(|s| s.covers(minute));
        intervals.push(IntervalPlan {
            start: hhmm(minute),
            calls: *calls,
            over_seats: !night && plan.agents > seats_open,
            seats_open,
            rostered: 0,
            night,
            plan,
        });
        minutes.push(minute);
    }
    let sizes = size_shifts(&intervals, &minutes, shifts);
    for (interval, minute) in intervals.iter_mut().zip(&minutes) {
        interval.rostered = shifts.iter().zip(&sizes).filter(|(s, _)| s.covers(*minute)).map(|(_, n)| n).sum();
    }
    let shifts = shifts
        .iter()
        .zip(sizes)
        .map(|(s, n)| ShiftPlan {
            name: s.name.clone(),
            start: hhmm(s.start_minute),
            end: hhmm(s.end_minute),
            seats: n,
            staff_with_shrinkage: staff_with_shrinkage(template, n),
        })
        .collect();
    Ok(DayPlan { intervals, shifts, seats: seats.total, peak_seats: seats.peak })
}

/// Operators per shift: for each size of the peak shift, the others take
/// the largest need left in their hours; the smallest total wins (the
/// smaller peak shift on a tie, as its seats are scarce).
fn size_shifts(intervals: &[IntervalPlan], minutes: &[u32], shifts: &[ShiftWindow]) -> Vec<u32> {
    let need = |i: usize| intervals[i].plan.agents;
    let most = (0..intervals.len()).map(need).max().unwrap_or(0);
    let mut best: Option<(u32, Vec<u32>)> = None;
    let peak: Vec<usize> = (0..shifts.len()).filter(|&s| shifts[s].peak).collect();
    let tries = if peak.is_empty() { 0 } else { most };
    for peak_size in 0..=tries {
        let mut sizes = vec![0; shifts.len()];
        for &p in &peak {
            sizes[p] = peak_size;
        }
        // The other shifts in order; each covers what earlier ones left.
        for s in (0..shifts.len()).filter(|s| !shifts[*s].peak) {
            let left = (0..intervals.len())
                .filter(|&i| shifts[s].covers(minutes[i]))
                .map(|i| {
                    let others: u32 =
                        (0..shifts.len()).filter(|&o| o != s && shifts[o].covers(minutes[i])).map(|o| sizes[o]).sum();
                    need(i).saturating_sub(others)
                })
                .max()
                .unwrap_or(0);
            sizes[s] = left;
        }
        let total = sizes.iter().sum();
        if best.as_ref().is_none_or(|(t, _)| total < *t) {
            best = Some((total, sizes));
        }
    }
    best.map(|(_, sizes)| sizes).unwrap_or_else(|| vec![0; shifts.len()])
}

impl std::fmt::Display for DayPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "start  calls  agents  on     seats  SL     ASA(s)  occ")?;
        for i in &self.intervals {
            let note = if i.night {
                "  night: doctors take emergencies, others a callback".to_owned()
            } else if i.over_seats {
                format!("  more than the {} seats open", i.seats_open)
            } else {
                String::new()
            };
            writeln!(
                f,
                "{:<6} {:>5.0}  {:>6}  {:>5}  {:>5}  {:.3}  {:>6.1}  {:.2}{}",
                i.start,
                i.calls,
                i.plan.agents,
                i.rostered,
                i.seats_open,
                i.plan.service_level,
                i.plan.asa_seconds,
                i.plan.occupancy,
                note
            )?;
        }
        writeln!(f)?;
        writeln!(f, "shift    hours        seats  staff")?;
        for s in &self.shifts {
            writeln!(f, "{:<8} {}–{}  {:>5}  {:>5}", s.name, s.start, s.end, s.seats, s.staff_with_shrinkage)?;
        }
        let short: Vec<&str> = self.intervals.iter().filter(|i| i.over_seats).map(|i| i.start.as_str()).collect();
        if short.is_empty() {
            write!(f, "the {} seats ({} of them peak) are enough", self.seats, self.peak_seats)
        } else {
            write!(f, "the {} seats are not enough at {}", self.seats, short.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> StaffingInput {
        StaffingInput {
            calls: 100.0,
            interval_minutes: 30.0,
            aht_seconds: 180.0,
            target_seconds: 20.0,
            service_level: 0.8,
            shrinkage: 0.3,
            max_occupancy: 0.85,
            patience_seconds: None,
        }
    }

    #[test]
    fn the_published_check() {
        // 100 calls in 30 minutes, AHT 180 s, 80% in 20 s.
        let p = plan(&published()).unwrap();
        assert_eq!(p.traffic_erlangs, 10.0);
        assert_eq!(p.agents, 14);
        assert!((p.service_level - 0.888).abs() < 0.0005, "{}", p.service_level);
        assert!((p.p_wait - 0.174).abs() < 0.0005, "{}", p.p_wait);
        assert!((p.occupancy - 0.714).abs() < 0.0005, "{}", p.occupancy);
        assert_eq!(p.staff_with_shrinkage, 20);
        // 13 agents would not do.
        assert!(evaluate(&published(), 13).service_level < 0.8);
    }

    #[test]
    fn erlang_c_known_values() {
        // One server: Pw = ρ.
        assert!((erlang_c(0.5, 1) - 0.5).abs() < 1e-12);
        // Two servers, A = 1: Pw = 1/3.
        assert!((erlang_c(1.0, 2) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(erlang_c(5.0, 5), 1.0, "a saturated system always waits");
        // Large systems stay finite.
        let big = erlang_c(900.0, 950);
        assert!(big > 0.0 && big < 1.0);
    }

    #[test]
    fn occupancy_ceiling_adds_agents() {
        let input = StaffingInput { calls: 1000.0, max_occupancy: 0.85, ..published() };
        let p = plan(&input).unwrap();
        assert!(p.occupancy <= 0.85);
        let tighter = plan(&StaffingInput { max_occupancy: 0.7, ..input }).unwrap();
        assert!(tighter.agents > p.agents && tighter.occupancy <= 0.7);
    }

    #[test]
    fn no_calls_need_no_agents_and_bad_input_is_named() {
        assert_eq!(plan(&StaffingInput { calls: 0.0, ..published() }).unwrap().agents, 0);
        let err = plan(&StaffingInput { service_level: 80.0, ..published() }).unwrap_err();
        assert_eq!(err.to_string(), "service_level: must be between 0 and 1, e.g. 0.8");
        assert!(plan(&StaffingInput { aht_seconds: 0.0, ..published() }).is_err());
    }

    const FLOOR: Seats = Seats { total: 45, peak: 5 };

    #[test]
    fn a_day_says_where_seats_run_out() {
        let forecast = vec![("09:00".to_owned(), 100.0), ("10:00".to_owned(), 400.0)];
        let day = plan_day(&forecast, &published(), FLOOR, &helpline_shifts()).unwrap();
        assert!(!day.intervals[0].over_seats);
        assert_eq!(day.intervals[0].seats_open, 40, "the peak seats open at 10:00");
        assert!(day.intervals[1].over_seats, "{}", day);
        assert!(day.to_string().contains("more than the 45 seats open"), "{day}");
        assert!(day.to_string().contains("not enough at 10:00"), "{day}");
    }

    #[test]
    fn peak_seats_open_only_in_the_peak_shift() {
        // 41–45 agents are needed at 09:00 and at 11:00: only 40 seats are open before 10:00.
        let calls = 375.0;
        let forecast = vec![("09:00".to_owned(), calls), ("11:00".to_owned(), calls)];
        let input = StaffingInput { max_occupancy: 1.0, ..published() };
        let day = plan_day(&forecast, &input, FLOOR, &helpline_shifts()).unwrap();
        let need = day.intervals[0].plan.agents;
        assert!(need > 40 && need <= 45, "{day}");
        assert!(day.intervals[0].over_seats && !day.intervals[1].over_seats, "{day}");
    }

    fn day_of(needs: &[(&str, f64)]) -> DayPlan {
        let forecast: Vec<(String, f64)> = needs.iter().map(|(t, c)| (t.to_string(), *c)).collect();
        plan_day(&forecast, &published(), FLOOR, &helpline_shifts()).unwrap()
    }

    #[test]
    fn shifts_cover_every_interval_with_the_fewest_operators() {
        let day = day_of(&[("06:00", 40.0), ("09:00", 60.0), ("11:00", 200.0), ("15:00", 180.0), ("20:00", 50.0)]);
        for i in &day.intervals {
            assert!(i.rostered >= i.plan.agents, "{} needs {} and has {}:\n{day}", i.start, i.plan.agents, i.rostered);
        }
        let [morning, evening, peak] = [&day.shifts[0], &day.shifts[1], &day.shifts[2]];
        // Morning covers 09:00 alone, evening 20:00 alone; the peak tops up the middle of the day.
        assert!(morning.seats >= day.intervals[1].plan.agents, "{day}");
        assert!(evening.seats >= day.intervals[4].plan.agents, "{day}");
        assert!(peak.seats > 0 && peak.staff_with_shrinkage > peak.seats, "{day}");
        // No split of the day needs fewer operators: try them all.
        let total = morning.seats + evening.seats + peak.seats;
        let need: Vec<u32> = day.intervals.iter().map(|i| i.plan.agents).collect();
        let mut fewest = u32::MAX;
        for p in 0..=60 {
            for m in 0..=60 {
                for e in 0..=60 {
                    if need[0] <= m && need[1] <= m && need[2] <= m + p && need[3] <= e + p && need[4] <= e {
                        fewest = fewest.min(m + e + p);
                    }
                }
            }
        }
        assert_eq!(total, fewest, "{day}");
    }

    #[test]
    fn night_intervals_need_no_operator_shift() {
        let day = day_of(&[("02:00", 10.0), ("07:00", 10.0)]);
        assert!(day.intervals[0].night && !day.intervals[1].night);
        assert_eq!(day.intervals[0].rostered, 0);
        assert!(day.to_string().contains("night: doctors"), "{day}");
        assert!(plan_day(&[("25:00".to_owned(), 1.0)], &published(), FLOOR, &helpline_shifts()).is_err());
    }

    fn patient(patience: f64) -> StaffingInput {
        StaffingInput { patience_seconds: Some(patience), ..published() }
    }

    #[test]
    fn erlang_a_with_endless_patience_is_erlang_c() {
        let c = evaluate(&published(), 14);
        let a = evaluate(&patient(1e9), 14);
        assert_eq!(a.model, Model::ErlangA);
        assert!((a.p_wait - c.p_wait).abs() < 1e-4, "{} vs {}", a.p_wait, c.p_wait);
        assert!((a.service_level - c.service_level).abs() < 1e-4, "{} vs {}", a.service_level, c.service_level);
        assert!((a.asa_seconds - c.asa_seconds).abs() < 0.01, "{} vs {}", a.asa_seconds, c.asa_seconds);
        assert!((a.occupancy - c.occupancy).abs() < 1e-4);
        assert!(a.p_abandon < 1e-6);
    }

    #[test]
    fn erlang_a_one_agent_matches_the_closed_form() {
        // M/M/1+M with λ = μ = θ: π_n = π_0 / n!, so π_0 = 1/e and P(wait) = 1 − 1/e;
        // throughput μ·(1 − π_0) answered, the rest hang up: P(abandon) = 1/e.
        let input = StaffingInput {
            calls: 10.0,
            interval_minutes: 30.0,
            aht_seconds: 180.0,
            target_seconds: 0.0,
            service_level: 0.5,
            shrinkage: 0.0,
            max_occupancy: 1.0,
            patience_seconds: Some(180.0),
        };
        let p = evaluate(&input, 1);
        let e = std::f64::consts::E;
        assert!((p.p_wait - (1.0 - 1.0 / e)).abs() < 1e-9, "{}", p.p_wait);
        assert!((p.p_abandon - 1.0 / e).abs() < 1e-9, "{}", p.p_abandon);
        assert!((p.service_level - 1.0 / e).abs() < 1e-9, "answered at once: {}", p.service_level);
    }

    #[test]
    fn erlang_a_abandonment_agrees_with_littles_law_and_a_target() {
        // P(abandon) = θ·E[queue]/λ must hold whatever the staffing.
        for agents in [8, 10, 12, 16] {
            let input = patient(90.0);
            let p = evaluate(&input, agents);
            let lambda = input.calls / 1800.0;
            // E[queue] from the service level of a zero target: those who wait.
            assert!(p.p_abandon > 0.0 && p.p_abandon < p.p_wait, "{agents}: {p:?}");
            // Answered = throughput of the agents: occupancy·N·μ = λ·(1 − P(abandon)).
            let throughput = p.occupancy * agents as f64 / input.aht_seconds;
            assert!((throughput - lambda * (1.0 - p.p_abandon)).abs() < 1e-9, "{agents}: {p:?}");
        }
        // With impatient callers fewer agents meet the same target than by Erlang C,
        // and a floor below the traffic is stable.
        let a = plan(&patient(60.0)).unwrap();
        assert!(a.agents <= 14 && a.service_level >= 0.8, "{a:?}");
        let overloaded = evaluate(&patient(60.0), 8);
        assert!(overloaded.service_level > 0.0 && overloaded.p_abandon > 0.1, "{overloaded:?}");
        assert!(plan(&StaffingInput { patience_seconds: Some(0.0), ..published() }).is_err());
    }
}
