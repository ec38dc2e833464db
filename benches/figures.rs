//! tickr's figures, measured in one run on this machine: `cargo bench --bench figures`.
//!
//! 1. CPU per HTTPS probe (part `probe`): tickr's probe against a minimal loop on the same TLS
//!    stack (fresh TCP connection, full TLS 1.3 handshake, GET, read body), both against the same
//!    local server. The server runs in a child process, so this process's CPU time is the probing
//!    alone.
//! 2. Scale (part `scale`): the tickr binary in a child process of its own, so its CPU and memory
//!    are its own, with N targets (1,000, 10,000 and 100,000 unless `TICKR_BENCH_TARGETS` says
//!    otherwise) every 60 s (timeout 5 s) spread over 4 local plain-HTTP servers, each target on
//!    its own path, once with the default histogram detail and once lean
//!    (`histograms: {phases: total}`). For each: start-up time (spawn to `/-/ready`), one
//!    uncompressed and one gzip scrape (time, size, series, series per target), RSS and peak RSS.
//!    With the default detail, also a quiet window without scrapes: probes finished, process CPU
//!    per probe, the share of that CPU spent outside the probes (against tickr's probe alone,
//!    measured in this process), scheduler lag p50/p99; and at the smallest N a second window
//!    with a gzip scrape every second, for its lag and scrape times. A `growth` column divides the
//!    largest N by the smallest; a second table shows the growth from each N to the next (RSS,
//!    peak, RSS per target and per added target, CPU per probe, scrape times), and the issue's
//!    goals at 100,000 targets are checked. At the largest N (default detail), the abandoned
//!    scrape: a gzip `/metrics` read for its first 4 KiB and then closed, three times; tickr's
//!    process CPU over the 2 s after the close and over a full scrape's time after it, against an
//!    idle window of 2 s just before, and against what a full gzip scrape costs.
//!    Runs about 8 minutes with the default sizes (each run waits out one 60 s interval).
//! 3. Against blackbox_exporter (Debian's `prometheus-blackbox-exporter`), CPU seconds of each
//!    exporter process per probe (to the nanosecond, from each thread's schedstat), and RSS,
//!    with the minimal loop as the floor; every probe is a fresh connection and a full TLS 1.3
//!    (ECDSA P-256) handshake with one local nginx, and they take rounds in turns, so that drift
//!    in the machine's load hits them alike. The floor runs on tickr's own TLS stack (its
//!    provider, and its verifier that remembers accepted chains); the same loop over rustls'
//!    stock verifier, the floor of earlier releases, is shown beside it.
//!    - `blackbox-few`: a few targets on one URL, as many probes per second as blackbox_exporter
//!      does when four clients drive its `/probe`; besides the floor, the same loop paced at
//!      the rate tickr ran at in that round.
//!    - `blackbox-many`: 300 distinct targets (`TICKR_BENCH_BLACKBOX_TARGETS`), each with its own
//!      URL path, over one `defaults.tls.ca_file`, every 1 s; blackbox_exporter driven through
//!      `/probe` by four concurrent keep-alive clients over the same URLs; the floor over the
//!      same URLs. Five rounds; each tickr round is a fresh process measured over a window
//!      between two scrapes, and what one gzip scrape of its targets costs is measured apart and
//!      shown as a Prometheus scrape every 15 s would add it. Besides the floor (back to back),
//!      the same loop paced at tickr's rate (300 probes/s, evenly spread), as a diagnosis: each
//!      probe then finds cold caches and an idle runtime, as tickr's do. Prints the ratios round
//!      by round and whether the issue's goals (≤ 0.28× blackbox_exporter, ≤ 1.10× the floor,
//!      on every round) are met. About 4 minutes.
//!
//!    Needs nginx and blackbox_exporter (the README's test command installs nginx; install
//!    `prometheus-blackbox-exporter` for this part, or leave it out).
//!
//! 4. Target sources and `/probe` (`TICKR_BENCH_ONLY=sources`): the tickr binary with a file_sd
//!    source; the file written with 10,000 entries, then rewritten with one changed: the time
//!    until each is applied (`/probe` answers for the entry), the process CPU in that time, RSS
//!    before and after; `/probe` latency for a known target (p50, p99 over 1,000 requests on one
//!    keep-alive connection); and the memory each target adopted through `/probe` costs.
//!
//! 5. Checks and proxies (`TICKR_BENCH_PARITY`, part `parity`): CPU per probe of tickr's probe in
//!    this process against a plain-HTTP page of 64 KiB, with no body matcher, a substring matcher
//!    (`body_not_contains`) and a regex matcher (`body_not_matches`) that each scan the whole page;
//!    then HTTPS probes direct and through a real tinyproxy (CONNECT): tickr's CPU, tinyproxy's
//!    CPU and the wall time per probe. Needs tinyproxy (the README's test command installs it).
//!
//! 6. Shards (`TICKR_BENCH_ONLY=shards`): the scale targets (20,000, every 60 s) split over
//!    N = 1, 2 and 4 tickr processes with `--shard.count N`: each shard's targets, its CPU over
//!    the first interval after a warm-up and its RSS once every target has probed, against the
//!    single process's.
//!
//! 7. A shared CA (`TICKR_BENCH_ONLY=tls`): 10,000 HTTPS targets (`TICKR_BENCH_TLS_TARGETS`),
//!    each on its own path, every 60 s against one local nginx (a generated CA, 4 ports), in two
//!    tickr processes side by side: one with `defaults.tls.ca_file`, one without any CA file
//!    (`insecure_skip_verify: true`: the same handshakes succeed, so both keep the same series
//!    and do the same work, where a CA the built-in roots lack would fail every probe and record
//!    failures instead). RSS at ready, and RSS and peak once every target has probed, before any
//!    scrape; the ratio, and whether it is within the issue's 10 %. Two rounds
//!    (`TICKR_BENCH_TLS_ROUNDS`), the start order swapped; about 70 s each. Needs nginx.
//!
//! Environment:
//! - `TICKR_BENCH_ONLY`: the parts to run, a comma list of `probe`, `scale`, `blackbox` (both of
//!   `blackbox-few` and `blackbox-many`), `sources`, `parity`, `shards`, `tls` (all).
//! - `TICKR_BENCH_SHARD_TARGETS`: part 6's targets (20000).
//! - `TICKR_BENCH_SOURCE_TARGETS`: part 4's file_sd entries (10000); `TICKR_BENCH_ADOPTED`: the
//!   targets it adopts (2000).
//! - `TICKR_BENCH_PROBES`: probes per side in part 1 (3000); part 2 measures the probe alone
//!   with two thirds of it.
//! - `TICKR_BENCH_TARGETS`: part 2's target counts, a comma list (`1000,10000,100000`).
//! - `TICKR_BENCH_WINDOW`: seconds of each of part 2's windows (30).
//! - `TICKR_BENCH_BLACKBOX_PROBES`: probes in `blackbox-few` (3000).
//! - `TICKR_BENCH_BLACKBOX_TARGETS`: the distinct targets of `blackbox-many` (300);
//!   `TICKR_BENCH_BLACKBOX_WINDOW`: seconds of each of its tickr rounds (15); the other two do
//!   as many probes per round as tickr's targets do in that time.
//! - `TICKR_BENCH_PAGE_BYTES`: the size of part 3's page (512; real pages are often 64 KiB).
//! - `TICKR_BENCH_SKIP_BLACKBOX`: set to leave part 3 out.
//! - `TICKR_BENCH_TLS_TARGETS`: part 7's HTTPS targets (10000); `TICKR_BENCH_TLS_ROUNDS`: its
//!   rounds (2).
//!
//! Shared machines are noisy: read the ratios, not the absolute numbers.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tickr_harness::{free_port, get, procfs, require, Launch, Nginx, Process};

const SERVE_ENV: &str = "TICKR_BENCH_SERVE";

/// The parts `TICKR_BENCH_ONLY` selects.
struct Parts {
    probe: bool,
    scale: bool,
    blackbox_few: bool,
    blackbox_many: bool,
    sources: bool,
    parity: bool,
    shards: bool,
    tls: bool,
}

impl Parts {
    fn from_env() -> Self {
        let Ok(list) = std::env::var("TICKR_BENCH_ONLY") else {
            return Self {
                probe: true,
                scale: true,
                blackbox_few: true,
                blackbox_many: true,
                sources: true,
                parity: true,
                shards: true,
                tls: true,
            };
        };
        let mut parts = Self {
            probe: false,
            scale: false,
            blackbox_few: false,
            blackbox_many: false,
            sources: false,
            parity: false,
            shards: false,
            tls: false,
        };
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "probe" => parts.probe = true,
                "scale" => parts.scale = true,
                "blackbox" => {
                    parts.blackbox_few = true;
                    parts.blackbox_many = true;
                }
                "blackbox-few" => parts.blackbox_few = true,
                "blackbox-many" => parts.blackbox_many = true,
                "sources" => parts.sources = true,
                "parity" => parts.parity = true,
                "shards" => parts.shards = true,
                "tls" => parts.tls = true,
                other => panic!(
                    "TICKR_BENCH_ONLY={list:?}: unknown part {other:?} (probe, scale, blackbox, blackbox-few, blackbox-many, sources, parity, shards, tls)"
                ),
            }
        }
        parts
    }
}

fn main() {
    if let Ok(kind) = std::env::var(SERVE_ENV) {
        return serve(&kind);
    }
    let parts = Parts::from_env();
    println!(
        "tickr figures ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if parts.probe {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(probe_cost());
    }
    if parts.parity {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(parity());
    }
    let skip_blackbox = std::env::var_os("TICKR_BENCH_SKIP_BLACKBOX").is_some();
    let (few, many) = (
        parts.blackbox_few && !skip_blackbox,
        parts.blackbox_many && !skip_blackbox,
    );
    if parts.scale || few || many || parts.sources || parts.shards || parts.tls {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        if parts.scale {
            rt.block_on(scale());
        }
        if parts.tls {
            rt.block_on(shared_ca());
        }
        if few {
            rt.block_on(versus_blackbox());
        }
        if many {
            rt.block_on(versus_blackbox_many());
        }
        if parts.sources {
            rt.block_on(sources());
        }
        if parts.shards {
            rt.block_on(shards());
        }
    }
}

/// CPU seconds this thread has run so far, in nanosecond resolution. The probe comparison runs
/// on a current-thread runtime, so this thread does all of its work.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    stat.split_whitespace()
        .next()
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1e9
}

struct Server {
    child: Child,
    port: u16,
    ca_pem: String,
    // Held open for the child's lifetime: a closed pipe would kill it on its next write.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(kind: &str) -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SERVE_ENV, kind)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap();
    let mut ca_pem = String::new();
    while kind == "https" && out.read_line(&mut line).unwrap() > 0 {
        ca_pem.push_str(&line);
        line.clear();
        if ca_pem.contains("END CERTIFICATE") {
            break;
        }
    }
    let ca_pem = ca_pem
        .lines()
        .filter(|l| !l.chars().all(char::is_numeric))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    Server {
        child,
        port,
        ca_pem,
        _stdout: out,
    }
}

/// A throwaway CA and an ECDSA P-256 leaf for 127.0.0.1, in PEM.
struct Certs {
    ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

impl Certs {
    fn mint() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = leaf
            .signed_by(&key, &rcgen::Issuer::from_params(&ca, &ca_key))
            .unwrap();
        Self {
            chain_pem: format!("{}{ca_pem}", cert.pem()),
            ca_pem,
            key_pem: key.serialize_pem(),
        }
    }
}

/// The child: an HTTP(S) server on 127.0.0.1 answering 200 with a small page. Prints its port,
/// then (for https) the CA certificate, on stdout.
fn serve(kind: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        let acceptor = if kind == "https" {
            let certs = Certs::mint();
            println!("{}", certs.ca_pem);
            let chain = CertificateDer::pem_slice_iter(certs.chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let mut config = rustls::ServerConfig::builder_with_provider(tickr::tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    chain,
                    PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).unwrap(),
                )
                .unwrap();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
        } else {
            None
        };
        let page = if kind == "http-64k" || kind == "http-502-64k" {
            page_64k()
        } else {
            Bytes::from(format!(
                "<html><title>Shop</title>{}</html>\n",
                "x".repeat(512)
            ))
        };
        let failing = kind == "http-502-64k";
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            // Without it, Nagle and delayed ACKs add ~40 ms to every exchange.
            let _ = tcp.set_nodelay(true);
            let (acceptor, page) = (acceptor.clone(), page.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_| {
                    let page = page.clone();
                    async move {
                        let mut response = http::Response::new(Full::new(page));
                        if failing {
                            // An application's own 502 through a Varnish: no fingerprint
                            // matches, so attribution reads every signal and the chain.
                            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                            let h = response.headers_mut();
                            h.insert("server", http::HeaderValue::from_static("gunicorn"));
                            h.insert(
                                "via",
                                http::HeaderValue::from_static("1.1 varnish (Varnish/7.1)"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
}

/// A 64 KiB page of ordinary HTML: a title, then paragraphs of text and links.
fn page_64k() -> Bytes {
    let mut page = String::from("<!doctype html><html><head><title>Shop</title></head><body>\n");
    let mut i = 0;
    while page.len() < 64 * 1024 - 64 {
        let _ = writeln!(
            page,
            "<p class=\"item\">Item {i}: <a href=\"/items/{i}\">a thing you can buy</a>, in stock.</p>"
        );
        i += 1;
    }
    page.push_str("</body></html>\n");
    Bytes::from(page)
}

/// The floor: the same TLS stack and HTTP client, nothing else.
async fn minimal_probe(port: u16, config: Arc<rustls::ClientConfig>, path: &str) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    driver.abort();
}

async fn probe_cost() {
    let probes: usize = std::env::var("TICKR_BENCH_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let server = start_server("https");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &server.ca_pem).unwrap();
    let yaml = format!(
        "targets:\n  - name: bench\n    url: https://127.0.0.1:{}/\n    tls: {{ca_file: ca.pem}}\n    http_version: http1\n    expect: {{body_contains: [\"<title>Shop\"]}}\n",
        server.port
    );
    std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
    let config = tickr::config::load(&dir.path().join("config.yml")).unwrap();
    let target = config.targets[0].clone();
    let metrics = Arc::new(tickr::metrics::Metrics::new());
    let tm = metrics.register_target(&target);

    let minimal = floor_config(&dir.path().join("ca.pem").display().to_string());

    // Warm up both, then alternate rounds so drift in machine load hits both alike.
    for _ in 0..50 {
        minimal_probe(server.port, minimal.clone(), "/").await;
        assert!(tickr::probe::run(&target).await.success());
    }
    let (mut cpu_min, mut cpu_tickr) = (0.0, 0.0);
    let rounds = 6;
    let per_round = probes / rounds;
    let wall = Instant::now();
    for _ in 0..rounds {
        let c = cpu_seconds();
        for _ in 0..per_round {
            minimal_probe(server.port, minimal.clone(), "/").await;
        }
        cpu_min += cpu_seconds() - c;
        let c = cpu_seconds();
        for _ in 0..per_round {
            let o = tickr::probe::run(&target).await;
            assert!(o.success(), "{:?}", o.failure);
            tm.record(&o, None, None);
        }
        cpu_tickr += cpu_seconds() - c;
    }
    let n = (per_round * rounds) as f64;
    println!("CPU per HTTPS probe (TLS 1.3, ECDSA P-256, fresh connection, {n} probes each, {:.1}s wall)", wall.elapsed().as_secs_f64());
    println!("  {:<34} {:>10} {:>14}", "", "µs CPU", "probes/CPU-s");
    println!(
        "  {:<34} {:>10.0} {:>14.0}",
        "minimal loop on tickr's TLS stack",
        cpu_min / n * 1e6,
        n / cpu_min
    );
    println!(
        "  {:<34} {:>10.0} {:>14.0}",
        "tickr probe + record",
        cpu_tickr / n * 1e6,
        n / cpu_tickr
    );
    println!("  tickr / reference: {:.2}x\n", cpu_tickr / cpu_min);
}

/// The schedule of every scale target: Prometheus' common scrape interval, and a timeout far
/// above what a local answer takes.
const SCALE_INTERVAL: Duration = Duration::from_secs(60);
const SCALE_TIMEOUT: Duration = Duration::from_secs(5);
/// Local servers the scale targets are spread over. Each probe is a fresh connection that tickr
/// closes first, so its port waits in TIME_WAIT for a minute: at 100,000 targets a minute that
/// is more ports than one server address has to offer.
const LISTENERS: usize = 4;
/// From ready to the quiet window: past start-up, at the steady rate (first slots are spread
/// over the interval).
const WARM_UP: Duration = Duration::from_secs(10);
const READY_POLL: Duration = Duration::from_millis(20);
const READY_LIMIT: Duration = Duration::from_secs(300);
/// One scrape, body fully read: generous, 100,000 targets are most of a gigabyte of text.
const SCRAPE_LIMIT: Duration = Duration::from_secs(300);

/// A number from the environment, `default` when unset; an unparsable value is a mistake worth
/// stopping for, not a silent default.
fn env_or<T>(name: &str, default: T) -> T
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
        Err(_) => default,
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many histogram series each target gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    /// No `histograms` key: every phase has its duration histogram.
    Default,
    /// `histograms: {phases: total}`: only the total duration.
    Lean,
}

impl Detail {
    fn name(self) -> &'static str {
        match self {
            Detail::Default => "default",
            Detail::Lean => "lean",
        }
    }
}

/// `n` targets on the scale schedule, spread over the local servers, each on its own path.
fn scale_config(n: usize, detail: Detail, ports: &[u16]) -> String {
    let mut yaml = format!(
        "defaults:\n  interval: {}s\n  timeout: {}s\n",
        SCALE_INTERVAL.as_secs(),
        SCALE_TIMEOUT.as_secs()
    );
    if detail == Detail::Lean {
        yaml.push_str("  histograms: {phases: total}\n");
    }
    yaml.push_str("targets:\n");
    for i in 0..n {
        let _ = writeln!(
            yaml,
            "  - name: t{i}\n    url: http://127.0.0.1:{}/p/{i}",
            ports[i % ports.len()]
        );
    }
    yaml
}

/// CPU seconds of tickr's probe alone, in this process on a current-thread runtime (so this
/// thread does all of the work), against a plain-HTTP server on the scale schedule.
/// CPU per probe of tickr's probe alone, on a current-thread runtime: back to back, or one every
/// `pace` (as the exporter runs them: spread out, each finding cold caches and an idle runtime).
fn plain_probe_cpu(port: u16, probes: usize, pace: Option<Duration>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, scale_config(1, Detail::Default, &[port])).unwrap();
    let config = tickr::config::load(&path).unwrap();
    let target = config.targets[0].clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..50 {
            let o = tickr::probe::run(&target).await;
            assert!(o.success(), "{:?}", o.failure);
        }
        let c = cpu_seconds();
        let mut slot = tokio::time::Instant::now();
        for _ in 0..probes {
            if let Some(pace) = pace {
                slot += pace;
                tokio::time::sleep_until(slot).await;
            }
            let o = tickr::probe::run(&target).await;
            assert!(o.success(), "{:?}", o.failure);
        }
        (cpu_seconds() - c) / probes as f64
    })
}

/// What a scrape reads: the wire bytes only, or also the exposition's lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    Count,
    Parse,
}

/// The few figures read from an exposition, line by line as its body arrives, so that a scrape
/// of most of a gigabyte is never held whole.
#[derive(Default)]
struct Exposition {
    /// The start of a line whose end is in the next frame.
    carry: Vec<u8>,
    /// Sample lines: neither comments nor empty.
    series: u64,
    /// Sums of `tickr_probe_runs_total`, all results and failures only.
    runs: f64,
    failures: f64,
    /// `tickr_targets`: the targets the process runs.
    targets: f64,
    /// `tickr_scheduler_lag_seconds_bucket`: (upper bound, cumulative count), in order.
    lag: Vec<(f64, f64)>,
}

impl Exposition {
    fn feed(&mut self, data: &[u8]) {
        let Some(last) = data.iter().rposition(|&b| b == b'\n') else {
            self.carry.extend_from_slice(data);
            return;
        };
        let mut lines = data[..last].split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        if self.carry.is_empty() {
            self.line(first);
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(first);
            self.line(&joined);
            joined.clear();
            self.carry = joined;
        }
        for line in lines {
            self.line(line);
        }
        self.carry.extend_from_slice(&data[last + 1..]);
    }

    /// Reads a last line without a newline, if any.
    fn finish(mut self) -> Self {
        let rest = std::mem::take(&mut self.carry);
        self.line(&rest);
        self
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() || line[0] == b'#' {
            return;
        }
        self.series += 1;
        if line.starts_with(b"tickr_probe_runs_total{") {
            let v = sample_value(line);
            self.runs += v;
            if contains(line, b"result=\"failure\"") {
                self.failures += v;
            }
        } else if let Some(value) = line.strip_prefix(b"tickr_targets ") {
            self.targets = parse_f64(value, line);
        } else if line.starts_with(b"tickr_scheduler_lag_seconds_bucket{") {
            let le = label_value(line, b"le=\"").unwrap_or_else(|| {
                panic!("no `le` in {:?}", String::from_utf8_lossy(line));
            });
            let le = match le {
                b"+Inf" => f64::INFINITY,
                _ => parse_f64(le, line),
            };
            self.lag.push((le, sample_value(line)));
        }
    }
}

/// Gzip bodies are decoded into it through flate2's writer.
impl std::io::Write for Exposition {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn parse_f64(text: &[u8], line: &[u8]) -> f64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a number in {:?}", String::from_utf8_lossy(line)))
}

/// The value of a labelled sample, `name{labels} value [timestamp] [# exemplar]`. The label
/// values read here (target names, `result`, `le`) hold no `} `, so the value is the first
/// field after the first `} `.
fn sample_value(line: &[u8]) -> f64 {
    let at = line
        .windows(2)
        .position(|w| w == b"} ")
        .unwrap_or_else(|| panic!("no value in {:?}", String::from_utf8_lossy(line)))
        + 2;
    let rest = &line[at..];
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    parse_f64(&rest[..end], line)
}

/// The value of the label that `start` (`name="`) opens.
fn label_value<'a>(line: &'a [u8], start: &[u8]) -> Option<&'a [u8]> {
    let from = line.windows(start.len()).position(|w| w == start)? + start.len();
    let len = line[from..].iter().position(|&b| b == b'"')?;
    Some(&line[from..from + len])
}

/// Bucket counts observed between two scrapes.
fn lag_delta(later: &Exposition, earlier: &Exposition) -> Vec<(f64, f64)> {
    assert!(
        !later.lag.is_empty() && later.lag.len() == earlier.lag.len(),
        "tickr_scheduler_lag_seconds buckets missing, or different between two scrapes"
    );
    later
        .lag
        .iter()
        .zip(&earlier.lag)
        .map(|(&(le, b), &(le0, a))| {
            assert_eq!(le, le0, "tickr_scheduler_lag_seconds buckets changed");
            (le, b - a)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets as Prometheus' `histogram_quantile` computes it:
/// linear inside the bucket the rank falls in (from 0 for the first bucket), the highest finite
/// bound if it falls in `+Inf`, NaN without observations.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let i = buckets
        .iter()
        .position(|&(_, c)| c >= rank)
        .unwrap_or(buckets.len() - 1);
    if buckets[i].0.is_infinite() {
        return if i == 0 { f64::NAN } else { buckets[i - 1].0 };
    }
    let (start, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    let (end, count) = buckets[i];
    start + (end - start) * (rank - below) / (count - below)
}

/// p50 and p99 in milliseconds.
fn lag_ms(buckets: &[(f64, f64)]) -> (f64, f64) {
    (
        histogram_quantile(0.5, buckets) * 1e3,
        histogram_quantile(0.99, buckets) * 1e3,
    )
}

/// One `/metrics` response, fully read.
struct Scrape {
    sent: Instant,
    /// From sending the request to the body's last byte.
    wall: Duration,
    /// Bytes on the wire (compressed, for gzip).
    bytes: u64,
    text: Option<Exposition>,
}

impl Scrape {
    fn text(&self) -> &Exposition {
        self.text.as_ref().expect("a parsed scrape")
    }

    /// Roughly when the counters were read: the exposition is encoded while the scrape runs.
    fn snapshot(&self) -> Instant {
        self.sent + self.wall / 2
    }
}

/// The exposition format a scrape asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    /// OpenMetrics, asked for as Prometheus asks.
    OpenMetrics,
    /// No `Accept`: the Prometheus text format 0.0.4, as most other clients get it.
    Text,
}

/// The `Accept` header Prometheus sends by default.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Why a scrape failed, and whether it failed before any answer: then it is safe to repeat.
struct FetchError {
    unanswered: bool,
    message: String,
}

/// One `GET /metrics` on `sender`, the body read frame by frame.
async fn fetch(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    gzip: bool,
    read: Read,
    format: Format,
) -> Result<(u64, Option<Exposition>), FetchError> {
    let unanswered = |e: hyper::Error| FetchError {
        unanswered: true,
        message: e.to_string(),
    };
    let failed = |message: String| FetchError {
        unanswered: false,
        message,
    };
    sender.ready().await.map_err(unanswered)?;
    let mut req = http::Request::builder()
        .uri("/metrics")
        .header("host", "tickr");
    if gzip {
        req = req.header(http::header::ACCEPT_ENCODING, "gzip");
    }
    if format == Format::OpenMetrics {
        req = req.header(http::header::ACCEPT, PROMETHEUS_ACCEPT);
    }
    let resp = sender
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .map_err(unanswered)?;
    if resp.status() != http::StatusCode::OK {
        return Err(failed(format!("HTTP {}", resp.status())));
    }
    let encoded = resp
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    if encoded != gzip {
        return Err(failed(format!(
            "asked for gzip: {gzip}, answered with gzip: {encoded}"
        )));
    }
    enum Sink {
        Count,
        Text(Exposition),
        Gzip(flate2::write::GzDecoder<Exposition>),
    }
    let mut sink = match (read, gzip) {
        (Read::Count, _) => Sink::Count,
        (Read::Parse, false) => Sink::Text(Exposition::default()),
        (Read::Parse, true) => Sink::Gzip(flate2::write::GzDecoder::new(Exposition::default())),
    };
    let mut body = resp.into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(format!("body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        bytes += data.len() as u64;
        match &mut sink {
            Sink::Count => {}
            Sink::Text(text) => text.feed(&data),
            Sink::Gzip(decoder) => decoder
                .write_all(&data)
                .map_err(|e| failed(format!("gzip: {e}")))?,
        }
    }
    let text = match sink {
        Sink::Count => None,
        Sink::Text(text) => Some(text.finish()),
        Sink::Gzip(decoder) => Some(
            decoder
                .finish()
                .map_err(|e| failed(format!("gzip: {e}")))?
                .finish(),
        ),
    };
    Ok((bytes, text))
}

/// The tickr binary as a child process (killed and reaped on drop), and a keep-alive
/// connection to its web port, as Prometheus keeps one.
struct Tickr {
    process: Process,
    addr: std::net::SocketAddr,
    what: String,
    conn: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
    /// Connections opened so far: tickr closes one that stays idle for a while.
    connections: usize,
}

impl Tickr {
    /// Starts tickr on `yaml` and waits until `/-/ready` answers 200; returns the time that took.
    async fn start(what: String, yaml: &str) -> (Self, Duration) {
        Self::start_with(what, yaml, &[]).await
    }

    /// [`start`](Self::start), with more flags.
    async fn start_with(what: String, yaml: &str, flags: &[String]) -> (Self, Duration) {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        // A fixed port, not the `listening` line: at `--log.level error` tickr logs none.
        let launch = Launch::new("tickr", env!("CARGO_BIN_EXE_tickr")).file("config.yml", yaml);
        let config = launch.dir().join("config.yml");
        let launch = launch
            .arg("--config.file")
            .arg(config)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .args(["--log.level", "error"])
            .args(flags);
        let started = Instant::now();
        let process = launch.spawn();
        let mut tickr = Self {
            process,
            addr,
            what,
            conn: None,
            connections: 0,
        };
        loop {
            tickr.alive("during start-up");
            // Once the port is bound, a request waits in its backlog until tickr serves, and
            // is answered the moment it does.
            let last = match get(addr, "/-/ready").await {
                Ok((200, _)) => break,
                Ok((status, body)) => format!("HTTP {status}: {}", body.trim()),
                Err(e) => e,
            };
            if started.elapsed() > READY_LIMIT {
                panic!(
                    "{}: not ready after {READY_LIMIT:?} (last: {last})\n{}",
                    tickr.what,
                    tickr.process.logs()
                );
            }
            tokio::time::sleep(READY_POLL).await;
        }
        (tickr, started.elapsed())
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Panics with tickr's logs if it has exited.
    fn alive(&mut self, when: &str) {
        if let Some(status) = self.process.exited() {
            panic!(
                "{}: tickr exited {when} ({status})\n{}",
                self.what,
                self.process.logs()
            );
        }
    }

    /// One scrape on the keep-alive connection; a new connection if tickr closed the last one.
    async fn scrape(&mut self, gzip: bool, read: Read) -> Scrape {
        self.scrape_as(gzip, read, Format::OpenMetrics).await
    }

    /// One scrape in the given format.
    async fn scrape_as(&mut self, gzip: bool, read: Read, format: Format) -> Scrape {
        let mut retried = false;
        loop {
            if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
                self.alive("before a scrape");
                self.conn = Some(keepalive(self.addr).await);
                self.connections += 1;
            }
            let sender = self.conn.as_mut().expect("connected");
            let sent = Instant::now();
            let error =
                match tokio::time::timeout(SCRAPE_LIMIT, fetch(sender, gzip, read, format)).await {
                    Ok(Ok((bytes, text))) => {
                        return Scrape {
                            sent,
                            wall: sent.elapsed(),
                            bytes,
                            text,
                        }
                    }
                    Ok(Err(e)) => e,
                    Err(_) => FetchError {
                        unanswered: false,
                        message: format!("no complete answer in {SCRAPE_LIMIT:?}"),
                    },
                };
            self.alive("during a scrape");
            // A connection tickr closed just as the request went out: once more on a new one.
            if error.unanswered && !retried {
                retried = true;
                self.conn = None;
                continue;
            }
            panic!(
                "{}: scrape (gzip: {gzip}) failed: {}\n{}",
                self.what,
                error.message,
                self.process.logs()
            );
        }
    }
}

/// The quiet window: no scrapes between its two ends.
struct Quiet {
    probes_per_s: f64,
    failed: f64,
    /// CPU seconds per wall second.
    cores: f64,
    cpu_per_probe: f64,
    /// The probe alone, in this process, paced at the same rate.
    alone: f64,
    outside: f64,
    lag: (f64, f64),
}

/// The window with a gzip scrape every second.
struct Loaded {
    lag: (f64, f64),
    cores: f64,
    scrape_p50: Duration,
    scrape_max: Duration,
    connections: usize,
}

/// Everything measured on one tickr child.
struct Run {
    targets: usize,
    detail: Detail,
    startup: Duration,
    quiet: Option<Quiet>,
    loaded: Option<Loaded>,
    formats: Option<Formats>,
    plain: Duration,
    plain_bytes: u64,
    gzip: Duration,
    gzip_bytes: u64,
    /// Process CPU seconds over the timed gzip scrape (the probes meanwhile included).
    gzip_cpu: f64,
    abandon: Option<Abandon>,
    series: u64,
    rss_before: f64,
    rss_after: f64,
    peak: f64,
}

/// OpenMetrics against the text format, on one tickr: wall times of full scrapes, per format and
/// encoding, taken in turns so that drift in machine load hits both alike.
struct Formats {
    /// `[openmetrics, text]` × `[plain, gzip]`: the scrape times, in order.
    walls: [[Vec<Duration>; 2]; 2],
    /// `[openmetrics, text]`: uncompressed bytes of the last scrape.
    bytes: [u64; 2],
}

/// Rounds of scrapes in each format and encoding.
const FORMAT_ROUNDS: usize = 5;

async fn formats(tickr: &mut Tickr) -> Formats {
    let mut figures = Formats {
        walls: Default::default(),
        bytes: [0; 2],
    };
    for _ in 0..FORMAT_ROUNDS {
        for (f, format) in [Format::OpenMetrics, Format::Text].into_iter().enumerate() {
            for (g, gzip) in [false, true].into_iter().enumerate() {
                let s = tickr.scrape_as(gzip, Read::Count, format).await;
                figures.walls[f][g].push(s.wall);
                if !gzip {
                    figures.bytes[f] = s.bytes;
                }
            }
        }
    }
    tickr.alive("after the format scrapes");
    figures
}

async fn scale_run(
    n: usize,
    detail: Detail,
    ports: &[u16],
    probe_cpu: f64,
    window: Duration,
    loaded: bool,
    abandon: bool,
) -> Run {
    let what = format!(
        "tickr with {} targets, {} detail",
        thousands(n as u64),
        detail.name()
    );
    let (mut tickr, startup) = Tickr::start(what, &scale_config(n, detail, ports)).await;
    let ready = Instant::now();
    let pid = tickr.pid();
    let (mut quiet, mut loaded_figures) = (None, None);
    if detail == Detail::Default {
        tokio::time::sleep(WARM_UP).await;
        tickr.alive("during the warm-up");
        // The process CPU is read between the two scrapes, so their own cost is not in it; the
        // probe count between the two snapshots is scaled to that span.
        let a = tickr.scrape(false, Read::Parse).await;
        let (c0, from) = (process_cpu(pid), Instant::now());
        tokio::time::sleep(window).await;
        tickr.alive("in the quiet window");
        let (c1, span) = (process_cpu(pid), from.elapsed().as_secs_f64());
        let b = tickr.scrape(false, Read::Parse).await;
        let (ta, tb) = (a.text(), b.text());
        let rate = (tb.runs - ta.runs) / (b.snapshot() - a.snapshot()).as_secs_f64();
        let (cpu, probes) = (c1 - c0, rate * span);
        quiet = Some(Quiet {
            probes_per_s: rate,
            failed: tb.failures - ta.failures,
            cores: cpu / span,
            cpu_per_probe: cpu / probes,
            outside: 1.0 - probes * probe_cpu / cpu,
            alone: probe_cpu,
            lag: lag_ms(&lag_delta(tb, ta)),
        });
        if loaded {
            // A gzip scrape every second, as Prometheus would; one that takes longer than a
            // second is followed at once. The last one is decoded for the lag buckets.
            let connections = tickr.connections;
            let (c2, from) = (process_cpu(pid), Instant::now());
            let mut walls = Vec::new();
            while from.elapsed() < window {
                let s = tickr.scrape(true, Read::Count).await;
                walls.push(s.wall);
                tokio::time::sleep_until((s.sent + Duration::from_secs(1)).into()).await;
            }
            let c = tickr.scrape(true, Read::Parse).await;
            let (c3, span) = (process_cpu(pid), from.elapsed().as_secs_f64());
            tickr.alive("while scraped every second");
            walls.sort();
            loaded_figures = Some(Loaded {
                lag: lag_ms(&lag_delta(c.text(), tb)),
                cores: (c3 - c2) / span,
                scrape_p50: walls[walls.len() / 2],
                scrape_max: walls[walls.len() - 1],
                connections: tickr.connections - connections + 1,
            });
        }
    }
    // One interval after start-up every target has probed at least once: its series all exist,
    // and its memory is what it will stay.
    tokio::time::sleep_until((ready + SCALE_INTERVAL + Duration::from_secs(2)).into()).await;
    tickr.alive("before the timed scrapes");
    let rss_before = process_rss_mib(pid);
    let plain = tickr.scrape(false, Read::Parse).await;
    let c = process_cpu(pid);
    let gzip = tickr.scrape(true, Read::Count).await;
    let gzip_cpu = process_cpu(pid) - c;
    let (rss_after, peak) = (process_rss_mib(pid), process_status_mib(pid, "VmHWM"));
    tickr.alive("after the timed scrapes");
    let abandon = if abandon {
        Some(abandoned_scrapes(&mut tickr, gzip.wall, gzip_cpu).await)
    } else {
        None
    };
    let formats = if loaded {
        Some(formats(&mut tickr).await)
    } else {
        None
    };
    drop(tickr);
    // The reference for "outside the probes": the probe alone, paced at the rate tickr ran them.
    if let Some(q) = &mut quiet {
        let pace = Duration::from_secs_f64(1.0 / q.probes_per_s.max(1.0));
        let count = ((10.0 * q.probes_per_s) as usize).clamp(200, 5000);
        let port = ports[0];
        let alone = tokio::task::spawn_blocking(move || plain_probe_cpu(port, count, Some(pace)))
            .await
            .expect("the paced probe measurement panicked");
        q.alone = alone;
        q.outside = 1.0 - alone / q.cpu_per_probe;
    }
    Run {
        targets: n,
        detail,
        startup,
        quiet,
        loaded: loaded_figures,
        formats,
        plain: plain.wall,
        plain_bytes: plain.bytes,
        gzip: gzip.wall,
        gzip_bytes: gzip.bytes,
        gzip_cpu,
        abandon,
        series: plain.text().series,
        rss_before,
        rss_after,
        peak,
    }
}

async fn scale() {
    let list = std::env::var("TICKR_BENCH_TARGETS").unwrap_or_else(|_| "1000,10000,100000".into());
    let mut sizes: Vec<usize> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.replace('_', "")
                .parse()
                .unwrap_or_else(|e| panic!("TICKR_BENCH_TARGETS={list:?}: {s:?}: {e}"))
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    assert!(
        sizes.first().is_some_and(|&n| n > 0),
        "TICKR_BENCH_TARGETS={list:?}: no target count"
    );
    let window = Duration::from_secs(env_or("TICKR_BENCH_WINDOW", 30));
    assert!(!window.is_zero(), "TICKR_BENCH_WINDOW must be at least 1 s");
    let probes = (env_or("TICKR_BENCH_PROBES", 3000_usize) * 2 / 3).max(1);

    let servers: Vec<Server> = (0..LISTENERS).map(|_| start_server("http")).collect();
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let port = ports[0];
    let probe_cpu = std::thread::spawn(move || plain_probe_cpu(port, probes, None))
        .join()
        .expect("the in-process probe measurement panicked");

    let started = Instant::now();
    let mut runs = Vec::new();
    let largest = sizes[sizes.len() - 1];
    for &n in &sizes {
        for detail in [Detail::Default, Detail::Lean] {
            let loaded = detail == Detail::Default && n == sizes[0];
            let abandon = detail == Detail::Default && n == largest;
            let run = scale_run(n, detail, &ports, probe_cpu, window, loaded, abandon).await;
            let mut line = format!(
                "scale: {} targets, {}: start-up {:.0} ms, RSS {:.1} MiB, /metrics {:.0} ms, {:.1} MiB",
                thousands(n as u64),
                detail.name(),
                run.startup.as_secs_f64() * 1e3,
                run.rss_after,
                run.plain.as_secs_f64() * 1e3,
                run.plain_bytes as f64 / 1048576.0
            );
            if let Some(q) = &run.quiet {
                let _ = write!(
                    line,
                    ", {:.0} probes/s, {:.0} µs CPU/probe, lag p99 {:.2} ms",
                    q.probes_per_s,
                    q.cpu_per_probe * 1e6,
                    q.lag.1
                );
            }
            eprintln!("{line}");
            runs.push(run);
        }
    }
    drop(servers);
    print_scale(&runs, window, probe_cpu, probes);
    print_growth(&runs);
    print_goals(&runs);
    if let Some((run, a)) = runs.iter().find_map(|r| r.abandon.as_ref().map(|a| (r, a))) {
        print_abandon(run, a);
    }
    println!(
        "\nThe scale part took {:.0} s.",
        started.elapsed().as_secs_f64()
    );
}

/// How much of `/metrics` the abandoning client reads before it closes the connection.
const ABANDON_AFTER: usize = 4096;
/// The idle window before, and the first window after, an abandoned scrape.
const ABANDON_WINDOW: Duration = Duration::from_secs(2);
const ABANDON_ROUNDS: usize = 3;

/// One abandoned scrape: process CPU seconds over each window.
struct AbandonRound {
    /// The [`ABANDON_WINDOW`] before the request.
    idle: f64,
    /// From sending the request to closing the connection, and that time.
    reading: f64,
    read_wall: Duration,
    /// The [`ABANDON_WINDOW`] after the close.
    after: f64,
    /// A full scrape's wall time after the close.
    after_full: f64,
}

/// Abandoned gzip scrapes of one tickr, and what a full gzip scrape costs it.
struct Abandon {
    full_wall: Duration,
    full_cpu: f64,
    rounds: Vec<AbandonRound>,
}

/// [`ABANDON_ROUNDS`] times: an idle window, then a gzip `/metrics` (as Prometheus asks for it)
/// on a connection of its own, read for [`ABANDON_AFTER`] bytes and closed (with the rest of
/// the answer unread, so the kernel resets it); tickr's process CPU over the windows after.
async fn abandoned_scrapes(tickr: &mut Tickr, full_wall: Duration, full_cpu: f64) -> Abandon {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pid = tickr.pid();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: tickr\r\nAccept: {PROMETHEUS_ACCEPT}\r\nAccept-Encoding: gzip\r\n\r\n"
    );
    let mut rounds = Vec::new();
    for _ in 0..ABANDON_ROUNDS {
        let c0 = process_cpu(pid);
        tokio::time::sleep(ABANDON_WINDOW).await;
        let c1 = process_cpu(pid);
        let mut tcp = tokio::net::TcpStream::connect(tickr.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let sent = Instant::now();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut buf = vec![0; 16 * 1024];
        while head.len() < ABANDON_AFTER {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "tickr closed the abandoned scrape first");
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head[..head.len().min(1024)]).to_ascii_lowercase();
        assert!(
            text.starts_with("http/1.1 200") && text.contains("content-encoding: gzip"),
            "the abandoned scrape was not a gzip 200: {text:?}"
        );
        drop(tcp);
        let (closed, c2) = (Instant::now(), process_cpu(pid));
        let read_wall = closed - sent;
        let mut marks = [(ABANDON_WINDOW, 0.0), (full_wall, 0.0)];
        let order = if full_wall < ABANDON_WINDOW {
            [1, 0]
        } else {
            [0, 1]
        };
        for i in order {
            tokio::time::sleep_until((closed + marks[i].0).into()).await;
            marks[i].1 = process_cpu(pid) - c2;
        }
        tickr.alive("after an abandoned scrape");
        rounds.push(AbandonRound {
            idle: c1 - c0,
            reading: c2 - c1,
            read_wall,
            after: marks[0].1,
            after_full: marks[1].1,
        });
    }
    // tickr still answers a whole scrape afterwards.
    tickr.scrape(true, Read::Count).await;
    Abandon {
        full_wall,
        full_cpu,
        rounds,
    }
}

fn print_abandon(run: &Run, a: &Abandon) {
    let window = ABANDON_WINDOW.as_secs_f64();
    let full = a.full_wall.as_secs_f64();
    // CPU per second while idle (probing only), from every round's idle window.
    let idle_rate = a.rounds.iter().map(|r| r.idle).sum::<f64>() / (window * a.rounds.len() as f64);
    let full_excess = a.full_cpu - idle_rate * full;
    println!(
        "\nAbandoned scrape at {} targets ({} detail): a gzip /metrics read for its first {} KiB, then the connection closed; {ABANDON_ROUNDS} rounds",
        thousands(run.targets as u64),
        run.detail.name(),
        ABANDON_AFTER / 1024
    );
    println!(
        "  a full gzip scrape: {:.2} s wall, {:.2} s process CPU ({:.2} s above idle); idle (probing only): {:.1} % of a core",
        full,
        a.full_cpu,
        full_excess,
        idle_rate * 100.0
    );
    println!(
        "| round | idle {w:.0} s before (s CPU) | request → close | {w:.0} s after the close | excess | {full:.2} s after the close | excess |"
    , w = window);
    println!("|---|---|---|---|---|---|---|");
    let mut stopped = true;
    for (i, r) in a.rounds.iter().enumerate() {
        let excess_2 = r.after - r.idle;
        let excess_full = r.after_full - idle_rate * full;
        // At once: what follows the close costs less than a tenth of a full scrape's excess
        // (or three of /proc's 10 ms ticks, whichever is more).
        let limit = (0.1 * full_excess).max(0.03);
        stopped &= excess_2 <= limit && excess_full <= limit;
        println!(
            "| {} | {:.2} | {:.2} s in {:.0} ms | {:.2} | {:+.2} | {:.2} | {:+.2} |",
            i + 1,
            r.idle,
            r.reading,
            r.read_wall.as_secs_f64() * 1e3,
            r.after,
            excess_2,
            r.after_full,
            excess_full
        );
    }
    println!(
        "  {}",
        if stopped {
            "the encoding stopped at once: after the close, tickr's CPU is back to idle within the windows' noise (< 10 % of a full scrape's excess)"
        } else {
            "the encoding did NOT stop at once: after the close, tickr kept spending more than 10 % of a full scrape's CPU"
        }
    );
}

/// Growth from each target count to the next, default and lean apart: is the cost linear?
fn print_growth(runs: &[Run]) {
    for detail in [Detail::Default, Detail::Lean] {
        let rs: Vec<&Run> = runs.iter().filter(|r| r.detail == detail).collect();
        if rs.is_empty() {
            continue;
        }
        println!(
            "\nGrowth, {} detail: RSS once every target has probed (before the timed scrapes), peak after them, full scrapes",
            detail.name()
        );
        println!("| targets | RSS MiB | peak MiB | KiB/target | KiB/added target | µs CPU/probe | scrape ms | gzip ms | scrape µs/target | gzip µs/target |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for (i, r) in rs.iter().enumerate() {
            let n = r.targets as f64;
            let added = match i {
                0 => "-".to_owned(),
                _ => {
                    let p = rs[i - 1];
                    format!(
                        "{:.2}",
                        (r.rss_before - p.rss_before) * 1024.0 / (n - p.targets as f64)
                    )
                }
            };
            let cpu = r
                .quiet
                .as_ref()
                .map_or("-".to_owned(), |q| format!("{:.0}", q.cpu_per_probe * 1e6));
            println!(
                "| {} | {:.1} | {:.1} | {:.2} | {added} | {cpu} | {:.0} | {:.0} | {:.2} | {:.2} |",
                thousands(r.targets as u64),
                r.rss_before,
                r.peak,
                r.rss_before * 1024.0 / n,
                ms(r.plain),
                ms(r.gzip),
                ms(r.plain) * 1e3 / n,
                ms(r.gzip) * 1e3 / n
            );
        }
        for w in rs.windows(2) {
            let (a, b) = (w[0], w[1]);
            let cpu = match (&a.quiet, &b.quiet) {
                (Some(qa), Some(qb)) => format!("{:.2}x", qb.cpu_per_probe / qa.cpu_per_probe),
                _ => "-".to_owned(),
            };
            let x = |p: f64, q: f64| format!("{:.2}x", q / p);
            println!(
                "| × {} → {} ({}) | {} | {} | {} | | {cpu} | {} | {} | {} | {} |",
                thousands(a.targets as u64),
                thousands(b.targets as u64),
                x(a.targets as f64, b.targets as f64),
                x(a.rss_before, b.rss_before),
                x(a.peak, b.peak),
                x(
                    a.rss_before / a.targets as f64,
                    b.rss_before / b.targets as f64
                ),
                x(ms(a.plain), ms(b.plain)),
                x(ms(a.gzip), ms(b.gzip)),
                x(
                    ms(a.plain) / a.targets as f64,
                    ms(b.plain) / b.targets as f64
                ),
                x(ms(a.gzip) / a.targets as f64, ms(b.gzip) / b.targets as f64)
            );
        }
    }
    println!(
        "  Linear: totals grow as the targets do (10x for 10x), per-target and per-probe figures stay at 1x.\n  \
         KiB/added target: the RSS difference from the previous count over the targets added (the fixed part taken out)."
    );
}

/// The issue's goals at 100,000 targets, if that count ran.
fn print_goals(runs: &[Run]) {
    let at = |d: Detail| runs.iter().find(|r| r.targets == 100_000 && r.detail == d);
    let (Some(def), Some(lean)) = (at(Detail::Default), at(Detail::Lean)) else {
        return;
    };
    let check = |v: f64, goal: f64| if v <= goal { "met" } else { "NOT met" };
    let s = |d: Duration| d.as_secs_f64();
    let worst = |r: &Run| s(r.plain).max(s(r.gzip));
    println!("\nGoals at 100,000 targets (one run each):");
    println!(
        "  peak RSS: default {:.0} MiB (≤ 400: {}), lean {:.0} MiB (≤ 200: {})",
        def.peak,
        check(def.peak, 400.0),
        lean.peak,
        check(lean.peak, 200.0)
    );
    println!(
        "  start-up to /-/ready: default {:.2} s, lean {:.2} s (≤ 1 s: {})",
        s(def.startup),
        s(lean.startup),
        check(s(def.startup).max(s(lean.startup)), 1.0)
    );
    println!(
        "  full scrape: default {:.2} s plain, {:.2} s gzip (≤ 1.5 s: {}); lean {:.2} s plain, {:.2} s gzip (≤ 0.6 s: {})",
        s(def.plain),
        s(def.gzip),
        check(worst(def), 1.5),
        s(lean.plain),
        s(lean.gzip),
        check(worst(lean), 0.6)
    );
}

fn print_scale(runs: &[Run], window: Duration, probe_cpu: f64, probes: usize) {
    let defaults: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].detail == Detail::Default)
        .collect();
    let (first, last) = (defaults[0], defaults[defaults.len() - 1]);
    let growth = first != last;
    let mut rows: Vec<(String, Vec<String>, String)> = Vec::new();
    let mut row =
        |label: &str, fmt: fn(f64) -> String, grows: bool, get: &dyn Fn(&Run) -> Option<f64>| {
            let values: Vec<Option<f64>> = runs.iter().map(get).collect();
            let cell = |v: &Option<f64>| match v {
                Some(v) if v.is_finite() => fmt(*v),
                _ => "-".to_owned(),
            };
            let ratio = match (values[first], values[last]) {
                (Some(a), Some(b)) if grows && growth && a > 0.0 => format!("{:.1}x", b / a),
                _ => String::new(),
            };
            rows.push((label.to_owned(), values.iter().map(cell).collect(), ratio));
        };
    let f0: fn(f64) -> String = |v| thousands(v.round().max(0.0) as u64);
    let f1: fn(f64) -> String = |v| format!("{v:.1}");
    let f2: fn(f64) -> String = |v| format!("{v:.2}");
    let pct: fn(f64) -> String = |v| format!("{:.0} %", v * 100.0);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mib = |b: u64| b as f64 / 1048576.0;
    row("start-up, spawn to ready (ms)", f0, true, &|r| {
        Some(ms(r.startup))
    });
    row("probes finished per second", f0, false, &|r| {
        r.quiet.as_ref().map(|q| q.probes_per_s)
    });
    row("failed probes in the window", f0, false, &|r| {
        r.quiet.as_ref().map(|q| q.failed)
    });
    row("process CPU (% of one core)", f1, false, &|r| {
        r.quiet.as_ref().map(|q| q.cores * 100.0)
    });
    row("process CPU per probe (µs)", f0, true, &|r| {
        r.quiet.as_ref().map(|q| q.cpu_per_probe * 1e6)
    });
    row("  the probe alone, paced alike (µs)", f0, true, &|r| {
        r.quiet.as_ref().map(|q| q.alone * 1e6)
    });
    row("exporter CPU outside the probes", pct, false, &|r| {
        r.quiet.as_ref().map(|q| q.outside)
    });
    row("scheduler lag p50 (ms)", f2, false, &|r| {
        r.quiet.as_ref().map(|q| q.lag.0)
    });
    row("scheduler lag p99 (ms)", f2, false, &|r| {
        r.quiet.as_ref().map(|q| q.lag.1)
    });
    row(
        "  with a gzip scrape every 1 s: lag p50 (ms)",
        f2,
        false,
        &|r| r.loaded.as_ref().map(|l| l.lag.0),
    );
    row("  lag p99 (ms)", f2, false, &|r| {
        r.loaded.as_ref().map(|l| l.lag.1)
    });
    row("  process CPU (% of one core)", f1, false, &|r| {
        r.loaded.as_ref().map(|l| l.cores * 100.0)
    });
    row("  scrape p50 (ms)", f0, false, &|r| {
        r.loaded.as_ref().map(|l| ms(l.scrape_p50))
    });
    row("  scrape max (ms)", f0, false, &|r| {
        r.loaded.as_ref().map(|l| ms(l.scrape_max))
    });
    row("scrape, uncompressed (ms)", f0, true, &|r| {
        Some(ms(r.plain))
    });
    row("scrape, gzip (ms)", f0, true, &|r| Some(ms(r.gzip)));
    row("  process CPU over it (ms)", f0, true, &|r| {
        Some(r.gzip_cpu * 1e3)
    });
    row("scrape size, uncompressed (MiB)", f1, true, &|r| {
        Some(mib(r.plain_bytes))
    });
    row("scrape size, gzip (MiB)", f1, true, &|r| {
        Some(mib(r.gzip_bytes))
    });
    row("series", f0, false, &|r| Some(r.series as f64));
    row("series per target", f1, false, &|r| {
        Some(r.series as f64 / r.targets as f64)
    });
    row("RSS before the timed scrapes (MiB)", f1, true, &|r| {
        Some(r.rss_before)
    });
    row("RSS after them (MiB)", f1, true, &|r| Some(r.rss_after));
    row("peak RSS (MiB)", f1, true, &|r| Some(r.peak));

    let headers: Vec<String> = runs
        .iter()
        .map(|r| format!("{} {}", thousands(r.targets as u64), r.detail.name()))
        .collect();
    let label_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..runs.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.1[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |label: &str, cells: &[String], ratio: &str| {
        let mut out = format!("  {label:<label_width$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "   {cell:>width$}");
        }
        if growth {
            let _ = write!(out, "   {ratio:>6}");
        }
        println!("{}", out.trim_end());
    };
    println!(
        "Scale: the tickr binary in a process of its own; targets every {} s (timeout {} s) on {LISTENERS} local HTTP servers",
        SCALE_INTERVAL.as_secs(),
        SCALE_TIMEOUT.as_secs()
    );
    println!(
        "  quiet window {} s, after a {} s warm-up; timed scrapes once every target has probed",
        window.as_secs(),
        WARM_UP.as_secs()
    );
    line("", &headers, "growth");
    for (label, cells, ratio) in &rows {
        line(label, cells, ratio);
    }
    println!(
        "  lean: `histograms: {{phases: total}}`. Lag: histogram_quantile over the window's buckets."
    );
    println!(
        "  Outside the probes: 1 - (the probe alone, in this process, at tickr's rate) / (tickr's CPU per probe). Back to back, the probe alone takes {:.0} µs ({probes} probes).",
        probe_cpu * 1e6
    );
    if growth {
        println!(
            "  growth: {} / {} targets, default detail.",
            thousands(runs[last].targets as u64),
            thousands(runs[first].targets as u64)
        );
    }
    if let Some(l) = runs.iter().find_map(|r| r.loaded.as_ref()) {
        if l.connections > 1 {
            println!(
                "  The scrapes every second used {} connections: tickr closed the keep-alive one.",
                l.connections
            );
        }
    }
    if let Some((run, f)) = runs.iter().find_map(|r| r.formats.as_ref().map(|f| (r, f))) {
        let median = |walls: &[Duration]| {
            let mut sorted = walls.to_vec();
            sorted.sort();
            sorted[sorted.len() / 2].as_secs_f64() * 1e3
        };
        let spread = |walls: &[Duration]| {
            let ms: Vec<f64> = walls.iter().map(|w| w.as_secs_f64() * 1e3).collect();
            let (lo, hi) = ms
                .iter()
                .fold((f64::MAX, 0.0_f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            format!("{lo:.0}–{hi:.0}")
        };
        println!(
            "\nExposition formats at {} targets ({} detail): full /metrics, {FORMAT_ROUNDS} rounds in turns (median ms, range)",
            thousands(run.targets as u64),
            run.detail.name()
        );
        println!(
            "  {:<30} {:>9} {:>14} {:>9} {:>14} {:>9}",
            "", "plain", "range", "gzip", "range", "MiB"
        );
        for (i, name) in ["OpenMetrics (Prometheus)", "text 0.0.4 (no Accept)"]
            .into_iter()
            .enumerate()
        {
            println!(
                "  {name:<30} {:>9.0} {:>14} {:>9.0} {:>14} {:>9.1}",
                median(&f.walls[i][0]),
                spread(&f.walls[i][0]),
                median(&f.walls[i][1]),
                spread(&f.walls[i][1]),
                f.bytes[i] as f64 / 1048576.0
            );
        }
        println!(
            "  text / OpenMetrics: {:.2}x plain, {:.2}x gzip",
            median(&f.walls[1][0]) / median(&f.walls[0][0]),
            median(&f.walls[1][1]) / median(&f.walls[0][1])
        );
    }
}

/// CPU seconds (user + system) a process has used, to the nanosecond: /proc's process-wide
/// clock ticks are 10 ms steps, 4 % of a 750-probe round of tickr's.
fn process_cpu(pid: u32) -> f64 {
    let ns = procfs::cpu_ns(pid).unwrap_or_else(|| panic!("no threads of process {pid}"));
    ns as f64 / 1e9
}

fn process_rss_mib(pid: u32) -> f64 {
    process_status_mib(pid, "VmRSS")
}

/// A memory figure of a process's status (`VmRSS`, `VmHWM` for the peak), in MiB.
fn process_status_mib(pid: u32, field: &str) -> f64 {
    let kib = procfs::status(pid, field)
        .unwrap_or_else(|| panic!("no {field} in the status of process {pid}"));
    kib as f64 / 1024.0
}

/// A keep-alive HTTP/1.1 connection, as Prometheus keeps one to each exporter.
async fn keepalive(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sum of `tickr_probe_runs_total` on a running tickr.
async fn tickr_runs(addr: std::net::SocketAddr) -> f64 {
    let (_, body) = get(addr, "/metrics").await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("tickr_probe_runs_total{"))
        .map(|l| {
            l.split(" # ")
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum()
}

/// One nginx serving one page over TLS 1.3 (ECDSA P-256, a CA minted for the run) on
/// `listeners` ports, for any path; no session cache, no tickets, no keep-alive: every
/// connection is a full handshake. Its files live in `dir`.
struct TlsSite {
    // Dropped first: nginx is killed before its directory goes.
    _nginx: Nginx,
    ports: Vec<u16>,
    ca_pem: String,
    ca_file: String,
    page_len: usize,
    _dir: tempfile::TempDir,
}

/// The page of part 3 (`TICKR_BENCH_PAGE_BYTES`, 512 bytes) unless `page_bytes` is given.
async fn tls_site(listeners: usize, page_bytes: Option<usize>, access_log: bool) -> TlsSite {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::mint();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca_file = write("ca.pem", &certs.ca_pem);
    let chain = write("leaf.pem", &certs.chain_pem);
    let key_file = write("leaf.key", &certs.key_pem);
    let page_bytes = page_bytes.unwrap_or_else(|| env_or("TICKR_BENCH_PAGE_BYTES", 512));
    let mut page = String::from("<html><title>Shop</title>\n");
    while page.len() < page_bytes {
        page.push_str("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>\n");
    }
    page.push_str("</html>\n");
    write("index.html", &page);
    let root = dir.path().display();
    let ports: Vec<u16> = (0..listeners.max(1)).map(|_| free_port()).collect();
    let mut server = String::from("server {\n");
    for port in &ports {
        let _ = writeln!(server, "  listen 127.0.0.1:{port} ssl;");
    }
    if !access_log {
        server.push_str("  access_log off;\n");
    }
    let _ = write!(
        server,
        "  ssl_certificate {chain};\n  ssl_certificate_key {key_file};\n  \
         ssl_protocols TLSv1.3;\n  ssl_session_cache off;\n  ssl_session_tickets off;\n  keepalive_timeout 0;\n  \
         location / {{ root {root}; try_files /index.html =404; }}\n}}"
    );
    let nginx = Nginx::start(&server).await;
    TlsSite {
        _nginx: nginx,
        ports,
        ca_pem: certs.ca_pem,
        ca_file,
        page_len: page.len(),
        _dir: dir,
    }
}

/// blackbox_exporter with one module, `https_2xx`: the page's title expected, `ca_file` trusted.
async fn start_blackbox(ca_file: &str) -> (Process, std::net::SocketAddr) {
    let bb_binary = require("prometheus-blackbox-exporter");
    let bb_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        bb_dir.path().join("blackbox.yml"),
        format!(
            "modules:\n  https_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      fail_if_body_not_matches_regexp: [\"<title>Shop\"]\n      tls_config: {{ca_file: {ca_file}}}\n"
        ),
    )
    .unwrap();
    let bb_addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let args = [
        format!(
            "--config.file={}",
            bb_dir.path().join("blackbox.yml").display()
        ),
        format!("--web.listen-address={bb_addr}"),
        "--log.level=warn".to_owned(),
    ];
    let mut blackbox = Process::spawn("blackbox", &bb_binary, &args, bb_dir);
    blackbox.wait_tcp(bb_addr, Duration::from_secs(20)).await;
    (blackbox, bb_addr)
}

/// `n` probes through blackbox_exporter's `/probe`, by 4 concurrent keep-alive clients as
/// Prometheus would send them: probe `i` goes to `urls[i % urls.len()]`, client `i % 4` sends it.
async fn drive_blackbox(bb_addr: std::net::SocketAddr, urls: Arc<Vec<String>>, n: usize) {
    let mut workers = Vec::new();
    for w in 0..4 {
        let urls = urls.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = keepalive(bb_addr).await;
            for i in (w..n).step_by(4) {
                let url = &urls[i % urls.len()];
                let path = format!(
                    "/probe?module=https_2xx&target={}",
                    url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
                );
                sender.ready().await.unwrap();
                let req = http::Request::builder()
                    .uri(&path)
                    .header("host", "blackbox")
                    .body(Empty::new())
                    .unwrap();
                let body = sender
                    .send_request(req)
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes();
                assert!(
                    String::from_utf8_lossy(&body).contains("probe_success 1"),
                    "blackbox probe of {url} failed"
                );
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

async fn versus_blackbox() {
    let probes: usize = std::env::var("TICKR_BENCH_BLACKBOX_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let site = tls_site(1, None, true).await;
    let (port, ca_file, page_len) = (site.ports[0], site.ca_file.clone(), site.page_len);
    let url = format!("https://127.0.0.1:{port}/");
    let urls = Arc::new(vec![url.clone()]);

    // blackbox_exporter, driven through /probe by 4 keep-alive clients, as Prometheus would.
    let (blackbox, bb_addr) = start_blackbox(&ca_file).await;
    let drive = |n: usize| drive_blackbox(bb_addr, urls.clone(), n);
    drive(100).await;

    // Rounds that alternate the three, so that drift in the machine's load hits them alike:
    // blackbox_exporter (already running, idle between its rounds), then the tickr binary
    // (started for its round, so that it is not probing during the others'), then the floor.
    let (minimal, stock) = (floor_config(&ca_file), Arc::new(stock_config(&site.ca_pem)));
    let per_round = (probes / ROUNDS).max(100);
    let [mut bb, mut tk, mut floor, mut stock_floor, mut paced] = <[Tally; 5]>::default();
    let root = Arc::new(vec!["/".to_owned()]);
    let mut targets = 0;
    for _ in 0..ROUNDS {
        let (c0, t0) = (process_cpu(blackbox.pid()), Instant::now());
        drive(per_round).await;
        let wall = t0.elapsed().as_secs_f64();
        bb.add(process_cpu(blackbox.pid()) - c0, per_round as f64, wall);
        bb.rss = process_rss_mib(blackbox.pid());

        // As many targets every 100 ms as blackbox_exporter did probes per 100 ms.
        if targets == 0 {
            targets = ((bb.rate() * 0.1).round() as usize).clamp(10, 2000);
        }
        let (cpu, runs, wall, rss) = tickr_round(&url, &ca_file, targets, per_round).await;
        tk.add(cpu, runs, wall);
        tk.rss = rss;

        floor_round(&mut floor, port, &minimal, per_round, &root, None);
        floor_round(&mut stock_floor, port, &stock, per_round, &root, None);
        // The floor at tickr's pace in this round: each probe alone, as tickr's are.
        let pace = Duration::from_secs_f64(wall / runs);
        floor_round(&mut paced, port, &minimal, per_round, &root, Some(pace));
    }
    drop(blackbox);
    drop(site);
    let (bb_cpu, bb_rss, bb_rate) = (bb.per_probe(), bb.rss, bb.rate());
    let (tickr_cpu, tickr_rss, tickr_rate) = (tk.per_probe(), tk.rss, tk.rate());
    let minimal_cpu = floor.per_probe();
    let interval_ms = 100;

    println!(
        "\nAgainst blackbox_exporter: one nginx page of {page_len} bytes over TLS 1.3 (ECDSA P-256), a fresh connection per probe"
    );
    println!(
        "  {:<46} {:>12} {:>9} {:>9}",
        "", "µs CPU/probe", "RSS MiB", "probes/s"
    );
    let row = |name: &str, cpu: f64, rss: String, rate: String| {
        println!("  {name:<46} {:>12.0} {rss:>9} {rate:>9}", cpu * 1e6);
    };
    row(
        "blackbox_exporter (/probe, 4 keep-alive clients)",
        bb_cpu,
        format!("{bb_rss:.1}"),
        format!("{bb_rate:.0}"),
    );
    row(
        &format!("tickr binary ({targets} targets every {interval_ms} ms)"),
        tickr_cpu,
        format!("{tickr_rss:.1}"),
        format!("{tickr_rate:.0}"),
    );
    row(
        "minimal loop, same TLS stack (floor)",
        minimal_cpu,
        String::new(),
        String::new(),
    );
    row(
        "  the same, paced at tickr's rate",
        paced.per_probe(),
        String::new(),
        format!("{:.0}", paced.rate()),
    );
    row(
        STOCK_FLOOR,
        stock_floor.per_probe(),
        String::new(),
        String::new(),
    );
    println!(
        "  tickr / blackbox_exporter: {:.2}x    tickr / minimal loop: {:.2}x",
        tickr_cpu / bb_cpu,
        tickr_cpu / minimal_cpu
    );
    let spread = |a: &Tally, b: &Tally| {
        let ratios: Vec<f64> = a.rounds.iter().zip(&b.rounds).map(|(x, y)| x / y).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        format!("{lo:.2}x to {hi:.2}x")
    };
    println!(
        "  {ROUNDS} alternating rounds of {per_round} probes each; per round, tickr / blackbox_exporter {}, tickr / minimal loop {}",
        spread(&tk, &bb),
        spread(&tk, &floor)
    );
    print_probe_goals(
        &round_ratios(&tk.rounds, &bb.rounds),
        &round_ratios(&tk.rounds, &floor.rounds),
    );
    println!(
        "  tickr / the paced loop: {:.2}x ({}); the paced loop / blackbox_exporter: {:.2}x; the paced loop / the floor: {:.2}x",
        tickr_cpu / paced.per_probe(),
        spread(&tk, &paced),
        paced.per_probe() / bb_cpu,
        paced.per_probe() / minimal_cpu
    );
}

/// `a / b`, round by round.
fn round_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// The issue's goals for CPU per probe: at most 0.28× blackbox_exporter and at most 1.10× the
/// minimal loop, on every round.
fn print_probe_goals(to_blackbox: &[f64], to_floor: &[f64]) {
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let verdict = |v: &[f64], goal: f64| {
        let met = v.iter().filter(|&&r| r <= goal).count();
        if met == v.len() {
            format!("met on every round (worst {:.2}x)", worst(v))
        } else {
            format!(
                "NOT met: {met} of {} rounds (worst {:.2}x)",
                v.len(),
                worst(v)
            )
        }
    };
    println!(
        "  goal ≤ 0.28x blackbox_exporter on every round: {}; goal ≤ 1.10x the minimal loop on every round: {}",
        verdict(to_blackbox, 0.28),
        verdict(to_floor, 1.10)
    );
}

/// How often Prometheus would scrape tickr in `blackbox-many`: a common `scrape_interval`.
const PROMETHEUS_SCRAPE: Duration = Duration::from_secs(15);
/// Rounds of `blackbox-many`.
const MANY_ROUNDS: usize = 5;
/// Back-to-back gzip scrapes whose CPU, divided, gives one scrape's (a few ms each at 300
/// targets: many of them, for /proc's 10 ms ticks).
const SCRAPE_SAMPLES: usize = 50;

/// One tickr round of `blackbox-many`.
struct ManyRound {
    /// Process CPU seconds over the window, and the probes finished in it.
    cpu: f64,
    probes: f64,
    span: f64,
    failed: f64,
    rss: f64,
    /// Process CPU seconds of one gzip scrape of all the targets (the probes that ran
    /// meanwhile taken out), and its wall time.
    scrape_cpu: f64,
    scrape_wall: Duration,
}

/// The tickr binary with a target on each of `urls`, every 1 s over one `defaults.tls.ca_file`,
/// for `window` between two scrapes (the CPU counted is between them, not theirs); then
/// [`SCRAPE_SAMPLES`] gzip scrapes back to back for the cost of one.
async fn tickr_many_round(urls: &[String], ca_file: &str, window: Duration) -> ManyRound {
    let mut yaml = format!(
        "defaults:\n  interval: 1s\n  timeout: 900ms\n  tls: {{ca_file: {ca_file}}}\n  expect: {{body_contains: [\"<title>Shop\"]}}\ntargets:\n"
    );
    for (i, url) in urls.iter().enumerate() {
        let _ = writeln!(yaml, "  - name: t{i}\n    url: {url}");
    }
    let what = format!("tickr with {} HTTPS targets every 1 s", urls.len());
    let (mut tickr, _) = Tickr::start(what, &yaml).await;
    let pid = tickr.pid();
    // Every target past its first slot (first slots are spread over the interval).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = tickr.scrape(true, Read::Parse).await;
    let (c0, from) = (process_cpu(pid), Instant::now());
    tokio::time::sleep(window).await;
    let (c1, span) = (process_cpu(pid), from.elapsed().as_secs_f64());
    let b = tickr.scrape(true, Read::Parse).await;
    tickr.alive("in the window");
    let (ta, tb) = (a.text(), b.text());
    let rate = (tb.runs - ta.runs) / (b.snapshot() - a.snapshot()).as_secs_f64();
    let (cpu, probes) = (c1 - c0, rate * span);
    let (c2, t2) = (process_cpu(pid), Instant::now());
    for _ in 0..SCRAPE_SAMPLES {
        tickr.scrape(true, Read::Count).await;
    }
    let (c3, took) = (process_cpu(pid), t2.elapsed());
    let meanwhile = rate * took.as_secs_f64() * cpu / probes;
    let rss = process_rss_mib(pid);
    tickr.alive("after the scrapes");
    ManyRound {
        cpu,
        probes,
        span,
        failed: tb.failures - ta.failures,
        rss,
        scrape_cpu: ((c3 - c2) - meanwhile).max(0.0) / SCRAPE_SAMPLES as f64,
        scrape_wall: took / SCRAPE_SAMPLES as u32,
    }
}

/// Part 3's second case: 300 distinct HTTPS targets over one shared CA, against
/// blackbox_exporter driven through `/probe` over the same URLs, and the floor.
async fn versus_blackbox_many() {
    let n: usize = env_or("TICKR_BENCH_BLACKBOX_TARGETS", 300);
    let window = Duration::from_secs(env_or("TICKR_BENCH_BLACKBOX_WINDOW", 15));
    assert!(n > 0, "TICKR_BENCH_BLACKBOX_TARGETS must be at least 1");
    assert!(
        !window.is_zero(),
        "TICKR_BENCH_BLACKBOX_WINDOW must be at least 1 s"
    );
    let site = tls_site(1, None, false).await;
    let port = site.ports[0];
    let paths: Vec<String> = (0..n).map(|i| format!("/p/{i}")).collect();
    let urls: Arc<Vec<String>> = Arc::new(
        paths
            .iter()
            .map(|p| format!("https://127.0.0.1:{port}{p}"))
            .collect(),
    );
    let paths = Arc::new(paths);
    let (blackbox, bb_addr) = start_blackbox(&site.ca_file).await;
    drive_blackbox(bb_addr, urls.clone(), 2 * n).await;
    let minimal = floor_config(&site.ca_file);
    let stock = Arc::new(stock_config(&site.ca_pem));
    let per_round = n * window.as_secs() as usize;

    let [mut bb, mut tk, mut tk_scraped, mut floor, mut stock_floor, mut paced] =
        <[Tally; 6]>::default();
    let (mut scrape_cpu, mut scrape_wall, mut failed) = (Vec::new(), Vec::new(), 0.0);
    let started = Instant::now();
    for round in 0..MANY_ROUNDS {
        let (c0, t0) = (process_cpu(blackbox.pid()), Instant::now());
        drive_blackbox(bb_addr, urls.clone(), per_round).await;
        let wall = t0.elapsed().as_secs_f64();
        bb.add(process_cpu(blackbox.pid()) - c0, per_round as f64, wall);
        bb.rss = process_rss_mib(blackbox.pid());

        let r = tickr_many_round(&urls, &site.ca_file, window).await;
        tk.add(r.cpu, r.probes, r.span);
        tk.rss = r.rss;
        // The scrapes Prometheus would have made in the window.
        let scrapes = r.span / PROMETHEUS_SCRAPE.as_secs_f64();
        tk_scraped.add(r.cpu + r.scrape_cpu * scrapes, r.probes, r.span);
        scrape_cpu.push(r.scrape_cpu);
        scrape_wall.push(r.scrape_wall);
        failed += r.failed;

        floor_round(&mut floor, port, &minimal, per_round, &paths, None);
        floor_round(&mut stock_floor, port, &stock, per_round, &paths, None);
        // The same loop at tickr's pace (n probes a second, evenly spread), on a third of the
        // probes: each one then finds cold caches and an idle runtime, as tickr's do.
        let (paced_n, pace) = (
            (per_round / 3).max(1),
            Duration::from_secs_f64(1.0 / n as f64),
        );
        floor_round(&mut paced, port, &minimal, paced_n, &paths, Some(pace));
        eprintln!(
            "blackbox-many: round {}: blackbox_exporter {:.0} µs, tickr {:.0} µs ({:.0} probes), floor {:.0} µs, paced {:.0} µs per probe",
            round + 1,
            bb.rounds[round] * 1e6,
            tk.rounds[round] * 1e6,
            r.probes,
            floor.rounds[round] * 1e6,
            paced.rounds[round] * 1e6
        );
    }
    let took = started.elapsed();
    drop(blackbox);
    let page_len = site.page_len;
    drop(site);

    let range = |v: &[f64], scale: f64, digits: usize| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min) * scale;
        let hi = v.iter().copied().fold(0.0, f64::max) * scale;
        format!("{lo:.digits$}–{hi:.digits$}")
    };
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sorted = scrape_cpu.clone();
    sorted.sort_by(f64::total_cmp);
    let scrape_ms = sorted[sorted.len() / 2] * 1e3;
    let mut walls = scrape_wall.clone();
    walls.sort();
    println!(
        "\nAgainst blackbox_exporter, {n} distinct targets: one nginx page of {page_len} bytes over TLS 1.3 (ECDSA P-256), each target its own URL path, a fresh connection per probe"
    );
    println!(
        "  blackbox_exporter: /probe by 4 concurrent keep-alive clients over the {n} URLs; tickr: {n} targets every 1 s over one defaults.tls.ca_file, {} s between two scrapes; the floor: the minimal loop over the {n} URLs",
        window.as_secs()
    );
    println!(
        "  {MANY_ROUNDS} rounds in turns of {} probes each, {:.0} s in all",
        thousands(per_round as u64),
        took.as_secs_f64()
    );
    println!(
        "  {:<52} {:>12} {:>14} {:>9} {:>9}",
        "", "µs CPU/probe", "rounds (µs)", "RSS MiB", "probes/s"
    );
    let row = |name: &str, t: &Tally, rss: String, rate: String| {
        println!(
            "  {name:<52} {:>12.0} {:>14} {rss:>9} {rate:>9}",
            t.per_probe() * 1e6,
            range(&t.rounds, 1e6, 0)
        );
    };
    row(
        "blackbox_exporter (/probe, 4 keep-alive clients)",
        &bb,
        format!("{:.1}", bb.rss),
        format!("{:.0}", bb.rate()),
    );
    row(
        &format!("tickr binary ({n} targets every 1 s, probes)"),
        &tk,
        format!("{:.1}", tk.rss),
        format!("{:.0}", tk.rate()),
    );
    row(
        &format!(
            "  with a gzip scrape every {} s",
            PROMETHEUS_SCRAPE.as_secs()
        ),
        &tk_scraped,
        String::new(),
        String::new(),
    );
    row(
        "minimal loop, same TLS stack (floor)",
        &floor,
        String::new(),
        String::new(),
    );
    row(
        &format!("  the same, paced at {n} probes/s"),
        &paced,
        String::new(),
        format!("{:.0}", paced.rate()),
    );
    row(STOCK_FLOOR, &stock_floor, String::new(), String::new());
    println!(
        "  one gzip scrape of the {n} targets: {scrape_ms:.1} ms CPU (rounds {} ms), {:.1} ms wall; failed tickr probes: {failed:.0}",
        range(&scrape_cpu, 1e3, 1),
        walls[walls.len() / 2].as_secs_f64() * 1e3
    );
    for (name, t) in [("probes", &tk), ("with its scrape", &tk_scraped)] {
        let to_bb = round_ratios(&t.rounds, &bb.rounds);
        let to_floor = round_ratios(&t.rounds, &floor.rounds);
        println!(
            "  tickr ({name}) / blackbox_exporter: {:.2}x (rounds {}); / minimal loop: {:.2}x (rounds {})",
            t.per_probe() / bb.per_probe(),
            list(&to_bb),
            t.per_probe() / floor.per_probe(),
            list(&to_floor)
        );
        print_probe_goals(&to_bb, &to_floor);
    }
    println!(
        "  tickr (probes) / the paced loop: {:.2}x (rounds {}): what is left once cold caches and an idle runtime are on both sides",
        tk.per_probe() / paced.per_probe(),
        list(&round_ratios(&tk.rounds, &paced.rounds))
    );
}

/// Rounds of the blackbox_exporter comparison.
const ROUNDS: usize = 4;

/// CPU seconds, probes and wall time summed over rounds, and each round's CPU per probe.
#[derive(Default)]
struct Tally {
    cpu: f64,
    probes: f64,
    wall: f64,
    rss: f64,
    rounds: Vec<f64>,
}

impl Tally {
    fn add(&mut self, cpu: f64, probes: f64, wall: f64) {
        self.cpu += cpu;
        self.probes += probes;
        self.wall += wall;
        self.rounds.push(cpu / probes);
    }

    fn per_probe(&self) -> f64 {
        self.cpu / self.probes
    }

    fn rate(&self) -> f64 {
        self.probes / self.wall
    }
}

/// The floor's row for the minimal loop over rustls' stock verifier.
const STOCK_FLOOR: &str = "minimal loop, rustls' stock verifier (earlier floor)";

/// The client configuration of the floor: tickr's own TLS stack (its provider, and its verifier
/// that remembers accepted chains), trusting `ca_file`, no resumption (each probe is a full
/// handshake, as tickr's are).
fn floor_config(ca_file: &str) -> Arc<rustls::ClientConfig> {
    let settings = tickr::tls::TlsSettings {
        ca_file: Some(ca_file.into()),
        client_files: None,
        insecure_skip_verify: false,
        server_name: None,
        versions: Default::default(),
    };
    let tls = tickr::tls::ClientTls::shared(settings).expect("the bench's CA file");
    tls.client_config(&[]).0
}

/// The floor of earlier releases: tickr's provider, rustls' stock verifier (every chain
/// checked in full), roots from `ca_pem`, no resumption.
fn stock_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(tickr::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// `n` probes of the minimal loop on a current-thread runtime, over `paths` in turn: (thread
/// CPU seconds, wall seconds). Back to back, or one every `pace`.
fn minimal_round(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    n: usize,
    paths: &[String],
    pace: Option<Duration>,
) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..20 {
            minimal_probe(port, config.clone(), &paths[i % paths.len()]).await;
        }
        let (c, t) = (cpu_seconds(), Instant::now());
        let mut slot = tokio::time::Instant::now();
        for i in 0..n {
            if let Some(pace) = pace {
                slot += pace;
                tokio::time::sleep_until(slot).await;
            }
            minimal_probe(port, config.clone(), &paths[i % paths.len()]).await;
        }
        (cpu_seconds() - c, t.elapsed().as_secs_f64())
    })
}

/// [`minimal_round`] on a thread of its own (the CPU counted is that thread's), added to `tally`.
fn floor_round(
    tally: &mut Tally,
    port: u16,
    config: &Arc<rustls::ClientConfig>,
    n: usize,
    paths: &Arc<Vec<String>>,
    pace: Option<Duration>,
) {
    let (config, paths) = (config.clone(), paths.clone());
    let (cpu, wall) = std::thread::spawn(move || minimal_round(port, config, n, &paths, pace))
        .join()
        .unwrap();
    tally.add(cpu, n as f64, wall);
}

/// The tickr binary with `targets` targets on `url` every 100 ms, until it has finished at least
/// `n` more probes after settling: (CPU seconds, probes, wall seconds, RSS MiB).
async fn tickr_round(url: &str, ca_file: &str, targets: usize, n: usize) -> (f64, f64, f64, f64) {
    let mut yaml = format!(
        "defaults:\n  interval: 100ms\n  timeout: 80ms\n  tls: {{ca_file: {ca_file}}}\n  expect: {{body_contains: [\"<title>Shop\"]}}\ntargets:\n"
    );
    for i in 0..targets {
        yaml.push_str(&format!("  - name: t{i}\n    url: {url}\n"));
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let launch = Launch::new("tickr", env!("CARGO_BIN_EXE_tickr")).file("config.yml", &yaml);
    let config = launch.dir().join("config.yml");
    let tickr = launch
        .arg("--config.file")
        .arg(config)
        .arg(format!("--web.listen-address={addr}"))
        .args(["--log.level", "error"])
        .spawn();
    let pid = tickr.pid();
    tokio::time::sleep(Duration::from_millis(1500)).await; // every target past its first slot
    let (r0, c0, t0) = (tickr_runs(addr).await, process_cpu(pid), Instant::now());
    // Every poll is a scrape, exporter CPU that blackbox_exporter does not pay: few of them.
    let expected = Duration::from_secs_f64(n as f64 / (targets as f64 * 10.0));
    tokio::time::sleep(expected).await;
    while tickr_runs(addr).await - r0 < n as f64 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (r1, c1) = (tickr_runs(addr).await, process_cpu(pid));
    let wall = t0.elapsed().as_secs_f64();
    let rss = process_rss_mib(pid);
    drop(tickr);
    (c1 - c0, r1 - r0, wall, rss)
}

/// A file_sd file of `n` entries on `port`, the first carrying `version` in its query.
fn sd_file(n: usize, port: u16, version: usize) -> String {
    let mut text = String::from("[{\"labels\": {\"team\": \"bench\"}, \"targets\": [");
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        let query = if i == 0 {
            format!("?v={version}")
        } else {
            String::new()
        };
        let _ = write!(text, "\"http://127.0.0.1:{port}/t/{i}{query}\"");
    }
    text.push_str("]}]\n");
    text
}

/// GET `path` on a keep-alive connection: the status and how long the answer took.
async fn timed_get(
    conn: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: std::net::SocketAddr,
    path: &str,
) -> (u16, Duration) {
    let request = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap();
    let sent = Instant::now();
    conn.ready().await.expect("tickr keeps the connection");
    let response = conn
        .send_request(request)
        .await
        .unwrap_or_else(|e| panic!("tickr answers {path}: {e:?}"));
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    (status, sent.elapsed())
}

/// Polls `/probe` for `url` until tickr runs it; the time from `since`.
async fn until_probed(addr: std::net::SocketAddr, url: &str, since: Instant) -> Duration {
    let path = format!(
        "/probe?target={}",
        url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
    );
    let mut conn = keepalive(addr).await;
    loop {
        let (status, _) = timed_get(&mut conn, addr, &path).await;
        if status == 200 {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "{url} never applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn sources() {
    let n: usize = env_or("TICKR_BENCH_SOURCE_TARGETS", 10_000);
    let adopt_n: usize = env_or("TICKR_BENCH_ADOPTED", 2_000);
    let server = start_server("http");
    let port = server.port;
    let yaml = format!(
        "modules:\n  quick: {{interval: 60s, timeout: 5s}}\n  open:\n    interval: 60s\n    timeout: 5s\n    \
         probe_endpoint: {{adopt: [\"^http://127\\\\.0\\\\.0\\\\.1:{port}/adopt/\"]}}\n\
         target_sources:\n  - {{name: inv, file_sd: [targets.json], refresh: 100ms, module: quick}}\n\
         targets:\n  - {{name: known, url: \"http://127.0.0.1:{port}/known\", interval: 1s, timeout: 500ms}}\n"
    );
    let (tickr, _) = Tickr::start("tickr with a file_sd source".into(), &yaml).await;
    let (pid, addr) = (tickr.process.pid(), tickr.addr);
    let file = tickr.process.dir().join("targets.json");

    // The whole file, then one entry changed.
    let mut lines = Vec::new();
    for (version, what) in [
        (1, format!("{} entries", thousands(n as u64))),
        (2, "one entry changed".into()),
    ] {
        let (rss0, cpu0) = (process_rss_mib(pid), process_cpu(pid));
        let written = Instant::now();
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, sd_file(n, port, version)).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let last = format!("http://127.0.0.1:{port}/t/0?v={version}");
        let took = until_probed(addr, &last, written).await;
        let (rss1, cpu1) = (process_rss_mib(pid), process_cpu(pid));
        lines.push(format!(
            "sources: {what}: applied in {:.0} ms, {:.2} s CPU, RSS {rss0:.1} → {rss1:.1} MiB",
            took.as_secs_f64() * 1e3,
            cpu1 - cpu0
        ));
    }

    // /probe for a known target, on one keep-alive connection.
    let mut conn = keepalive(addr).await;
    let path = format!("/probe?target=http://127.0.0.1:{port}/known");
    let mut times = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let (status, took) = timed_get(&mut conn, addr, &path).await;
        assert_eq!(status, 200);
        times.push(took);
    }
    times.sort();
    lines.push(format!(
        "sources: /probe for a known target: p50 {:.2} ms, p99 {:.2} ms over 1,000 requests",
        times[500].as_secs_f64() * 1e3,
        times[990].as_secs_f64() * 1e3
    ));

    // Adoption: each /probe waits for the target's first probe.
    let rss0 = process_rss_mib(pid);
    let started = Instant::now();
    for i in 0..adopt_n {
        let url = format!("http://127.0.0.1:{port}/adopt/{i}");
        let path = format!(
            "/probe?module=open&target={}",
            url::form_urlencoded::byte_serialize(url.as_bytes()).collect::<String>()
        );
        let (status, _) = timed_get(&mut conn, addr, &path).await;
        assert_eq!(status, 200, "{url}");
    }
    let rss1 = process_rss_mib(pid);
    lines.push(format!(
        "sources: {} targets adopted through /probe in {:.1} s: RSS {rss0:.1} → {rss1:.1} MiB, {:.1} KiB each",
        thousands(adopt_n as u64),
        started.elapsed().as_secs_f64(),
        (rss1 - rss0) * 1024.0 / adopt_n as f64
    ));
    drop(tickr);
    drop(server);
    println!("\n## Target sources and /probe\n");
    for line in lines {
        println!("{line}");
    }
}

/// Rounds of part 5: each case runs once per round, in turn, so drift hits all alike.
const PARITY_ROUNDS: usize = 6;

/// One case's round in part 5, per probe: µs of CPU in this process, µs of wall time, and µs of
/// CPU in the other process watched (the proxy), if any.
#[derive(Clone, Copy)]
struct Round {
    cpu: f64,
    wall: f64,
    other: f64,
}

/// Part 5: what a body matcher costs on a large page, and what probing through a proxy costs.
async fn parity() {
    let per_round = (env_or("TICKR_BENCH_PROBES", 3000_usize) / PARITY_ROUNDS).max(1);

    let server = start_server("http-64k");
    let url = format!("http://127.0.0.1:{}/", server.port);
    let cases = [
        ("no body matcher", ""),
        (
            "substring (body_not_contains)",
            "expect: {body_not_contains: [\"Fatal error\"]}",
        ),
        (
            "regex (body_not_matches), literal",
            "expect: {body_not_matches: [\"Fatal (error|exception)\"]}",
        ),
        (
            "regex (body_not_matches), (?i) a|b|c",
            "expect: {body_not_matches: [\"(?i)fatal error|uncaught exception|traceback\"]}",
        ),
    ];
    let mut yaml = String::from("targets:\n");
    for (i, (_, expect)) in cases.iter().enumerate() {
        let _ = writeln!(yaml, "  - name: m{i}\n    url: {url}\n    {expect}");
    }
    let matchers = parity_rounds(&yaml, per_round, None).await;
    drop(server);
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    println!(
        "Body matchers: a plain-HTTP page of 64 KiB scanned whole (the text is not in it), {} probes each, {PARITY_ROUNDS} rounds in turns",
        per_round * PARITY_ROUNDS
    );
    print_parity(&names, &matchers, 1, false);

    let server = start_server("http-502-64k");
    let url = format!("http://127.0.0.1:{}/", server.port);
    let yaml = format!(
        "defaults:\n  expect: {{status: [502]}}\ntargets:\n  - name: plain\n    url: {url}\n  \
         - name: attributed\n    url: {url}\n"
    );
    let attributed = parity_rounds(&yaml, per_round, None).await;
    drop(server);
    println!(
        "Attribution: a 502 with a 64 KiB body no fingerprint knows, relayed by a Varnish (`Via`), {} probes each, {PARITY_ROUNDS} rounds in turns",
        per_round * PARITY_ROUNDS
    );
    print_parity(
        &["counted only", "counted and attributed"],
        &attributed,
        0,
        false,
    );

    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .any(|d| d.join("tinyproxy").is_file());
    if !found {
        println!("Proxies: left out, tinyproxy is not installed\n");
        return;
    }
    let server = start_server("https");
    let proxy = tickr_harness::Tinyproxy::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let target = |name: &str, extra: &str| {
        format!(
            "  - name: {name}\n    url: https://127.0.0.1:{}/\n    http_version: http1\n    tls: {{ca_file: {}}}\n    {extra}\n",
            server.port,
            ca.display()
        )
    };
    let yaml = format!(
        "targets:\n{}{}",
        target("direct", ""),
        target("proxied", &format!("proxy_url: {}", proxy.url(None)))
    );
    let proxied = parity_rounds(&yaml, per_round, Some(proxy.pid())).await;
    println!(
        "Proxies: HTTPS (TLS 1.3, ECDSA P-256, a fresh connection per probe), direct and through a real tinyproxy (CONNECT), {} probes each, {PARITY_ROUNDS} rounds in turns",
        per_round * PARITY_ROUNDS
    );
    print_parity(&["direct", "through tinyproxy"], &proxied, 0, true);
}

/// Each target in `yaml` probed `per_round` times a round, the targets in turn: `[target][round]`.
/// `other`: a process whose CPU is counted alongside.
/// Targets whose name starts with `attributed` also go through layer attribution, as the
/// pipeline does for every 5xx.
async fn parity_rounds(yaml: &str, per_round: usize, other: Option<u32>) -> Vec<Vec<Round>> {
    let attributor = tickr::diagnosis::layer::Attributor::default();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
    let config = tickr::config::load(&dir.path().join("config.yml")).unwrap();
    let metrics = Arc::new(tickr::metrics::Metrics::new());
    let targets: Vec<_> = config
        .targets
        .iter()
        .map(|t| (t.clone(), metrics.register_target(t)))
        .collect();
    for (target, _) in &targets {
        for _ in 0..50 {
            let o = tickr::probe::run(target).await;
            assert!(o.success(), "{}: {:?}", target.name, o.failure);
        }
    }
    let other_cpu = || other.map_or(0.0, process_cpu);
    let mut figures = vec![Vec::new(); targets.len()];
    for _ in 0..PARITY_ROUNDS {
        for (i, (target, tm)) in targets.iter().enumerate() {
            let (c, o, w) = (cpu_seconds(), other_cpu(), Instant::now());
            for _ in 0..per_round {
                let outcome = tickr::probe::run(target).await;
                assert!(outcome.success(), "{}: {:?}", target.name, outcome.failure);
                let attribution = match (target.name.starts_with("attributed"), &outcome.headers) {
                    (true, Some(headers)) => {
                        Some(attributor.attribute(headers, &outcome.body_head))
                    }
                    _ => None,
                };
                tm.record(
                    &outcome,
                    None,
                    attribution.as_ref().map(|a| a.layer.as_str()),
                );
            }
            let n = per_round as f64 / 1e6;
            figures[i].push(Round {
                cpu: (cpu_seconds() - c) / n,
                wall: w.elapsed().as_secs_f64() / n,
                other: (other_cpu() - o) / n,
            });
        }
    }
    figures
}

/// Part 5's table: per case the median over rounds of CPU (and the range), wall time, the other
/// process's CPU when `other`, and the CPU ratio to case `reference` (its range over rounds).
fn print_parity(names: &[&str], figures: &[Vec<Round>], reference: usize, other: bool) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let range = |v: &[f64], digits: usize| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(f64::MIN, f64::max);
        format!("{lo:.digits$}–{hi:.digits$}")
    };
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut head = format!(
        "  {:<width$} {:>8} {:>12} {:>9}",
        "", "µs CPU", "range", "µs wall"
    );
    if other {
        head.push_str(&format!(" {:>11}", "µs proxy"));
    }
    println!("{head} {:>7} {:>12}", "ratio", "range");
    for (name, rounds) in names.iter().zip(figures) {
        let cpu: Vec<f64> = rounds.iter().map(|r| r.cpu).collect();
        let ratios: Vec<f64> = rounds
            .iter()
            .zip(&figures[reference])
            .map(|(r, base)| r.cpu / base.cpu)
            .collect();
        let mut line = format!(
            "  {name:<width$} {:>8.0} {:>12} {:>9.0}",
            median(cpu.clone()),
            range(&cpu, 0),
            median(rounds.iter().map(|r| r.wall).collect())
        );
        if other {
            line.push_str(&format!(
                " {:>11.0}",
                median(rounds.iter().map(|r| r.other).collect())
            ));
        }
        println!(
            "{line} {:>6.2}x {:>12}",
            median(ratios.clone()),
            range(&ratios, 2)
        );
    }
    println!(
        "  ratio: CPU per probe against {:?}, round by round (median, range)\n",
        names[reference]
    );
}

/// One shard's figures in part 6.
struct ShardRow {
    count: u32,
    index: u32,
    targets: f64,
    /// Probes per second.
    rate: f64,
    cores: f64,
    /// µs of CPU per probe.
    per_probe: f64,
    rss: f64,
    peak: f64,
}

/// Part 6: the scale targets split over 1, 2 and 4 shards.
async fn shards() {
    let n = env_or("TICKR_BENCH_SHARD_TARGETS", 20_000_usize);
    let servers: Vec<Server> = (0..LISTENERS).map(|_| start_server("http")).collect();
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let yaml = scale_config(n, Detail::Default, &ports);
    let mut rows: Vec<ShardRow> = Vec::new();
    for count in [1u32, 2, 4] {
        let mut fleet = Vec::new();
        for index in 0..count {
            let what = format!("shard {index} of {count}");
            let flags = [
                format!("--shard.count={count}"),
                format!("--shard.index={index}"),
            ];
            fleet.push(Tickr::start_with(what, &yaml, &flags).await.0);
        }
        let ready = Instant::now();
        tokio::time::sleep(WARM_UP).await;
        let mut first = Vec::new();
        for t in &mut fleet {
            let s = t.scrape(false, Read::Parse).await;
            first.push((s.text().runs, s.snapshot(), process_cpu(t.pid())));
        }
        // Every target has probed once an interval after start-up: RSS is what it will stay.
        tokio::time::sleep_until((ready + SCALE_INTERVAL + Duration::from_secs(2)).into()).await;
        for (index, (t, (runs0, at0, cpu0))) in fleet.iter_mut().zip(first).enumerate() {
            t.alive("in the shard window");
            let cpu = process_cpu(t.pid()) - cpu0;
            let s = t.scrape(false, Read::Parse).await;
            let span = (s.snapshot() - at0).as_secs_f64();
            let probes = s.text().runs - runs0;
            let pid = t.pid();
            rows.push(ShardRow {
                count,
                index: index as u32,
                targets: s.text().targets,
                rate: probes / span,
                cores: cpu / span,
                per_probe: cpu / probes * 1e6,
                rss: process_rss_mib(pid),
                peak: process_status_mib(pid, "VmHWM"),
            });
        }
        drop(fleet);
    }
    drop(servers);
    let (single_cores, single_rss) = (rows[0].cores, rows[0].rss);
    println!(
        "\nShards: {} targets every {} s split by `--shard.count N` (one process per shard)\n",
        thousands(n as u64),
        SCALE_INTERVAL.as_secs()
    );
    println!("| N | shard | targets | probes/s | CPU (cores) | µs CPU/probe | RSS MiB | peak MiB | CPU × N=1 | RSS × N=1 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.4} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r.count,
            r.index,
            thousands(r.targets as u64),
            r.rate,
            r.cores,
            r.per_probe,
            r.rss,
            r.peak,
            r.cores / single_cores,
            r.rss / single_rss
        );
    }
    println!(
        "\nIdeal: each of N shards at 1/N of the single process (0.50 for N = 2, 0.25 for N = 4);\n\
         RSS keeps the process's fixed part (runtime, TLS roots, buffers) in every shard."
    );
}

/// One tickr process of part 7, once every target has probed.
struct CaRun {
    startup: Duration,
    rss_ready: f64,
    rss: f64,
    peak: f64,
    runs: f64,
    failed: f64,
    series: u64,
}

/// Part 7: 10,000 HTTPS targets with one `ca_file` in `defaults`, against the same targets
/// without any CA file, in two processes side by side so that both see the same machine.
async fn shared_ca() {
    let n: usize = env_or("TICKR_BENCH_TLS_TARGETS", 10_000);
    let rounds: usize = env_or("TICKR_BENCH_TLS_ROUNDS", 2_usize).max(1);
    assert!(n > 0, "TICKR_BENCH_TLS_TARGETS must be at least 1");
    let site = tls_site(LISTENERS, Some(512), false).await;
    // Without a CA file the generated CA is not trusted: `insecure_skip_verify` keeps every
    // handshake succeeding (the verification still runs, against the built-in roots, and its
    // verdict is recorded), so both processes hold the same series and do the same work.
    let variants = [
        (
            "with defaults.tls.ca_file",
            format!("{{ca_file: {}}}", site.ca_file),
        ),
        (
            "without (insecure_skip_verify: true)",
            "{insecure_skip_verify: true}".to_owned(),
        ),
    ];
    let configs: Vec<String> = variants
        .iter()
        .map(|(_, tls)| {
            let mut yaml = format!(
                "defaults:\n  interval: {}s\n  timeout: {}s\n  tls: {tls}\ntargets:\n",
                SCALE_INTERVAL.as_secs(),
                SCALE_TIMEOUT.as_secs()
            );
            for i in 0..n {
                let _ = writeln!(
                    yaml,
                    "  - name: t{i}\n    url: https://127.0.0.1:{}/p/{i}",
                    site.ports[i % site.ports.len()]
                );
            }
            yaml
        })
        .collect();
    let started = Instant::now();
    let mut figures: [Vec<CaRun>; 2] = Default::default();
    for round in 0..rounds {
        let order = if round.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        };
        let mut fleet: [Option<(Tickr, Duration, f64)>; 2] = [None, None];
        for v in order {
            let what = format!(
                "tickr with {} HTTPS targets {}",
                thousands(n as u64),
                variants[v].0
            );
            let (tickr, startup) = Tickr::start(what, &configs[v]).await;
            let rss = process_rss_mib(tickr.pid());
            fleet[v] = Some((tickr, startup, rss));
        }
        // One interval after start-up every target has probed at least once.
        tokio::time::sleep(SCALE_INTERVAL + Duration::from_secs(2)).await;
        let mut memory = [(0.0, 0.0); 2];
        for (v, slot) in fleet.iter_mut().enumerate() {
            let (tickr, _, _) = slot.as_mut().expect("started");
            tickr.alive("before the memory is read");
            memory[v] = (
                process_rss_mib(tickr.pid()),
                process_status_mib(tickr.pid(), "VmHWM"),
            );
        }
        // Scrapes only after the memory of both is read: a scrape raises the peak.
        for (v, slot) in fleet.iter_mut().enumerate() {
            let (tickr, startup, rss_ready) = slot.as_mut().expect("started");
            let s = tickr.scrape(false, Read::Parse).await;
            let text = s.text();
            figures[v].push(CaRun {
                startup: *startup,
                rss_ready: *rss_ready,
                rss: memory[v].0,
                peak: memory[v].1,
                runs: text.runs,
                failed: text.failures,
                series: text.series,
            });
            eprintln!(
                "tls: round {}: {} targets {}: RSS {:.1} MiB (peak {:.1}), {:.0} probes, {:.0} failed",
                round + 1,
                thousands(n as u64),
                variants[v].0,
                memory[v].0,
                memory[v].1,
                text.runs,
                text.failures
            );
        }
        drop(fleet);
    }
    let took = started.elapsed();
    drop(site);

    // The mean of the middle two for an even count.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let h = v.len() / 2;
        if v.len().is_multiple_of(2) {
            (v[h - 1] + v[h]) / 2.0
        } else {
            v[h]
        }
    };
    println!(
        "\nShared CA: {} HTTPS targets every {} s (timeout {} s), each on its own path, on one nginx (TLS 1.3, ECDSA P-256, a generated CA, {LISTENERS} ports)",
        thousands(n as u64),
        SCALE_INTERVAL.as_secs(),
        SCALE_TIMEOUT.as_secs()
    );
    println!(
        "  two tickr processes side by side, {rounds} round(s), the start order swapped each round, {:.0} s in all; medians over rounds",
        took.as_secs_f64()
    );
    println!(
        "  {:<38} {:>10} {:>10} {:>12} {:>9} {:>10} {:>9} {:>7} {:>8}",
        "",
        "start-up",
        "RSS ready",
        "RSS probed",
        "peak",
        "KiB/target",
        "probes",
        "failed",
        "series"
    );
    for (v, (name, _)) in variants.iter().enumerate() {
        let f = &figures[v];
        let m = |get: fn(&CaRun) -> f64| median(f.iter().map(get).collect());
        println!(
            "  {name:<38} {:>7.0} ms {:>6.1} MiB {:>8.1} MiB {:>5.1} MiB {:>10.1} {:>9} {:>7.0} {:>8}",
            m(|r| r.startup.as_secs_f64() * 1e3),
            m(|r| r.rss_ready),
            m(|r| r.rss),
            m(|r| r.peak),
            m(|r| r.rss) * 1024.0 / n as f64,
            thousands(m(|r| r.runs) as u64),
            m(|r| r.failed),
            thousands(m(|r| r.series as f64) as u64)
        );
    }
    let ratios = |get: fn(&CaRun) -> f64| -> Vec<f64> {
        figures[0]
            .iter()
            .zip(&figures[1])
            .map(|(a, b)| get(a) / get(b))
            .collect()
    };
    let show = |v: &[f64]| {
        let each: Vec<String> = v.iter().map(|r| format!("{r:.3}x")).collect();
        format!("{:.3}x (rounds {})", median(v.to_vec()), each.join(", "))
    };
    let rss = ratios(|r| r.rss);
    println!(
        "  with ca_file / without: RSS {}; peak {}; RSS at ready {}",
        show(&rss),
        show(&ratios(|r| r.peak)),
        show(&ratios(|r| r.rss_ready))
    );
    println!(
        "  the CA costs {:.2} KiB per target (RSS difference, median)",
        median(
            figures[0]
                .iter()
                .zip(&figures[1])
                .map(|(a, b)| (a.rss - b.rss) * 1024.0 / n as f64)
                .collect()
        )
    );
    let worst = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "  goal: RSS within 10 % of the same targets without the CA file: {} (worst round {worst:.3}x)",
        if worst <= 1.10 { "met" } else { "NOT met" }
    );
}
