//! The golden exposition: every family's name, type, unit and help, and every series one target
//! produces, compared with `tests/golden/exposition.txt`. Renaming a metric shows up in review.
//!
//! Series inside a family come out in label order, but lines are sorted within each family, and
//! wall-clock values are replaced by placeholders. `TICKR_BLESS=1` rewrites the golden file.

use std::sync::Arc;
use std::time::Duration;

use tickr::metrics::{Format, Metrics};
use tickr::probe::{Failure, Outcome, Phases, Reason};

use crate::common::exposition::Exposition;
use crate::common::tickr::target;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/exposition.txt");
/// Its twin in the Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics.
const GOLDEN_TEXT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/exposition.text.txt"
);

fn outcome_502() -> Outcome {
    Outcome {
        failure: Some(Failure::new(Reason::Status, "unexpected status 502")),
        status: Some(502),
        phases: Phases {
            resolve: Some(Duration::from_millis(2)),
            connect: Some(Duration::from_millis(3)),
            proxy: None,
            tls: Some(Duration::from_millis(20)),
            processing: Some(Duration::from_millis(300)),
            transfer: Some(Duration::from_millis(1)),
            total: Duration::from_millis(326),
        },
        cert_not_after: Some(1_900_000_000),
        tls_version: Some("TLS 1.3"),
        tls_cipher: Some("TLS13_AES_256_GCM_SHA384"),
        cert_leaf: Some(served_leaf()),
        chain_verified: Some(true),
        ..Outcome::default()
    }
}

/// A fixed certificate standing for the served leaf, so that `tickr_tls_cert_info`'s values
/// (subject, issuer, serial, fingerprint) stay the same from run to run.
fn served_leaf() -> bytes::Bytes {
    use rustls::pki_types::pem::PemObject;
    let pem = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/config/tls/ca.pem"
    );
    let der = rustls::pki_types::CertificateDer::from_pem_file(pem).expect("fixture certificate");
    bytes::Bytes::copy_from_slice(&der)
}

fn outcome_200() -> Outcome {
    Outcome {
        failure: None,
        status: Some(200),
        matches: vec![true, true],
        cert_not_after: Some(1_900_000_000),
        ..outcome_502()
    }
}

/// Sorts the sample lines of each family and hides values that depend on the clock or version.
fn normalise(text: &str) -> String {
    let mut out = Vec::new();
    let mut samples: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            samples.sort();
            out.append(&mut samples);
            out.push(line.to_owned());
        } else {
            let line = if line.starts_with("tickr_last_probe_timestamp_seconds")
                || line.starts_with("tickr_config_last_reload_success_timestamp_seconds")
            {
                format!("{} <now>", line.rsplit_once(' ').unwrap().0)
            } else {
                line.replace(
                    concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""),
                    "version=\"<version>\"",
                )
            };
            samples.push(line);
        }
    }
    samples.sort();
    out.append(&mut samples);
    out.join("\n") + "\n"
}

/// One target with a 200 and a 502 recorded, and the exporter-wide series set.
fn golden_metrics() -> Arc<Metrics> {
    let t = target(
        "name: shop\nurl: https://shop.example/\nlabels: {team: web}\nexpect:\n  body_contains: [\"<title>Shop\"]\n  body_not_contains: [{name: gateway_page, text: Bad Gateway}]",
    );
    let metrics = Arc::new(Metrics::new());
    let tm = metrics.register_target(&t);
    tm.record(&outcome_200(), Some(41), None);
    tm.record(&outcome_502(), Some(42), Some("nginx"));
    metrics.scheduler_lag.observe(0.002);
    metrics.targets.set(1);
    metrics.reload_successful.set(1);
    metrics
}

#[test]
fn exposition_matches_the_golden_file() {
    compare_golden(&normalise(&golden_metrics().encode()), GOLDEN);
}

#[test]
fn the_text_format_matches_its_golden_twin() {
    let metrics = golden_metrics();
    let text = metrics.encode_as(Format::Text);
    assert!(!text.contains("# EOF") && !text.contains("# UNIT") && !text.contains(" # {"));
    // `/metrics` writes the targets' samples in the text format directly: the same text as the
    // whole OpenMetrics exposition rewritten line by line.
    assert_eq!(
        text,
        tickr::metrics::text::to_text(&metrics.encode()),
        "the text format written directly differs from OpenMetrics rewritten"
    );
    compare_golden(&normalise(&text), GOLDEN_TEXT);
}

fn compare_golden(text: &str, file: &str) {
    if std::env::var_os("TICKR_BLESS").is_some() {
        std::fs::write(file, text).unwrap();
    }
    let golden =
        std::fs::read_to_string(file).expect("golden file (run with TICKR_BLESS=1 to create it)");
    if text != golden {
        let diff: Vec<_> = golden
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "exposition differs from {file} (TICKR_BLESS=1 to accept):\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn series_per_target_and_removal() {
    let t = target("name: one\nurl: http://127.0.0.1:9/\nexpect: {body_contains: [ok]}");
    let metrics = Arc::new(Metrics::new());
    let tm = metrics.register_target(&t);
    tm.record(&outcome_502(), Some(42), Some("nginx"));
    let e = Exposition::parse(&metrics.encode());
    let per_target = e.series_of("one");
    // 2 runs + 1 success + 6 phases × 14 (11 buckets, +Inf, sum, count) + 4 gateway codes
    // + 1 status code + one per reason but `proxy` (a direct target) + 2 per matcher + 1 state changes + 1 last probe
    // + 1 interval + 1 cert expiry + 3 TLS facts (version and cipher, leaf, chain verified: the
    // outcome is an HTTPS one's) + 1 info + 1 server error (502 attributed to nginx).
    assert_eq!(
        per_target,
        2 + 1 + 6 * 14 + 4 + 1 + (Reason::ALL.len() - 1) + 2 + 1 + 1 + 1 + 1 + 3 + 1 + 1
    );
    tm.remove();
    let e = Exposition::parse(&metrics.encode());
    assert_eq!(
        e.series_of("one"),
        0,
        "a removed target leaves no series:\n{}",
        e.text
    );
}

/// Series per target for each histogram detail: the figures the README's cardinality table gives.
#[test]
fn histogram_detail_sets_the_series_per_target() {
    let base = "url: http://127.0.0.1:9/\nexpect: {body_contains: [ok]}";
    let count = |name: &str, histograms: &str| {
        let t = target(&format!("name: {name}\n{base}\n{histograms}"));
        let metrics = Arc::new(Metrics::new());
        let tm = metrics.register_target(&t);
        tm.record(&outcome_502(), Some(42), Some("nginx"));
        let e = Exposition::parse(&metrics.encode());
        // Every histogram's +Inf bucket equals its count, whatever the detail.
        for s in e.find("tickr_probe_duration_seconds_count", &[("target", name)]) {
            let phase = s.labels["phase"].as_str();
            let inf = e.value(
                "tickr_probe_duration_seconds_bucket",
                &[("target", name), ("phase", phase), ("le", "+Inf")],
            );
            assert_eq!(inf, s.value, "{phase}");
        }
        e.series_of(name)
    };
    // The series besides the histograms (see `series_per_target_and_removal`).
    let others = 2 + 1 + 4 + 1 + (Reason::ALL.len() - 1) + 2 + 1 + 1 + 1 + 1 + 3 + 1 + 1;
    assert_eq!(count("all", ""), others + 6 * 14);
    assert_eq!(count("total", "histograms: {phases: total}"), others + 14);
    assert_eq!(
        count(
            "lean",
            "histograms: {phases: total, buckets: [100ms, 1s, 5s]}"
        ),
        others + 6
    );
    assert_eq!(
        count("coarse", "histograms: {buckets: [250ms, 1s]}"),
        others + 6 * 5
    );
}

/// A bucket set from the config is the `le` labels, in seconds.
#[test]
fn configured_buckets_are_the_le_labels() {
    let t = target("name: b\nurl: http://127.0.0.1:9/\nhistograms: {phases: total, buckets: [100ms, 1s, 2500ms]}");
    let metrics = Arc::new(Metrics::new());
    metrics
        .register_target(&t)
        .record(&outcome_502(), Some(1), None);
    let e = Exposition::parse(&metrics.encode());
    let les: Vec<&str> = e
        .find("tickr_probe_duration_seconds_bucket", &[("target", "b")])
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(les, ["0.1", "1.0", "2.5", "+Inf"]);
    assert_eq!(
        e.value(
            "tickr_probe_duration_seconds_bucket",
            &[("target", "b"), ("le", "0.1")]
        ),
        0.0
    );
    assert_eq!(
        e.value(
            "tickr_probe_duration_seconds_bucket",
            &[("target", "b"), ("le", "1.0")]
        ),
        1.0,
        "the 326 ms total falls in the 1 s bucket"
    );
}

/// What each scraper asks for, it gets: Prometheus OpenMetrics, everyone else (no `Accept`,
/// `*/*`, `text/plain` preferred) the text format 0.0.4, which `promtool check metrics` reads
/// without a complaint; `/probe` negotiates the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scraper_gets_the_format_it_asks_for_and_promtool_reads_the_text() {
    use crate::common::exposition::{http, PROMETHEUS_ACCEPT};
    use crate::common::server::{Step, TestServer};
    let server = TestServer::plain(vec![Step::body(200, "ok")]).await;
    let tickr = crate::common::tickr::Tickr::start(&format!(
        "targets:\n  - {{name: shop, url: \"{}\", interval: 200ms, timeout: 150ms, expect: {{body_contains: [ok]}}}}\n",
        server.url("/")
    ))
    .await;
    tickr
        .wait_for(Duration::from_secs(10), "two probes", |m| {
            m.value(
                "tickr_probe_runs_total",
                &[("target", "shop"), ("result", "success")],
            ) >= 2.0
        })
        .await;
    let text_kind = "text/plain; version=0.0.4; charset=utf-8";
    let openmetrics_kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    for path in ["/metrics", "/probe?target=shop"] {
        for (accept, kind) in [
            (None, text_kind),
            (Some("*/*"), text_kind),
            (
                Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
                text_kind,
            ),
            (Some("application/openmetrics-text;q=0"), text_kind),
            (Some(PROMETHEUS_ACCEPT), openmetrics_kind),
            (
                Some("application/openmetrics-text; version=1.0.0"),
                openmetrics_kind,
            ),
        ] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let reply = http(tickr.addr, "GET", path, &headers).await;
            assert_eq!(reply.status, 200, "{path} {accept:?}");
            let got = reply.headers["content-type"].to_str().unwrap().to_owned();
            assert_eq!(got, kind, "{path} with Accept {accept:?}");
            let body = reply.text();
            if kind == text_kind {
                assert!(
                    !body.contains("# EOF") && !body.contains("# UNIT"),
                    "{path}: {body}"
                );
                assert!(
                    !body.contains("} 1 # {") && !body.contains(" # {event_id"),
                    "{body}"
                );
                // Counters are typed on their _total name, info metrics are gauges.
                assert!(
                    !body.contains(" info\n") && !body.contains("_total_total"),
                    "{body}"
                );
                let lint = promtool_check_metrics(&body);
                assert!(lint.0, "{path}: promtool check metrics: {}\n{body}", lint.1);
            } else {
                assert!(body.ends_with("# EOF\n"), "{path}");
            }
        }
    }
    tickr.stop().await;
}

/// Runs `promtool check metrics` on `text`: whether it passed, and what it said.
fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let promtool = crate::common::procs::require("promtool");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

/// A second real scraper that does not ask for OpenMetrics: VictoriaMetrics reads tickr's text
/// format, and PromQL over what it stored equals what the test server served, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_reads_the_text_format_and_counts_every_probe() {
    use crate::common::server::{Step, TestServer};
    use tickr_harness::Victoria;
    let server = TestServer::plain(Step::statuses(&[200, 502])).await;
    // A probe every 2 s, a scrape every 500 ms: after each probe the stored counters catch up
    // before the next one, so they can be compared with the server's count.
    let tickr = crate::common::tickr::Tickr::start(&format!(
        "targets:\n  - {{name: shop, url: \"{}\", interval: 2s, timeout: 1s}}\n",
        server.url("/")
    ))
    .await;
    let victoria = Victoria::start(&[("tickr", tickr.addr)], Duration::from_millis(500)).await;
    let stored = |promql: &'static str| {
        let victoria = &victoria;
        async move {
            victoria
                .query(promql)
                .await
                .first()
                .map_or(-1.0, |(_, v)| *v)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let served = server.connections() as f64;
        let ok = stored(r#"sum(tickr_http_responses_total{target="shop",code="200"})"#).await;
        let bad = stored(r#"sum(tickr_http_responses_total{target="shop",code="502"})"#).await;
        let runs = stored(r#"sum(tickr_probe_runs_total{target="shop"})"#).await;
        // The script alternates 200 and 502, starting with 200.
        let (want_ok, want_bad) = ((served / 2.0).ceil(), (served / 2.0).floor());
        if served >= 3.0 && runs == served && ok == want_ok && bad == want_bad {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "VictoriaMetrics has runs {runs}, 200s {ok}, 502s {bad}; the server served {served}\n{}",
            victoria.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = victoria.query(r#"tickr_build_info"#).await;
    assert_eq!(info.len(), 1, "the info metric, as a gauge named _info");
    drop(victoria);
    tickr.stop().await;
}

/// tickr's own histogram encoding against prometheus-client's, observation for observation:
/// 2,000 probes with phase durations spread over every bucket (and beyond the last), one in
/// five a failure whose event id becomes the exemplar of the buckets it lands in. The
/// `tickr_probe_duration_seconds` lines must be the ones prometheus-client writes.
#[test]
fn dense_histograms_encode_exactly_as_prometheus_client_does() {
    use prometheus_client::metrics::exemplar::HistogramWithExemplars;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::registry::{Registry, Unit};

    type Reference = HistogramWithExemplars<Vec<(String, String)>>;
    let t = target("name: shop\nurl: https://shop.example/\nlabels: {team: web}");
    let metrics = Metrics::new();
    let tm = metrics.register_target(&t);
    let reference = Family::<Vec<(String, String)>, Reference>::new_with_constructor(|| {
        Reference::new(tickr::config::DEFAULT_BUCKETS.iter().copied())
    });
    // A fixed pseudo-random sequence (xorshift), so that a failure is reproducible.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let phases = [
        "resolve",
        "connect",
        "tls",
        "processing",
        "transfer",
        "total",
    ];
    for id in 0..2000u64 {
        let mut ms = [0u64; 6];
        for m in &mut ms {
            // Up to 12 s in microseconds: every bucket, and +Inf, gets some.
            *m = next() % 12_000_000;
        }
        let d = |i: usize| Duration::from_micros(ms[i]);
        let failed = next() % 5 == 0;
        let outcome = Outcome {
            failure: failed.then(|| Failure::new(Reason::Timeout, "timed out")),
            phases: Phases {
                resolve: Some(d(0)),
                connect: Some(d(1)),
                proxy: None,
                tls: Some(d(2)),
                processing: Some(d(3)),
                transfer: Some(d(4)),
                total: d(5),
            },
            ..Outcome::default()
        };
        tm.record(&outcome, Some(id), None);
        for (i, phase) in phases.iter().enumerate() {
            let labels = vec![
                ("target".to_owned(), "shop".to_owned()),
                ("team".to_owned(), "web".to_owned()),
                ("phase".to_owned(), (*phase).to_owned()),
            ];
            let exemplar = failed.then(|| vec![("event_id".to_owned(), id.to_string())]);
            reference
                .get_or_create(&labels)
                .observe(d(i).as_secs_f64(), exemplar, None);
        }
    }
    let mut registry = Registry::default();
    registry.register_with_unit(
        "tickr_probe_duration",
        "Duration of each probe phase; a failed probe observes the phases it finished, and total.",
        Unit::Seconds,
        reference,
    );
    let mut expected = String::new();
    prometheus_client::encoding::text::encode(&mut expected, &registry).expect("encode");
    let family = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("tickr_probe_duration_seconds"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let (ours, theirs) = (family(&metrics.encode()), family(&expected));
    assert_eq!(ours.len(), 6 * (2 + 12));
    assert!(ours.iter().filter(|l| l.contains(" # {event_id=")).count() > 30);
    assert_eq!(ours, theirs);
}
