//! Request ids end to end. Live: a real nginx logging `$http_x_request_id` and
//! `$http_traceparent` (and `$connection`) in front of an upstream that closes without a word and
//! one that never answers: the id tickr's event recorded finds the request's line in nginx's
//! access log, and through its connection number the "upstream prematurely closed connection"
//! and "upstream timed out" lines in nginx's error log (which cannot log request headers). A
//! redirect keeps its trace id and gets a span per hop, and follow-up probes continue the
//! failure's trace. Against an echoing server: what each setting sends. And the binary's log
//! line of a failure carries the id.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tickr::diagnosis::events::Event;
use tokio::time::Instant;

use crate::common::procs::{free_port, Nginx};
use crate::common::server::{Step, TestServer};
use crate::common::tickr::{target, Tickr};
use tickr_harness::{Launch, Listening};

/// How long nginx waits for its upstream's response head: well under tickr's timeout, so tickr
/// sees nginx's 504.
const PROXY_READ_TIMEOUT_MS: u64 = 500;

/// The events of `target` once there are at least `n` (and those with `done`), newest first.
async fn events_of(
    tickr: &Tickr,
    target: &str,
    done: impl Fn(&Event) -> bool,
    logs: impl Fn() -> String,
) -> Vec<Arc<Event>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = tickr.handle.recorder.failures(Some(target), None, 100);
        if events.iter().any(|e| done(e)) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{target}: no such event after 30 s: {:?}\n{}",
            events.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// nginx's access log lines carrying `id`, once there are at least `n` of them.
async fn lines_with(nginx: &Nginx, id: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(nginx.dir().join("access.log")).unwrap_or_default();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(id))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of `key=` in an access log line (quoted or not).
fn field<'l>(line: &'l str, key: &str) -> &'l str {
    let prefix = format!("{key}=");
    let start = match line.strip_prefix(&prefix) {
        Some(_) => prefix.len(),
        None => {
            line.find(&format!(" {prefix}"))
                .unwrap_or_else(|| panic!("no {prefix} in {line}"))
                + prefix.len()
                + 1
        }
    };
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"').expect("closing quote")],
        None => rest.split_whitespace().next().unwrap_or_default(),
    }
}

fn proxy_server(port: u16, upstream: std::net::SocketAddr) -> String {
    format!(
        "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        proxy_pass http://{upstream};\n        \
         proxy_next_upstream off;\n        proxy_read_timeout {PROXY_READ_TIMEOUT_MS}ms;\n    }}\n}}\n"
    )
}

#[tokio::test]
async fn the_events_request_id_finds_nginxs_access_and_error_log_lines() {
    let close = TestServer::plain(vec![Step::Close]).await;
    let hang = TestServer::plain(vec![Step::Hang]).await;
    let (closes, hangs, redirects) = (free_port(), free_port(), free_port());
    let mut servers = proxy_server(closes, close.addr) + &proxy_server(hangs, hang.addr);
    let _ = write!(
        servers,
        "server {{\n    listen 127.0.0.1:{redirects};\n    location = / {{ return 302 /next; }}\n    \
         location = /next {{ return 503; }}\n}}\n"
    );
    let nginx = Nginx::start(&servers).await;
    let tickr = Tickr::start(&format!(
        "defaults:\n  interval: 2s\n  timeout: 1500ms\ntargets:\n\
         \x20 - {{name: closes, url: \"http://127.0.0.1:{closes}/\"}}\n\
         \x20 - {{name: hangs, url: \"http://127.0.0.1:{hangs}/\"}}\n\
         \x20 - {{name: redirects, url: \"http://127.0.0.1:{redirects}/\", interval: 5s, timeout: 1s, confirm: 2, confirm_delay: 100ms}}\n"
    ))
    .await;
    let errors = || std::fs::read_to_string(nginx.dir().join("error.log")).unwrap_or_default();

    // A failing upstream: nginx's 502 and 504, each found in both of nginx's logs.
    let mut report = String::from("\n");
    for (name, upstream, code, says) in [
        (
            "closes",
            close.addr,
            "502",
            "upstream prematurely closed connection",
        ),
        ("hangs", hang.addr, "504", "upstream timed out"),
    ] {
        let events = events_of(&tickr, name, |_| true, || nginx.logs()).await;
        let event = &events[0];
        let json = event.to_json();
        let id = event.request_id().expect("a request id");
        assert_eq!(event.trace_id().as_deref(), Some(id.as_str()), "{json}");
        assert_eq!(json["request_id"], id.as_str());
        assert_eq!(json["request_id_header"], "x-request-id");
        let traceparent = json["traceparent"]
            .as_str()
            .expect("traceparent")
            .to_owned();
        assert!(traceparent.starts_with(&format!("00-{id}-")), "{json}");
        assert!(traceparent.ends_with("-01"), "sampled by default: {json}");

        let lines = lines_with(&nginx, &id, 1).await;
        assert_eq!(
            lines.len(),
            1,
            "one request carried {id}:\n{}",
            nginx.logs()
        );
        let access = &lines[0];
        assert_eq!(field(access, "status"), code, "{access}");
        assert_eq!(field(access, "request_id"), id, "{access}");
        assert_eq!(field(access, "traceparent"), traceparent, "{access}");
        // The error log has no request headers, but every line names its connection (`*N`),
        // and tickr opens one connection per request.
        let conn = field(access, "conn");
        let upstream = format!("upstream: \"http://{upstream}/\"");
        let error_log = errors();
        let matching: Vec<&str> = error_log
            .lines()
            .filter(|l| l.contains(&format!(" *{conn} ")) && l.contains(says))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{name}: no error log line `*{conn} … {says}`:\n{error_log}"
        );
        assert!(matching[0].contains(&upstream), "{}", matching[0]);
        assert!(matching[0].contains("request: \"GET / HTTP/1.1\""));
        let _ = writeln!(
            report,
            "{name}: event {} request id {id}\n  access: {access}\n  error:  {}",
            event.id, matching[0]
        );
    }

    // The exemplars of the failure counters carry the trace id of a recorded event next to its
    // event id.
    let metrics = tickr.metrics().await;
    let exemplar = metrics
        .text
        .lines()
        .find(|l| {
            l.starts_with("tickr_probe_failures_total{target=\"closes\"") && l.contains(" # {")
        })
        .expect("an exemplar on the failures of `closes`");
    let recorded: Vec<(String, String)> = tickr
        .handle
        .recorder
        .failures(Some("closes"), None, 100)
        .iter()
        .map(|e| {
            let id = e.trace_id().expect("trace id");
            (
                format!("event_id=\"{}\"", e.id),
                format!("trace_id=\"{id}\""),
            )
        })
        .collect();
    assert!(
        recorded
            .iter()
            .any(|(event, trace)| exemplar.contains(&format!("{{{event},{trace}}}"))),
        "{exemplar}\nrecorded: {recorded:?}"
    );
    let _ = writeln!(report, "exemplar: {exemplar}");
    // /events shows the id and a line to find it with.
    let page = tickr.get("/events").await.text();
    let newest = tickr.handle.recorder.failures(Some("closes"), None, 1)[0]
        .request_id()
        .expect("id");
    assert!(page.contains(&format!("X-Request-Id: {newest}")), "{page}");
    assert!(
        page.contains(&format!("<code>grep {newest}</code>")),
        "{page}"
    );

    // A redirect: one trace id (and request id) for both hops, a span id each; the follow-ups
    // continue the failure's trace with spans of their own.
    let events = events_of(
        &tickr,
        "redirects",
        |e| {
            e.confirmation
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        },
        || nginx.logs(),
    )
    .await;
    let event = events
        .iter()
        .find(|e| e.confirmation.lock().unwrap().is_some())
        .expect("a confirmed event");
    assert_eq!(event.redirects, 1);
    assert_eq!(event.status, Some(503));
    let id = event.request_id().expect("id");
    let lines = lines_with(&nginx, &id, 6).await;
    let statuses: Vec<&str> = lines.iter().map(|l| field(l, "status")).collect();
    assert_eq!(
        statuses,
        ["302", "503", "302", "503", "302", "503"],
        "the probe and its two follow-ups, two hops each:\n{lines:#?}"
    );
    let mut spans = HashSet::new();
    for line in &lines {
        assert_eq!(field(line, "request_id"), id, "{line}");
        let traceparent = field(line, "traceparent");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!((parts[0], parts[1], parts[3]), ("00", id.as_str(), "01"));
        assert!(
            spans.insert(parts[2].to_owned()),
            "span repeated: {lines:#?}"
        );
    }
    let last_hop = event.to_json()["traceparent"]
        .as_str()
        .expect("tp")
        .to_owned();
    assert_eq!(
        field(&lines[1], "traceparent"),
        last_hop,
        "the event keeps its last request's"
    );
    let _ = writeln!(report, "redirects: {}", lines.join("\n           "));
    eprintln!("{report}");
    tickr.stop().await;
}

/// One probe of `yaml`'s target against an echoing server: the request it sent, as the server
/// saw it (header names in lower case), and the ids the outcome says it sent.
async fn sent(yaml: &str) -> (String, Option<tickr::probe::Ids>) {
    let server = TestServer::plain(vec![Step::Echo]).await;
    let t = target(&format!("name: echo\nurl: {}\n{yaml}", server.url("/")));
    let (outcome, body) = tickr::probe::fetch(&t).await;
    assert!(outcome.success(), "{:?}", outcome.failure);
    let body = body.expect("echoed request");
    (String::from_utf8_lossy(&body).into_owned(), outcome.ids)
}

#[tokio::test]
async fn each_setting_sends_what_it_says() {
    let (request, ids) = sent("").await;
    let ids = ids.expect("sent by default");
    let traceparent = format!("traceparent: {}\n", ids.traceparent_value().as_str());
    assert!(
        request.contains(&format!("x-request-id: {}\n", ids.trace_id)),
        "{request}"
    );
    assert!(request.contains(&traceparent), "{request}");
    assert!(traceparent.ends_with("-01\n"));

    let (request, ids) = sent("request_id: X-Correlation-Id").await;
    let ids = ids.expect("ids");
    assert!(
        request.contains(&format!("x-correlation-id: {}\n", ids.trace_id)),
        "{request}"
    );
    assert!(!request.contains("x-request-id"), "{request}");

    let (request, ids) = sent("request_id: false").await;
    assert!(!request.contains("x-request-id"), "{request}");
    assert!(request.contains("traceparent: 00-"), "{request}");
    assert!(!ids.expect("ids").request_id);

    let (request, ids) = sent("traceparent: false").await;
    assert!(!request.contains("traceparent"), "{request}");
    let ids = ids.expect("ids");
    assert!(
        request.contains(&format!("x-request-id: {}\n", ids.trace_id)),
        "{request}"
    );

    let (request, _) = sent("traceparent: {sampled: false}").await;
    let line = request
        .lines()
        .find(|l| l.starts_with("traceparent: "))
        .expect("traceparent");
    assert!(line.ends_with("-00"), "{line}");

    let (request, ids) = sent("request_id: false\ntraceparent: false").await;
    assert!(!request.contains("x-request-id") && !request.contains("traceparent"));
    assert_eq!(ids, None, "nothing sent, nothing to look for");

    // A header of the same name in `headers` (more specific than the built-in switches) is sent
    // as configured.
    let (request, ids) = sent("headers: {X-Request-Id: fixed-by-hand}").await;
    assert!(
        request.contains("x-request-id: fixed-by-hand\n"),
        "{request}"
    );
    assert!(!ids.expect("traceparent still").request_id);
}

#[tokio::test]
async fn a_failures_log_line_carries_its_request_id() {
    let server = TestServer::plain(vec![Step::status(502)]).await;
    let yaml = format!(
        "targets:\n  - name: bad-gateway\n    url: {}\n    interval: 1s\n    timeout: 500ms\n",
        server.url("/")
    );
    let Listening { process, addr } = Launch::tickr(env!("CARGO_BIN_EXE_tickr"), &yaml)
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (line, events) = loop {
        let log = process.stderr();
        if let Some(line) = log.lines().find(|l| l.contains("probe failed")) {
            let (_, text) = tickr_harness::get(addr, "/events?format=json")
                .await
                .expect("events");
            break (line.to_owned(), text);
        }
        assert!(Instant::now() < deadline, "no failure logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let json: serde_json::Value = serde_json::from_str(&events).expect("JSON");
    let event = json["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| line.contains(&format!(" event={} ", e["id"])))
        .unwrap_or_else(|| panic!("no event of {line}\n{events}"));
    let id = event["request_id"].as_str().expect("request id");
    assert!(line.contains(&format!(" request_id={id} ")), "{line}");
    assert!(line.contains(&format!(" trace_id={id} ")), "{line}");
    drop(process);
}
