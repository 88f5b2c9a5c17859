//! Building blocks with no knowledge of accounts or models: seeded random streams,
//! hashing, progress reporting and cancellation.

pub mod hash;
pub mod progress;
pub mod rng;
