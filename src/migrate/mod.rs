//! `tickr migrate`: a blackbox_exporter set-up (its `blackbox.yml`, and the Prometheus jobs that
//! call its `/probe`) into a tickr configuration on standard output. Every key or module without
//! an exact tickr equivalent is reported on standard error as `file:line: key: what to do
//! instead`; nothing is dropped silently. Exit 0 when the conversion is exact, 1 when something
//! was reported, 2 when an input cannot be read.
//!
//! `modules.rs` converts blackbox's modules, `jobs.rs` the Prometheus jobs, `yaml.rs` writes
//! the result.

mod jobs;
mod modules;
mod yaml;

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::config::{locate, Seg};
use yaml::Y;

/// What `tickr migrate` reports: one line per key it could not convert exactly.
pub struct Report {
    file: PathBuf,
    text: String,
    /// Line number and text, sorted by line when taken.
    lines: Vec<(usize, String)>,
}

impl Report {
    /// The lines in the file's order.
    fn take(&mut self) -> Vec<String> {
        let mut lines = std::mem::take(&mut self.lines);
        lines.sort_by_key(|(line, _)| *line);
        lines.into_iter().map(|(_, text)| text).collect()
    }

    fn new(file: &Path, text: &str) -> Self {
        Self {
            file: file.to_owned(),
            text: text.to_owned(),
            lines: Vec::new(),
        }
    }

    /// Reports `key` under `path` (or the node at `path` itself), with its line.
    fn at(&mut self, path: &[String], key: Option<&str>, advice: &str) {
        let mut segs: Vec<Seg> = path.iter().map(|p| seg(p)).collect();
        let mut shown = path.join(".");
        if let Some(key) = key {
            segs.push(Seg::Name(key.to_owned(), 0));
            shown = format!("{shown}.{key}");
        } else if let Some(Seg::Field(last)) = segs.last().cloned() {
            segs.pop();
            segs.push(Seg::Name(last, 0));
        }
        let line = locate(&self.text, &segs).map_or(1, |(line, _)| line);
        let text = format!("{}:{line}: {shown}: {advice}", self.file.display());
        self.lines.push((line, text));
    }

    /// Reports entry `i` of the list under `key`.
    fn at_index(&mut self, path: &[String], key: &str, i: usize, advice: &str) {
        let mut segs: Vec<Seg> = path.iter().map(|p| seg(p)).collect();
        segs.push(Seg::Field(key.to_owned()));
        segs.push(Seg::Index(i));
        let line = locate(&self.text, &segs).map_or(1, |(line, _)| line);
        let shown = format!("{}.{key}[{i}]", path.join("."));
        let text = format!("{}:{line}: {shown}: {advice}", self.file.display());
        self.lines.push((line, text));
    }
}

/// A path element as written: list positions are numbers.
fn seg(p: &str) -> Seg {
    match p.parse::<usize>() {
        Ok(i) => Seg::Index(i),
        Err(_) => Seg::Field(p.to_owned()),
    }
}

/// The outcome of a migration: the configuration, the report lines, and the exit code.
pub struct Migrated {
    pub config: String,
    pub report: Vec<String>,
    pub code: u8,
}

/// Reads both files and converts them; `Err` (exit 2) when one cannot be read or parsed.
pub fn migrate(blackbox: &Path, prometheus: Option<&Path>) -> Result<Migrated, String> {
    let (bb_text, bb) = read(blackbox)?;
    let mut report = Report::new(blackbox, &bb_text);
    let bb_dir = absolute_dir(blackbox);
    let modules = modules::convert(&bb, &bb_dir, &mut report);
    let mut lines = report.take();
    let mut converted = jobs::Converted::default();
    if let Some(path) = prometheus {
        let (text, doc) = read(path)?;
        let mut report = Report::new(path, &text);
        converted = jobs::convert(&doc, &absolute_dir(path), &modules, &mut report);
        lines.extend(report.take());
    }
    let config = write(blackbox, prometheus, &modules, &converted);
    // The output must load; where it names files this machine lacks, say so rather than fail.
    if let Err(e) = crate::config::parse(Path::new("tickr-migrated.yml"), &config) {
        lines.push(format!(
            "the converted configuration does not load here: {}",
            e.to_string().replace('\n', " ")
        ));
    }
    let code = u8::from(!lines.is_empty());
    Ok(Migrated {
        config,
        report: lines,
        code,
    })
}

fn read(path: &Path) -> Result<(String, Value), String> {
    let text = crate::config::read_capped(path, "file").map_err(|e| e.to_string())?;
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| {
        let (line, col) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        format!(
            "{}:{line}:{col}: {}",
            path.display(),
            crate::config::strip_positions(&e.to_string())
        )
    })?;
    Ok((text, doc))
}

/// The directory of `file`, absolute: relative paths in it are written out absolute, so the
/// converted configuration works wherever it is put.
fn absolute_dir(file: &Path) -> PathBuf {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
}

fn write(
    blackbox: &Path,
    prometheus: Option<&Path>,
    modules: &[modules::Module],
    converted: &jobs::Converted,
) -> String {
    let mut out = String::from("# Written by `tickr migrate` from ");
    out.push_str(&blackbox.display().to_string());
    if let Some(p) = prometheus {
        out.push_str(&format!(" and {}", p.display()));
    }
    out.push_str(".\n# Check it with: tickr --config.check --config.file <this file>\n");
    let mut all: Vec<(String, Y)> = modules
        .iter()
        .map(|m| (m.name.clone(), Y::Map(m.keys.clone())))
        .collect();
    for (variant, base, interval) in &converted.variants {
        let Some(m) = modules.iter().find(|m| m.name == *base) else {
            continue;
        };
        let mut keys = vec![("interval".to_owned(), Y::plain(interval.to_string()))];
        keys.extend(m.keys.iter().cloned());
        all.push((variant.clone(), Y::Map(keys)));
    }
    let mut doc = vec![("modules".to_owned(), Y::Map(all))];
    if !converted.sources.is_empty() {
        doc.push(("target_sources".into(), Y::List(converted.sources.clone())));
    }
    doc.push(("targets".into(), Y::List(converted.targets.clone())));
    yaml::write_map(&mut out, &doc, 0);
    out
}
