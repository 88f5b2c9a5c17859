//! Background jobs of the service (retrains): started by one process, followed by
//! anyone. A registry folder serves one process, so its jobs live in that process's
//! memory; a shared store keeps them in a table, so a job started on one replica is
//! seen from all, and only one job of a kind runs at a time across the fleet.
//!
//! A job on a shared store is running while its process beats (every progress report,
//! and at least every [`HEARTBEAT`]); one whose process stopped beating for [`STALE`]
//! (killed, its host gone) reads as failed and no longer blocks a new one.

use super::pg;
use super::{Registry, StoreError};
use std::sync::Mutex;
use std::time::Duration;

/// How often a running job's process says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// After this long without a beat, a running job counts as failed.
pub const STALE: Duration = Duration::from_secs(30);

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: u64,
    pub kind: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub stage: String,
    pub done: usize,
    pub total: usize,
    pub started_by: String,
    /// What it produced (JSON text of the front-end's choosing), when it succeeded.
    pub result: Option<String>,
    pub error: Option<String>,
}

/// What [`Jobs::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A new job with this id.
    New(u64),
    /// One of the kind is running already (this id): nothing was started.
    Running(u64),
}

/// Finished jobs a process keeps in memory at most (a folder store).
const KEEP: usize = 100;

pub struct Jobs {
    backend: Backend,
}

enum Backend {
    Memory(Mutex<Vec<JobRow>>),
    Shared(pg::Db),
}

impl Jobs {
    /// The jobs of `registry`'s service: in memory for a folder, in the database for a
    /// shared store.
    pub fn of(registry: &Registry) -> Jobs {
        Jobs {
            backend: match registry.shared() {
                Some(db) => Backend::Shared(db.clone()),
                None => Backend::Memory(Mutex::new(Vec::new())),
            },
        }
    }

    /// Runs `work` while beating job `id`'s heartbeat every [`HEARTBEAT`] (on a shared
    /// store the other processes see the job alive; a process killed mid-job stops
    /// beating and its job reads as failed).
    pub fn while_running<T>(&self, id: u64, work: impl FnOnce() -> T) -> T {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            s.spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(HEARTBEAT)
                {
                    self.beat(id);
                }
            });
            let out = work();
            drop(stop);
            out
        })
    }

    fn memory(m: &Mutex<Vec<JobRow>>) -> std::sync::MutexGuard<'_, Vec<JobRow>> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a job of `kind` by `by`, unless one of that kind is running.
    pub fn start(&self, kind: &str, by: &str) -> Result<Started, StoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut jobs = Jobs::memory(m);
                if let Some(j) = jobs.iter().find(|j| j.kind == kind && j.state == "running") {
                    return Ok(Started::Running(j.id));
                }
                let id = jobs.last().map_or(1, |j| j.id + 1);
                jobs.push(JobRow {
                    id,
                    kind: kind.into(),
                    state: "running".into(),
                    stage: "starting".into(),
                    done: 0,
                    total: 1,
                    started_by: by.into(),
                    result: None,
                    error: None,
                });
                let old = jobs.len().saturating_sub(KEEP);
                jobs.drain(..old);
                Ok(Started::New(id))
            }
            Backend::Shared(db) => Ok(db.transaction("starting a job", |tx| {
                let fail = db.err("starting a job");
                // One start at a time, so two replicas cannot both see none running.
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&JOB_LOCK])
                    .map_err(&fail)?;
                let running = tx
                    .query_opt(
                        "SELECT id FROM jobs WHERE kind = $1 AND state = 'running'
                         AND heartbeat > now() - make_interval(secs => $2)",
                        &[&kind, &STALE.as_secs_f64()],
                    )
                    .map_err(&fail)?;
                if let Some(r) = running {
                    return Ok(Started::Running(r.get::<_, i64>(0) as u64));
                }
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO jobs (kind, state, stage, done, total, started_by)
                         VALUES ($1, 'running', 'starting', 0, 1, $2) RETURNING id",
                        &[&kind, &by],
                    )
                    .map_err(&fail)?
                    .get(0);
                Ok(Started::New(id as u64))
            })?),
        }
    }

    /// Records the progress of job `id` (and that its process is alive). Best effort:
    /// a failure is logged, the job goes on.
    pub fn progress(&self, id: u64, stage: &str, done: usize, total: usize) {
        match &self.backend {
            Backend::Memory(m) => {
                if let Some(j) = Jobs::memory(m).iter_mut().find(|j| j.id == id) {
                    j.stage = stage.into();
                    j.done = done;
                    j.total = total;
                }
            }
            Backend::Shared(db) => {
                let r = db.conn().and_then(|mut c| {
                    c.execute(
                        "UPDATE jobs SET stage = $2, done = $3, total = $4, heartbeat = now()
                         WHERE id = $1",
                        &[&(id as i64), &stage, &(done as i64), &(total as i64)],
                    )
                    .map_err(db.err("recording a job's progress"))
                });
                if let Err(e) = r {
                    tracing::warn!("job {id}: {e}");
                }
            }
        }
    }

    /// Says job `id`'s process is alive (a shared store; nothing for a folder).
    pub fn beat(&self, id: u64) {
        if let Backend::Shared(db) = &self.backend {
            let r = db.conn().and_then(|mut c| {
                c.execute(
                    "UPDATE jobs SET heartbeat = now() WHERE id = $1 AND state = 'running'",
                    &[&(id as i64)],
                )
                .map_err(db.err("recording a job's heartbeat"))
            });
            if let Err(e) = r {
                tracing::warn!("job {id}: {e}");
            }
        }
    }

    /// Records how job `id` ended: its result (JSON text) or its error.
    pub fn finish(&self, id: u64, outcome: Result<String, String>) -> Result<(), StoreError> {
        let (state, result, error) = match outcome {
            Ok(r) => ("succeeded", Some(r), None),
            Err(e) => ("failed", None, Some(e)),
        };
        match &self.backend {
            Backend::Memory(m) => {
                if let Some(j) = Jobs::memory(m).iter_mut().find(|j| j.id == id) {
                    j.state = state.into();
                    j.result = result;
                    j.error = error;
                }
                Ok(())
            }
            Backend::Shared(db) => {
                db.conn()?
                    .execute(
                        "UPDATE jobs SET state = $2, result = $3, error = $4, heartbeat = now()
                         WHERE id = $1",
                        &[&(id as i64), &state, &result, &error],
                    )
                    .map_err(db.err("recording a job's end"))?;
                Ok(())
            }
        }
    }

    /// Job `id`, if there is one.
    pub fn get(&self, id: u64) -> Result<Option<JobRow>, StoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(Jobs::memory(m).iter().find(|j| j.id == id).cloned()),
            Backend::Shared(db) => {
                let Ok(key) = i64::try_from(id) else {
                    return Ok(None);
                };
                let row = db
                    .conn()?
                    .query_opt(
                        "SELECT kind, state, stage, done, total, started_by, result, error,
                                heartbeat > now() - make_interval(secs => $2)
                         FROM jobs WHERE id = $1",
                        &[&key, &STALE.as_secs_f64()],
                    )
                    .map_err(db.err("reading a job"))?;
                Ok(row.map(|r| {
                    let mut j = JobRow {
                        id,
                        kind: r.get(0),
                        state: r.get(1),
                        stage: r.get(2),
                        done: r.get::<_, i64>(3).max(0) as usize,
                        total: r.get::<_, i64>(4).max(0) as usize,
                        started_by: r.get(5),
                        result: r.get(6),
                        error: r.get(7),
                    };
                    let alive: bool = r.get(8);
                    if j.state == "running" && !alive {
                        j.state = "failed".into();
                        j.error = Some(format!(
                            "the process running it stopped (no heartbeat for {} s)",
                            STALE.as_secs()
                        ));
                    }
                    j
                }))
            }
        }
    }
}

/// Serialises job starts between replicas.
const JOB_LOCK: i64 = 0x5350_4a4f_4253_5452; // "SPJOBSTR"
