//! A resolver that never answers: the system lookups tickr cannot cancel must stay bounded, and
//! targets that need no lookup must keep their schedule.
//!
//! The tickr binary runs in a mount namespace of its own (`unshare --mount`) where
//! `/etc/resolv.conf` is bind-mounted to a file naming 127.0.0.1 as the only nameserver, with a
//! 30 s timeout. This test holds UDP 127.0.0.1:53 and reads every query without answering: the
//! black hole that a firewall dropping DNS, or a dead resolver, looks like from libc. Needs root
//! (for the mount and port 53), as CI has.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickr::limits::LOOKUP_SLOTS;

use crate::common::exposition::{http, Exposition};
use crate::common::procs::{free_port, require, status_field, Process};
use crate::common::server::{Step, TestServer};

/// Targets whose names only the black hole is asked about.
const LOST: usize = 100;
/// How long the exporter runs against the black hole: well inside libc's 30 s, so every lookup
/// that started is still stuck when it ends.
const RUN: Duration = Duration::from_secs(12);
const HEALTHY_INTERVAL: Duration = Duration::from_millis(500);

/// UDP 127.0.0.1:53, counting the queries it swallows. Stops when dropped.
struct BlackHole {
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn bind() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:53").unwrap_or_else(|e| {
            panic!("this test holds UDP 127.0.0.1:53 as a resolver that never answers: {e}")
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (queries, stop) = (queries.clone(), stop.clone());
            move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    if socket.recv_from(&mut buf).is_ok() {
                        queries.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self {
            queries,
            stop,
            thread: Some(thread),
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_resolver_holds_a_bounded_number_of_threads() {
    let unshare = require("unshare");
    let hole = BlackHole::bind();
    let healthy = TestServer::plain(vec![Step::status(200)]).await;

    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:30 attempts:1\n",
    )
    .unwrap();
    let mut yaml = format!(
        "targets:\n  - name: healthy\n    url: {}\n    interval: {}ms\n    timeout: 400ms\n",
        healthy.url("/"),
        HEALTHY_INTERVAL.as_millis()
    );
    for i in 0..LOST {
        yaml.push_str(&format!(
            "  - name: lost-{i}\n    url: http://app-{i}.blackhole.test:{}/\n    interval: 1s\n    timeout: 500ms\n",
            healthy.addr.port()
        ));
    }
    let config = dir.path().join("config.yml");
    std::fs::write(&config, yaml).unwrap();

    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let listen = addr.to_string();
    let script = r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#;
    let args: [&std::ffi::OsStr; 10] = [
        "--mount".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        script.as_ref(),
        resolv.as_os_str(),
        env!("CARGO_BIN_EXE_tickr").as_ref(),
        "--config.file".as_ref(),
        config.as_os_str(),
        "--web.listen-address".as_ref(),
        listen.as_ref(),
    ];
    let mut tickr = Process::spawn("tickr", &unshare, &args, dir);
    tickr
        .wait_http_ok(addr, "/-/ready", Duration::from_secs(20))
        .await;
    // `unshare` and `sh` exec, so the pid is tickr's own.
    let pid = tickr.pid();

    let started = Instant::now();
    let (mut max_threads, mut rss_kb) = (0, Vec::new());
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tickr.assert_running();
        max_threads = max_threads.max(status_field(pid, "Threads"));
        rss_kb.push(status_field(pid, "VmRSS"));
    }
    let scrape = http(addr, "GET", "/metrics", &[]).await;
    assert_eq!(scrape.status, 200);
    let metrics = Exposition::parse(&scrape.text());
    let queries = hole.queries();

    // The black hole was really asked: without it, nothing here would be tested.
    assert!(
        queries > 0,
        "no query reached the black hole\n{}",
        tickr.logs()
    );
    // glibc asks for A and AAAA; with attempts:1 and a 30 s timeout, each slot sent its queries
    // once in this run. Unbounded, every probe of every lost target would have asked again.
    assert!(
        queries <= 2 * LOOKUP_SLOTS + 8,
        "{queries} queries: more lookups than the {LOOKUP_SLOTS} slots were started"
    );
    // Two workers, the signal thread, a few helpers, and at most one blocking thread per slot.
    let bound = LOOKUP_SLOTS as u64 + 12;
    assert!(
        max_threads <= bound,
        "{max_threads} threads (bound {bound}): abandoned lookups are not bounded"
    );

    let mut lost_failures = 0.0;
    for i in 0..LOST {
        let name = format!("lost-{i}");
        assert_eq!(
            metrics.value(
                "tickr_probe_runs_total",
                &[("target", &name), ("result", "success")]
            ),
            0.0
        );
        lost_failures += metrics.value(
            "tickr_probe_failures_total",
            &[("target", &name), ("reason", "timeout")],
        );
    }
    // Every lost target failed every probe as a timeout in `resolve`: ~11 each.
    assert!(
        lost_failures >= (LOST * 8) as f64,
        "{lost_failures} timeouts over {LOST} lost targets"
    );
    let failed = |name: &str| {
        metrics.value(
            "tickr_probe_runs_total",
            &[("target", name), ("result", "failure")],
        )
    };
    assert_eq!(failed("healthy"), 0.0, "{}", tickr.logs());
    let ok = metrics.value(
        "tickr_probe_runs_total",
        &[("target", "healthy"), ("result", "success")],
    );
    let ideal = RUN.as_secs_f64() / HEALTHY_INTERVAL.as_secs_f64();
    assert!(
        ok >= ideal * 0.8,
        "the healthy target ran {ok} probes in {RUN:?}, ideally {ideal}"
    );
    assert!(
        tickr.logs().contains("stuck in resolve"),
        "the lost targets' failures say where they stalled"
    );

    // Memory: flat over the second half of the run (stuck lookups hold stacks, not growth).
    let half = &rss_kb[rss_kb.len() / 2..];
    let (lo, hi) = (*half.iter().min().unwrap(), *half.iter().max().unwrap());
    assert!(
        hi - lo < 8 << 10,
        "RSS moved {} KiB in the second half: {rss_kb:?}",
        hi - lo
    );

    // SIGTERM exits 0 at once, though 32 lookups are still stuck in libc.
    let term = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = loop {
        if let Some(status) = tickr.exited() {
            break status;
        }
        assert!(
            term.elapsed() < Duration::from_secs(10),
            "tickr still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit {status:?}\n{}", tickr.logs());
    assert!(
        term.elapsed() < Duration::from_secs(3),
        "SIGTERM took {:?}: shutdown waited for abandoned lookups",
        term.elapsed()
    );
}
