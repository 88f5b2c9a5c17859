//! The deployment files in `deploy/`, checked with the tools that read them, and the
//! local topology script run end to end. The
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

/// Runs a tool (installed by scripts/test) and returns what it printed; it must succeed.
fn run(mut c: Command) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e} (scripts/test installs the tools)"));
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
    // No two panels share a cell of the grid.
    let mut cells = std::collections::HashMap::new();
    for p in panels {
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
        for cell in (x..x + w).flat_map(|x| (y..y + h).map(move |y| (x, y))) {
            if let Some(other) = cells.insert(cell, &p["title"]) {
                panic!("{} overlaps {other} at {cell:?}", p["title"]);
            }
        }
    }
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
        "Experiment: agreement between versions",
        "Experiment: accuracy on labelled requests by arm",
        "Review queue: oldest open claim",
        "Review queue: open claims",
    ] {
        assert!(titles.contains(&want), "no panel {want}: {titles:?}");
    }
    let annotations = d["annotations"]["list"].as_array().unwrap();
    assert_eq!(annotations.len(), 3, "promotions, rollbacks, retrains");
}

/// A virtual environment with the validators from PyPI (made once per target folder):
/// check-jsonschema carries the compose specification's schema, kubernetes-validate
/// the Kubernetes API's.
fn validators() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-venv");
    let bin = venv.join("bin");
    if bin.join("kubernetes-validate").exists() && bin.join("check-jsonschema").exists() {
        return bin;
    }
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("python3");
    let out = Command::new(python)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(out.status.success(), "venv: {out:?}");
    let out = Command::new(bin.join("pip"))
        .args([
            "install",
            "-q",
            "check-jsonschema==0.39.0",
            "kubernetes-validate==1.37.0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "pip: {out:?}");
    bin
}

/// The Kubernetes manifests against the Kubernetes 1.30 schemas (strict: no unknown
/// field), the compose file against the compose specification, HAProxy's configuration
/// with haproxy, Prometheus' with promtool; and the manifests say what the service
/// needs: three replicas, probes on the routes it answers, limits, a budget, an
/// autoscaler, the store's URL from a Secret.
#[test]
fn deployment_files_validate_with_their_tools() {
    let bin = validators();
    let dir = deploy();
    let mut k = Command::new(bin.join("kubernetes-validate"));
    k.args(["-k", "1.30.0", "--strict"])
        .arg(dir.join("kubernetes/spamscope.yaml"));
    let text = run(k);
    for kind in [
        "deployment/spamscope",
        "service/spamscope",
        "poddisruptionbudget/spamscope",
        "horizontalpodautoscaler/spamscope",
        "secret/spamscope-store",
        "job/spamscope-init",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{text}"
        );
    }
    let mut c = Command::new(bin.join("check-jsonschema"));
    c.args(["--builtin-schema", "vendor.compose-spec"])
        .arg(dir.join("docker-compose.yml"));
    run(c);

    let haproxy = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("haproxy");
    let mut h = Command::new(haproxy);
    h.arg("-c").arg("-f").arg(dir.join("haproxy/haproxy.cfg"));
    assert!(run(h).contains("Configuration file is valid"));

    // promtool checks the scrape token file exists: point it at one.
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "ssk_x\n").unwrap();
    let config = std::fs::read_to_string(dir.join("prometheus/prometheus.yml"))
        .unwrap()
        .replace("/run/scrape/token", token.to_str().unwrap());
    std::fs::write(tmp.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        dir.join("prometheus/rules.yml"),
        tmp.path().join("rules.yml"),
    )
    .unwrap();
    let mut p = promtool();
    p.current_dir(tmp.path())
        .args(["check", "config", "prometheus.yml"]);
    assert!(run(p).contains("SUCCESS"));

    let k8s = std::fs::read_to_string(dir.join("kubernetes/spamscope.yaml")).unwrap();
    for want in [
        "replicas: 3",
        "path: /health/live",
        "path: /health/ready",
        "limits: {cpu: \"2\", memory: 512Mi}",
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "secretKeyRef: {name: spamscope-store, key: url}",
        "prometheus.io/scrape: \"true\"",
        "runAsNonRoot: true",
    ] {
        assert!(k8s.contains(want), "the manifests lack {want}");
    }
    let docker = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    assert!(docker.matches("\nFROM ").count() + usize::from(docker.starts_with("FROM ")) >= 2);
    for want in [
        "--no-default-features",
        "--locked",
        "USER 10001",
        "HEALTHCHECK",
        "/health/live",
    ] {
        assert!(docker.contains(want), "the Dockerfile lacks {want}");
    }
}

/// Stops the local topology when the test ends, also when it fails.
struct Topology(PathBuf);

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new(deploy().join("local.sh"))
            .args(["stop", "--dir"])
            .arg(&self.0)
            .output();
    }
}

fn get_json(url: &str) -> serde_json::Value {
    ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

/// `deploy/local.sh` runs the compose file's topology as plain processes: PostgreSQL,
/// three replicas, HAProxy, Prometheus with the rules. Requests through HAProxy reach
/// all three replicas; Prometheus sees the three targets up, has loaded both rule
/// groups, and counts each replica's requests.
#[test]
fn the_local_topology_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("local");
    // A free block of ports: the script uses PORT..PORT+20.
    let first = 20_000 + (std::process::id() % 1_000) as u16 * 20;
    let port = (0..1_000u16)
        .map(|k| 20_000 + (first - 20_000 + k * 20) % 40_000)
        .find(|&p| (0..=20).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()))
        .expect("a free block of 21 ports");
    let _topology = Topology(dir.clone());
    let out = Command::new(deploy().join("local.sh"))
        .args(["start", "--quick", "--port", &port.to_string(), "--dir"])
        .arg(&dir)
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_spamscope"))
        .env_remove("SPAMSCOPE_STORE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let token = token.trim();
    assert!(text.contains(token), "{text}");
    let lb = format!("http://127.0.0.1:{port}");
    for i in 0..30 {
        let r = ureq::post(format!("{lb}/predict"))
            .header("Authorization", format!("Bearer {token}"))
            .send_json(
                serde_json::json!({"features": {"X1": i, "X6": 2}, "user_id": format!("u{i}")}),
            )
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let prom = format!("http://127.0.0.1:{}", port + 10);
    let start = std::time::Instant::now();
    let per_replica = loop {
        let targets = get_json(&format!("{prom}/api/v1/targets"));
        let up = targets["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["health"] == "up")
            .count();
        let q = get_json(&format!(
            "{prom}/api/v1/query?query=sum%20by%20(instance)(spamscope_requests_total%7Broute%3D%22%2Fpredict%22%7D)"
        ));
        let counts: Vec<u64> = q["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
            .collect();
        if up == 3 && counts.len() == 3 && counts.iter().sum::<u64>() == 30 {
            break counts;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "Prometheus: {up} targets up, /predict counts {counts:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(per_replica.iter().all(|&n| n > 0), "{per_replica:?}");
    let rules = get_json(&format!("{prom}/api/v1/rules"));
    let groups: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(groups.contains(&"spamscope.alerts"), "{groups:?}");
}
