//! `/probe`, the way Prometheus set-ups built for blackbox_exporter call it: known targets by
//! URL (a bare host means `http://host/`) or name, their `tickr_*` series and blackbox gauges;
//! unknown targets a 404 that never reaches them; adoption only where a module allows it, with
//! the first answer waiting for the first probe, and adopted targets forgotten when nobody asks.
//! Then a real Prometheus scraping `/probe` with blackbox_exporter's README job and the job
//! prometheus-operator generates for a `Probe`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::exposition::{http, Exposition};
use crate::common::procs::Prometheus;
use crate::common::server::{Step, TestServer};
use crate::common::tickr::Tickr;

const LIMIT: Duration = Duration::from_secs(20);

/// A port that counts the connections it accepts and closes them: proof that nothing was sent
/// to a target `/probe` refused.
struct Tripwire {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Tripwire {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let count = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        Self { addr, hits, task }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn query(pairs: &[(&str, &str)]) -> String {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("/probe?{q}")
}

async fn probe(tickr: &Tickr, pairs: &[(&str, &str)]) -> (u16, String) {
    let reply = http(tickr.addr, "GET", &query(pairs), &[]).await;
    (reply.status, reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_targets_answer_with_their_series_and_blackbox_gauges_unknown_ones_never_reached() {
    let ok = TestServer::plain(vec![Step::body(200, "all good")]).await;
    let wire = Tripwire::start().await;
    let config = format!(
        "modules:\n  http_2xx: {{expect: {{status: [2xx]}}}}\n\
         defaults: {{interval: 200ms, timeout: 150ms}}\n\
         targets:\n  - {{name: shop, url: \"http://{}/\", module: http_2xx, expect: {{body_contains: [good]}}}}\n",
        ok.addr
    );
    let tickr = Tickr::start(&config).await;
    tickr
        .wait_for(LIMIT, "a first probe", |m| {
            m.value(
                "tickr_probe_runs_total",
                &[("target", "shop"), ("result", "success")],
            ) >= 1.0
        })
        .await;

    // By bare host (blackbox reads it as http://host/), by URL, by name, with its module.
    let bare = ok.addr.to_string();
    let url = format!("http://{}/", ok.addr);
    for pairs in [
        vec![("target", bare.as_str())],
        vec![("target", url.as_str()), ("module", "http_2xx")],
        vec![("target", "shop")],
    ] {
        let (status, body) = probe(&tickr, &pairs).await;
        assert_eq!(status, 200, "{pairs:?}: {body}");
        let m = Exposition::parse(&body);
        assert_eq!(m.get("probe_success", &[]), Some(1.0), "{body}");
        assert_eq!(m.get("probe_http_status_code", &[]), Some(200.0));
        assert_eq!(m.get("probe_http_version", &[]), Some(1.1));
        assert_eq!(m.get("probe_http_ssl", &[]), Some(0.0));
        assert_eq!(m.get("probe_http_redirects", &[]), Some(0.0));
        assert_eq!(m.get("probe_failed_due_to_regex", &[]), Some(0.0));
        assert!(m.get("probe_duration_seconds", &[]).unwrap() > 0.0);
        for phase in ["resolve", "connect", "processing", "transfer"] {
            assert!(
                m.get("probe_http_duration_seconds", &[("phase", phase)])
                    .is_some(),
                "{phase}"
            );
        }
        assert!(
            m.value(
                "tickr_probe_runs_total",
                &[("target", "shop"), ("result", "success")]
            ) >= 1.0
        );
        assert!(m
            .find("tickr_http_responses_total", &[("code", "200")])
            .next()
            .is_some());
        assert!(
            m.find("tickr_probe_runs_total", &[])
                .all(|s| s.labels["target"] == "shop"),
            "only this target's series"
        );
    }

    // The wrong module, an unknown target, a target without a module that could adopt it:
    // one line, 404, and not one connection to it.
    let stranger = format!("http://{}/", wire.addr);
    for (pairs, says) in [
        (
            vec![("target", url.as_str()), ("module", "tcp_connect")],
            "runs with module",
        ),
        (vec![("target", stranger.as_str())], "Unknown target"),
        (
            vec![("target", stranger.as_str()), ("module", "http_2xx")],
            "Unknown target",
        ),
        (vec![("target", "no-such-name")], "Unknown target"),
    ] {
        let (status, body) = probe(&tickr, &pairs).await;
        assert_eq!(status, 404, "{pairs:?}");
        assert!(body.contains(says), "{pairs:?}: {body}");
        assert_eq!(body.lines().count(), 1, "{body}");
    }
    let (status, _) = probe(&tickr, &[("module", "http_2xx")]).await;
    assert_eq!(status, 400, "no target at all");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wire.hits(), 0, "a refused /probe never contacts the target");
    tickr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_adopts_only_what_it_allows_and_forgets_what_nobody_asks_for() {
    let server = TestServer::plain(vec![Step::body(200, "hello")]).await;
    let wire = Tripwire::start().await;
    let pattern = format!(
        "^http://127\\\\.0\\\\.0\\\\.1:{}/adopt/",
        server.addr.port()
    );
    let config = format!(
        "modules:\n  web:\n    interval: 200ms\n    timeout: 150ms\n    labels: {{via: probe}}\n    \
         probe_endpoint: {{adopt: [\"{pattern}\"], forget_after: 1500ms}}\n\
         targets: []\n"
    );
    let tickr = Tickr::start(&config).await;
    let adopt = format!("http://{}/adopt/one", server.addr);
    let before = server.connections();
    let (status, body) = probe(&tickr, &[("target", &adopt), ("module", "web")]).await;
    assert_eq!(status, 200, "{body}");
    let m = Exposition::parse(&body);
    assert_eq!(
        m.get("probe_success", &[]),
        Some(1.0),
        "the first answer waits for the first probe: {body}"
    );
    assert!(server.connections() > before);
    let runs = |m: &Exposition| {
        m.value(
            "tickr_probe_runs_total",
            &[("target", &adopt), ("result", "success")],
        )
    };
    assert!(runs(&m) >= 1.0);
    let all = tickr.metrics().await;
    assert_eq!(
        all.get("tickr_target_source_targets", &[("source", "probe")]),
        Some(1.0)
    );
    let via: Vec<String> = all
        .find("tickr_target_info", &[("target", &adopt)])
        .map(|s| s.labels["via"].clone())
        .collect();
    assert_eq!(via, ["probe"], "scheduled with the module's settings");

    // Outside the pattern (another path, another host): 404, never contacted.
    let outside = format!("http://{}/other", server.addr);
    let elsewhere = format!("http://{}/adopt/one", wire.addr);
    let served = server.connections();
    for target in [&outside, &elsewhere] {
        let (status, body) = probe(&tickr, &[("target", target), ("module", "web")]).await;
        assert_eq!(status, 404, "{target}: {body}");
    }
    // Asked for again and again: kept, probing on its own schedule between the asks.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (status, _) = probe(&tickr, &[("target", &adopt), ("module", "web")]).await;
        assert_eq!(status, 200);
    }
    let kept = tickr.metrics().await;
    assert!(
        runs(&kept) >= 8.0,
        "still the same target, counting: {}",
        runs(&kept)
    );
    assert_eq!(wire.hits(), 0);
    let other_paths = server.connections() - served;
    assert!(
        other_paths as f64 <= runs(&kept),
        "only the adopted URL was probed"
    );

    // Nobody asks any more: dropped after forget_after, series and all.
    let gone = tickr
        .wait_for(LIMIT, "the adopted target forgotten", |m| {
            m.series_of(&adopt) == 0
        })
        .await;
    assert_eq!(
        gone.get("tickr_target_source_targets", &[("source", "probe")]),
        Some(0.0)
    );
    tickr.stop().await;
}

/// What a real Prometheus stored for `promql`, as one number (0 when absent).
async fn stored(prometheus: &Prometheus, promql: &str) -> f64 {
    prometheus
        .query(promql)
        .await
        .first()
        .map_or(0.0, |(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_drives_probe_with_blackbox_and_operator_jobs() {
    let good = TestServer::plain(Step::statuses(&[200])).await;
    let bad = TestServer::plain(Step::statuses(&[502])).await;
    let wire = Tripwire::start().await;
    // Probes every 2 s, scrapes every 500 ms: after each probe a scrape sees it before the
    // next, so what Prometheus stored can be compared with what the servers served, exactly.
    let config = format!(
        "modules:\n  http_2xx: {{interval: 2s, timeout: 1s, expect: {{status: [2xx]}}}}\n\
         targets:\n  - {{name: good, url: \"http://{}/\", module: http_2xx}}\n  \
         - {{name: bad, url: \"http://{}/\", module: http_2xx}}\n",
        good.addr, bad.addr
    );
    let tickr = Tickr::start(&config).await;
    // blackbox_exporter's README job, and the job prometheus-operator writes for a `Probe`
    // with static targets (its shard relabelling included, with the shard it substitutes).
    let jobs = format!(
        "  - job_name: blackbox\n    metrics_path: /probe\n    params:\n      module: [http_2xx]\n    \
         static_configs:\n      - targets: [\"http://{good}/\", \"http://{stranger}/\"]\n    \
         relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      \
         - source_labels: [__param_target]\n        target_label: instance\n      \
         - target_label: __address__\n        replacement: \"{tickr}\"\n\
         \x20 - job_name: probe/default/web\n    honor_timestamps: true\n    metrics_path: /probe\n    scheme: http\n    \
         params:\n      module:\n      - http_2xx\n    static_configs:\n    - targets:\n      - \"{bad}\"\n      \
         labels:\n        namespace: default\n    relabel_configs:\n    - source_labels:\n      - job\n      \
         target_label: __tmp_prometheus_job_name\n    - source_labels:\n      - __address__\n      \
         target_label: __param_target\n    - source_labels:\n      - __param_target\n      target_label: instance\n    \
         - target_label: __address__\n      replacement: \"{tickr}\"\n    - target_label: namespace\n      \
         replacement: default\n    - source_labels:\n      - __param_target\n      target_label: __tmp_hash\n      \
         modulus: 1\n      action: hashmod\n    - source_labels:\n      - __tmp_hash\n      regex: \"0\"\n      \
         action: keep\n",
        good = good.addr,
        bad = bad.addr,
        stranger = wire.addr,
        tickr = tickr.addr,
    );
    let prometheus = Prometheus::start_with_jobs(&jobs, Duration::from_millis(500)).await;

    let good_url = format!("http://{}/", good.addr);
    prometheus
        .wait_for_query(
            &format!(r#"probe_success{{job="blackbox",instance="{good_url}"}}"#),
            LIMIT,
            |r| r.first().is_some_and(|(_, v)| *v == 1.0),
        )
        .await;
    prometheus
        .wait_for_query(
            &format!(
                r#"probe_http_status_code{{job="probe/default/web",instance="{}"}}"#,
                bad.addr
            ),
            LIMIT,
            |r| r.first().is_some_and(|(_, v)| *v == 502.0),
        )
        .await;

    // Every response tickr counted, as Prometheus stored it, is one the servers served.
    for (server, promql, what) in [
        (
            &good,
            format!(
                r#"tickr_http_responses_total{{job="blackbox",instance="{good_url}",code="200"}}"#
            ),
            "200s of good through the blackbox job",
        ),
        (
            &bad,
            format!(
                r#"tickr_http_responses_total{{job="probe/default/web",instance="{}",code="502"}}"#,
                bad.addr
            ),
            "502s of bad through the operator's job",
        ),
    ] {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let served = server.connections() as f64;
            let seen = stored(&prometheus, &promql).await;
            if seen == served && seen >= 2.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: Prometheus has {seen}, the server served {served}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let namespace = prometheus
        .query(&format!(r#"probe_success{{instance="{}"}}"#, bad.addr))
        .await;
    assert_eq!(
        namespace[0].0.get("namespace").map(String::as_str),
        Some("default")
    );
    assert_eq!(namespace[0].1, 0.0, "bad answers 502");

    // The target no module knows: its scrapes fail with 404, and it was never contacted.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let stranger = loop {
        let targets = prometheus.targets().await;
        let found = targets
            .into_iter()
            .find(|t| t.instance.contains(&wire.addr.to_string()));
        match found {
            Some(t) if t.health == "down" => break t,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "the unknown target's scrape: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        stranger.last_error.contains("404"),
        "{}",
        stranger.last_error
    );
    assert_eq!(wire.hits(), 0);
    drop(prometheus);
    tickr.stop().await;
}
