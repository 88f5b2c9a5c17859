//! Shared by the test binaries that run a team's service (`spamscope serve` in this
//! process on a loopback socket) or receive its alerts (a webhook receiver).
#![allow(dead_code)]

pub mod pg;

use serde_json::Value;
use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::model::forest::ForestParams;
use spamscope::ops::train::{TrainConfig, train};
use spamscope::service::{Limits, State, router, spawn_watcher};
use spamscope::store::Registry;
use spamscope::store::predictions::Retention;
use spamscope::util::progress::NoProgress;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

/// Trains a small forest on `data` and registers it as the active version.
pub fn train_version(reg: &Registry, data: SynthParams, trees: usize) {
    let data = default_dataset(data);
    let cfg = TrainConfig {
        params: ForestParams {
            n_trees: trees,
            max_depth: Some(8),
            ..Default::default()
        },
        ..Default::default()
    };
    train(&data, None, &cfg, &NoProgress)
        .unwrap()
        .register(reg, &data, &cfg, true)
        .unwrap();
}

/// `spamscope serve` on `port` (0: any) of 127.0.0.1, in this process, following the
/// registry's active version every 200 ms; dropping the runtime stops it.
pub fn serve(reg: &Registry, port: u16) -> (tokio::runtime::Runtime, SocketAddr) {
    serve_with(reg, port, Limits::default(), Duration::from_millis(200))
}

/// A replica on a shared store, on a free loopback port: its watcher polls only every
/// 30 s (changes reach it by notification), a write waits 2 s for a lock.
pub fn replica(reg: &Registry) -> (tokio::runtime::Runtime, SocketAddr) {
    let limits = Limits {
        store_busy_wait: Duration::from_secs(2),
        ..Limits::default()
    };
    serve_with(reg, 0, limits, Duration::from_secs(30))
}

fn serve_with(
    reg: &Registry,
    port: u16,
    limits: Limits,
    poll: Duration,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = State::new(reg.clone(), limits, Retention::default(), true).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let _in = rt.enter();
        spawn_watcher(&state, poll);
    }
    rt.spawn(async move { axum::serve(listener, router(state)).await });
    (rt, addr)
}

/// Polls the workbench `w` until `done` holds (panics after 60 s, showing its link's
/// status and notices).
#[cfg(feature = "gui")]
pub fn wait_for(
    w: &mut spamscope::workbench::Workbench,
    what: &str,
    mut done: impl FnMut(&spamscope::workbench::Workbench) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        w.poll();
        if done(w) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited 60 s for {what}; status {:?}, notices {:?}",
            w.remote,
            w.notices
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A receiver on 127.0.0.1 answering the statuses of `script` in turn (then 200); each
/// request's JSON body goes to the channel. Returns the URL.
pub fn receiver(script: Vec<u16>) -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            assert!(request_line.starts_with("POST /hook "), "{request_line}");
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            // Into the channel before answering: once the sender has its answer, the
            // body is there.
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
            let status = script.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.flush();
        }
    });
    (url, rx)
}

/// Row `i` of `data` as a `/predict` body (missing values left out), with `user` as its
/// user id when given.
pub fn request_of(data: &spamscope::data::Dataset, i: usize, user: Option<&str>) -> Value {
    let cat = spamscope::data::catalog::catalog();
    let mut m = serde_json::Map::new();
    for (f, v) in cat.features.iter().zip(data.row(i)) {
        if !v.is_nan() {
            m.insert(f.id.clone(), serde_json::json!(v));
        }
    }
    match user {
        Some(u) => serde_json::json!({ "features": m, "user_id": u }),
        None => serde_json::json!({ "features": m }),
    }
}
