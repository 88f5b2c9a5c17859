//! The app's team mode on replicas: the workbench (the app's state, without a window)
//! connected to HAProxy (Debian's package) balancing two `serve` replicas on one
//! throwaway PostgreSQL, round robin per request. It copies the served version, sends
//! feedback kept once whichever replica takes it, sees the team's statistics and
//! follows a promotion made from the command line, while both replicas answer it.
#![cfg(feature = "gui")]

mod common;

use common::pg::TempPg;
use serde_json::{Value, json};
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::ops::train::TrainConfig;
use spamscope::store::feedback::{NewFeedback, Origin};
use spamscope::store::tokens::{Role, TokenStore};
use spamscope::workbench::{RemoteConfig, Workbench, WorkbenchConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DATA: SynthParams = SynthParams {
    rows: 2000,
    seed: 7,
};

/// HAProxy in the foreground, killed when dropped.
struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_bin() -> String {
    for p in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    "haproxy".to_string()
}

/// HAProxy on `port`, round robin over `replicas` per request (checked on
/// `/health/ready`), with its statistics as CSV on `stats_port`.
fn haproxy(dir: &Path, port: u16, stats_port: u16, replicas: &[SocketAddr]) -> Haproxy {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  server r{i} {a} check inter 500ms\n"))
        .collect();
    let cfg = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  option http-server-close\n\
         frontend spamscope\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
         backend replicas\n  balance roundrobin\n  option httpchk GET /health/ready\n{servers}\
         listen stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  stats uri /stats\n"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = std::process::Command::new(haproxy_bin())
        .args(["-c", "-q", "-f"])
        .arg(&path)
        .output()
        .expect("haproxy is installed (scripts/test installs it)");
    assert!(check.status.success(), "{check:?}");
    let child = std::process::Command::new(haproxy_bin())
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .unwrap();
    Haproxy(child)
}

/// Sessions each backend server has had, from HAProxy's statistics.
fn sessions(stats_port: u16) -> Vec<(String, u64)> {
    let csv = ureq::get(format!("http://127.0.0.1:{stats_port}/stats;csv"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (px, sv, stot) = (col("pxname"), col("svname"), col("stot"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[px] == "replicas" && f[sv].starts_with('r'))
        .map(|f| (f[sv].to_string(), f[stot].parse().unwrap()))
        .collect()
}

fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_app_works_through_a_load_balancer_in_front_of_two_replicas() {
    let pg = TempPg::start();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let cli = pg.registry(dirs[2].path());
    common::train_version(&cli, DATA, 5);
    let mia = TokenStore::of(&cli).add("mia", Role::Moderator).unwrap();
    let (rt_a, a) = common::replica(&pg.registry(dirs[0].path()));
    let (rt_b, b) = common::replica(&pg.registry(dirs[1].path()));
    let (port, stats) = (common::pg::free_port(), common::pg::free_port());
    let _lb = haproxy(dirs[3].path(), port, stats, &[a, b]);
    let url = format!("http://127.0.0.1:{port}");
    until(
        "HAProxy seeing both replicas up",
        Duration::from_secs(20),
        || {
            ureq::get(format!("http://127.0.0.1:{stats}/stats;csv"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|csv| {
                    csv.lines()
                        .filter(|l| l.starts_with("replicas,r") && l.contains(",UP,"))
                        .count()
                        == 2
                })
        },
    );

    let cache = tempfile::tempdir().unwrap();
    let mut w = Workbench::new(
        WorkbenchConfig {
            registry_root: cache.path().to_path_buf(),
            dataset: None,
            synth: DATA,
            train: TrainConfig::default(),
            remote: Some(RemoteConfig {
                url: url.clone(),
                token: Some(mia.clone()),
            }),
            mlflow: None,
        },
        Arc::new(|| {}),
    );
    w.start();
    common::wait_for(&mut w, "version 1 copied", |w| {
        w.active.as_ref().map(|a| a.manifest.version) == Some(1)
            && w.remote.as_ref().is_some_and(|r| r.connected)
    });

    // Feedback from the app: through whichever replica, stored once, by mia.
    let data = default_dataset(DATA);
    for (i, label) in [(11, 1), (12, 0), (13, 1)] {
        let x = data.row(i);
        let probability = w.score_one(&x);
        w.submit_feedback(NewFeedback {
            user_id: Some(format!("acct-{i}").into()),
            features: x.clone(),
            true_label: label,
            probability,
            model_version: Some(1),
            predicted: Some(1),
            notes: "from the app".into(),
            origin: Origin::App,
        });
    }
    // (The outbox is empty before the records reach it, too: wait for the service.)
    common::wait_for(&mut w, "the three records in the service", |w| {
        w.remote.as_ref().is_some_and(|r| r.pending == 0)
            && pg.psql("SELECT count(*) FROM feedback") == "3"
    });
    assert_eq!(
        pg.psql("SELECT count(*) FROM feedback WHERE moderator = 'mia'"),
        "3"
    );
    common::wait_for(&mut w, "the team's statistics", |w| {
        w.feedback.as_ref().is_some_and(|f| f.total == 3)
    });

    // A promotion from the command line reaches the app through either replica.
    common::train_version(&cli, DATA, 6);
    common::wait_for(&mut w, "version 2", |w| {
        w.active.as_ref().map(|a| a.manifest.version) == Some(2)
    });
    let x = data.row(20);
    let (_, model) = cli.load(2).unwrap();
    assert_eq!(w.score_one(&x).unwrap(), model.predict_one(&x));
    for r in [a, b] {
        let h: Value = ureq::get(format!("http://{r}/health"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_eq!(h["model_version"], json!(2), "{r}: {h}");
    }
    // Both replicas answered the app (the balancer spread its requests).
    let per_server = sessions(stats);
    eprintln!("sessions per replica: {per_server:?}");
    assert_eq!(per_server.len(), 2, "{per_server:?}");
    assert!(
        per_server.iter().all(|(_, n)| *n >= 3),
        "each replica answered some of the app's requests: {per_server:?}"
    );
    drop(w);
    drop((rt_a, rt_b));
}
