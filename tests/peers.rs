//! The reference's rows that spamscope cannot fit itself (CatBoost; XGBoost, LightGBM and
//! the ensembles on XGBoost in a build without their features), run by their own libraries in a real Python
//! environment made by `benches/make_venv.sh` (kept under the target folder between
//! runs), and `bench --table`: each native row beside scikit-learn's version of the same
//! model on the same split.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The test venv, made once per run (make_venv.sh is idempotent: a second run only
/// checks the imports).
fn venv() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("peers-venv");
        let out = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/make_venv.sh"))
            .arg(&dir)
            .args(["sklearn", "xgboost", "lightgbm", "catboost", "imblearn"])
            .output()
            .expect("bash runs");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !said.contains("missing"),
            "make_venv.sh: {said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn data(rows: usize) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.csv");
    let p = path.to_str().unwrap().to_string();
    run(&[
        "gen-data",
        "--rows",
        &rows.to_string(),
        "--seed",
        "3",
        "--out",
        &p,
    ]);
    (dir, p)
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spamscope"))
        .args(args)
        .env_remove("SPAMSCOPE_HOME")
        .env("SPAMSCOPE_BENCH_VENV", venv())
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "spamscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn compare_runs_the_reference_rows_it_cannot_fit_in_python() {
    let (dir, data) = data(3000);
    let reg = dir.path().join("registry");
    let out: Value = serde_json::from_str(&run(&[
        "compare",
        "--data",
        &data,
        "--registry",
        reg.to_str().unwrap(),
        "--only",
        "forest 100 trees,XGBoost,LightGBM,CatBoost,Voting (hard),Stacking",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        out["failed"].as_array().unwrap().len(),
        0,
        "{}",
        out["failed"]
    );
    let models = out["models"].as_array().unwrap();
    assert_eq!(models.len(), 6);
    // Native in a build with the library's feature, peers without.
    let xgboost = (!cfg!(feature = "xgboost")).then_some("xgboost ");
    for (name, library) in [
        ("forest 100 trees", None),
        ("XGBoost", xgboost),
        (
            "LightGBM",
            (!cfg!(feature = "lightgbm")).then_some("lightgbm "),
        ),
        ("CatBoost", Some("catboost ")),
        ("Voting (hard)", xgboost),
        ("Stacking", xgboost),
    ] {
        let m = models.iter().find(|m| m["name"] == name).unwrap();
        match library {
            None => assert!(m.get("peer").is_none(), "{m}"),
            Some(lib) => assert!(
                m["peer"].as_str().unwrap().starts_with(lib),
                "{name}: {}",
                m["peer"]
            ),
        }
        // Each learnt from the same accounts: far above chance on the test part.
        assert!(m["roc_auc"].as_f64().unwrap() > 0.8, "{m}");
        assert!(m["fit_seconds"].as_f64().unwrap() > 0.0, "{m}");
    }
    // Hard voting's score is the share of three votes: 0.5 is the majority.
    let hard = models
        .iter()
        .find(|m| m["name"] == "Voting (hard)")
        .unwrap();
    assert!(hard["recall"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_table_sets_each_model_beside_its_reference_on_the_same_split() {
    let (_dir, data) = data(3000);
    let t: Value = serde_json::from_str(&run(&[
        "bench",
        "--table",
        "--data",
        &data,
        "--only",
        "Ridge classifier,KNN (k = 10),logistic regression,AdaBoost,LightGBM,XGBoost",
        "--json",
    ]))
    .unwrap();
    assert_eq!(t["test_rows"], 600);
    let row = |name: &str| {
        t["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    let auc = |r: &Value, side: &str| r[side]["Ok"]["roc_auc"].as_f64().unwrap();
    // Models with one answer are the same model on the same rows: the ridge's least
    // squares and KNN on all 2,400 training rows (fewer than its 20,000 sample) agree
    // with scikit-learn's to the rounding of the scores, which only holds when the two
    // fitted on the same accounts with the same imputation and scored the same test
    // accounts in the same order.
    for name in ["Ridge classifier", "KNN (k = 10)"] {
        let r = row(name);
        assert!(
            r["library"].as_str().unwrap().starts_with("sklearn "),
            "{r}"
        );
        assert!((auc(&r, "ours") - auc(&r, "reference")).abs() < 1e-9, "{r}");
    }
    // Iterative fits agree closely.
    let r = row("logistic regression");
    assert!((auc(&r, "ours") - auc(&r, "reference")).abs() < 0.01, "{r}");
    let r = row("AdaBoost");
    assert!((auc(&r, "ours") - auc(&r, "reference")).abs() < 0.03, "{r}");
    // LightGBM fitted by the library through its Rust binding (the `lightgbm`
    // feature) and by its Python package, same parameters and rows: the same model up
    // to the two builds' versions.
    let r = row("LightGBM");
    assert!(
        r["library"].as_str().unwrap().starts_with("lightgbm "),
        "{r}"
    );
    if cfg!(feature = "lightgbm") {
        assert!((auc(&r, "ours") - auc(&r, "reference")).abs() < 0.01, "{r}");
    } else {
        assert!(r["ours"].is_null(), "{r}");
    }
    // XGBoost likewise (`xgboost` feature); without it a peer row, the library's
    // figures only.
    let r = row("XGBoost");
    assert!(
        r["library"].as_str().unwrap().starts_with("xgboost "),
        "{r}"
    );
    assert!(auc(&r, "reference") > 0.8);
    if cfg!(feature = "xgboost") {
        assert!((auc(&r, "ours") - auc(&r, "reference")).abs() < 0.01, "{r}");
    } else {
        assert!(r["ours"].is_null(), "{r}");
    }
}

/// A policy's backtest is a brute-force computation in pandas on the same file: each
/// rule's condition in CEL for spamscope and written out in pandas for the check (no
/// negation around a comparison that may meet a missing value, where CEL leaves the
/// condition undecided and pandas says false).
#[test]
fn a_policy_backtest_counts_as_pandas_does() {
    let (dir, data) = data(3000);
    let reg = dir.path().join("registry");
    let reg = reg.to_str().unwrap();
    run(&["train", "--data", &data, "--registry", reg, "--trees", "30"]);
    let scored = dir.path().join("scored.csv");
    run(&[
        "score",
        "--data",
        &data,
        "--out",
        scored.to_str().unwrap(),
        "--registry",
        reg,
    ]);
    // (name, CEL, pandas, outcome)
    let rules = [
        (
            "very likely",
            "probability >= 0.9",
            "probability >= 0.9",
            "block",
        ),
        (
            "likely",
            "probability >= 0.5",
            "probability >= 0.5",
            "review",
        ),
        (
            "urgent",
            "UrgentMessageCount >= 3 && score > 0.2",
            "X19 >= 3 and score > 0.2",
            "review",
        ),
        (
            "risky country links",
            "risk.CountryTier && risk.LinksInMessages",
            "X6 >= 3 and X6 <= 4 and X21 >= 3",
            "hold_payouts",
        ),
        (
            "either",
            "X19 > 4 || X21 > 5",
            "X19 > 4 or X21 > 5",
            "review",
        ),
        (
            "arithmetic",
            "X19 * 0.5 + X21 * 0.3 - X17 * 0.2 > 2.0",
            "X19 * 0.5 + X21 * 0.3 - X17 * 0.2 > 2.0",
            "review",
        ),
        (
            "tiers",
            "X6 in [3, 4] && score > 0.6",
            "(X6 == 3 or X6 == 4) and score > 0.6",
            "block",
        ),
        (
            "ratio",
            "X19 / (X21 + 1.0) > 2.0",
            "X19 / (X21 + 1.0) > 2.0",
            "review",
        ),
    ];
    let outcomes = ["allow", "review", "hold_payouts", "block"];
    let cel = serde_json::json!({
        "outcomes": outcomes,
        "rules": rules.iter().map(|(n, c, _, o)| serde_json::json!({"name": n, "when": c, "outcome": o})).collect::<Vec<_>>(),
    });
    let pandas = serde_json::json!({
        "outcomes": outcomes,
        "rules": rules.iter().map(|(n, _, p, o)| serde_json::json!({"name": n, "pandas": p, "outcome": o})).collect::<Vec<_>>(),
    });
    let cel_file = dir.path().join("policy.json");
    let pandas_file = dir.path().join("pandas.json");
    std::fs::write(&cel_file, cel.to_string()).unwrap();
    std::fs::write(&pandas_file, pandas.to_string()).unwrap();
    let ours: Value = serde_json::from_str(&run(&[
        "policy",
        "test",
        cel_file.to_str().unwrap(),
        "--data",
        &data,
        "--registry",
        reg,
        "--json",
    ]))
    .unwrap();
    let out = Command::new(venv().join("bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/policy_pandas.py"
        ))
        .args([
            &data,
            scored.to_str().unwrap(),
            pandas_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, (name, ..)) in rules.iter().enumerate() {
        for key in ["hits", "spammers_hit", "labelled_hits"] {
            assert_eq!(
                ours["rules"][k][key], theirs["rules"][k][key],
                "{name} {key}"
            );
        }
        assert!(
            ours["rules"][k]["hits"].as_u64().unwrap() > 0,
            "{name} hits nobody"
        );
    }
    for o in 0..outcomes.len() {
        assert_eq!(
            ours["outcomes"][o]["accounts"], theirs["outcomes"][o]["accounts"],
            "{}",
            outcomes[o]
        );
    }
}
