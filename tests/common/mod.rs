//! Shared by the test binaries that run a team's service: `spamscope serve` in this
//! process on a loopback socket.
#![allow(dead_code)]

use spamscope::data::synth::{SynthParams, default_dataset};
use spamscope::model::forest::ForestParams;
use spamscope::ops::train::{TrainConfig, train};
use spamscope::service::{Limits, State, router, spawn_watcher};
use spamscope::store::Registry;
use spamscope::store::predictions::Retention;
use spamscope::util::progress::NoProgress;
use std::net::SocketAddr;
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = State::new(reg.clone(), Limits::default(), Retention::default(), true).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let _in = rt.enter();
        spawn_watcher(&state, Duration::from_millis(200));
    }
    rt.spawn(async move { axum::serve(listener, router(state)).await });
    (rt, addr)
}
