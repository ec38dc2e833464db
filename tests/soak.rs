//! Long runs and load: thousands of targets for a while (file descriptors, memory and in-flight
//! probes must level off and come back), storms of reloads under load, a saturated probe limit,
//! and shutdown on SIGTERM with in-flight probes and open HTTP connections.
//!
//! A test binary of its own, not a module of `tests/it`: cargo runs test binaries one after
//! another, so thousands of probes a second do not slow the timing-sensitive tests of `tests/it`
//! (nor they the soak's figures). It uses the same harness, the `tickr-harness` crate.
//! The soak and shutdown tests run the binary, so `/proc/<pid>` describes tickr alone. The soak
//! lasts `TICKR_SOAK_SECS` seconds of steady load (60 by default) with `TICKR_SOAK_TARGETS`
//! targets (2000); each sample is printed on stderr (`cargo test --test soak -- --nocapture`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use tickr_harness::exposition::{http, Exposition};
use tickr_harness::in_process::Tickr;
use tickr_harness::process::listening_address;
use tickr_harness::procfs;
use tickr_harness::server::{Step, TestServer};
use tickr_harness::{Launch, Process};

// ---------------------------------------------------------------------------------------------
// The binary, and what /proc says about it.

/// The tickr binary on a config file in a temp dir, its log (JSON lines) read by a thread.
struct Binary {
    process: Process,
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    config: std::path::PathBuf,
}

#[derive(Default)]
struct Log {
    lines: usize,
    /// Lines other than the per-probe ones, for assertions and failure messages.
    notable: Vec<String>,
    /// The log file, read up to here: by the thread as it grows, and by [`Binary::wait_exit`]
    /// to its end once tickr has exited (so its last lines are in before any assertion).
    tail: Option<Tail>,
}

impl Log {
    fn has(&self, needle: &str) -> bool {
        self.notable.iter().any(|l| l.contains(needle))
    }

    /// Takes in the lines written since the last call; how many.
    fn catch_up(&mut self) -> usize {
        let Some(tail) = self.tail.as_mut() else {
            return 0;
        };
        let mut read = 0;
        while let Some(line) = tail.next_line() {
            self.lines += 1;
            if !line.contains("probe failed") {
                self.notable.push(line);
            }
            read += 1;
        }
        read
    }
}

/// The lines of a log file the child is still writing.
struct Tail {
    reader: BufReader<File>,
    line: Vec<u8>,
}

impl Tail {
    fn open(path: &std::path::Path) -> Self {
        Self {
            reader: BufReader::new(File::open(path).expect("open stderr.log")),
            line: Vec::new(),
        }
    }

    /// The next complete line, or `None` at the end of what has been written so far.
    fn next_line(&mut self) -> Option<String> {
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(_) if self.line.ends_with(b"\n") => {
                let line = String::from_utf8_lossy(&self.line).trim_end().to_owned();
                self.line.clear();
                Some(line)
            }
            // A partial line stays in `self.line` until the rest is written.
            _ => None,
        }
    }
}

impl Binary {
    fn start(yaml: &str) -> Self {
        Self::start_with(yaml, &[])
    }

    /// With extra environment variables. `TICKR_SOAK_BIN` names another binary to run (e.g. a
    /// release build, for figures).
    ///
    /// Synchronous, as the tests call it: the log is tailed by a thread, not by the runtime.
    fn start_with(yaml: &str, env: &[(&str, &str)]) -> Self {
        let program = std::env::var("TICKR_SOAK_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tickr").to_owned());
        let mut launch = Launch::tickr(program, yaml).args(["--log.format", "json"]);
        for (key, value) in env {
            launch = launch.env(key, value);
        }
        let config = launch.dir().join("config.yml");
        let mut process = launch.spawn();
        let mut tail = Tail::open(&process.dir().join("stderr.log"));
        let log = Arc::new(Mutex::new(Log::default()));
        let addr = loop {
            let Some(line) = tail.next_line() else {
                if let Some(status) = process.exited() {
                    panic!(
                        "tickr exited before listening ({status}): {:?}",
                        log.lock().unwrap().notable
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let addr = listening_address(&line);
            log.lock().unwrap().notable.push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        log.lock().unwrap().tail = Some(tail);
        let reader = Arc::downgrade(&log);
        std::thread::spawn(move || follow(&reader));
        Self {
            process,
            addr,
            log,
            config,
        }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    async fn reload(&self, yaml: &str) {
        std::fs::write(&self.config, yaml).expect("write config");
        let reply = http(self.addr, "POST", "/-/reload", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    /// Waits up to `limit` for the process to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.exited() {
                self.log.lock().unwrap().catch_up();
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    async fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log.lock().unwrap().has(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.log.lock().unwrap().notable
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads the log as it grows into `log`, until the [`Binary`] holding it is dropped.
fn follow(log: &Weak<Mutex<Log>>) {
    while let Some(log) = log.upgrade() {
        // A test that panicked holding the lock leaves it poisoned: nothing left to read for.
        let Ok(read) = log.lock().map(|mut l| l.catch_up()) else {
            return;
        };
        drop(log);
        if read == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What `/proc/<pid>` says: open file descriptors, resident memory, threads.
#[derive(Debug, Clone, Copy)]
struct Proc {
    fds: usize,
    rss_kib: u64,
    threads: u64,
    /// User and system CPU time so far, in clock ticks.
    cpu_ticks: u64,
}

impl Proc {
    fn read(pid: u32) -> Self {
        Self {
            fds: procfs::open_fds(pid).expect("read /proc/<pid>/fd"),
            rss_kib: procfs::status_field(pid, "VmRSS"),
            threads: procfs::status_field(pid, "Threads"),
            cpu_ticks: procfs::cpu_ticks(pid).expect("stat"),
        }
    }

    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// The few global figures the soak follows, read from the full exposition by line prefix: at
/// thousands of targets a scrape is tens of megabytes, too much to parse into samples every
/// second.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    in_flight: f64,
    targets: f64,
    runs: f64,
    lag_count: f64,
    lag_within_1s: f64,
    target_series: usize,
    bytes: usize,
}

async fn figures(addr: SocketAddr) -> Figures {
    let reply = http(addr, "GET", "/metrics", &[]).await;
    assert_eq!(reply.status, 200);
    // Off the runtime's workers: they serve the soak's targets meanwhile.
    tokio::task::spawn_blocking(move || read_figures(&reply.body))
        .await
        .expect("read figures")
}

fn read_figures(body: &[u8]) -> Figures {
    let text = std::str::from_utf8(body).expect("utf-8 exposition");
    let mut f = Figures {
        bytes: text.len(),
        ..Figures::default()
    };
    let value = |line: &str| -> f64 {
        let v = line.rsplit_once("} ").map_or(line, |(_, v)| v);
        let v = v.rsplit(' ').next().unwrap_or(v);
        v.parse().unwrap_or_else(|_| panic!("value of {line}"))
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.contains("target=\"") {
            f.target_series += 1;
            if line.starts_with("tickr_probe_runs_total{") {
                // Drop an exemplar (`... value # {id="…"} 1`) before reading the value.
                let line = line.split(" # ").next().unwrap_or(line);
                f.runs += value(line);
            }
        } else if let Some(v) = line.strip_prefix("tickr_probes_in_flight ") {
            f.in_flight = v.parse().expect("in flight");
        } else if let Some(v) = line.strip_prefix("tickr_targets ") {
            f.targets = v.parse().expect("targets");
        } else if let Some(v) = line.strip_prefix("tickr_scheduler_lag_seconds_count ") {
            f.lag_count = v.parse().expect("lag count");
        } else if line.starts_with("tickr_scheduler_lag_seconds_bucket{le=\"1.0\"}") {
            f.lag_within_1s = value(line);
        }
    }
    f
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        })
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// 1. Soak.

/// The kinds of target in the soak, with their weight out of 20: healthy, gateway errors,
/// resets, stalls until the probe timeout, slow answers.
const KINDS: [(&str, usize); 5] = [
    ("ok", 8),
    ("502", 4),
    ("reset", 3),
    ("stall", 3),
    ("slow", 2),
];
/// Servers per kind: each takes a share of the connections (and of the TIME_WAIT port space).
const SERVERS_PER_KIND: usize = 2;
const SOAK_LIMIT: usize = 1024;

fn kind_of(i: usize) -> usize {
    let mut slot = i % 20;
    for (k, (_, weight)) in KINDS.iter().enumerate() {
        if slot < *weight {
            return k;
        }
        slot -= weight;
    }
    unreachable!("weights add up to 20")
}

fn soak_config(servers: &[Vec<TestServer>], n: usize) -> String {
    let mut yaml = format!(
        "global:\n  max_concurrent_probes: {SOAK_LIMIT}\ndefaults:\n  interval: 1s\n  timeout: 500ms\ntargets:\n"
    );
    for i in 0..n {
        let server = &servers[kind_of(i)][(i / 20) % SERVERS_PER_KIND];
        yaml.push_str(&format!(
            "  - name: soak-{i}\n    url: {}\n",
            server.url(&format!("/{i}"))
        ));
    }
    yaml
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t: f64,
    proc: Proc,
    /// Connections accepted so far by each kind's servers: one per probe started.
    connections: [usize; KINDS.len()],
    /// Connections the test servers hold open right now: about the probes in flight.
    open: usize,
    /// A scrape, every [`SCRAPE_EVERY`] samples: at thousands of targets the exposition is
    /// tens of megabytes, and encoding it every second would be most of the load.
    figures: Option<Figures>,
}

/// glibc's mmap threshold, fixed. By default it follows the largest block freed so far (up to
/// 32 MiB), so after the first scrape every exposition buffer comes from, and stays in, the
/// heap of whichever thread encoded it: RSS then climbs in steps for minutes (by about twice
/// the exposition per worker thread) and only levels off later, which says nothing about leaks.
/// Fixed, large blocks go back to the system when freed and RSS follows live memory.
const MALLOC: (&str, &str) = ("MALLOC_MMAP_THRESHOLD_", "1048576");

/// One scrape per this many one-second samples.
const SCRAPE_EVERY: usize = 5;

impl Sample {
    fn probes(&self) -> usize {
        self.connections.iter().sum()
    }
}

fn max_of(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    samples.iter().map(f).fold(f64::MIN, f64::max)
}

fn median_of(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    let mut values: Vec<f64> = samples.iter().map(f).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Thousands of targets, healthy and hostile, each probed every second for a minute (or
/// `TICKR_SOAK_SECS`): probes keep their rate, file descriptors and memory level off, in-flight
/// probes stay under the limit, and after a reload to no targets everything comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_targets_level_off_and_come_back() {
    let n = env_or("TICKR_SOAK_TARGETS", 2000) as usize;
    let steady = Duration::from_secs(env_or("TICKR_SOAK_SECS", 60));
    assert!(
        steady >= Duration::from_secs(20),
        "TICKR_SOAK_SECS below 20 leaves too few samples (and scrapes) to judge a plateau"
    );
    let mut servers = Vec::new();
    for (kind, _) in KINDS {
        let mut of_kind = Vec::new();
        for _ in 0..SERVERS_PER_KIND {
            let script = match kind {
                "ok" => vec![Step::status(200)],
                "502" => vec![Step::status(502)],
                "reset" => vec![Step::Reset],
                "stall" => vec![Step::Stall],
                _ => vec![Step::slow(200, Duration::from_millis(250))],
            };
            of_kind.push(TestServer::plain(script).await);
        }
        servers.push(of_kind);
    }
    let connections = |servers: &[Vec<TestServer>]| -> [usize; KINDS.len()] {
        std::array::from_fn(|k| servers[k].iter().map(TestServer::connections).sum())
    };
    let open = |servers: &[Vec<TestServer>]| -> usize {
        servers
            .iter()
            .flatten()
            .map(TestServer::open_connections)
            .sum()
    };
    let empty = format!("global:\n  max_concurrent_probes: {SOAK_LIMIT}\ntargets: []\n");

    let mut tickr = Binary::start_with(&empty, &[MALLOC]);
    let pid = tickr.pid();
    let idle = figures(tickr.addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = Proc::read(pid);
    eprintln!(
        "soak: {n} targets every 1s (timeout 500ms, limit {SOAK_LIMIT}), {}s steady; idle: {} fds, {:.1} MiB RSS, {} threads, {} B exposition",
        steady.as_secs(),
        baseline.fds,
        baseline.rss_mib(),
        baseline.threads,
        idle.bytes
    );

    tickr.reload(&soak_config(&servers, n)).await;
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    eprintln!(
        "     t   fds  rss_MiB thr cpu%  probes/s open_conns | in_flight probes_total lag>1s scrape_ms   MB"
    );
    while started.elapsed() < steady {
        tick.tick().await;
        let mut sample = Sample {
            t: started.elapsed().as_secs_f64(),
            proc: Proc::read(pid),
            connections: connections(&servers),
            open: open(&servers),
            figures: None,
        };
        let (rate, cpu) = match samples.last() {
            Some(p) => {
                let dt = sample.t - p.t;
                (
                    (sample.probes() - p.probes()) as f64 / dt,
                    (sample.proc.cpu_ticks - p.proc.cpu_ticks) as f64 / dt,
                )
            }
            None => (0.0, 0.0),
        };
        let mut line = format!(
            "{:6.1} {:5} {:8.1} {:3} {:4.0} {:9.0} {:10}",
            sample.t,
            sample.proc.fds,
            sample.proc.rss_mib(),
            sample.proc.threads,
            cpu,
            rate,
            sample.open
        );
        if samples.len() % SCRAPE_EVERY == SCRAPE_EVERY - 1 {
            let t0 = Instant::now();
            let f = figures(tickr.addr).await;
            line += &format!(
                " | {:9} {:12} {:6} {:9.0} {:4.1}",
                f.in_flight,
                f.runs,
                f.lag_count - f.lag_within_1s,
                t0.elapsed().as_secs_f64() * 1e3,
                f.bytes as f64 / 1e6
            );
            sample.figures = Some(f);
        }
        eprintln!("{line}");
        samples.push(sample);
    }

    // Back to no targets: every probe task, socket and series must go.
    let t0 = Instant::now();
    tickr.reload(&empty).await;
    let reload_ms = t0.elapsed().as_secs_f64() * 1e3;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (end, end_figures) = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let f = figures(tickr.addr).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p = Proc::read(pid);
        let settled = f.in_flight == 0.0 && p.fds <= baseline.fds + 2;
        if settled || Instant::now() > deadline {
            break (p, f);
        }
    };
    eprintln!(
        "soak: reload to no targets took {reload_ms:.0} ms; then {} fds (idle {}), {:.1} MiB RSS, {} threads, {} in flight, {} target series",
        end.fds,
        baseline.fds,
        end.rss_mib(),
        end.threads,
        end_figures.in_flight,
        end_figures.target_series
    );

    // The steady window starts once every target had its first slot (spread over one interval)
    // and the start-up burst settled; it is cut in thirds for the plateau checks.
    let window: Vec<Sample> = samples.iter().copied().filter(|s| s.t >= 3.0).collect();
    assert!(window.len() >= 9, "too few samples: {}", window.len());
    let (first, last) = (&window[0], &window[window.len() - 1]);
    let elapsed = last.t - first.t;
    let rate = (last.probes() - first.probes()) as f64 / elapsed;
    let scraped: Vec<(f64, Figures)> = window
        .iter()
        .filter_map(|s| s.figures.map(|f| (s.t, f)))
        .collect();
    let ((t_a, fa), (t_b, fb)) = (scraped[0], scraped[scraped.len() - 1]);
    let counted_rate = (fb.runs - fa.runs) / (t_b - t_a);
    let third = window.len() / 3;
    let middle = &window[third..2 * third];
    let final_third = &window[2 * third..];
    let fds = |s: &Sample| s.proc.fds as f64;
    // Descriptors not explained by a probe connection the servers still hold open: the idle
    // set, the scrape, and sockets between the two ends' closes. It does not swing with the
    // probes in flight, as the plain count does when load delays them.
    let unaccounted = |s: &Sample| s.proc.fds as f64 - s.open as f64;
    let rss = |s: &Sample| s.proc.rss_mib();
    let open = |s: &Sample| s.open as f64;
    let most_in_flight = samples
        .iter()
        .filter_map(|s| s.figures.map(|f| f.in_flight))
        .fold(0.0, f64::max);
    let cpu = (last.proc.cpu_ticks - first.proc.cpu_ticks) as f64 / elapsed;
    eprintln!(
        "soak summary: {n} targets, {elapsed:.0}s steady: {rate:.0} probes/s at the servers, {counted_rate:.0}/s counted by tickr, {cpu:.0}% CPU; \
         middle / last third: fds median {:.0} / {:.0}, max {:.0} / {:.0}, not held by a server median {:.0} / {:.0}; \
         connections open at the servers max {:.0} / {:.0}; RSS max {:.1} / {:.1} MiB; \
         in flight max {most_in_flight:.0} (limit {SOAK_LIMIT}); late >1s: {:.0} of {:.0}; {} log lines",
        median_of(middle, fds),
        median_of(final_third, fds),
        max_of(middle, fds),
        max_of(final_third, fds),
        median_of(middle, unaccounted),
        median_of(final_third, unaccounted),
        max_of(middle, open),
        max_of(final_third, open),
        max_of(middle, rss),
        max_of(final_third, rss),
        fb.lag_count - fb.lag_within_1s,
        fb.lag_count,
        tickr.log.lock().unwrap().lines,
    );

    // Every target once a second. Never more (3% covers the window's edges): a second task
    // for a target, or bunched slots, would show. Less when the machine is loaded, since a
    // probe that starts late skips the slots it missed (and shows as lag): 10% is more than
    // a busy CI machine costs, and a stuck or starved scheduler costs far more.
    let expected = n as f64;
    for (what, got) in [("at the servers", rate), ("counted by tickr", counted_rate)] {
        assert!(
            got <= expected * 1.03 && got >= expected * 0.9,
            "probe rate {got:.0}/s {what}, expected {expected}/s"
        );
    }
    // Per kind too: stalls and resets must not starve the healthy ones, nor the other way round.
    for (k, (kind, _)) in KINDS.iter().enumerate() {
        let targets = (0..n).filter(|i| kind_of(*i) == k).count() as f64;
        let got = (last.connections[k] - first.connections[k]) as f64 / elapsed;
        assert!(
            got <= targets * 1.05 && got >= targets * 0.8,
            "{kind}: {got:.0} probes/s for {targets} targets"
        );
    }

    // In flight: about stalls × timeout + slow × delay, never above the limit.
    assert!(
        most_in_flight <= SOAK_LIMIT as f64,
        "{most_in_flight} probes in flight, limit {SOAK_LIMIT}"
    );
    assert!(most_in_flight > 0.0, "stalled probes show as in flight");

    // Plateaus. Descriptors not held open by a server may not grow from the middle third to
    // the last (medians, + 16 for sampling noise): a leak of one socket per thousand probes
    // adds n/1000 a second, 40 over a third of the default run. Every descriptor is checked
    // again below, after the reload to no targets.
    let (fd_mid, fd_last) = (
        median_of(middle, unaccounted),
        median_of(final_third, unaccounted),
    );
    assert!(
        fd_last <= fd_mid + 16.0,
        "file descriptors leak: {fd_mid} not held by a server in the middle third, {fd_last} in the last"
    );
    // Memory follows the high-water mark of probes in flight (each holds its connection's
    // buffers), which a loaded machine can raise once more late in the run: so 10% + 16 MiB.
    // A leak of a kilobyte per probe adds about 40 MiB per third at the default size; smaller
    // ones are for the long run (TICKR_SOAK_SECS=600), whose figures are in the notes.
    let (rss_mid, rss_last) = (max_of(middle, rss), max_of(final_third, rss));
    assert!(
        rss_last <= rss_mid * 1.1 + 16.0,
        "RSS still growing: peak {rss_mid:.1} MiB in the middle third, {rss_last:.1} MiB in the last"
    );

    // Everything comes back after a reload to no targets.
    assert_eq!(end_figures.in_flight, 0.0, "probes still in flight");
    assert_eq!(end_figures.targets, 0.0);
    assert_eq!(
        end_figures.target_series, 0,
        "series of removed targets remain"
    );
    assert!(
        end.fds <= baseline.fds + 2,
        "{} fds after removing every target, {} when idle",
        end.fds,
        baseline.fds
    );
    let probes = connections(&servers);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        connections(&servers),
        probes,
        "probes continued after every target was removed"
    );

    tickr.signal("TERM");
    let status = tickr.wait_exit(Duration::from_secs(6));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Reload storm.

/// Targets every reload keeps as they are; each has its own server, which answers after a short
/// delay (so two probes of one target at once would overlap there) but well within the timeout
/// (so no timed-out probe leaves a handler behind to look like one).
const KEEP: usize = 5;
/// Targets the reloads add, remove and change (URL, labels); each has its own server.
const CHURN: usize = 16;
/// Churning targets the last reload keeps: `churn-0` to `churn-3`.
const FINAL_CHURN: usize = 4;
const RELOADS: usize = 50;

/// The configuration of reload `round` (0 is the first one, [`RELOADS`] the last). The global
/// limit alternates, so the storm resizes it too.
fn storm_config(keep: &[TestServer], churn: &[TestServer], round: usize) -> String {
    let last = round == RELOADS;
    let limit = if round.is_multiple_of(2) { 64 } else { 32 };
    let mut yaml = format!(
        "global:\n  max_concurrent_probes: {limit}\ndefaults:\n  interval: 100ms\n  timeout: 80ms\ntargets:\n"
    );
    for (i, server) in keep.iter().enumerate() {
        yaml += &format!(
            "  - name: keep-{i}\n    url: {}\n    interval: 200ms\n    timeout: 150ms\n    labels: {{role: keep}}\n",
            server.url("/")
        );
    }
    for (j, server) in churn.iter().enumerate() {
        let present = if last {
            j < FINAL_CHURN
        } else {
            !(round + j).is_multiple_of(3)
        };
        if !present {
            continue;
        }
        let version = if !last && (round * 7 + j).is_multiple_of(4) {
            round
        } else {
            0
        };
        yaml += &format!(
            "  - name: churn-{j}\n    url: {}\n",
            server.url(&format!("/v{version}"))
        );
        if j % 4 == 1 && !last {
            yaml += &format!("    labels: {{generation: \"{}\"}}\n", round % 3);
        }
    }
    yaml
}

fn runs(m: &Exposition, target: &str) -> f64 {
    m.find("tickr_probe_runs_total", &[("target", target)])
        .map(|s| s.value)
        .sum()
}

/// One scrape, bracketed by the keep servers' connection counts. For each kept target, every
/// probe the server saw before the scrape is counted, but for at most one in flight, and
/// nothing is counted that the server did not see; counts never go down.
async fn check_kept(tickr: &Tickr, keep: &[TestServer], counted: &mut [f64]) -> Exposition {
    let before: Vec<usize> = keep.iter().map(TestServer::connections).collect();
    let m = tickr.metrics().await;
    let after: Vec<usize> = keep.iter().map(TestServer::connections).collect();
    for i in 0..keep.len() {
        let name = format!("keep-{i}");
        let runs = runs(&m, &name);
        assert!(
            runs >= counted[i],
            "{name}: counter went down from {} to {runs}",
            counted[i]
        );
        assert!(
            runs <= after[i] as f64,
            "{name}: {runs} probes counted, the server saw {}",
            after[i]
        );
        assert!(
            runs + 1.0 >= before[i] as f64,
            "{name}: {runs} probes counted, the server saw {} before the scrape: counts were lost",
            before[i]
        );
        counted[i] = runs;
    }
    m
}

/// Fifty reloads in a few seconds, each adding, removing and changing targets (URL, labels, the
/// global limit) while probes run: unchanged targets lose no count and never probe twice at
/// once; removed targets leave no series and no task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_reloads_keeps_unchanged_targets_exact_and_removed_ones_gone() {
    let mut keep = Vec::new();
    for _ in 0..KEEP {
        keep.push(TestServer::plain(vec![Step::slow(200, Duration::from_millis(20))]).await);
    }
    let mut churn = Vec::new();
    for _ in 0..CHURN {
        churn.push(TestServer::plain(vec![Step::status(200)]).await);
    }
    let tickr = Tickr::start(&storm_config(&keep, &churn, 0)).await;
    tickr
        .wait_for(
            Duration::from_secs(10),
            "two probes of each kept target",
            |m| (0..KEEP).all(|i| runs(m, &format!("keep-{i}")) >= 2.0),
        )
        .await;

    let mut counted = [0.0; KEEP];
    let started = Instant::now();
    let at_start: Vec<usize> = keep.iter().map(TestServer::connections).collect();
    for round in 1..=RELOADS {
        tickr.write_config(&storm_config(&keep, &churn, round));
        let reply = tickr.post("/-/reload").await;
        assert_eq!(reply.status, 200, "reload {round}: {}", reply.text());
        let m = check_kept(&tickr, &keep, &mut counted).await;
        let present: Vec<usize> = (0..CHURN)
            .filter(|j| {
                round == RELOADS && *j < FINAL_CHURN || round < RELOADS && (round + j) % 3 != 0
            })
            .collect();
        assert_eq!(
            m.get("tickr_targets", &[]),
            Some((KEEP + present.len()) as f64),
            "reload {round}"
        );
        for j in 0..CHURN {
            let name = format!("churn-{j}");
            if !present.contains(&j) {
                assert_eq!(m.series_of(&name), 0, "reload {round}: {name} was removed");
            } else if j % 4 == 1 && round < RELOADS {
                // Its labels changed: the series under the old ones must be gone.
                let generation = (round % 3).to_string();
                let stale = m
                    .samples
                    .iter()
                    .filter(|s| s.labels.get("target") == Some(&name))
                    .filter(|s| s.labels.get("generation") != Some(&generation))
                    .count();
                assert_eq!(stale, 0, "reload {round}: {name} kept series of old labels");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let storm = started.elapsed();

    // The removed targets' tasks are gone: their servers see nothing more (a connection already
    // in the accept queue when the reload returned may still be counted, hence the pause).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let removed: Vec<usize> = (FINAL_CHURN..CHURN)
        .map(|j| churn[j].connections())
        .collect();
    let remaining: Vec<usize> = (0..FINAL_CHURN).map(|j| churn[j].connections()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (k, j) in (FINAL_CHURN..CHURN).enumerate() {
        assert_eq!(
            churn[j].connections(),
            removed[k],
            "churn-{j} was removed, yet its server still gets probes"
        );
    }
    for (j, before) in remaining.iter().enumerate() {
        assert!(
            churn[j].connections() > *before,
            "churn-{j} stopped probing"
        );
    }
    let m = check_kept(&tickr, &keep, &mut counted).await;
    assert_eq!(
        m.get("tickr_targets", &[]),
        Some((KEEP + FINAL_CHURN) as f64)
    );
    assert_eq!(
        m.find("tickr_target_info", &[]).count(),
        KEEP + FINAL_CHURN,
        "one info series per running target"
    );
    assert!(
        m.samples
            .iter()
            .all(|s| !s.labels.contains_key("generation")),
        "series of a label set no target has any more"
    );
    for j in FINAL_CHURN..CHURN {
        assert_eq!(m.series_of(&format!("churn-{j}")), 0);
    }

    // Exact: at a moment when no kept target has a probe in flight, tickr counted exactly the
    // connections each kept target's server accepted, from the first probe on.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before: Vec<usize> = keep.iter().map(TestServer::connections).collect();
        let m = check_kept(&tickr, &keep, &mut counted).await;
        let after: Vec<usize> = keep.iter().map(TestServer::connections).collect();
        let exact = (0..KEEP).all(|i| runs(&m, &format!("keep-{i}")) == before[i] as f64);
        if exact && before == after {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counts never matched the servers: {before:?} vs {:?}",
            (0..KEEP)
                .map(|i| runs(&m, &format!("keep-{i}")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(17)).await;
    }
    for (i, server) in keep.iter().enumerate() {
        assert_eq!(
            server.max_concurrent(),
            1,
            "keep-{i} had two probes at once"
        );
        // One probe per 200 ms slot: a second task for the target would double this.
        let probes = (server.connections() - at_start[i]) as f64;
        let slots = started.elapsed().as_secs_f64() / 0.2;
        assert!(
            probes <= slots + 2.0 && probes >= slots * 0.5,
            "keep-{i}: {probes} probes in {slots:.0} slots"
        );
    }
    eprintln!(
        "reload storm: {RELOADS} reloads in {:.1}s; kept targets probed {:?} times",
        storm.as_secs_f64(),
        keep.iter().map(TestServer::connections).collect::<Vec<_>>()
    );
    tickr.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Saturation.

/// A limit of 4 concurrent probes against 40 targets whose server never answers: at most 4 in
/// flight, the wait shows as scheduler lag and grows, the endpoints answer promptly, and raising
/// the limit by reload takes effect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_probe_limit_shows_growing_lag_and_keeps_answering() {
    let server = TestServer::plain(vec![Step::Stall]).await;
    let config = |limit: usize| {
        let mut yaml = format!(
            "global:\n  max_concurrent_probes: {limit}\ndefaults:\n  interval: 1s\n  timeout: 500ms\ntargets:\n"
        );
        for i in 0..40 {
            yaml += &format!(
                "  - name: stuck-{i}\n    url: {}\n",
                server.url(&format!("/{i}"))
            );
        }
        yaml
    };
    let late = |m: &Exposition| {
        m.value("tickr_scheduler_lag_seconds_count", &[])
            - m.value("tickr_scheduler_lag_seconds_bucket", &[("le", "1.0")])
    };
    let all_runs =
        |m: &Exposition| -> f64 { m.find("tickr_probe_runs_total", &[]).map(|s| s.value).sum() };
    let tickr = Tickr::start(&config(4)).await;
    let started = Instant::now();
    let (mut most, mut slowest) = (0.0f64, Duration::ZERO);
    let mut middle = None;
    while started.elapsed() < Duration::from_secs(6) {
        let t0 = Instant::now();
        let m = tickr.metrics().await;
        let healthy = tickr.get("/-/healthy").await;
        assert_eq!(healthy.status, 200);
        slowest = slowest.max(t0.elapsed());
        most = most.max(m.value("tickr_probes_in_flight", &[]));
        if middle.is_none() && started.elapsed() >= Duration::from_secs(3) {
            middle = Some((started.elapsed(), m));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = tickr.metrics().await;
    let elapsed = started.elapsed();
    let (at, middle) = middle.expect("a sample half way");
    let throughput = (all_runs(&end) - all_runs(&middle)) / (elapsed - at).as_secs_f64();
    let mean_lag = end.value("tickr_scheduler_lag_seconds_sum", &[])
        / end.value("tickr_scheduler_lag_seconds_count", &[]);
    eprintln!(
        "saturation: in flight max {most}, {throughput:.1} probes/s (demand 40/s), late >1s: {} then {}, mean lag {mean_lag:.2}s, slowest /metrics + /-/healthy {slowest:?}",
        late(&middle),
        late(&end)
    );
    assert_eq!(most, 4.0, "the limit is reached and never exceeded");
    // Four slots held for the 500 ms timeout each: at most 8 probes a second.
    assert!(
        (4.0..=8.0 * 1.25).contains(&throughput),
        "{throughput:.1} probes/s through a limit of 4 × 500 ms"
    );
    assert!(
        late(&middle) > 0.0,
        "lag above 1s is visible:\n{}",
        middle.text
    );
    assert!(late(&end) > late(&middle), "lag keeps growing");
    assert!(mean_lag > 1.0, "mean lag {mean_lag:.2}s");
    assert!(
        slowest < Duration::from_secs(1),
        "the endpoints took {slowest:?} to answer"
    );

    // Raising the limit applies at once, to the same (unchanged) targets.
    let t0 = Instant::now();
    tickr.write_config(&config(8));
    assert_eq!(tickr.post("/-/reload").await.status, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "reload under saturation took {:?}",
        t0.elapsed()
    );
    let mut most = 0.0f64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let m = tickr.metrics().await;
        most = most.max(m.value("tickr_probes_in_flight", &[]));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most, 8.0, "the raised limit is reached and never exceeded");
    assert!(tickr.handle.is_ready());
    assert_eq!(tickr.get("/-/ready").await.status, 200);
    tickr.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Shutdown.

/// Stalled targets with `n` probes in flight, on the binary.
async fn binary_with_probes_in_flight(server: &TestServer, targets: usize, n: f64) -> Binary {
    let mut yaml = String::from("defaults:\n  interval: 1s\n  timeout: 900ms\ntargets:\n");
    for i in 0..targets {
        yaml += &format!(
            "  - name: stuck-{i}\n    url: {}\n",
            server.url(&format!("/{i}"))
        );
    }
    let tickr = Binary::start(&yaml);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = Exposition::parse(&http(tickr.addr, "GET", "/metrics", &[]).await.text());
        if m.value("tickr_probes_in_flight", &[]) >= n {
            return tickr;
        }
        assert!(Instant::now() < deadline, "never {n} probes in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that sent part of a request head: the HTTP drain waits for it (an idle keep-alive
/// connection is closed at once), until the grace period runs out.
async fn half_a_request(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: tickr\r\n")
        .await
        .expect("write");
    // Let tickr read it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp
}

/// SIGTERM with many probes in flight: they are cancelled, not waited for, and tickr exits 0
/// well within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_in_flight_probes_and_exits_zero() {
    let server = TestServer::plain(vec![Step::Stall]).await;
    let mut tickr = binary_with_probes_in_flight(&server, 200, 100.0).await;
    let open = server.open_connections();
    let t0 = Instant::now();
    tickr.signal("TERM");
    let status = tickr.wait_exit(Duration::from_secs(6));
    let took = t0.elapsed();
    eprintln!("shutdown with {open} probes in flight: {status:?} after {took:?}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    // The probes would run 900 ms more; cancelling them is what makes this quick.
    assert!(took < Duration::from_millis(800), "shutdown took {took:?}");
    let log = tickr.log.lock().unwrap();
    assert!(log.has("shutting down"), "{:#?}", log.notable);
}

/// The HTTP drain is bounded: a client that never finishes its request holds a single SIGTERM
/// for the grace period, no longer, and tickr still exits 0 and says it gave up. A second
/// signal exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_and_a_second_signal_exits_at_once() {
    let server = TestServer::plain(vec![Step::Stall]).await;
    let grace = tickr::limits::DRAIN_GRACE;

    let mut tickr = binary_with_probes_in_flight(&server, 50, 10.0).await;
    let held = half_a_request(tickr.addr).await;
    let t0 = Instant::now();
    tickr.signal("TERM");
    let status = tickr.wait_exit(grace + Duration::from_secs(3));
    let took = t0.elapsed();
    eprintln!("shutdown with a client holding the drain: {status:?} after {took:?}");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    assert!(
        took >= grace - Duration::from_millis(100) && took < grace + Duration::from_millis(1500),
        "the drain should wait for the client up to the grace period ({grace:?}), took {took:?}"
    );
    {
        let log = tickr.log.lock().unwrap();
        assert!(log.has("gave up waiting"), "{:#?}", log.notable);
    }
    drop(held);

    let mut tickr = binary_with_probes_in_flight(&server, 50, 10.0).await;
    let held = half_a_request(tickr.addr).await;
    tickr.signal("TERM");
    tickr
        .wait_log("shutting down", Duration::from_secs(2))
        .await;
    let t0 = Instant::now();
    tickr.signal("TERM");
    let status = tickr.wait_exit(Duration::from_secs(1));
    let took = t0.elapsed();
    eprintln!("second SIGTERM: {status:?} after {took:?}");
    assert!(
        status.is_some(),
        "still running {took:?} after the second signal"
    );
    tickr
        .wait_log("second signal", Duration::from_secs(1))
        .await;
    drop(held);
}
