//! # routing: the call-distribution engine
//!
//! Who gets which contact, when, and what the waiting patient is told: the
//! queues, seats, shifts, skills and offers of the helpline. The core is
//! sans-IO: events go in, actions come out, and time is an input (`tick(now)`),
//! never read from a clock, so a whole shift replays in milliseconds.
//!
//! ## Layout
//! - [`engine`]: the sans-IO engine: [`Engine::handle`] and [`Engine::next_timer`].
//! - `redis_log` (feature `redis`, on by default): the engine shared by several nodes through one Redis stream.
//! - [`metrics`]: time per agent state, per interval and per shift, from the event log.
//! - [`staffing`]: the Erlang C staffing planner (`careline staffing`).
//! - [`sim`]: a day through the real engine on a simulated clock (`careline simulate`).

pub mod engine;
pub mod metrics;
#[cfg(feature = "redis")]
pub mod redis_log;
pub mod sim;
pub mod staffing;

pub use engine::*;
