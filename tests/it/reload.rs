//! Reload is diff-and-apply: unchanged targets keep their schedule and counters, removed ones
//! lose their series, changed ones restart, and a bad file changes nothing but the reload gauge.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::exposition::{http, Exposition};
use crate::common::procs::{free_port, status_field};
use crate::common::server::{Step, TestServer};
use crate::common::tickr::Tickr;

fn config(targets: &[(&str, &str)]) -> String {
    let mut text = String::from("defaults:\n  interval: 100ms\n  timeout: 80ms\ntargets:\n");
    for (name, url) in targets {
        text.push_str(&format!("  - name: {name}\n    url: {url}\n"));
    }
    text
}

fn runs(m: &Exposition, target: &str) -> f64 {
    m.find("tickr_probe_runs_total", &[("target", target)])
        .map(|s| s.value)
        .sum()
}

#[tokio::test]
async fn reload_keeps_unchanged_targets_and_drops_removed_ones() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let url = server.url("/");
    let tickr = Tickr::start(&config(&[("keep", &url), ("drop", &url), ("change", &url)])).await;
    let before = tickr
        .wait_for(Duration::from_secs(10), "3 probes each", |m| {
            ["keep", "drop", "change"].iter().all(|t| runs(m, t) >= 3.0)
        })
        .await;

    let changed_url = server.url("/other");
    tickr.write_config(&config(&[
        ("keep", &url),
        ("change", &changed_url),
        ("new", &url),
    ]));
    let reply = tickr.post("/-/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let after = tickr.metrics().await;
    assert!(
        runs(&after, "keep") >= runs(&before, "keep"),
        "an unchanged target keeps its counters"
    );
    assert_eq!(
        after.series_of("drop"),
        0,
        "a removed target leaves no series"
    );
    assert!(
        runs(&after, "change") < runs(&before, "change"),
        "a changed target restarts from zero"
    );
    assert_eq!(after.get("tickr_targets", &[]), Some(3.0));
    assert_eq!(
        after.get("tickr_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let info = after.get("tickr_target_info", &[("target", "change")]);
    assert_eq!(info, Some(1.0));
    assert!(after
        .find("tickr_target_info", &[("url", &changed_url)])
        .next()
        .is_some());
    tickr
        .wait_for(Duration::from_secs(10), "the new target probing", |m| {
            runs(m, "new") >= 2.0
        })
        .await;
    tickr.stop().await;
}

/// A module's settings are part of every target that names it: changing the module changes
/// those targets (they restart from zero), and no other.
#[tokio::test]
async fn a_changed_module_changes_every_target_that_uses_it() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let url = server.url("/");
    let with_module = |status: &str| {
        format!(
            "defaults:\n  interval: 100ms\n  timeout: 80ms\nmodules:\n  ok:\n    expect: {{status: [{status}]}}\n\
             targets:\n  - {{name: a, url: \"{url}\", module: ok}}\n  - {{name: b, url: \"{url}\", module: ok}}\n\
             \x20 - {{name: plain, url: \"{url}\"}}\n"
        )
    };
    let tickr = Tickr::start(&with_module("200")).await;
    let before = tickr
        .wait_for(Duration::from_secs(10), "5 probes each", |m| {
            ["a", "b", "plain"].iter().all(|t| runs(m, t) >= 5.0)
        })
        .await;

    tickr.write_config(&with_module("2xx"));
    let reply = tickr.post("/-/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let after = tickr.metrics().await;
    for t in ["a", "b"] {
        assert!(
            runs(&after, t) < runs(&before, t),
            "{t} uses the changed module and restarts from zero"
        );
    }
    assert!(
        runs(&after, "plain") >= runs(&before, "plain"),
        "a target without the module keeps its counters"
    );

    // The same file again: nothing changed, so every target keeps its counters.
    let settled = tickr
        .wait_for(Duration::from_secs(10), "probes after the reload", |m| {
            ["a", "b"].iter().all(|t| runs(m, t) >= 2.0)
        })
        .await;
    let reply = tickr.post("/-/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let again = tickr.metrics().await;
    for t in ["a", "b", "plain"] {
        assert!(
            runs(&again, t) >= runs(&settled, t),
            "{t}: an unchanged module changes nothing"
        );
    }
    tickr.stop().await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_config_running() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let url = server.url("/");
    let good = config(&[("a", &url)]);
    let tickr = Tickr::start(&good).await;
    tickr
        .wait_for(Duration::from_secs(10), "first probes", |m| {
            runs(m, "a") >= 2.0
        })
        .await;

    tickr.write_config(
        "defaults:\n  interval: 100ms\ntargets:\n  - name: a\n    url: [not, a, url]\n",
    );
    let reply = tickr.post("/-/reload").await;
    assert_eq!(reply.status, 500);
    let text = reply.text();
    assert!(
        text.contains("config.yml:5:10: "),
        "error names file, line and column: {text}"
    );

    let m = tickr.metrics().await;
    assert_eq!(m.get("tickr_config_last_reload_successful", &[]), Some(0.0));
    let count = runs(&m, "a");
    tickr
        .wait_for(
            Duration::from_secs(10),
            "the old target still probing",
            |m| runs(m, "a") > count,
        )
        .await;

    tickr.write_config(&good);
    assert_eq!(tickr.post("/-/reload").await.status, 200);
    let m = tickr.metrics().await;
    assert_eq!(m.get("tickr_config_last_reload_successful", &[]), Some(1.0));
    assert!(
        runs(&m, "a") > count,
        "a reload to the same config keeps the counters"
    );
    tickr.stop().await;
}

#[tokio::test]
async fn endpoints_answer_as_documented() {
    let server = TestServer::plain(Step::statuses(&[502])).await;
    let tickr = Tickr::start(&config(&[("page <&>", &server.url("/"))])).await;
    tickr
        .wait_for(Duration::from_secs(10), "a probe", |m| {
            runs(m, "page <&>") >= 1.0
        })
        .await;
    assert_eq!(tickr.get("/-/healthy").await.status, 200);
    assert_eq!(tickr.get("/-/ready").await.status, 200);
    assert_eq!(tickr.get("/-/reload").await.status, 405);
    assert_eq!(tickr.get("/nope").await.status, 404);
    let metrics = tickr.get("/metrics").await;
    assert_eq!(
        metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
        "a client that does not ask for OpenMetrics gets the text format"
    );
    let asked = crate::common::exposition::http(
        tickr.addr,
        "GET",
        "/metrics",
        &[("accept", crate::common::exposition::PROMETHEUS_ACCEPT)],
    )
    .await;
    assert_eq!(
        asked.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let landing = tickr.get("/").await;
    assert_eq!(landing.status, 200);
    let html = landing.text();
    assert!(
        html.contains("page &lt;&amp;&gt;"),
        "target names are escaped"
    );
    assert!(html.contains("failing"), "the current state is shown");
    assert!(html.contains("<td>502</td>"), "the last status is shown");
    tickr.stop().await;
}

#[tokio::test]
async fn a_global_probe_limit_delays_probes_visibly() {
    let server = TestServer::plain(vec![Step::slow(200, Duration::from_millis(150))]).await;
    let url = server.url("/");
    let mut text = config(&[("a", &url), ("b", &url), ("c", &url)]).replace(
        "interval: 100ms\n  timeout: 80ms",
        "interval: 400ms\n  timeout: 300ms",
    );
    text = format!("global:\n  max_concurrent_probes: 1\n{text}");
    let tickr = Tickr::start(&text).await;
    let mut max_in_flight = 0.0f64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let m = tickr.metrics().await;
        max_in_flight = max_in_flight.max(m.value("tickr_probes_in_flight", &[]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = tickr.metrics().await;
    assert_eq!(
        max_in_flight, 1.0,
        "never more probes at once than the limit"
    );
    let late = m.value("tickr_scheduler_lag_seconds_count", &[])
        - m.value("tickr_scheduler_lag_seconds_bucket", &[("le", "0.1")]);
    assert!(
        late > 0.0,
        "waiting for the limit shows up as lag:\n{}",
        m.text
    );
    tickr.stop().await;
}

/// The binary itself: SIGHUP reloads, SIGTERM stops cleanly with exit code 0.
#[tokio::test]
async fn binary_reloads_on_sighup_and_exits_zero_on_sigterm() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let url = server.url("/");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, config(&[("first", &url)])).unwrap();
    let (mut child, mut stderr) = spawn_tickr(&path, "json", "info");
    let mut seen = String::new();
    let line = stderr_line(&mut stderr, "\"address\":\"", &mut seen);
    let addr: std::net::SocketAddr = line
        .split("\"address\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    std::thread::spawn(move || for _ in stderr.lines() {});

    std::fs::write(&path, config(&[("first", &url), ("second", &url)])).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = Exposition::parse(&http(addr, "GET", "/metrics", &[]).await.text());
        if runs(&m, "second") >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not add the second target"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tickr did not stop within 10s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code:?}");
}

/// Starts the tickr binary on `config` with an OS-chosen port, its stderr piped.
fn spawn_tickr(
    config: &std::path::Path,
    format: &str,
    level: &str,
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    spawn_tickr_with(config, &["--log.format", format, "--log.level", level])
}

/// Like [`spawn_tickr`], with any further flags.
fn spawn_tickr_with(
    config: &std::path::Path,
    flags: &[&str],
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickr"))
        .args([
            "--config.file",
            config.to_str().unwrap(),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .args(flags)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    (child, stderr)
}

/// Reads the binary's stderr until a line contains `needle`, or panics after 10 s.
fn stderr_line(stderr: &mut impl BufRead, needle: &str, seen: &mut String) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    while std::time::Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains(needle) {
            return line;
        }
    }
    panic!("no log line with {needle:?}; got:\n{seen}");
}

/// A failed probe is one log line with its evidence, in both formats, and secrets stay out.
#[test]
fn a_failed_probe_logs_one_line_with_its_evidence() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    let secret = "Bearer s3cr3t-log-token";
    std::fs::write(
        &path,
        format!("targets:\n  - name: down\n    url: http://127.0.0.1:{port}/\n    interval: 200ms\n    headers: {{Authorization: {secret}}}\n"),
    )
    .unwrap();
    for format in ["logfmt", "json"] {
        let (mut child, mut stderr) = spawn_tickr(&path, format, "debug");
        let mut seen = String::new();
        let line = stderr_line(&mut stderr, "probe failed", &mut seen);
        let _ = stderr_line(&mut stderr, "probe failed", &mut seen);
        child.kill().unwrap();
        child.wait().unwrap();
        let remote = format!("127.0.0.1:{port}");
        match format {
            "logfmt" => {
                for field in [
                    "level=warn",
                    "target=down",
                    "reason=connect",
                    "status=0",
                    &format!("remote={remote}"),
                    "connect_ms=",
                    "total_ms=",
                    "error=",
                ] {
                    assert!(line.contains(field), "{field} missing from: {line}");
                }
            }
            _ => {
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert_eq!(v["target"], "down");
                assert_eq!(v["reason"], "connect");
                assert_eq!(v["remote"], remote.as_str());
                assert!(v["total_ms"].as_f64().is_some(), "{line}");
            }
        }
        assert!(
            !seen.contains("s3cr3t"),
            "a header value reached the log:\n{seen}"
        );
    }
}

/// `--runtime.worker-threads`: one thread runs the probes by default (plus the signal watcher);
/// N asks for N workers; 0 is refused before anything starts.
#[test]
fn worker_threads_flag_sizes_the_runtime() {
    let refused = Command::new(env!("CARGO_BIN_EXE_tickr"))
        .args(["--runtime.worker-threads", "0", "--config.check"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--runtime.worker-threads"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(
        &path,
        format!(
            "targets:\n  - name: down\n    url: http://127.0.0.1:{port}/\n    interval: 200ms\n"
        ),
    )
    .unwrap();
    let threads = |extra: &[&str]| {
        let (mut child, mut stderr) = spawn_tickr_with(&path, extra);
        let mut seen = String::new();
        // Running and probing: its first failed probe is logged.
        stderr_line(&mut stderr, "probe failed", &mut seen);
        let threads = status_field(child.id(), "Threads");
        child.kill().unwrap();
        child.wait().unwrap();
        threads
    };
    let one = threads(&[]);
    let four = threads(&["--runtime.worker-threads", "4"]);
    assert!(one <= 3, "{one} threads with the default single worker");
    assert!(
        four >= one + 4,
        "{four} threads with 4 workers, {one} with one"
    );
}
