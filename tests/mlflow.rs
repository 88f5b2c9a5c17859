//! MLflow tracking against a real `mlflow server` (from PyPI, installed into a virtual
//! environment by this test), checked through MLflow's own REST API: every training,
//! retraining (promoted and rejected, with the gate's reason) and comparison is a run
//! with its parameters, metrics, model card, charts and model file; every version is a
//! version of the registered model; the alias `production` follows promotions and
//! rollbacks; what is made while MLflow is down is sent later; a sync cut short is
//! redone; concurrent syncs log each thing once; a running service logs by itself.

mod common;

use serde_json::{Value, json};
use spamscope::store::Registry;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The MLflow this test runs (pinned: the REST API checked here is this version's).
const MLFLOW: &str = "mlflow==3.17.2";

/// The venv's `bin` (made once per target folder; tests of this binary share it).
fn venv() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mlflow-venv");
        let bin = venv.join("bin");
        if bin.join("mlflow").exists() {
            return bin;
        }
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3");
        assert!(out.status.success(), "venv: {out:?}");
        let out = Command::new(bin.join("pip"))
            .args(["install", "-q", MLFLOW])
            .output()
            .unwrap();
        assert!(out.status.success(), "pip install {MLFLOW}: {out:?}");
        bin
    })
}

/// A tracking server on a loopback port, its database and artifacts in `dir`.
struct Mlflow {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Mlflow {
    fn new(dir: &Path) -> Mlflow {
        Mlflow {
            child: None,
            port: common::pg::free_port(),
            dir: dir.to_path_buf(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and data) and waits until it answers.
    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("mlflow.log")).unwrap();
        let child = Command::new(venv().join("mlflow"))
            .args(["server", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.join("artifacts"))
            .args(["--workers", "1"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while ureq::get(format!("{}/health", self.url())).call().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "mlflow server did not answer in 180 s: {}",
                std::fs::read_to_string(self.dir.join("mlflow.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The server's workers are its children: end the whole group politely.
            let _ = Command::new("pkill")
                .args(["-TERM", "-P"])
                .arg(c.id().to_string())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
        // Until the port is free again.
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut req = ureq::get(format!("{}/api/2.0/mlflow/{path}", self.url()));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        req.call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        ureq::post(format!("{}/api/2.0/mlflow/{path}", self.url()))
            .send_json(&body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn experiment_id(&self, name: &str) -> String {
        self.get("experiments/get-by-name", &[("experiment_name", name)])["experiment"]
            ["experiment_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every run of experiment `name`, deleted ones too.
    fn runs(&self, name: &str) -> Vec<Value> {
        let v = self.post(
            "runs/search",
            json!({"experiment_ids": [self.experiment_id(name)], "max_results": 1000, "run_view_type": "ALL"}),
        );
        v["runs"].as_array().cloned().unwrap_or_default()
    }

    fn model_versions(&self, name: &str) -> Vec<Value> {
        let v = self.get(
            "model-versions/search",
            &[
                ("filter", &format!("name='{name}'")),
                ("max_results", "1000"),
            ],
        );
        v["model_versions"].as_array().cloned().unwrap_or_default()
    }

    /// The model version the alias `production` names.
    fn production(&self, name: &str) -> Option<String> {
        let v = self.get("registered-models/get", &[("name", name)]);
        v["registered_model"]["aliases"]
            .as_array()?
            .iter()
            .find(|a| a["alias"] == "production")
            .map(|a| a["version"].as_str().unwrap().to_string())
    }

    fn artifact(&self, run: &Value, path: &str) -> Vec<u8> {
        let root = run["info"]["artifact_uri"]
            .as_str()
            .unwrap()
            .trim_start_matches("mlflow-artifacts:/")
            .to_string();
        let mut res = ureq::get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{root}/{path}",
            self.url()
        ))
        .call()
        .unwrap_or_else(|e| panic!("artifact {path}: {e}"));
        res.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap()
    }

    /// The paths of `run_id`'s artifact files under `path` ("": all of them).
    fn artifact_paths(&self, run_id: &str, path: &str) -> Vec<String> {
        let v = self.get("artifacts/list", &[("run_id", run_id), ("path", path)]);
        let mut out = Vec::new();
        for f in v["files"].as_array().cloned().unwrap_or_default() {
            let p = f["path"].as_str().unwrap().to_string();
            if f["is_dir"] == true {
                out.extend(self.artifact_paths(run_id, &p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

fn metric(run: &Value, key: &str) -> Option<f64> {
    run["data"]["metrics"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_f64())
}

fn param<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["params"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

/// The live (not deleted) runs of spamscope version `v`.
fn version_runs(runs: &[Value], v: u32) -> Vec<Value> {
    runs.iter()
        .filter(|r| {
            tag(r, "spamscope.version") == Some(&v.to_string())
                && r["info"]["lifecycle_stage"] == "active"
        })
        .cloned()
        .collect()
}

/// The model version registered for spamscope version `v` (exactly one).
fn model_version_of(mvs: &[Value], v: u32) -> String {
    let mine = model_versions_of(mvs, v);
    assert_eq!(mine.len(), 1, "model versions of {v}: {mine:?}");
    mine[0].clone()
}

/// The model versions registered for spamscope version `v` (while a sync runs: none
/// yet, before there is one).
fn model_versions_of(mvs: &[Value], v: u32) -> Vec<String> {
    mvs.iter()
        .filter(|mv| {
            mv["tags"].as_array().into_iter().flatten().any(|t| {
                t["key"] == "spamscope.version"
                    && t["value"].as_str().and_then(|s| s.parse().ok()) == Some(v)
            })
        })
        .map(|mv| mv["version"].as_str().unwrap().to_string())
        .collect()
}

/// Whether the alias names spamscope version `v`'s model version (false while a sync
/// has not registered it yet).
fn production_is(server: &Mlflow, exp: &str, v: u32) -> bool {
    let now = server.production(exp);
    now.is_some() && now.map(|p| vec![p]) == Some(model_versions_of(&server.model_versions(exp), v))
}

fn spamscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spamscope"));
    c.args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("SPAMSCOPE_STORE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> (String, String) {
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "stdout: {o}\nstderr: {e}");
    (o, e)
}

/// `spamscope train` of a small forest on `data` into `reg`, with `more` arguments.
fn train(reg: &str, data: &Path, trees: u32, more: &[&str], env: &[(&str, &str)]) -> String {
    let trees = trees.to_string();
    let mut args = vec![
        "train",
        "--registry",
        reg,
        "--data",
        data.to_str().unwrap(),
        "--trees",
        &trees,
    ];
    args.extend(more);
    ok(spamscope(&args, env)).1
}

/// `spamscope feedback import` of a labelled CSV into `reg`.
fn import_feedback(reg: &str, data: &Path) {
    ok(spamscope(
        &[
            "feedback",
            "import",
            "--registry",
            reg,
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    ));
}

/// The arguments of `spamscope mlflow sync --json` of `reg` to `url`.
fn sync_args<'a>(reg: &'a str, url: &'a str) -> [&'a str; 7] {
    [
        "mlflow",
        "sync",
        "--registry",
        reg,
        "--json",
        "--mlflow",
        url,
    ]
}

/// `spamscope mlflow sync --json` of `reg` to `url`: what it printed.
fn sync(reg: &str, url: &str, env: &[(&str, &str)]) -> Value {
    let (out, _) = ok(spamscope(&sync_args(reg, url), env));
    serde_json::from_str(&out).unwrap()
}

/// A labelled CSV of `rows` synthetic accounts; `poison`: every other label flipped.
fn data(dir: &Path, name: &str, rows: usize, seed: u64, poison: bool) -> PathBuf {
    let p = dir.join(name);
    ok(spamscope(
        &[
            "gen-data",
            "--out",
            p.to_str().unwrap(),
            "--rows",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
        ],
        &[],
    ));
    if poison {
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for (i, l) in lines.enumerate() {
            let rest = l.split_once(',').unwrap().1;
            out += &format!("{},{rest}\n", i % 2);
        }
        std::fs::write(&p, out).unwrap();
    }
    p
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn every_version_and_comparison_reaches_mlflow_even_when_it_was_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg_dir = dir.join("registry");
    let reg = reg_dir.to_str().unwrap();
    let mut server = Mlflow::new(dir);
    let url = server.url();
    let exp = "spamscope-test";
    let env = [("MLFLOW_EXPERIMENT_NAME", exp)];
    let small = data(dir, "small.csv", 4000, 1, false);
    let feedback = data(dir, "feedback.csv", 600, 7, false);
    let poison = data(dir, "poison.csv", 2000, 11, true);

    // MLflow is down: training succeeds and says nothing is lost.
    let err = train(reg, &small, 10, &["--mlflow", &url], &env);
    assert!(err.contains("did not answer"), "{err}");
    assert!(err.contains("nothing is lost"), "{err}");
    venv();
    server.start();

    // Retrained twice: promoted on honest feedback, rejected on poisoned labels.
    import_feedback(reg, &feedback);
    let (_, err) = ok(spamscope(
        &["retrain", "--registry", reg, "--mlflow", &url],
        &env,
    ));
    assert!(err.contains("logged version 1 (train"), "{err}");
    assert!(err.contains("logged version 2 (retrain, active)"), "{err}");
    import_feedback(reg, &poison);
    let (_, err) = ok(spamscope(
        &["retrain", "--registry", reg],
        &[
            ("MLFLOW_TRACKING_URI", &url),
            ("MLFLOW_EXPERIMENT_NAME", exp),
        ],
    ));
    assert!(
        err.contains("logged version 3 (retrain, rejected)"),
        "{err}"
    );

    let registry = Registry::open(&reg_dir).unwrap();
    let runs = server.runs(exp);
    let mvs = server.model_versions(exp);
    for v in 1..=3 {
        let m = registry.manifest(v).unwrap();
        let mine = version_runs(&runs, v);
        assert_eq!(mine.len(), 1, "runs of version {v}");
        let run = &mine[0];
        assert_eq!(run["info"]["status"], "FINISHED");
        assert_eq!(
            metric(run, "holdout.roc_auc").unwrap(),
            m.metrics.roc_auc,
            "version {v}"
        );
        assert_eq!(metric(run, "holdout.tp").unwrap(), m.metrics.tp as f64);
        assert_eq!(param(run, "threshold").unwrap(), m.threshold.to_string());
        assert_eq!(
            param(run, "recipe.spec.Forest.n_trees"),
            Some(m.params.n_trees.to_string().as_str()),
            "params: {:?}",
            run["data"]["params"]
        );
        // The model card, the charts and the model file, byte for byte.
        let run_id = run["info"]["run_id"].as_str().unwrap();
        let files = server.artifact_paths(run_id, "");
        for want in [
            "model_card.md",
            "charts/roc_pr.png",
            "charts/confusion.png",
            "charts/importance.png",
            "model/model.bin",
            "model/manifest.ron",
        ] {
            assert!(files.contains(&want.to_string()), "{want} in {files:?}");
        }
        let model = server.artifact(run, "model/model.bin");
        assert_eq!(
            spamscope::util::hash::sha256_hex(&model),
            m.model_file.sha256,
            "version {v}'s model file"
        );
        let card = String::from_utf8(server.artifact(run, "model_card.md")).unwrap();
        assert!(
            card.starts_with(&format!("# spamscope model card: version {v}")),
            "{card}"
        );
        assert_eq!(&server.artifact(run, "charts/roc_pr.png")[1..4], b"PNG");
        model_version_of(&mvs, v);
    }
    // The retrains carry the gate's verdict and reason.
    let v2 = &version_runs(&runs, 2)[0];
    let v3 = &version_runs(&runs, 3)[0];
    let gate2 = registry.manifest(2).unwrap().gate.unwrap();
    let gate3 = registry.manifest(3).unwrap().gate.unwrap();
    assert_eq!(tag(v2, "spamscope.kind"), Some("retrain"));
    assert_eq!(tag(v2, "spamscope.gate"), Some("promoted"));
    assert_eq!(
        tag(v2, "spamscope.gate_reason"),
        Some(gate2.reason.as_str())
    );
    assert_eq!(tag(v3, "spamscope.gate"), Some("rejected"));
    assert_eq!(tag(v3, "spamscope.status"), Some("rejected"));
    assert!(gate3.reason.starts_with("rejected"), "{}", gate3.reason);
    assert_eq!(
        tag(v3, "spamscope.gate_reason"),
        Some(gate3.reason.as_str())
    );
    assert_eq!(
        metric(v3, "gate.base_auc_candidate").unwrap(),
        gate3.base_auc_candidate
    );
    assert_eq!(
        tag(&version_runs(&runs, 1)[0], "spamscope.kind"),
        Some("train")
    );
    // The feedback on version 1's verdicts (the import was scored by it).
    let stats = spamscope::store::feedback::FeedbackStore::of(&registry)
        .unwrap()
        .stats()
        .unwrap();
    let v1 = stats
        .by_version
        .iter()
        .find(|s| s.version == Some(1))
        .unwrap();
    assert!(v1.judged >= 600);
    let run1 = &version_runs(&server.runs(exp), 1)[0];
    assert_eq!(metric(run1, "feedback.judged"), Some(v1.judged as f64));
    assert_eq!(metric(run1, "feedback.agreement"), v1.agreement());
    // The alias names the active version (2: the rejected candidate did not replace it).
    assert_eq!(registry.active().unwrap(), Some(2));
    assert_eq!(server.production(exp), Some(model_version_of(&mvs, 2)));

    // A rollback moves the alias back.
    ok(spamscope(
        &["rollback", "--registry", reg, "--to", "1", "--mlflow", &url],
        &env,
    ));
    assert_eq!(server.production(exp), Some(model_version_of(&mvs, 1)));
    let mvs = server.model_versions(exp);
    let status_of = |v: u32| {
        mvs.iter()
            .find(|mv| mv["version"] == model_version_of(&mvs, v).as_str())
            .and_then(|mv| {
                mv["tags"]
                    .as_array()?
                    .iter()
                    .find(|t| t["key"] == "spamscope.status")
                    .map(|t| t["value"].as_str().unwrap().to_string())
            })
    };
    assert_eq!(status_of(1).as_deref(), Some("active"));
    assert_eq!(status_of(2).as_deref(), Some("rolled back"));

    // A comparison: a parent run with the table, a child run per model.
    let (out, _) = ok(spamscope(
        &[
            "compare",
            "--registry",
            reg,
            "--data",
            small.to_str().unwrap(),
            "--only",
            "forest 100 trees,logistic regression",
            "--json",
            "--mlflow",
            &url,
        ],
        &env,
    ));
    let table: Value = serde_json::from_str(&out).unwrap();
    let runs = server.runs(exp);
    let parents: Vec<&Value> = runs
        .iter()
        .filter(|r| {
            tag(r, "spamscope.kind") == Some("comparison") && tag(r, "spamscope.model").is_none()
        })
        .collect();
    assert_eq!(parents.len(), 1);
    let parent_id = parents[0]["info"]["run_id"].as_str().unwrap();
    let children: Vec<&Value> = runs
        .iter()
        .filter(|r| tag(r, "mlflow.parentRunId") == Some(parent_id))
        .collect();
    assert_eq!(children.len(), 2);
    for row in table["models"].as_array().unwrap() {
        let child = children
            .iter()
            .find(|c| tag(c, "spamscope.model") == row["name"].as_str())
            .unwrap_or_else(|| panic!("no child run for {row}"));
        assert_eq!(metric(child, "roc_auc"), row["roc_auc"].as_f64());
        assert_eq!(metric(child, "f1"), row["f1"].as_f64());
    }
    let files = server.artifact_paths(parent_id, "");
    for want in [
        "comparison.md",
        "comparison.json",
        "charts/comparison_roc.png",
    ] {
        assert!(files.contains(&want.to_string()), "{want} in {files:?}");
    }

    // Nothing new: a sync logs nothing twice.
    let before = server.runs(exp).len();
    let synced = sync(reg, &url, &env);
    assert_eq!(synced["logged"], json!([]), "{synced}");
    assert_eq!(server.runs(exp).len(), before);

    // A sync cut short (a run left unfinished) is redone; the unfinished run deleted.
    train(reg, &small, 7, &[], &[]);
    let exp_id = server.experiment_id(exp);
    let partial = server.post(
        "runs/create",
        json!({"experiment_id": exp_id, "run_name": "v4 train",
               "tags": [{"key": "spamscope.version", "value": "4"}]}),
    );
    let partial_id = partial["run"]["info"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let synced = sync(reg, &url, &env);
    assert_eq!(synced["logged"][0]["version"], 4, "{synced}");
    let gone = server.get("runs/get", &[("run_id", &partial_id)]);
    assert_eq!(gone["run"]["info"]["lifecycle_stage"], "deleted");
    let runs = server.runs(exp);
    assert_eq!(version_runs(&runs, 4).len(), 1);
    assert_eq!(version_runs(&runs, 4)[0]["info"]["status"], "FINISHED");
    let mvs = server.model_versions(exp);
    assert_eq!(server.production(exp), Some(model_version_of(&mvs, 4)));

    // Two syncs at once into a new experiment: each version logged once.
    let other = [("MLFLOW_EXPERIMENT_NAME", "spamscope-again")];
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_spamscope"))
            .args(sync_args(reg, &url))
            .env(other[0].0, other[0].1)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut logged = 0;
    for o in outs {
        let (out, _) = ok(o);
        logged += serde_json::from_str::<Value>(&out).unwrap()["logged"]
            .as_array()
            .unwrap()
            .len();
    }
    assert_eq!(logged, 5, "4 versions and a comparison, once");
    let runs = server.runs(other[0].1);
    for v in 1..=4 {
        assert_eq!(version_runs(&runs, v).len(), 1, "version {v}");
    }
    assert_eq!(server.model_versions(other[0].1).len(), 4);
}

#[test]
fn a_running_service_logs_what_others_train_and_waits_out_an_mlflow_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg_dir = dir.join("registry");
    let reg = reg_dir.to_str().unwrap();
    let small = data(dir, "small.csv", 3000, 2, false);
    train(reg, &small, 5, &[], &[]);
    venv();
    let mut server = Mlflow::new(dir);
    server.start();
    let url = server.url();
    let port = common::pg::free_port().to_string();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    /// Stops the service when the test ends, however it ends.
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _serve = Kill(
        Command::new(env!("CARGO_BIN_EXE_spamscope"))
            .args(["serve", "--registry", reg, "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--mlflow", &url])
            .env_remove("MLFLOW_EXPERIMENT_NAME")
            .env_remove("MLFLOW_TRACKING_URI")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let exp = "spamscope";
    let logged = |server: &Mlflow, v: u32| {
        ureq::get(format!(
            "{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={exp}"
        ))
        .call()
        .is_ok()
            && version_runs(&server.runs(exp), v)
                .iter()
                .any(|r| r["info"]["status"] == "FINISHED")
    };
    wait_until(
        "the service to log version 1",
        Duration::from_secs(60),
        || logged(&server, 1),
    );
    // Trained by a command that knows nothing of MLflow: the service logs it.
    train(reg, &small, 6, &[], &[]);
    wait_until(
        "the service to log version 2",
        Duration::from_secs(60),
        || logged(&server, 2) && production_is(&server, exp, 2),
    );
    // MLflow goes away; a version is made meanwhile; MLflow comes back: it is sent.
    server.stop();
    train(reg, &small, 7, &[], &[]);
    let serve_log = || std::fs::read_to_string(dir.join("serve.log")).unwrap();
    wait_until(
        "the service to find MLflow away",
        Duration::from_secs(60),
        || serve_log().contains("did not answer"),
    );
    server.start();
    wait_until(
        "the service to log version 3 after the outage",
        Duration::from_secs(120),
        || logged(&server, 3) && production_is(&server, exp, 3),
    );
    let runs = server.runs(exp);
    for v in 1..=3 {
        assert_eq!(version_runs(&runs, v).len(), 1, "version {v} once");
    }
    let text = serve_log();
    assert!(text.contains("answers again"), "{text}");
    // Its /metrics counts the syncs: the failed ones of the outage, three runs logged
    // (counted when the sync that moved the alias returns: looked at until then).
    let value = |name: &str| -> Option<f64> {
        let metrics = ureq::get(format!("http://127.0.0.1:{port}/metrics"))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    wait_until(
        "/metrics to count 3 runs logged",
        Duration::from_secs(30),
        || value("spamscope_mlflow_runs_logged_total") == Some(3.0),
    );
    assert!(value("spamscope_mlflow_syncs_total{outcome=\"failed\"}").unwrap() >= 1.0);
    assert!(value("spamscope_mlflow_syncs_total{outcome=\"ok\"}").unwrap() >= 3.0);
}

/// The desktop app working on its own registry logs its training too (MLflow's
/// variables, as for the commands), and says so in its notices.
#[cfg(feature = "gui")]
#[test]
fn the_app_logs_what_it_trains() {
    use spamscope::model::forest::ForestParams;
    use spamscope::ops::train::TrainConfig;
    use spamscope::workbench::{Notice, Workbench, WorkbenchConfig};
    let tmp = tempfile::tempdir().unwrap();
    venv();
    let mut server = Mlflow::new(tmp.path());
    server.start();
    // The app reads MLFLOW_TRACKING_URI into this setting; the experiment is named by
    // MLFLOW_EXPERIMENT_NAME, left unset here: the default.
    let mut tracking = spamscope::ops::mlflow::Tracking::new(&server.url()).unwrap();
    tracking.experiment = "from-the-app".into();
    let mut w = Workbench::new(
        WorkbenchConfig {
            registry_root: tmp.path().join("registry"),
            dataset: None,
            synth: spamscope::data::synth::SynthParams {
                rows: 3000,
                seed: 5,
            },
            train: TrainConfig {
                params: ForestParams {
                    n_trees: 5,
                    max_depth: Some(8),
                    ..Default::default()
                },
                ..Default::default()
            },
            remote: None,
            mlflow: Some(tracking),
        },
        std::sync::Arc::new(|| {}),
    );
    w.start();
    let said = |w: &Workbench, text: &str| {
        w.notices
            .iter()
            .any(|n| matches!(n, Notice::Info(t) if t.contains(text)))
    };
    // Logged, and the start's job over (one training at a time).
    common::wait_for(&mut w, "the first version logged", |w| {
        said(w, "logged version 1 (train, active)") && !w.is_training()
    });
    w.train_now();
    common::wait_for(&mut w, "the second version logged", |w| {
        said(w, "logged version 2 (train, active)")
    });
    let runs = server.runs("from-the-app");
    assert_eq!(version_runs(&runs, 1).len(), 1);
    assert_eq!(version_runs(&runs, 2).len(), 1);
    let mvs = server.model_versions("from-the-app");
    assert_eq!(
        server.production("from-the-app"),
        Some(model_version_of(&mvs, 2))
    );
}
