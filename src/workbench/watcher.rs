//! The store's own check for automatic retraining: a thread that looks every
//! [`WATCH_SECONDS`] whether enough new feedback arrived and enough time passed, and
//! tells the workbench. The thread ends when the watcher is dropped.

use super::Notify;
use super::poll::Msg;
use crate::store::Registry;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

pub const WATCH_SECONDS: u64 = 30;

pub(super) struct Watcher {
    /// Dropping it wakes the thread and makes it stop.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `registry`; `alive` is held by the thread for as long as it runs.
    pub(super) fn start(
        registry: Registry,
        tx: Sender<Msg>,
        notify: Notify,
        alive: Arc<()>,
    ) -> Watcher {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("retrain-watcher".into())
            .spawn(move || {
                let _alive = alive;
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_secs(WATCH_SECONDS))
                {
                    if let Some(reason) = crate::ops::schedule::retrain_due_reason(&registry) {
                        if tx.send(Msg::AutoRetrain(reason)).is_err() {
                            return;
                        }
                        notify();
                    }
                }
            })
            .ok();
        Watcher {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
