//! The library's layers point one way: a module may use only the layers before it in
//! `LAYERS` (unit-test modules may reach across), and no two modules import each other,
//! at any level: not two layers, not two sibling files of one folder (`src/ops/a.rs` and
//! `src/ops/b.rs`), not two sibling folders (counting every file inside them), in the
//! library and in the binary (`src/main.rs`, `src/cli/`). Imports are read from
//! `crate::`, `super::` and `self::` paths, also inside `{a, b::{c}}` groups. Also catches
//! what the cycle check of `../shared/tools/layers.py` cannot see: a lower layer using the
//! crate error through its root re-export (`crate::Error`), which lives in `ops`.
//!
//! Not seen: paths inside inline non-test modules (`mod x { use super::y; }`) are read as
//! if they were written in the file's module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest first (the CLI lives in the binary).
const LAYERS: [&str; 10] = [
    "util",
    "data",
    "model",
    "eval",
    "store",
    "ops",
    "service",
    "remote",
    "workbench",
    "app",
];

/// A module's path from its crate's root, e.g. `["ops", "online"]`.
type ModPath = Vec<String>;

/// One source file: the module it defines, its code (see [`code_of`]) and where it is.
struct File {
    module: ModPath,
    code: String,
    path: PathBuf,
}

/// The code of a file without comments and without its `#[cfg(test)] mod NAME { ... }`
/// blocks, whitespace squashed to single spaces.
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
    let mut code: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    while let Some(start) = code.find("#[cfg(test)] mod ") {
        let Some(open) = code[start..].find(['{', ';']).map(|i| start + i) else {
            break;
        };
        let mut end = open + 1;
        if code[open..].starts_with('{') {
            let mut depth = 0usize;
            for (i, c) in code[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = open + i + 1;
                    break;
                }
            }
            if depth != 0 {
                end = code.len();
            }
        }
        code.replace_range(start..end, "");
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths written at the start of `s` (after a `crate::`, `super::` or `self::`), each
/// as its segments after `prefix`: `a::b as c` is `[a, b]`, `a::{b, c::{d, self}}` is
/// `[a, b]`, `[a, c, d]` and `[a, c]`, `a::*` is `[a]`. Returns what follows them.
fn parse_tree<'a>(mut s: &'a str, mut path: Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('{') {
            s = rest;
            loop {
                s = s.trim_start();
                if let Some(rest) = s.strip_prefix('}') {
                    return rest;
                }
                if let Some(rest) = s.strip_prefix(',') {
                    s = rest;
                    continue;
                }
                let Some(c) = s.chars().next() else {
                    return s;
                };
                let rest = parse_tree(s, path.clone(), out);
                s = if rest.len() == s.len() {
                    &s[c.len_utf8()..]
                } else {
                    rest
                };
            }
        }
        let id: String = s.chars().take_while(|&c| is_ident(c)).collect();
        if id.is_empty() {
            out.push(path);
            return s.strip_prefix('*').unwrap_or(s);
        }
        s = &s[id.len()..];
        if id != "self" {
            path.push(id);
        }
        match s.trim_start().strip_prefix("::") {
            Some(rest) => s = rest,
            None => {
                out.push(path);
                return s;
            }
        }
    }
}

/// Every path `code` (of the module `module`) names through `crate::`, `super::` or
/// `self::`, as a path from the crate's root.
fn references(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (i, _) in code.match_indices("::") {
        let head_start = code[..i].rfind(|c: char| !is_ident(c)).map_or(0, |j| j + 1);
        let head = &code[head_start..i];
        let before = code[..head_start].chars().next_back();
        // Only the first segment of a path (`super::super::x` is read once, at its start).
        if before == Some(':') || !matches!(head, "crate" | "super" | "self") {
            continue;
        }
        let mut base: Vec<String> = match head {
            "crate" => Vec::new(),
            "self" => module.to_vec(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        let mut rest = &code[i + 2..];
        if head == "super" {
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
        }
        let mut paths = Vec::new();
        parse_tree(rest, Vec::new(), &mut paths);
        for p in paths {
            let mut full = base.clone();
            full.extend(p);
            found.push(full);
        }
    }
    found
}

/// The modules a file declares with `mod NAME;` (not inline ones).
fn declared(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (i, _) in code.match_indices("mod ") {
        if i > 0 && code[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[i + 4..];
        let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
        if !name.is_empty() && rest[name.len()..].trim_start().starts_with(';') {
            names.push(name);
        }
    }
    names
}

/// The files of the crate whose root is `root` (`src/lib.rs` or `src/main.rs`), found by
/// following its `mod NAME;` declarations.
fn crate_files(root: &Path) -> Vec<File> {
    let mut out = Vec::new();
    let mut todo = vec![(Vec::new(), root.to_path_buf())];
    while let Some((module, path)) = todo.pop() {
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        let name = path.file_name().unwrap().to_str().unwrap();
        // A module's children live next to a mod.rs (or the crate root), else in a folder
        // named like the file.
        let dir = if matches!(name, "mod.rs" | "lib.rs" | "main.rs") {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        for child in declared(&code) {
            let file = dir.join(format!("{child}.rs"));
            let file = if file.is_file() {
                file
            } else {
                dir.join(&child).join("mod.rs")
            };
            assert!(
                file.is_file(),
                "{} declares a missing module {child}",
                path.display()
            );
            let mut m = module.clone();
            m.push(child);
            todo.push((m, file));
        }
        out.push(File { module, code, path });
    }
    out.sort_by(|a, b| a.module.cmp(&b.module));
    out
}

/// The longest start of `path` that is a module.
fn module_of(path: &[String], modules: &BTreeSet<ModPath>) -> ModPath {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

fn show(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        format!("crate::{}", module.join("::"))
    }
}

/// Import cycles between sibling modules, at every level: a file of module `a::b::c`
/// naming something in `a::d` makes `b -> d` inside `a`. Each cycle as `parent:
/// members | edges (the first file making each)`.
fn sibling_cycles(files: &[File]) -> Vec<String> {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    // parent -> child -> child it uses -> the first file making that edge
    let mut edges: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
    for f in files {
        for r in references(&f.code, &f.module) {
            let target = module_of(&r, &modules);
            let common = f
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < f.module.len() && common < target.len() {
                edges
                    .entry(f.module[..common].to_vec())
                    .or_default()
                    .entry(f.module[common].clone())
                    .or_default()
                    .entry(target[common].clone())
                    .or_insert_with(|| {
                        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
                        f.path
                            .strip_prefix(root)
                            .unwrap_or(&f.path)
                            .display()
                            .to_string()
                    });
            }
        }
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &edges {
        let reach = |from: &String| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(n) = todo.pop() {
                for next in graph.get(&n).into_iter().flat_map(|g| g.keys()) {
                    if seen.insert(next.clone()) {
                        todo.push(next.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&String, BTreeSet<String>> =
            graph.keys().map(|n| (n, reach(n))).collect();
        let mut done = BTreeSet::new();
        for n in graph.keys() {
            if done.contains(n) || !reaches[n].contains(n) {
                continue;
            }
            let members: Vec<&String> = reaches[n]
                .iter()
                .filter(|m| reaches.get(m).is_some_and(|r| r.contains(n)))
                .collect();
            let ties: Vec<String> = members
                .iter()
                .flat_map(|a| {
                    graph[*a]
                        .iter()
                        .filter(|(b, _)| members.contains(b))
                        .map(move |(b, file)| format!("{a} -> {b} ({file})"))
                })
                .collect();
            cycles.push(format!(
                "{}: {} | {}",
                show(parent),
                members
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                ties.join("; ")
            ));
            done.extend(members.into_iter().cloned());
        }
    }
    cycles
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_layers_are_the_library_modules() {
    let lib = code_of(&std::fs::read_to_string(src().join("lib.rs")).unwrap());
    let declared: BTreeSet<String> = declared(&lib).into_iter().collect();
    let layers: BTreeSet<String> = LAYERS.iter().map(|l| l.to_string()).collect();
    assert_eq!(declared, layers, "src/lib.rs's modules and LAYERS differ");
}

#[test]
fn every_layer_uses_only_the_layers_before_it() {
    let files = crate_files(&src().join("lib.rs"));
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut wrong = Vec::new();
    for f in &files {
        let Some(layer) = f.module.first() else {
            continue;
        };
        let rank_of_file = rank(layer).unwrap_or_else(|| panic!("{layer} is not in LAYERS"));
        for r in references(&f.code, &f.module) {
            let Some(head) = r.first() else { continue };
            let above = rank(head).is_some_and(|r| r > rank_of_file);
            let crate_error = (head == "Error" || head == "Result") && rank_of_file < 5;
            if above || crate_error {
                wrong.push(format!("{} uses crate::{}", f.path.display(), r.join("::")));
            }
        }
    }
    for layer in LAYERS {
        assert!(
            files
                .iter()
                .any(|f| f.module.first().is_some_and(|m| m == layer)),
            "no files in src/{layer}"
        );
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let mut cycles = sibling_cycles(&crate_files(&src().join("lib.rs")));
    cycles.extend(sibling_cycles(&crate_files(&src().join("main.rs"))));
    assert!(
        cycles.is_empty(),
        "modules importing each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checker_sees_plain_grouped_and_relative_imports() {
    let code = code_of(
        "use crate::ops::train; // crate::app in a comment\nuse crate::{eval::metrics, store::{self, x::*}};\nuse super::super::y as z;\nfn f() { self::helper::go(); super::{a, b::c}::d(); }\n#[cfg(test)]\nmod tests { use crate::app; }\n#[cfg(test)]\nmod more { use crate::app; }",
    );
    let module: Vec<String> = ["m", "n", "o"].map(String::from).to_vec();
    let found: Vec<String> = references(&code, &module)
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        found,
        [
            "ops::train",
            "eval::metrics",
            "store",
            "store::x",
            "m::y",
            "m::n::o::helper::go",
            "m::n::a",
            "m::n::b::c",
        ]
    );
    assert_eq!(
        declared("#[cfg(feature = \"gui\")] pub mod app; mod cli; pub(crate) mod x { }"),
        ["app", "cli"]
    );
}

#[test]
fn the_checker_names_a_cycle_between_siblings_at_any_level() {
    let file = |module: &str, code: &str| File {
        module: module
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        code: code_of(code),
        path: PathBuf::from(format!("{module}.rs")),
    };
    let files = [
        file("", "mod ops;"),
        file("ops", "pub use self::a::Thing;"),
        file("ops::a", "use super::b::Other;"),
        file("ops::b", "mod deep;"),
        // A file deep inside b uses a: b -> a.
        file(
            "ops::b::deep",
            "fn f() { crate::ops::a::go(); super::super::Thing; }",
        ),
    ];
    assert_eq!(
        sibling_cycles(&files),
        ["crate::ops: a, b | a -> b (ops::a.rs); b -> a (ops::b::deep.rs)"]
    );
    // The parent using its children, and children using the parent's items, are fine.
    assert!(sibling_cycles(&files[..4]).is_empty());
}
