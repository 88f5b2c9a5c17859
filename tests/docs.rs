//! The README and the pages in `docs/` link to each other (issue 21): every relative link
//! or image must point at a file that exists, every `#anchor` at a heading of its page,
//! and every page in `docs/` must be linked from the README so none is orphaned.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, sorted.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The page's lines outside fenced and indented code blocks. With `blank_code` the text
/// of every inline code span is replaced by `code` (a `[..](..)` in code is not a link);
/// without it only the backticks are dropped (GitHub slugs a heading's code text too).
fn prose_lines(text: &str, blank_code: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fence: Option<&str> = None;
    let mut previous_blank = true;
    let mut in_indented_code = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        let blank = line.trim().is_empty();
        let indented = line.starts_with("    ") || line.starts_with('\t');
        // An indented line starts a code block only after a blank line (otherwise it
        // continues a paragraph or a list item).
        if indented && (previous_blank || in_indented_code) {
            in_indented_code = true;
            previous_blank = false;
            continue;
        }
        if !blank {
            in_indented_code = false;
        }
        previous_blank = blank;
        lines.push(if blank_code {
            blank_code_spans(line)
        } else {
            line.replace('`', "")
        });
    }
    lines
}

/// Replaces the text of every inline code span (`` `…` ``, any run of backticks) by
/// `code`, keeping the rest of the line.
fn blank_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        match after.find(&"`".repeat(ticks)) {
            Some(end) => {
                out.push_str("code");
                rest = &after[end + ticks..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the reference definitions (`[id]: target`), then of the inline links
/// and images (`[text](target "title")`, the text may wrap over lines of its paragraph)
/// on the page.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut paragraphs = vec![String::new()];
    for line in prose_lines(text, true) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            paragraphs.push(String::new());
            continue;
        }
        // Reference definition: `[id]: target`.
        if trimmed.starts_with('[')
            && let Some(close) = trimmed.find(']')
            && trimmed[close + 1..].starts_with(':')
        {
            if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
                targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
            }
            continue;
        }
        let paragraph = paragraphs.last_mut().expect("one paragraph at least");
        paragraph.push_str(&line);
        paragraph.push('\n');
    }
    for paragraph in &paragraphs {
        let chars: Vec<char> = paragraph.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if c != '[' {
                continue;
            }
            // The matching `]` (nested brackets allowed in the text), then `(` at once,
            // then the matching `)` (balanced parentheses allowed in the target).
            let Some(close) = matching(&chars, i, '[', ']') else {
                continue;
            };
            if chars.get(close + 1) != Some(&'(') {
                continue;
            }
            let Some(end) = matching(&chars, close + 1, '(', ')') else {
                continue;
            };
            let inside: String = chars[close + 2..end].iter().collect();
            let target = inside.split_whitespace().next().unwrap_or("");
            targets.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
        }
    }
    targets
}

/// The index of the bracket closing the one at `open`.
fn matching(chars: &[char], open: usize, opening: char, closing: char) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        if c == opening {
            depth += 1;
        } else if c == closing {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, punctuation other than `-`
/// and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| {
            if c == ' ' {
                Some('-')
            } else if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c)
            } else {
                None
            }
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a page's ATX headings (`#` to `######`), with GitHub's `-1`, `-2`, …
/// suffixes for repeated ones; a link in a heading counts by its text.
fn heading_anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    for line in prose_lines(text, false) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#');
        let base = slug(&drop_link_targets(heading));
        let mut anchor = base.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// `[text](url)` → `[text]` (the brackets are punctuation, which the slug drops).
fn drop_link_targets(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find("](") {
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        out.push_str(&rest[..=open]);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Every broken relative link of every page, as "page: link `target`: why".
fn broken_links(pages: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for page in pages {
        let text = fs::read_to_string(page).expect("page is readable");
        let dir = page.parent().expect("page has a folder");
        for target in link_targets(&text) {
            if target.is_empty() {
                broken.push(format!("{}: an empty link target", shown(page)));
                continue;
            }
            if is_external(&target) {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !resolved.exists() {
                broken.push(format!(
                    "{}: link `{}` points at {}, which does not exist",
                    shown(page),
                    target,
                    shown(&resolved)
                ));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|ext| ext != "md") {
                continue;
            }
            let target_text = fs::read_to_string(&resolved).expect("linked page is readable");
            if !heading_anchors(&target_text).contains(anchor) {
                broken.push(format!(
                    "{}: link `{}`: {} has no heading whose anchor is `#{}`",
                    shown(page),
                    target,
                    shown(&resolved),
                    anchor
                ));
            }
        }
    }
    broken
}

#[test]
fn relative_links_and_anchors_resolve() {
    let pages = pages();
    assert!(pages.len() > 1, "docs/ holds no page");
    let broken = broken_links(&pages);
    assert!(
        broken.is_empty(),
        "{} broken link(s) in the README or docs/:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_readme_links_every_docs_page() {
    let readme = root().join("README.md");
    let text = fs::read_to_string(&readme).expect("README.md is readable");
    let linked: HashSet<PathBuf> = link_targets(&text)
        .iter()
        .filter(|target| !is_external(target))
        .filter_map(|target| {
            let file = target.split('#').next().unwrap_or("");
            root().join(file).canonicalize().ok()
        })
        .collect();
    let orphans: Vec<String> = pages()
        .iter()
        .skip(1)
        .filter(|page| !linked.contains(&page.canonicalize().expect("page exists")))
        .map(|page| shown(page))
        .collect();
    assert!(
        orphans.is_empty(),
        "pages in docs/ that README.md does not link: {}",
        orphans.join(", ")
    );
}

#[test]
fn the_checker_finds_links_and_slugs_like_github() {
    assert_eq!(
        slug("The data is synthetic by default"),
        "the-data-is-synthetic-by-default"
    );
    assert_eq!(
        slug("Who said what, and whom to trust"),
        "who-said-what-and-whom-to-trust"
    );
    assert_eq!(
        slug("The forest against its peers: spamscope bench"),
        "the-forest-against-its-peers-spamscope-bench"
    );
    assert_eq!(
        slug("Set-up on a fresh_machine"),
        "set-up-on-a-fresh_machine"
    );
    let text = "# Title\n\nSee [a](a.md), ![b](img/b.png \"title\") and `[not](code.md)`.\n\n    \
                [indented](code.md)\n\n```\n[fenced](code.md)\n```\n[ref]: c.md#x\n\
                [mail](mailto:x@example.com) [web](https://example.com) [[nested] text](d.md#title)\n\
                a [link whose text\nwraps](e.md) and a [bracket] alone\n";
    assert_eq!(
        link_targets(text),
        [
            "c.md#x",
            "a.md",
            "img/b.png",
            "mailto:x@example.com",
            "https://example.com",
            "d.md#title",
            "e.md"
        ]
    );
    let anchors = heading_anchors(
        "# Title\n## `code` heading\n## Title\n```\n# not\n```\n## See [there](x.md)\n",
    );
    let expected: HashSet<String> = ["title", "code-heading", "title-1", "see-there"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(anchors, expected);
}
