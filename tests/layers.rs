//! The library's layers point one way: a module may use only the layers before it in
//! `LAYERS` (unit-test modules may reach across). Also catches what the cycle check of
//! `../shared/tools/layers.py` cannot see: a lower layer using the crate error through
//! its root re-export (`crate::Error`), which lives in `ops`.

use std::path::Path;

const LAYERS: [&str; 9] = [
    "util",
    "data",
    "model",
    "eval",
    "store",
    "ops",
    "service",
    "workbench",
    "app",
];

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    let squashed: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match squashed.find("#[cfg(test)] mod tests") {
        Some(i) => squashed[..i].to_string(),
        None => squashed,
    }
}

/// Every `crate::NAME` head in `code`, also inside `crate::{a, b::c}` groups.
fn heads(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                found.push(ident(item.trim()));
            }
        } else {
            found.push(ident(rest));
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_layer_uses_only_the_layers_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for (rank, layer) in LAYERS.iter().enumerate() {
        let mut fs = Vec::new();
        files(&src.join(layer), &mut fs);
        assert!(!fs.is_empty(), "no files in src/{layer}");
        for f in fs {
            let code = code_of(&std::fs::read_to_string(&f).unwrap());
            for h in heads(&code) {
                let above = LAYERS
                    .iter()
                    .position(|l| *l == h)
                    .is_some_and(|r| r > rank);
                let crate_error = (h == "Error" || h == "Result") && rank < 5;
                if above || crate_error {
                    wrong.push(format!("{} uses crate::{h}", f.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_plain_and_grouped_imports() {
    let code = code_of(
        "use crate::ops::train; // crate::app in a comment\nuse crate::{eval::metrics, store};\n#[cfg(test)]\nmod tests { use crate::app; }",
    );
    assert_eq!(heads(&code), ["ops", "eval", "store"]);
}
