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
        assert!(quote(&wide).starts_with(&format!("{:?}", "é".repeat(80))[..10]));
    }
}
