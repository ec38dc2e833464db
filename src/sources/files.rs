//! file_sd: the files of a source (names, or globs in the last path element), a fingerprint of
//! them to tell when one changed, and their entries in Prometheus' file_sd format.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Discovered;
use crate::limits::MAX_SOURCE_BYTES;

use super::Group;

/// What a check of the files saw: each file's path, inode, size, and modification and change
/// times (nanoseconds). Equal fingerprints mean nothing to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(PathBuf, u64, u64, i64, i64)>);

/// The files `patterns` name now, sorted, and their fingerprint. A pattern that matches no file
/// (or a named file that does not exist) contributes none, as in Prometheus; a directory that
/// cannot be listed is an error.
pub fn check(patterns: &[PathBuf]) -> Result<Fingerprint, String> {
    let mut files = Vec::new();
    for pattern in patterns {
        for path in expand(pattern)? {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => files.push((
                    path,
                    m.ino(),
                    m.size(),
                    m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                    m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                )),
                Ok(_) => return Err(format!("{}: not a file", path.display())),
                // Gone between the listing and now: as if it had not been listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(Fingerprint(files))
}

/// Reads and parses every file of `fingerprint`, in order. Together they may hold at most
/// [`MAX_SOURCE_BYTES`].
pub fn read(fingerprint: &Fingerprint) -> Result<Vec<Discovered>, String> {
    let mut entries = Vec::new();
    let mut left = MAX_SOURCE_BYTES;
    for (path, ..) in &fingerprint.0 {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(left + 1).read_to_string(&mut text))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if text.len() as u64 > left {
            let max = MAX_SOURCE_BYTES >> 20;
            return Err(format!(
                "{}: the source's files hold more than {max} MiB",
                path.display()
            ));
        }
        left -= text.len() as u64;
        let groups = parse(path, &text).map_err(|e| format!("{}:{e}", path.display()))?;
        entries.extend(super::entries(groups));
    }
    Ok(entries)
}

/// A file's groups: JSON for `.json`, else YAML. An empty file is an empty list.
fn parse(path: &Path, text: &str) -> Result<Vec<Group>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text)
            .map_err(|e| format!("{}:{}: {}", e.line(), e.column(), strip_json_position(&e)))
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let message = crate::config::strip_positions(&e.to_string());
            // The parser names the node (`.[0].labels: `); the line and column say it better.
            let message = match message.split_once(": ") {
                Some((path, rest)) if path.starts_with('.') => rest.to_owned(),
                _ => message,
            };
            format!("{line}:{column}: {message}")
        })
    }
}

/// serde_json's message without its own " at line L column C".
fn strip_json_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// The files one pattern names: itself when its file name has no `*`, `?` or `[`, else the
/// matching entries of its directory.
fn expand(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?', '[']) {
        return Ok(vec![pattern.to_owned()]);
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in listing.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        // Editors' and tools' temporary files start with a dot; Prometheus skips them too.
        if !file.starts_with('.') && glob(name.as_bytes(), file.as_bytes()) {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Shell-style matching of one path element: `*` any run, `?` one character, `[abc]` or
/// `[a-z]` one of a set (`[!…]` or `[^…]` none of it).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some(p);
                mark = n;
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some((matched, next)) = class(&pattern[p..], name[n]) {
                    if matched {
                        p += next;
                        n += 1;
                        continue;
                    }
                } else if name[n] == b'[' {
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        // No match here: let the last `*` take one more character, if there is one.
        match star {
            Some(s) => {
                p = s + 1;
                mark += 1;
                n = mark;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Whether `c` is in the class at the start of `pattern` (`[…]`), and the class's length;
/// `None` when the class is not closed (then `[` is literal).
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while let Some(&b) = pattern.get(i) {
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|e| *e != b']') {
            matched |= (b..=pattern[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= b == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_one_path_element_as_a_shell_does() {
        let yes = [
            ("*.yml", "a.yml"),
            ("tg_*.json", "tg_web.json"),
            ("?.yml", "a.yml"),
            ("[ab]*.yml", "b1.yml"),
            ("[a-c].json", "c.json"),
            ("[!x].json", "y.json"),
            ("*", "anything"),
            ("a*b*c", "axxbyyc"),
        ];
        for (p, n) in yes {
            assert!(glob(p.as_bytes(), n.as_bytes()), "{p} ~ {n}");
        }
        let no = [
            ("*.yml", "a.yaml"),
            ("?.yml", "ab.yml"),
            ("[ab].yml", "c.yml"),
            ("[!x].json", "x.json"),
            ("a*b*c", "axxbyy"),
        ];
        for (p, n) in no {
            assert!(!glob(p.as_bytes(), n.as_bytes()), "{p} !~ {n}");
        }
    }

    #[test]
    fn both_formats_parse_and_errors_say_where() {
        let yaml = "- targets: [a.example.com, 'https://b.example.com/x']\n  labels: {team: web}\n";
        let groups = parse(Path::new("t.yml"), yaml).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets.len(), 2);
        let json = r#"[{"targets": ["a:80"], "labels": {"__meta_x": "y"}}]"#;
        assert_eq!(parse(Path::new("t.json"), json).unwrap().len(), 1);
        let bad = parse(Path::new("t.json"), "[{\"targets\": [1]}]").unwrap_err();
        assert!(bad.starts_with("1:"), "{bad}");
        let unknown = parse(Path::new("t.yml"), "- targets: []\n  lables: {}\n").unwrap_err();
        assert!(
            unknown.starts_with("2:3: unknown field `lables`"),
            "{unknown}"
        );
        assert!(parse(Path::new("t.yml"), "\n").unwrap().is_empty());
    }
}
