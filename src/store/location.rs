//! Where a registry is kept: a folder (the embedded default) or a PostgreSQL server
//! shared by many processes, chosen by `--store` / `SPAMSCOPE_STORE`.

use std::path::PathBuf;

/// The environment variable that names the store when `--store` is not given.
pub const STORE_ENV: &str = "SPAMSCOPE_STORE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A registry folder (created if needed).
    Folder(PathBuf),
    /// A PostgreSQL database; model files are kept in `cache` once downloaded (checked
    /// against their SHA-256), and so are the local logs and reports.
    Postgres { url: String, cache: PathBuf },
}

impl Location {
    /// `postgres://…` (or `postgresql://…`) is a database, anything else a folder.
    /// `cache` is where a database's files are kept locally (default: a folder named
    /// after the server in the user's cache directory); it does not go with a folder.
    pub fn parse(store: &str, cache: Option<PathBuf>) -> Result<Location, String> {
        let store = store.trim();
        if store.is_empty() {
            return Err("the store is empty: give a folder or a postgres:// URL".into());
        }
        if is_url(store) {
            let cache = cache.unwrap_or_else(|| default_cache(store));
            return Ok(Location::Postgres {
                url: store.to_string(),
                cache,
            });
        }
        if let Some((scheme, _)) = store.split_once("://") {
            return Err(format!(
                "the store {}:// is not supported: give a folder or a postgres:// URL",
                crate::util::text::clip(scheme)
            ));
        }
        if cache.is_some() {
            return Err(
                "--cache goes with a postgres:// store; a folder store keeps its files itself"
                    .into(),
            );
        }
        Ok(Location::Folder(PathBuf::from(store)))
    }

    /// What to call it in messages: the folder, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            Location::Folder(p) => p.display().to_string(),
            Location::Postgres { url, .. } => super::pg::shown_url(url),
        }
    }
}

fn is_url(s: &str) -> bool {
    let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The default local cache of a database's files: `<cache dir>/spamscope/<server>`,
/// one folder per server and database (never the password).
pub fn default_cache(url: &str) -> PathBuf {
    let name: String = super::pg::shown_url(url)
        .trim_start_matches("postgres://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("spamscope")
        .join(name)
}
