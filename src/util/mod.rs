//! Building blocks with no knowledge of accounts or models: seeded random streams,
//! hashing, progress reporting and cancellation, quoting values in messages, the peak
//! memory of a step, checking a webhook URL.

pub mod hash;
pub mod memory;
pub mod progress;
pub mod rng;
pub mod text;
pub mod url;
