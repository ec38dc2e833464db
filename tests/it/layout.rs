//! The shape of the code, checked: every module's `crate::` imports point down the flow (to its
//! own level or a lower one, never up), module imports form no cycle, every file opens with a
//! `//!` line saying what it owns, and the README's Development tree lists every source file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The levels of the flow, lowest first: a module may name only modules of its own level or
/// below. The most specific prefix of a module path decides its level. README's Development
/// section draws the same order.
const LEVELS: &[(&str, u8)] = &[
    // Leaves: used everywhere, use nothing of tickr's but each other.
    ("limits", 0),
    ("time", 0),
    ("fds", 0),
    ("redact", 0),
    ("tls", 1),
    ("logging", 0),
    // The attribution engine: config builds one from its fingerprints.
    ("diagnosis::layer", 2),
    ("config", 3),
    ("probe", 4),
    ("diagnosis", 5),
    ("metrics", 6),
    ("pipeline", 7),
    ("scheduler", 8),
    ("sources", 8),
    ("handle", 9),
    ("server", 10),
    ("exporter", 11),
    ("signals", 12),
    ("cli", 12),
    ("demo", 13),
    ("migrate", 13),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` are the crate root.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return String::new();
    }
    parts.join("::")
}

fn level(module: &str) -> Option<u8> {
    LEVELS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, level)| *level)
}

/// Every `crate::a::b…` path named in code (comments and doc lines left out), as the longest
/// prefix that is a module of the crate.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            // `use crate::{a, b::c}` names several.
            let heads: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                inner
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or_default().to_owned())
                    .collect()
            } else {
                (1..=segments.len())
                    .rev()
                    .map(|n| segments[..n].join("::"))
                    .filter(|m| modules.contains(m))
                    .take(1)
                    .collect()
            };
            found.extend(heads.into_iter().filter(|m| modules.contains(m)));
        }
    }
    found
}

#[test]
fn imports_point_down_the_flow_and_form_no_cycle() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    let mut unplaced = Vec::new();
    for file in &files {
        let from = module_of(file);
        if from.is_empty() {
            continue;
        }
        let Some(from_level) = level(&from) else {
            unplaced.push(from);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for to in imports(&text, &modules) {
            if to == from || to.starts_with(&format!("{from}::")) {
                continue;
            }
            let to_level = level(&to).unwrap_or(u8::MAX);
            if to_level > from_level {
                upward.push(format!(
                    "{from} (level {from_level}) -> {to} (level {to_level})"
                ));
            }
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules with no level in LEVELS: {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports against the flow:\n{}",
        upward.join("\n")
    );

    // Cycles between sibling modules of one level, which the levels alone allow.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            // An import of a parent module's item from a child is the same module.
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "modules import each other: {cycle:?}");
    }
}

#[test]
fn every_file_says_what_it_owns_and_is_in_the_readme_tree() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let tree = readme
        .split("## Development")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("a tree in README's Development section");
    let mut missing = Vec::new();
    let mut undocumented = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !tree.contains(&name) {
            missing.push(file.strip_prefix(src()).unwrap().display().to_string());
        }
        let text = std::fs::read_to_string(file).expect("read source");
        if !text.trim_start().starts_with("//!") {
            undocumented.push(file.strip_prefix(src()).unwrap().display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "not in README's Development tree: {missing:?}"
    );
    assert!(
        undocumented.is_empty(),
        "files without a `//!` opening: {undocumented:?}"
    );
}
