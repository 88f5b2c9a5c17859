//! Building blocks with no knowledge of accounts or models: seeded random streams,
//! hashing, progress reporting and cancellation, quoting values in messages, the peak
//! memory of a step, checking a webhook URL.

pub mod hash;
pub mod memory;
pub mod progress;
pub mod rng;
pub mod text;
pub mod url;

/// The `tracing` target of the service's trace spans (exported over OTLP when tracing
/// is on, recorded by nothing otherwise).
pub const TRACE_TARGET: &str = "spamscope::trace";
