//! Shadow and canary experiments: a candidate version runs beside the active one.
//!
//! - Shadow: every request is scored by both versions; the active one answers.
//! - Canary: a share of users is answered by the candidate. The arm of a request with a
//!   user id is a hash of (experiment id, user id), so a user stays in one arm for the
//!   whole experiment and about `share` of the users are in the candidate's; a request
//!   without a user id draws its arm at random.
//!
//! Either way both versions score every request, so the service logs the other
//! version's probability beside the answer and [`stats`] can compare them on every
//! request. The experiment's definition is `experiment.json` in the registry (written
//! atomically), so it survives a restart; promoting the candidate goes through
//! [`Registry::rollback`], the same step as `POST /model/rollback` and the CLI.

use crate::store::feedback::FeedbackLabel;
use crate::store::predictions::{
    ExperimentRow, ExperimentTag, PredictionRecord, new_prediction_id,
};
use crate::store::{Document, Manifest, Registry, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How the candidate runs beside the active version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Shadow,
    Canary,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, ExperimentError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "shadow" => Ok(Mode::Shadow),
            "canary" => Ok(Mode::Canary),
            _ => Err(ExperimentError::UnknownMode(crate::util::text::quote(s))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Canary => "canary",
        }
    }
}

/// A running experiment, as `experiment.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Unique per start: the user-to-arm hash depends on it.
    pub id: String,
    pub mode: Mode,
    /// The version run beside the active one.
    pub candidate: u32,
    /// The active version when the experiment started.
    pub baseline: u32,
    /// Canary: the share of users (or of requests without a user id) the candidate
    /// answers. None for a shadow.
    pub share: Option<f64>,
    /// RFC 3339.
    pub started_at: String,
    /// Who started it (the token's name).
    pub started_by: String,
}

/// Which version answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Active,
    Candidate,
}

/// What `POST /model/experiment` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub version: u32,
    pub mode: Mode,
    pub share: Option<f64>,
}

pub use super::error::ExperimentError;

/// The canary share, checked: required for a canary and within (0, 1]; a shadow's is
/// ignored (None).
pub fn check_share(mode: Mode, share: Option<f64>) -> Result<Option<f64>, ExperimentError> {
    match (mode, share) {
        (Mode::Shadow, _) => Ok(None),
        (Mode::Canary, None) => Err(ExperimentError::MissingShare),
        (Mode::Canary, Some(x)) if x.is_finite() && x > 0.0 && x <= 1.0 => Ok(Some(x)),
        (Mode::Canary, Some(x)) => Err(ExperimentError::BadShare(x.to_string())),
    }
}

/// The registry's running experiment, if any.
pub fn load(registry: &Registry) -> Result<Option<Experiment>, ExperimentError> {
    let Some(text) = registry.read_document(Document::Experiment)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        ExperimentError::file(
            registry.document_place(Document::Experiment),
            format!("unreadable experiment: {e}"),
        )
    })
}

/// Starts an experiment of `req.version` beside the active version and records it in
/// the registry (atomically). One experiment at a time.
pub fn start(
    registry: &Registry,
    req: &StartRequest,
    by: &str,
) -> Result<Experiment, ExperimentError> {
    let share = check_share(req.mode, req.share)?;
    if let Some(e) = load(registry)? {
        return Err(ExperimentError::AlreadyRunning {
            id: e.id,
            candidate: e.candidate,
        });
    }
    match registry.manifest(req.version) {
        Ok(_) => {}
        Err(StoreError::NoSuchVersion(v)) => return Err(ExperimentError::NoSuchVersion(v)),
        Err(e) => return Err(e.into()),
    }
    let Some(active) = registry.active()? else {
        return Err(StoreError::NoVersions(registry.shown()).into());
    };
    if active == req.version {
        return Err(ExperimentError::IsActive(active));
    }
    let now = std::time::SystemTime::now();
    let millis = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let e = Experiment {
        id: format!("x{millis:x}-v{}", req.version),
        mode: req.mode,
        candidate: req.version,
        baseline: active,
        share,
        started_at: humantime::format_rfc3339_seconds(now).to_string(),
        started_by: by.to_string(),
    };
    let text = serde_json::to_string_pretty(&e).expect("an experiment always serialises");
    // One experiment at a time, also when two processes start one at once.
    if !registry.create_document(Document::Experiment, &text)? {
        return match load(registry)? {
            Some(other) => Err(ExperimentError::AlreadyRunning {
                id: other.id,
                candidate: other.candidate,
            }),
            None => Err(ExperimentError::NotRunning),
        };
    }
    Ok(e)
}

/// Stops the running experiment; returns it.
pub fn stop(registry: &Registry) -> Result<Experiment, ExperimentError> {
    let Some(e) = load(registry)? else {
        return Err(ExperimentError::NotRunning);
    };
    registry.remove_document(Document::Experiment)?;
    Ok(e)
}

/// Makes the candidate the active version (the registry's rollback-to-version step, as
/// `/model/rollback` takes it), then stops the experiment. Returns the experiment and
/// the new active version's manifest.
pub fn promote(registry: &Registry) -> Result<(Experiment, Manifest), ExperimentError> {
    let Some(e) = load(registry)? else {
        return Err(ExperimentError::NotRunning);
    };
    let m = match registry.rollback(e.candidate) {
        Ok(m) => m,
        Err(StoreError::NoSuchVersion(v)) => return Err(ExperimentError::NoSuchVersion(v)),
        Err(err) => return Err(err.into()),
    };
    stop(registry)?;
    Ok((e, m))
}

/// Where `user_id` falls in `[0, 1)` for experiment `id`: the first 8 bytes of
/// SHA-256(id, user id). Uniform over users, fixed for one experiment.
pub fn user_bucket(id: &str, user_id: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0u8]);
    h.update(user_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform draw in `[0, 1)` from the operating system's random source (a hash of the
/// time and a counter where it does not answer).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    let x = if getrandom::fill(&mut b).is_ok() {
        u64::from_le_bytes(b)
    } else {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        crate::util::rng::mix64(nanos ^ COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    };
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm of a request: a shadow's is always the active version; a canary's is the
/// candidate for users whose bucket is below the share, and, without a user id, when
/// `draw()` (a uniform draw in `[0, 1)`, e.g. [`random_unit`]) is.
pub fn assign(e: &Experiment, user_id: Option<&str>, draw: impl FnOnce() -> f64) -> Arm {
    let share = match (e.mode, e.share) {
        (Mode::Canary, Some(s)) => s,
        _ => return Arm::Active,
    };
    let x = match user_id {
        Some(u) => user_bucket(&e.id, u),
        None => draw(),
    };
    if x < share {
        Arm::Candidate
    } else {
        Arm::Active
    }
}

/// Bins of the score histograms: `[0, 0.1)`, ..., `[0.9, 1]`.
pub const BINS: usize = 10;

/// One version's side of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionStats {
    pub version: u32,
    /// Whether it is the experiment's candidate.
    pub candidate: bool,
    /// Requests it answered.
    pub answered: u64,
    /// Requests it scored (answered or beside the answer).
    pub scored: u64,
    /// Mean probability over the requests it scored (None without any).
    pub mean_probability: Option<f64>,
    /// Its probabilities in [`BINS`] equal bins from 0 to 1.
    pub histogram: Vec<u64>,
    /// Scored requests whose account a moderator labelled, and how many of those its
    /// verdict got right.
    pub labelled: u64,
    pub correct: u64,
    pub accuracy: Option<f64>,
}

/// An experiment's numbers, from its logged predictions and the moderators' labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub answered_by_active: u64,
    pub answered_by_candidate: u64,
    /// Requests scored by both versions (every logged one), and those where their
    /// verdicts agreed.
    pub both_scored: u64,
    pub agreed: u64,
    pub agreement: Option<f64>,
    /// By version number: the candidate and the active version(s).
    pub versions: Vec<VersionStats>,
}

/// The numbers of experiment `e` from its logged `rows`. A row's label is the newest
/// moderator label quoting its prediction id, else the newest one on its user id;
/// `threshold(v)` is version v's threshold, asked once per version the rows name; its
/// error (a manifest that cannot be read) is the answer: no verdict is made up.
pub fn stats<E>(
    e: &Experiment,
    rows: &[ExperimentRow],
    labels: &[FeedbackLabel],
    threshold: impl Fn(u32) -> Result<f64, E>,
) -> Result<Stats, E> {
    let mut thresholds: HashMap<u32, f64> = HashMap::new();
    for r in rows {
        for v in [r.version, r.other_version] {
            if let std::collections::hash_map::Entry::Vacant(slot) = thresholds.entry(v) {
                slot.insert(threshold(v)?);
            }
        }
    }
    let mut by_prediction: HashMap<&str, u8> = HashMap::new();
    let mut by_user: HashMap<&str, u8> = HashMap::new();
    for l in labels {
        if let Some(p) = &l.prediction_id {
            by_prediction.insert(p, l.label);
        }
        if let Some(u) = &l.user_id {
            by_user.insert(u, l.label);
        }
    }
    #[derive(Default)]
    struct Acc {
        answered: u64,
        scored: u64,
        sum: f64,
        histogram: [u64; BINS],
        labelled: u64,
        correct: u64,
    }
    let mut acc: BTreeMap<u32, Acc> = BTreeMap::new();
    let verdict = |v: u32, p: f64| crate::eval::verdict::is_spam(p, thresholds[&v]);
    let mut s = Stats {
        requests: rows.len() as u64,
        answered_by_active: 0,
        answered_by_candidate: 0,
        both_scored: 0,
        agreed: 0,
        agreement: None,
        versions: Vec::new(),
    };
    for r in rows {
        if r.version == e.candidate {
            s.answered_by_candidate += 1;
        } else {
            s.answered_by_active += 1;
        }
        let label = by_prediction
            .get(r.id.as_str())
            .or_else(|| r.user_id.as_deref().and_then(|u| by_user.get(u)))
            .copied();
        let answer = verdict(r.version, r.probability);
        let other = verdict(r.other_version, r.other_probability);
        s.both_scored += 1;
        s.agreed += u64::from(answer == other);
        for (v, p, spam, answered) in [
            (r.version, r.probability, answer, true),
            (r.other_version, r.other_probability, other, false),
        ] {
            let a = acc.entry(v).or_default();
            a.answered += u64::from(answered);
            a.scored += 1;
            a.sum += p;
            a.histogram[((p * BINS as f64).floor().max(0.0) as usize).min(BINS - 1)] += 1;
            if let Some(l) = label {
                a.labelled += 1;
                a.correct += u64::from(u8::from(spam) == l);
            }
        }
    }
    let ratio = |k: u64, n: u64| (n > 0).then(|| k as f64 / n as f64);
    s.agreement = ratio(s.agreed, s.both_scored);
    // The candidate is listed even before it scored anything.
    acc.entry(e.candidate).or_default();
    s.versions = acc
        .into_iter()
        .map(|(version, a)| VersionStats {
            version,
            candidate: version == e.candidate,
            answered: a.answered,
            scored: a.scored,
            mean_probability: ratio(0, a.scored).map(|_| a.sum / a.scored as f64),
            histogram: a.histogram.to_vec(),
            labelled: a.labelled,
            correct: a.correct,
            accuracy: ratio(a.correct, a.labelled),
        })
        .collect();
    Ok(s)
}

/// A version that can answer: its manifest (number, threshold) and its model.
#[derive(Clone, Copy)]
pub struct Served<'a> {
    pub manifest: &'a Manifest,
    pub model: &'a crate::model::Model,
}

/// What answers requests: the active version and, during an experiment, its candidate.
#[derive(Clone, Copy)]
pub struct Arms<'a> {
    pub active: Served<'a>,
    /// The running experiment and its candidate (ignored when the candidate is the
    /// active version, as after a promotion).
    pub experiment: Option<(&'a Experiment, Served<'a>)>,
}

impl<'a> Arms<'a> {
    fn running(&self) -> Option<(&'a Experiment, Served<'a>)> {
        self.experiment
            .filter(|(_, c)| c.manifest.version != self.active.manifest.version)
    }

    /// The version that answers `user_id`, and the other one of a running experiment.
    fn pick(&self, user_id: Option<&str>) -> (Served<'a>, Option<(&'a Experiment, Served<'a>)>) {
        match self.running() {
            None => (self.active, None),
            Some((e, candidate)) => match assign(e, user_id, random_unit) {
                Arm::Active => (self.active, Some((e, candidate))),
                Arm::Candidate => (candidate, Some((e, self.active))),
            },
        }
    }
}

/// When a prediction was made, as the prediction log keeps it.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Scores one account for a caller: the arm of a running experiment answers (sticky by
/// `user_id`), the other version scores it too, and the record for the prediction log
/// carries both under a new prediction id. Without an experiment the active version
/// answers alone. Nothing is written: the caller appends the record
/// ([`PredictionLog::append`]) once the answer is to be given.
pub fn serve_one(
    arms: Arms<'_>,
    account: &crate::ops::predict::Account,
    user_id: Option<String>,
    caller: &str,
    explain: crate::ops::predict::Explain,
) -> (crate::ops::predict::Prediction, PredictionRecord) {
    let (answer, other) = arms.pick(user_id.as_deref());
    let p = crate::ops::predict::predict(answer.model, answer.manifest, account, explain);
    let experiment = other.map(|(e, o)| ExperimentTag {
        experiment: e.id.clone(),
        other_version: o.manifest.version,
        other_probability: o.model.predict_one(&account.values),
    });
    let record = PredictionRecord {
        id: new_prediction_id(),
        created_at: now_rfc3339(),
        version: p.version,
        features: account.values.clone(),
        score: p.score,
        caller: caller.to_string(),
        user_id,
        experiment,
        decision: None,
        shadow: None,
    };
    (p, record)
}

/// Scores a batch of accounts for a caller, as [`serve_one`] does each: during an
/// experiment both versions score every row and each row's arm answers; each row's
/// record for the prediction log carries the other version's probability beside it.
/// `explain` contributions per row; `exact` asks each version for its exact method.
pub fn serve_batch(
    arms: Arms<'_>,
    d: &crate::data::Dataset,
    caller: &str,
    explain: usize,
    exact: bool,
) -> crate::Result<(crate::ops::score::ScoredBatch, Vec<PredictionRecord>)> {
    use crate::model::explain::Method;
    let score_with = |v: Served<'_>| {
        let method = if exact {
            v.model.detail_method()
        } else {
            Method::PathAttribution
        };
        crate::ops::score::score_batch(
            d,
            v.model,
            v.manifest.version,
            v.manifest.threshold,
            explain,
            method,
            &crate::util::progress::NoProgress,
        )
    };
    let base = score_with(arms.active)?;
    let (b, beside) = match arms.running() {
        None => (base, None),
        Some((e, candidate)) => {
            let cand = score_with(candidate)?;
            let take: Vec<bool> = (0..d.n_rows())
                .map(|i| assign(e, Some(&d.user_ids[i]), random_unit) == Arm::Candidate)
                .collect();
            let mixed = base.mix(&cand, &take)?;
            let other: Vec<(u32, f64)> = take
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let o = if c { &base } else { &cand };
                    (o.version, o.score[i])
                })
                .collect();
            (mixed, Some((e.id.clone(), other)))
        }
    };
    let now = now_rfc3339();
    let records = (0..d.n_rows())
        .map(|i| PredictionRecord {
            id: new_prediction_id(),
            created_at: now.clone(),
            version: b.version_of(i),
            features: d.row(i),
            score: b.score[i],
            caller: caller.to_string(),
            user_id: Some(d.user_ids[i].to_string()),
            experiment: beside.as_ref().map(|(id, other)| ExperimentTag {
                experiment: id.clone(),
                other_version: other[i].0,
                other_probability: other[i].1,
            }),
            decision: None,
            shadow: None,
        })
        .collect();
    Ok((b, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(share: f64) -> Experiment {
        Experiment {
            id: "x1-v2".into(),
            mode: Mode::Canary,
            candidate: 2,
            baseline: 1,
            share: Some(share),
            started_at: "2026-01-01T00:00:00Z".into(),
            started_by: "t".into(),
        }
    }

    #[test]
    fn modes_and_shares_are_checked_naming_the_field() {
        assert_eq!(Mode::parse(" Canary ").unwrap(), Mode::Canary);
        assert_eq!(Mode::parse("shadow").unwrap(), Mode::Shadow);
        let e = Mode::parse("blue-green").unwrap_err();
        assert_eq!(e.field(), Some("mode"));
        assert!(e.to_string().contains("blue-green"), "{e}");
        assert_eq!(check_share(Mode::Shadow, None).unwrap(), None);
        assert_eq!(check_share(Mode::Shadow, Some(f64::NAN)).unwrap(), None);
        assert_eq!(check_share(Mode::Canary, Some(1.0)).unwrap(), Some(1.0));
        assert_eq!(check_share(Mode::Canary, Some(0.1)).unwrap(), Some(0.1));
        for bad in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            let e = check_share(Mode::Canary, Some(bad)).unwrap_err();
            assert_eq!(e.field(), Some("share"), "{bad}");
            assert!(!e.to_string().contains('\n'));
        }
        assert!(matches!(
            check_share(Mode::Canary, None),
            Err(ExperimentError::MissingShare)
        ));
    }

    #[test]
    fn a_user_keeps_its_arm_and_about_share_of_users_are_candidates() {
        let e = canary(0.3);
        let mut candidates = 0;
        for u in 0..20_000 {
            let user = format!("user-{u}");
            let arm = assign(&e, Some(&user), || unreachable!("a user id needs no draw"));
            assert_eq!(arm, assign(&e, Some(&user), || 0.0));
            candidates += usize::from(arm == Arm::Candidate);
        }
        let share = candidates as f64 / 20_000.0;
        assert!((share - 0.3).abs() < 0.02, "{share}");
        // Another experiment reshuffles the users.
        let mut other = canary(0.3);
        other.id = "x2-v2".into();
        let moved = (0..2_000)
            .filter(|u| {
                let user = format!("user-{u}");
                assign(&e, Some(&user), || 0.0) != assign(&other, Some(&user), || 0.0)
            })
            .count();
        assert!(moved > 400, "{moved}");
        // Without a user id: the draw decides; a shadow always answers with the active.
        assert_eq!(assign(&e, None, || 0.29), Arm::Candidate);
        assert_eq!(assign(&e, None, || 0.3), Arm::Active);
        let mut shadow = canary(0.3);
        shadow.mode = Mode::Shadow;
        shadow.share = None;
        assert_eq!(assign(&shadow, Some("user-1"), || 0.0), Arm::Active);
        assert_eq!(assign(&shadow, None, || 0.0), Arm::Active);
        let draws: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.1, "{mean}");
    }

    /// A registry with versions 1 (active) and 2, small and quick.
    fn registry(dir: &std::path::Path) -> Registry {
        use crate::ops::train::{TrainConfig, train};
        let reg = Registry::open(dir).unwrap();
        let data = crate::data::synth::default_dataset(crate::data::synth::SynthParams {
            rows: 600,
            seed: 3,
        });
        let cfg = TrainConfig {
            params: crate::model::forest::ForestParams {
                n_trees: 3,
                max_depth: Some(4),
                ..Default::default()
            },
            ..Default::default()
        };
        let trained = train(&data, None, &cfg, &crate::util::progress::NoProgress).unwrap();
        trained.register(&reg, &data, &cfg, true).unwrap();
        trained.register(&reg, &data, &cfg, false).unwrap();
        reg
    }

    #[test]
    fn start_checks_the_version_persists_and_stop_and_promote_end_it() {
        let dir = tempfile::tempdir().unwrap();
        let reg = registry(dir.path());
        let req = |version, mode, share| StartRequest {
            version,
            mode,
            share,
        };
        assert!(load(&reg).unwrap().is_none());
        assert!(matches!(stop(&reg), Err(ExperimentError::NotRunning)));
        assert!(matches!(promote(&reg), Err(ExperimentError::NotRunning)));
        let e = start(&reg, &req(9, Mode::Shadow, None), "ops").unwrap_err();
        assert!(matches!(e, ExperimentError::NoSuchVersion(9)));
        assert_eq!(e.field(), Some("version"));
        let e = start(&reg, &req(1, Mode::Shadow, None), "ops").unwrap_err();
        assert!(matches!(e, ExperimentError::IsActive(1)), "{e}");
        let e = start(&reg, &req(2, Mode::Canary, Some(0.0)), "ops").unwrap_err();
        assert_eq!(e.field(), Some("share"));
        assert!(load(&reg).unwrap().is_none());

        let e = start(&reg, &req(2, Mode::Canary, Some(0.25)), "ops").unwrap();
        assert_eq!(
            (
                e.mode,
                e.candidate,
                e.baseline,
                e.share,
                e.started_by.as_str()
            ),
            (Mode::Canary, 2, 1, Some(0.25), "ops")
        );
        // On disk, as it was started; one at a time.
        assert_eq!(load(&reg).unwrap(), Some(e.clone()));
        let again = start(&reg, &req(2, Mode::Shadow, None), "ops").unwrap_err();
        assert!(matches!(again, ExperimentError::AlreadyRunning { .. }));
        assert_eq!(stop(&reg).unwrap(), e);
        assert!(load(&reg).unwrap().is_none());

        // Promotion: the registry's rollback to the candidate, then no experiment.
        let e = start(&reg, &req(2, Mode::Shadow, Some(7.0)), "ops").unwrap();
        assert_eq!(e.share, None);
        let (promoted, m) = promote(&reg).unwrap();
        assert_eq!((promoted, m.version), (e, 2));
        assert_eq!(reg.active().unwrap(), Some(2));
        assert_eq!(
            reg.manifest(1).unwrap().status,
            crate::store::Status::RolledBack
        );
        assert!(load(&reg).unwrap().is_none());

        // A damaged file is a one-line error naming it.
        std::fs::write(reg.layout().experiment(), "{not json").unwrap();
        let e = load(&reg).unwrap_err().to_string();
        assert!(e.contains("experiment.json") && !e.contains('\n'), "{e}");
    }

    fn row(id: &str, user: Option<&str>, v: u32, p: f64, ov: u32, op: f64) -> ExperimentRow {
        ExperimentRow {
            id: id.into(),
            user_id: user.map(str::to_string),
            version: v,
            probability: p,
            other_version: ov,
            other_probability: op,
        }
    }

    #[test]
    fn stats_count_arms_agreement_histograms_and_labelled_accuracy() {
        let e = canary(0.5);
        let rows = vec![
            // Active answers; both say spam.
            row("p1", Some("a"), 1, 0.9, 2, 0.8),
            // Candidate answers; they disagree (candidate 0.3 legit, active 0.7 spam).
            row("p2", Some("b"), 2, 0.3, 1, 0.7),
            // Active answers; both legit; version 2's threshold is 0.2: 0.25 is spam.
            row("p3", None, 1, 0.05, 2, 0.25),
            row("p4", Some("c"), 2, 1.0, 1, 0.0),
        ];
        let labels = vec![
            FeedbackLabel {
                prediction_id: Some("p2".into()),
                user_id: Some("zzz".into()),
                label: 1,
            },
            // By user id: p1's account; the later label wins.
            FeedbackLabel {
                prediction_id: None,
                user_id: Some("a".into()),
                label: 1,
            },
            FeedbackLabel {
                prediction_id: None,
                user_id: Some("a".into()),
                label: 0,
            },
        ];
        let threshold = |v: u32| Ok::<_, ()>(if v == 2 { 0.2 } else { 0.5 });
        let s = stats(&e, &rows, &labels, threshold).unwrap();
        assert_eq!(s.requests, 4);
        assert_eq!((s.answered_by_active, s.answered_by_candidate), (2, 2));
        // p1 agree, p2 (v2 0.3 > 0.2 spam, v1 0.7 spam) agree, p3 (v1 legit, v2 spam)
        // disagree, p4 (v2 spam, v1 legit) disagree.
        assert_eq!((s.both_scored, s.agreed), (4, 2));
        assert_eq!(s.agreement, Some(0.5));
        assert_eq!(s.versions.len(), 2);
        let v1 = &s.versions[0];
        let v2 = &s.versions[1];
        assert_eq!(
            (v1.version, v1.candidate, v2.version, v2.candidate),
            (1, false, 2, true)
        );
        assert_eq!(
            (v1.answered, v1.scored, v2.answered, v2.scored),
            (2, 4, 2, 4)
        );
        assert!((v1.mean_probability.unwrap() - (0.9 + 0.7 + 0.05 + 0.0) / 4.0).abs() < 1e-12);
        assert_eq!(v1.histogram, vec![2, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(v2.histogram, vec![0, 0, 1, 1, 0, 0, 0, 0, 1, 1]);
        // Labelled: p1 (label 0 by user a) and p2 (label 1 by its id).
        // v1: p1 spam (wrong), p2 spam (right). v2: p1 spam (wrong), p2 spam (right).
        assert_eq!((v1.labelled, v1.correct, v1.accuracy), (2, 1, Some(0.5)));
        assert_eq!((v2.labelled, v2.correct, v2.accuracy), (2, 1, Some(0.5)));
        // Nothing logged yet: the candidate is listed with empty numbers.
        let s = stats(&e, &[], &[], threshold).unwrap();
        // A version whose threshold cannot be read is an error, not a made-up verdict.
        let unreadable = |v: u32| if v == 2 { Err(v) } else { Ok(0.5) };
        assert_eq!(stats(&e, &rows, &labels, unreadable).err(), Some(2));
        assert_eq!(s.agreement, None);
        assert_eq!(s.versions.len(), 1);
        assert_eq!(
            (s.versions[0].version, s.versions[0].mean_probability),
            (2, None)
        );
    }
}
