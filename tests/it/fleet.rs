//! tickr as a fleet of processes over one set of targets. Shards: every target is probed by
//! exactly R of N processes, growing from 3 shards to 4 moves about R/N of the targets (all of
//! them to the new shard), and with R = 2 a dead process leaves no target unprobed. Locations:
//! every per-target series, the pages, the events and the log lines say where the probes ran
//! from, and `--probe.location` outlives a reload.
//!
//! The processes share the configuration except for `defaults.source_address`: each probes
//! from its own loopback address (127.0.0.1 for shard 0, 127.0.0.2 for shard 1, …), so that the
//! test server, which counts requests by path and client address, can tell them apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tickr_harness::{Launch, Listening};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::exposition::Exposition;
use crate::common::procs::get;

const TARGETS: usize = 160;

/// An HTTP server that answers 200 to everything and counts requests by path and client address.
pub(crate) struct CountingServer {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<HashMap<(String, IpAddr), u64>>>,
    task: Option<JoinHandle<()>>,
}

impl CountingServer {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<HashMap<(String, IpAddr), u64>>> = Arc::default();
        let counts = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, peer)) = listener.accept().await else {
                    continue;
                };
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head);
                    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                    *counts.lock().unwrap().entry((path, peer.ip())).or_default() += 1;
                    let _ = tcp
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            task: Some(task),
        }
    }

    /// Closes the listening socket (the task owns it) before returning: the port then refuses.
    pub(crate) async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// For every path probed, the client addresses that probed it.
    fn probers(&self) -> BTreeMap<String, BTreeSet<IpAddr>> {
        let mut by_path: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for (path, ip) in self.seen.lock().unwrap().keys() {
            by_path.entry(path.clone()).or_default().insert(*ip);
        }
        by_path
    }

    fn forget(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Waits until every target's path was probed by `each` addresses (and at most 20 s).
    async fn wait_probed(&self, each: usize) -> BTreeMap<String, BTreeSet<IpAddr>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probers = self.probers();
            let done = probers.len() == TARGETS && probers.values().all(|s| s.len() >= each);
            if done || Instant::now() > deadline {
                return probers;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn shard_address(index: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, index as u8 + 1))
}

fn config(server: SocketAddr, index: u32) -> String {
    let mut yaml = format!(
        "defaults:\n  interval: 500ms\n  timeout: 400ms\n  source_address: {}\ntargets:\n",
        shard_address(index)
    );
    for i in 0..TARGETS {
        yaml.push_str(&format!(
            "  - {{name: svc-{i:03}, url: \"http://{server}/t/{i:03}\"}}\n"
        ));
    }
    yaml
}

async fn start_shards(server: SocketAddr, count: u32, replicas: u32) -> Vec<Listening> {
    let mut shards = Vec::new();
    for index in 0..count {
        let launch = Launch::tickr(env!("CARGO_BIN_EXE_tickr"), &config(server, index)).args([
            format!("--shard.count={count}"),
            format!("--shard.index={index}"),
            format!("--shard.replicas={replicas}"),
        ]);
        shards.push(launch.start().await);
    }
    shards
}

async fn metrics(addr: SocketAddr) -> Exposition {
    let (status, body) = get(addr, "/metrics").await.expect("scrape");
    assert_eq!(status, 200);
    Exposition::parse(&body)
}

/// The targets a shard exposes series of.
fn exposed(e: &Exposition) -> BTreeSet<String> {
    e.find("tickr_probe_runs_total", &[])
        .filter_map(|s| s.labels.get("target").cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_probe_each_target_once_and_growing_to_four_moves_a_quarter() {
    let server = CountingServer::start().await;
    let mut owners: Vec<BTreeMap<String, BTreeSet<IpAddr>>> = Vec::new();
    for count in [3u32, 4] {
        server.forget();
        let shards = start_shards(server.addr, count, 1).await;
        let probers = server.wait_probed(1).await;
        assert_eq!(
            probers.len(),
            TARGETS,
            "every target is probed by some shard"
        );
        for (path, by) in &probers {
            assert_eq!(
                by.len(),
                1,
                "{path} is probed by exactly one of {count}: {by:?}"
            );
        }
        for (index, shard) in shards.iter().enumerate() {
            let e = metrics(shard.addr).await;
            let info = [
                ("index", index.to_string()),
                ("count", count.to_string()),
                ("replicas", "1".to_owned()),
            ];
            let info: Vec<(&str, &str)> = info.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(e.get("tickr_shard_info", &info), Some(1.0));
            let probed: BTreeSet<String> = (probers.iter())
                .filter(|(_, by)| by.contains(&shard_address(index as u32)))
                .map(|(path, _)| format!("svc-{}", &path[3..]))
                .collect();
            assert_eq!(
                exposed(&e),
                probed,
                "shard {index} exposes exactly the targets it probes"
            );
            assert!(
                e.value("tickr_targets", &[]) as usize == probed.len(),
                "tickr_targets counts the shard's own"
            );
            let (_, page) = get(shard.addr, "/").await.expect("landing page");
            assert!(
                page.contains(&format!("shard <b>{index}</b> of {count}")),
                "the landing page names the shard"
            );
        }
        owners.push(probers);
    }
    let moved: Vec<&String> = (owners[0].iter())
        .filter(|(path, by)| owners[1][*path] != **by)
        .map(|(path, _)| path)
        .collect();
    let share = moved.len() as f64 / TARGETS as f64;
    println!(
        "3 → 4 shards: {} of {TARGETS} targets moved ({:.1} %; rendezvous hashing expects 25 %)",
        moved.len(),
        share * 100.0
    );
    assert!(
        (0.15..=0.35).contains(&share),
        "about a quarter moves, not {share}"
    );
    for path in moved {
        assert_eq!(
            owners[1][path],
            BTreeSet::from([shard_address(3)]),
            "{path} moved to the new shard only"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_a_dead_shard_leaves_no_target_unprobed() {
    let server = CountingServer::start().await;
    let mut shards = start_shards(server.addr, 3, 2).await;
    let before = server.wait_probed(2).await;
    assert_eq!(before.len(), TARGETS);
    for (path, by) in &before {
        assert_eq!(
            by.len(),
            2,
            "{path} is probed by exactly two of three: {by:?}"
        );
    }
    let dead = shard_address(1);
    drop(shards.remove(1));
    // Requests of the dead shard may still be in flight: forget them after it is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.forget();
    let after = server.wait_probed(1).await;
    for (path, by) in &before {
        let mut expected = by.clone();
        expected.remove(&dead);
        assert_eq!(
            after.get(path),
            Some(&expected),
            "{path} keeps being probed by its other replica"
        );
    }
}

#[tokio::test]
async fn the_shard_index_comes_from_a_statefulset_pod_name_and_bad_flags_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yml");
    std::fs::write(&path, config("127.0.0.1:9".parse().unwrap(), 0)).expect("write");
    let run = |args: &[&str], host: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickr"))
            .arg("--config.check")
            .arg("--config.file")
            .arg(&path)
            .args(args)
            .env("HOSTNAME", host)
            .output()
            .expect("run tickr");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = run(
        &["--shard.count=3", "--shard.index-from-hostname"],
        "tickr-2",
    );
    assert!(ok, "{text}");
    assert!(text.contains("shard 2 of 3: owns "), "{text}");
    let refused = [
        (
            vec!["--shard.count=3"],
            "tickr-0",
            "--shard.count 3 needs --shard.index or --shard.index-from-hostname",
        ),
        (
            vec!["--shard.count=3", "--shard.index-from-hostname"],
            "tickr-3",
            "--shard.index 3 must be below --shard.count 3",
        ),
        (
            vec!["--shard.count=3", "--shard.index-from-hostname"],
            "web01",
            "does not end in -<ordinal>",
        ),
        (
            vec!["--shard.count=2", "--shard.index=0", "--shard.replicas=3"],
            "x",
            "--shard.replicas 3 must be between 1 and --shard.count 2",
        ),
        (vec!["--probe.location="], "x", "location must not be empty"),
    ];
    for (args, host, message) in refused {
        let (ok, text) = run(&args, host);
        assert!(!ok && text.contains(message), "{args:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_labels_every_series_page_event_and_log_line_and_the_flag_wins() {
    let server = CountingServer::start().await;
    // A port nothing listens on: that target's probes fail (connection refused).
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let refused = closed.local_addr().expect("addr");
    drop(closed);
    let yaml = |place: &str| {
        format!(
            "global:\n  location: {place}\ndefaults:\n  interval: 300ms\n  timeout: 250ms\n\
             targets:\n  - {{name: up, url: \"http://{}/up\", labels: {{team: web}}}}\n  \
             - {{name: down, url: \"http://{refused}/\"}}\n",
            server.addr
        )
    };
    let Listening { process, addr } =
        Launch::tickr(env!("CARGO_BIN_EXE_tickr"), &yaml("file-place"))
            .arg("--probe.location=eu-west")
            .start()
            .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let e = loop {
        let e = metrics(addr).await;
        let failed = e.value(
            "tickr_probe_runs_total",
            &[("target", "down"), ("result", "failure")],
        );
        if failed >= 1.0 || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let per_target: Vec<_> = e
        .samples
        .iter()
        .filter(|s| s.labels.contains_key("target"))
        .collect();
    assert!(
        per_target.len() > 40,
        "{} per-target samples",
        per_target.len()
    );
    for s in &per_target {
        assert_eq!(
            s.labels.get("location").map(String::as_str),
            Some("eu-west"),
            "{} {:?} carries the flag's location",
            s.name,
            s.labels
        );
    }
    assert_eq!(
        e.get(
            "tickr_target_info",
            &[("target", "up"), ("location", "eu-west"), ("team", "web")]
        ),
        Some(1.0)
    );
    assert!(e
        .find("tickr_build_info", &[])
        .all(|s| !s.labels.contains_key("location")));

    let (_, page) = get(addr, "/").await.expect("landing page");
    assert!(page.contains("Probing from <b>eu-west</b>"), "{page}");
    let (_, events) = get(addr, "/events?format=json").await.expect("events");
    let events: serde_json::Value = serde_json::from_str(&events).expect("json");
    assert_eq!(events["location"], "eu-west");
    let first = &events["events"][0];
    assert_eq!(first["target"], "down");
    assert_eq!(first["location"], "eu-west");
    let (_, html) = get(addr, "/events").await.expect("events page");
    assert!(html.contains("<b>down</b> from eu-west"), "{html}");
    let logs = process.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("msg=\"probe failed\"") && l.contains("location=eu-west")),
        "{logs}"
    );

    // A reload reads the file again; the command line's location still wins.
    std::fs::write(process.dir().join("config.yml"), yaml("elsewhere")).expect("write");
    let (status, body) = crate::common::procs::request(addr, "POST", "/-/reload", None, "")
        .await
        .expect("reload");
    assert_eq!(status, 200, "{body}");
    let e = metrics(addr).await;
    assert!(
        e.find("tickr_probe_success", &[("location", "eu-west")])
            .count()
            == 2
    );
    assert!(e
        .find("tickr_probe_success", &[("location", "elsewhere")])
        .next()
        .is_none());
}
