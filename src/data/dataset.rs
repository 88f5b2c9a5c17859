//! Datasets: the schema `label,user_id,X1..X51`, loading CSV files through polars with
//! errors that name the file, line and column, and the provenance of loaded data.

use crate::data::catalog::{N_FEATURES, catalog};
use crate::util::text::quote;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// A user id: text, kept as read (trimmed) from the file to every output, so "00123"
/// stays "00123" and UUIDs, hashes and handles work as well as integers. Shared, so
/// subsets, holdouts and the review queue copy a pointer, not the text.
pub type UserId = std::sync::Arc<str>;

/// The longest user id accepted, in bytes of UTF-8 (after trimming).
pub const MAX_USER_ID_BYTES: usize = 256;

/// Why `id` (already trimmed) is not a valid user id, if it is not: empty, longer than
/// [`MAX_USER_ID_BYTES`], or holding a control character (a NUL truncates the field in
/// C-based readers of the files we write; a CR or LF splits log lines). The message
/// quotes at most 80 characters of it, control characters escaped.
pub fn user_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("user id is empty (or only spaces)".to_string());
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Some(format!(
            "user id {} holds the control character {}; user ids are printable text",
            quote(id),
            c.escape_unicode()
        ));
    }
    if id.len() > MAX_USER_ID_BYTES {
        return Some(format!(
            "user id {} is {} bytes long; at most {MAX_USER_ID_BYTES} are allowed",
            quote(id),
            id.len()
        ));
    }
    None
}

/// A user id from an integer (the synthetic data's ids).
pub fn user_id_from_int(id: i64) -> UserId {
    UserId::from(id.to_string())
}

/// A data problem, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DataError {
    /// The file (or a description of the in-memory source).
    pub file: String,
    /// 1-based line in the file (the header is line 1).
    pub line: Option<usize>,
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ": line {l}")?;
        }
        if let Some(c) = &self.column {
            write!(f, ", column {}", crate::util::text::clip(c))?;
        }
        write!(f, ": {}", self.message)
    }
}

impl DataError {
    pub fn new(file: &str, message: impl Into<String>) -> Self {
        DataError {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.into(),
        }
    }
    fn at(file: &str, line: usize, column: &str, message: impl Into<String>) -> Self {
        DataError {
            file: file.to_string(),
            line: Some(line),
            column: Some(column.to_string()),
            message: message.into(),
        }
    }
}

/// Where a dataset came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceKind {
    /// The built-in synthetic generator.
    Synthetic { seed: u64, rows: usize },
    /// A CSV file.
    Csv { path: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    pub kind: SourceKind,
    /// SHA-256 of the CSV bytes (for synthetic data: of the CSV `gen-data` writes).
    pub sha256: String,
}

impl DataSource {
    pub fn is_synthetic(&self) -> bool {
        matches!(self.kind, SourceKind::Synthetic { .. })
    }

    /// A one-line description for banners and manifests.
    pub fn describe(&self) -> String {
        match &self.kind {
            SourceKind::Synthetic { seed, rows } => format!(
                "synthetic default data ({rows} generated accounts, seed {seed:#x}; calibrated to the published statistics, not real accounts)"
            ),
            SourceKind::Csv { path } => format!("CSV file {path}"),
        }
    }
}

/// A table of accounts: 51 feature columns (NaN = missing), user ids and optional labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub source: DataSource,
    pub user_ids: Vec<UserId>,
    /// 0/1 per row; `None` for scoring files without a `label` column.
    pub labels: Option<Vec<u8>>,
    /// `columns[f][row]`, feature X(f+1).
    pub columns: Vec<Vec<f64>>,
    /// Non-fatal findings (values outside the catalog's ranges, ignored columns).
    pub warnings: Vec<String>,
}

impl Dataset {
    pub fn n_rows(&self) -> usize {
        self.user_ids.len()
    }

    /// The 51 values of one row.
    pub fn row(&self, i: usize) -> Vec<f64> {
        self.columns.iter().map(|c| c[i]).collect()
    }

    pub fn column_refs(&self) -> Vec<&[f64]> {
        self.columns.iter().map(Vec::as_slice).collect()
    }

    /// Row index of a user id (compared as text, after trimming `user_id`).
    pub fn find_user(&self, user_id: &str) -> Option<usize> {
        let user_id = user_id.trim();
        self.user_ids.iter().position(|u| &**u == user_id)
    }

    /// Count of positive labels (0 without labels).
    pub fn positives(&self) -> usize {
        self.labels
            .as_ref()
            .map_or(0, |l| l.iter().filter(|&&v| v == 1).count())
    }

    /// Missing values per feature.
    pub fn missing_counts(&self) -> Vec<usize> {
        self.columns
            .iter()
            .map(|c| c.iter().filter(|v| v.is_nan()).count())
            .collect()
    }

    /// The labels, or an error if this file has none.
    pub fn require_labels(&self) -> Result<&[u8], DataError> {
        self.labels
            .as_deref()
            .ok_or_else(|| DataError::new(&self.source_name(), "has no label column"))
    }

    /// Labels with both classes present (needed to train or evaluate).
    pub fn require_both_classes(&self) -> Result<&[u8], DataError> {
        let labels = self.require_labels()?;
        let pos = labels.iter().filter(|&&l| l == 1).count();
        if pos == 0 || pos == labels.len() {
            let only = if pos == 0 { 0 } else { 1 };
            return Err(DataError::new(
                &self.source_name(),
                format!(
                    "every label is {only}; training and evaluation need both spammers (1) and legitimate accounts (0)"
                ),
            ));
        }
        Ok(labels)
    }

    /// The rows at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        Dataset {
            source: self.source.clone(),
            user_ids: idx.iter().map(|&i| self.user_ids[i].clone()).collect(),
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            columns: self
                .columns
                .iter()
                .map(|c| idx.iter().map(|&i| c[i]).collect())
                .collect(),
            warnings: Vec::new(),
        }
    }

    pub fn source_name(&self) -> String {
        match &self.source.kind {
            SourceKind::Csv { path } => path.clone(),
            SourceKind::Synthetic { .. } => "synthetic data".to_string(),
        }
    }

    /// Loads a CSV file with the schema `label,user_id,X1..X51` (`label` optional,
    /// any column order, extra columns ignored with a warning).
    pub fn load_csv(path: &Path) -> Result<Dataset, DataError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| DataError::new(&name, e.to_string()))?;
        Dataset::parse_csv(bytes, &name)
    }

    /// Parses CSV bytes; `name` is used in messages and as the source path.
    pub fn parse_csv(bytes: Vec<u8>, name: &str) -> Result<Dataset, DataError> {
        let sha256 = crate::util::hash::sha256_hex(&bytes);
        let header = Header::parse(&bytes, name)?;
        check_field_counts(&bytes, &header, name)?;
        let df = read_with_polars(bytes.clone(), &header).map_err(|e| {
            // Polars' message lacks the line; find the offending cell ourselves.
            diagnose(&bytes, &header, name).unwrap_or_else(|| DataError::new(name, e.to_string()))
        })?;
        if df.height() == 0 {
            return Err(DataError::new(name, "has a header but no data rows"));
        }
        let mut warnings = Vec::new();
        if !header.ignored.is_empty() {
            warnings.push(format!(
                "ignored columns: {}",
                crate::util::text::list(&header.ignored, 10)
            ));
        }
        let labels = if header.has_label {
            Some(read_labels(&df, name)?)
        } else {
            None
        };
        let user_ids = read_user_ids(&df, name)?;
        let cat = catalog();
        let mut columns = Vec::with_capacity(N_FEATURES);
        for f in &cat.features {
            let col = float_column(&df, &f.id, name)?;
            let mut out = Vec::with_capacity(col.len());
            let mut outside = 0usize;
            let mut first_outside = 0usize;
            for (i, v) in col.iter().enumerate() {
                match v {
                    None => out.push(f64::NAN),
                    Some(x) if x.is_nan() => {
                        return Err(DataError::at(
                            name,
                            i + 2,
                            &f.id,
                            "NaN is not a value; leave the cell empty for a missing value",
                        ));
                    }
                    Some(x) if x.is_infinite() => {
                        return Err(DataError::at(
                            name,
                            i + 2,
                            &f.id,
                            format!("{x} is not a finite number (too large?)"),
                        ));
                    }
                    Some(x) => {
                        if x < f.min || x > f.max {
                            if outside == 0 {
                                first_outside = i + 2;
                            }
                            outside += 1;
                        }
                        out.push(x);
                    }
                }
            }
            if outside > 0 {
                warnings.push(format!(
                    "{} ({}): {outside} value(s) outside the published range {}..{} (first on line {first_outside})",
                    f.id, f.name, f.min, f.max
                ));
            }
            columns.push(out);
        }
        Ok(Dataset {
            source: DataSource {
                kind: SourceKind::Csv {
                    path: name.to_string(),
                },
                sha256,
            },
            user_ids,
            labels,
            columns,
            warnings,
        })
    }
}

/// The header line, validated against the schema.
struct Header {
    names: Vec<String>,
    has_label: bool,
    ignored: Vec<String>,
}

impl Header {
    fn parse(bytes: &[u8], name: &str) -> Result<Header, DataError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(DataError::new(name, "is empty"));
        }
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
        let line = std::str::from_utf8(&text[..end])
            .map_err(|_| DataError::new(name, "the header line is not UTF-8 text"))?;
        let names: Vec<String> = split_fields(line.trim_end_matches('\r'))
            .into_iter()
            .map(|s| s.trim().to_string())
            .collect();
        for (i, n) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|m| m == n) {
                return Err(DataError {
                    file: name.to_string(),
                    line: Some(1),
                    column: Some(n.clone()),
                    message: format!("column appears twice (positions {} and {})", j + 1, i + 1),
                });
            }
        }
        let cat = catalog();
        let mut missing: Vec<&str> = Vec::new();
        if !names.iter().any(|n| n == "user_id") {
            missing.push("user_id");
        }
        for id in cat.ids() {
            if !names.iter().any(|n| n == id) {
                missing.push(id);
            }
        }
        if !missing.is_empty() {
            return Err(DataError {
                file: name.to_string(),
                line: Some(1),
                column: None,
                message: format!(
                    "missing column(s) {} (expected label,user_id,X1..X51)",
                    missing.join(", ")
                ),
            });
        }
        let known = |n: &str| n == "label" || n == "user_id" || cat.index_of(n).is_some();
        Ok(Header {
            has_label: names.iter().any(|n| n == "label"),
            ignored: names.iter().filter(|n| !known(n)).cloned().collect(),
            names,
        })
    }

    /// Columns we read, in file order.
    fn wanted(&self) -> Vec<&str> {
        let cat = catalog();
        self.names
            .iter()
            .map(String::as_str)
            .filter(|n| *n == "label" || *n == "user_id" || cat.index_of(n).is_some())
            .collect()
    }
}

/// Splits one CSV line on commas, honouring double quotes.
fn split_fields(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(unquote(&line[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(unquote(&line[start..]));
    out
}

fn unquote(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(s)
}

fn read_with_polars(bytes: Vec<u8>, header: &Header) -> PolarsResult<DataFrame> {
    let wanted = header.wanted();
    let mut schema = Schema::default();
    for n in &wanted {
        // User ids are text: "00123" must not become 123.
        let dtype = if *n == "user_id" {
            DataType::String
        } else {
            DataType::Float64
        };
        schema.with_column((*n).into(), dtype);
    }
    let columns: Arc<[PlSmallStr]> = wanted.iter().map(|n| PlSmallStr::from(*n)).collect();
    CsvReadOptions::default()
        .with_has_header(true)
        .with_schema_overwrite(Some(Arc::new(schema)))
        .with_columns(Some(columns))
        .with_raise_if_empty(false)
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish()
}

/// Polars fills short lines with nulls; a line with a different number of fields than
/// the header is an error here (a truncated or shifted row would otherwise load).
fn check_field_counts(bytes: &[u8], header: &Header, name: &str) -> Result<(), DataError> {
    let want = header.names.len();
    for (k, line) in bytes.split(|&b| b == b'\n').enumerate().skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields = if line.contains(&b'"') {
            split_fields(&String::from_utf8_lossy(line)).len()
        } else {
            line.iter().filter(|&&b| b == b',').count() + 1
        };
        if fields != want {
            return Err(DataError {
                file: name.to_string(),
                line: Some(k + 1),
                column: None,
                message: format!("has {fields} fields but the header has {want}"),
            });
        }
    }
    Ok(())
}

/// Finds the first cell polars could not parse: text in a numeric column, or a cell
/// that is not UTF-8.
fn diagnose(bytes: &[u8], header: &Header, name: &str) -> Option<DataError> {
    let text = String::from_utf8_lossy(bytes);
    let not_utf8 = std::str::from_utf8(bytes).is_err();
    let want: Vec<(usize, &str)> = header
        .names
        .iter()
        .enumerate()
        .filter(|(_, n)| header.wanted().contains(&n.as_str()))
        .map(|(i, n)| (i, n.as_str()))
        .collect();
    for (k, raw) in text.lines().enumerate().skip(1) {
        let line = k + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.is_empty() {
            continue;
        }
        // Field counts were checked before parsing (check_field_counts).
        let fields = split_fields(raw);
        for &(i, col) in &want {
            let Some(cell) = fields.get(i).map(|c| c.trim()) else {
                continue;
            };
            if cell.is_empty() {
                continue;
            }
            if not_utf8 && cell.contains('\u{FFFD}') {
                return Some(DataError::at(name, line, col, "the cell is not UTF-8 text"));
            }
            // Any UTF-8 text is a user id (checked in read_user_ids).
            if col != "user_id" && cell.parse::<f64>().is_err() {
                return Some(DataError::at(
                    name,
                    line,
                    col,
                    format!("{} is not a number", quote(cell)),
                ));
            }
        }
    }
    None
}

fn float_column(df: &DataFrame, col: &str, name: &str) -> Result<Float64Chunked, DataError> {
    df.column(col)
        .and_then(|c| c.cast(&DataType::Float64))
        .and_then(|c| c.f64().cloned())
        .map_err(|e| DataError::new(name, format!("column {col}: {e}")))
}

fn read_labels(df: &DataFrame, name: &str) -> Result<Vec<u8>, DataError> {
    let col = float_column(df, "label", name)?;
    let mut out = Vec::with_capacity(col.len());
    for (i, v) in col.iter().enumerate() {
        match v {
            Some(x) if x == 0.0 || x == 1.0 => out.push(x as u8),
            Some(x) => {
                return Err(DataError::at(
                    name,
                    i + 2,
                    "label",
                    format!("label must be 0 or 1, found {x}"),
                ));
            }
            None => return Err(DataError::at(name, i + 2, "label", "label is empty")),
        }
    }
    Ok(out)
}

/// The user ids as text, trimmed; each non-empty, at most [`MAX_USER_ID_BYTES`]
/// bytes, and unique.
fn read_user_ids(df: &DataFrame, name: &str) -> Result<Vec<UserId>, DataError> {
    let col = df
        .column("user_id")
        .and_then(|c| c.cast(&DataType::String))
        .map_err(|e| DataError::new(name, format!("column user_id: {e}")))?;
    let col = col
        .str()
        .map_err(|e| DataError::new(name, format!("column user_id: {e}")))?;
    let mut out: Vec<UserId> = Vec::with_capacity(col.len());
    for (i, v) in col.iter().enumerate() {
        let id = v.unwrap_or("").trim();
        if let Some(problem) = user_id_problem(id) {
            return Err(DataError::at(name, i + 2, "user_id", problem));
        }
        out.push(UserId::from(id));
    }
    let mut sorted: Vec<(&str, usize)> = out.iter().map(|u| &**u).zip(0..).collect();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(DataError::at(
            name,
            w[1].1 + 2,
            "user_id",
            format!(
                "user id {} also appears on line {}",
                quote(w[0].0),
                w[0].1 + 2
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        let mut h = "label,user_id".to_string();
        for c in 1..=51 {
            h.push_str(&format!(",X{c}"));
        }
        h
    }

    fn row(label: &str, uid: i64, x: impl fmt::Display) -> String {
        let mut r = format!("{label},{uid}");
        for c in 1..=51 {
            if c == 1 {
                r.push_str(&format!(",{x}"));
            } else {
                r.push_str(&format!(",{}", catalog().features[c - 1].min));
            }
        }
        r
    }

    fn csv(rows: &[String]) -> Vec<u8> {
        let mut s = header();
        for r in rows {
            s.push('\n');
            s.push_str(r);
        }
        s.push('\n');
        s.into_bytes()
    }

    #[test]
    fn loads_a_valid_file() {
        let d =
            Dataset::parse_csv(csv(&[row("0", 5, 100.0), row("1", 6, 200.0)]), "t.csv").unwrap();
        assert_eq!(d.n_rows(), 2);
        assert_eq!(d.labels, Some(vec![0, 1]));
        assert_eq!(d.user_ids, vec![UserId::from("5"), UserId::from("6")]);
        assert_eq!(d.columns[0], vec![100.0, 200.0]);
        assert_eq!(d.row(1).len(), 51);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert_eq!(d.source.sha256.len(), 64);
    }

    #[test]
    fn empty_cells_are_missing_and_label_is_optional() {
        let mut text = String::from_utf8(csv(&[row("0", 5, 100.0)])).unwrap();
        text = text.replacen(",100,", ",,", 1);
        let d = Dataset::parse_csv(text.clone().into_bytes(), "t.csv").unwrap();
        assert!(d.columns[0][0].is_nan());
        assert_eq!(d.missing_counts()[0], 1);
        // Without the label column.
        let no_label: String = text
            .lines()
            .map(|l| l.split_once(',').unwrap().1.to_string() + "\n")
            .collect();
        let d = Dataset::parse_csv(no_label.into_bytes(), "s.csv").unwrap();
        assert_eq!(d.labels, None);
        let e = d.require_labels().unwrap_err().to_string();
        assert!(
            e.contains("s.csv") && e.contains("has no label column"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = Dataset::parse_csv(Vec::new(), "e.csv").unwrap_err();
        assert_eq!(e.to_string(), "e.csv: is empty");
        let e = Dataset::parse_csv(csv(&[]), "h.csv").unwrap_err();
        assert!(e.message.contains("no data rows"));

        let mut text = String::from_utf8(csv(&[row("0", 1, 1.0), row("0", 2, 1.0)])).unwrap();
        text = text.replacen("0,2,1,", "0,2,abc,", 1);
        let e = Dataset::parse_csv(text.into_bytes(), "bad.csv").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(3), Some("X1")), "{e}");
        assert!(
            e.to_string().starts_with("bad.csv: line 3, column X1:"),
            "{e}"
        );

        let e = Dataset::parse_csv(csv(&[row("0", 1, f64::INFINITY)]), "inf.csv").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("X1")), "{e}");
        let e = Dataset::parse_csv(csv(&[row("0", 1, f64::NAN)]), "nan.csv").unwrap_err();
        assert!(e.message.contains("NaN"), "{e}");
        let e = Dataset::parse_csv(csv(&[row("0", 1, "1e999")]), "big.csv").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("X1"), "{e}");

        let e = Dataset::parse_csv(csv(&[row("2", 1, 1.0)]), "l.csv").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("label")));
        let e = Dataset::parse_csv(csv(&[row("", 1, 1.0)]), "l.csv").unwrap_err();
        assert!(e.message.contains("label is empty"));
        let e =
            Dataset::parse_csv(csv(&[row("0", 1, 1.0), row("1", 1, 1.0)]), "u.csv").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("also appears on line 2"), "{e}");

        let mut short = String::from_utf8(csv(&[row("0", 1, 1.0)])).unwrap();
        short = short.trim_end().rsplit_once(',').unwrap().0.to_string() + "\n";
        let e = Dataset::parse_csv(short.into_bytes(), "r.csv").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    /// A hostile cell (10 KB id, 1 MB number) or 100,000 extra columns make a short
    /// message: the value is quoted to 80 characters with its length.
    #[test]
    fn hostile_cells_and_headers_are_quoted_not_pasted() {
        let long_id = "u".repeat(10_000);
        let text = String::from_utf8(csv(&[row("0", 1, 1.0)])).unwrap();
        let hostile = text.replacen("\n0,1,", &format!("\n0,{long_id},"), 1);
        let e = Dataset::parse_csv(hostile.into_bytes(), "id.csv").unwrap_err();
        let msg = e.to_string();
        assert!(msg.len() < 300, "{} characters: {}", msg.len(), &msg[..300]);
        assert!(
            msg.contains("(10000 characters)") && msg.contains("user_id"),
            "{msg}"
        );

        let huge = "9".repeat(1_000_000) + "x";
        let e = Dataset::parse_csv(csv(&[row("0", 1, &huge)]), "num.csv").unwrap_err();
        let msg = e.to_string();
        assert!(msg.len() < 300, "{} characters", msg.len());
        assert!(msg.contains("(1000001 characters)"), "{msg}");

        let extra = 100_000;
        let names: String = (0..extra).map(|i| format!(",extra{i}")).collect();
        let values = ",0".repeat(extra);
        let wide: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| format!("{l}{}\n", if i == 0 { &names } else { &values }))
            .collect();
        let d = Dataset::parse_csv(wide.into_bytes(), "wide.csv").unwrap();
        let w = d
            .warnings
            .iter()
            .find(|w| w.starts_with("ignored columns"))
            .expect("a warning about the extra columns");
        assert!(w.len() < 300, "{} characters", w.len());
        assert!(w.ends_with("and 99990 more"), "{w}");
    }

    /// Ids with `uid` replaced on the data lines (each row's id is its line's).
    fn with_ids(ids: &[&str]) -> Vec<u8> {
        let rows: Vec<String> = (0..ids.len())
            .map(|k| row(&(k % 2).to_string(), 900 + k as i64, 1.0))
            .collect();
        let mut text = String::from_utf8(csv(&rows)).unwrap();
        for (k, id) in ids.iter().enumerate() {
            let (label, n) = (k % 2, 900 + k);
            text = text.replacen(&format!("\n{label},{n},"), &format!("\n{label},{id},"), 1);
        }
        text.into_bytes()
    }

    #[test]
    fn user_ids_are_text_kept_verbatim() {
        let ids = [
            "550e8400-e29b-41d4-a716-446655440000",
            "00123",
            "@handle_x",
            "\"=HYPERLINK(\"\"http://x\"\")\"",
            "  padded  ",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ];
        let d = Dataset::parse_csv(with_ids(&ids), "s.csv").unwrap();
        let got: Vec<&str> = d.user_ids.iter().map(|u| &**u).collect();
        assert_eq!(
            got,
            [
                "550e8400-e29b-41d4-a716-446655440000",
                "00123",
                "@handle_x",
                "=HYPERLINK(\"http://x\")",
                "padded",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ]
        );
        assert_eq!(d.find_user("00123"), Some(1));
        assert_eq!(d.find_user("123"), None);
        assert_eq!(d.find_user(" padded "), Some(4));
        // An id of exactly the maximum length loads.
        let max = "é".repeat(MAX_USER_ID_BYTES / 2);
        let d = Dataset::parse_csv(with_ids(&[&max, "b"]), "m.csv").unwrap();
        assert_eq!(&*d.user_ids[0], max);
    }

    #[test]
    fn bad_user_ids_are_one_line_errors_naming_line_and_column() {
        let long = "x".repeat(MAX_USER_ID_BYTES + 1);
        let e = Dataset::parse_csv(with_ids(&["a", "b", &long]), "long.csv").unwrap_err();
        assert_eq!(
            (e.line, e.column.as_deref()),
            (Some(4), Some("user_id")),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("long.csv: line 4, column user_id: user id \"xxx"),
            "{msg}"
        );
        assert!(msg.contains("(257 characters)") && msg.contains("257 bytes long"));
        assert!(msg.contains("at most 256"), "{msg}");
        assert!(!msg.contains('\n') && msg.len() < 250, "{msg}");

        for blank in ["   ", "\"  \"", ""] {
            let e = Dataset::parse_csv(with_ids(&["a", blank]), "w.csv").unwrap_err();
            assert_eq!(
                (e.line, e.column.as_deref()),
                (Some(3), Some("user_id")),
                "{e}"
            );
            assert!(e.message.contains("empty"), "{e}");
        }

        // Duplicates count after trimming, and name both lines.
        let e = Dataset::parse_csv(with_ids(&["u-1", "u-2", " u-1 "]), "d.csv").unwrap_err();
        assert_eq!(
            (e.line, e.column.as_deref()),
            (Some(4), Some("user_id")),
            "{e}"
        );
        assert!(
            e.message.contains("user id \"u-1\" also appears on line 2"),
            "{e}"
        );
        // "00123" and "123" are different ids.
        assert!(Dataset::parse_csv(with_ids(&["00123", "123"]), "z.csv").is_ok());

        // A control character (NUL, ESC, tab, DEL, the next-line U+0085) is refused on
        // its line, escaped in the one-line message. (A CR or LF inside a quoted cell is
        // refused before, by the CSV reader, as a line with too few fields.)
        for (id, shown) in [
            ("12\u{0}34", "\\0"),
            ("a\u{85}b", "\\u{85}"),
            ("del\u{7f}", "\\u{7f}"),
            ("x\u{1b}[31m", "\\u{1b}"),
            ("tab\there", "\\t"),
        ] {
            let e = Dataset::parse_csv(with_ids(&["ok", id]), "c.csv").unwrap_err();
            assert_eq!(
                (e.line, e.column.as_deref()),
                (Some(3), Some("user_id")),
                "{e}"
            );
            let msg = e.to_string();
            assert!(msg.contains("control character"), "{msg}");
            assert!(msg.contains(shown), "{msg} lacks {shown}");
            assert!(!msg.contains(|c: char| c.is_control()), "{msg:?}");
        }
    }

    #[test]
    fn header_problems() {
        let text = String::from_utf8(csv(&[row("0", 1, 1.0)])).unwrap();
        let missing = text.replacen(",X13,", ",X13b,", 1);
        let e = Dataset::parse_csv(missing.into_bytes(), "m.csv").unwrap_err();
        assert!(e.message.contains("missing column(s) X13"), "{e}");
        let dup = text.replacen(",X14,", ",X13,", 1);
        let e = Dataset::parse_csv(dup.into_bytes(), "d.csv").unwrap_err();
        assert_eq!(e.column.as_deref(), Some("X13"));
        assert!(e.message.contains("twice"));
    }

    #[test]
    fn warnings_for_out_of_range_values_and_extra_columns() {
        let mut text = String::from_utf8(csv(&[row("0", 1, 1.0), row("1", 2, 1.0)])).unwrap();
        text = text.replacen("label,", "note,label,", 1);
        let text: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 { l.to_string() } else { format!("x,{l}") } + "\n")
            .collect();
        // X8 = 99 on line 3 is outside 4..25 (field 11: note,label,user_id,X1..).
        let text: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let mut f: Vec<&str> = l.split(',').collect();
                if i == 2 {
                    f[10] = "99";
                }
                f.join(",") + "\n"
            })
            .collect();
        let d = Dataset::parse_csv(text.into_bytes(), "w.csv").unwrap();
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("ignored columns: note"))
        );
        assert!(
            d.warnings
                .iter()
                .any(|w| w.starts_with("X8") && w.contains("line 3")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn one_class_is_reported() {
        let d = Dataset::parse_csv(csv(&[row("0", 1, 1.0), row("0", 2, 1.0)]), "o.csv").unwrap();
        let e = d.require_both_classes().unwrap_err();
        assert!(e.message.contains("every label is 0"));
    }
}
