//! End-to-end tests of the command line, as scripts and checks call it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// No Python environment for the comparison's peer rows: they say so at once
/// (tests/peers.rs runs them in a real one).
const NO_VENV: &str = "/nonexistent/spamscope-test-no-venv";

fn spamscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(args)
        .env_remove("SPAMSCOPE_HOME")
        .env("SPAMSCOPE_BENCH_VENV", NO_VENV)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = spamscope(args);
    assert!(
        out.status.success(),
        "spamscope {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> Value {
    let text = ok(args);
    assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Fails with exit code != 0 and exactly one line on stderr; returns that line.
fn fails(args: &[&str]) -> String {
    let out = spamscope(args);
    assert!(!out.status.success(), "spamscope {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.last().copied().unwrap_or("");
    assert!(last.starts_with("error"), "last line is the error: {err}");
    assert!(!err.contains("panicked"), "no panic: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "no backtrace: {err}");
    last.to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn registry(&self) -> String {
        s(&self.path("registry")).to_string()
    }
    fn data(&self, rows: usize) -> PathBuf {
        let p = self.path(&format!("data{rows}.csv"));
        if !p.exists() {
            ok(&[
                "gen-data",
                "--out",
                s(&p),
                "--rows",
                &rows.to_string(),
                "--seed",
                "7",
            ]);
        }
        p
    }
    fn train(&self, data: &Path, extra: &[&str]) -> Value {
        let reg = self.registry();
        let mut args = vec!["train", "--data", s(data), "--registry", &reg];
        if !extra.contains(&"--trees") {
            args.extend(["--trees", "20"]);
        }
        args.extend_from_slice(extra);
        args.push("--json");
        json(&args)
    }
}

#[test]
fn train_eval_score_versions_round_trip() {
    let env = Env::new();
    let data = env.data(6000);
    let reg = env.registry();
    let t = env.train(&data, &[]);
    assert_eq!(t["version"], 1);
    assert_eq!(t["rows"], 4800);
    assert!(t["train_seconds"].as_f64().unwrap() > 0.0);
    let m = &t["metrics"];
    for k in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "average_precision",
        "tn",
        "fp",
        "fn",
        "tp",
    ] {
        assert!(m[k].is_number(), "metrics.{k}");
    }
    assert_eq!(
        m["tn"].as_u64().unwrap()
            + m["fp"].as_u64().unwrap()
            + m["fn"].as_u64().unwrap()
            + m["tp"].as_u64().unwrap(),
        1200
    );
    assert!(m["roc_auc"].as_f64().unwrap() > 0.85, "{m}");
    let imp = t["importance"].as_object().unwrap();
    assert_eq!(imp.len(), 51);
    let total: f64 = imp.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9);

    // A second version with different parameters becomes active, parent = 1.
    let t2 = env.train(&data, &["--trees", "10", "--max-depth", "6", "--seed", "3"]);
    assert_eq!(t2["version"], 2);
    let v = json(&["versions", "--registry", &reg, "--json"]);
    assert_eq!(v["active"], 2);
    let list = v["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["parent"], 1);
    assert_eq!(list[1]["active"], true);

    // eval on the same file with version 1 equals a fresh evaluation of that version.
    let e1 = json(&[
        "eval",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--version",
        "1",
        "--json",
    ]);
    assert_eq!(e1["version"], 1);
    assert_eq!(e1["rows"], 6000);
    let e_strict = json(&[
        "eval",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--version",
        "1",
        "--threshold",
        "0.9",
        "--json",
    ]);
    assert!(
        e_strict["metrics"]["tp"].as_u64() <= e1["metrics"]["tp"].as_u64(),
        "a higher threshold flags fewer accounts"
    );

    // score with explanations.
    let out = env.path("scores.csv");
    ok(&[
        "score",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--registry",
        &reg,
        "--explain",
        "3",
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..6],
        &[
            "user_id",
            "probability",
            "is_spammer",
            "model_version",
            "score",
            "explanation_method"
        ]
    );
    assert_eq!(header.len(), 6 + 9);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6000);
    for r in rows.iter().take(50) {
        let p: f64 = r[1].parse().unwrap();
        let score: f64 = r[4].parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
        // The verdict is the raw score's.
        assert_eq!(r[2], if score > 0.5 { "1" } else { "0" });
        assert_eq!(r[3], "2");
        assert_eq!(r[5], "path_attribution");
        assert!(r[6].starts_with('X'));
    }
    // Exact TreeSHAP on a few rows of a scoring file without labels.
    let small = env.path("nolabel.csv");
    let src = std::fs::read_to_string(&data).unwrap();
    let nolabel: String = src
        .lines()
        .take(6)
        .map(|l| l.split_once(',').unwrap().1.to_string() + "\n")
        .collect();
    std::fs::write(&small, nolabel).unwrap();
    let out2 = env.path("scores2.csv");
    ok(&[
        "score",
        "--data",
        s(&small),
        "--out",
        s(&out2),
        "--registry",
        &reg,
        "--explain",
        "2",
        "--exact",
        "--version",
        "1",
    ]);
    let text = std::fs::read_to_string(&out2).unwrap();
    assert_eq!(text.lines().count(), 6);
    assert!(
        // version 1, its raw score, then the method and the reasons.
        text.lines()
            .nth(1)
            .unwrap()
            .split(',')
            .skip(3)
            .take(4)
            .enumerate()
            .all(|(k, c)| match k {
                0 => c == "1",
                1 => c.parse::<f64>().is_ok(),
                2 => c == "treeshap",
                _ => c.starts_with('X'),
            }),
        "{text}"
    );
}

#[test]
fn train_with_a_separate_test_file() {
    let env = Env::new();
    let train = env.data(3000);
    let test = env.path("test.csv");
    ok(&[
        "gen-data",
        "--out",
        s(&test),
        "--rows",
        "1500",
        "--seed",
        "99",
    ]);
    let t = env.train(&train, &["--test", s(&test)]);
    assert_eq!(t["rows"], 3000);
    assert_eq!(t["test_rows"], 1500);
}

fn expected_metrics() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/expected_metrics.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{} must exist beside the repo: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn metrics_match_scikit_learn_on_the_shared_fixtures() {
    let expected = expected_metrics();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    for name in ["seed_rf300_predictions", "seed_logreg_predictions"] {
        let file = fixtures.join(format!("{name}.csv"));
        let got = json(&[
            "metrics",
            "--predictions",
            s(&file),
            "--label-col",
            "y_test",
            "--score-col",
            "y_proba",
            "--pred-col",
            "y_pred",
            "--json",
        ]);
        let exp = expected[name].as_object().unwrap();
        for (k, v) in exp {
            let (g, e) = (got[k].as_f64().unwrap(), v.as_f64().unwrap());
            assert!((g - e).abs() <= 1e-9, "{name}.{k}: got {g}, expected {e}");
        }
        // From the scores alone (score > 0.5, like predict) the decisions agree too.
        let from_scores = json(&["metrics", "--predictions", s(&file), "--json"]);
        for k in ["tp", "fp", "tn", "fn", "precision", "recall", "f1"] {
            let (g, e) = (from_scores[k].as_f64().unwrap(), exp[k].as_f64().unwrap());
            assert!((g - e).abs() <= 1e-9, "{name}.{k} from scores");
        }
    }
}

/// A hard-voting model has decisions but no scores: the thresholded metrics match
/// scikit-learn's, and ROC-AUC / average precision are absent with the reason.
#[test]
fn metrics_from_decisions_alone() {
    let env = Env::new();
    let expected = expected_metrics();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    let text = std::fs::read_to_string(fixtures.join("seed_rf300_predictions.csv")).unwrap();
    let hard: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    assert!(hard.starts_with("y_test,y_pred\n"), "{}", &hard[..40]);
    let p = env.path("hard.csv");
    std::fs::write(&p, hard).unwrap();
    let args = ["metrics", "--predictions", s(&p), "--pred-col", "y_pred"];
    let v = json(&[&args[..], &["--json"]].concat());
    let exp = expected["seed_rf300_predictions"].as_object().unwrap();
    for k in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "tn",
        "fp",
        "fn",
        "tp",
        "rows",
    ] {
        let (g, e) = (v[k].as_f64().unwrap(), exp[k].as_f64().unwrap());
        assert!((g - e).abs() <= 1e-9, "{k}: got {g}, expected {e}");
    }
    assert!(
        v["roc_auc"].is_null() && v["average_precision"].is_null(),
        "{v}"
    );
    assert!(v["note"].as_str().unwrap().contains("need scores"), "{v}");
    let text = ok(&args);
    assert!(
        text.contains("need scores") && text.contains("F1 0.6929"),
        "{text}"
    );
    // Without decisions the score column is still required; a sweep needs scores.
    let e = fails(&["metrics", "--predictions", s(&p)]);
    assert!(e.contains("y_proba"), "{e}");
    let e = fails(&[&args[..], &["--sweep", "5"]].concat());
    assert!(e.contains("sweep needs scores"), "{e}");
}

#[test]
fn metrics_sweep_and_bad_prediction_files() {
    let env = Env::new();
    let p = env.path("pred.csv");
    std::fs::write(&p, "y,s\n0,-2.5\n1,3\n0,-1\n1,0.25\n").unwrap();
    let v = json(&[
        "metrics",
        "--predictions",
        s(&p),
        "--label-col",
        "y",
        "--score-col",
        "s",
        "--threshold",
        "0",
        "--sweep",
        "4",
        "--json",
    ]);
    assert_eq!(v["roc_auc"], 1.0);
    assert_eq!(v["tp"], 2);
    assert_eq!(v["sweep"].as_array().unwrap().len(), 5);

    let e = fails(&["metrics", "--predictions", s(&p), "--label-col", "nope"]);
    assert!(e.contains("nope") && e.contains("pred.csv"), "{e}");
    std::fs::write(&p, "y_test,y_proba\n0,0.2\n1,abc\n").unwrap();
    let e = fails(&["metrics", "--predictions", s(&p)]);
    assert!(e.contains("line 3") && e.contains("y_proba"), "{e}");
    std::fs::write(&p, "y_test,y_proba\n1,0.2\n1,0.3\n").unwrap();
    let e = fails(&["metrics", "--predictions", s(&p)]);
    assert!(e.contains("both classes"), "{e}");
    std::fs::write(&p, "").unwrap();
    let e = fails(&["metrics", "--predictions", s(&p)]);
    assert!(e.contains("empty"), "{e}");
}

/// Real exports have string ids: UUIDs, handles, ids with leading zeros and ids that a
/// spreadsheet would run as formulas. They train, score and report as text, verbatim,
/// except that formula-like ids are written with a leading `'` (OWASP) in every CSV.
#[test]
fn string_user_ids_are_kept_as_text_and_formulas_are_neutralised() {
    let env = Env::new();
    let data = env.data(600);
    let reg = env.registry();
    let text = std::fs::read_to_string(&data).unwrap();
    let special = [
        ("00123", "00123"),
        ("@handle", "'@handle"),
        (
            "\"=HYPERLINK(\"\"http://x\"\")\"",
            "\"'=HYPERLINK(\"\"http://x\"\")\"",
        ),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("+1", "'+1"),
        ("\"a,b\"", "\"a,b\""),
    ];
    let mut uuids = Vec::new();
    let body: String = text
        .lines()
        .enumerate()
        .map(|(k, l)| {
            if k == 0 {
                return format!("{l}\n");
            }
            let (label, rest) = l.split_once(',').unwrap();
            let (_, features) = rest.split_once(',').unwrap();
            let id = match special.get(k - 1) {
                Some((raw, _)) => raw.to_string(),
                None => {
                    let u = format!("{:08x}-e29b-41d4-a716-{:012x}", k * 7919, k);
                    uuids.push(u.clone());
                    u
                }
            };
            format!("{label},{id},{features}\n")
        })
        .collect();
    let p = env.path("strings.csv");
    std::fs::write(&p, body).unwrap();
    env.train(&p, &["--trees", "10"]);

    let check = |csv: &str| {
        let firsts: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| {
                if let Some(rest) = l.strip_prefix('"') {
                    &l[..rest.find("\",").unwrap() + 2]
                } else {
                    l.split(',').next().unwrap()
                }
            })
            .collect();
        assert_eq!(firsts.len(), 600);
        for (_, written) in special {
            assert!(firsts.contains(&written), "{written} in {firsts:?}");
        }
        for u in &uuids {
            assert!(firsts.contains(&u.as_str()), "{u}");
        }
        for f in &firsts {
            assert!(!f.starts_with(['=', '+', '-', '@']), "{f}");
            assert_ne!(*f, "123");
        }
    };
    let out = env.path("scores.csv");
    ok(&[
        "score",
        "--data",
        s(&p),
        "--out",
        s(&out),
        "--registry",
        &reg,
        "--explain",
        "3",
    ]);
    let scored = std::fs::read_to_string(&out).unwrap();
    check(&scored);
    // Contributions are numbers: negative ones are not prefixed.
    assert!(scored.contains(",-0."), "some negative contribution");
    assert!(!scored.contains(",'-0."));

    let report = env.path("report");
    ok(&[
        "report",
        "--out",
        s(&report),
        "--registry",
        &reg,
        "--data",
        s(&p),
    ]);
    check(&std::fs::read_to_string(report.join("scored_queue.csv")).unwrap());

    // A blank, an over-long and a duplicate id are one-line errors naming line and column.
    let lines: Vec<String> = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let with_id = |name: &str, line: usize, id: &str| {
        let mut bad = lines.clone();
        let (label, rest) = bad[line - 1].split_once(',').unwrap();
        let (_, features) = rest.split_once(',').unwrap();
        bad[line - 1] = format!("{label},{id},{features}");
        let f = env.path(name);
        std::fs::write(&f, bad.join("\n") + "\n").unwrap();
        f
    };
    let f = with_id("blank.csv", 20, "   ");
    let e = fails(&["train", "--data", s(&f), "--registry", &reg]);
    assert!(
        e.contains("blank.csv: line 20, column user_id: user id is empty"),
        "{e}"
    );
    let f = with_id("long.csv", 30, &"z".repeat(300));
    let e = fails(&["train", "--data", s(&f), "--registry", &reg]);
    assert!(
        e.contains("long.csv: line 30, column user_id") && e.contains("at most 256"),
        "{e}"
    );
    assert!(e.len() < 300, "{e}");
    let f = with_id("dup.csv", 40, " 00123 ");
    let e = fails(&["train", "--data", s(&f), "--registry", &reg]);
    assert!(
        e.contains("dup.csv: line 40, column user_id")
            && e.contains("\"00123\" also appears on line 2"),
        "{e}"
    );
}

#[test]
fn bad_data_files_give_one_line_errors_naming_file_line_and_column() {
    let env = Env::new();
    let data = env.data(400);
    let reg = env.registry();
    let text = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let write = |name: &str, body: String| {
        let p = env.path(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    // Text in a numeric column, on line 4, column X5.
    let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut cells: Vec<&str> = lines[3].split(',').collect();
    cells[6] = "lots";
    bad[3] = cells.join(",");
    let p = write("text.csv", bad.join("\n") + "\n");
    let e = fails(&["train", "--data", s(&p), "--registry", &reg]);
    assert!(
        e.contains("text.csv") && e.contains("line 4") && e.contains("X5"),
        "{e}"
    );

    // inf and NaN.
    for (name, value) in [("inf.csv", "inf"), ("nan.csv", "NaN")] {
        let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let mut cells: Vec<&str> = lines[2].split(',').collect();
        cells[10] = value;
        bad[2] = cells.join(",");
        let p = write(name, bad.join("\n") + "\n");
        let e = fails(&["train", "--data", s(&p), "--registry", &reg]);
        assert!(
            e.contains(name) && e.contains("line 3") && e.contains("X9"),
            "{e}"
        );
    }

    // Missing column, empty file, header only, label not 0/1, truncated last line.
    let p = write("cols.csv", text.replacen(",X7,", ",X7b,", 1));
    let e = fails(&["train", "--data", s(&p), "--registry", &reg]);
    assert!(e.contains("missing column(s) X7"), "{e}");
    let p = write("empty.csv", String::new());
    assert!(fails(&["train", "--data", s(&p), "--registry", &reg]).contains("empty"));
    let p = write("header.csv", format!("{}\n", lines[0]));
    assert!(fails(&["train", "--data", s(&p), "--registry", &reg]).contains("no data rows"));
    let p = write("label.csv", text.replacen("\n0,", "\n7,", 1));
    let e = fails(&["train", "--data", s(&p), "--registry", &reg]);
    assert!(e.contains("line 2") && e.contains("label"), "{e}");
    let cut = &text[..text.len() - 20];
    let p = write("cut.csv", cut.to_string());
    let e = fails(&["train", "--data", s(&p), "--registry", &reg]);
    assert!(e.contains("cut.csv") && e.contains("fields"), "{e}");

    // A training set with one class.
    let one: String = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.starts_with("0,"))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let p = write("one.csv", one);
    let e = fails(&["train", "--data", s(&p), "--registry", &reg]);
    assert!(
        e.contains("one.csv") && e.contains("every label is 0"),
        "{e}"
    );

    // A missing file.
    let e = fails(&["train", "--data", "/nonexistent/x.csv", "--registry", &reg]);
    assert!(e.contains("/nonexistent/x.csv"), "{e}");
    // Nothing was registered by any failure.
    let v = json(&["versions", "--registry", &reg, "--json"]);
    assert_eq!(v["versions"].as_array().unwrap().len(), 0);
}

#[test]
fn damaged_registry_files_are_reported_not_loaded() {
    let env = Env::new();
    let data = env.data(1500);
    let reg = env.registry();
    env.train(&data, &["--trees", "5"]);
    let model = Path::new(&reg).join("versions/v0001/model.bin");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() - 100]).unwrap();
    let e = fails(&["eval", "--data", s(&data), "--registry", &reg]);
    assert!(e.contains("checksum") && e.contains("model.bin"), "{e}");
    let out = env.path("o.csv");
    let e = fails(&[
        "score",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--registry",
        &reg,
    ]);
    assert!(e.contains("checksum"), "{e}");
    assert!(!out.exists(), "no partial output");
    // An empty registry says what to do.
    let e = fails(&[
        "eval",
        "--data",
        s(&data),
        "--registry",
        s(&env.path("fresh")),
    ]);
    assert!(e.contains("no model version yet"), "{e}");
    let e = fails(&[
        "eval",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--version",
        "9",
    ]);
    assert!(e.contains("version 9"), "{e}");
}

/// A damaged active version: every command that needs the model says so, names the
/// newest earlier version that loads and the command that rolls back to it; that
/// command works, and the commands work again.
#[test]
fn a_damaged_active_version_names_the_way_back() {
    let env = Env::new();
    let data = env.data(1500);
    let reg = env.registry();
    for _ in 0..2 {
        env.train(&data, &["--trees", "5"]);
    }
    let model = Path::new(&reg).join("versions/v0002/model.bin");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() - 100]).unwrap();
    let out = env.path("o.csv");
    let report = env.path("report");
    let commands: [Vec<&str>; 4] = [
        vec!["eval", "--data", s(&data)],
        vec!["score", "--data", s(&data), "--out", s(&out)],
        vec!["retrain"],
        vec!["report", "--out", s(&report), "--data", s(&data)],
    ];
    for c in &commands {
        let mut args = c.clone();
        args.extend(["--registry", &reg]);
        let e = fails(&args);
        assert!(
            e.contains("active version v2 is damaged")
                && e.contains("model.bin")
                && e.contains("`spamscope rollback --to 1`"),
            "{c:?}: {e}"
        );
    }
    json(&["rollback", "--to", "1", "--registry", &reg, "--json"]);
    ok(&["eval", "--data", s(&data), "--registry", &reg]);
}

/// Another process holds the registry's lock: a writer says it is waiting after a
/// second and gives up after the limit with a clear error; then it works.
#[test]
fn waiting_for_the_registry_lock_is_announced_and_bounded() {
    let env = Env::new();
    let data = env.data(1500);
    let reg = env.registry();
    env.train(&data, &["--trees", "5"]);
    let lock = std::fs::File::options()
        .write(true)
        .open(Path::new(&reg).join("registry.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(["rollback", "--to", "1", "--registry", &reg])
        .env("SPAMSCOPE_LOCK_TIMEOUT", "2.5")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("waiting for another spamscope process")
            && lines[0].contains("registry.lock"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("error:")
            && lines[1].contains("gave up")
            && lines[1].contains("SPAMSCOPE_LOCK_TIMEOUT"),
        "{err}"
    );
    drop(lock);
    ok(&["rollback", "--to", "1", "--registry", &reg]);
}

#[test]
fn a_manifest_cannot_point_outside_the_registry() {
    let env = Env::new();
    let data = env.data(1500);
    let reg = env.registry();
    env.train(&data, &["--trees", "5"]);
    let version = Path::new(&reg).join("versions/v0001");
    // The same bytes outside the registry, so the checksum in the manifest matches.
    let outside = env.path("outside.bin");
    std::fs::copy(version.join("model.bin"), &outside).unwrap();
    let manifest = version.join("manifest.ron");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"model.bin\""), "{text}");
    let hostile = text.replace("\"model.bin\"", "\"../../../outside.bin\"");
    std::fs::write(&manifest, hostile).unwrap();
    let out = env.path("o.csv");
    let report = env.path("report");
    for args in [
        vec!["eval", "--data", s(&data), "--registry", &reg],
        vec![
            "score",
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--registry",
            &reg,
        ],
        vec![
            "report",
            "--out",
            s(&report),
            "--data",
            s(&data),
            "--registry",
            &reg,
        ],
    ] {
        let e = fails(&args);
        assert!(
            e.contains("manifest.ron") && e.contains("refusing"),
            "{}: {e}",
            args[0]
        );
    }
    assert!(!out.exists() && !report.exists(), "nothing written");
}

#[test]
fn usage_errors_are_one_line() {
    let e = fails(&["train", "--data", "x.csv", "--bogus"]);
    assert!(e.contains("--bogus"), "{e}");
    let e = fails(&["train", "--data", "x.csv", "--trees", "0"]);
    assert!(e.contains("trees"), "{e}");
    let e = fails(&["train", "--data", "x.csv", "--class-weight", "heavy"]);
    assert!(e.contains("heavy"), "{e}");
    let e = fails(&["gen-data"]);
    assert!(e.contains("--out"), "{e}");
    assert!(ok(&["--help"]).contains("gen-data"));
}

#[test]
fn gen_data_writes_the_requested_size() {
    let env = Env::new();
    let p = env.path("g.csv");
    ok(&["gen-data", "--out", s(&p), "--rows", "5000"]);
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(text.lines().count(), 5001);
    assert!(text.starts_with("label,user_id,X1,X2,"));
    // The same seed gives the same prefix of the default dataset's user ids.
    assert!(text.lines().nth(1).unwrap().split(',').nth(1) == Some("10000000"));
    let e = fails(&["gen-data", "--out", "/nonexistent/dir/g.csv"]);
    assert!(e.contains("/nonexistent/dir"), "{e}");
}

/// The bench without Python: our figures, and every peer reported as missing with its
/// reason instead of an error. (The peers themselves need the bench venv: not run here.)
#[test]
fn bench_reports_peers_it_cannot_run_as_missing() {
    let env = Env::new();
    let data = env.data(3000);
    let no_python = env.path("no-python");
    let common = ["bench", "--data", s(&data), "--trees", "3", "--json"];
    let r = json(&[&common[..], &["--python", s(&no_python)]].concat());
    assert_eq!(r["rows"], 3000);
    assert!(r["ours"]["fit_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        r["ours"]["treeshap_bulk_accounts_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // The floor under exact TreeSHAP: the nodes it visits, walked without arithmetic.
    assert!(r["ours"]["treeshap_traversal_nodes"].as_u64().unwrap() > 0);
    assert!(r["ours"]["treeshap_traversal_ms"].as_f64().unwrap() > 0.0);
    let q = r["ours"]["queue_over_plain"].as_f64().unwrap();
    assert!(q > 0.0 && q.is_finite(), "{q}");
    for peer in ["sklearn", "xgboost", "ydf"] {
        let why = r["peers"][peer]["missing"].as_str().unwrap();
        assert!(
            why.starts_with("cannot run ") && why.contains("no-python"),
            "{why}"
        );
        assert!(r["ratios_ours_over"][peer]["fit_seconds"].is_null());
    }
    let why = r["shap"]["missing"].as_str().unwrap();
    assert!(why.starts_with("needs the scikit-learn forest"), "{why}");
    // --no-sklearn is still accepted, as --no-peers.
    for flag in ["--no-peers", "--no-sklearn"] {
        let r = json(&[&common[..], &[flag]].concat());
        assert_eq!(r["peers"]["ydf"]["missing"], "not run (--no-peers)");
    }
}

#[test]
fn feedback_import_and_stats() {
    let env = Env::new();
    let data = env.data(800);
    let reg = env.registry();
    // Without a model: records carry no verdict.
    let v = json(&[
        "feedback",
        "import",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--batch",
        "300",
        "--json",
    ]);
    assert_eq!(v["imported"], 800);
    let st = json(&["feedback", "stats", "--registry", &reg, "--json"]);
    assert_eq!(st["total"], 800);
    assert!(st["agreement"].is_null());
    // With an active model: agreement per version.
    env.train(&data, &["--trees", "10"]);
    json(&[
        "feedback",
        "import",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--json",
    ]);
    let st = json(&["feedback", "stats", "--registry", &reg, "--json"]);
    assert_eq!(st["total"], 1600);
    let v1 = &st["by_version"]["1"];
    assert_eq!(v1["total"], 800);
    let agreement = st["agreement"].as_f64().unwrap();
    assert!(agreement > 0.9 && agreement <= 1.0, "{agreement}");
    assert_eq!(st["by_version"]["none"]["total"], 800);
    // A file without labels cannot be feedback.
    let nolabel = env.path("nl.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    let body: String = text
        .lines()
        .map(|l| l.split_once(',').unwrap().1.to_string() + "\n")
        .collect();
    std::fs::write(&nolabel, body).unwrap();
    let e = fails(&[
        "feedback",
        "import",
        "--data",
        s(&nolabel),
        "--registry",
        &reg,
    ]);
    assert!(e.contains("no label column"), "{e}");
}

#[cfg(unix)]
#[test]
fn killing_a_feedback_import_loses_no_committed_record() {
    use spamscope::store::feedback::FeedbackStore;
    use std::time::{Duration, Instant};
    const BATCH: usize = 10;
    let env = Env::new();
    let reg = env.registry();
    spamscope::store::Registry::open(&reg).unwrap();
    let db = Path::new(&reg).join("feedback.sqlite");
    // The test's own reader of the store, made before the import starts (WAL: reading
    // never blocks the import).
    let watch = FeedbackStore::open_in(Path::new(&reg)).unwrap();
    let mut rows = 20_000;
    // The import is frozen (SIGSTOP) once a few batches are committed, and killed only if
    // it is then provably mid-import: some batches committed, not all. Should it have
    // finished first (a very fast disk), the same is done with a bigger file.
    let (data, before, frozen) = loop {
        let data = env.data(rows);
        let before = watch.count().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spamscope"))
            .args([
                "feedback",
                "import",
                "--data",
                s(&data),
                "--registry",
                &reg,
                "--batch",
                &BATCH.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        // A few batches in, so the kill lands well inside the import; the mark lies
        // between two batch boundaries, which whole batches jump over (records
        // committed one by one would stop right after it).
        while watch.count().unwrap() < before + (5 * BATCH + BATCH / 2) as u64 {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                let mut stderr = child.stderr.take().unwrap();
                std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
                panic!("the import exited ({status}) before committing 6 batches: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "6 batches not committed within 120 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: kill(2) on our own child's pid, which has not been waited for.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        // Stopped for certain (state T, or Z had it finished) before counting.
        let stat = format!("/proc/{pid}/stat");
        let state = loop {
            let text = std::fs::read_to_string(&stat).unwrap();
            let state = text.rsplit_once(") ").unwrap().1.chars().next().unwrap();
            if state == 'T' || state == 'Z' {
                break state;
            }
            assert!(Instant::now() < deadline, "the import did not stop: {text}");
            std::thread::sleep(Duration::from_millis(1));
        };
        let frozen = (watch.count().unwrap() - before) as usize;
        child.kill().unwrap();
        child.wait().unwrap();
        if state == 'T' && frozen < rows {
            break (data, before as usize, frozen);
        }
        // It finished before it could be stopped: again, with a bigger file.
        rows *= 4;
        assert!(
            rows <= 320_000,
            "the import always finished before it was stopped"
        );
    };
    assert!(frozen > 0 && frozen < rows, "{frozen} of {rows}");

    // The store opens and holds exactly what was committed when the import was frozen:
    // whole batches, nothing of the batch it was writing, no committed record lost.
    let store = FeedbackStore::open(&db).unwrap();
    let records = store.records(false).unwrap();
    assert_eq!(
        records.len(),
        before + frozen,
        "committed records lost or half a batch kept"
    );
    assert!(
        frozen.is_multiple_of(BATCH),
        "{frozen}: a batch was half-written"
    );
    // They are the file's first rows, in order, each complete.
    let text = std::fs::read_to_string(&data).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let label_col = header.iter().position(|c| *c == "label").unwrap();
    let user_col = header.iter().position(|c| *c == "user_id").unwrap();
    for (r, line) in records[before..].iter().zip(text.lines().skip(1)) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(r.record.user_id.as_deref(), Some(cells[user_col]), "{line}");
        assert_eq!(r.record.true_label.to_string(), cells[label_col], "{line}");
        assert_eq!(r.record.features.len(), 51);
    }
    drop(store);
    // The store takes a new import (no lock or half transaction left behind).
    let small = env.data(100);
    let v = json(&[
        "feedback",
        "import",
        "--data",
        s(&small),
        "--registry",
        &reg,
        "--json",
    ]);
    assert_eq!(v["imported"], 100);
    assert_eq!(v["total"].as_u64().unwrap() as usize, before + frozen + 100);
}

/// PNG width and height from the IHDR chunk (and that the file is a PNG at all).
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", p.display());
    assert_eq!(&b[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn compare_every_model_promote_one_and_export_a_report() {
    let env = Env::new();
    let data = env.data(3000);
    let reg = env.registry();
    let out = json(&["compare", "--data", s(&data), "--registry", &reg, "--json"]);
    let models = out["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    // LightGBM is native with the `lightgbm` feature, XGBoost and the hard vote and
    // stacking built on it with `xgboost` (the tests run with both); peers without.
    let lightgbm = cfg!(feature = "lightgbm");
    let xgboost = cfg!(feature = "xgboost");
    assert_eq!(
        names.len(),
        18 + usize::from(lightgbm) + 3 * usize::from(xgboost),
        "every native candidate trains: {names:?}, failed {}",
        out["failed"]
    );
    // The reference's rows spamscope cannot fit are never silently missing: without a
    // Python environment each says why it did not run.
    let failed = out["failed"].as_array().unwrap();
    let peers: Vec<&str> = failed.iter().map(|f| f[0].as_str().unwrap()).collect();
    let mut expected = vec![
        "Voting (hard)",
        "Stacking",
        "XGBoost",
        "LightGBM",
        "CatBoost",
    ];
    if lightgbm {
        expected.retain(|p| *p != "LightGBM");
    }
    if xgboost {
        expected.retain(|p| !["Voting (hard)", "Stacking", "XGBoost"].contains(p));
    }
    assert_eq!(peers, expected);
    for f in failed {
        let why = f[1].as_str().unwrap();
        assert!(
            why.starts_with("not run in Python: no Python environment") && !why.contains(NO_VENV),
            "{why}"
        );
    }
    for m in models {
        for k in [
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "average_precision",
        ] {
            let v = m[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{} {k} {v}", m["name"]);
        }
        assert!(m["fit_seconds"].as_f64().unwrap() >= 0.0);
    }
    let get = |name: &str, k: &str| {
        models.iter().find(|m| m["name"] == name).unwrap()[k]
            .as_f64()
            .unwrap()
    };
    // Real learning, not constants: the reference forest and the linear model rank
    // spammers far above chance; a single tree is worse than the forest.
    assert!(get("forest 300 trees", "roc_auc") > 0.85);
    assert!(get("logistic regression", "roc_auc") > 0.8);
    assert!(get("Ridge classifier", "roc_auc") > 0.8);
    assert!(get("Bagging (10 forests of 100)", "roc_auc") > 0.85);
    assert!(get("SGD classifier", "roc_auc") > 0.8);
    assert!(get("AdaBoost", "roc_auc") > 0.8);
    assert!(get("Voting (soft)", "roc_auc") > 0.85);
    assert!(get("Neural network (MLP 100-50)", "roc_auc") > 0.8);
    if lightgbm {
        assert!(get("LightGBM", "roc_auc") > 0.85);
    }
    if xgboost {
        assert!(get("XGBoost", "roc_auc") > 0.85);
        assert!(get("Stacking", "roc_auc") > 0.85);
        // The hard vote's scores are 0, 1/3, 2/3 and 1: a coarse ranking.
        assert!(get("Voting (hard)", "roc_auc") > 0.7);
    }
    assert!(get("decision tree", "roc_auc") < get("forest 300 trees", "roc_auc"));
    // The marks point at the maxima.
    let argmax = |k: &str| {
        models
            .iter()
            .max_by(|a, b| a[k].as_f64().unwrap().total_cmp(&b[k].as_f64().unwrap()))
            .unwrap()["roc_auc"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        get(out["best_auc"].as_str().unwrap(), "roc_auc"),
        argmax("roc_auc")
    );
    let best_f1 = out["best_f1"].as_str().unwrap();
    let max_f1 = models
        .iter()
        .map(|m| m["f1"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(get(best_f1, "f1"), max_f1);

    // Unknown names are refused before any training.
    let err = fails(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--only",
        "random forest 7",
    ]);
    assert!(
        err.contains("no model named") && err.contains("decision tree"),
        "{err}"
    );
    // A peer row cannot be promoted: refused before any training.
    let err = fails(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--only",
        "catboost",
        "--promote",
        "CatBoost",
    ]);
    assert!(
        err.contains("cannot promote \"CatBoost\": it is a peer row"),
        "{err}"
    );

    // Promote logistic regression: same split, so the version's holdout metrics are the
    // comparison's; it scores, explains (exact log-odds terms) and evaluates.
    let lr_auc = get("logistic regression", "roc_auc");
    let p = json(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--only",
        "logistic regression",
        "--promote",
        "logistic regression",
        "--json",
    ]);
    assert_eq!(p["promoted_version"], 1);
    let v = json(&["versions", "--registry", &reg, "--json"]);
    let v1 = &v["versions"][0];
    assert_eq!(v1["active"], true);
    assert_eq!(v1["model_kind"], "logistic regression");
    assert_eq!(v1["metrics"]["roc_auc"].as_f64().unwrap(), lr_auc);
    // The active version scores every account with its three largest reasons: the
    // scored file's first account.
    let first_scored = || {
        let scored = env.path("scored.csv");
        ok(&[
            "score",
            "--data",
            s(&data),
            "--out",
            s(&scored),
            "--registry",
            &reg,
            "--explain",
            "3",
        ]);
        let text = std::fs::read_to_string(&scored).unwrap();
        assert_eq!(text.lines().count(), 3001);
        text.lines().nth(1).unwrap().to_string()
    };
    let line = first_scored();
    assert!(line.contains(",log_odds,"), "{line}");
    // An ensemble promotes as one version of its models and explains through them: a
    // soft vote by their mean, stacking (the `xgboost` feature) weighted by its
    // regression.
    let promote_and_score = |name: &str, version: u32, method: &str| {
        let p = json(&[
            "compare",
            "--data",
            s(&data),
            "--registry",
            &reg,
            "--only",
            name,
            "--promote",
            name,
            "--json",
        ]);
        assert_eq!(p["promoted_version"], version, "{name}");
        let line = first_scored();
        assert!(line.contains(&format!(",{method},")), "{name}: {line:.300}");
    };
    promote_and_score("Voting (soft)", 2, "members");
    if xgboost {
        promote_and_score("Stacking", 3, "stacked");
    }
    ok(&["rollback", "--registry", &reg, "--to", "1"]);

    // The report: model card with the comparison table and history, six charts, and
    // every account ranked by probability.
    let report = env.path("report");
    ok(&[
        "report",
        "--out",
        s(&report),
        "--registry",
        &reg,
        "--data",
        s(&data),
    ]);
    let card = std::fs::read_to_string(report.join("model_card.md")).unwrap();
    for needle in [
        "# spamscope model card: version 1",
        "logistic regression",
        "## Model comparison",
        "| **",
        "## Version history",
        "No moderator feedback recorded yet.",
        "charts/roc_pr.png",
    ] {
        assert!(
            card.contains(needle),
            "model card lacks {needle:?}:\n{card}"
        );
    }
    for chart in [
        "class_balance",
        "importance",
        "correlation",
        "roc_pr",
        "confusion",
        "comparison_roc",
    ] {
        let (w, h) = png_size(&report.join("charts").join(format!("{chart}.png")));
        assert!(w >= 600 && h >= 400, "{chart}: {w}x{h}");
    }
    let queue = std::fs::read_to_string(report.join("scored_queue.csv")).unwrap();
    let probs: Vec<f64> = queue
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(probs.len(), 3000);
    assert!(
        probs.windows(2).all(|w| w[0] >= w[1]),
        "ranked by probability"
    );

    // A report into a path that is a file is a one-line error.
    let file = env.path("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = fails(&[
        "report",
        "--out",
        s(&file),
        "--registry",
        &reg,
        "--data",
        s(&data),
    ]);
    assert!(err.contains("not-a-dir"), "{err}");
}

#[test]
fn token_add_list_revoke() {
    let env = Env::new();
    let reg = env.registry();
    let a = json(&[
        "token",
        "add",
        "--name",
        "ci-bot",
        "--role",
        "scorer",
        "--registry",
        &reg,
        "--json",
    ]);
    assert_eq!(a["name"], "ci-bot");
    assert_eq!(a["role"], "scorer");
    assert!(a["created_at"].is_string());
    let secret_a = a["token"].as_str().unwrap().to_string();
    assert!(
        secret_a.starts_with("ssk_") && secret_a.len() == 68,
        "{secret_a}"
    );
    // Plain output: the secret alone on stdout, the warning on stderr.
    let out = spamscope(&[
        "token",
        "add",
        "--name",
        "alice@ops",
        "--role",
        "ADMIN",
        "--registry",
        &reg,
    ]);
    assert!(out.status.success());
    let secret_b = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        secret_b.starts_with("ssk_") && secret_b.len() == 68,
        "{secret_b}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("only time"), "{stderr}");

    let list = json(&["token", "list", "--registry", &reg, "--json"]);
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["name"], "ci-bot");
    assert_eq!(tokens[1]["name"], "alice@ops");
    assert_eq!(tokens[1]["role"], "admin");
    let text = ok(&["token", "list", "--registry", &reg]);
    assert!(
        text.contains("ci-bot") && text.contains("alice@ops"),
        "{text}"
    );
    for listing in [list.to_string(), text] {
        assert!(!listing.contains(&secret_a[4..]) && !listing.contains(&secret_b[4..]));
        assert!(!listing.contains("sha256"), "{listing}");
    }

    let err = fails(&[
        "token",
        "add",
        "--name",
        "ci-bot",
        "--role",
        "admin",
        "--registry",
        &reg,
    ]);
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&[
        "token",
        "add",
        "--name",
        "x",
        "--role",
        "root",
        "--registry",
        &reg,
    ]);
    assert!(err.contains("unknown role"), "{err}");
    let err = fails(&[
        "token",
        "add",
        "--name",
        "no spaces",
        "--role",
        "admin",
        "--registry",
        &reg,
    ]);
    assert!(err.contains("not allowed"), "{err}");

    let file = Path::new(&reg).join("tokens.ron");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(!stored.contains(&secret_a[4..]) && !stored.contains(&secret_b[4..]));

    ok(&["token", "revoke", "ci-bot", "--registry", &reg]);
    let list = json(&["token", "list", "--registry", &reg, "--json"]);
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(list["tokens"][0]["name"], "alice@ops");
    let err = fails(&["token", "revoke", "ci-bot", "--registry", &reg]);
    assert!(
        err.contains("no token named") && err.contains("tokens.ron"),
        "{err}"
    );
}

/// `spamscope label confirm` and `label import`: one account's final label, replaced by
/// a second confirmation; a file of them in one transaction (a bad line stores none).
#[test]
fn labels_are_confirmed_one_at_a_time_and_from_a_file() {
    let env = Env::new();
    let reg = env.registry();
    let confirm = |label: &str| {
        json(&[
            "label",
            "confirm",
            "--user-id",
            " 00123 ",
            "--label",
            label,
            "--by",
            "lead",
            "--registry",
            &reg,
            "--json",
        ])
    };
    let v = confirm("spam");
    assert_eq!(
        (
            &v["user_id"],
            &v["label"],
            &v["confirmed_by"],
            &v["replaced"]
        ),
        (
            &Value::from("00123"),
            &Value::from(1),
            &Value::from("lead"),
            &Value::Null
        )
    );
    let v = confirm("legit");
    assert_eq!(
        (&v["label"], &v["replaced"]["label"]),
        (&Value::from(0), &Value::from(1))
    );
    let file = env.path("labels.csv");
    std::fs::write(
        &file,
        "user_id,label\n00123,spam\n\"a,\"\"b\"\"\",0\nu-9,legit\n",
    )
    .unwrap();
    let v = json(&["label", "import", s(&file), "--registry", &reg, "--json"]);
    assert_eq!(v["confirmed"], 3);
    let store = spamscope::store::feedback::FeedbackStore::open_in(Path::new(&reg)).unwrap();
    assert_eq!(store.confirmed_label("00123").unwrap().unwrap().label, 1);
    assert_eq!(store.confirmed_label("a,\"b\"").unwrap().unwrap().label, 0);
    // Bad input: one line naming what was wrong; nothing of a bad file is stored.
    let e = fails(&[
        "label",
        "confirm",
        "--user-id",
        "x",
        "--label",
        "maybe",
        "--registry",
        &reg,
    ]);
    assert!(e.contains("--label"), "{e}");
    std::fs::write(&file, "fresh,spam\nu-2,maybe\n").unwrap();
    let e = fails(&["label", "import", s(&file), "--registry", &reg]);
    assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
    assert_eq!(store.confirmed_label("fresh").unwrap(), None);
    let e = fails(&[
        "label",
        "confirm",
        "--user-id",
        "  ",
        "--label",
        "spam",
        "--registry",
        &reg,
    ]);
    assert!(e.contains("user_id"), "{e}");
}

/// A webhook URL that is not http(s) stops `serve` before it trains or listens.
#[test]
fn serve_refuses_a_bad_webhook_url_at_once() {
    let env = Env::new();
    let reg = env.registry();
    let err = fails(&[
        "serve",
        "--registry",
        &reg,
        "--addr",
        "127.0.0.1:0",
        "--webhook",
        "ftp://alerts.example.com/hook",
    ]);
    assert!(
        err.contains("--webhook") && err.contains("http://") && err.contains("ftp://alerts"),
        "{err}"
    );
    // Nothing was trained.
    assert!(!Path::new(&reg).join("ACTIVE").exists());
}

/// `compare --folds K`: every model's metrics over the same K stratified folds, as mean,
/// standard deviation and each fold's value; nothing registered; bad K in one line.
#[test]
fn compare_cross_validates_over_stratified_folds() {
    let env = Env::new();
    let data = env.data(3000);
    let reg = env.registry();
    let out = json(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--folds",
        "3",
        "--only",
        "decision tree,logistic regression",
        "--json",
    ]);
    assert_eq!(out["folds"], 3);
    let sizes: Vec<u64> = out["fold_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 3000);
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    let rows = out["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        for k in [
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "average_precision",
        ] {
            let folds: Vec<f64> = r[k]["folds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(folds.len(), 3, "{k}");
            let mean = folds.iter().sum::<f64>() / 3.0;
            assert!((r[k]["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{k}");
            assert!(
                folds.iter().all(|v| (0.0..=1.0).contains(v)),
                "{k}: {folds:?}"
            );
        }
    }
    assert!(
        rows[1]["roc_auc"]["mean"].as_f64().unwrap() > 0.8,
        "{}",
        rows[1]
    );
    // Cross-validation registers nothing.
    assert!(
        spamscope::store::Registry::open(&reg)
            .unwrap()
            .version_numbers()
            .unwrap()
            .is_empty()
    );
    // `--folds` alone: five.
    let five = json(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--folds",
        "--only",
        "decision tree",
        "--json",
    ]);
    assert_eq!(five["folds"], 5);
    assert_eq!(five["rows"][0]["f1"]["folds"].as_array().unwrap().len(), 5);
    let e = fails(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--folds",
        "1",
    ]);
    assert!(e.contains("at least 2"), "{e}");
    let e = fails(&[
        "compare",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--folds",
        "3",
        "--promote",
        "decision tree",
    ]);
    assert!(e.contains("--promote goes with a single split"), "{e}");
}

/// `threshold`: a version's threshold chosen by a target precision, a review capacity
/// or the costs of errors, on its holdout; the same point the library chooses; saved
/// only when asked; bad settings in one line. `score` writes the calibrated probability
/// beside the raw score that decides.
#[test]
fn thresholds_from_precision_capacity_or_costs() {
    use spamscope::eval::threshold::{Criterion, choose};
    let env = Env::new();
    let data = env.data(6000);
    let reg = env.registry();
    env.train(&data, &["--trees", "30"]);
    let registry = spamscope::store::Registry::open(&reg).unwrap();
    let (manifest, model) = registry.load_active().unwrap();
    let holdout = registry.load_holdout(1).unwrap();
    assert!(
        manifest
            .calibration
            .as_deref()
            .unwrap()
            .starts_with("Platt on 1200 held-out accounts")
    );

    let out = json(&[
        "threshold",
        "--registry",
        &reg,
        "--precision",
        "0.8",
        "--json",
    ]);
    let want = choose(
        &holdout.labels,
        &holdout.scores,
        Criterion::Precision(0.8),
        20_000.0,
    )
    .unwrap();
    assert_eq!(out["chosen"]["threshold"].as_f64().unwrap(), want.threshold);
    assert!(out["chosen"]["precision"].as_f64().unwrap() >= 0.8);
    assert_eq!(
        out["probability_at_threshold"].as_f64().unwrap(),
        model.probability(want.threshold)
    );
    assert_eq!(out["current"]["threshold"], 0.5);
    assert_eq!(out["saved"], false);
    assert_eq!(registry.manifest(1).unwrap().threshold, 0.5, "not saved");

    // Capacity: no more flagged a day than the team reviews.
    let out = json(&[
        "threshold",
        "--registry",
        &reg,
        "--capacity",
        "15",
        "--daily-volume",
        "1000",
        "--json",
    ]);
    let per_day = out["chosen"]["flagged_per_day"].as_f64().unwrap();
    assert!(per_day <= 15.0 && per_day > 5.0, "{out}");

    // Costs, saved: the version decides by it from now on.
    let out = json(&[
        "threshold",
        "--registry",
        &reg,
        "--cost-missed",
        "30",
        "--cost-blocked",
        "1",
        "--save",
        "--json",
    ]);
    let t = out["chosen"]["threshold"].as_f64().unwrap();
    let want = choose(
        &holdout.labels,
        &holdout.scores,
        Criterion::Cost {
            missed: 30.0,
            blocked: 1.0,
        },
        20_000.0,
    )
    .unwrap();
    assert_eq!(t, want.threshold);
    assert!(t < 0.5, "a missed spammer is dear: flag more");
    assert_eq!(registry.manifest(1).unwrap().threshold, t);
    let text = ok(&["threshold", "--registry", &reg, "--precision", "0.7"]);
    assert!(text.contains("calibrated probability of"), "{text}");

    // Bad settings: one line each.
    let e = fails(&["threshold", "--registry", &reg, "--precision", "1.5"]);
    assert!(
        e.contains("target precision must be above 0 and at most 1"),
        "{e}"
    );
    let e = fails(&[
        "threshold",
        "--registry",
        &reg,
        "--capacity",
        "10",
        "--daily-volume",
        "0",
    ]);
    assert!(e.contains("daily volume must be a positive number"), "{e}");
    fails(&["threshold", "--registry", &reg]);
    fails(&["threshold", "--registry", &reg, "--cost-missed", "3"]);

    // The score file: the calibrated probability, and the raw score the verdict uses.
    let scored = env.path("scored.csv");
    ok(&[
        "score",
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--out",
        s(&scored),
    ]);
    let text = std::fs::read_to_string(&scored).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("user_id,probability,is_spammer,model_version,score")
    );
    let d = spamscope::data::Dataset::load_csv(&data).unwrap();
    for (i, line) in lines.take(50).enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        let score = model.predict_one(&d.row(i));
        assert_eq!(cells[4].parse::<f64>().unwrap(), score);
        assert_eq!(cells[1].parse::<f64>().unwrap(), model.probability(score));
        assert_eq!(cells[2], if score > t { "1" } else { "0" });
    }
}

/// `tune`: every trial cross-validated on the same folds and kept in the table, the best
/// by average precision; the same seed gives the same search; `--promote` registers the
/// best trial's recipe; bad settings in one line.
#[test]
fn tune_searches_by_cross_validated_average_precision_and_promotes_the_best() {
    let env = Env::new();
    let data = env.data(3000);
    let reg = env.registry();
    let args = [
        "tune",
        "--data",
        s(&data),
        "--space",
        "both",
        "--trials",
        "4",
        "--folds",
        "3",
        "--seed",
        "9",
        "--json",
    ];
    let out = json(&args);
    let trials = out["tuning"]["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    let ap = |t: &Value| t["cv"]["average_precision"]["mean"].as_f64().unwrap();
    for t in trials {
        assert_eq!(
            t["cv"]["average_precision"]["folds"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(t["cv"]["roc_auc"]["mean"].is_number() && t["cv"]["f1"]["mean"].is_number());
    }
    let best = out["best_trial"].as_u64().unwrap() as usize;
    assert!(trials.iter().all(|t| ap(t) <= ap(&trials[best - 1])));
    assert!(out["promoted_version"].is_null());
    // Reproducible from the seed.
    let again = json(&args);
    let aps = |o: &Value| -> Vec<f64> {
        o["tuning"]["trials"]
            .as_array()
            .unwrap()
            .iter()
            .map(ap)
            .collect()
    };
    assert_eq!(aps(&again), aps(&out));

    // Promoted: the best trial's recipe, registered and active.
    let mut promote = args[..args.len() - 1].to_vec();
    promote.extend(["--promote", "--registry", &reg, "--json"]);
    let out = json(&promote);
    assert_eq!(out["promoted_version"], 1);
    let registry = spamscope::store::Registry::open(&reg).unwrap();
    let m = registry.manifest(1).unwrap();
    assert_eq!(registry.active().unwrap(), Some(1));
    assert_eq!(
        serde_json::to_value(m.recipe()).unwrap(),
        out["tuning"]["trials"][best - 1]["recipe"]
    );

    let e = fails(&["tune", "--data", s(&data), "--space", "svm"]);
    assert!(e.contains("unknown search space \"svm\""), "{e}");
    let e = fails(&["tune", "--data", s(&data), "--trials", "0"]);
    assert!(e.contains("trials must be between 1 and 10000"), "{e}");
}

/// A policy file is checked (errors name the file, rule, line and column) and tested
/// on labelled accounts: per-rule and per-outcome records that agree with the scored
/// file, the accounts the draft decides otherwise than the live policy, the review load.
#[test]
fn policy_validate_and_test_on_history() {
    let env = Env::new();
    let data = env.data(3000);
    let reg = env.registry();
    env.train(&data, &[]);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/policy.ron");
    let v = json(&["policy", "validate", example, "--json"]);
    assert_eq!(v["rules"], 4);
    assert_eq!(
        v["outcomes"],
        serde_json::json!(["allow", "review", "block"])
    );
    let bad = env.path("bad.json");
    std::fs::write(
        &bad,
        r#"{"rules": [{"name": "ok", "when": "probability > 0.5", "outcome": "review"},
                      {"name": "typo", "when": "probability > 0.5 &&\n UrgentMesageCount > 2", "outcome": "block"}]}"#,
    )
    .unwrap();
    let e = fails(&["policy", "validate", s(&bad)]);
    assert!(
        e.contains(
            "bad.json: rule 2 (\"typo\"), line 2, column 2: unknown name \"UrgentMesageCount\""
        ),
        "{e}"
    );
    // The draft against a live policy that blocks from 0.5.
    let live = env.path("live.json");
    std::fs::write(
        &live,
        r#"{"rules": [{"name": "likely", "when": "probability >= 0.5", "outcome": "block"}]}"#,
    )
    .unwrap();
    let t = json(&[
        "policy",
        "test",
        example,
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--live",
        s(&live),
        "--daily-volume",
        "10000",
        "--json",
    ]);
    assert_eq!(t["accounts"], 3000);
    assert_eq!(t["version"], 1);
    // Against the scored file: the first rule hits exactly the accounts whose calibrated
    // probability is at least 0.9.
    let scored = env.path("scored.csv");
    ok(&[
        "score",
        "--data",
        s(&data),
        "--out",
        s(&scored),
        "--registry",
        &reg,
    ]);
    let text = std::fs::read_to_string(&scored).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "probability").unwrap();
    let probs: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    let very = probs.iter().filter(|&&p| p >= 0.9).count();
    let likely = probs.iter().filter(|&&p| p >= 0.5).count();
    assert_eq!(t["rules"][0]["hits"], very);
    assert_eq!(t["rules"][1]["hits"], likely);
    assert!(very > 0 && likely > very, "{very} {likely}");
    let outcomes = t["outcomes"].as_array().unwrap();
    let total: u64 = outcomes
        .iter()
        .map(|o| o["accounts"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3000);
    assert_eq!(outcomes[2]["accounts"], very, "block is the 0.9 rule alone");
    // Live blocks every account from 0.5; the draft sends those below 0.9 to review
    // (and some others through the risk rules).
    let changed = t["changed"].as_array().unwrap();
    let to_review = changed
        .iter()
        .filter(|c| c["live"] == "block" && c["draft"] == "review")
        .count();
    assert_eq!(to_review, likely - very);
    assert_eq!(t["changed_users"].as_array().unwrap().len(), changed.len());
    let review = outcomes[1]["accounts"].as_f64().unwrap();
    assert!((t["daily_review"].as_f64().unwrap() - review / 3000.0 * 10000.0).abs() < 1e-6);
    // The text form says the same.
    let text = ok(&[
        "policy",
        "test",
        example,
        "--data",
        s(&data),
        "--registry",
        &reg,
        "--daily-volume",
        "10000",
    ]);
    assert!(
        text.contains("very likely spam") && text.contains("a day at 10000"),
        "{text}"
    );
}
