//! `spamscope feedback import` and `spamscope feedback stats`: moderators' feedback.

use super::FeedbackCommand;
use super::input::{registry, warn};
use super::output::print_json;
use serde_json::{Value, json};
use spamscope::data::Dataset;
use spamscope::model::explain::Method;
use spamscope::ops::error::{Error, Result};
use spamscope::util::progress::NoProgress;

pub fn run(cmd: FeedbackCommand) -> Result<()> {
    use spamscope::store::feedback::{FeedbackStore, Origin};
    match cmd {
        FeedbackCommand::Import {
            data,
            registry: reg,
            batch,
            json,
        } => {
            let registry = registry(reg)?;
            let batch = match batch {
                Some(b) => b,
                None => spamscope::ops::settings::OnlineLearningConfig::load(&registry)?.batch_size,
            };
            if batch == 0 {
                return Err(Error::Invalid("batch must be at least 1".into()));
            }
            let d = Dataset::load_csv(&data)?;
            warn(&d);
            let labels = d.require_labels()?;
            // Score with the active version when there is one, so agreement is known.
            let scored = match registry.active()? {
                Some(_) => {
                    let (m, model) = registry.load_active()?;
                    Some(spamscope::ops::score::score_batch(
                        &d,
                        &model,
                        m.version,
                        m.threshold,
                        0,
                        Method::PathAttribution,
                        &NoProgress,
                    )?)
                }
                None => None,
            };
            let mut store = FeedbackStore::open_in(registry.root())?;
            let mut stored = 0usize;
            let rows: Vec<usize> = (0..d.n_rows()).collect();
            let notes = format!("imported from {}", data.display());
            for chunk in rows.chunks(batch) {
                let records = spamscope::ops::feedback::records(
                    &d,
                    chunk,
                    |i| labels[i],
                    scored.as_ref(),
                    &notes,
                    Origin::Import,
                );
                store.add_batch(&records)?;
                stored += records.len();
            }
            if json {
                print_json(&json!({ "imported": stored, "total": store.count()? }));
            } else {
                println!(
                    "imported {stored} feedback records ({} in total)",
                    store.count()?
                );
            }
            Ok(())
        }
        FeedbackCommand::Stats {
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let st = FeedbackStore::open_in(registry.root())?.stats()?;
            if json {
                let by_version: serde_json::Map<String, Value> = st
                    .by_version
                    .iter()
                    .map(|v| {
                        (
                            v.version.map_or("none".to_string(), |v| v.to_string()),
                            json!({
                                "total": v.total,
                                "agreed": v.agreed,
                                "agreement": (v.version.is_some() && v.total > 0)
                                    .then(|| v.agreed as f64 / v.total as f64),
                            }),
                        )
                    })
                    .collect();
                print_json(&json!({
                    "total": st.total,
                    "agreement": st.agreement,
                    "by_version": by_version,
                }));
            } else {
                println!(
                    "{} feedback records, agreement {}",
                    st.total,
                    st.agreement
                        .map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0))
                );
                for v in &st.by_version {
                    println!(
                        "  version {}: {} records, {} agreed",
                        v.version.map_or("-".to_string(), |v| v.to_string()),
                        v.total,
                        v.agreed
                    );
                }
            }
            Ok(())
        }
    }
}
