//! The token for a team's service, asked once and kept: in the platform's keyring (the
//! Secret Service on Linux, the Keychain on macOS, the Credential Manager on Windows,
//! through the `keyring` crate), or, where no keyring answers, in a file only the user
//! may read (permissions 0600) under the app's registry folder. The app says which.

use std::path::{Path, PathBuf};

/// Where a token is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenHome {
    Keyring,
    File(PathBuf),
}

impl std::fmt::Display for TokenHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenHome::Keyring => write!(f, "the system keyring"),
            TokenHome::File(p) => write!(
                f,
                "{} (readable only by you; no system keyring answered)",
                p.display()
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    /// The folder of token files.
    pub dir: PathBuf,
    /// Try the platform's keyring first (off in tests).
    pub keyring: bool,
}

const SERVICE: &str = "spamscope";

impl Credentials {
    /// The app's own: the keyring, else `REGISTRY/credentials/`.
    pub fn standard(registry_root: &Path) -> Credentials {
        Credentials {
            dir: registry_root.join("credentials"),
            keyring: true,
        }
    }

    fn file(&self, url: &str) -> PathBuf {
        let h = crate::util::hash::sha256_hex(url.as_bytes());
        self.dir.join(format!("{}.token", &h[..16]))
    }

    /// Keeps `token` for `url`: in the keyring when one answers (and gives the token
    /// back), else in a 0600 file. Blocking (the keyring is a D-Bus call): call it off
    /// the UI thread.
    pub fn save(&self, url: &str, token: &str) -> Result<TokenHome, String> {
        if self.keyring && keyring_save(url, token) {
            let _ = std::fs::remove_file(self.file(url));
            return Ok(TokenHome::Keyring);
        }
        let p = self.file(url);
        write_private(&p, token.as_bytes())
            .map_err(|e| format!("{}: the token was not kept: {e}", p.display()))?;
        Ok(TokenHome::File(p))
    }

    /// The token kept for `url`, and where it was.
    pub fn load(&self, url: &str) -> Option<(String, TokenHome)> {
        if self.keyring
            && let Some(t) = keyring_load(url)
        {
            return Some((t, TokenHome::Keyring));
        }
        let p = self.file(url);
        let t = std::fs::read_to_string(&p).ok()?;
        let t = t.trim().to_string();
        (!t.is_empty()).then_some((t, TokenHome::File(p)))
    }
}

fn keyring_save(url: &str, token: &str) -> bool {
    let Ok(e) = keyring::Entry::new(SERVICE, url) else {
        return false;
    };
    e.set_password(token).is_ok() && e.get_password().ok().as_deref() == Some(token)
}

fn keyring_load(url: &str) -> Option<String> {
    keyring::Entry::new(SERVICE, url)
        .ok()?
        .get_password()
        .ok()
        .filter(|t| !t.is_empty())
}

/// Writes `bytes` to `path` readable and writable by its owner only: a temporary file
/// created with mode 0600, synced, renamed over `path`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".token.tmp-{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_keyring_the_token_is_a_file_only_its_owner_reads() {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials {
            dir: dir.path().join("credentials"),
            keyring: false,
        };
        assert_eq!(c.load("http://127.0.0.1:8000"), None);
        let home = c.save("http://127.0.0.1:8000", "s3cret").unwrap();
        let TokenHome::File(p) = &home else {
            panic!("{home:?}")
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            c.load("http://127.0.0.1:8000"),
            Some(("s3cret".into(), home.clone()))
        );
        // Another server has its own; saving again replaces.
        assert_eq!(c.load("http://10.0.0.2:8000"), None);
        c.save("http://127.0.0.1:8000", "n3w").unwrap();
        assert_eq!(c.load("http://127.0.0.1:8000").unwrap().0, "n3w");
        assert!(home.to_string().contains("readable only by you"));
    }
}
