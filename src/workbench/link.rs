//! The app on a team's service: a thread that, every [`POLL`] (or at once when woken),
//! copies the service's versions into the local registry and follows its active one,
//! sends the feedback outbox, and reads the team's feedback statistics. It reports the
//! connection over the workbench's channel; it ends when the link is dropped.

use super::poll::Msg;
use super::versions::{load_active, send_versions_to};
use super::{Notice, Notify};
use crate::remote::mirror::Mirror;
use crate::remote::outbox::Outbox;
use crate::remote::{Client, RemoteError};
use crate::store::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::{Duration, SystemTime};

/// How often the service is asked for its active version (a promotion shows within
/// this).
pub const POLL: Duration = Duration::from_secs(2);

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteStatus {
    pub url: String,
    /// The last exchange succeeded.
    pub connected: bool,
    /// Why the last exchange failed.
    pub error: Option<String>,
    /// Feedback waiting in the outbox, and feedback the service refused.
    pub pending: u64,
    pub refused: u64,
    /// The version the service answers with.
    pub serving: Option<u32>,
    /// When the service last answered.
    pub last_contact: Option<SystemTime>,
}

impl RemoteStatus {
    pub fn new(url: &str) -> RemoteStatus {
        RemoteStatus {
            url: url.to_string(),
            connected: false,
            error: None,
            pending: 0,
            refused: 0,
            serving: None,
            last_contact: None,
        }
    }
}

/// The outbox of the local copy at `registry_root`.
pub fn outbox_path(registry_root: &std::path::Path) -> PathBuf {
    registry_root.join("outbox.sqlite")
}

pub(super) struct Link {
    /// Sending wakes the thread; dropping it ends the thread (not waited for: a call
    /// in flight ends within its timeout).
    wake: Option<Sender<()>>,
}

impl Link {
    pub(super) fn start(
        client: Client,
        registry: Registry,
        tx: Sender<Msg>,
        notify: Notify,
        alive: Arc<()>,
    ) -> Link {
        let (wake, woken) = channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("team-link".into())
            .spawn(move || {
                let _alive = alive;
                let mut state = LinkState {
                    status: RemoteStatus::new(client.url()),
                    mirror: Mirror::new(registry.clone()),
                    client,
                    registry,
                    tx,
                    notify,
                    last_versions: None,
                    rounds: 0,
                };
                loop {
                    if !state.round() {
                        return;
                    }
                    match woken.recv_timeout(POLL) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    // Several wakes at once: one round.
                    while woken.try_recv().is_ok() {}
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the team link: {e}");
        }
        Link { wake: Some(wake) }
    }

    /// What asks for a round now (feedback was queued, a rollback was asked for).
    pub(super) fn waker(&self) -> Sender<()> {
        self.wake.clone().expect("set until drop")
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.wake.take();
    }
}

struct LinkState {
    status: RemoteStatus,
    mirror: Mirror,
    client: Client,
    registry: Registry,
    tx: Sender<Msg>,
    notify: Notify,
    last_versions: Option<String>,
    rounds: u64,
}

impl LinkState {
    fn send(&self, m: Msg) -> bool {
        let ok = self.tx.send(m).is_ok();
        (self.notify)();
        ok
    }

    /// One exchange with the service; false when the workbench is gone.
    fn round(&mut self) -> bool {
        let result = self.exchange();
        let mut status = self.status.clone();
        match &result {
            Ok(()) => {
                status.connected = true;
                status.error = None;
                status.last_contact = Some(SystemTime::now());
            }
            Err(e) => {
                status.connected = false;
                status.error = Some(e.to_string());
            }
        }
        if let Ok(o) = Outbox::open(&outbox_path(self.registry.root())) {
            status.pending = o.pending().unwrap_or(status.pending);
            status.refused = o.refused().unwrap_or(status.refused);
        }
        if status != self.status || result.is_err() {
            if !self.status.connected && status.connected && self.status.last_contact.is_some() {
                self.send(Msg::Notice(Notice::Info(format!(
                    "connected to {} again",
                    status.url
                ))));
            }
            if self.status.connected && !status.connected {
                self.send(Msg::Notice(Notice::Error(format!(
                    "lost the connection to the team's service; working on the local copy of version {}; feedback waits in the outbox ({})",
                    status.serving.map_or("?".into(), |v| v.to_string()),
                    status.error.as_deref().unwrap_or("no answer")
                ))));
            }
            self.status = status.clone();
            return self.send(Msg::Remote(status));
        }
        true
    }

    fn exchange(&mut self) -> Result<(), RemoteError> {
        let synced = self.mirror.sync(&self.client)?;
        self.status.serving = Some(synced.versions.serving);
        if let Some((from, to)) = synced.switched {
            match load_active(&self.registry) {
                Ok(a) => {
                    self.send(Msg::Model(a));
                    let text = match from {
                        Some(f) => format!(
                            "the team's service switched from version {f} to version {to}: scoring with version {to} now"
                        ),
                        None => format!(
                            "connected to {}: scoring with the team's version {to}",
                            self.client.url()
                        ),
                    };
                    self.send(Msg::Notice(Notice::Info(text)));
                }
                Err(e) => {
                    self.send(Msg::Notice(Notice::Error(format!(
                        "the team's version {to} cannot be loaded here: {e}"
                    ))));
                }
            }
        }
        let listed = serde_json::to_string(&synced.versions.versions).ok();
        if listed != self.last_versions || !synced.installed.is_empty() {
            self.last_versions = listed;
            send_versions_to(&self.tx, &self.registry);
        }
        // The outbox, oldest first, each record with its key.
        let mut outbox = Outbox::open(&outbox_path(self.registry.root()))?;
        if outbox.pending()? > 0 {
            let client = self.client.clone();
            let flushed = outbox.flush(|body, key| client.feedback(body, key).map(|_| ()))?;
            if flushed.sent > 0 {
                self.send(Msg::Notice(Notice::Info(format!(
                    "{} feedback record{} sent to the team's service",
                    flushed.sent,
                    if flushed.sent == 1 { "" } else { "s" }
                ))));
            }
            for r in &flushed.refused {
                self.send(Msg::Notice(Notice::Error(format!(
                    "the team's service refused a feedback record (kept aside in the outbox): {r}"
                ))));
            }
            if let Some(e) = flushed.stopped {
                return Err(e);
            }
        }
        let stats = self.client.feedback_stats()?;
        self.send(Msg::TeamStats(Arc::new(stats)));
        // The latest comparison: at the first round and every 15th (it holds curves).
        if self.rounds.is_multiple_of(15)
            && let Some(c) = self.client.comparison()?
        {
            self.send(Msg::TeamComparison(Arc::new(c)));
        }
        self.rounds += 1;
        match self.client.experiment() {
            Ok(e) => {
                self.send(Msg::Experiment(Arc::new(e)));
            }
            // An older service without experiments: nothing to show.
            Err(RemoteError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}
