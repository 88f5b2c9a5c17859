//! API tokens of the scoring service (`tokens.ron` in the registry).
//!
//! A token is a name, a [`Role`] and a secret (`ssk_` and 64 hex digits of OS
//! randomness). The secret is shown once, when the token is added; the file keeps only
//! its SHA-256, is written atomically with permissions 0600, and is rewritten under an
//! exclusive lock on `tokens.lock`, so two processes adding tokens at once both succeed.

use crate::store::layout::Layout;
use crate::util::hash::sha256_hex;
use crate::util::text::quote;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a token may do; each role may do what the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Ask for predictions.
    Scorer,
    /// Also give feedback.
    Moderator,
    /// Also retrain, roll back and list versions.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Scorer, Role::Moderator, Role::Admin];

    /// Whether a token of this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    /// `scorer`, `moderator` or `admin`, in any case.
    pub fn parse(s: &str) -> Result<Role, TokenError> {
        Role::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| TokenError::BadRole(quote(s)))
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Scorer => "scorer",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(
        "{path}: the tokens file is damaged ({message}); fix it or move it away and add the tokens again"
    )]
    Damaged { path: String, message: String },
    #[error(
        "unknown role {0}; the roles are scorer (predict), moderator (+ feedback) and admin (+ retrain, rollback, versions)"
    )]
    BadRole(String),
    #[error(
        "token name {0} is not allowed: use 1 to 64 characters among letters, digits and _ . @ -"
    )]
    BadName(String),
    #[error("{path}: a token named {name} already exists; revoke it first or choose another name")]
    Duplicate { path: String, name: String },
    #[error("{path}: there is no token named {name}")]
    Unknown { path: String, name: String },
    #[error("{path}: another process has held the tokens lock for {secs} s; gave up")]
    LockTimeout { path: String, secs: u64 },
    #[error("cannot draw a random secret: {0}")]
    Random(String),
    /// The shared store failed (unreachable, busy...).
    #[error("{0}")]
    Database(#[from] super::pg::DbError),
}

/// A token as listed (never its secret nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// One entry of the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    role: Role,
    created_at: String,
    /// SHA-256 of the secret, hex.
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    tokens: Vec<Entry>,
}

/// A tokens file larger than this is refused (a thousand tokens take about 200 KB).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// How long `add` and `revoke` wait for another process's lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
const SECRET_PREFIX: &str = "ssk_";

/// Whether `name` is a valid token name (1–64 of `A-Za-z0-9_.@-`).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The tokens of one registry: its tokens file, or the shared store's table.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
    lock: PathBuf,
    shared: Option<super::pg::Db>,
}

impl TokenStore {
    /// The tokens file of the registry folder `registry_root`.
    pub fn open_in(registry_root: &Path) -> TokenStore {
        let layout = Layout::new(registry_root);
        TokenStore {
            path: layout.tokens(),
            lock: layout.tokens_lock(),
            shared: None,
        }
    }

    /// The tokens of `registry`, wherever it keeps them.
    pub fn of(registry: &super::Registry) -> TokenStore {
        TokenStore {
            shared: registry.shared().cloned(),
            ..TokenStore::open_in(registry.root())
        }
    }

    /// Where the tokens are, for messages.
    fn place(&self) -> String {
        match &self.shared {
            Some(db) => format!("{}: tokens", db.shown()),
            None => self.path.display().to_string(),
        }
    }

    /// The stored tokens of a shared store, checked like the file's.
    fn shared_entries(&self, db: &super::pg::Db) -> Result<TokensFile, TokenError> {
        let rows = super::pg::tokens::list(&mut *db.conn()?).map_err(db.err("reading tokens"))?;
        let mut tokens = Vec::with_capacity(rows.len());
        for (name, role, created_at, sha256) in rows {
            let role = Role::parse(&role)
                .map_err(|_| self.damaged(format!("token {} has an unknown role", quote(&name))))?;
            tokens.push(Entry {
                name,
                role,
                created_at,
                sha256,
            });
        }
        let file = TokensFile { tokens };
        self.check(&file)?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path, e: impl std::fmt::Display) -> TokenError {
        TokenError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn damaged(&self, message: impl Into<String>) -> TokenError {
        TokenError::Damaged {
            path: self.place(),
            message: message.into(),
        }
    }

    /// Whether a tokens file with at least one token is there. A file that cannot be
    /// read counts as there (so a server does not start unprotected; `load` reports it).
    pub fn exists(&self) -> bool {
        if let Some(db) = &self.shared {
            // A store that cannot be asked counts as protected too.
            return db
                .conn()
                .ok()
                .and_then(|mut c| super::pg::tokens::any(&mut *c).ok())
                .unwrap_or(true);
        }
        match self.read() {
            Ok(f) => !f.tokens.is_empty(),
            Err(_) => self.path.exists(),
        }
    }

    fn read(&self) -> Result<TokensFile, TokenError> {
        if let Some(db) = &self.shared {
            return self.shared_entries(db);
        }
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TokensFile::default());
            }
            Err(e) => return Err(self.io(&self.path, e)),
        };
        let mut bytes = Vec::new();
        f.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io(&self.path, e))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(self.damaged(format!("larger than {} MiB", MAX_FILE_BYTES >> 20)));
        }
        let text = String::from_utf8(bytes).map_err(|_| self.damaged("not UTF-8 text"))?;
        let file: TokensFile = ron::from_str(&text).map_err(|e| {
            // The parser's message can repeat file content: keep it short.
            self.damaged(crate::util::text::clip(&crate::util::text::one_line(
                &e.to_string(),
            )))
        })?;
        self.check(&file)?;
        Ok(file)
    }

    /// Names valid and unique, hashes of the right shape.
    fn check(&self, file: &TokensFile) -> Result<(), TokenError> {
        let mut seen = std::collections::HashSet::new();
        for t in &file.tokens {
            if !valid_name(&t.name) {
                return Err(self.damaged(format!("token name {} is not allowed", quote(&t.name))));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(self.damaged(format!("token name {} appears twice", quote(&t.name))));
            }
            if !is_hex64(&t.sha256) {
                return Err(self.damaged(format!(
                    "the hash of token {} is not 64 lowercase hex digits",
                    quote(&t.name)
                )));
            }
        }
        Ok(())
    }

    /// Rewrites the file: a temp file created 0600 in the same folder, fsync, rename.
    fn write(&self, file: &TokensFile) -> Result<(), TokenError> {
        let text = ron::ser::to_string_pretty(file, ron::ser::PrettyConfig::default())
            .map_err(|e| self.io(&self.path, e))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".tokens.ron.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut options = File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let result = (|| {
            let mut f = options.open(&tmp)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(self.io(&self.path, e));
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Exclusive lock for a read-modify-write of the file (released on drop).
    fn lock(&self) -> Result<File, TokenError> {
        if let Some(dir) = self.lock.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        }
        use crate::store::lockfile::{LockFailure, lock_with_timeout};
        lock_with_timeout(&self.lock, LOCK_TIMEOUT, LOCK_TIMEOUT, || {}).map_err(|e| match e {
            LockFailure::Io(e) => self.io(&self.lock, e),
            LockFailure::Timeout(_) => TokenError::LockTimeout {
                path: self.lock.display().to_string(),
                secs: LOCK_TIMEOUT.as_secs(),
            },
        })
    }

    /// Adds a token and returns its secret: the only time it is shown (the file keeps
    /// only its SHA-256).
    pub fn add(&self, name: &str, role: Role) -> Result<String, TokenError> {
        if !valid_name(name) {
            return Err(TokenError::BadName(quote(name)));
        }
        let duplicate = || TokenError::Duplicate {
            path: self.place(),
            name: quote(name),
        };
        if let Some(db) = &self.shared {
            let (secret, entry) = new_secret(name, role)?;
            let added = super::pg::tokens::add(
                &mut *db.conn()?,
                &entry.name,
                entry.role.name(),
                &entry.created_at,
                &entry.sha256,
            )
            .map_err(db.err("adding a token"))?;
            return if added { Ok(secret) } else { Err(duplicate()) };
        }
        let _lock = self.lock()?;
        let mut file = self.read()?;
        if file.tokens.iter().any(|t| t.name == name) {
            return Err(duplicate());
        }
        let (secret, entry) = new_secret(name, role)?;
        file.tokens.push(entry);
        self.write(&file)?;
        Ok(secret)
    }
}

/// A new random secret for token `name`, and its entry (the secret's hash).
fn new_secret(name: &str, role: Role) -> Result<(String, Entry), TokenError> {
    {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let mut secret = String::with_capacity(SECRET_PREFIX.len() + 64);
        secret.push_str(SECRET_PREFIX);
        for b in bytes {
            secret.push_str(&format!("{b:02x}"));
        }
        let entry = Entry {
            name: name.to_string(),
            role,
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            sha256: sha256_hex(secret.as_bytes()),
        };
        Ok((secret, entry))
    }
}

impl TokenStore {
    /// The tokens, in the order they were added.
    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        Ok(self.read()?.tokens.into_iter().map(info).collect())
    }

    /// Removes the token `name`; its secret stops working for every server that loads
    /// the file afterwards.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        if let Some(db) = &self.shared {
            let removed = super::pg::tokens::revoke(&mut *db.conn()?, name)
                .map_err(db.err("revoking a token"))?;
            if !removed {
                return Err(TokenError::Unknown {
                    path: self.place(),
                    name: quote(name),
                });
            }
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut file = self.read()?;
        let before = file.tokens.len();
        file.tokens.retain(|t| t.name != name);
        if file.tokens.len() == before {
            return Err(TokenError::Unknown {
                path: self.path.display().to_string(),
                name: quote(name),
            });
        }
        self.write(&file)
    }

    /// The tokens in memory, for checking requests.
    pub fn load(&self) -> Result<Tokens, TokenError> {
        Ok(Tokens {
            entries: self
                .read()?
                .tokens
                .into_iter()
                .map(|t| (t.sha256.clone(), info(t)))
                .collect(),
        })
    }
}

/// A stored token as a copy of the store carries it: the hash of its secret, never
/// the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub sha256: String,
}

impl TokenStore {
    /// Every token with its hash, in the order they were added.
    pub fn export(&self) -> Result<Vec<StoredToken>, TokenError> {
        Ok(self
            .read()?
            .tokens
            .into_iter()
            .map(|t| StoredToken {
                name: t.name,
                role: t.role,
                created_at: t.created_at,
                sha256: t.sha256,
            })
            .collect())
    }

    /// Writes `tokens` (checked like a tokens file) into this store, whose callers can
    /// then use the same secrets. Refused when this store holds a token already.
    pub fn import(&self, tokens: &[StoredToken]) -> Result<(), TokenError> {
        let file = TokensFile {
            tokens: tokens
                .iter()
                .map(|t| Entry {
                    name: t.name.clone(),
                    role: t.role,
                    created_at: t.created_at.clone(),
                    sha256: t.sha256.clone(),
                })
                .collect(),
        };
        self.check(&file)?;
        let occupied =
            || self.damaged("holds tokens already; a copy goes into a store without tokens");
        if let Some(db) = &self.shared {
            let rows: Vec<super::pg::tokens::Row> = file
                .tokens
                .iter()
                .map(|t| {
                    let role = t.role.name().to_string();
                    (t.name.clone(), role, t.created_at.clone(), t.sha256.clone())
                })
                .collect();
            let done = db
                .transaction("copying tokens", |tx| {
                    super::pg::tokens::import(tx, &rows).map_err(db.err("copying tokens"))
                })
                .map_err(TokenError::from)?;
            return if done { Ok(()) } else { Err(occupied()) };
        }
        let _lock = self.lock()?;
        if !self.read()?.tokens.is_empty() {
            return Err(occupied());
        }
        self.write(&file)
    }
}

fn info(t: Entry) -> TokenInfo {
    TokenInfo {
        name: t.name,
        role: t.role,
        created_at: t.created_at,
    }
}

/// Loaded tokens: checks secrets against the stored hashes.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// (SHA-256 hex of the secret, the token).
    entries: Vec<(String, TokenInfo)>,
}

impl Tokens {
    /// The token whose secret is `secret`. Hashes are compared in constant time, and
    /// every stored hash is compared, so timing does not tell how much of a guess matched.
    pub fn verify(&self, secret: &str) -> Option<TokenInfo> {
        let hash = sha256_hex(secret.as_bytes());
        let mut found = None;
        for (stored, info) in &self.entries {
            if constant_time_eq(stored.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(info);
            }
        }
        found.cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenStore::open_in(dir.path());
        (dir, s)
    }

    #[test]
    fn roles_parse_order_and_name() {
        assert_eq!(Role::parse("scorer").unwrap(), Role::Scorer);
        assert_eq!(Role::parse("MODERATOR").unwrap(), Role::Moderator);
        assert_eq!(Role::parse("Admin").unwrap(), Role::Admin);
        let err = Role::parse("root").unwrap_err().to_string();
        assert!(err.contains("\"root\"") && err.contains("scorer"), "{err}");
        let err = Role::parse(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
        assert!(Role::Admin.allows(Role::Moderator));
        assert!(Role::Moderator.allows(Role::Moderator));
        assert!(Role::Moderator.allows(Role::Scorer));
        assert!(!Role::Scorer.allows(Role::Moderator));
        assert!(!Role::Moderator.allows(Role::Admin));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()).unwrap(), r);
        }
    }

    #[test]
    fn add_list_verify_revoke() {
        let (_dir, s) = store();
        assert!(!s.exists());
        assert!(s.list().unwrap().is_empty());
        assert!(s.load().unwrap().is_empty());
        let a = s.add("svc-a", Role::Scorer).unwrap();
        let b = s.add("ops@example.org", Role::Admin).unwrap();
        assert!(s.exists());
        assert!(a.starts_with("ssk_") && a.len() == 68, "{a}");
        assert_ne!(a, b);
        let names: Vec<(String, Role)> = s
            .list()
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.role))
            .collect();
        assert_eq!(
            names,
            [
                ("svc-a".to_string(), Role::Scorer),
                ("ops@example.org".to_string(), Role::Admin)
            ]
        );
        let text = fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains(&a) && !text.contains(&a[4..]), "{text}");
        assert!(text.contains(&sha256_hex(a.as_bytes())));

        let tokens = s.load().unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.verify(&a).unwrap().name, "svc-a");
        assert_eq!(tokens.verify(&b).unwrap().role, Role::Admin);
        assert!(tokens.verify("ssk_wrong").is_none());
        assert!(tokens.verify("").is_none());
        assert!(tokens.verify(&a[..67]).is_none());
        assert!(tokens.verify(&sha256_hex(a.as_bytes())).is_none());

        s.revoke("svc-a").unwrap();
        let tokens = s.load().unwrap();
        assert!(tokens.verify(&a).is_none());
        assert!(tokens.verify(&b).is_some());
        let err = s.revoke("svc-a").unwrap_err().to_string();
        assert!(
            err.contains("no token named \"svc-a\"") && err.contains("tokens.ron"),
            "{err}"
        );
    }

    #[test]
    fn names_are_checked_and_unique() {
        let (_dir, s) = store();
        s.add("a", Role::Scorer).unwrap();
        let err = s.add("a", Role::Admin).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("tokens.ron"),
            "{err}"
        );
        for bad in ["", "has space", "a/b", "ä", "x\n", &"n".repeat(65)] {
            let err = s.add(bad, Role::Scorer).unwrap_err();
            assert!(matches!(err, TokenError::BadName(_)), "{bad:?}: {err}");
        }
        s.add(&"n".repeat(64), Role::Scorer).unwrap();
        s.add("A_b.c@d-9", Role::Moderator).unwrap();
        assert_eq!(s.list().unwrap().len(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, s) = store();
        s.add("a", Role::Scorer).unwrap();
        let mode = fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // Also after a rewrite of a file someone made readable.
        fs::set_permissions(s.path(), fs::Permissions::from_mode(0o644)).unwrap();
        s.add("b", Role::Scorer).unwrap();
        let mode = fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn hostile_files_are_one_line_errors_naming_the_file() {
        let (_dir, s) = store();
        let good = format!(
            "(tokens: [(name: \"a\", role: Scorer, created_at: \"2025-01-01T00:00:00Z\", sha256: \"{}\")])",
            sha256_hex(b"x")
        );
        fs::write(s.path(), &good).unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
        let cases: Vec<(String, Vec<u8>)> = vec![
            ("garbage".into(), b"\x00\x01garbage{{{".to_vec()),
            ("not utf8".into(), vec![0xff, 0xfe, 0xfd]),
            ("huge".into(), vec![b'('; (MAX_FILE_BYTES + 10) as usize]),
            (
                "wrong role".into(),
                good.replace("Scorer", &format!("Root{}", "x".repeat(5_000)))
                    .into_bytes(),
            ),
            (
                "bad name".into(),
                good.replace("\"a\"", &format!("\"{}\"", "a b".repeat(1_000)))
                    .into_bytes(),
            ),
            (
                "duplicate".into(),
                good.replace(")])", &format!("), {}", &good[10..]))
                    .into_bytes(),
            ),
            (
                "bad hash".into(),
                good.replace(&sha256_hex(b"x"), "abc").into_bytes(),
            ),
            (
                "long string".into(),
                format!("(tokens: [(name: \"{}", "z".repeat(100_000)).into_bytes(),
            ),
        ];
        for (what, bytes) in cases {
            fs::write(s.path(), &bytes).unwrap();
            for err in [
                s.list().unwrap_err(),
                s.load().unwrap_err(),
                s.add("new", Role::Admin).unwrap_err(),
                s.revoke("a").unwrap_err(),
            ] {
                let e = err.to_string();
                assert!(matches!(err, TokenError::Damaged { .. }), "{what}: {e}");
                assert!(e.contains("tokens.ron"), "{what}: {e}");
                assert!(!e.contains('\n'), "{what}: {e}");
                assert!(e.len() < 400, "{what}: {} chars: {e}", e.len());
                if what == "duplicate" {
                    assert!(e.contains("appears twice"), "{e}");
                }
                if what == "wrong role" {
                    assert!(e.contains("Root"), "{e}");
                }
            }
            // A damaged file is never read as "no tokens" (which would leave a server open).
            assert!(s.exists(), "{what}");
        }
    }

    #[test]
    fn concurrent_adds_lose_none() {
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|sc| {
            for t in 0..4 {
                let root = dir.path().to_path_buf();
                sc.spawn(move || {
                    // A store per thread: separate lock file descriptions, as in
                    // separate processes.
                    let s = TokenStore::open_in(&root);
                    for i in 0..10 {
                        s.add(&format!("t{t}-{i}"), Role::Scorer).unwrap();
                    }
                });
            }
        });
        assert_eq!(TokenStore::open_in(dir.path()).list().unwrap().len(), 40);
    }
}
