//! Secrets read from files (header values, bearer tokens, basic-auth passwords, request bodies):
//! sent as written in the file, picked up again when the file is rotated (without a reload), and
//! kept at their last value, with one warning, when the file goes away.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use tickr::probe;

use crate::common::server::{Step, TestServer};

/// A log sink for the current thread: what tickr logs while a test probes on it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// What the echo server saw of the request, as its answer's body shows it.
async fn sent(target: &tickr::config::Target) -> String {
    let out = probe::run(target).await;
    assert!(out.failure.is_none(), "{:?}", out.failure);
    String::from_utf8_lossy(&out.body_head).into_owned()
}

fn parse(dir: &std::path::Path, yaml: &str) -> Arc<tickr::config::Target> {
    let config = tickr::config::parse(&dir.join("config.yml"), yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    config.targets[0].clone()
}

#[tokio::test(flavor = "current_thread")]
async fn a_rotated_token_applies_to_the_next_probe_and_a_lost_one_keeps_its_value() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::plain(vec![Step::Echo]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    let key = dir.path().join("api-key");
    std::fs::write(&token, "first-token-4f1e\n").unwrap();
    std::fs::write(&key, "  key-one-77\n\n").unwrap();
    let target = parse(
        dir.path(),
        &format!(
            "targets:\n  - name: api\n    url: {}\n    bearer_token_file: token\n    headers: {{X-Api-Key: {{file: api-key}}}}\n",
            server.url("/")
        ),
    );
    let first = sent(&target).await;
    assert!(
        first.contains("authorization: Bearer first-token-4f1e\n"),
        "{first}"
    );
    assert!(first.contains("x-api-key: key-one-77\n"), "{first}");

    // Rotated the way Kubernetes does it: a new file moved into place.
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second-token-9a2c\n").unwrap();
    std::fs::rename(&next, &token).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = sent(&target).await;
    assert!(
        second.contains("authorization: Bearer second-token-9a2c\n"),
        "{second}"
    );

    // Gone: the last value stays, and the trouble is logged once, by path only.
    std::fs::remove_file(&token).unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let kept = sent(&target).await;
        assert!(
            kept.contains("authorization: Bearer second-token-9a2c\n"),
            "{kept}"
        );
    }
    let log = logs.text();
    assert_eq!(
        log.matches("secret file cannot be read").count(),
        1,
        "not logged exactly once:\n{log}"
    );
    assert!(log.contains(&token.display().to_string()), "{log}");
    assert!(
        !log.contains("second-token"),
        "the log quotes the token:\n{log}"
    );

    // Back: the new value applies, and that is logged too.
    std::fs::write(&token, "third-token-0b7d").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = sent(&target).await;
    assert!(
        third.contains("authorization: Bearer third-token-0b7d\n"),
        "{third}"
    );
    assert!(logs.text().contains("usable again"), "{}", logs.text());
}

#[tokio::test]
async fn basic_auth_and_body_files_are_sent_as_written() {
    let server = TestServer::plain(vec![Step::Echo]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("password"), "open sesame\n").unwrap();
    // A body is sent byte for byte: its white space is not trimmed.
    std::fs::write(dir.path().join("body.json"), " {\"probe\": 1}\n").unwrap();
    let target = parse(
        dir.path(),
        &format!(
            "targets:\n  - name: api\n    url: {}\n    method: POST\n    body_file: body.json\n    basic_auth: {{username: Aladdin, password_file: password}}\n",
            server.url("/")
        ),
    );
    let echoed = sent(&target).await;
    let basic = base64::engine::general_purpose::STANDARD.encode("Aladdin:open sesame");
    assert!(
        echoed.contains(&format!("authorization: Basic {basic}\n")),
        "{echoed}"
    );
    assert!(echoed.ends_with("\n {\"probe\": 1}\n"), "{echoed:?}");

    // An inline password makes the same header.
    let inline = parse(
        dir.path(),
        &format!(
            "targets:\n  - name: api\n    url: {}\n    basic_auth: {{username: Aladdin, password: open sesame}}\n",
            server.url("/")
        ),
    );
    let echoed = sent(&inline).await;
    assert!(
        echoed.contains(&format!("authorization: Basic {basic}\n")),
        "{echoed}"
    );
}

#[tokio::test]
async fn a_target_authorization_header_beats_a_default_basic_auth() {
    let server = TestServer::plain(vec![Step::Echo]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let target = parse(
        dir.path(),
        &format!(
            "defaults:\n  basic_auth: {{username: u, password: p}}\ntargets:\n  - name: api\n    url: {}\n    headers: {{Authorization: Token abc}}\n",
            server.url("/")
        ),
    );
    let echoed = sent(&target).await;
    assert!(echoed.contains("authorization: Token abc\n"), "{echoed}");
    assert_eq!(echoed.matches("authorization:").count(), 1, "{echoed}");
}
