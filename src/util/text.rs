//! Text for one-line messages: a value from a file or a request is quoted, never pasted
//! whole, so a hostile 1 MB cell cannot flood an error line.

/// Characters of a value a message quotes at most.
pub const QUOTE_CHARS: usize = 80;

/// `s` on one line: every run of whitespace (newlines too) as one space.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `value` in quotes (escaped like Rust's `{:?}`); longer than [`QUOTE_CHARS`]
/// characters, its start and how long it was.
pub fn quote(value: &str) -> String {
    let n = value.chars().count();
    if n <= QUOTE_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(QUOTE_CHARS).collect();
    format!("{head:?}… ({n} characters)")
}

/// `value` as it is, or, longer than [`QUOTE_CHARS`] characters, its start and how
/// long it was (for names shown without quotes, such as a column's).
pub fn clip(value: &str) -> String {
    let n = value.chars().count();
    if n <= QUOTE_CHARS {
        return value.to_string();
    }
    let head: String = value.chars().take(QUOTE_CHARS).collect();
    format!("{head}… ({n} characters)")
}

/// Up to `most` of `names` (each clipped), then how many more there were.
pub fn list(names: &[String], most: usize) -> String {
    let mut s: Vec<String> = names.iter().take(most).map(|n| clip(n)).collect();
    if names.len() > most {
        s.push(format!("and {} more", names.len() - most));
    }
    s.join(", ")
}

/// First characters that make a spreadsheet read a cell as a formula (OWASP's "CSV
/// injection" list): `=`, `+`, `-`, `@`, tab and carriage return.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One text cell for a CSV file the program writes: a cell that a spreadsheet would
/// read as a formula (it starts with `=`, `+`, `-`, `@`, tab or carriage return) gets
/// a single quote `'` in front, as OWASP recommends, and a cell holding a comma, a
/// double quote or a line break is then quoted per RFC 4180 (quotes doubled).
///
/// For text that came from input or may hold anything (user ids, notes). Numbers the
/// program formats itself (probabilities, contributions such as `-0.0123`) are not
/// passed through it: they are numbers, and a quote would make them text.
pub fn csv_cell(value: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let formula = value.starts_with(FORMULA_STARTS);
    let special = value.contains([',', '"', '\n', '\r']);
    if !formula && !special {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 3);
    if special {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if special {
        out.push('"');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralised_and_quoted() {
        assert_eq!(csv_cell("u-123"), "u-123");
        assert_eq!(csv_cell("00123"), "00123");
        assert_eq!(csv_cell("550e8400-e29b-41d4"), "550e8400-e29b-41d4");
        assert!(matches!(csv_cell("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-2+3"), "'-2+3");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell(""), "");
    }

    #[test]
    fn short_values_are_quoted_whole_and_long_ones_cut() {
        assert_eq!(quote("abc"), "\"abc\"");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(10_000);
        let q = quote(&long);
        assert!(q.len() < 120, "{q}");
        assert!(q.ends_with("… (10000 characters)"), "{q}");
        // Cut on characters, not bytes: multi-byte text does not split a character.
        let wide = "é".repeat(200);
        assert_eq!(
            quote(&wide),
            format!("{:?}… (200 characters)", "é".repeat(80))
        );
        assert_eq!(clip("X5"), "X5");
        assert!(clip(&long).ends_with("… (10000 characters)"));
        let names: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
        let l = list(&names, 10);
        assert_eq!(l, "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, and 99990 more");
        assert_eq!(list(&names[..2], 10), "c0, c1");
    }
}
