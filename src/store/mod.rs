//! What is kept on disk: the versioned model registry (manifests, model files, the
//! active pointer) and the moderators' feedback store.

pub mod feedback;
pub mod layout;
pub mod predictions;
mod registry;
pub mod tokens;

pub use registry::*;
