//! Hostile and careless clients of tickr's own server, against the release-like binary: scrapers
//! that stall or trickle on a large exposition, a client hoarding idle connections under a
//! descriptor limit, and a process that runs out of descriptors for its own probes. Through all
//! of it the probes keep their schedule, `/-/healthy` answers, and no healthy target is blamed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::exposition::Exposition;
use crate::common::procs::{get, status_field, Process};
use tickr_harness::{procfs, Launch, Listening};

/// A plain HTTP server that answers every request `200 ok` after `delay` and counts them.
struct Counting {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(AtomicU64::new(0));
        let count = served.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let reply =
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    if tcp.write_all(reply.as_bytes()).await.is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Self { addr, served, task }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The tickr binary on `yaml`, listening on a port the OS picks, with `flags`; `shell_prefix`
/// runs before it in `sh` (for `ulimit`). Killed on drop.
struct Binary {
    process: Process,
    addr: SocketAddr,
}

impl Binary {
    async fn start(yaml: &str, flags: &[&str], shell_prefix: &str) -> Self {
        let Listening { mut process, addr } = Launch::tickr(env!("CARGO_BIN_EXE_tickr"), yaml)
            .args(flags)
            .shell_prefix(shell_prefix)
            .start()
            .await;
        process
            .wait_http_ok(addr, "/-/ready", Duration::from_secs(30))
            .await;
        Self { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn log(&self) -> String {
        self.process.stderr()
    }

    async fn metrics(&self) -> Exposition {
        let (status, text) = get(self.addr, "/metrics").await.expect("scrape");
        assert_eq!(status, 200, "{text}");
        Exposition::parse(&text)
    }

    /// SIGTERM, and the exit status within `limit`.
    async fn terminate(mut self, limit: Duration) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tickr did not exit within {limit:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn open_fds(pid: u32) -> usize {
    procfs::open_fds(pid).unwrap_or(0)
}

/// `GET path` on a fresh connection within `limit`: its status, or why not.
async fn answered(addr: SocketAddr, path: &str, limit: Duration) -> Result<u16, String> {
    match tokio::time::timeout(limit, get(addr, path)).await {
        Ok(Ok((status, _))) => Ok(status),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// A connection with a 4 KiB receive buffer (so that tickr's writes stall as soon as the
/// scraper stops reading) that has sent `GET /metrics`.
async fn ask_for_metrics(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = socket.connect(addr).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: tickr\r\n\r\n")
        .await
        .expect("send request");
    tcp
}

/// A scraper on a socket with a 4 KiB receive buffer: it sends `GET /metrics`, reads `keep`
/// bytes, then stops reading and holds the connection open. Returns what it read in all and
/// whether tickr closed the connection on it (it reads again, at last, after `hold`).
async fn stalled_scraper(addr: SocketAddr, keep: usize, hold: Duration) -> (usize, bool) {
    let mut tcp = ask_for_metrics(addr).await;
    let mut read = 0;
    let mut buf = vec![0u8; 16 << 10];
    while read < keep {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return (read, true),
            Ok(n) => read += n,
        }
    }
    tokio::time::sleep(hold).await;
    // Whatever the kernel still holds, then the end that tickr's write timeout made.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => read += n,
            }
        }
    })
    .await
    .unwrap_or(false);
    (read, closed)
}

/// A scraper that reads 1 KiB a second for `during`, then hangs up.
async fn trickling_scraper(addr: SocketAddr, during: Duration) -> usize {
    let mut tcp = ask_for_metrics(addr).await;
    let end = Instant::now() + during;
    let mut read = 0;
    let mut buf = [0u8; 1024];
    while Instant::now() < end {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    read
}

fn config(filler: usize, filler_url: &str, canaries: usize, canary_url: &str) -> String {
    let mut yaml = String::from("targets:\n");
    for i in 0..filler {
        yaml.push_str(&format!(
            "  - {{name: filler-{i:04}, url: \"{filler_url}\", interval: 5s, timeout: 1s}}\n"
        ));
    }
    for i in 0..canaries {
        yaml.push_str(&format!(
            "  - {{name: canary-{i}, url: \"{canary_url}\", interval: 1s, timeout: 900ms}}\n"
        ));
    }
    yaml
}

/// A port on 127.0.0.1 that refuses connections: bound, then closed.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Issue: with ~17 MB of exposition, one scraper that stopped reading froze the exporter for
/// good (the encoder held a histogram's lock while it waited for the client, and the probe that
/// wanted to record waited for that lock on the runtime thread). Ten stalled scrapers, each
/// having read a different amount, and one reading at 1 KB/s, beside 2,000 targets every 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_trickling_scrapers_never_stop_probes_or_health() {
    let canary = Counting::start(Duration::ZERO).await;
    let filler_url = format!("http://127.0.0.1:{}/", refused_port());
    let canary_url = format!("http://{}/", canary.addr);
    let yaml = config(2000, &filler_url, 5, &canary_url);
    let tickr = Binary::start(&yaml, &["--web.write-timeout", "3s"], "").await;
    let addr = tickr.addr;

    // Every filler target has probed once: the exposition is at its full size.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (status, full) = get(addr, "/metrics").await.expect("scrape");
    assert_eq!(status, 200);
    let size = full.len();
    assert!(
        size > 10 << 20,
        "exposition of {size} bytes is too small to stall a scraper"
    );

    let attack = Duration::from_secs(20);
    let hold = Duration::from_secs(12);
    let mut stalled = Vec::new();
    for k in 0..10 {
        let keep = k * 1_200_000;
        stalled.push(tokio::spawn(stalled_scraper(addr, keep, hold)));
    }
    let trickle = tokio::spawn(trickling_scraper(addr, attack));

    let before = canary.served();
    let started = Instant::now();
    let (mut worst, mut failures, mut max_fds, mut max_rss) = (Duration::ZERO, Vec::new(), 0, 0);
    while started.elapsed() < attack {
        let asked = Instant::now();
        match answered(addr, "/-/healthy", Duration::from_secs(2)).await {
            Ok(200) => worst = worst.max(asked.elapsed()),
            other => failures.push(format!(
                "{:.1}s: {other:?}",
                started.elapsed().as_secs_f64()
            )),
        }
        max_fds = max_fds.max(open_fds(tickr.pid()));
        max_rss = max_rss.max(status_field(tickr.pid(), "VmRSS"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served = canary.served() - before;
    // A well-behaved scrape in the middle of the attack is complete.
    let during = get(addr, "/metrics").await;

    let mut cut_off = 0;
    for s in stalled {
        let (read, closed) = s.await.expect("stalled scraper");
        assert!(
            read < size,
            "a stalled scraper read the whole exposition ({read} bytes)"
        );
        cut_off += usize::from(closed);
    }
    let trickled = trickle.await.expect("trickling scraper");
    eprintln!(
        "exposition {size} bytes; during {attack:?} of attack: /-/healthy worst {worst:?}, \
         canary probes served {served} (of ~{}), peak fds {max_fds}, peak RSS {} MiB; \
         {cut_off}/10 stalled scrapers cut off; the trickling one read {trickled} bytes",
        5 * attack.as_secs(),
        max_rss / 1024,
    );
    assert!(
        failures.is_empty(),
        "/-/healthy did not answer: {failures:?}"
    );
    match during {
        Ok((200, text)) => assert!(
            text.ends_with("# EOF\n"),
            "a scrape during the attack is cut short"
        ),
        other => panic!("a scrape during the attack failed: {other:?}"),
    }
    // 5 canaries every second: a frozen exporter probes none; a noisy machine loses a few.
    assert!(
        served >= 5 * attack.as_secs() * 7 / 10,
        "canaries probed {served} times in {attack:?}: probes lost their schedule"
    );
    assert_eq!(
        cut_off, 10,
        "every stalled scraper is cut off after the write timeout"
    );
    let m = tickr.metrics().await;
    let late = m.value("tickr_scheduler_lag_seconds_bucket", &[("le", "+Inf")])
        - m.value("tickr_scheduler_lag_seconds_bucket", &[("le", "1.0")]);
    assert!(late < 10.0, "{late} probes started more than a second late");
    assert!(
        tickr.log().contains("write timeout"),
        "the cut-off is logged:\n{}",
        tickr.log()
    );

    // Shutdown is not held hostage either: no forced exit.
    let status = tickr.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// `increase()`-style totals of one family across every target.
fn total(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.find(name, labels).map(|s| s.value).sum()
}

/// Issue: under a descriptor limit, probes that found no descriptor left were counted as the
/// targets' `connect` failures: a false alert about healthy services. 200 targets of one slow,
/// healthy server, about 100 probes in flight at once, under a hard limit of 60 descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_counted_as_tickrs_own_not_the_targets() {
    let healthy = Counting::start(Duration::from_secs(2)).await;
    let url = format!("http://{}/", healthy.addr);
    let mut yaml = String::from("targets:\n");
    for i in 0..200 {
        yaml.push_str(&format!(
            "  - {{name: slow-{i:03}, url: \"{url}\", interval: 4s, timeout: 3500ms}}\n"
        ));
    }
    let tickr = Binary::start(&yaml, &[], "ulimit -n 60 &&").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let m = tickr.metrics().await;
    let skipped = m.value(
        "tickr_probes_skipped_total",
        &[("cause", "file_descriptors")],
    );
    let failed = total(&m, "tickr_probe_runs_total", &[("result", "failure")]);
    let succeeded = total(&m, "tickr_probe_runs_total", &[("result", "success")]);
    let reasons = total(&m, "tickr_probe_failures_total", &[]);
    eprintln!(
        "limit 60: {succeeded} probes succeeded, {failed} failed, {skipped} skipped for want of a descriptor; \
         {} served",
        healthy.served()
    );
    assert!(
        skipped > 0.0,
        "the limit was never reached: the test proves nothing"
    );
    assert!(succeeded > 0.0, "no probe got through at all");
    assert_eq!(
        failed, 0.0,
        "a healthy target was blamed for tickr's own shortage"
    );
    assert_eq!(reasons, 0.0);
    // Every cause exists from the start, at zero or more.
    for cause in ["file_descriptors", "memory", "local_ports"] {
        assert!(
            m.get("tickr_probes_skipped_total", &[("cause", cause)])
                .is_some(),
            "{cause}"
        );
    }
    let log = tickr.log();
    assert!(
        log.contains("probe skipped"),
        "the shortage is logged:\n{log}"
    );
    assert!(
        log.matches("probe skipped").count() <= 3,
        "the shortage warning is rate-limited:\n{log}"
    );
}

/// The soft limit is raised to the hard one at start, and said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let tickr = Binary::start("targets: []\n", &[], "ulimit -S -n 256 &&").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", tickr.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a limit line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[3], fields[4],
        "soft limit raised to the hard one: {line}"
    );
    assert_ne!(fields[3], "256", "{line}");
    let log = tickr.log();
    assert!(log.contains("raised the file descriptor limit"), "{log}");
    assert!(log.contains("before=256"), "{log}");
}

/// What a client hoarding idle connections did to tickr under `ulimit -n 1024`.
struct Hoarded {
    held: usize,
    peak_fds: usize,
    served: u64,
    failed: f64,
    skipped: f64,
}

/// 50 healthy targets every second, under `ulimit -n 1024`, while a client opens 1,100 idle
/// connections to tickr (all at once, each given 3 s to connect) and holds them for 8 s.
async fn hoard(flags: &[&str]) -> Hoarded {
    // The hoarder needs more descriptors than this test process may have by default.
    let _ = tickr::fds::raise_limit();
    let healthy = Counting::start(Duration::ZERO).await;
    let url = format!("http://{}/", healthy.addr);
    let mut yaml = String::from("targets:\n");
    for i in 0..50 {
        yaml.push_str(&format!(
            "  - {{name: ok-{i:02}, url: \"{url}\", interval: 1s, timeout: 900ms}}\n"
        ));
    }
    let tickr = Binary::start(&yaml, flags, "ulimit -n 1024 &&").await;
    let addr = tickr.addr;
    let connecting: Vec<_> = (0..1300)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr))
                    .await
                    .ok()
                    .and_then(Result::ok)
            })
        })
        .collect();
    let mut hoard = Vec::new();
    for c in connecting {
        hoard.extend(c.await.expect("connect task"));
    }
    let before = healthy.served();
    let mut peak_fds = 0;
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak_fds = peak_fds.max(open_fds(tickr.pid()));
    }
    let served = healthy.served() - before;
    let held = hoard.len();
    drop(hoard);
    let m = tickr.metrics().await;
    let hoarded = Hoarded {
        held,
        peak_fds,
        served,
        failed: total(&m, "tickr_probe_runs_total", &[("result", "failure")]),
        skipped: total(&m, "tickr_probes_skipped_total", &[]),
    };
    eprintln!(
        "{flags:?}: {held} of 1300 idle connections made; tickr's peak fds {peak_fds}; {served} \
         probes served in 8 s (50 targets every second); {} failed, {} skipped",
        hoarded.failed, hoarded.skipped
    );
    hoarded
}

/// Issue: a client holding ~1,100 idle connections under `ulimit -n 1024` made a healthy target
/// fail probes with "Too many open files". With the connection limit the server holds at most
/// that many (the hoarder's further connections are closed), and no probe is lost. (Without the
/// limit, as `--web.max-connections 65536`, the same hoarder takes tickr to its descriptor
/// limit; how soon depends on how fast the backlog drains, so that run is no assertion.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_hoarder_under_ulimit_1024_costs_no_probe() {
    let limited = hoard(&[]).await;
    assert!(
        limited.held > 1000,
        "the hoarder could not open its connections"
    );
    assert!(
        limited.peak_fds < 400,
        "{} descriptors: the connection limit did not hold",
        limited.peak_fds
    );
    assert_eq!(
        limited.failed, 0.0,
        "a healthy target was blamed for the hoarder"
    );
    assert_eq!(limited.skipped, 0.0, "probes ran out of descriptors");
    assert!(
        limited.served >= 50 * 8 * 7 / 10,
        "probes lost their schedule: {} in 8 s",
        limited.served
    );
}
