//! `tickr migrate` on blackbox_exporter set-ups written to cover every documented HTTP option:
//! the configuration it writes and the report it prints, line by line, against golden files
//! (`TICKR_BLESS=1` rewrites them), its exit code, and its output passing `--config.check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate")
}

fn migrate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickr"))
        .arg("migrate")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run tickr migrate")
}

/// `text` with the case's absolute directory written as `<dir>`, so the golden files hold no
/// path of the machine that made them.
fn portable(text: &[u8], dir: &Path) -> String {
    let canonical = std::fs::canonicalize(dir).unwrap();
    String::from_utf8_lossy(text).replace(&canonical.to_string_lossy().into_owned(), "<dir>")
}

fn golden(path: &Path, got: &str) {
    if std::env::var_os("TICKR_BLESS").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (TICKR_BLESS=1 writes it)", path.display()));
    if got != want {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines().chain(std::iter::repeat("<missing>")))
            .enumerate()
            .filter(|(_, (w, g))| w != g)
            .take(5)
            .map(|(i, (w, g))| format!("line {}:\n  want {w}\n   got {g}", i + 1))
            .collect();
        panic!(
            "{} differs ({} lines wanted, {} got):\n{}\n--- got ---\n{got}",
            path.display(),
            want.lines().count(),
            got.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn every_case_converts_as_its_golden_files_say_and_passes_the_config_check() {
    for case in ["exact", "full"] {
        let dir = cases().join(case);
        let out = migrate(
            &dir,
            &[
                "--blackbox.config",
                "blackbox.yml",
                "--prometheus.config",
                "prometheus.yml",
            ],
        );
        let (config, report) = (portable(&out.stdout, &dir), portable(&out.stderr, &dir));
        golden(&dir.join("expected.yml"), &config);
        golden(&dir.join("expected.stderr"), &report);
        let code = out.status.code();
        assert_eq!(
            code,
            Some(i32::from(!report.is_empty())),
            "{case}: exit 0 only when nothing was reported\n{report}"
        );
        for line in report.lines() {
            let (file, rest) = line.split_once(':').expect("file:line: …");
            assert!(["blackbox.yml", "prometheus.yml"].contains(&file), "{line}");
            let (number, rest) = rest.split_once(": ").expect("a line number");
            assert!(number.parse::<usize>().is_ok_and(|n| n > 0), "{line}");
            assert!(rest.contains(": "), "key, then what to do: {line}");
            assert!(!line.contains("s3cr3t"), "a secret in the report: {line}");
        }
        // The output loads as it is, wherever it is put.
        let written = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(written.path(), &out.stdout).unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_tickr"))
            .args(["--config.check", "--config.file"])
            .arg(written.path())
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{case}: {}\n{config}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn unreadable_input_is_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = migrate(dir.path(), &["--blackbox.config", "missing.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.yml") && err.contains("cannot read"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    std::fs::write(dir.path().join("broken.yml"), "modules:\n  a: [\n").unwrap();
    let out = migrate(dir.path(), &["--blackbox.config", "broken.yml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.yml:3:"),
        "file, line and column: {err}"
    );
}
