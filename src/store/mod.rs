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

/// A SQLite connection for records that must survive a crash: WAL journal,
/// `synchronous=FULL` (a committed transaction is on disk), and a 10 s wait for another
/// process's write lock. The feedback store, the prediction log and the app's outbox
/// open their databases with it.
pub fn open_durable(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}
