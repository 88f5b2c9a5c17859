//! `spamscope feedback import` and `spamscope feedback stats`: moderators' feedback.

use super::FeedbackCommand;
use super::input::{registry, warn};
use super::output::print_json;
use serde_json::{Value, json};
use spamscope::data::Dataset;
use spamscope::ops::error::Result;
use spamscope::util::progress::NoProgress;

pub fn run(cmd: FeedbackCommand) -> Result<()> {
    use spamscope::store::feedback::FeedbackStore;
    match cmd {
        FeedbackCommand::Import {
            data,
            registry: reg,
            batch,
            json,
        } => {
            let registry = registry(reg)?;
            let d = Dataset::load_csv(&data)?;
            warn(&d);
            let source = data.display().to_string();
            let out = spamscope::ops::feedback::import(&registry, &d, &source, batch, &NoProgress)?;
            if json {
                print_json(&json!({ "imported": out.stored, "total": out.total }));
            } else {
                println!(
                    "imported {} feedback records ({} in total)",
                    out.stored, out.total
                );
            }
            Ok(())
        }
        FeedbackCommand::Stats {
            registry: reg,
            json,
        } => {
            let registry = registry(reg)?;
            let st = FeedbackStore::of(&registry)?.stats()?;
            if json {
                let by_version: serde_json::Map<String, Value> = st
                    .by_version
                    .iter()
                    .map(|v| {
                        (
                            v.version.map_or("none".to_string(), |v| v.to_string()),
                            json!({
                                "total": v.total,
                                "judged": v.judged,
                                "agreed": v.agreed,
                                "agreement": v.agreement(),
                            }),
                        )
                    })
                    .collect();
                print_json(&json!({
                    "total": st.total,
                    "judged": st.judged,
                    "agreed": st.agreed,
                    "agreement": st.agreement,
                    "by_version": by_version,
                }));
            } else {
                let pct =
                    |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.1}%", a * 100.0));
                println!(
                    "{} feedback records, {} with the model's verdict, agreement {}",
                    st.total,
                    st.judged,
                    pct(st.agreement)
                );
                for v in &st.by_version {
                    println!(
                        "  version {}: {} records, {} agreed of {} judged ({})",
                        v.version.map_or("-".to_string(), |v| v.to_string()),
                        v.total,
                        v.agreed,
                        v.judged,
                        pct(v.agreement())
                    );
                }
            }
            Ok(())
        }
    }
}
