//! The staffing planner: how many agents an interval needs, by Erlang C.
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
//! do; the simulator measures the difference.

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

/// The figures for a given number of agents.
pub fn evaluate(input: &StaffingInput, agents: u32) -> StaffingPlan {
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
        staff_with_shrinkage: (n / (1.0 - input.shrinkage) - 1e-9).ceil() as u32,
    }
}

/// The fewest agents that meet the service level within the occupancy ceiling.
pub fn plan(input: &StaffingInput) -> Result<StaffingPlan, StaffingError> {
    input.check()?;
    const LIMIT: u32 = 10_000;
    if input.calls == 0.0 {
        return Ok(evaluate(input, 0));
    }
    let start = input.traffic().floor() as u32 + 1;
    (start..=LIMIT)
        .map(|n| evaluate(input, n))
        .find(|p| p.service_level >= input.service_level && p.occupancy <= input.max_occupancy)
        .ok_or(StaffingError::Unreachable(LIMIT))
}

impl std::fmt::Display for StaffingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "traffic               {:.2} erlangs", self.traffic_erlangs)?;
        writeln!(f, "agents needed         {}", self.agents)?;
        writeln!(f, "service level         {:.3}", self.service_level)?;
        writeln!(f, "probability of wait   {:.3}", self.p_wait)?;
        writeln!(f, "average speed answer  {:.1} s", self.asa_seconds)?;
        writeln!(f, "occupancy             {:.3}", self.occupancy)?;
        write!(f, "staff with shrinkage  {}", self.staff_with_shrinkage)
    }
}

/// A day's plan: agents per interval, and where the helpline's seats are not enough.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DayPlan {
    pub intervals: Vec<IntervalPlan>,
    pub seats: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalPlan {
    /// `HH:MM`, local time.
    pub start: String,
    pub calls: f64,
    pub plan: StaffingPlan,
    /// More agents needed than seats exist.
    pub over_seats: bool,
}

/// Plans each interval of a forecast (`(start, calls)` pairs) with shared targets.
pub fn plan_day(forecast: &[(String, f64)], template: &StaffingInput, seats: u32) -> Result<DayPlan, StaffingError> {
    let intervals = forecast
        .iter()
        .map(|(start, calls)| {
            let input = StaffingInput { calls: *calls, ..*template };
            let plan = plan(&input)?;
            Ok(IntervalPlan { start: start.clone(), calls: *calls, over_seats: plan.agents > seats, plan })
        })
        .collect::<Result<Vec<_>, StaffingError>>()?;
    Ok(DayPlan { intervals, seats })
}

impl std::fmt::Display for DayPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "start  calls  agents  staff  SL     ASA(s)  occ")?;
        for i in &self.intervals {
            writeln!(
                f,
                "{:<6} {:>5.0}  {:>6}  {:>5}  {:.3}  {:>6.1}  {:.2}{}",
                i.start,
                i.calls,
                i.plan.agents,
                i.plan.staff_with_shrinkage,
                i.plan.service_level,
                i.plan.asa_seconds,
                i.plan.occupancy,
                if i.over_seats { format!("  more than the {} seats", self.seats) } else { String::new() }
            )?;
        }
        Ok(())
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

    #[test]
    fn a_day_says_where_seats_run_out() {
        let forecast = vec![("09:00".to_owned(), 100.0), ("10:00".to_owned(), 400.0)];
        let day = plan_day(&forecast, &published(), 45).unwrap();
        assert!(!day.intervals[0].over_seats);
        assert!(day.intervals[1].over_seats, "{}", day);
        assert!(day.to_string().contains("more than the 45 seats"));
    }
}
