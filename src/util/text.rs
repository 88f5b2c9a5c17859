//! Text for one-line messages: a value from a file or a request is quoted, never pasted
//! whole, so a hostile 1 MB cell cannot flood an error line.

/// Characters of a value a message quotes at most.
pub const QUOTE_CHARS: usize = 80;

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

#[cfg(test)]
mod tests {
    use super::*;

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
