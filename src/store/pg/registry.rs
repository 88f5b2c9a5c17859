//! The registry's tables: versions (manifest text), their files (bytes and SHA-256), the
//! active pointer (one row, locked by writers: the registry's lock), and documents.
//!
//! Every change a replica must follow (the active version, a manifest, a document) is
//! announced with `NOTIFY` on [`CHANNEL`] in the transaction that makes it, so it reaches
//! listeners when (and only if) it commits.

use postgres::GenericClient;

/// The channel replicas listen on; the payload says what changed.
pub const CHANNEL: &str = "spamscope";

/// Version numbers present, ascending.
pub fn version_numbers(c: &mut impl GenericClient) -> Result<Vec<i32>, postgres::Error> {
    Ok(
        c.query("SELECT version FROM versions ORDER BY version", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    )
}

/// The highest version number (0 when there is none).
pub fn highest(c: &mut impl GenericClient) -> Result<i32, postgres::Error> {
    c.query_one("SELECT coalesce(max(version), 0) FROM versions", &[])
        .map(|r| r.get(0))
}

/// The manifest text of version `v`, if it exists.
pub fn manifest_text(
    c: &mut impl GenericClient,
    v: u32,
) -> Result<Option<String>, postgres::Error> {
    let Ok(v) = i32::try_from(v) else {
        return Ok(None);
    };
    Ok(
        c.query_opt("SELECT manifest FROM versions WHERE version = $1", &[&v])?
            .map(|r| r.get(0)),
    )
}

/// The bytes of file `name` of version `v` and the checksum stored beside them.
pub fn file(
    c: &mut impl GenericClient,
    v: u32,
    name: &str,
) -> Result<Option<(String, Vec<u8>)>, postgres::Error> {
    let Ok(v) = i32::try_from(v) else {
        return Ok(None);
    };
    Ok(c.query_opt(
        "SELECT sha256, content FROM version_files WHERE version = $1 AND name = $2",
        &[&v, &name],
    )?
    .map(|r| (r.get(0), r.get(1))))
}

/// The active version (None: none yet).
pub fn active(c: &mut impl GenericClient) -> Result<Option<i32>, postgres::Error> {
    Ok(c.query_opt("SELECT version FROM active_version", &[])?
        .and_then(|r| r.get(0)))
}

/// Locks the active pointer for the rest of the transaction (every registry writer
/// takes this lock first, so writers follow one another) and returns it.
pub fn lock_active(
    tx: &mut postgres::Transaction<'_>,
    wait: std::time::Duration,
) -> Result<Option<i32>, postgres::Error> {
    // A writer stuck longer than `wait` is given up on with a lock-timeout error.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        wait.as_millis().clamp(1, i32::MAX as u128)
    ))?;
    Ok(tx
        .query_opt("SELECT version FROM active_version FOR UPDATE", &[])?
        .and_then(|r| r.get(0)))
}

/// Points the active pointer at `v` (which must exist) and announces it.
pub fn set_active(tx: &mut postgres::Transaction<'_>, v: u32) -> Result<(), postgres::Error> {
    let v = i32::try_from(v).unwrap_or(i32::MAX);
    tx.execute(
        "UPDATE active_version SET version = $1, changed_at = now()",
        &[&v],
    )?;
    notify(tx, "active")
}

/// Adds version `v` with its manifest and files (name, SHA-256, bytes).
pub fn insert_version(
    tx: &mut postgres::Transaction<'_>,
    v: u32,
    manifest: &str,
    files: &[(&str, &str, &[u8])],
) -> Result<(), postgres::Error> {
    let v = i32::try_from(v).unwrap_or(i32::MAX);
    tx.execute(
        "INSERT INTO versions (version, manifest) VALUES ($1, $2)",
        &[&v, &manifest],
    )?;
    for (name, sha, bytes) in files {
        tx.execute(
            "INSERT INTO version_files (version, name, sha256, content) VALUES ($1, $2, $3, $4)",
            &[&v, name, sha, bytes],
        )?;
    }
    notify(tx, "versions")
}

/// Replaces the manifest of version `v` (its files stay).
pub fn put_manifest(
    tx: &mut postgres::Transaction<'_>,
    v: u32,
    manifest: &str,
) -> Result<(), postgres::Error> {
    let v = i32::try_from(v).unwrap_or(i32::MAX);
    tx.execute(
        "UPDATE versions SET manifest = $2 WHERE version = $1",
        &[&v, &manifest],
    )?;
    notify(tx, "versions")
}

/// A document's text (the experiment, the online settings...), if there is one.
pub fn document(c: &mut impl GenericClient, name: &str) -> Result<Option<String>, postgres::Error> {
    Ok(
        c.query_opt("SELECT body FROM documents WHERE name = $1", &[&name])?
            .map(|r| r.get(0)),
    )
}

/// Writes (or replaces) a document and announces it.
pub fn put_document(
    c: &mut impl GenericClient,
    name: &str,
    body: &str,
) -> Result<(), postgres::Error> {
    c.execute(
        "INSERT INTO documents (name, body) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = now()",
        &[&name, &body],
    )?;
    notify(c, name)
}

/// Writes a document only if there is none of that name; false when there was one.
pub fn create_document(
    c: &mut impl GenericClient,
    name: &str,
    body: &str,
) -> Result<bool, postgres::Error> {
    let n = c.execute(
        "INSERT INTO documents (name, body) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &body],
    )?;
    if n == 1 {
        notify(c, name)?;
    }
    Ok(n == 1)
}

/// Removes a document; false when there was none.
pub fn remove_document(c: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    let n = c.execute("DELETE FROM documents WHERE name = $1", &[&name])?;
    if n == 1 {
        notify(c, name)?;
    }
    Ok(n == 1)
}

/// The names of the documents starting with `prefix`, in order.
pub fn document_names(
    c: &mut impl GenericClient,
    prefix: &str,
) -> Result<Vec<String>, postgres::Error> {
    Ok(c.query(
        "SELECT name FROM documents WHERE starts_with(name, $1) ORDER BY name",
        &[&prefix],
    )?
    .into_iter()
    .map(|r| r.get(0))
    .collect())
}

/// Takes the session-level advisory lock named `name` if nobody holds it (it lasts as
/// long as the connection, or until released).
pub fn try_named_lock(c: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    Ok(
        c.query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&name])?
            .get(0),
    )
}

/// Gives up the advisory lock [`try_named_lock`] took on this session.
pub fn named_unlock(c: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    Ok(
        c.query_one("SELECT pg_advisory_unlock(hashtext($1))", &[&name])?
            .get(0),
    )
}

/// Announces a change on [`CHANNEL`] (delivered when the transaction commits).
pub fn notify(c: &mut impl GenericClient, what: &str) -> Result<(), postgres::Error> {
    c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &what])
        .map(|_| ())
}

/// A stored version number as `u32` (a negative one is damage).
pub fn checked_version(v: i32) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("version {v} is not a version number"))
}

/// Takes the right to send an alert of `kind` now: true unless one was sent (by any
/// replica) less than `window_ms` ago. One statement: two replicas asking at once get
/// one true between them (the row lock orders them).
pub fn claim_alert(
    c: &mut impl GenericClient,
    kind: &str,
    window_ms: i64,
) -> Result<bool, postgres::Error> {
    let rows = c.query(
        "INSERT INTO alerts_sent (kind, sent_at) VALUES ($1, clock_timestamp())
         ON CONFLICT (kind) DO UPDATE SET sent_at = excluded.sent_at
         WHERE alerts_sent.sent_at < excluded.sent_at - make_interval(secs => $2::float8 / 1000)
         RETURNING kind",
        &[&kind, &(window_ms as f64)],
    )?;
    Ok(!rows.is_empty())
}

/// Gives the right back (an alert that could not be delivered): another replica may
/// send its kind at once.
pub fn release_alert(c: &mut impl GenericClient, kind: &str) -> Result<(), postgres::Error> {
    c.execute("DELETE FROM alerts_sent WHERE kind = $1", &[&kind])
        .map(|_| ())
}
