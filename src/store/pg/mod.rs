//! The shared store on a PostgreSQL server: what a registry folder holds, for many
//! service replicas on many hosts (issue 22). Only this folder speaks SQL to the server;
//! the registry and the other stores choose it when the store's location is a
//! `postgres://` URL, so no front-end knows which one it uses.
//!
//! - [`Db`]: a pool of connections, the server's address for messages (never its
//!   password), and the schema checked (created or migrated) when it is opened.
//! - [`schema`]: the versioned migrations; a program refuses a schema newer than it knows.
//! - [`registry`]: versions (manifest text and file bytes), the active pointer,
//!   documents (the experiment, online settings, the latest comparison).
//! - [`tokens`]: API tokens (names, roles, SHA-256 of the secrets).

pub mod registry;
pub mod schema;
pub mod tls;
pub mod tokens;

use super::ErrorKind;
use r2d2_postgres::r2d2;
use std::time::Duration;

pub use postgres::{GenericClient, Transaction};

type Tls = tokio_postgres_rustls::MakeRustlsConnect;
type Manager = r2d2_postgres::PostgresConnectionManager<Tls>;
/// A connection taken from the pool (back to it on drop).
pub type Conn = r2d2::PooledConnection<Manager>;

/// How long opening a connection may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections one process keeps at most.
pub const POOL_SIZE: u32 = 16;

/// A failure of the shared store: one line, with its kind (busy or unreachable server,
/// a conflict, damaged data...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: ErrorKind,
    pub message: String,
}

impl DbError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> DbError {
        DbError {
            kind,
            message: message.into(),
        }
    }
}

/// The kind of a PostgreSQL failure: a server that is down, restarting, out of
/// connections or in a lock wait is [`ErrorKind::Busy`] (the same request may succeed
/// later); a unique key taken is a conflict.
pub fn kind(e: &postgres::Error) -> ErrorKind {
    use postgres::error::SqlState as S;
    if e.is_closed() {
        return ErrorKind::Busy;
    }
    let Some(code) = e.code() else {
        // No SQL state: the connection failed (refused, reset, timed out), or TLS
        // did: a certificate refused will be refused again.
        return if tls_refused(e) {
            ErrorKind::Invalid
        } else {
            ErrorKind::Busy
        };
    };
    match code {
        c if *c == S::UNIQUE_VIOLATION => ErrorKind::Conflict,
        c if [
            S::T_R_SERIALIZATION_FAILURE,
            S::T_R_DEADLOCK_DETECTED,
            S::LOCK_NOT_AVAILABLE,
            S::QUERY_CANCELED,
            S::ADMIN_SHUTDOWN,
            S::CRASH_SHUTDOWN,
            S::CANNOT_CONNECT_NOW,
            S::TOO_MANY_CONNECTIONS,
            S::READ_ONLY_SQL_TRANSACTION,
        ]
        .contains(c) =>
        {
            ErrorKind::Busy
        }
        c if [S::DATA_CORRUPTED, S::INDEX_CORRUPTED].contains(c) => ErrorKind::Corrupt,
        _ => ErrorKind::Other,
    }
}

/// Whether `e` comes from the TLS handshake (rustls refused the server's certificate or
/// the server's TLS): somewhere in its sources, possibly inside an I/O error.
fn tls_refused(e: &postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The server's own message of `e` (its first line), without the driver's prefix.
pub fn message(e: &postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s = format!("{s}: {inner}");
                source = inner.source();
            }
            s
        }
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A connection listening for notifications ([`Db::listen`]).
pub struct Listener {
    client: postgres::Client,
    shown: String,
}

impl Listener {
    /// The next notification's payload, waiting at most `wait` (None: none came); an
    /// error when the connection is lost.
    pub fn next(&mut self, wait: Duration) -> Result<Option<String>, DbError> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut n = self.client.notifications();
        n.timeout_iter(wait)
            .next()
            .map(|o| o.map(|note| note.payload().to_string()))
            .map_err(|e| {
                DbError::new(
                    kind(&e),
                    format!("{}: notifications: {}", self.shown, message(&e)),
                )
            })
    }
}

/// A pool of connections to one server, its schema checked.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<Manager>,
    /// For connections outside the pool (a replica's LISTEN).
    config: std::sync::Arc<postgres::Config>,
    tls: Tls,
    /// `postgres://user@host:port/db`: the URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `url` without its password (and without options), for messages and logs.
pub fn shown_url(url: &str) -> String {
    let url = tls::split(url).map_or_else(|_| url.to_string(), |(rest, _)| rest);
    match url.parse::<postgres::Config>() {
        Ok(c) => describe(&c),
        Err(_) => "postgres://(unreadable URL)".into(),
    }
}

fn describe(c: &postgres::Config) -> String {
    let host = c
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}{host}:{port}/{}",
        c.get_user().map(|u| format!("{u}@")).unwrap_or_default(),
        c.get_dbname().unwrap_or("")
    )
}

impl Db {
    /// Connects to the server at `url` (`postgres://user:password@host:port/db`), then
    /// creates or migrates the schema ([`schema::migrate`]). An unreachable server, a
    /// refused login or a schema newer than this program is one line naming the server.
    pub fn open(url: &str) -> Result<Db, DbError> {
        Db::open_with(url, POOL_SIZE)
    }

    /// [`Db::open`] with at most `size` connections.
    pub fn open_with(url: &str, size: u32) -> Result<Db, DbError> {
        let invalid = |m: String| DbError::new(ErrorKind::Invalid, m);
        let (url, tls_options) =
            tls::split(url).map_err(|e| invalid(format!("the store URL: {e}")))?;
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            invalid(format!(
                "the store URL is not a PostgreSQL URL: {}",
                message(&e)
            ))
        })?;
        config.ssl_mode(tls::library_mode(tls_options.mode));
        let tls =
            tls::connector(&tls_options).map_err(|e| invalid(format!("the store URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("spamscope");
        }
        let shown = describe(&config);
        // One connection first, so a wrong password or database is said as the
        // server says it, not as a pool timeout.
        let mut first = config.connect(tls.clone()).map_err(|e| {
            DbError::new(
                kind(&e),
                format!("cannot connect to {shown}: {}", message(&e)),
            )
        })?;
        schema::migrate(&mut first).map_err(|e| DbError::new(e.kind, format!("{shown}: {e}")))?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT)
            // A connection is checked (an empty query) when taken: after the server
            // restarted, the pool's old connections are replaced instead of failing the
            // first requests (one round trip on loopback; the scoring path takes none).
            .test_on_check_out(true)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(r2d2_postgres::PostgresConnectionManager::new(
                config.clone(),
                tls.clone(),
            ));
        Ok(Db {
            pool,
            config: std::sync::Arc::new(config),
            tls,
            shown,
        })
    }

    /// The server's URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A connection from the pool; a server that does not answer within
    /// [`CONNECT_TIMEOUT`] is [`ErrorKind::Busy`].
    /// (The pool checks a connection as it hands it out: one the server closed is
    /// replaced, never handed out.)
    pub fn conn(&self) -> Result<Conn, DbError> {
        self.pool.get().map_err(|e| {
            DbError::new(
                ErrorKind::Busy,
                format!("{}: the database does not answer ({e})", self.shown),
            )
        })
    }

    /// The error of a statement, as one line naming the server and `what` was done.
    pub fn err(&self, what: &str) -> impl Fn(postgres::Error) -> DbError + '_ {
        let what = what.to_string();
        move |e| DbError::new(kind(&e), format!("{}: {what}: {}", self.shown, message(&e)))
    }

    /// Runs `f` in one transaction (committed when `f` returns `Ok`).
    pub fn transaction<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(self.err(what))?;
        let out = f(&mut tx)?;
        tx.commit().map_err(self.err(what))?;
        Ok(out)
    }

    /// A connection of its own (not from the pool) listening on `channel`: its
    /// notifications arrive through `Client::notifications`.
    pub fn listen(&self, channel: &str) -> Result<Listener, DbError> {
        let mut c = self
            .config
            .connect(self.tls.clone())
            .map_err(self.err("listening"))?;
        // `channel` is one of ours (an identifier), never input.
        c.batch_execute(&format!("LISTEN {channel}"))
            .map_err(self.err("listening"))?;
        Ok(Listener {
            client: c,
            shown: self.shown.clone(),
        })
    }

    /// A connection of its own, outside the pool (for a session that must last: a
    /// lock held for a process's work).
    pub fn dedicated(&self) -> Result<postgres::Client, DbError> {
        self.config
            .connect(self.tls.clone())
            .map_err(self.err("connecting"))
    }

    /// Whether the server answers a query now (for `/health/ready`).
    pub fn ping(&self) -> Result<(), DbError> {
        self.conn()?
            .simple_query("SELECT 1")
            .map(|_| ())
            .map_err(self.err("ping"))
    }
}
