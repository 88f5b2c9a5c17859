//! The bench's Python environment, where what spamscope is compared with runs: where it
//! is, and the reference table's rows fitted in it by `benches/table.py` on a split
//! spamscope hands over (its rows, its imputation), so that a peer row and a native
//! row are measured alike.

use crate::ops::error::{Error, Result};
use crate::util::progress::Reporter;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The source tree the scripts come from.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bench venv: `SPAMSCOPE_BENCH_VENV`, else `target/bench-venv` of the source tree
/// (created or completed by `benches/make_venv.sh`, which `spamscope bench` runs).
pub fn venv_dir() -> PathBuf {
    std::env::var_os("SPAMSCOPE_BENCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target").join("bench-venv"))
}

/// The venv's interpreter, where the venv has been made; otherwise why not, in one line.
pub fn interpreter() -> std::result::Result<PathBuf, String> {
    let py = venv_dir().join("bin").join("python");
    if py.is_file() {
        Ok(py)
    } else {
        Err("no Python environment for peers: make one with `benches/make_venv.sh DIR` and set SPAMSCOPE_BENCH_VENV=DIR (`spamscope bench` makes target/bench-venv)".into())
    }
}

/// Creates or completes the bench venv (`benches/make_venv.sh`, the named peers or
/// all of them), pip's progress shown on stderr: returns (success, the script's stdout
/// (one `PEER\tok` or `PEER\tmissing\tREASON` line per peer), its last words on stderr).
pub fn make_venv(peers: &[&str]) -> (bool, String, String) {
    let venv = venv_dir();
    eprintln!(
        "preparing the peers' Python environment at {} (the first time takes minutes)",
        venv.display()
    );
    let script = repo().join("benches").join("make_venv.sh");
    match run_forwarding_stderr(Command::new("bash").arg(&script).arg(&venv).args(peers)) {
        Ok(r) => r,
        Err(e) => (
            false,
            String::new(),
            format!("cannot run {}: {e}", script.display()),
        ),
    }
}

/// Runs a command with its stderr shown as it comes (pip's progress) and kept: returns
/// (success, stdout, the last non-empty stderr line).
pub fn run_forwarding_stderr(cmd: &mut Command) -> std::io::Result<(bool, String, String)> {
    use std::io::{BufRead, Read};
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let forward = std::thread::spawn(move || {
        let mut last = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
        {
            eprintln!("{line}");
            if !line.trim().is_empty() {
                last = line.trim().to_string();
            }
        }
        last
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let last = forward.join().unwrap_or_default();
    Ok((status.success(), stdout, last))
}

/// A peer's fit: the library that ran it and its scores of the test rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerFit {
    pub library: String,
    pub version: String,
    pub fit_seconds: f64,
    pub scores: Vec<f64>,
}

impl PeerFit {
    /// "xgboost 3.2.0".
    pub fn describe(&self) -> String {
        format!("{} {}", self.library, self.version)
    }
}

/// A split written for `benches/table.py` (removed when dropped); without a Python
/// environment nothing is written and every row says why it was not run.
pub struct PeerSplit {
    dir: Option<PathBuf>,
    python: std::result::Result<PathBuf, String>,
    test_rows: usize,
    seed: u64,
}

/// Little-endian f64 values of the rows, row after row (`columns[f][i]`).
fn write_rows(path: &Path, columns: &[&[f64]]) -> Result<()> {
    use std::io::Write;
    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(f);
    let n = columns.first().map_or(0, |c| c.len());
    for i in 0..n {
        for c in columns {
            w.write_all(&c[i].to_le_bytes())
                .map_err(|e| Error::io(path, e))?;
        }
    }
    w.flush().map_err(|e| Error::io(path, e))
}

impl PeerSplit {
    /// Writes imputed training rows (column-major), their labels and the imputed test
    /// rows to a temporary folder, for `python` (or, where there is none, nothing: each
    /// row will say why).
    pub fn write(
        python: std::result::Result<PathBuf, String>,
        train: &[&[f64]],
        train_labels: &[u8],
        test: &[&[f64]],
        seed: u64,
    ) -> Result<PeerSplit> {
        let test_rows = test.first().map_or(0, |c| c.len());
        if python.is_err() {
            return Ok(PeerSplit {
                dir: None,
                python,
                test_rows,
                seed,
            });
        }
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("spamscope-peers-{}-{run}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let split = PeerSplit {
            dir: Some(dir.clone()),
            python,
            test_rows,
            seed,
        };
        write_rows(&dir.join("train.f64"), train)?;
        let y = dir.join("train.u8");
        std::fs::write(&y, train_labels).map_err(|e| Error::io(&y, e))?;
        write_rows(&dir.join("test.f64"), test)?;
        Ok(split)
    }

    /// Fits the table's row `name` in Python and scores the test rows; a missing
    /// library, a failed fit or a malformed answer is an [`Error::Peer`] saying why.
    /// The process is killed when the reporter is cancelled.
    pub fn run(&self, name: &str, reporter: &dyn Reporter) -> Result<PeerFit> {
        let (python, dir) = match (&self.python, &self.dir) {
            (Ok(p), Some(d)) => (p, d),
            (Err(why), _) => return Err(Error::Peer(why.clone())),
            (Ok(_), None) => return Err(Error::Peer("the split was not written".into())),
        };
        let mut child = Command::new(python)
            .arg(repo().join("benches").join("table.py"))
            .arg("--train-x")
            .arg(dir.join("train.f64"))
            .arg("--train-y")
            .arg(dir.join("train.u8"))
            .arg("--test-x")
            .arg(dir.join("test.f64"))
            .args(["--model", name])
            .args(["--seed", &self.seed.to_string()])
            .args(["--threads", &rayon::current_num_threads().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Peer(format!("cannot start Python: {e}")))?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        reporter.stage("fitting in Python", 0, 1);
        let status = loop {
            if reporter.cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Cancelled);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(Error::Peer(format!("lost the Python process: {e}"))),
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        reporter.stage("fitting in Python", 1, 1);
        let last_err = stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        if !status.success() {
            return Err(Error::Peer(format!(
                "Python failed ({status}): {}",
                crate::util::text::clip(&crate::util::text::one_line(last_err))
            )));
        }
        let line = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| Error::Peer(format!("table.py printed no JSON: {e}")))?;
        if let Some(why) = v["missing"].as_str() {
            return Err(Error::Peer(crate::util::text::clip(
                &crate::util::text::one_line(why),
            )));
        }
        let scores: Vec<f64> = v["scores"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        if scores.len() != self.test_rows || scores.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err(Error::Peer(format!(
                "table.py gave {} scores in [0, 1] for {} test rows",
                scores.iter().filter(|s| (0.0..=1.0).contains(*s)).count(),
                self.test_rows
            )));
        }
        Ok(PeerFit {
            library: v["library"].as_str().unwrap_or("?").to_string(),
            version: v["version"].as_str().unwrap_or("?").to_string(),
            fit_seconds: v["fit_seconds"].as_f64().unwrap_or(f64::NAN),
            scores,
        })
    }
}

impl Drop for PeerSplit {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
