//! What is kept on disk: the versioned model registry (manifests, model files, the
//! active pointer), the moderators' feedback store, and for the scoring service its
//! prediction log and API tokens.

pub mod copy;
pub mod feedback;
/// Review claims and confirmed labels (tables of the feedback store).
pub use feedback::review;
pub mod jobs;
pub mod layout;
pub mod location;
mod lockfile;
pub mod pg;
pub mod predictions;
mod registry;
pub mod tokens;

pub use registry::*;

/// What kind of failure a store error is. It survives the wrapping into the crate error
/// ([`crate::Error::kind`]), so each front-end answers it rightly: the service says 503
/// with `Retry-After` when a database is busy, and names no file when one is corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (a label that is not 0 or 1, a bad user id).
    Invalid,
    /// The request contradicts what is stored (an idempotency key used with another body).
    Conflict,
    /// Something asked for does not exist.
    NotFound,
    /// Another writer held the database or the registry longer than the wait allows;
    /// the same request may succeed later.
    Busy,
    /// What is stored cannot be read as what it should be (a damaged database or file,
    /// a value out of range).
    Corrupt,
    /// Anything else: the disk, the operating system, a stopped writer.
    Other,
}

/// The kind of a SQLite failure.
pub fn sqlite_kind(e: &rusqlite::Error) -> ErrorKind {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorKind::Busy,
        Some(C::DatabaseCorrupt | C::NotADatabase) => ErrorKind::Corrupt,
        Some(_) => ErrorKind::Other,
        None => match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => ErrorKind::Corrupt,
            _ => ErrorKind::Other,
        },
    }
}

/// Integer column `idx` (named `column` in the error) of a row, converted with
/// `try_from`: a stored value out of the type's range (version -1, a count below 0) is
/// an error naming the column and the value, never a wrapped number.
pub(crate) fn int<T: TryFrom<i64>>(
    r: &rusqlite::Row<'_>,
    idx: usize,
    column: &str,
) -> rusqlite::Result<T> {
    to_int(r.get(idx)?, idx, column)
}

/// [`int`] of a column that may be NULL.
pub(crate) fn opt_int<T: TryFrom<i64>>(
    r: &rusqlite::Row<'_>,
    idx: usize,
    column: &str,
) -> rusqlite::Result<Option<T>> {
    r.get::<_, Option<i64>>(idx)?
        .map(|v| to_int(v, idx, column))
        .transpose()
}

/// A 0/1 label column (a stored 2 or 256 is corrupt, not a spammer).
pub(crate) fn label(r: &rusqlite::Row<'_>, idx: usize, column: &str) -> rusqlite::Result<u8> {
    to_label(r.get(idx)?, idx, column)
}

/// [`label`] of a column that may be NULL.
pub(crate) fn opt_label(
    r: &rusqlite::Row<'_>,
    idx: usize,
    column: &str,
) -> rusqlite::Result<Option<u8>> {
    r.get::<_, Option<i64>>(idx)?
        .map(|v| to_label(v, idx, column))
        .transpose()
}

fn to_int<T: TryFrom<i64>>(v: i64, idx: usize, column: &str) -> rusqlite::Result<T> {
    T::try_from(v).map_err(|_| corrupt_value(idx, column, v, std::any::type_name::<T>()))
}

fn to_label(v: i64, idx: usize, column: &str) -> rusqlite::Result<u8> {
    match v {
        0 | 1 => Ok(v as u8),
        _ => Err(corrupt_value(idx, column, v, "a label (0 or 1)")),
    }
}

#[derive(Debug)]
struct CorruptValue(String);

impl std::fmt::Display for CorruptValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CorruptValue {}

fn corrupt_value(idx: usize, column: &str, v: i64, expected: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Integer,
        Box::new(CorruptValue(format!(
            "column {column} holds {v}, which is not {expected}; the database is damaged"
        ))),
    )
}

/// How long a store's connection waits for another process's write lock before it
/// gives up with a busy error ([`ErrorKind::Busy`]).
pub const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A SQLite connection for records that must survive a crash: WAL journal,
/// `synchronous=FULL` (a committed transaction is on disk), and a [`BUSY_WAIT`] wait for
/// another process's write lock. The feedback store, the prediction log and the app's
/// outbox open their databases with it.
pub fn open_durable(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_WAIT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}
