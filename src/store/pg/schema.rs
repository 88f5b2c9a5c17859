//! The shared store's schema, created and migrated by the program itself.
//!
//! Each migration has a number and runs once, in order, in the transaction that records
//! it in `spamscope_schema`; every process that opens the store runs the ones it is
//! missing, one process at a time (an advisory lock). A database whose schema is newer
//! than this program knows is refused: an older replica must not write tables whose
//! meaning changed under it.

use super::{DbError, ErrorKind};

/// (number, what it does, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "versions, files, the active pointer, documents, API tokens",
        r#"
CREATE TABLE versions (
    version     integer PRIMARY KEY CHECK (version > 0),
    manifest    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE version_files (
    version  integer NOT NULL REFERENCES versions (version),
    name     text NOT NULL,
    sha256   text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content  bytea NOT NULL,
    PRIMARY KEY (version, name)
);
CREATE TABLE active_version (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     integer REFERENCES versions (version),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO active_version (singleton, version) VALUES (true, NULL);
CREATE TABLE documents (
    name        text PRIMARY KEY,
    body        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE api_tokens (
    name        text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('scorer', 'moderator', 'admin')),
    sha256      text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at  text NOT NULL,
    added       bigserial NOT NULL
);
"#,
    ),
    (
        2,
        "feedback, idempotency keys, confirmed labels, review claims",
        r#"
CREATE TABLE feedback (
    id               bigserial PRIMARY KEY,
    created_at       text NOT NULL,
    user_id          text,
    model_version    integer CHECK (model_version > 0),
    probability      double precision,
    predicted        smallint CHECK (predicted IN (0, 1)),
    true_label       smallint NOT NULL CHECK (true_label IN (0, 1)),
    notes            text NOT NULL DEFAULT '',
    origin           text NOT NULL,
    used_in_version  integer,
    claimed_by       text,
    moderator        text,
    prediction_id    text,
    -- The 51 raw values in catalog order; NaN where a value is missing.
    features         double precision[] NOT NULL
);
CREATE INDEX feedback_version ON feedback (model_version);
CREATE INDEX feedback_unused ON feedback (id) WHERE used_in_version IS NULL;
CREATE INDEX feedback_user ON feedback (user_id);
CREATE TABLE unlinked_feedback (
    id             bigserial PRIMARY KEY,
    created_at     text NOT NULL,
    prediction_id  text NOT NULL,
    is_correct     boolean NOT NULL,
    actual_label   smallint CHECK (actual_label IN (0, 1)),
    notes          text NOT NULL DEFAULT '',
    moderator      text NOT NULL
);
CREATE TABLE feedback_keys (
    caller       text NOT NULL,
    key          text NOT NULL,
    body_hash    text NOT NULL,
    linked       boolean NOT NULL,
    feedback_id  bigint NOT NULL,
    created_at   text NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX feedback_keys_created ON feedback_keys (created_at);
CREATE TABLE confirmed_labels (
    user_id       text PRIMARY KEY,
    label         smallint NOT NULL CHECK (label IN (0, 1)),
    confirmed_by  text NOT NULL,
    confirmed_at  text NOT NULL,
    notes         text NOT NULL DEFAULT ''
);
CREATE TABLE review_claims (
    user_id     text PRIMARY KEY,
    moderator   text NOT NULL,
    claimed_at  bigint NOT NULL,
    expires_at  bigint NOT NULL
);
"#,
    ),
    (
        3,
        "the prediction log, partitioned by day",
        r#"
CREATE TABLE predictions (
    id                 text NOT NULL,
    created_at         text NOT NULL,
    -- The day (UTC) of created_at, in days since 1970-01-01: the partition key.
    logged_day         integer NOT NULL,
    version            integer NOT NULL,
    probability        double precision NOT NULL,
    caller             text NOT NULL,
    user_id            text,
    -- The 51 raw values in catalog order; NaN where a value is missing.
    features           double precision[] NOT NULL,
    experiment         text,
    other_version      integer,
    other_probability  double precision,
    -- Order of arrival across replicas (the newest rows, an experiment's rows in order).
    seq                bigserial NOT NULL,
    PRIMARY KEY (id, logged_day)
) PARTITION BY RANGE (logged_day);
CREATE INDEX predictions_seq ON predictions (seq);
CREATE INDEX predictions_experiment ON predictions (experiment) WHERE experiment IS NOT NULL;
"#,
    ),
    (
        4,
        "background jobs (retrains), one of a kind at a time across replicas",
        r#"
CREATE TABLE jobs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    state       text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    stage       text NOT NULL,
    done        bigint NOT NULL,
    total       bigint NOT NULL,
    started_by  text NOT NULL,
    result      text,
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_running ON jobs (kind) WHERE state = 'running';
"#,
    ),
    (
        5,
        "alerts sent, so that replicas send each kind once per window",
        r#"
CREATE TABLE alerts_sent (
    kind     text PRIMARY KEY,
    sent_at  timestamptz NOT NULL
);
"#,
    ),
    (
        6,
        "decisions of the live and shadow policies in the prediction log, review times",
        r#"
ALTER TABLE predictions
    ADD COLUMN policy_version         integer,
    ADD COLUMN decision               text,
    -- A JSON list of the names of the rules that matched.
    ADD COLUMN matched_rules          text,
    ADD COLUMN shadow_policy_version  integer,
    ADD COLUMN shadow_decision        text,
    ADD COLUMN shadow_matched_rules   text;
CREATE INDEX predictions_user ON predictions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX predictions_decision ON predictions (decision, seq) WHERE decision IS NOT NULL;
CREATE INDEX predictions_shadow ON predictions (shadow_policy_version)
    WHERE shadow_policy_version IS NOT NULL;
CREATE TABLE review_times (
    id          bigserial PRIMARY KEY,
    user_id     text NOT NULL,
    moderator   text NOT NULL,
    claimed_at  bigint NOT NULL,
    decided_at  bigint NOT NULL
);
CREATE INDEX review_times_decided ON review_times (decided_at);
"#,
    ),
];

/// The newest schema this program knows.
pub fn current() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Any number: the advisory lock that makes one process at a time migrate.
const MIGRATION_LOCK: i64 = 0x5350_414d_5343_4f50; // "SPAMSCOP"

/// The schema version recorded in the database (0: none yet).
pub fn version_of(c: &mut impl postgres::GenericClient) -> Result<i32, postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('spamscope_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    c.query_one(
        "SELECT coalesce(max(version), 0) FROM spamscope_schema",
        &[],
    )
    .map(|r| r.get(0))
}

/// Brings the database's schema to [`current`]; refuses one newer than that.
/// Returns the migrations applied (their numbers).
pub fn migrate(c: &mut postgres::Client) -> Result<Vec<i32>, DbError> {
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: postgres::Error| {
            DbError::new(super::kind(&e), format!("{what}: {}", super::message(&e)))
        }
    };
    // Most opens find the schema current: check without a lock or a write first.
    let found = version_of(c).map_err(fail("reading the schema version"))?;
    refuse_newer(found)?;
    if found == current() {
        return Ok(Vec::new());
    }
    let mut tx = c.transaction().map_err(fail("migrating the schema"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(fail("waiting for another process's migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS spamscope_schema (
            version     integer PRIMARY KEY,
            description text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(fail("creating the schema table"))?;
    let found = version_of(&mut tx).map_err(fail("reading the schema version"))?;
    refuse_newer(found)?;
    let mut applied = Vec::new();
    for (n, what, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql)
            .map_err(fail(&format!("schema migration {n} ({what})")))?;
        tx.execute(
            "INSERT INTO spamscope_schema (version, description) VALUES ($1, $2)",
            &[n, what],
        )
        .map_err(fail(&format!("recording schema migration {n}")))?;
        applied.push(*n);
    }
    tx.commit()
        .map_err(fail("committing the schema migration"))?;
    Ok(applied)
}

fn refuse_newer(found: i32) -> Result<(), DbError> {
    if found > current() {
        return Err(DbError::new(
            ErrorKind::Invalid,
            format!(
                "the database's schema is version {found}, newer than this spamscope knows ({}); run a spamscope at least as new as the one that migrated it",
                current()
            ),
        ));
    }
    Ok(())
}
