//! Building blocks with no knowledge of accounts or models: seeded random streams,
//! hashing, progress reporting and cancellation, quoting values in messages, the peak
//! memory of a step, checking a webhook's (or any http) URL, milliseconds since the epoch.

pub mod hash;
pub mod memory;
pub mod progress;
pub mod rng;
pub mod text;
pub mod url;

/// Milliseconds from the Unix epoch to `t` (0 before it, saturating far after).
pub fn unix_millis(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The `tracing` target of the service's trace spans (exported over OTLP when tracing
/// is on, recorded by nothing otherwise).
pub const TRACE_TARGET: &str = "spamscope::trace";
