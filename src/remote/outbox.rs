//! Feedback on its way to a team's service. Each record is written to SQLite (WAL,
//! `synchronous=FULL`, one transaction per submission) with a random idempotency key
//! before anything is sent, so nothing given offline is lost, even if the app is
//! killed. [`Outbox::flush`] sends the records oldest first; a record leaves the outbox
//! only when the service has answered that it stored it. A record sent again (its
//! answer was lost, or the app died before removing it) carries the same key, and the
//! service stores each key once: every record arrives exactly once.

use super::RemoteError;
use rusqlite::{Connection, params};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

/// What one [`Outbox::flush`] did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Records the service stored.
    pub sent: usize,
    /// Records the service refused (a 4xx other than 408/429), kept aside with its
    /// reason: sending them again would not help.
    pub refused: Vec<String>,
    /// Why sending stopped early (the service unreachable or overloaded); the rest
    /// waits for the next flush.
    pub stopped: Option<RemoteError>,
}

/// A new idempotency key: `fb-` and 128 random bits.
pub fn new_key() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = crate::util::hash::sha256_hex(format!("{nanos}:{}", std::process::id()).as_bytes())
            .as_bytes()[..16]
            .try_into()
            .unwrap_or([0; 16]);
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("fb-{hex}")
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path`.
    pub fn open(path: &Path) -> Result<Outbox, RemoteError> {
        let err = |e: rusqlite::Error| RemoteError::Local(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| RemoteError::Local(format!("{}: {e}", dir.display())))?;
        }
        let conn = crate::store::open_durable(path).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                id INTEGER PRIMARY KEY,
                key TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL,
                created_at TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                refused INTEGER NOT NULL DEFAULT 0
            )",
        )
        .map_err(err)?;
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> RemoteError {
        RemoteError::Local(format!("{}: {e}", self.path.display()))
    }

    /// Keeps `bodies` (one transaction) and returns their new keys.
    pub fn enqueue(&mut self, bodies: &[Value]) -> Result<Vec<String>, RemoteError> {
        let keyed: Vec<(String, Value)> = bodies.iter().map(|b| (new_key(), b.clone())).collect();
        self.enqueue_keyed(&keyed)?;
        Ok(keyed.into_iter().map(|(k, _)| k).collect())
    }

    /// Keeps records under keys given (one transaction): a record already sent from
    /// elsewhere with its key is stored once by the service when sent again.
    pub fn enqueue_keyed(&mut self, records: &[(String, Value)]) -> Result<(), RemoteError> {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let path = self.path.display().to_string();
        let err = |e: rusqlite::Error| RemoteError::Local(format!("{path}: {e}"));
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare("INSERT INTO outbox (key, body, created_at) VALUES (?1, ?2, ?3)")
                .map_err(err)?;
            for (key, b) in records {
                stmt.execute(params![key, b.to_string(), now])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Records waiting to be sent.
    pub fn pending(&self) -> Result<u64, RemoteError> {
        self.count("refused = 0")
    }

    /// Records the service refused.
    pub fn refused(&self) -> Result<u64, RemoteError> {
        self.count("refused = 1")
    }

    fn count(&self, filter: &str) -> Result<u64, RemoteError> {
        self.conn
            .query_row(
                &format!("SELECT COUNT(*) FROM outbox WHERE {filter}"),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Sends waiting records oldest first with `send(body, key)` (the service's
    /// `POST /feedback`); stops at the first transient failure.
    pub fn flush(
        &mut self,
        mut send: impl FnMut(&Value, &str) -> Result<(), RemoteError>,
    ) -> Result<Flushed, RemoteError> {
        let waiting: Vec<(i64, String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id, key, body FROM outbox WHERE refused = 0 ORDER BY id")
                .map_err(|e| self.err(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| self.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?
        };
        let mut out = Flushed::default();
        for (id, key, body) in waiting {
            let value: Value = match serde_json::from_str(&body) {
                Ok(v) => v,
                Err(e) => {
                    self.set_refused(id, &format!("the stored record is unreadable: {e}"))?;
                    out.refused.push(format!("{key}: unreadable"));
                    continue;
                }
            };
            match send(&value, &key) {
                Ok(()) => {
                    self.conn
                        .execute("DELETE FROM outbox WHERE id = ?1", [id])
                        .map_err(|e| self.err(e))?;
                    out.sent += 1;
                }
                Err(e) if e.is_transient() => {
                    self.conn
                        .execute(
                            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                            params![id, e.to_string()],
                        )
                        .map_err(|e| self.err(e))?;
                    out.stopped = Some(e);
                    break;
                }
                Err(e) => {
                    self.set_refused(id, &e.to_string())?;
                    out.refused.push(e.to_string());
                }
            }
        }
        Ok(out)
    }

    fn set_refused(&self, id: i64, why: &str) -> Result<(), RemoteError> {
        self.conn
            .execute(
                "UPDATE outbox SET refused = 1, attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, why],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn down() -> RemoteError {
        RemoteError::Unreachable {
            route: "POST /feedback".into(),
            message: "connection refused".into(),
        }
    }

    #[test]
    fn records_wait_offline_survive_reopening_and_leave_once_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite");
        let mut o = Outbox::open(&path).unwrap();
        let keys = o
            .enqueue(&[
                json!({"label": 1}),
                json!({"label": 0}),
                json!({"label": 1}),
            ])
            .unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(
            keys.iter().collect::<std::collections::HashSet<_>>().len(),
            3
        );
        // Offline: nothing leaves, the attempt is counted.
        let f = o.flush(|_, _| Err(down())).unwrap();
        assert_eq!((f.sent, f.stopped.is_some()), (0, true));
        drop(o);
        let mut o = Outbox::open(&path).unwrap();
        assert_eq!(o.pending().unwrap(), 3);
        // The server takes the first, then goes away: the first leaves, the others
        // wait; the keys sent are the ones given at enqueue, in order.
        let mut seen = Vec::new();
        let f = o
            .flush(|_, k| {
                seen.push(k.to_string());
                if seen.len() == 1 { Ok(()) } else { Err(down()) }
            })
            .unwrap();
        assert_eq!(f.sent, 1);
        assert_eq!(seen, keys[..2].to_vec());
        assert_eq!(o.pending().unwrap(), 2);
        // A refusal (400) is set aside; a 503 is transient.
        let f = o
            .flush(|b, _| {
                if b["label"] == 0 {
                    Err(RemoteError::Refused {
                        route: "POST /feedback".into(),
                        status: 400,
                        message: "label: must be 0 or 1".into(),
                    })
                } else {
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!((f.sent, f.refused.len()), (1, 1));
        assert_eq!((o.pending().unwrap(), o.refused().unwrap()), (0, 1));
        assert!(
            RemoteError::Refused {
                route: String::new(),
                status: 503,
                message: String::new()
            }
            .is_transient()
        );
    }

    #[test]
    fn server_addresses_are_checked() {
        use super::super::normalize_url;
        assert_eq!(
            normalize_url(" http://127.0.0.1:8000/ ").unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            normalize_url("https://scores.example/team").unwrap(),
            "https://scores.example/team"
        );
        for bad in [
            "127.0.0.1:8000",
            "ftp://x",
            "http://",
            "http://:80",
            "http://a b",
            "http://x/?q=1",
            "http://user@host",
        ] {
            let e = normalize_url(bad).unwrap_err().to_string();
            assert!(e.starts_with("server address"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
