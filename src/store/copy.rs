//! A whole registry copied into another store: a folder into a PostgreSQL database
//! when a team outgrows one machine, or back. Everything a registry keeps goes: the
//! versions (manifests and files, checked against their SHA-256), the active pointer,
//! the documents (experiment, online-learning settings, latest comparison), every
//! comparison kept, the decision policies, the API
//! tokens (their hashes: the same secrets keep working), the feedback store's tables
//! (ids kept, so idempotency keys still name their records) and the prediction log.
//!
//! Nothing is written until every part of the target is found empty or already equal
//! to the source's (a copy cut short is completed by running it again, never mixed
//! with another store's data). Afterwards both sides are read again and compared part
//! by part: counts, checksums and, for the tables, an order-free tally of the rows
//! ([`crate::util::hash::Tally`]); a source that changed meanwhile (a service still
//! writing to it) makes the copy fail, naming the part.

use super::feedback::FeedbackStore;
use super::layout::{HOLDOUT_FILE, MANIFEST_FILE, MODEL_FILE};
use super::predictions::{PredictionLog, PredictionRecord, Retention};
use super::tokens::TokenStore;
use super::{Document, Registry, StoreError};
use crate::util::hash::{Tally, sha256_hex};

/// Why a copy failed: a store's own error (its kind kept), or a target that holds
/// other data, or a source that changed during the copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Feedback(#[from] super::feedback::FeedbackError),
    #[error(transparent)]
    Predictions(#[from] super::predictions::PredictionLogError),
    #[error(transparent)]
    Tokens(#[from] super::tokens::TokenError),
    /// The target holds something else, or the two sides differ after the copy.
    #[error("{0}")]
    Conflict(String),
}

/// Rows of the prediction log read and written at a time.
const PAGE: usize = 5_000;

/// What was copied and found equal on both sides afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyReport {
    /// One line per part: what it is, how many, and its checksum or tally.
    pub parts: Vec<Part>,
    /// What a registry holds that is not copied, and why.
    pub not_copied: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub count: u64,
    /// A checksum of the part as found on both sides (hex).
    pub check: String,
}

const NOT_COPIED: [&str; 2] = [
    "retrain jobs (they belong to the processes running them)",
    "operations logs and reports (local files of the machine that wrote them)",
];

/// What the copy is doing, for a progress line: the part, and how far it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    pub part: &'a str,
    pub done: u64,
    pub total: u64,
}

fn mismatch(part: &str, how: String) -> CopyError {
    CopyError::Conflict(format!(
        "{part}: {how}; a copy goes into an empty store (or completes one cut short); nothing was written"
    ))
}

fn changed(part: &str) -> CopyError {
    CopyError::Conflict(format!(
        "{part}: the source and the copy differ after copying (was a service or another command still writing to the source?); stop every writer and run the copy again"
    ))
}

/// Copies the registry `from` into `to` and verifies the copy.
pub fn copy(
    from: &Registry,
    to: &Registry,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<CopyReport, CopyError> {
    // Read what the source holds (all but the log, which is read page by page).
    let versions = from.version_numbers()?;
    let active = from.active()?;
    let documents: Vec<(Document, Option<String>)> = Document::ALL
        .iter()
        .map(|&d| Ok((d, from.read_document(d)?)))
        .collect::<Result<_, StoreError>>()?;
    let comparisons: Vec<(String, String)> = from
        .comparison_ids()?
        .into_iter()
        .filter_map(|id| match from.read_comparison(&id) {
            Ok(Some(text)) => Some(Ok((id, text))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, StoreError>>()?;
    let policies: Vec<(u32, String)> = from
        .policy_numbers()?
        .into_iter()
        .filter_map(|n| match from.read_policy(n) {
            Ok(Some(text)) => Some(Ok((n, text))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, StoreError>>()?;
    let pointers = from.policy_pointers()?;
    let from_tokens = TokenStore::of(from);
    let tokens = from_tokens.export()?;
    let from_feedback = FeedbackStore::of(from)?;
    let tables = from_feedback.export_tables()?;
    let from_log = open_log(from)?;

    // Check the target before writing anything.
    let to_versions = to.version_numbers()?;
    if let Some(v) = to_versions.iter().find(|v| !versions.contains(v)) {
        return Err(mismatch(
            "versions",
            format!("the target holds version {v}, which the source does not"),
        ));
    }
    for &v in &to_versions {
        let (have, want) = (to.manifest(v)?, from.manifest(v)?);
        if have.model_file != want.model_file || have.holdout_file != want.holdout_file {
            return Err(mismatch(
                "versions",
                format!("the target's version {v} has other files than the source's"),
            ));
        }
    }
    let to_active = to.active()?;
    if to_active.is_some() && to_active != active {
        return Err(mismatch(
            "active version",
            format!(
                "the target serves version {} already",
                to_active.map_or(0, |v| v)
            ),
        ));
    }
    for (d, text) in &documents {
        let have = to.read_document(*d)?;
        if have.is_some() && have != *text {
            return Err(mismatch(
                &to.document_place(*d),
                "the target holds another one".into(),
            ));
        }
    }
    for (id, text) in &comparisons {
        let have = to.read_comparison(id)?;
        if have.as_ref().is_some_and(|h| h != text) {
            return Err(mismatch(
                &format!("comparison {id}"),
                "the target holds another one".into(),
            ));
        }
    }
    for (n, text) in &policies {
        if to.read_policy(*n)?.is_some_and(|h| h != *text) {
            return Err(mismatch(
                &format!("policy {n}"),
                "the target holds another one".into(),
            ));
        }
    }
    let to_pointers = to.policy_pointers()?;
    if to_pointers != Default::default() && to_pointers != pointers {
        return Err(mismatch(
            "policies",
            "the target has another live or shadow policy".into(),
        ));
    }
    let to_tokens = TokenStore::of(to);
    let have_tokens = to_tokens.export()?;
    if !have_tokens.is_empty() && have_tokens != tokens {
        return Err(mismatch("tokens", "the target holds other tokens".into()));
    }
    let mut to_feedback = FeedbackStore::of(to)?;
    let have_tables = to_feedback.export_tables()?;
    if !have_tables.is_empty() && have_tables.summary() != tables.summary() {
        return Err(mismatch(
            "feedback",
            format!(
                "the target holds {} other rows in its feedback tables",
                have_tables.len()
            ),
        ));
    }

    // Versions, oldest first; one already there (a copy cut short) is only checked.
    let total = versions.len() as u64;
    for (i, &v) in versions.iter().enumerate() {
        progress(Progress {
            part: "versions",
            done: i as u64,
            total,
        });
        if !to_versions.contains(&v) {
            let text = from.version_file(v, MANIFEST_FILE)?;
            let model = from.version_file(v, MODEL_FILE)?;
            let holdout = from.version_file(v, HOLDOUT_FILE)?;
            to.install_version(v, &text, &model, &holdout)?;
        }
    }
    progress(Progress {
        part: "versions",
        done: total,
        total,
    });
    if let Some(v) = active
        && to_active.is_none()
    {
        to.set_active(v)?;
    }
    for (d, text) in &documents {
        if let Some(text) = text {
            to.write_document(*d, text)?;
        }
    }
    for (id, text) in &comparisons {
        to.keep_comparison(id, text)?;
    }
    if !policies.is_empty() {
        to.edit_policies(|e| {
            for (n, text) in &policies {
                e.install(*n, text)?;
            }
            e.set_pointers(pointers)
        })?;
    }
    if have_tokens.is_empty() && !tokens.is_empty() {
        to_tokens.import(&tokens)?;
    }
    if have_tables.is_empty() && !tables.is_empty() {
        progress(Progress {
            part: "feedback",
            done: 0,
            total: tables.len() as u64,
        });
        to_feedback.import_tables(&tables)?;
    }
    if let Some(src) = &from_log {
        copy_log(src, &open_log_for_writing(to)?, progress)?;
    }

    // Verify: read both sides again, part by part.
    let mut parts = Vec::new();
    let mut version_sums = Tally::default();
    for &v in &versions {
        let (a, b) = (from.manifest(v)?, to.manifest(v)?);
        if a != b {
            return Err(changed(&format!("version {v}'s manifest")));
        }
        for name in [MODEL_FILE, HOLDOUT_FILE] {
            // Read back from the target: checked against its manifest's checksum.
            let sha = sha256_hex(&to.version_file(v, name)?);
            version_sums.add(format!("{v}/{name}/{sha}").as_bytes());
        }
    }
    if from.version_numbers()? != to.version_numbers()? {
        return Err(changed("versions"));
    }
    parts.push(Part {
        name: "versions (manifests, model and holdout files)".into(),
        count: versions.len() as u64,
        check: version_sums.hex(),
    });
    if from.active()? != to.active()? {
        return Err(changed("active version"));
    }
    parts.push(Part {
        name: format!(
            "active version: {}",
            active.map_or("none".to_string(), |v| format!("v{v}"))
        ),
        count: u64::from(active.is_some()),
        check: String::new(),
    });
    let mut docs = Tally::default();
    let mut doc_count = 0;
    for &(d, _) in &documents {
        let (a, b) = (from.read_document(d)?, to.read_document(d)?);
        if a != b {
            return Err(changed(&to.document_place(d)));
        }
        if let Some(text) = a {
            doc_count += 1;
            docs.add(text.as_bytes());
        }
    }
    parts.push(Part {
        name: "documents (experiment, online settings, latest comparison)".into(),
        count: doc_count,
        check: docs.hex(),
    });
    if from.comparison_ids()? != to.comparison_ids()? {
        return Err(changed("comparisons"));
    }
    let mut kept = Tally::default();
    for (id, text) in &comparisons {
        if to.read_comparison(id)?.as_ref() != Some(text) {
            return Err(changed(&format!("comparison {id}")));
        }
        kept.add(format!("{id}/{}", sha256_hex(text.as_bytes())).as_bytes());
    }
    parts.push(Part {
        name: "comparisons kept (for MLflow)".into(),
        count: comparisons.len() as u64,
        check: kept.hex(),
    });
    if from.policy_numbers()? != to.policy_numbers()? || to.policy_pointers()? != pointers {
        return Err(changed("policies"));
    }
    let mut policy_sums = Tally::default();
    for (n, text) in &policies {
        if to.read_policy(*n)?.as_ref() != Some(text) {
            return Err(changed(&format!("policy {n}")));
        }
        policy_sums.add(format!("{n}/{}", sha256_hex(text.as_bytes())).as_bytes());
    }
    policy_sums.add(format!("{pointers:?}").as_bytes());
    parts.push(Part {
        name: format!(
            "decision policies (live: {}, shadow: {})",
            pointers.live.map_or("none".into(), |n| n.to_string()),
            pointers.shadow.map_or("none".into(), |n| n.to_string())
        ),
        count: policies.len() as u64,
        check: policy_sums.hex(),
    });
    let (a, b) = (from_tokens.export()?, to_tokens.export()?);
    if a != b {
        return Err(changed("tokens"));
    }
    let mut token_sums = Tally::default();
    for t in &a {
        token_sums.add(format!("{}/{}/{}", t.name, t.role.name(), t.sha256).as_bytes());
    }
    parts.push(Part {
        name: "API tokens (hashes)".into(),
        count: a.len() as u64,
        check: token_sums.hex(),
    });
    let (a, b) = (
        from_feedback.export_tables()?.summary(),
        to_feedback.export_tables()?.summary(),
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if x != y {
            return Err(changed(&format!("feedback table {name}")));
        }
        parts.push(Part {
            name: format!("feedback table {name}"),
            count: x.rows,
            check: x.hex(),
        });
    }
    let (a, b) = match &from_log {
        Some(src) => (log_tally(src)?, log_tally(&open_log_for_writing(to)?)?),
        None => (Tally::default(), Tally::default()),
    };
    if a != b {
        return Err(changed("prediction log"));
    }
    parts.push(Part {
        name: "prediction log".into(),
        count: a.rows,
        check: a.hex(),
    });
    Ok(CopyReport {
        parts,
        not_copied: NOT_COPIED.to_vec(),
    })
}

/// No limits: a copy keeps every row (the service applies its own when it runs).
const KEEP_ALL: Retention = Retention {
    max_rows: 0,
    max_days: 0,
};

/// The source's log, if it has one (a folder without a log file gets none made).
fn open_log(r: &Registry) -> Result<Option<PredictionLog>, CopyError> {
    if r.shared().is_none() && !r.layout().predictions_db().exists() {
        return Ok(None);
    }
    open_log_for_writing(r).map(Some)
}

fn open_log_for_writing(r: &Registry) -> Result<PredictionLog, CopyError> {
    Ok(PredictionLog::open_for(r, KEEP_ALL)?)
}

/// Appends every row of `src` to `dst` in order, a page at a time (each committed
/// before the next is read). Rows whose id `dst` has already are kept once.
fn copy_log(
    src: &PredictionLog,
    dst: &PredictionLog,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), CopyError> {
    let total = src.count()?;
    let mut after = 0;
    let mut done = 0;
    loop {
        progress(Progress {
            part: "prediction log",
            done,
            total,
        });
        let page = src.page(after, PAGE)?;
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        done += page.len() as u64;
        for (_, r) in page {
            dst.append(r);
        }
        dst.flush()?;
    }
    Ok(())
}

/// The log's rows as a tally.
fn log_tally(log: &PredictionLog) -> Result<Tally, CopyError> {
    let mut tally = Tally::default();
    let mut after = 0;
    let mut buf = Vec::new();
    loop {
        let page = log.page(after, PAGE)?;
        let Some(&(last, _)) = page.last() else {
            return Ok(tally);
        };
        after = last;
        for (_, r) in &page {
            buf.clear();
            encode(r, &mut buf);
            tally.add(&buf);
        }
    }
}

/// A record's canonical bytes (NaN as one pattern).
fn encode(r: &PredictionRecord, out: &mut Vec<u8>) {
    let real = |v: f64| {
        if v.is_nan() { f64::NAN } else { v }
            .to_bits()
            .to_le_bytes()
    };
    let text = |out: &mut Vec<u8>, s: Option<&str>| match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
    };
    text(out, Some(&r.id));
    text(out, Some(&r.created_at));
    out.extend(r.version.to_le_bytes());
    out.extend(real(r.score));
    text(out, Some(&r.caller));
    text(out, r.user_id.as_deref());
    for &x in &r.features {
        out.extend(real(x));
    }
    match &r.experiment {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            text(out, Some(&t.experiment));
            out.extend(t.other_version.to_le_bytes());
            out.extend(real(t.other_probability));
        }
    }
}
