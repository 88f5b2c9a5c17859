//! `spamscope store migrate`: copy a registry between a folder and a PostgreSQL
//! database, verified.

use super::StoreCommand;
use super::output::print_json;
use serde_json::json;
use spamscope::ops::error::{Error, Result};
use spamscope::store::location::Location;

pub fn run(cmd: StoreCommand) -> Result<()> {
    let StoreCommand::Migrate { from, to, json } = cmd;
    // --cache (global) is the local folder of whichever side is a database.
    let cache = super::input::cache_dir();
    let parse = |flag: &str, s: &str| {
        let cache = if s.contains("://") {
            cache.clone()
        } else {
            None
        };
        Location::parse(s, cache).map_err(|e| Error::Invalid(format!("--{flag}: {e}")))
    };
    let (from, to) = (parse("from", &from)?, parse("to", &to)?);
    let database = |l: &Location| matches!(l, Location::Postgres { .. });
    if cache.is_some() && !database(&from) && !database(&to) {
        return Err(Error::Invalid(
            "--cache goes with a postgres:// side; both sides are folders".into(),
        ));
    }
    eprintln!("copying {} into {}...", from.shown(), to.shown());
    let mut last = (String::new(), std::time::Instant::now());
    let report = spamscope::ops::migrate::migrate(&from, &to, &mut |p| {
        // One line per part, then at most one a second.
        let fresh = last.0 != p.part;
        if fresh || last.1.elapsed().as_secs() >= 1 || p.done == p.total {
            eprintln!("  {}: {} of {}", p.part, p.done, p.total);
            last = (p.part.to_string(), std::time::Instant::now());
        }
    })?;
    if json {
        let parts: Vec<_> = report
            .parts
            .iter()
            .map(|p| json!({"part": p.name, "count": p.count, "check": p.check}))
            .collect();
        print_json(&json!({
            "from": from.shown(),
            "to": to.shown(),
            "verified": parts,
            "not_copied": report.not_copied,
        }));
    } else {
        println!(
            "copied {} into {}; verified on both sides:",
            from.shown(),
            to.shown()
        );
        for p in &report.parts {
            if p.check.is_empty() || p.count == 0 {
                println!("  {}", p.name);
            } else {
                println!("  {:>9}  {}  (check {})", p.count, p.name, p.check);
            }
        }
        for n in &report.not_copied {
            println!("  not copied: {n}");
        }
    }
    Ok(())
}
