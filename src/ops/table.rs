//! `spamscope bench --table`: the reference's whole model table reproduced in one run.
//! Every row of the comparison is fitted on one stratified split, with one imputation:
//! by spamscope where it fits the model itself, and by scikit-learn (or the model's own
//! library) in the bench's Python environment, so each of our rows stands beside the
//! reference implementation of the same model, measured by the same metrics on the same
//! test accounts. Rows spamscope cannot fit (peers) have the library's figures only.

use crate::data::Dataset;
use crate::data::synth::{SynthParams, default_dataset};
use crate::model::recipe::{Candidate, CandidateKind};
use crate::ops::compare::{Row, compare_prepared, run_peer, select_candidates};
use crate::ops::error::{Error, Result};
use crate::ops::python::PeerSplit;
use crate::ops::train::prepare;
use crate::util::progress::{Prefixed, Reporter};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct TableArgs {
    pub data: Option<PathBuf>,
    pub rows: Option<usize>,
    /// Rows of the table to run (names as in `compare`); all when empty.
    pub only: Vec<String>,
    pub seed: u64,
    /// The Python interpreter; default: the bench venv, created or completed first.
    pub python: Option<PathBuf>,
}

/// One row: spamscope's fit (None for a peer row), the library's, and who ran it; the
/// figures are the comparison's (threshold 0.5, fit seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    pub name: String,
    /// spamscope's figures, or why it failed; None for a peer row.
    pub ours: Option<std::result::Result<Row, String>>,
    /// The Python version's figures, or why it was not run.
    pub reference: std::result::Result<Row, String>,
    /// "sklearn 1.9.1", "xgboost 3.2.0" (the library named in the candidate when the
    /// row did not run).
    pub library: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub data_label: String,
    pub train_rows: usize,
    pub test_rows: usize,
    pub test_positives: usize,
    pub threads: usize,
    pub rows: Vec<TableRow>,
}

/// Runs the table: the named rows (all by default) on a stratified 80/20 split of the
/// data (the default data when none is given), ours then the reference's per row.
pub fn run(args: &TableArgs, reporter: &dyn Reporter) -> Result<Table> {
    let mut d: Dataset = match &args.data {
        Some(p) => Dataset::load_csv(p)?,
        None => default_dataset(SynthParams::default()),
    };
    if let Some(n) = args.rows.filter(|&n| n < d.n_rows()) {
        d = d.subset(&(0..n).collect::<Vec<_>>());
    }
    let candidates = select_candidates(args.seed, &args.only)?;
    let python = match &args.python {
        Some(p) => Ok(p.clone()),
        None => {
            crate::ops::python::make_venv(&[
                "sklearn", "xgboost", "lightgbm", "catboost", "imblearn",
            ]);
            crate::ops::python::interpreter()
        }
    };
    let prep = prepare(&d, None, 0.2, args.seed, reporter)?;
    let test_labels: Vec<u8> = {
        let l = prep.test_set.require_labels()?;
        prep.test_idx.iter().map(|&i| l[i]).collect()
    };
    let mut split: Option<PeerSplit> = {
        let train: Vec<&[f64]> = prep.columns.iter().map(Vec::as_slice).collect();
        let test = prep
            .imputer
            .transform_columns(&prep.test_set.columns, &prep.test_idx);
        let test: Vec<&[f64]> = test.iter().map(Vec::as_slice).collect();
        Some(PeerSplit::write(
            python,
            &train,
            &prep.labels,
            &test,
            args.seed,
        )?)
    };
    let mut rows = Vec::with_capacity(candidates.len());
    for (k, c) in candidates.iter().enumerate() {
        reporter.stage(
            &format!("row {}/{}: {}", k + 1, candidates.len(), c.name),
            0,
            1,
        );
        let ours = match &c.kind {
            CandidateKind::Native(_) => {
                let cmp = compare_prepared(
                    &prep,
                    "",
                    std::slice::from_ref(c),
                    args.seed,
                    false,
                    reporter,
                )?;
                let o = cmp.outcomes.into_iter().next().expect("one candidate");
                Some(
                    o.result
                        .as_ref()
                        .map(|s| Row::of(&c.name, s, None))
                        .map_err(|e| e.to_string()),
                )
            }
            CandidateKind::Peer { .. } => None,
        };
        let progress = Prefixed {
            inner: reporter,
            prefix: &c.name,
        };
        let (reference, library) = match run_peer(
            &prep,
            &mut split,
            &c.name,
            &test_labels,
            args.seed,
            &progress,
        ) {
            Ok((s, lib)) => (Ok(Row::of(&c.name, &s, Some(lib.clone()))), lib),
            Err(Error::Cancelled) => return Err(Error::Cancelled),
            Err(e) => (Err(e.to_string()), reference_library(c).to_string()),
        };
        rows.push(TableRow {
            name: c.name.clone(),
            ours,
            reference,
            library,
        });
    }
    Ok(Table {
        data_label: d.source.describe(),
        train_rows: prep.labels.len(),
        test_rows: test_labels.len(),
        test_positives: test_labels.iter().filter(|&&l| l == 1).count(),
        threads: rayon::current_num_threads(),
        rows,
    })
}

/// The library of a row's Python version before it has run.
fn reference_library(c: &Candidate) -> &'static str {
    c.peer_library().unwrap_or("sklearn")
}

impl Table {
    /// The table in Markdown: per row, ours and the reference's ROC-AUC, average
    /// precision, F1 (at 0.5) and fit seconds, and who fitted the reference.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} — {} training / {} test accounts ({} spammers), one stratified split, {} threads; metrics at 0.5 computed by spamscope for both columns.\n\n",
            self.data_label, self.train_rows, self.test_rows, self.test_positives, self.threads
        );
        s += "| model | ROC-AUC ours | ROC-AUC ref | avg precision ours | avg precision ref | F1 ours | F1 ref | fit s ours | fit s ref | reference |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
        let cell = |f: &Option<&Row>, get: fn(&Row) -> f64, digits: usize| match f {
            Some(f) => format!("{:.digits$}", get(f)),
            None => "—".into(),
        };
        let mut notes = Vec::new();
        for r in &self.rows {
            let ours = match &r.ours {
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => {
                    notes.push(format!("{} (spamscope) failed: {e}", r.name));
                    None
                }
                None => None,
            };
            let reference = match &r.reference {
                Ok(f) => Some(f),
                Err(e) => {
                    notes.push(format!("{} ({}): {e}", r.name, r.library));
                    None
                }
            };
            let name = if r.ours.is_none() {
                format!("{} ({})", r.name, crate::ops::compare::PEER_MARK)
            } else {
                r.name.clone()
            };
            s += &format!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                cell(&ours, |f| f.roc_auc, 4),
                cell(&reference, |f| f.roc_auc, 4),
                cell(&ours, |f| f.average_precision, 4),
                cell(&reference, |f| f.average_precision, 4),
                cell(&ours, |f| f.f1, 4),
                cell(&reference, |f| f.f1, 4),
                cell(&ours, |f| f.fit_seconds, 1),
                cell(&reference, |f| f.fit_seconds, 1),
                r.library
            );
        }
        for n in notes {
            s += &format!("\n- {n}");
        }
        s
    }
}
