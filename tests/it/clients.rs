//! Hostile and careless clients of tickr's own server, against the release-like binary: scrapers
//! that stall or trickle on a large exposition, a client hoarding idle connections under a
//! descriptor limit, and a process that runs out of descriptors for its own probes. Through all
//! of it the probes keep their schedule, `/-/healthy` answers, and no healthy target is blamed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::exposition::Exposition;
use crate::common::procs::{get, status_field, Process};

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
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("config.yml"), yaml).expect("write config");
        let mut command = format!(
            "{shell_prefix} exec '{}' --config.file config.yml --web.listen-address 127.0.0.1:0",
            env!("CARGO_BIN_EXE_tickr")
        );
        for flag in flags {
            command.push(' ');
            command.push_str(flag);
        }
        let mut process = Process::spawn("tickr", "/bin/sh".as_ref(), &["-c", &command], dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            process.assert_running();
            let log = std::fs::read_to_string(process.dir().join("stderr.log")).unwrap_or_default();
            if let Some(addr) = log
                .lines()
                .filter(|l| l.contains("msg=listening"))
                .find_map(|l| l.split(' ').find_map(|f| f.strip_prefix("address=")))
            {
                break addr.parse().expect("listening address");
            }
            assert!(Instant::now() < deadline, "tickr did not start:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        process
            .wait_http_ok(addr, "/-/ready", Duration::from_secs(30))
            .await;
        Self { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.process.dir().join("stderr.log")).unwrap_or_default()
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
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `GET path` on a fresh connection within `limit`: its status, or why not.
async fn answered(addr: SocketAddr, path: &str, limit: Duration) -> Result<u16, String> {
    match tokio::time::timeout(limit, get(addr, path)).await {
        Ok(Ok((status, _))) => Ok(status),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// A scraper on a socket with a 4 KiB receive buffer: it sends `GET /metrics`, reads `keep`
/// bytes, then stops reading and holds the connection open. Returns what it read in all and
/// whether tickr closed the connection on it (it reads again, at last, after `hold`).
async fn stalled_scraper(addr: SocketAddr, keep: usize, hold: Duration) -> (usize, bool) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = socket.connect(addr).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: tickr\r\n\r\n")
        .await
        .expect("send request");
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
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = socket.connect(addr).await.expect("connect");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: tickr\r\n\r\n")
        .await
        .expect("send request");
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
