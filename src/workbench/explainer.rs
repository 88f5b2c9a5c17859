//! The latest-wins TreeSHAP worker: the score screen asks for the explanation of the
//! inputs on every change; only the newest request is computed. The thread ends when
//! the explainer is dropped.

use super::Notify;
use super::poll::Msg;
use crate::model::Model;
use crate::model::explain::Method;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A pending explanation request: key, model, raw inputs.
type Request = (u64, Arc<Model>, Vec<f64>);

#[derive(Default)]
struct Slot {
    request: Option<Request>,
    stop: bool,
}

pub(super) struct Explainer {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Explainer {
    /// Starts the worker; `alive` is held by the thread for as long as it runs.
    pub(super) fn new(tx: Sender<Msg>, notify: Notify, alive: Arc<()>) -> Explainer {
        let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let worker = slot.clone();
        let thread = std::thread::Builder::new()
            .name("explainer".into())
            .spawn(move || {
                let _alive = alive;
                while let Some((key, model, x)) = next(&worker) {
                    let e = model.explain_one(&x, Method::TreeShap);
                    if tx.send(Msg::Explained(key, e)).is_err() {
                        return;
                    }
                    notify();
                }
            })
            .ok();
        Explainer { slot, thread }
    }

    pub(super) fn request(&self, key: u64, model: Arc<Model>, x: Vec<f64>) {
        let (lock, cv) = &*self.slot;
        if let Ok(mut g) = lock.lock() {
            g.request = Some((key, model, x));
            cv.notify_one();
        }
    }
}

/// Waits for the next request; None once the explainer is stopping.
fn next(slot: &(Mutex<Slot>, Condvar)) -> Option<Request> {
    let (lock, cv) = slot;
    let mut guard = lock.lock().ok()?;
    loop {
        if guard.stop {
            return None;
        }
        if let Some(req) = guard.request.take() {
            return Some(req);
        }
        guard = cv.wait(guard).ok()?;
    }
}

impl Drop for Explainer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.slot;
        if let Ok(mut g) = lock.lock() {
            g.stop = true;
            cv.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
