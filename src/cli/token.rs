//! `spamscope token add|list|revoke`: the service's API tokens.

use super::TokenCommand;
use super::input::registry;
use super::output::print_json;
use serde_json::{Value, json};
use spamscope::ops::error::Result;

pub fn run(cmd: TokenCommand) -> Result<()> {
    use spamscope::store::tokens::{Role, TokenStore};
    match cmd {
        TokenCommand::Add {
            name,
            role,
            registry: reg,
            json,
        } => {
            let role = Role::parse(&role)?;
            let store = TokenStore::of(&registry(reg)?);
            let secret = store.add(&name, role)?;
            let created_at = store
                .list()?
                .into_iter()
                .find(|t| t.name == name)
                .map(|t| t.created_at);
            if json {
                print_json(&json!({
                    "name": name,
                    "role": role.name(),
                    "created_at": created_at,
                    "token": secret,
                }));
            } else {
                println!("{secret}");
            }
            eprintln!(
                "token {name} ({role}) added; this is the only time its secret is shown: store it now"
            );
            Ok(())
        }
        TokenCommand::List {
            registry: reg,
            json,
        } => {
            let tokens = TokenStore::of(&registry(reg)?).list()?;
            if json {
                let list: Vec<Value> = tokens
                    .iter()
                    .map(|t| json!({"name": t.name, "role": t.role.name(), "created_at": t.created_at}))
                    .collect();
                print_json(&json!({ "tokens": list }));
            } else if tokens.is_empty() {
                println!("no tokens");
            } else {
                for t in &tokens {
                    println!("{}  {}  {}", t.name, t.role, t.created_at);
                }
            }
            Ok(())
        }
        TokenCommand::Revoke {
            name,
            registry: reg,
        } => {
            TokenStore::of(&registry(reg)?).revoke(&name)?;
            println!("revoked token {name}");
            Ok(())
        }
    }
}
