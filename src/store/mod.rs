//! What is kept on disk: the versioned model registry (manifests, model files, the
//! active pointer), the moderators' feedback store, and for the scoring service its
//! prediction log and API tokens.

pub mod feedback;
pub mod layout;
mod lockfile;
pub mod predictions;
mod registry;
pub mod review;
pub mod tokens;

pub use registry::*;
