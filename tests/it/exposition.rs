//! The golden exposition: every family's name, type, unit and help, and every series one target
//! produces, compared with `tests/golden/exposition.txt`. Renaming a metric shows up in review.
//!
//! Series inside a family come out in label order, but lines are sorted within each family, and
//! wall-clock values are replaced by placeholders. `TICKR_BLESS=1` rewrites the golden file.

use std::sync::Arc;
use std::time::Duration;

use tickr::metrics::Metrics;
use tickr::probe::{Failure, Outcome, Phases, Reason};

use crate::common::exposition::Exposition;
use crate::common::tickr::target;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/exposition.txt");

fn outcome_502() -> Outcome {
    Outcome {
        failure: Some(Failure::new(Reason::Status, "unexpected status 502")),
        status: Some(502),
        phases: Phases {
            resolve: Some(Duration::from_millis(2)),
            connect: Some(Duration::from_millis(3)),
            tls: Some(Duration::from_millis(20)),
            processing: Some(Duration::from_millis(300)),
            transfer: Some(Duration::from_millis(1)),
            total: Duration::from_millis(326),
        },
        cert_not_after: Some(1_900_000_000),
        ..Outcome::default()
    }
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

#[test]
fn exposition_matches_the_golden_file() {
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
    let text = normalise(&metrics.encode());
    if std::env::var_os("TICKR_BLESS").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden =
        std::fs::read_to_string(GOLDEN).expect("golden file (run with TICKR_BLESS=1 to create it)");
    if text != golden {
        let diff: Vec<_> = golden
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "exposition differs from {GOLDEN} (TICKR_BLESS=1 to accept):\n{}",
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
    // + 1 status code + 10 reasons + 2 per matcher + 1 state changes + 1 last probe + 1 interval
    // + 1 cert + 1 info + 1 server error (502 attributed to nginx).
    assert_eq!(
        per_target,
        2 + 1 + 6 * 14 + 4 + 1 + 10 + 2 + 1 + 1 + 1 + 1 + 1 + 1
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
    // 26 series besides the histograms (see `series_per_target_and_removal`).
    let others = 2 + 1 + 4 + 1 + 10 + 2 + 1 + 1 + 1 + 1 + 1 + 1;
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
