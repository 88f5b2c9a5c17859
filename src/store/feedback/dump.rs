//! The feedback store's six tables as plain rows, the same whichever backend holds
//! them: what `spamscope store migrate` copies between a registry folder and a shared
//! store (ids kept, so idempotency keys still point at their records), and the tallies
//! it checks the copy with.

use super::{Backend, FeedbackError, FeedbackStore, Local, feature_columns, shared::Shared};
use crate::data::catalog::N_FEATURES;
use crate::util::hash::Tally;

/// How a column is read and written on either backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
    /// 0/1 in SQLite, boolean in PostgreSQL; read as an integer 0 or 1.
    Bool,
    /// The 51 raw values: `x1..x51` in SQLite, a `double precision[]` in PostgreSQL.
    Features,
}

/// One column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// NaN where a value is missing.
    Features(Vec<f64>),
}

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The column a PostgreSQL sequence numbers (set past the copied ids).
    serial: Option<&'static str>,
}

use Kind::*;

const TABLES: [Table; 6] = [
    Table {
        name: "feedback",
        columns: &[
            ("id", Int),
            ("created_at", Text),
            ("user_id", Text),
            ("model_version", Int),
            ("probability", Real),
            ("predicted", Int),
            ("true_label", Int),
            ("notes", Text),
            ("origin", Text),
            ("used_in_version", Int),
            ("claimed_by", Text),
            ("moderator", Text),
            ("prediction_id", Text),
            ("features", Features),
        ],
        serial: Some("id"),
    },
    Table {
        name: "unlinked_feedback",
        columns: &[
            ("id", Int),
            ("created_at", Text),
            ("prediction_id", Text),
            ("is_correct", Bool),
            ("actual_label", Int),
            ("notes", Text),
            ("moderator", Text),
        ],
        serial: Some("id"),
    },
    Table {
        name: "feedback_keys",
        columns: &[
            ("caller", Text),
            ("key", Text),
            ("body_hash", Text),
            ("linked", Bool),
            ("feedback_id", Int),
            ("created_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "confirmed_labels",
        columns: &[
            ("user_id", Text),
            ("label", Int),
            ("confirmed_by", Text),
            ("confirmed_at", Text),
            ("notes", Text),
        ],
        serial: None,
    },
    Table {
        name: "review_claims",
        columns: &[
            ("user_id", Text),
            ("moderator", Text),
            ("claimed_at", Int),
            ("expires_at", Int),
        ],
        serial: None,
    },
    Table {
        name: "review_times",
        columns: &[
            ("id", Int),
            ("user_id", Text),
            ("moderator", Text),
            ("claimed_at", Int),
            ("decided_at", Int),
        ],
        serial: Some("id"),
    },
];

/// The rows of every table of a feedback store.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    rows: Vec<Vec<Vec<Value>>>,
}

impl Tables {
    /// Each table's name, rows and tally, in a fixed order.
    pub fn summary(&self) -> Vec<(&'static str, Tally)> {
        TABLES
            .iter()
            .zip(&self.rows)
            .map(|(t, rows)| {
                let mut tally = Tally::default();
                let mut buf = Vec::new();
                for row in rows {
                    buf.clear();
                    encode(row, &mut buf);
                    tally.add(&buf);
                }
                (t.name, tally)
            })
            .collect()
    }

    /// Whether every table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.iter().all(|r| r.is_empty())
    }

    /// Rows in all tables.
    pub fn len(&self) -> usize {
        self.rows.iter().map(|r| r.len()).sum()
    }
}

/// A row's canonical bytes: a tag and the value per column (NaN as one pattern), so
/// equal rows read from either backend give equal bytes.
fn encode(row: &[Value], out: &mut Vec<u8>) {
    let real = |v: f64| if v.is_nan() { f64::NAN } else { v }.to_bits();
    for v in row {
        match v {
            Value::Null => out.push(0),
            Value::Int(i) => {
                out.push(1);
                out.extend(i.to_le_bytes());
            }
            Value::Real(r) => {
                out.push(2);
                out.extend(real(*r).to_le_bytes());
            }
            Value::Text(s) => {
                out.push(3);
                out.extend((s.len() as u64).to_le_bytes());
                out.extend(s.as_bytes());
            }
            Value::Features(f) => {
                out.push(4);
                out.extend((f.len() as u64).to_le_bytes());
                for x in f {
                    out.extend(real(*x).to_le_bytes());
                }
            }
        }
    }
}

impl FeedbackStore {
    /// Every row of every table (a consistent snapshot: one read transaction).
    pub fn export_tables(&self) -> Result<Tables, FeedbackError> {
        match &self.backend {
            Backend::Local(l) => l.export(),
            Backend::Shared(s) => s.export(),
        }
    }

    /// Writes `tables` into this store, ids and all, in one transaction. Refused
    /// unless every table here is empty (a copy never mixes two stores' records).
    pub fn import_tables(&mut self, tables: &Tables) -> Result<(), FeedbackError> {
        match &mut self.backend {
            Backend::Local(l) => l.import(tables),
            Backend::Shared(s) => s.import(tables),
        }
    }
}

fn not_empty(shown: String, table: &str) -> FeedbackError {
    FeedbackError::other(
        &shown,
        format!("table {table} already holds rows; a copy goes into an empty store"),
    )
}

impl Local {
    /// The SQLite columns of a table: the features spread over `x1..x51`.
    fn sqlite_columns(t: &Table) -> Vec<String> {
        let mut out = Vec::new();
        for (c, k) in t.columns {
            match k {
                Features => out.extend(feature_columns()),
                _ => out.push((*c).to_string()),
            }
        }
        out
    }

    fn export(&self) -> Result<Tables, FeedbackError> {
        use rusqlite::types::ValueRef;
        let e = |e: rusqlite::Error| self.err(e);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        let mut rows = Vec::new();
        for t in &TABLES {
            let sql = format!(
                "SELECT {} FROM {} ORDER BY rowid",
                Local::sqlite_columns(t).join(", "),
                t.name
            );
            let mut stmt = tx.prepare(&sql).map_err(e)?;
            let mut q = stmt.query([]).map_err(e)?;
            let mut table = Vec::new();
            while let Some(r) = q.next().map_err(e)? {
                let mut row = Vec::with_capacity(t.columns.len());
                let mut i = 0;
                for (name, k) in t.columns {
                    let bad = |what: &str| {
                        FeedbackError::of(
                            &self.path.display().to_string(),
                            format!(
                                "table {}, column {name}: {what}; the database is damaged",
                                t.name
                            ),
                        )
                    };
                    if *k == Features {
                        let mut f = Vec::with_capacity(N_FEATURES);
                        for _ in 0..N_FEATURES {
                            f.push(match r.get_ref(i).map_err(e)? {
                                ValueRef::Null => f64::NAN,
                                ValueRef::Real(x) => x,
                                ValueRef::Integer(x) => x as f64,
                                _ => return Err(bad("a feature that is not a number")),
                            });
                            i += 1;
                        }
                        row.push(Value::Features(f));
                        continue;
                    }
                    let v = match (k, r.get_ref(i).map_err(e)?) {
                        (_, ValueRef::Null) => Value::Null,
                        (Int | Bool, ValueRef::Integer(x)) => Value::Int(x),
                        (Real, ValueRef::Real(x)) => Value::Real(x),
                        (Real, ValueRef::Integer(x)) => Value::Real(x as f64),
                        (Text, ValueRef::Text(s)) => {
                            Value::Text(String::from_utf8_lossy(s).into_owned())
                        }
                        (Text, ValueRef::Integer(x)) => Value::Text(x.to_string()),
                        _ => return Err(bad("a value of the wrong type")),
                    };
                    row.push(v);
                    i += 1;
                }
                table.push(row);
            }
            rows.push(table);
        }
        Ok(Tables { rows })
    }

    fn import(&mut self, tables: &Tables) -> Result<(), FeedbackError> {
        use rusqlite::types::Value as V;
        let path = self.path.display().to_string();
        let e = |e: rusqlite::Error| FeedbackError::of(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for (t, rows) in TABLES.iter().zip(&tables.rows) {
            let any: bool = tx
                .query_row(
                    &format!("SELECT EXISTS (SELECT 1 FROM {})", t.name),
                    [],
                    |r| r.get(0),
                )
                .map_err(e)?;
            if any {
                return Err(not_empty(path.clone(), t.name));
            }
            let cols = Local::sqlite_columns(t);
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                t.name,
                cols.join(", "),
                (1..=cols.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut stmt = tx.prepare(&sql).map_err(e)?;
            let mut values: Vec<V> = Vec::with_capacity(cols.len());
            for row in rows {
                values.clear();
                for v in row {
                    match v {
                        Value::Null => values.push(V::Null),
                        Value::Int(i) => values.push(V::Integer(*i)),
                        Value::Real(r) => values.push(V::Real(*r)),
                        Value::Text(s) => values.push(V::Text(s.clone())),
                        Value::Features(f) => values.extend(
                            f.iter()
                                .map(|&x| if x.is_nan() { V::Null } else { V::Real(x) }),
                        ),
                    }
                }
                stmt.execute(rusqlite::params_from_iter(values.drain(..)))
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }
}

impl Shared {
    fn export(&self) -> Result<Tables, FeedbackError> {
        let mut c = self.conn()?;
        let fail = self.fail("reading the feedback tables");
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(&fail)?;
        let mut rows = Vec::new();
        for t in &TABLES {
            let cols: Vec<String> = t
                .columns
                .iter()
                .map(|(c, k)| match k {
                    Int => format!("{c}::bigint"),
                    Bool => format!("{c}::int::bigint"),
                    _ => (*c).to_string(),
                })
                .collect();
            let sql = format!("SELECT {} FROM {}", cols.join(", "), t.name);
            let mut table = Vec::new();
            for r in tx.query(&sql, &[]).map_err(&fail)? {
                let mut row = Vec::with_capacity(t.columns.len());
                for (i, (_, k)) in t.columns.iter().enumerate() {
                    let v = match k {
                        Int | Bool => r
                            .try_get::<_, Option<i64>>(i)
                            .map_err(&fail)?
                            .map_or(Value::Null, Value::Int),
                        Real => r
                            .try_get::<_, Option<f64>>(i)
                            .map_err(&fail)?
                            .map_or(Value::Null, Value::Real),
                        Text => r
                            .try_get::<_, Option<String>>(i)
                            .map_err(&fail)?
                            .map_or(Value::Null, Value::Text),
                        Features => Value::Features(r.try_get(i).map_err(&fail)?),
                    };
                    row.push(v);
                }
                table.push(row);
            }
            rows.push(table);
        }
        tx.commit().map_err(&fail)?;
        Ok(Tables { rows })
    }

    fn import(&mut self, tables: &Tables) -> Result<(), FeedbackError> {
        use postgres::types::ToSql;
        let mut c = self.conn()?;
        let fail = self.fail("copying into the feedback tables");
        let mut tx = c.transaction().map_err(&fail)?;
        for (t, rows) in TABLES.iter().zip(&tables.rows) {
            let any: bool = tx
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", t.name), &[])
                .map_err(&fail)?
                .get(0);
            if any {
                return Err(not_empty(self.shown(), t.name));
            }
            let values: Vec<String> = t
                .columns
                .iter()
                .enumerate()
                .map(|(i, (_, k))| match k {
                    Int => format!("${}::bigint", i + 1),
                    Bool => format!("(${}::bigint <> 0)", i + 1),
                    Real => format!("${}::float8", i + 1),
                    Text => format!("${}::text", i + 1),
                    Features => format!("${}::float8[]", i + 1),
                })
                .collect();
            let names: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
            let stmt = tx
                .prepare(&format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    t.name,
                    names.join(", "),
                    values.join(", ")
                ))
                .map_err(&fail)?;
            for row in rows {
                let params: Vec<Box<dyn ToSql + Sync>> = row
                    .iter()
                    .zip(t.columns)
                    .map(|(v, (_, k))| -> Box<dyn ToSql + Sync> {
                        match (v, k) {
                            (Value::Null, Int | Bool) => Box::new(None::<i64>),
                            (Value::Null, Real) => Box::new(None::<f64>),
                            (Value::Null, _) => Box::new(None::<String>),
                            (Value::Int(i), _) => Box::new(*i),
                            (Value::Real(r), _) => Box::new(*r),
                            (Value::Text(s), _) => Box::new(s.clone()),
                            (Value::Features(f), _) => Box::new(f.clone()),
                        }
                    })
                    .collect();
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
                tx.execute(&stmt, &refs).map_err(&fail)?;
            }
            if let Some(col) = t.serial {
                // The next record gets the id after the copied ones.
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{0}', '{col}'),
                                       coalesce((SELECT max({col}) FROM {0}), 1),
                                       (SELECT max({col}) FROM {0}) IS NOT NULL)",
                        t.name
                    ),
                    &[],
                )
                .map_err(&fail)?;
            }
        }
        tx.commit().map_err(&fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::feedback::{IdempotencyKey, NewFeedback, Origin, Submission};

    fn record(user: &str, label: u8) -> NewFeedback {
        let mut features = vec![0.5; N_FEATURES];
        features[3] = f64::NAN;
        NewFeedback {
            user_id: Some(crate::data::UserId::from(user)),
            features,
            true_label: label,
            probability: Some(0.25),
            model_version: Some(1),
            predicted: Some(0),
            notes: "n".into(),
            origin: Origin::Service,
        }
    }

    #[test]
    fn a_sqlite_store_copies_into_another_with_its_ids_and_the_same_tallies() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = FeedbackStore::open(&dir.path().join("a.db")).unwrap();
        a.add(&record("10000001", 1)).unwrap();
        a.add(&record("10000002", 0)).unwrap();
        let key = IdempotencyKey::new("k-1", "svc", "h").unwrap();
        a.add_submissions(&[Submission::Linked {
            record: record("10000003", 1),
            moderator: Some("mod".into()),
            prediction_id: Some("p-1".into()),
            key: Some(key),
        }])
        .unwrap();
        let tables = a.export_tables().unwrap();
        assert_eq!(tables.summary()[0].1.rows, 3);
        assert_eq!(tables.summary()[2].1.rows, 1);

        let mut b = FeedbackStore::open(&dir.path().join("b.db")).unwrap();
        b.import_tables(&tables).unwrap();
        let back = b.export_tables().unwrap();
        assert_eq!(back.summary(), tables.summary());
        // Ids, values and NaN kept (Debug text: NaN compares equal there).
        assert_eq!(
            format!("{:?}", b.records(false).unwrap()),
            format!("{:?}", a.records(false).unwrap())
        );
        // A second copy into the same store is refused and changes nothing.
        let err = b.import_tables(&tables).unwrap_err().to_string();
        assert!(err.contains("feedback already holds rows"), "{err}");
        assert_eq!(b.export_tables().unwrap().summary(), tables.summary());
        // A changed row changes its table's tally.
        let mut changed = tables.clone();
        changed.rows[0][1][6] = Value::Int(1);
        assert_ne!(changed.summary()[0], tables.summary()[0]);
        assert_eq!(changed.summary()[1..], tables.summary()[1..]);
    }
}
