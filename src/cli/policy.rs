//! `spamscope policy`: check a policy file, test a draft on labelled history.

use super::PolicyCommand;
use super::input::{registry, version_and_data};
use super::output::print_json;
use serde_json::json;
use spamscope::ops::error::{Error, Result};
use spamscope::ops::policy;
use spamscope::util::progress::StderrProgress;

pub fn run(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate { file, json } => {
            let p = spamscope::ops::policy::load(&file)?;
            if json {
                print_json(&serde_json::json!({
                    "valid": true,
                    "rules": p.rules(),
                    "outcomes": p.policy.outcomes,
                }));
            } else {
                println!(
                    "{}: {} rules, outcomes {}",
                    file.display(),
                    p.rules(),
                    p.policy.outcomes.join(" < ")
                );
            }
            Ok(())
        }
        PolicyCommand::Test {
            file,
            data,
            history,
            rows,
            live,
            registry,
            version,
            daily_volume,
            list,
            json,
        } => {
            let draft = spamscope::ops::policy::load(&file)?;
            // Without --live, against the registry's live policy, if one is published.
            let live = match live {
                Some(l) => Some(spamscope::ops::policy::load(&l)?),
                None => policy::kept(&super::input::registry(registry.clone())?)?
                    .0
                    .map(|k| k.compiled),
            };
            let progress = StderrProgress::new();
            let t = match (data, history.as_deref()) {
                (Some(data), _) => {
                    let (manifest, model, _, d) = version_and_data(registry, version, None, &data)?;
                    spamscope::ops::policy::test(
                        &d,
                        &model,
                        manifest.version,
                        &draft,
                        live.as_ref(),
                        daily_volume,
                        &progress,
                    )?
                }
                (None, Some(which)) => {
                    let reg = super::input::registry(registry)?;
                    let source = match which {
                        "feedback" => policy::HistorySource::Feedback,
                        _ => policy::HistorySource::Log(rows),
                    };
                    let h = policy::history(&reg, source)?;
                    eprintln!(
                        "{} accounts from {}, {} labelled",
                        h.data.n_rows(),
                        h.data.source_name(),
                        h.labelled()
                    );
                    let (manifest, model) = match version {
                        Some(v) => reg.load(v)?,
                        None => reg.load_active()?,
                    };
                    policy::test_labelled(
                        &h.data,
                        &h.labels,
                        &model,
                        manifest.version,
                        &draft,
                        live.as_ref(),
                        daily_volume,
                        &progress,
                    )?
                }
                (None, None) => {
                    return Err(Error::Invalid(
                        "give --data CSV or --history feedback|log".into(),
                    ));
                }
            };
            if json {
                print_json(&serde_json::to_value(&t).expect("a policy test serialises"));
                return Ok(());
            }
            print(&t, list);
            Ok(())
        }
        PolicyCommand::Draft {
            file,
            author,
            note,
            registry: reg,
            json,
        } => {
            let p = read_policy(&file)?;
            let reg = registry(reg)?;
            let r = policy::save_draft(&reg, &p, &who(author), &note)?;
            let live = live_policy(&reg)?;
            let d = policy::diff(live.as_ref().map(|l| &l.record.policy), &r.policy);
            if json {
                print_json(&json!({"policy": r, "diff": d}));
            } else {
                println!(
                    "kept policy {} (draft, {} rules) by {}",
                    r.version,
                    r.policy.rules.len(),
                    r.author
                );
                print_diff(live.as_ref().map(|l| l.record.version), &d);
            }
            Ok(())
        }
        PolicyCommand::Publish {
            file,
            version,
            by,
            note,
            registry: reg,
            json,
        } => {
            let reg = registry(reg)?;
            let by = who(by);
            let n = match (file, version) {
                (Some(f), None) => policy::save_draft(&reg, &read_policy(&f)?, &by, &note)?.version,
                (None, Some(n)) => n,
                _ => {
                    return Err(Error::Invalid(
                        "give a policy file or --version N of a kept policy".into(),
                    ));
                }
            };
            let before = live_policy(&reg)?;
            let r = policy::publish(&reg, n, &by)?;
            let d = policy::diff(before.as_ref().map(|l| &l.record.policy), &r.policy);
            if json {
                print_json(&json!({"policy": r, "diff": d}));
            } else {
                println!(
                    "policy {} is live (published by {}); services follow within a second",
                    r.version, by
                );
                print_diff(before.as_ref().map(|l| l.record.version), &d);
            }
            Ok(())
        }
        PolicyCommand::Shadow {
            file,
            version,
            stop,
            stats,
            by,
            registry: reg,
            json,
        } => {
            let reg = registry(reg)?;
            if stats {
                let log = spamscope::store::predictions::PredictionLog::open_for(
                    &reg,
                    Default::default(),
                )?;
                let labels = spamscope::store::feedback::FeedbackStore::of(&reg)?.labels()?;
                let Some(s) = policy::running_shadow_stats(&reg, &log, &labels)? else {
                    return Err(Error::Invalid("no policy runs in shadow".into()));
                };
                if json {
                    print_json(&serde_json::to_value(&s).expect("serialises"));
                } else {
                    print_shadow(&s);
                }
                return Ok(());
            }
            let by = who(by);
            let n = match (file, version, stop) {
                (_, _, true) => None,
                (Some(f), None, false) => {
                    Some(policy::save_draft(&reg, &read_policy(&f)?, &by, "")?.version)
                }
                (None, Some(n), false) => Some(n),
                _ => {
                    return Err(Error::Invalid(
                        "give a policy file, --version N of a kept policy, --stop or --stats"
                            .into(),
                    ));
                }
            };
            let p = policy::set_shadow(&reg, n, &by)?;
            if json {
                print_json(&serde_json::to_value(p).expect("serialises"));
            } else {
                match p.shadow {
                    Some(n) => println!(
                        "policy {n} runs in shadow beside {}; `spamscope policy shadow --stats` shows how it does",
                        p.live
                            .map_or("no live policy".into(), |l| format!("live policy {l}"))
                    ),
                    None => println!("no policy runs in shadow"),
                }
            }
            Ok(())
        }
        PolicyCommand::List {
            registry: reg,
            json,
        } => {
            let list = policy::list(&registry(reg)?)?;
            if json {
                print_json(&serde_json::to_value(&list).expect("serialises"));
                return Ok(());
            }
            if list.is_empty() {
                println!("no policies kept; `spamscope policy draft FILE` keeps one");
            }
            for e in &list {
                let r = &e.record;
                println!(
                    "{:>4}  {:<8} {:>3} rules  by {} at {}{}",
                    r.version,
                    e.status.name(),
                    r.policy.rules.len(),
                    r.author,
                    r.created_at,
                    r.published_by
                        .as_ref()
                        .map(|p| format!(", published by {p}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        PolicyCommand::Show {
            version,
            registry: reg,
            json,
        } => {
            let reg = registry(reg)?;
            let e = policy::get(&reg, version)?;
            let live = live_policy(&reg)?;
            let d = policy::diff(live.as_ref().map(|l| &l.record.policy), &e.record.policy);
            if json {
                print_json(&json!({"policy": e, "diff": d}));
                return Ok(());
            }
            println!(
                "policy {} ({}), by {} at {}; outcomes {}",
                e.record.version,
                e.status.name(),
                e.record.author,
                e.record.created_at,
                e.record.policy.outcomes.join(" < ")
            );
            for r in &e.record.policy.rules {
                println!("  {} -> {} when {}", r.name, r.outcome, r.when);
            }
            print_diff(live.as_ref().map(|l| l.record.version), &d);
            Ok(())
        }
    }
}

/// Who acts: the name given, else $USER, else "cli".
fn who(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

/// A policy file, parsed and checked (the same reading as `validate`).
fn read_policy(file: &std::path::Path) -> Result<spamscope::eval::policy::Policy> {
    Ok(policy::load(file)?.policy)
}

fn live_policy(
    reg: &spamscope::store::Registry,
) -> Result<Option<spamscope::ops::policy::PolicyEntry>> {
    reg.policy_pointers()?
        .live
        .map(|n| policy::get(reg, n))
        .transpose()
}

fn print_diff(live: Option<u32>, d: &spamscope::ops::policy::PolicyDiff) {
    match live {
        None => println!("no policy is live yet: every rule is new"),
        Some(n) if d.is_empty() => println!("the same rules as live policy {n}"),
        Some(n) => println!("against live policy {n}:"),
    }
    if live.is_some() {
        for l in d.lines() {
            println!("  {l}");
        }
    }
}

fn print_shadow(s: &spamscope::ops::policy::ShadowStats) {
    println!(
        "shadow policy {}: {} predictions decided, {} alike by the live policy ({})",
        s.policy_version,
        s.decided,
        s.agreed,
        pct(s.agreement)
    );
    for c in &s.changes {
        println!("  {} live {} -> shadow {}", c.predictions, c.live, c.shadow);
    }
    println!(
        "{:<16} {:>12} {:>10} {:>12} {:>10}",
        "outcome", "shadow", "precision", "live", "precision"
    );
    for o in &s.outcomes {
        println!(
            "{:<16} {:>12} {:>10} {:>12} {:>10}",
            o.outcome,
            o.shadow.predictions,
            pct(o.shadow.precision),
            o.live.predictions,
            pct(o.live.precision)
        );
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn print(t: &spamscope::ops::policy::PolicyTest, list: usize) {
    let b = &t.backtest;
    println!(
        "{} accounts ({} labelled, {} spammers), probabilities of version {}; policy run in {:.3} s (scoring {:.1} s)",
        b.accounts, b.labelled, b.spammers, t.version, t.policy_seconds, t.scoring_seconds
    );
    // One table layout for the rules and the decisions.
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        println!("{a:<32} {b:>12} {c:>9} {d:>10} {e:>8}");
    };
    row("rule", "outcome", "hits", "precision", "recall");
    for r in &b.rules {
        let hits = r.hits.to_string();
        row(
            &r.name,
            &r.outcome,
            &hits,
            &pct(r.precision),
            &pct(r.recall),
        );
    }
    row("decision", "", "accounts", "precision", "recall");
    for o in &b.outcomes {
        let accounts = o.accounts.to_string();
        row(&o.outcome, "", &accounts, &pct(o.precision), &pct(o.recall));
    }
    match (t.daily_volume, t.daily_review) {
        (Some(v), Some(r)) => println!(
            "review: {:.2}% of accounts, {r:.0} a day at {v:.0} accounts a day",
            t.review_share * 100.0
        ),
        _ => println!("review: {:.2}% of accounts", t.review_share * 100.0),
    }
    if !b.changed.is_empty() {
        println!(
            "{} accounts decided otherwise than by the live policy:",
            b.changed.len()
        );
        for (c, user) in b.changed.iter().zip(&t.changed_users).take(list) {
            println!("  {user}: {} -> {}", c.live, c.draft);
        }
        if b.changed.len() > list {
            println!(
                "  ... and {} more (--json lists all)",
                b.changed.len() - list
            );
        }
    }
}
