//! End to end with every part real: nginx (TLS, HTTP/2) in front of upstreams the test breaks on
//! cue, tickr probing nginx, Prometheus scraping tickr and evaluating the bundled rules, and
//! Alertmanager with the shipped example config delivering to a webhook receiver in the test.
//!
//! Four scenarios run side by side, each with its own upstream, nginx `server` and tickr target,
//! so one pass of the rules' windows covers them all:
//!
//! | target    | upstream after the healthy phase                        | nginx answers | expected alert |
//! |-----------|---------------------------------------------------------|---------------|----------------|
//! | `healthy` | answers 200                                             | 200           | none, ever     |
//! | `flaky`   | closes every third connection without a word            | 502 in 3      | `TickrIntermittent502`, never `TickrTargetDown` |
//! | `slow`    | answers every third request after nginx has given up    | 504 in 3      | `TickrIntermittentErrors`, never `TickrIntermittent502` |
//! | `down`    | stops listening (connection refused), later comes back  | 502           | `TickrTargetDown`; the intermittent alerts never fire, at the start of the outage or after it |
//!
//! Finally every 502 and 504 tickr counted is matched against nginx's access log.
//!
//! Time is scaled: the rules' windows and `for:` durations are read one unit smaller (minutes as
//! seconds, hours as minutes; see [`scaled_rules`]), and Alertmanager's `group_wait` and
//! `group_interval` are shortened (see [`alertmanager_config`]). Nothing else in the shipped files
//! changes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::common::procs::{free_port, request, Alertmanager, Nginx, Prometheus};
use crate::common::server::{TestCa, Validity};
use crate::common::tickr::Tickr;

/// tickr's probe interval. The shipped windows assume about one probe a minute (5 minutes hold 5
/// probes); with minutes read as seconds one probe a second keeps that proportion, and two a
/// second only add evidence. They also make sure the start of the outage is visible to the rules
/// (two 502s in Prometheus) at least one evaluation before the outage counts as hard down, so the
/// test can see `TickrIntermittent502` go pending there and prove the rules then drop it.
const INTERVAL_MS: u64 = 500;
/// Below the interval (tickr refuses anything else) and more than twice nginx's
/// `proxy_read_timeout`, so nginx's 504 reaches tickr as a response rather than as a timeout.
const TIMEOUT_MS: u64 = 450;
/// nginx's patience with the upstream; the slow upstream takes [`SLOW_ANSWER`].
const PROXY_READ_TIMEOUT_MS: u64 = 200;
const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// Prometheus' scrape and rule evaluation interval.
pub(crate) const PROMETHEUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long everything stays healthy before the scenarios begin: the longest window a paging
/// rule reads (the fast burn's hour, a minute scaled) full of healthy probes, as in production.
/// With only a few seconds of history, the outage's first failures were a third of that window
/// and the fast burn paged for `down` before TickrTargetDown did (seen once in CI); with a full
/// hour it stays below its threshold until the silence of a hard outage holds it back.
const HEALTHY_PHASE: Duration = Duration::from_secs(62);

/// The shortest outage of `down`. Long enough for `TickrTargetDown` (5 s of failures, `for` 1 s)
/// to be delivered and for the inhibition check; `TickrIntermittent502`, were it not dropped, would
/// fire 10 s after going pending, which the recovery watch that follows still covers.
const MIN_OUTAGE: Duration = Duration::from_secs(15);

/// Upper bound for each wait; generous for a loaded CI machine, never reached when things work.
pub(crate) const LIMIT: Duration = Duration::from_secs(45);

pub(crate) const POLL: Duration = Duration::from_millis(200);

/// Where the shipped Alertmanager example sends its webhooks; replaced by the test's receiver.
const SHIPPED_WEBHOOK_BASE: &str = "http://127.0.0.1:9095";

const SCENARIOS: [&str; 4] = ["healthy", "flaky", "slow", "down"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_502s_page_as_the_right_alert_and_every_one_is_counted() {
    let started = Instant::now();

    // --- The stack, all on 127.0.0.1. ---
    let files = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("tickr e2e CA");
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
    let ca_file = write(files.path(), "ca.pem", &ca.pem);
    let cert_file = write(files.path(), "nginx.crt", &leaf.chain_pem);
    let key_file = write(files.path(), "nginx.key", &leaf.key_pem);

    let healthy = Upstream::start().await;
    let flaky = Upstream::start().await;
    let slow = Upstream::start().await;
    let mut down = Upstream::start().await;
    let upstreams = [&healthy, &flaky, &slow, &down];
    let ports: Vec<u16> = SCENARIOS.iter().map(|_| free_port()).collect();
    let mut servers = String::from(
        "log_format e2e 'status=$status upstream_status=$upstream_status '\n\
         \x20               'ua=\"$http_user_agent\" request=\"$request\"';\n",
    );
    for ((name, port), upstream) in SCENARIOS.iter().zip(&ports).zip(upstreams) {
        servers.push_str(&nginx_server(
            name,
            *port,
            upstream.addr,
            &cert_file,
            &key_file,
        ));
    }
    let nginx = Nginx::start(&servers).await;

    let webhook = Webhook::start().await;
    let alertmanager = Alertmanager::start(&alertmanager_config(webhook.addr)).await;

    let mut tickr_yaml = format!(
        "defaults:\n  interval: {INTERVAL_MS}ms\n  timeout: {TIMEOUT_MS}ms\n  \
         tls: {{ca_file: {}}}\n  expect: {{status: [200]}}\ntargets:\n",
        json!(ca_file)
    );
    for (name, port) in SCENARIOS.iter().zip(&ports) {
        tickr_yaml.push_str(&format!(
            "  - name: {name}\n    url: https://127.0.0.1:{port}/\n"
        ));
    }
    let tickr = Tickr::start(&tickr_yaml).await;

    let rules = write(
        files.path(),
        "tickr.rules.yml",
        &scaled_rules(&read_shipped("alerts/tickr.rules.yml")),
    );
    let prometheus = Prometheus::start(
        &[("tickr", tickr.addr)],
        &[rules.into()],
        PROMETHEUS_INTERVAL,
        PROMETHEUS_INTERVAL,
        Some(alertmanager.addr),
    )
    .await;
    prometheus.targets_up(LIMIT).await;
    let mut seen = Seen::default();

    // --- Healthy: every target succeeds in Prometheus' eyes, and nothing goes off. ---
    let healthy_from = Instant::now();
    prometheus
        .wait_for_query("target:tickr_probe_successes:increase5m > 0", LIMIT, |r| {
            r.len() == SCENARIOS.len()
        })
        .await;
    seen.watch(&prometheus, healthy_from + HEALTHY_PHASE, |_| false)
        .await;
    assert_eq!(
        seen.all(),
        vec![],
        "no alert may even be pending while every target is healthy"
    );
    assert_eq!(
        webhook.received(),
        vec![],
        "nothing may be delivered while every target is healthy"
    );

    // --- The scenarios, side by side. ---
    let outage = Instant::now();
    let mut timeline = vec![("healthy phase over", outage - started)];
    flaky.set(Mode::CloseEveryThird);
    slow.set(Mode::SlowEveryThird);
    down.stop_listening().await;

    let delivered = seen
        .watch(&prometheus, outage + LIMIT, |_| {
            webhook.firing("TickrTargetDown", "down").is_some()
        })
        .await;
    assert!(
        delivered,
        "TickrTargetDown for `down` was not delivered within {LIMIT:?} of the outage; deliveries: {:#?}\nPrometheus saw: {:#?}\n{}",
        webhook.received(),
        seen.all(),
        alertmanager.logs()
    );

    timeline.push(("TickrTargetDown delivered", started.elapsed()));

    // Inhibition, checked directly: the start of the outage made Prometheus hold a pending
    // TickrIntermittent502 for `down` (asserted below). Hand Alertmanager that very alert, with
    // Prometheus' labels, while TickrTargetDown is firing: the shipped inhibit rule must suppress
    // it. It expires before the outage ends, so it cannot outlive the inhibiting alert.
    let pending = seen
        .labels("TickrIntermittent502", "down", "pending")
        .unwrap_or_else(|| {
            panic!(
                "the start of the outage never made TickrIntermittent502 pending for `down`, so \
                 the test proves nothing about the rules dropping it; Prometheus saw: {:#?}",
                seen.all()
            )
        });
    let injected_until = Instant::now() + Duration::from_secs(6);
    inject(&alertmanager, &pending, Duration::from_secs(6)).await;
    let inhibited = async {
        loop {
            let held = alertmanager.alerts().await;
            if let Some(a) = held.iter().find(|a| a.annotations.contains_key(INJECTED)) {
                if a.state == "suppressed" {
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), inhibited)
        .await
        .is_err()
    {
        panic!(
            "Alertmanager did not inhibit TickrIntermittent502 for `down` while TickrTargetDown \
             fires: {:#?}\n{}",
            alertmanager.alerts().await,
            alertmanager.logs()
        );
    }

    // Recovery: keep watching until the outage's 502s have left the 30-second (scaled) window, so
    // that TickrIntermittent502 can no longer become true for `down`. Until then only the rule's
    // memory of the hard-down period keeps it quiet.
    let recover_at = (outage + MIN_OUTAGE).max(injected_until + Duration::from_secs(2));
    seen.watch(&prometheus, recover_at, |_| false).await;
    down.listen_again();
    let recovered = Instant::now();
    timeline.push(("`down` recovered", started.elapsed()));
    let mut window_clear = false;
    while !window_clear {
        seen.poll(&prometheus).await;
        let left = prometheus
            .query(r#"target:tickr_http_502:increase30m{target="down"}"#)
            .await;
        window_clear = left.len() == 1 && left[0].1 < 2.0;
        assert!(
            recovered.elapsed() < LIMIT,
            "the outage's 502s did not leave the window: {left:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    timeline.push(("the outage's 502s out of the window", started.elapsed()));
    // One more evaluation so that a pending alert whose expression just turned false is gone.
    seen.watch(
        &prometheus,
        Instant::now() + 2 * PROMETHEUS_INTERVAL,
        |_| false,
    )
    .await;
    // By now the flaky and slow scenarios have long passed their `for:`; wait for their
    // deliveries if they are not there yet.
    seen.watch(&prometheus, Instant::now() + LIMIT, |_| {
        webhook.firing("TickrIntermittent502", "flaky").is_some()
            && webhook.firing("TickrIntermittentErrors", "slow").is_some()
    })
    .await;

    // --- Settle: every upstream answers 200 again, and every probe that started before has
    // ended (each runs under a 450 ms timeout), so no 502 or 504 is in flight. ---
    flaky.set(Mode::Healthy);
    slow.set(Mode::Healthy);
    seen.watch(&prometheus, Instant::now() + Duration::from_secs(1), |_| {
        false
    })
    .await;
    let counted = tickr.metrics().await;
    let prometheus_logs = prometheus.logs();
    drop(prometheus); // its keep-alive connection would hold tickr's graceful shutdown
    tickr.stop().await;
    let logged = NginxLog::read(nginx.dir());

    let deliveries = webhook.received();
    let context = format!(
        "deliveries: {deliveries:#?}\nPrometheus saw: {:#?}",
        seen.all()
    );

    // --- What was delivered. ---
    let intermittent = webhook.firing("TickrIntermittent502", "flaky");
    assert!(
        intermittent.is_some(),
        "TickrIntermittent502 for `flaky` was not delivered\n{context}\n{prometheus_logs}"
    );
    assert!(
        webhook.firing("TickrIntermittentErrors", "slow").is_some(),
        "TickrIntermittentErrors for `slow` (504s) was not delivered\n{context}"
    );
    let target_down = webhook
        .firing("TickrTargetDown", "down")
        .expect("checked above");
    assert_ne!(
        intermittent.as_ref().map(|d| &d.receiver),
        Some(&target_down.receiver),
        "the example routes by severity: the warning and the critical alert should reach different receivers\n{context}"
    );
    for d in &deliveries {
        assert!(
            d.status == "firing" || d.status == "resolved",
            "malformed webhook delivery: {d:#?}"
        );
        for (name, text) in &d.annotations {
            assert!(
                !text.contains("<no value>") && !text.contains("%!"),
                "annotation {name} of {} did not render: {text:?}",
                d.alertname()
            );
        }
    }
    let delivered_for = |target: &str| -> Vec<&Delivery> {
        deliveries.iter().filter(|d| d.target() == target).collect()
    };
    assert_eq!(
        delivered_for("healthy"),
        Vec::<&Delivery>::new(),
        "nothing may be delivered for the healthy target"
    );
    for (alert, target, why) in [
        ("TickrTargetDown", "flaky", "a flaky target is not down"),
        ("TickrTargetDown", "slow", "a target that is slow one time in three is not down"),
        ("TickrIntermittent502", "slow", "nginx produced no 502 for `slow`, only 504s"),
        ("TickrIntermittent502", "down", "a hard outage pages once, as TickrTargetDown (rules' design, plus inhibition for the injected alert)"),
        ("TickrIntermittentErrors", "down", "a hard outage pages once, as TickrTargetDown"),
    ] {
        assert!(
            webhook.firing(alert, target).is_none(),
            "{alert} for `{target}` was delivered: {why}\n{context}"
        );
    }

    // --- What Prometheus held (polled every 200 ms): stronger than deliveries alone. ---
    assert_eq!(
        seen.of_target("healthy"),
        vec![],
        "no alert may be pending or firing for the healthy target"
    );
    for (alert, target) in [
        ("TickrTargetDown", "flaky"),
        ("TickrTargetDown", "slow"),
        ("TickrIntermittent502", "slow"),
    ] {
        assert!(
            seen.states(alert, target).is_empty(),
            "{alert} for `{target}` was {:?}\n{context}",
            seen.states(alert, target)
        );
    }
    for alert in ["TickrIntermittent502", "TickrIntermittentErrors"] {
        assert!(
            !seen.states(alert, "down").contains(&"firing"),
            "{alert} fired for `down`, at the start or end of a hard outage\n{context}"
        );
    }

    // A hard outage pages once: the pager hears of `down` only as TickrTargetDown, also after
    // the recovery, when the inhibition is gone but the outage's failures still fill the fast
    // burn alert's windows.
    let pages: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.target() == "down" && d.receiver == "pager" && d.status == "firing")
        .map(|d| d.alertname())
        .collect();
    assert!(
        pages.iter().all(|a| *a == "TickrTargetDown"),
        "`down` paged as more than TickrTargetDown: {pages:?}\n{context}"
    );

    // --- Every 502 and 504 tickr counted is one nginx logged for tickr, and vice versa. ---
    let mut counts = Vec::new();
    for (target, code, at_least) in [
        ("healthy", "502", 0),
        ("healthy", "504", 0),
        ("flaky", "502", 3),
        ("flaky", "504", 0),
        ("slow", "502", 0),
        ("slow", "504", 3),
        ("down", "502", 10),
        ("down", "504", 0),
    ] {
        let by_tickr = counted.value(
            "tickr_http_responses_total",
            &[("target", target), ("code", code)],
        );
        let by_nginx = logged.count(target, code);
        counts.push(format!(
            "{target} {code}: tickr {by_tickr}, nginx {by_nginx}"
        ));
        assert_eq!(
            by_tickr, by_nginx as f64,
            "`{target}`: tickr counted {by_tickr} responses {code}, nginx logged {by_nginx} for tickr"
        );
        if at_least == 0 {
            assert_eq!(by_nginx, 0, "`{target}` got {by_nginx} responses {code}");
        } else {
            assert!(
                by_nginx >= at_least,
                "`{target}`: only {by_nginx} responses {code}; the scenario did not happen"
            );
        }
    }
    // The three ways nginx met a failing upstream, each as intended.
    let errors = std::fs::read_to_string(nginx.dir().join("error.log")).expect("nginx error.log");
    for (scenario, upstream, evidence) in [
        (
            "flaky",
            flaky.addr,
            "upstream prematurely closed connection",
        ),
        ("down", down.addr, "(111: Connection refused)"),
        ("slow", slow.addr, "upstream timed out"),
    ] {
        let upstream = format!("upstream: \"http://{upstream}/\"");
        assert!(
            errors
                .lines()
                .any(|l| l.contains(evidence) && l.contains(&upstream)),
            "`{scenario}`: nginx's error log never says {evidence:?} about its upstream:\n{errors}"
        );
    }
    // nginx itself produced them: its upstream saw a failure, not an upstream answering 502.
    for (target, code) in [("flaky", "502"), ("down", "502"), ("slow", "504")] {
        let lines = logged.lines(target, code);
        assert!(
            lines
                .iter()
                .all(|l| l.contains(&format!("upstream_status={code}"))),
            "`{target}`: {lines:#?}"
        );
        let status_failures = counted.value(
            "tickr_probe_failures_total",
            &[("target", target), ("reason", "status")],
        );
        assert_eq!(
            status_failures,
            lines.len() as f64,
            "`{target}`: each {code} is one failure with reason `status`"
        );
    }

    timeline.push(("done", started.elapsed()));
    eprintln!("e2e timeline: {timeline:.1?}\ne2e counts: {counts:#?}");
    let summary: Vec<String> = deliveries
        .iter()
        .map(|d| {
            format!(
                "{:>5.1?} {} {} {} {}",
                d.at - started,
                d.receiver,
                d.status,
                d.alertname(),
                d.target()
            )
        })
        .collect();
    eprintln!("e2e deliveries, in order: {summary:#?}");
}

// ---------------------------------------------------------------------------------------------
// The shipped files, adapted.

pub(crate) fn read_shipped(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path.to_string_lossy().into_owned()
}

/// The bundled rules with time scaled down by 60: every range window (`[30m]`, also those in
/// annotation queries) and every `for:` is read one unit smaller, minutes as seconds and hours as
/// minutes. Every other byte is as shipped, thresholds, `TUNE` values and constants such as the
/// certificate alert's `14 * 86400` included. A duration in any other unit panics, so a change to
/// the shipped file is noticed rather than scaled inconsistently.
pub(crate) fn scaled_rules(shipped: &str) -> String {
    let mut scaled = 0;
    let mut out = String::with_capacity(shipped.len());
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(duration) = trimmed.strip_prefix("for: ") {
            out.push_str(&format!("{indent}for: {}", scale(duration)));
            scaled += 1;
        } else {
            let mut rest = line;
            while let Some(open) = rest.find('[') {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
                match rest.find(']') {
                    Some(close) if is_duration(&rest[..close]) => {
                        out.push_str(&scale(&rest[..close]));
                        rest = &rest[close..];
                        scaled += 1;
                    }
                    _ => {}
                }
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    assert!(
        scaled >= 20,
        "only {scaled} windows and `for:` durations found in alerts/tickr.rules.yml"
    );
    out
}

fn is_duration(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn scale(duration: &str) -> String {
    let duration = duration.trim();
    let (number, unit) = duration.split_at(duration.len() - 1);
    assert!(
        number.chars().all(|c| c.is_ascii_digit()) && !number.is_empty(),
        "unexpected duration {duration:?} in the rules"
    );
    match unit {
        "m" => format!("{number}s"),
        "h" => format!("{number}m"),
        _ => panic!("no scaling decided for duration {duration:?} in the rules"),
    }
}

/// The shipped `alerts/alertmanager.example.yml`, with two textual substitutions: its webhook base
/// URL becomes the test's receiver, and every `group_wait` / `group_interval` becomes 1 s / 2 s
/// (the example's are sized for production, where a first notification may wait tens of
/// seconds). Routes, receivers, grouping and inhibit rules are as shipped.
pub(crate) fn alertmanager_config(webhook: SocketAddr) -> String {
    let shipped = read_shipped("alerts/alertmanager.example.yml");
    assert!(
        shipped.contains(SHIPPED_WEBHOOK_BASE),
        "alerts/alertmanager.example.yml no longer sends to {SHIPPED_WEBHOOK_BASE}:\n{shipped}"
    );
    let replaced = shipped.replace(SHIPPED_WEBHOOK_BASE, &format!("http://{webhook}"));
    let mut timers = 0;
    let config: Vec<String> = replaced
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            for (key, value) in [("group_wait:", "1s"), ("group_interval:", "2s")] {
                if trimmed.starts_with(key) {
                    timers += 1;
                    return format!("{indent}{key} {value}");
                }
            }
            line.to_owned()
        })
        .collect();
    assert!(
        timers >= 2,
        "alerts/alertmanager.example.yml should set group_wait and group_interval on its route"
    );
    config.join("\n") + "\n"
}

// ---------------------------------------------------------------------------------------------
// nginx.

/// One TLS `server` per scenario, proxying to its own upstream. A single upstream server (which
/// nginx never marks unavailable) and `proxy_next_upstream off`: every failure of the upstream
/// becomes exactly one error answer, nothing retried or hidden.
fn nginx_server(name: &str, port: u16, upstream: SocketAddr, cert: &str, key: &str) -> String {
    format!(
        "server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    access_log {name}.access.log e2e;
    location / {{
        proxy_pass http://{upstream};
        proxy_next_upstream off;
        proxy_connect_timeout 1s;
        proxy_read_timeout {PROXY_READ_TIMEOUT_MS}ms;
    }}
}}
"
    )
}

/// nginx's per-scenario access logs (relative paths land in nginx's prefix, its temp dir).
struct NginxLog(BTreeMap<String, String>);

impl NginxLog {
    fn read(dir: &Path) -> Self {
        Self(
            SCENARIOS
                .iter()
                .map(|name| {
                    let path = dir.join(format!("{name}.access.log"));
                    let text = std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    (name.to_string(), text)
                })
                .collect(),
        )
    }

    /// Lines of tickr's requests (its User-Agent) to `target` that nginx answered with `code`.
    fn lines(&self, target: &str, code: &str) -> Vec<&str> {
        self.0[target]
            .lines()
            .filter(|l| l.contains("ua=\"tickr/"))
            .filter(|l| l.starts_with(&format!("status={code} ")))
            .collect()
    }

    fn count(&self, target: &str, code: &str) -> usize {
        self.lines(target, code).len()
    }
}

// ---------------------------------------------------------------------------------------------
// The upstream the test breaks on cue.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Healthy = 0,
    /// Every third connection: read the request, close without answering (nginx: 502).
    CloseEveryThird = 1,
    /// Every third request: answer after [`SLOW_ANSWER`], long after nginx gave up (504).
    SlowEveryThird = 2,
}

impl Mode {
    fn load(cell: &AtomicU8) -> Self {
        match cell.load(Ordering::SeqCst) {
            1 => Mode::CloseEveryThird,
            2 => Mode::SlowEveryThird,
            _ => Mode::Healthy,
        }
    }
}

/// A plain-HTTP upstream whose behaviour the test switches at run time, and which can stop
/// listening (connection refused) and come back on the same port. Stops when dropped.
struct Upstream {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    connections: Arc<AtomicUsize>,
    state: State,
}

enum State {
    /// The accept loop, which owns the listener and the open connections.
    Listening(JoinHandle<()>),
    /// A socket bound to the port but not listening: connecting is refused, and the port stays
    /// ours. Releasing it instead would let another test's `bind(0)` take it meanwhile, and
    /// nginx would send our probes there.
    Refusing(TcpSocket),
    Switching,
}

impl Upstream {
    async fn start() -> Self {
        let socket = bound(([127, 0, 0, 1], 0).into()).expect("bind upstream");
        let listener = socket.listen(128).expect("listen");
        let mut upstream = Self {
            addr: listener.local_addr().expect("local addr"),
            mode: Arc::new(AtomicU8::new(Mode::Healthy as u8)),
            connections: Arc::new(AtomicUsize::new(0)),
            state: State::Switching,
        };
        upstream.state = State::Listening(upstream.accept(listener));
        upstream
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection, as if the process died; the port is then
    /// bound but not listening.
    async fn stop_listening(&mut self) {
        let State::Listening(task) = std::mem::replace(&mut self.state, State::Switching) else {
            panic!("upstream {} is not listening", self.addr);
        };
        task.abort();
        let _ = task.await;
        let socket = bound(self.addr)
            .unwrap_or_else(|e| panic!("keep upstream port {} bound: {e}", self.addr));
        self.state = State::Refusing(socket);
    }

    /// Listens on the same port again.
    fn listen_again(&mut self) {
        let State::Refusing(socket) = std::mem::replace(&mut self.state, State::Switching) else {
            panic!("upstream {} is not stopped", self.addr);
        };
        let listener = socket.listen(128).expect("listen again");
        self.state = State::Listening(self.accept(listener));
    }

    fn accept(&self, listener: TcpListener) -> JoinHandle<()> {
        let (mode, connections) = (self.mode.clone(), self.connections.clone());
        tokio::spawn(async move {
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let n = connections.fetch_add(1, Ordering::SeqCst);
                        open.spawn(answer(tcp, Mode::load(&mode), n));
                    }
                    Some(_) = open.join_next(), if !open.is_empty() => {}
                }
            }
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let State::Listening(task) = &self.state {
            task.abort();
        }
    }
}

/// A socket bound to `addr`, with SO_REUSEADDR so that the port can be bound again at once
/// while connections it closed linger in TIME_WAIT.
fn bound(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

const UPSTREAM_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\
                             connection: close\r\n\r\nupstream ok\n";

/// One connection from nginx (one request: nginx speaks HTTP/1.0 with `Connection: close` to
/// upstreams by default).
async fn answer(mut tcp: TcpStream, mode: Mode, n: usize) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buf[..read]),
        }
    }
    let third = n % 3 == 2;
    match mode {
        Mode::CloseEveryThird if third => return,
        Mode::SlowEveryThird if third => tokio::time::sleep(SLOW_ANSWER).await,
        _ => {}
    }
    let _ = tcp.write_all(UPSTREAM_OK).await;
    let _ = tcp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver at the end of the line.

/// One alert of one webhook notification.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Delivery {
    /// When it arrived.
    pub(crate) at: Instant,
    /// The Alertmanager receiver that sent it (the example routes by severity).
    pub(crate) receiver: String,
    /// The alert's `status`: `firing` or `resolved`.
    pub(crate) status: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

impl Delivery {
    pub(crate) fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub(crate) fn target(&self) -> &str {
        self.labels.get("target").map_or("", String::as_str)
    }
}

/// Collects every alert Alertmanager POSTs to it. Stops when dropped.
pub(crate) struct Webhook {
    pub(crate) addr: SocketAddr,
    received: Arc<Mutex<Vec<Delivery>>>,
    task: JoinHandle<()>,
}

impl Webhook {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let store = store.clone();
                        let service = service_fn(move |req| receive(req, store.clone()));
                        open.spawn(
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), service),
                        );
                    }
                    Some(_) = open.join_next(), if !open.is_empty() => {}
                }
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub(crate) fn received(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    pub(crate) fn firing(&self, alert: &str, target: &str) -> Option<Delivery> {
        self.received()
            .into_iter()
            .find(|d| d.status == "firing" && d.alertname() == alert && d.target() == target)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    req: http::Request<hyper::body::Incoming>,
    store: Arc<Mutex<Vec<Delivery>>>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let deliveries: Vec<Delivery> = match serde_json::from_slice::<Value>(&body) {
        Ok(json) => json["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Delivery {
                at,
                receiver: json["receiver"].as_str().unwrap_or_default().to_owned(),
                status: a["status"].as_str().unwrap_or_default().to_owned(),
                labels: strings(&a["labels"]),
                annotations: strings(&a["annotations"]),
            })
            .collect(),
        // Recorded so that the final checks report it.
        Err(e) => vec![Delivery {
            at,
            receiver: String::new(),
            status: format!("not JSON ({e}): {}", String::from_utf8_lossy(&body)),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }],
    };
    store.lock().unwrap().extend(deliveries);
    Ok(http::Response::new(Full::new(Bytes::new())))
}

// ---------------------------------------------------------------------------------------------
// Prometheus' alerts, polled.

/// Every (alert, target, state) Prometheus reported while the test watched, with the labels of
/// the first sighting.
#[derive(Default)]
struct Seen(BTreeMap<(String, String, String), BTreeMap<String, String>>);

impl Seen {
    async fn poll(&mut self, prometheus: &Prometheus) {
        for alert in prometheus.alerts().await {
            let target = alert.labels.get("target").cloned().unwrap_or_default();
            self.0
                .entry((alert.name, target, alert.state))
                .or_insert(alert.labels);
        }
    }

    /// Polls until `done` holds (true) or `until` passes (false).
    async fn watch(
        &mut self,
        prometheus: &Prometheus,
        until: Instant,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        loop {
            self.poll(prometheus).await;
            if done(self) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn all(&self) -> Vec<(String, String, String)> {
        self.0.keys().cloned().collect()
    }

    fn of_target(&self, target: &str) -> Vec<(String, String, String)> {
        self.0.keys().filter(|k| k.1 == target).cloned().collect()
    }

    fn states(&self, alert: &str, target: &str) -> Vec<&str> {
        self.0
            .keys()
            .filter(|k| k.0 == alert && k.1 == target)
            .map(|k| k.2.as_str())
            .collect()
    }

    fn labels(&self, alert: &str, target: &str, state: &str) -> Option<BTreeMap<String, String>> {
        self.0
            .get(&(alert.to_owned(), target.to_owned(), state.to_owned()))
            .cloned()
    }
}

// ---------------------------------------------------------------------------------------------
// The injected alert.

/// Marks the alert the test hands Alertmanager itself, so that failures name it.
const INJECTED: &str = "injected_by";

/// POSTs one alert with `labels` to Alertmanager, ending `lasting` from now.
async fn inject(alertmanager: &Alertmanager, labels: &BTreeMap<String, String>, lasting: Duration) {
    let ends = SystemTime::now() + lasting;
    let body = json!([{
        "labels": labels,
        "annotations": {INJECTED: "tests/it/e2e.rs: must be inhibited by TickrTargetDown"},
        "endsAt": tickr::logging::rfc3339(ends.duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64()),
    }]);
    let (status, reply) = request(
        alertmanager.addr,
        "POST",
        "/api/v2/alerts",
        Some("application/json"),
        &body.to_string(),
    )
    .await
    .unwrap_or_else(|e| panic!("POST alert to Alertmanager: {e}"));
    assert_eq!(status, 200, "Alertmanager refused {body}: {reply}");
}

#[test]
fn rules_scale_windows_and_for_only() {
    let shipped = "      - record: a:b:increase5m\n        expr: increase(x[30m]) # [see]\n        for: 10m\n        expr: rate(y[6h])\n";
    let mut text = shipped.repeat(7);
    text.push_str("labels: [a, b]\n");
    let scaled = scaled_rules(&text);
    assert!(scaled.starts_with(
        "      - record: a:b:increase5m\n        expr: increase(x[30s]) # [see]\n        for: 10s\n        expr: rate(y[6m])\n"
    ));
    assert!(scaled.ends_with("labels: [a, b]\n"));
}
