//! `tickr demo` as a user runs it: the binary prints where to look, its embedded gateway's
//! misbehaviour shows up on `/metrics` (several failure reasons) and `/events` (nginx's 502,
//! attributed to nginx), and SIGTERM stops it cleanly.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::exposition::{http, Exposition};

/// How long the demo may take to show everything it promises. Its gateway shows every kind
/// of trouble within 24 connections; at 500 ms for three targets that is about four seconds.
const LIMIT: Duration = Duration::from_secs(25);

/// The demo process, killed if the test fails before it stops it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn demo_shows_several_failure_kinds_and_stops_on_sigterm() {
    let logs = tempfile::NamedTempFile::new().expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_tickr"))
        .args([
            "demo",
            "--web.listen-address",
            "127.0.0.1:0",
            "--interval",
            "500ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(logs.reopen().expect("log file"))
        .spawn()
        .expect("run tickr demo");
    let mut demo = Demo(child);
    let log = || std::fs::read_to_string(logs.path()).unwrap_or_default();

    // What the demo prints, line by line, read on a thread so a silent demo cannot hang the test.
    let stdout = demo.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.contains("Ctrl-C to stop"))
    {
        match lines.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => printed.push(line),
            Err(_) => panic!(
                "the demo did not print its URLs; stdout: {printed:?}\nstderr:\n{}",
                log()
            ),
        }
    }
    let url_after = |label: &str| -> String {
        printed
            .iter()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label:?} line in {printed:#?}"))
            .to_owned()
    };
    let metrics_url = url_after("metrics");
    assert!(url_after("landing page").ends_with('/'), "{printed:#?}");
    assert!(
        url_after("failed probes").ends_with("/events"),
        "{printed:#?}"
    );
    let addr: SocketAddr = metrics_url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected metrics URL {metrics_url}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let config = std::path::PathBuf::from(url_after("configuration"));
    assert!(config.is_file(), "{}", config.display());
    assert!(printed[0].contains("https://127.0.0.1:"), "{printed:#?}");

    // Every kind of failure the gateway produces, and nginx's 502 page recognised as nginx's.
    let deadline = Instant::now() + LIMIT;
    let wanted: BTreeSet<&str> = ["status", "reset", "timeout", "body_mismatch"].into();
    loop {
        let m = Exposition::parse(&http(addr, "GET", "/metrics", &[]).await.text());
        let reasons: BTreeSet<&str> = m
            .samples
            .iter()
            .filter(|s| s.name == "tickr_probe_failures_total" && s.value > 0.0)
            .filter_map(|s| s.labels.get("reason").map(String::as_str))
            .collect();
        let origin_503 = m
            .find(
                "tickr_http_server_errors_total",
                &[("code", "503"), ("layer", "origin")],
            )
            .any(|s| s.value > 0.0);
        let reply = http(addr, "GET", "/events?format=json", &[]).await;
        assert_eq!(reply.status, 200);
        let events: Value = serde_json::from_slice(&reply.body).expect("events JSON");
        let nginx_502 = events["events"].as_array().is_some_and(|all| {
            all.iter()
                .any(|e| e["status"] == 502 && e["layer"] == "nginx" && e["target"].is_string())
        });
        if wanted.is_subset(&reasons) && origin_503 && nginx_502 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {LIMIT:?}: reasons {reasons:?} (want {wanted:?}), 503 from origin: {origin_503}, \
             nginx 502 on /events: {nginx_502}\nstderr:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGTERM, as a service manager or Ctrl-C would stop it.
    let pid = demo.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = demo.0.try_wait().expect("wait for the demo") {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(8),
            "the demo did not stop within 8s of SIGTERM\nstderr:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status}\nstderr:\n{}", log());
    assert!(
        !config.exists(),
        "the demo leaves its files behind: {}",
        config.display()
    );
}
