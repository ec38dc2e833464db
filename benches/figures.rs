//! tickr's figures, measured in one run on this machine: `cargo bench --bench figures`.
//!
//! 1. CPU per HTTPS probe: tickr's probe against a minimal loop on the same TLS stack (fresh TCP
//!    connection, full TLS 1.3 handshake, GET, read body), both against the same local server.
//!    The server runs in a child process, so this process's CPU time is the probing alone.
//! 2. Scale: N targets (default 10,000; `TICKR_BENCH_TARGETS`) at a 10 s interval against a local
//!    plain-HTTP server: scheduler lag quantiles, probes started per second (spread), RSS,
//!    `/metrics` encode time and size, series per target.
//!
//! 3. Against blackbox_exporter (Debian's `prometheus-blackbox-exporter`): both probe the same
//!    local nginx (TLS 1.3, ECDSA P-256, the same page, a fresh connection each probe); CPU
//!    seconds of each exporter process per probe, and RSS; with the minimal loop against the same
//!    nginx as the floor. Needs nginx and blackbox_exporter (the README's test command installs
//!    nginx; install `prometheus-blackbox-exporter` for this part, or set `TICKR_BENCH_SKIP_BLACKBOX`).
//!
//! Shared machines are noisy: read the ratios, not the absolute numbers.

#[allow(dead_code)]
#[path = "../tests/it/common/procs.rs"]
mod procs;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const SERVE_ENV: &str = "TICKR_BENCH_SERVE";

fn main() {
    if let Ok(kind) = std::env::var(SERVE_ENV) {
        return serve(&kind);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "tickr figures ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    rt.block_on(probe_cost());
    drop(rt);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scale());
    if std::env::var_os("TICKR_BENCH_SKIP_BLACKBOX").is_none() {
        rt.block_on(versus_blackbox());
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

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
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
        let page = Bytes::from(format!(
            "<html><title>Shop</title>{}</html>\n",
            "x".repeat(512)
        ));
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
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(page)))
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

/// The floor: the same TLS stack and HTTP client, nothing else.
async fn minimal_probe(port: u16, config: Arc<rustls::ClientConfig>) {
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
        .uri("/")
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

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut minimal = rustls::ClientConfig::builder_with_provider(tickr::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    minimal.resumption = rustls::client::Resumption::disabled();
    let minimal = Arc::new(minimal);

    // Warm up both, then alternate rounds so drift in machine load hits both alike.
    for _ in 0..50 {
        minimal_probe(server.port, minimal.clone()).await;
        assert!(tickr::probe::run(&target).await.success());
    }
    let (mut cpu_min, mut cpu_tickr) = (0.0, 0.0);
    let rounds = 6;
    let per_round = probes / rounds;
    let wall = Instant::now();
    for _ in 0..rounds {
        let c = cpu_seconds();
        for _ in 0..per_round {
            minimal_probe(server.port, minimal.clone()).await;
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
        "minimal loop (reference)",
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

async fn scale() {
    let n: usize = std::env::var("TICKR_BENCH_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let interval = Duration::from_secs(10);
    let server = start_server("http");
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("defaults:\n  interval: 10s\n  timeout: 5s\ntargets:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - name: t{i}\n    url: http://127.0.0.1:{}/p/{i}\n",
            server.port
        ));
    }
    std::fs::write(dir.path().join("config.yml"), yaml).unwrap();
    let rss_before = rss_mib();
    let started = Instant::now();
    let config = tickr::config::load(&dir.path().join("config.yml")).unwrap();
    let exporter = tickr::Exporter::start(config).await;
    let startup = started.elapsed();
    let handle = exporter.handle();
    let runs = |h: &tickr::Handle| {
        h.targets()
            .iter()
            .map(|(_, m)| m.summary().successes + m.summary().failures)
            .sum::<u64>()
    };

    // Sample probes started per second over 1.5 intervals.
    let mut per_second = Vec::new();
    let mut last = runs(&handle);
    let observe = interval + interval / 2;
    let t0 = Instant::now();
    while t0.elapsed() < observe {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = runs(&handle);
        per_second.push(now - last);
        last = now;
    }
    let rss = rss_mib();
    let encode_start = Instant::now();
    let text = handle.metrics.encode();
    let encode = encode_start.elapsed();
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    let lag = lag_quantiles(&text);
    let failures: u64 = handle
        .targets()
        .iter()
        .map(|(_, m)| m.summary().failures)
        .sum();
    println!(
        "Scale: {n} targets, 10s interval, observed {:.0}s",
        observe.as_secs_f64()
    );
    println!(
        "  start-up (load + schedule)   {:>10.0} ms",
        startup.as_secs_f64() * 1e3
    );
    println!(
        "  probes finished per second   min {} / max {} (ideal {})",
        per_second.iter().skip(1).min().unwrap(),
        per_second.iter().skip(1).max().unwrap(),
        n as u64 / interval.as_secs()
    );
    println!("  failed probes                {failures:>10}");
    println!(
        "  scheduler lag p50 / p99      <= {} s / <= {} s (histogram bucket bounds)",
        lag.0, lag.1
    );
    println!(
        "  RSS                          {:>10.1} MiB (before start: {rss_before:.1})",
        rss
    );
    println!(
        "  /metrics encode              {:>10.0} ms, {:.1} MiB, {series} series ({:.0} per target)",
        encode.as_secs_f64() * 1e3,
        text.len() as f64 / 1048576.0,
        series as f64 / n as f64
    );
    drop(exporter);
}

/// Upper bounds of the p50 and p99 scheduler lag, from the histogram's buckets.
fn lag_quantiles(text: &str) -> (String, String) {
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.starts_with("tickr_scheduler_lag_seconds_bucket"))
        .map(|l| {
            let le = l
                .split("le=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string();
            (le, l.rsplit(' ').next().unwrap().parse().unwrap())
        })
        .collect();
    let total = buckets.last().unwrap().1;
    let q = |p: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= p * total)
            .map(|(le, _)| le.clone())
            .unwrap()
    };
    (q(0.5), q(0.99))
}

/// CPU seconds (user + system) a process has used, from /proc (10 ms resolution: the runs
/// below are long enough for that to be noise).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn process_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
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
    let (_, body) = procs::get(addr, "/metrics").await.unwrap();
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

async fn versus_blackbox() {
    let probes: usize = std::env::var("TICKR_BENCH_BLACKBOX_PROBES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
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
    let port = procs::free_port();
    let page = format!("<html><title>Shop</title>{}</html>", "x".repeat(512));
    // No session cache, no tickets, no keep-alive: every probe is a full handshake for both.
    let nginx = procs::Nginx::start(&format!(
        "server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {chain};\n  ssl_certificate_key {key_file};\n  \
         ssl_protocols TLSv1.3;\n  ssl_session_cache off;\n  ssl_session_tickets off;\n  keepalive_timeout 0;\n  \
         location / {{ default_type text/html; return 200 '{page}'; }}\n}}"
    ))
    .await;
    let url = format!("https://127.0.0.1:{port}/");

    // blackbox_exporter, driven through /probe by 4 keep-alive clients, as Prometheus would.
    let bb_binary = procs::require("prometheus-blackbox-exporter");
    let bb_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        bb_dir.path().join("blackbox.yml"),
        format!(
            "modules:\n  https_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      fail_if_body_not_matches_regexp: [\"<title>Shop\"]\n      tls_config: {{ca_file: {ca_file}}}\n"
        ),
    )
    .unwrap();
    let bb_addr: std::net::SocketAddr = ([127, 0, 0, 1], procs::free_port()).into();
    let args = [
        format!(
            "--config.file={}",
            bb_dir.path().join("blackbox.yml").display()
        ),
        format!("--web.listen-address={bb_addr}"),
        "--log.level=warn".to_owned(),
    ];
    let mut blackbox = procs::Process::spawn("blackbox", &bb_binary, &args, bb_dir);
    blackbox.wait_tcp(bb_addr, Duration::from_secs(20)).await;
    let path = format!("/probe?module=https_2xx&target={url}");
    let drive = |n: usize| {
        let path = path.clone();
        async move {
            let mut workers = Vec::new();
            for w in 0..4 {
                let path = path.clone();
                workers.push(tokio::spawn(async move {
                    let mut sender = keepalive(bb_addr).await;
                    for _ in (w..n).step_by(4) {
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
                            "blackbox probe failed"
                        );
                    }
                }));
            }
            for w in workers {
                w.await.unwrap();
            }
        }
    };
    drive(100).await;
    let (c0, t0) = (process_cpu(blackbox.pid()), Instant::now());
    drive(probes).await;
    let bb_cpu = (process_cpu(blackbox.pid()) - c0) / probes as f64;
    let bb_rate = probes as f64 / t0.elapsed().as_secs_f64();
    let bb_rss = process_rss_mib(blackbox.pid());
    drop(blackbox);

    // tickr, the binary, on its own schedule, probing at about the same rate.
    let tickr_dir = tempfile::tempdir().unwrap();
    let targets = 40;
    let interval_ms = ((targets as f64 / bb_rate.max(40.0)) * 1000.0).clamp(100.0, 1000.0) as u64;
    let mut yaml = format!(
        "defaults:\n  interval: {interval_ms}ms\n  timeout: {}ms\n  tls: {{ca_file: {ca_file}}}\n  expect: {{body_contains: [\"<title>Shop\"]}}\ntargets:\n",
        interval_ms * 4 / 5
    );
    for i in 0..targets {
        yaml.push_str(&format!("  - name: t{i}\n    url: {url}\n"));
    }
    std::fs::write(tickr_dir.path().join("config.yml"), yaml).unwrap();
    let tickr_addr: std::net::SocketAddr = ([127, 0, 0, 1], procs::free_port()).into();
    let mut tickr = Command::new(env!("CARGO_BIN_EXE_tickr"))
        .arg("--config.file")
        .arg(tickr_dir.path().join("config.yml"))
        .arg(format!("--web.listen-address={tickr_addr}"))
        .args(["--log.level", "error"])
        .spawn()
        .unwrap();
    let pid = tickr.id();
    tokio::time::sleep(Duration::from_secs(3)).await; // every target past its first slot
    let (r0, c0) = (tickr_runs(tickr_addr).await, process_cpu(pid));
    let window = Instant::now();
    while tickr_runs(tickr_addr).await - r0 < probes as f64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (r1, c1) = (tickr_runs(tickr_addr).await, process_cpu(pid));
    let tickr_cpu = (c1 - c0) / (r1 - r0);
    let tickr_rate = (r1 - r0) / window.elapsed().as_secs_f64();
    let tickr_rss = process_rss_mib(pid);
    let _ = tickr.kill();
    let _ = tickr.wait();

    // The floor: the minimal loop against the same nginx, on a thread of its own.
    let ca_pem = certs.ca_pem.clone();
    let minimal_cpu = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
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
        let config = Arc::new(config);
        rt.block_on(async {
            for _ in 0..50 {
                minimal_probe(port, config.clone()).await;
            }
            let c = cpu_seconds();
            for _ in 0..probes {
                minimal_probe(port, config.clone()).await;
            }
            (cpu_seconds() - c) / probes as f64
        })
    })
    .join()
    .unwrap();
    drop(nginx);

    println!("\nAgainst blackbox_exporter: one nginx page over TLS 1.3 (ECDSA P-256), a fresh connection per probe");
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
    println!(
        "  tickr / blackbox_exporter: {:.2}x    tickr / minimal loop: {:.2}x",
        tickr_cpu / bb_cpu,
        tickr_cpu / minimal_cpu
    );
}
