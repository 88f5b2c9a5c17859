//! `spamscope store migrate`: a registry copied whole from one store into another (a
//! folder into a PostgreSQL database when a team outgrows one machine, or back), then
//! verified part by part ([`crate::store::copy`]).

use crate::store::Registry;
use crate::store::copy::{CopyReport, Progress};
use crate::store::location::Location;

/// Copies the registry at `from` into the store at `to` (created if needed; it must be
/// empty, or a copy of `from` cut short) and verifies the copy. Every writer of the
/// source (a service, a retrain) should be stopped first: a source that changes during
/// the copy makes it fail.
pub fn migrate(
    from: &Location,
    to: &Location,
    progress: &mut dyn FnMut(Progress<'_>),
) -> crate::Result<CopyReport> {
    if same_store(from, to) {
        return Err(crate::Error::Invalid(format!(
            "--from and --to are the same store ({}); give two",
            to.shown()
        )));
    }
    if let Location::Folder(dir) = from
        && !dir.is_dir()
    {
        return Err(crate::Error::Invalid(format!(
            "--from {}: no registry folder there",
            dir.display()
        )));
    }
    let source = Registry::open_at(from)?;
    let target = Registry::open_at(to)?;
    Ok(crate::store::copy::copy(&source, &target, progress)?)
}

fn same_store(a: &Location, b: &Location) -> bool {
    match (a, b) {
        (Location::Folder(x), Location::Folder(y)) => {
            x == y || matches!((x.canonicalize(), y.canonicalize()), (Ok(p), Ok(q)) if p == q)
        }
        (Location::Postgres { url: x, .. }, Location::Postgres { url: y, .. }) => {
            crate::store::pg::shown_url(x) == crate::store::pg::shown_url(y)
        }
        _ => false,
    }
}
