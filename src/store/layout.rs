//! Every path under a registry folder, named in one place. What each file holds is
//! described in `models/README.md`; a module that reads or writes under the registry asks
//! the [`Layout`] for the path instead of joining names itself.
//!
//! ```text
//! REGISTRY/
//!   ACTIVE  online.ron  feedback.sqlite  predictions.sqlite  tokens.ron  tokens.lock
//!   experiment.json
//!   registry.lock
//!   logs/  comparisons/latest.json  reports/vN-TIME/  staging/
//!   versions/vNNNN/{manifest.ron, model.bin, holdout.bin}
//! ```

use std::path::{Path, PathBuf};

/// A version's model file (the imputer and the fitted estimator).
pub const MODEL_FILE: &str = "model.bin";
/// A version's holdout predictions.
pub const HOLDOUT_FILE: &str = "holdout.bin";
/// What a version is (RON).
pub const MANIFEST_FILE: &str = "manifest.ron";
/// The active version number.
pub const ACTIVE_FILE: &str = "ACTIVE";
/// Online-learning settings (RON; absent = defaults).
pub const ONLINE_FILE: &str = "online.ron";
/// Moderators' feedback (SQLite).
pub const FEEDBACK_FILE: &str = "feedback.sqlite";
/// The scoring service's prediction log (SQLite).
pub const PREDICTIONS_FILE: &str = "predictions.sqlite";
/// The scoring service's API tokens: names, roles and SHA-256 of the secrets (RON, 0600).
pub const TOKENS_FILE: &str = "tokens.ron";
/// Held by a process while it rewrites the tokens file.
pub const TOKENS_LOCK_FILE: &str = "tokens.lock";
/// The service's running shadow or canary experiment (JSON; absent = none).
pub const EXPERIMENT_FILE: &str = "experiment.json";
/// Held by a process while it writes the registry.
pub const LOCK_FILE: &str = "registry.lock";
/// The daily-rotated operations log's file name prefix and suffix (`spamscope.DATE.log`).
pub const LOG_PREFIX: &str = "spamscope";
pub const LOG_SUFFIX: &str = "log";

/// The paths of one registry folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn active(&self) -> PathBuf {
        self.root.join(ACTIVE_FILE)
    }
    pub fn online_config(&self) -> PathBuf {
        self.root.join(ONLINE_FILE)
    }
    pub fn experiment(&self) -> PathBuf {
        self.root.join(EXPERIMENT_FILE)
    }
    pub fn feedback_db(&self) -> PathBuf {
        self.root.join(FEEDBACK_FILE)
    }
    pub fn predictions_db(&self) -> PathBuf {
        self.root.join(PREDICTIONS_FILE)
    }
    pub fn tokens(&self) -> PathBuf {
        self.root.join(TOKENS_FILE)
    }
    pub fn tokens_lock(&self) -> PathBuf {
        self.root.join(TOKENS_LOCK_FILE)
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }
    /// The operations log folder (`LOG_PREFIX.DATE.LOG_SUFFIX` files).
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn comparisons_dir(&self) -> PathBuf {
        self.root.join("comparisons")
    }
    /// The last model comparison (JSON).
    pub fn latest_comparison(&self) -> PathBuf {
        self.comparisons_dir().join("latest.json")
    }
    /// Every comparison run, one file each (`ID.json`), kept for MLflow.
    pub fn comparison_history(&self) -> PathBuf {
        self.comparisons_dir().join("history")
    }
    /// The decision policies: one record per version (`NNNNNN.json`) and which is live
    /// and which in shadow (`pointers.json`).
    pub fn policies_dir(&self) -> PathBuf {
        self.root.join("policies")
    }
    pub fn policy(&self, n: u32) -> PathBuf {
        self.policies_dir().join(format!("{n:06}.json"))
    }
    pub fn policy_pointers(&self) -> PathBuf {
        self.policies_dir().join("pointers.json")
    }
    pub fn parse_policy_file(name: &str) -> Option<u32> {
        let n = name.strip_suffix(".json")?;
        (n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| n.parse().ok())
            .flatten()
            .filter(|&n| n > 0)
    }
    /// The lock file of a process-wide exclusive task named `name`.
    pub fn task_lock(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.lock"))
    }
    /// Where a report on version `v`, written at `stamp`, goes by default.
    pub fn report_dir(&self, v: u32, stamp: &str) -> PathBuf {
        self.root.join("reports").join(format!("v{v}-{stamp}"))
    }
    /// Versions being written (one folder per writer; leftovers of a crash are removed).
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// The staging folder of version `v` written by process `pid`.
    pub fn staging_version(&self, v: u32, pid: u32) -> PathBuf {
        self.staging_dir().join(format!("v{v:04}-{pid}"))
    }
    /// A shared store's cache: files downloaded from the database, by checksum.
    pub fn cached_files_dir(&self) -> PathBuf {
        self.root.join("files")
    }
    /// Where the cached file with SHA-256 `sha256` is kept (None when `sha256` is not
    /// 64 lowercase hex digits: a name from a manifest never leads out of the cache).
    pub fn cached_file(&self, sha256: &str) -> Option<PathBuf> {
        let hex = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex.then(|| self.cached_files_dir().join(sha256))
    }
    pub fn versions_dir(&self) -> PathBuf {
        self.root.join("versions")
    }
    pub fn version_dir(&self, v: u32) -> PathBuf {
        self.versions_dir().join(format!("v{v:04}"))
    }
    /// The version number of a folder name under `versions/` (`v0003` → 3).
    pub fn parse_version_dir(name: &str) -> Option<u32> {
        name.strip_prefix('v')?.parse().ok()
    }
    pub fn manifest(&self, v: u32) -> PathBuf {
        self.version_dir(v).join(MANIFEST_FILE)
    }
    /// One of version `v`'s own files (`MODEL_FILE`, `HOLDOUT_FILE`, `MANIFEST_FILE`).
    pub fn version_file(&self, v: u32, name: &'static str) -> PathBuf {
        self.version_dir(v).join(name)
    }

    /// A file named by version `v`'s manifest: only a plain file name inside the
    /// version's folder is accepted (no separator, no `..`, not absolute, not empty).
    /// Where the path leads on disk (symlinks) is checked when the file is read.
    pub fn named_file(&self, v: u32, name: &str) -> Result<PathBuf, &'static str> {
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\', '\0'])
            && !Path::new(name).is_absolute();
        if plain {
            Ok(self.version_dir(v).join(name))
        } else {
            Err("is not a plain file name inside its version folder")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_folders_round_trip() {
        let l = Layout::new("/r");
        assert_eq!(l.version_dir(3), Path::new("/r/versions/v0003"));
        assert_eq!(Layout::parse_version_dir("v0003"), Some(3));
        assert_eq!(Layout::parse_version_dir("v12345"), Some(12345));
        assert_eq!(Layout::parse_version_dir("x0003"), None);
        assert_eq!(l.manifest(3), Path::new("/r/versions/v0003/manifest.ron"));
        assert_eq!(l.staging_version(3, 77), Path::new("/r/staging/v0003-77"));
        assert_eq!(l.predictions_db(), Path::new("/r/predictions.sqlite"));
        assert_eq!(l.tokens(), Path::new("/r/tokens.ron"));
        assert_eq!(l.tokens_lock(), Path::new("/r/tokens.lock"));
    }

    #[test]
    fn manifest_names_cannot_leave_their_version_folder() {
        let l = Layout::new("/r");
        assert_eq!(
            l.named_file(1, "model.bin").unwrap(),
            Path::new("/r/versions/v0001/model.bin")
        );
        for bad in [
            "",
            ".",
            "..",
            "../../x",
            "/etc/passwd",
            "a/b",
            "..\\x",
            "v\0",
            "../v0002/model.bin",
        ] {
            assert_eq!(
                l.named_file(1, bad),
                Err("is not a plain file name inside its version folder"),
                "{bad:?}"
            );
        }
    }
}
