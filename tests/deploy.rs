//! The deployment files in `deploy/`, checked with the tools that read them: the
//! Prometheus rules with Debian's `promtool` (syntax, then their unit tests: each alert
//! fires on the series that should raise it and stays quiet on a healthy service), and
//! the Grafana dashboard parsed as a dashboard. (That they name only metrics the service
//! exports is checked against a real `/metrics` in tests/service.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn promtool() -> Command {
    let bin = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("promtool");
    let mut c = Command::new(bin);
    c.current_dir(deploy().join("prometheus"));
    c
}

fn run(mut c: Command) -> String {
    let out = c
        .output()
        .expect("promtool is installed (scripts/test installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?}:\n{text}");
    text
}

#[test]
fn prometheus_rules_are_valid_and_their_unit_tests_pass() {
    let mut check = promtool();
    check.args(["check", "rules", "rules.yml"]);
    let text = run(check);
    assert!(text.contains("SUCCESS"), "{text}");
    let mut test = promtool();
    test.args(["test", "rules", "rules.test.yml"]);
    let text = run(test);
    assert!(text.contains("SUCCESS"), "{text}");
    // Every alert of the rules has a unit test that expects it to fire.
    let rules = std::fs::read_to_string(deploy().join("prometheus/rules.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy().join("prometheus/rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for a in alerts {
        let firing = tests.split("alertname: ").skip(1).any(|t| {
            t.starts_with(a) && !t[a.len()..].trim_start().starts_with(", exp_alerts: []")
        });
        assert!(firing, "no unit test makes {a} fire");
    }
}

#[test]
fn the_grafana_dashboard_is_a_dashboard_on_a_prometheus_source() {
    let text = std::fs::read_to_string(deploy().join("grafana/spamscope.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["uid"], "spamscope-overview");
    let panels = d["panels"].as_array().unwrap();
    let mut ids = std::collections::HashSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{p}"
        );
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert!(!t["expr"].as_str().unwrap().is_empty());
            assert_eq!(t["datasource"]["type"], "prometheus");
        }
    }
    // What a trust-and-safety team watches is there.
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Requests/s by route and replica",
        "Latency by route (p50, p99)",
        "Share of accounts judged spammers",
        "Score distribution (last hour)",
        "Agreement with moderators by version",
        "PSI of the most drifted features",
    ] {
        assert!(titles.contains(&want), "no panel {want}: {titles:?}");
    }
    let annotations = d["annotations"]["list"].as_array().unwrap();
    assert_eq!(annotations.len(), 3, "promotions, rollbacks, retrains");
}
