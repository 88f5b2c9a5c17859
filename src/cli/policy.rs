//! `spamscope policy`: check a policy file, test a draft on labelled history.

use super::PolicyCommand;
use super::input::version_and_data;
use super::output::print_json;
use spamscope::ops::error::Result;
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
            live,
            registry,
            version,
            daily_volume,
            list,
            json,
        } => {
            let draft = spamscope::ops::policy::load(&file)?;
            let live = live.map(|l| spamscope::ops::policy::load(&l)).transpose()?;
            let (manifest, model, _, d) = version_and_data(registry, version, None, &data)?;
            let t = spamscope::ops::policy::test(
                &d,
                &model,
                manifest.version,
                &draft,
                live.as_ref(),
                daily_volume,
                &StderrProgress::new(),
            )?;
            if json {
                print_json(&serde_json::to_value(&t).expect("a policy test serialises"));
                return Ok(());
            }
            print(&t, list);
            Ok(())
        }
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
