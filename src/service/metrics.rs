//! The service's own counters for `GET /metrics` (Prometheus text format 0.0.4):
//! requests by route and status, latency histograms by route, predictions by verdict
//! and their scores' distribution.
//! Written by hand: a handful of counters under one mutex, cheaper to read and keep than
//! a metrics crate's registry for this few series.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Upper bounds of the score buckets (probabilities).
pub const SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    verdicts: [u64; 2],
    /// Cumulative counts per score bucket, their number and sum.
    scores: [u64; SCORE_BUCKETS.len()],
    scored: u64,
    score_sum: f64,
    /// Decisions by (policy version, decision), of the live policy and of a shadow.
    decisions: BTreeMap<(u32, String), u64>,
    shadow_decisions: BTreeMap<(u32, String), u64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        let h = m.latency.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Requests answered so far: (all, with a 4xx status, with a 5xx status).
    pub fn totals(&self) -> (u64, u64, u64) {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.requests
            .iter()
            .fold((0, 0, 0), |(all, c4, c5), ((_, status), n)| {
                (
                    all + n,
                    c4 + if (400..500).contains(status) { n } else { &0 },
                    c5 + if *status >= 500 { n } else { &0 },
                )
            })
    }

    /// One answered prediction: its verdict and its score (probability).
    pub fn record_prediction(&self, probability: f64, spammer: bool) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.verdicts[usize::from(spammer)] += 1;
        for (i, b) in SCORE_BUCKETS.iter().enumerate() {
            if probability <= *b {
                m.scores[i] += 1;
            }
        }
        m.scored += 1;
        m.score_sum += probability;
    }

    /// One answered prediction's decisions (live and shadow policy, where there is one).
    pub fn record_decisions(
        &self,
        live: Option<&crate::store::predictions::DecisionTag>,
        shadow: Option<&crate::store::predictions::DecisionTag>,
    ) {
        if live.is_none() && shadow.is_none() {
            return;
        }
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key =
            |d: &crate::store::predictions::DecisionTag| (d.policy_version, d.decision.clone());
        if let Some(d) = live {
            *m.decisions.entry(key(d)).or_default() += 1;
        }
        if let Some(d) = shadow {
            *m.shadow_decisions.entry(key(d)).or_default() += 1;
        }
    }

    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            out,
            "# HELP spamscope_requests_total Requests by route and status."
        );
        let _ = writeln!(out, "# TYPE spamscope_requests_total counter");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "spamscope_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP spamscope_request_seconds Request latency by route."
        );
        let _ = writeln!(out, "# TYPE spamscope_request_seconds histogram");
        for (route, h) in &m.latency {
            let r = escape(route);
            for (b, n) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "spamscope_request_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "spamscope_request_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "spamscope_request_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "spamscope_request_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP spamscope_predictions_total Predictions by verdict."
        );
        let _ = writeln!(out, "# TYPE spamscope_predictions_total counter");
        let _ = writeln!(
            out,
            "spamscope_predictions_total{{verdict=\"legitimate\"}} {}",
            m.verdicts[0]
        );
        let _ = writeln!(
            out,
            "spamscope_predictions_total{{verdict=\"spammer\"}} {}",
            m.verdicts[1]
        );
        let _ = writeln!(
            out,
            "# HELP spamscope_score Scores (spam probabilities) of the answered predictions."
        );
        let _ = writeln!(out, "# TYPE spamscope_score histogram");
        for (b, n) in SCORE_BUCKETS.iter().zip(&m.scores) {
            let _ = writeln!(out, "spamscope_score_bucket{{le=\"{b}\"}} {n}");
        }
        let _ = writeln!(out, "spamscope_score_bucket{{le=\"+Inf\"}} {}", m.scored);
        let _ = writeln!(out, "spamscope_score_sum {}", m.score_sum);
        let _ = writeln!(out, "spamscope_score_count {}", m.scored);
        for (name, help, map) in [
            (
                "spamscope_decisions_total",
                "Decisions of the live policy on answered predictions, by policy version and decision.",
                &m.decisions,
            ),
            (
                "spamscope_shadow_decisions_total",
                "What a policy in shadow would have decided on answered predictions, by policy version and decision.",
                &m.shadow_decisions,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((v, d), n) in map {
                let _ = writeln!(
                    out,
                    "{name}{{policy_version=\"{v}\",decision=\"{}\"}} {n}",
                    escape(d)
                );
            }
        }
    }
}

/// A value computed now and then (it reads the stores), kept for a while.
pub struct Kept<T>(Mutex<Option<(std::time::Instant, T)>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(Mutex::new(None))
    }
}

impl<T: Clone> Kept<T> {
    /// The value computed less than `max_age` ago, else `compute`'s (kept when it
    /// succeeds).
    pub fn get_or<E>(
        &self,
        max_age: std::time::Duration,
        compute: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, v)) = &*slot
            && at.elapsed() < max_age
        {
            return Ok(v.clone());
        }
        let v = compute()?;
        *slot = Some((std::time::Instant::now(), v.clone()));
        Ok(v)
    }
}

/// Numbers `/metrics` shows that read the stores: computed at most every few seconds.
#[derive(Default)]
pub struct Cached {
    /// The running shadow policy's numbers (None: no shadow).
    pub shadow: Kept<Option<crate::ops::policy::ShadowStats>>,
    /// The review queue filled by decisions: accounts waiting, age of the oldest (s).
    pub queue: Kept<Option<(usize, f64)>>,
}

/// A label value as Prometheus wants it (backslash, quote, newline escaped).
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
