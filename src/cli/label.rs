//! `spamscope label confirm` and `spamscope label import`: accounts' confirmed final labels.

use super::LabelCommand;
use super::input::registry;
use super::output::print_json;
use serde_json::json;
use spamscope::ops::error::{Error, Result};

pub fn run(cmd: LabelCommand) -> Result<()> {
    use spamscope::ops::review;
    let who = |by: Option<String>| {
        by.or_else(|| std::env::var("USER").ok())
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| "cli".to_string())
    };
    match cmd {
        LabelCommand::Confirm {
            user_id,
            label,
            notes,
            by,
            registry: reg,
            json,
        } => {
            let Some(l) = review::parse_label(&label) else {
                return Err(Error::Invalid(format!(
                    "--label must be spam or legit (got {})",
                    spamscope::util::text::quote(&label)
                )));
            };
            let c = review::confirm_label(&registry(reg)?, &user_id, l, &who(by), &notes)?;
            let name = |l: u8| if l == 1 { "spam" } else { "legit" };
            if json {
                print_json(&json!({
                    "user_id": c.confirmed.user_id.to_string(),
                    "label": c.confirmed.label,
                    "confirmed_by": c.confirmed.confirmed_by,
                    "confirmed_at": c.confirmed.confirmed_at,
                    "replaced": c.replaced.as_ref().map(|r| json!({
                        "label": r.label,
                        "confirmed_by": r.confirmed_by,
                        "confirmed_at": r.confirmed_at,
                    })),
                }));
            } else {
                println!(
                    "{} confirmed as {} by {}{}",
                    c.confirmed.user_id,
                    name(c.confirmed.label),
                    c.confirmed.confirmed_by,
                    c.replaced.as_ref().map_or(String::new(), |r| format!(
                        " (was {} by {} at {})",
                        name(r.label),
                        r.confirmed_by,
                        r.confirmed_at
                    ))
                );
            }
            Ok(())
        }
        LabelCommand::Import {
            file,
            by,
            registry: reg,
            json,
        } => {
            let n = review::import_confirmed(&registry(reg)?, &file, &who(by))?;
            if json {
                print_json(&json!({ "confirmed": n }));
            } else {
                println!("confirmed {n} labels from {}", file.display());
            }
            Ok(())
        }
    }
}
