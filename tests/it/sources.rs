//! Target sources against real files and a real HTTP inventory on 127.0.0.1: files rewritten
//! while probing (added, removed, relabelled, broken, fixed), and an inventory that changes its
//! answer, fails, hangs and sends garbage. Unchanged targets keep exact counters, removed ones
//! lose their series, and a failed refresh changes nothing but the refresh metrics.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::exposition::Exposition;
use crate::common::server::{Step, TestServer};
use crate::common::tickr::Tickr;

const LIMIT: Duration = Duration::from_secs(15);

fn runs(m: &Exposition, target: &str) -> f64 {
    m.find("tickr_probe_runs_total", &[("target", target)])
        .map(|s| s.value)
        .sum()
}

fn source(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("source", "inv")];
    all.extend_from_slice(labels);
    m.value(name, &all)
}

fn refreshes(m: &Exposition, result: &str) -> f64 {
    source(
        m,
        "tickr_target_source_refreshes_total",
        &[("result", result)],
    )
}

/// Writes `text` to `path` as tools do, through a temporary file and a rename.
fn publish(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_follow_their_files_and_a_broken_file_changes_nothing() {
    let keep = TestServer::plain(Step::statuses(&[200])).await;
    let other = TestServer::plain(Step::statuses(&[200])).await;
    let config = "modules:\n  quick:\n    interval: 200ms\n    timeout: 150ms\n    labels: {from: module}\n\
                  target_sources:\n  - name: inv\n    file_sd: [\"targets/*.yml\"]\n    refresh: 100ms\n    \
                  module: quick\n    scheme: http\n    path: /health\n\
                  targets:\n  - {name: listed, url: \"http://127.0.0.1:1/\", interval: 1m}\n";
    let tickr = Tickr::start(config).await;
    let dir = tickr.dir.path().join("targets");
    std::fs::create_dir(&dir).unwrap();
    let keep_url = keep.url("/health");
    // A bare host:port takes the source's scheme and path; a URL is taken as it is.
    publish(
        &dir.join("web.yml"),
        &format!(
            "- targets: [\"{}\"]\n  labels: {{team: web, __meta_ignored: x}}\n\
             - targets: [\"{}\", \"not a target/at all\"]\n  labels: {{tickr_name: other, team: ops}}\n",
            keep.addr,
            other.url("/x")
        ),
    );
    let before = tickr
        .wait_for(LIMIT, "both discovered targets probing", |m| {
            runs(m, &keep_url) >= 5.0 && runs(m, "other") >= 5.0
        })
        .await;
    assert_eq!(source(&before, "tickr_target_source_targets", &[]), 2.0);
    assert_eq!(
        source(
            &before,
            "tickr_target_source_dropped_targets",
            &[("reason", "invalid")]
        ),
        1.0,
        "the entry that is neither a URL nor host:port"
    );
    assert_eq!(
        source(&before, "tickr_target_source_refresh_success", &[]),
        1.0
    );
    let info = before
        .find("tickr_target_info", &[("target", &keep_url)])
        .next()
        .expect("target info of the discovered target")
        .labels
        .clone();
    assert_eq!(info["team"], "web", "group labels become target labels");
    assert_eq!(info["from"], "module", "the source's module applies");
    assert!(!info.contains_key("__meta_ignored"));
    assert_eq!(before.get("tickr_targets", &[]), Some(3.0));

    // Rewrite: `other` relabelled (a change: it restarts), a new one added, `keep` as it was.
    let added = TestServer::plain(Step::statuses(&[200])).await;
    publish(
        &dir.join("web.yml"),
        &format!(
            "- targets: [\"{}\"]\n  labels: {{team: web, __meta_ignored: x}}\n\
             - targets: [\"{}\"]\n  labels: {{tickr_name: other, team: platform}}\n\
             - targets: [\"{}\"]\n  labels: {{tickr_name: added}}\n",
            keep.addr,
            other.url("/x"),
            added.addr,
        ),
    );
    let rewritten = tickr
        .wait_for(LIMIT, "the added target probing", |m| {
            runs(m, "added") >= 2.0
        })
        .await;
    assert!(
        runs(&rewritten, &keep_url) >= runs(&before, &keep_url),
        "an unchanged target keeps its counters"
    );
    let relabelled = rewritten
        .find("tickr_probe_runs_total", &[("target", "other")])
        .next()
        .expect("other")
        .labels["team"]
        .clone();
    assert_eq!(relabelled, "platform");
    // Exact: every probe of the unchanged target reached its server, and was counted once.
    let counted = runs(&rewritten, &keep_url);
    let served = keep.connections() as f64;
    assert!(
        (served - counted).abs() <= 1.0,
        "{counted} probes counted, {served} served (one may be in flight)"
    );

    // Broken: the file stops parsing. Nothing changes but the refresh metrics.
    let failures = refreshes(&rewritten, "failure");
    publish(
        &dir.join("web.yml"),
        "- targets: [\"unclosed\n  labels: {\n",
    );
    let broken = tickr
        .wait_for(LIMIT, "the failed refresh", |m| {
            refreshes(m, "failure") > failures
        })
        .await;
    assert_eq!(
        source(&broken, "tickr_target_source_refresh_success", &[]),
        0.0
    );
    assert_eq!(source(&broken, "tickr_target_source_targets", &[]), 3.0);
    let still = tickr
        .wait_for(LIMIT, "probes going on", |m| {
            runs(m, &keep_url) >= runs(&broken, &keep_url) + 3.0
        })
        .await;
    assert_eq!(still.get("tickr_targets", &[]), Some(4.0));

    // Fixed, with `added` gone: its series go, the rest stay.
    publish(
        &dir.join("web.yml"),
        &format!(
            "- targets: [\"{}\"]\n  labels: {{team: web}}\n- targets: [\"{}\"]\n  labels: {{tickr_name: other, team: platform}}\n",
            keep.addr,
            other.url("/x"),
        ),
    );
    let fixed = tickr
        .wait_for(LIMIT, "the fixed file applied", |m| {
            source(m, "tickr_target_source_refresh_success", &[]) == 1.0
                && m.series_of("added") == 0
        })
        .await;
    assert!(runs(&fixed, &keep_url) >= runs(&still, &keep_url));
    assert_eq!(source(&fixed, "tickr_target_source_targets", &[]), 2.0);

    // A reload that changes the module: the source keeps its entries (no refresh needed) and
    // its targets take the new settings.
    let reloaded_config = config.replace("{from: module}", "{from: reloaded}");
    tickr.write_config(&reloaded_config);
    let reply = tickr.post("/-/reload").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let after_reload = tickr.metrics().await;
    let from: Vec<String> = after_reload
        .find("tickr_target_info", &[("target", &keep_url)])
        .map(|s| s.labels["from"].clone())
        .collect();
    assert_eq!(from, ["reloaded"], "rebuilt at once, with the new module");

    // The whole file gone: its targets go too (as in Prometheus), the listed one stays.
    std::fs::remove_file(dir.join("web.yml")).unwrap();
    let gone = tickr
        .wait_for(LIMIT, "the source emptied", |m| {
            source(m, "tickr_target_source_targets", &[]) == 0.0
        })
        .await;
    assert_eq!(gone.series_of(&keep_url), 0);
    assert_eq!(gone.get("tickr_targets", &[]), Some(1.0));
    tickr.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_name_that_is_taken_is_a_counted_clash_not_an_overwrite() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let config = format!(
        "defaults: {{interval: 200ms, timeout: 150ms}}\n\
         target_sources:\n  - {{name: inv, file_sd: [more.json], refresh: 100ms}}\n\
         targets:\n  - {{name: shop, url: \"{}\", labels: {{owner: file}}}}\n",
        server.url("/listed")
    );
    let tickr = Tickr::start(&config).await;
    publish(
        &tickr.dir.path().join("more.json"),
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"tickr_name": "shop", "owner": "inventory"}}}},
                {{"targets": ["{}"], "labels": {{"tickr_name": "fresh"}}}}]"#,
            server.url("/discovered"),
            server.url("/fresh")
        ),
    );
    let m = tickr
        .wait_for(LIMIT, "the discovered target", |m| runs(m, "fresh") >= 2.0)
        .await;
    assert_eq!(
        source(
            &m,
            "tickr_target_source_dropped_targets",
            &[("reason", "clash")]
        ),
        1.0
    );
    let owner = m
        .find("tickr_target_info", &[("target", "shop")])
        .map(|s| s.labels["owner"].clone())
        .collect::<Vec<_>>();
    assert_eq!(owner, ["file"], "the file's target keeps its name");
    tickr.stop().await;
}

/// An HTTP SD inventory whose answer the test sets.
#[derive(Clone)]
enum Answer {
    Json(String),
    Status(u16),
    Hang,
    Garbage,
    WrongType,
}

struct Inventory {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    asked: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    task: JoinHandle<()>,
}

impl Inventory {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (now, log) = (answer.clone(), asked.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (now, log) = (now.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        log.lock().unwrap().push(headers);
                        let answer = now.lock().unwrap().clone();
                        async move {
                            let (status, kind, body) = match answer {
                                Answer::Json(text) => (200, "application/json", text),
                                Answer::Status(code) => (code, "application/json", "[]".into()),
                                Answer::Hang => {
                                    tokio::time::sleep(Duration::from_secs(60)).await;
                                    (200, "application/json", "[]".into())
                                }
                                Answer::Garbage => {
                                    (200, "application/json", "{\"targets\": ".into())
                                }
                                Answer::WrongType => (200, "text/html", "[]".into()),
                            };
                            let reply = http::Response::builder()
                                .status(status)
                                .header("content-type", kind)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap();
                            Ok::<_, Infallible>(reply)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            answer,
            asked,
            task,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn groups(urls: &[(&str, String)]) -> Answer {
    let list: Vec<String> = urls
        .iter()
        .map(|(name, url)| {
            format!(r#"{{"targets": ["{url}"], "labels": {{"tickr_name": "{name}"}}}}"#)
        })
        .collect();
    Answer::Json(format!("[{}]", list.join(",")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_keeps_the_last_good_set_through_errors_hangs_and_garbage() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let inventory =
        Inventory::start(groups(&[("a", server.url("/a")), ("b", server.url("/b"))])).await;
    let config = format!(
        "defaults: {{interval: 200ms, timeout: 150ms}}\n\
         target_sources:\n  - name: inv\n    http_sd:\n      url: \"http://{}/sd\"\n      refresh: 1s\n      \
         timeout: 500ms\n      headers: {{Authorization: Bearer sd-token}}\n",
        inventory.addr
    );
    let tickr = Tickr::start(&config).await;
    let first = tickr
        .wait_for(LIMIT, "a and b probing", |m| {
            runs(m, "a") >= 3.0 && runs(m, "b") >= 3.0
        })
        .await;
    assert_eq!(source(&first, "tickr_target_source_targets", &[]), 2.0);
    let asked = inventory.asked.lock().unwrap()[0].clone();
    assert_eq!(
        asked.get("authorization").map(String::as_str),
        Some("Bearer sd-token")
    );

    // A changed answer: b goes, c comes, a keeps counting.
    inventory.set(groups(&[("a", server.url("/a")), ("c", server.url("/c"))]));
    let changed = tickr
        .wait_for(LIMIT, "c probing and b gone", |m| {
            runs(m, "c") >= 2.0 && m.series_of("b") == 0
        })
        .await;
    assert!(runs(&changed, "a") >= runs(&first, "a"));

    // Every way an inventory can fail keeps a and c, and counts a failed refresh.
    for (answer, what) in [
        (Answer::Status(500), "a 500"),
        (Answer::Hang, "a hang past the timeout"),
        (Answer::Garbage, "a cut JSON body"),
        (Answer::WrongType, "an HTML answer"),
    ] {
        let failures = refreshes(&tickr.metrics().await, "failure");
        inventory.set(answer);
        let failed = tickr
            .wait_for(LIMIT, what, |m| refreshes(m, "failure") > failures)
            .await;
        assert_eq!(
            source(&failed, "tickr_target_source_refresh_success", &[]),
            0.0,
            "{what}"
        );
        assert_eq!(
            source(&failed, "tickr_target_source_targets", &[]),
            2.0,
            "{what}"
        );
        assert!(
            failed.series_of("a") > 0 && failed.series_of("c") > 0,
            "{what}"
        );
    }
    inventory.set(groups(&[("a", server.url("/a"))]));
    let healed = tickr
        .wait_for(LIMIT, "the inventory answering again", |m| {
            source(m, "tickr_target_source_refresh_success", &[]) == 1.0 && m.series_of("c") == 0
        })
        .await;
    assert!(
        runs(&healed, "a") >= runs(&changed, "a"),
        "a was never restarted"
    );
    tickr.stop().await;
}
