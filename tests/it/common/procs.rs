//! Real external components for end-to-end tests: nginx, Prometheus and Alertmanager, each run
//! from its Debian package as a child process in its own temp dir, on 127.0.0.1, killed on drop.
//!
//! What this module owns: finding the binaries ([`require`]), picking ports for programs that
//! cannot report an OS-chosen one ([`free_port`]), the child's life cycle and logs ([`Process`]),
//! and one small wrapper per component that writes its config and waits until it is ready.
//! A missing component is a test failure, never a silent skip: CI installs the packages first.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::Instant;

/// How long a component may take to become ready. Generous: a loaded CI machine starting
/// Prometheus (which replays an empty WAL and loads rules) can take several seconds.
const READY_LIMIT: Duration = Duration::from_secs(30);

/// How often readiness and queries are polled.
const POLL: Duration = Duration::from_millis(50);

/// A port on 127.0.0.1 that was free a moment ago, for programs that cannot listen on port 0
/// and report the port they got (nginx, Prometheus and Alertmanager all need a fixed one).
///
/// Ports come from below the kernel's ephemeral range, so the thousands of connections the
/// probes open meanwhile can never take one between this check and the child's bind; each
/// test process walks its own stretch of them (by its pid), once. Another program on the
/// machine could still take one: that fails loudly (the child exits with "address already in
/// use", and the readiness wait panics with its logs), never silently.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = 10_000;
    let high = ephemeral_start().max(low + 1_000);
    let span = high - low;
    let offset = std::process::id() * 997 % span;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free port left below {high}");
        let port = u16::try_from(low + (offset + n) % span).expect("ports fit in u16");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The first port the kernel hands out on its own (`ip_local_port_range`; 32768 by default).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A numeric field of `/proc/<pid>/status` (`Threads`, or `VmRSS` in KiB); 0 once the process
/// is gone.
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The Debian package that provides `binary`, for the "install it" message.
fn package_of(binary: &str) -> &'static str {
    match Path::new(binary)
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or(binary)
    {
        "nginx" => "nginx-light",
        "prometheus" | "promtool" => "prometheus",
        "prometheus-alertmanager" | "amtool" => "prometheus-alertmanager",
        "prometheus-blackbox-exporter" => "prometheus-blackbox-exporter",
        "haproxy" => "haproxy",
        "caddy" => "caddy",
        "unshare" => "util-linux",
        _ => "(see DEPENDENCIES.md)",
    }
}

/// Finds `binary`: an absolute path as given, else a name looked up in `PATH` and then in the
/// sbin directories (`/usr/sbin` holds nginx and is often not on a non-root user's `PATH`).
///
/// Panics with the package to install when it is missing: a test that needs a real component
/// fails without it rather than passing vacuously.
pub fn require(binary: &str) -> PathBuf {
    let candidates: Vec<PathBuf> = if binary.contains('/') {
        vec![PathBuf::from(binary)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(binary))
            .collect()
    };
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let package = package_of(binary);
    panic!(
        "`{binary}` is required by this test and was not found (looked in PATH, /usr/local/sbin, /usr/sbin, /sbin).\n\
         Install the Debian package `{package}` (apt-get install -y {package}); \
         the README's test command installs it before running the tests."
    );
}

/// A child process with its own temp dir (config, data, logs), killed with SIGKILL and reaped
/// when dropped, so a failing test never leaves a server running.
///
/// `std::process` rather than `tokio::process`: `Drop` can kill *and* wait synchronously
/// (tokio's `kill_on_drop` only reaps in the background, which may never happen once the test's
/// runtime is gone). If the test binary itself is killed, the child outlives it; closing that gap
/// would need `prctl(PR_SET_PDEATHSIG)`, i.e. `unsafe`, which the crate forbids.
pub struct Process {
    name: String,
    child: Child,
    // Removed only after `Drop::drop` has killed and reaped the child that writes into it.
    dir: TempDir,
}

impl Process {
    /// Starts `program args` in `dir` (its working directory), stdout and stderr going to
    /// `stdout.log` and `stderr.log` there. Takes `dir` so the caller can write config first.
    pub fn spawn<S: AsRef<OsStr>>(name: &str, program: &Path, args: &[S], dir: TempDir) -> Self {
        let stdout =
            std::fs::File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let stderr =
            std::fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", program.display()));
        Self {
            name: name.to_owned(),
            child,
            dir,
        }
    }

    /// The process's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Every `*.log` file in the temp dir (stdout, stderr, and whatever the program writes
    /// there, such as nginx's error and access logs), for failure messages.
    pub fn logs(&self) -> String {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension() == Some(OsStr::new("log")));
        files.sort();
        let mut out = String::new();
        for file in files {
            let text =
                std::fs::read_to_string(&file).unwrap_or_else(|e| format!("(unreadable: {e})"));
            let _ = writeln!(
                out,
                "----- {} {} -----\n{}",
                self.name,
                file.file_name().unwrap_or_default().to_string_lossy(),
                text.trim_end()
            );
        }
        out
    }

    /// Panics with the logs if the process has exited: it was meant to keep running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} (pid {}) exited early with {status}\n{}",
                self.name,
                self.pid(),
                self.logs()
            );
        }
    }

    /// Polls `GET http://addr{path}` until it answers 200. Panics with the logs if the process
    /// exits first or `limit` passes.
    pub async fn wait_http_ok(&mut self, addr: SocketAddr, path: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_running();
            let last = match get(addr, path).await {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("HTTP {status}: {}", body.trim()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "{} not ready at http://{addr}{path} after {limit:?} (last: {last})\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `addr` accepts TCP connections (for servers without a health endpoint).
    pub async fn wait_tcp(&mut self, addr: SocketAddr, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_running();
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "{} does not accept on {addr} after {limit:?}: {e}\n{}",
                        self.name,
                        self.logs()
                    )
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL, not SIGTERM: nothing here needs a graceful shutdown, and a kill cannot hang.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection, with a timeout; errors are returned, not
/// panicked on, because readiness polling expects them.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| format!("{method} http://{addr}{path}: no answer in 10s"))?
}

/// `GET` shorthand for [`request`].
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    request(addr, "GET", path, None, "").await
}

/// Parses the `{"status":"success","data":...}` envelope of the Prometheus and Alertmanager v1
/// APIs and returns `data`.
fn api_data(what: &str, status: u16, body: &str) -> Value {
    let json: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: HTTP {status}, not JSON ({e}): {body}"));
    if status != 200 || json["status"] != "success" {
        panic!("{what}: HTTP {status}: {body}");
    }
    json["data"].clone()
}

/// A sample value as the Prometheus API writes it: a string, because of `NaN` and `±Inf`.
fn api_value(v: &Value) -> f64 {
    match v
        .as_str()
        .unwrap_or_else(|| panic!("sample value is not a string: {v}"))
    {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s
            .parse()
            .unwrap_or_else(|e| panic!("sample value {s:?}: {e}")),
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Formats a duration the way Prometheus's config reads it (`1500ms`).
fn prom_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// One scrape target as `/api/v1/targets` reports it.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub job: String,
    pub instance: String,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: String,
    pub last_error: String,
}

/// One alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A real Prometheus scraping the given jobs and evaluating the given rule files.
pub struct Prometheus {
    pub addr: SocketAddr,
    process: Process,
}

impl Prometheus {
    /// Starts Prometheus with one static job per `(job, addr)`, scraping `/metrics` every
    /// `scrape_interval` with the default scrape settings (so it negotiates OpenMetrics and gzip
    /// like any production Prometheus), and waits until `/-/ready`.
    ///
    /// `rule_files` should be absolute (Prometheus resolves relative ones against its config
    /// file, which lives in a temp dir). With `alertmanager`, firing alerts are sent there.
    pub async fn start(
        scrape: &[(&str, SocketAddr)],
        rule_files: &[PathBuf],
        scrape_interval: Duration,
        eval_interval: Duration,
        alertmanager: Option<SocketAddr>,
    ) -> Self {
        let binary = require("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let interval = prom_duration(scrape_interval);
        // The default scrape_timeout (10s) must not exceed the interval, or the config is refused.
        let mut config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {}\n",
            prom_duration(eval_interval)
        );
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for f in rule_files {
                let f = std::fs::canonicalize(f)
                    .unwrap_or_else(|e| panic!("rule file {}: {e}", f.display()));
                let _ = writeln!(
                    config,
                    "  - {}",
                    serde_json::to_string(&f.to_string_lossy()).expect("json string")
                );
            }
        }
        if let Some(am) = alertmanager {
            let _ = writeln!(
                config,
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]"
            );
        }
        config.push_str("scrape_configs:\n");
        for (job, addr) in scrape {
            let _ = writeln!(
                config,
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]"
            );
        }
        std::fs::write(dir.path().join("prometheus.yml"), &config).expect("write prometheus.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let args = [
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            // Lets a later test reload rules with POST /-/reload instead of restarting.
            "--web.enable-lifecycle".to_owned(),
            // Tests run for seconds; the default 1m would delay resending to Alertmanager.
            "--rules.alert.resend-delay=1s".to_owned(),
            "--log.level=info".to_owned(),
        ];
        let mut process = Process::spawn("prometheus", &binary, &args, dir);
        process.wait_http_ok(addr, "/-/ready", READY_LIMIT).await;
        Self { addr, process }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// GETs an API path and returns its `data`, panicking (with the logs) on an API error.
    pub async fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = get(self.addr, path_and_query)
            .await
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}\n{}", self.logs()));
        api_data(&format!("prometheus {path_and_query}"), status, &body)
    }

    /// An instant query at "now": one `(labels, value)` per series of a vector result, or one
    /// with no labels for a scalar. A range-vector or string result is a test error.
    pub async fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let data = self.api(&format!("/api/v1/query?query={q}")).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .expect("vector result is an array")
                .iter()
                .map(|s| (string_map(&s["metric"]), api_value(&s["value"][1])))
                .collect(),
            Some("scalar") => vec![(BTreeMap::new(), api_value(&data["result"][1]))],
            other => panic!("query {promql:?}: unexpected result type {other:?}: {data}"),
        }
    }

    /// Polls `query(promql)` until `done` accepts the result, and returns it; panics with the
    /// last result and the logs after `limit`.
    pub async fn wait_for_query(
        &self,
        promql: &str,
        limit: Duration,
        done: impl Fn(&[(BTreeMap<String, String>, f64)]) -> bool,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        let deadline = Instant::now() + limit;
        loop {
            let result = self.query(promql).await;
            if done(&result) {
                return result;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting on {promql:?}; last result: {result:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The active scrape targets.
    pub async fn targets(&self) -> Vec<ScrapeTarget> {
        let data = self.api("/api/v1/targets?state=active").await;
        data["activeTargets"]
            .as_array()
            .expect("activeTargets is an array")
            .iter()
            .map(|t| ScrapeTarget {
                job: t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                instance: t["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                health: t["health"].as_str().unwrap_or_default().to_owned(),
                last_error: t["lastError"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Waits until every active target has been scraped successfully; panics with each target's
    /// last scrape error after `limit` (a target marked down shows *why* here, e.g. a wrong
    /// content type).
    pub async fn targets_up(&self, limit: Duration) -> Vec<ScrapeTarget> {
        let deadline = Instant::now() + limit;
        loop {
            let targets = self.targets().await;
            if !targets.is_empty() && targets.iter().all(|t| t.health == "up") {
                return targets;
            }
            if Instant::now() > deadline {
                panic!(
                    "targets not all up after {limit:?}: {targets:#?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Alerts that are pending or firing now.
    pub async fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts").await;
        data["alerts"]
            .as_array()
            .expect("alerts is an array")
            .iter()
            .map(|a| {
                let labels = string_map(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    state: a["state"].as_str().unwrap_or_default().to_owned(),
                    labels,
                    annotations: string_map(&a["annotations"]),
                }
            })
            .collect()
    }
}

/// A real nginx (single process, foreground) serving the caller's `server { ... }` blocks.
pub struct Nginx {
    process: Process,
}

impl Nginx {
    /// Wraps `servers` (one or more `server { ... }` blocks, each listening on
    /// `127.0.0.1:<free_port()>`) in a complete `nginx.conf` that keeps every file inside the
    /// temp dir, starts nginx, and waits until every `listen` address accepts connections.
    ///
    /// The access log (see [`access_log`](Self::access_log)) has one line per request:
    /// `status=502 upstream_status=502 upstream=127.0.0.1:4321 request="GET / HTTP/1.1" rt=0.001 urt=0.001`.
    pub async fn start(servers: &str) -> Self {
        let binary = require("nginx");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        // - `daemon off` + `master_process off`: one process, which is the child we hold, so a
        //   SIGKILL on drop leaves nothing behind (with a master, killing it orphans the workers).
        // - `user root`: only consulted when a master runs as root and spawns workers; saying
        //   root keeps the workers able to write the 0700 temp dir if anyone turns the master on.
        //   As non-root nginx ignores it with a warning.
        // - pid, lock file, logs and every *_temp_path point into the temp dir: the packaged
        //   defaults are under /var and /run.
        let conf = format!(
            r#"daemon off;
master_process off;
user root;
worker_processes 1;
pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {d}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    log_format tickr 'status=$status upstream_status=$upstream_status upstream=$upstream_addr '
                     'request="$request" rt=$request_time urt=$upstream_response_time';
    access_log {d}/access.log tickr;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type text/plain;

{servers}
}}
"#
        );
        let listens = listen_addresses(servers);
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let args = [
            "-p".to_owned(),
            format!("{d}/"),
            "-c".to_owned(),
            format!("{d}/nginx.conf"),
            // The error log used before the config is read (the packaged default may be a path
            // under /var/log).
            "-e".to_owned(),
            format!("{d}/error.log"),
        ];
        let mut process = Process::spawn("nginx", &binary, &args, dir);
        for addr in listens {
            process.wait_tcp(addr, READY_LIMIT).await;
        }
        Self { process }
    }

    /// The access log once it holds at least `lines` lines (or whatever it holds after 5 s).
    /// nginx writes a request's line after the response has gone out, so a client that has
    /// just read its answer may be ahead of the log.
    pub async fn access_log(&self, lines: usize) -> String {
        let path = self.process.dir().join("access.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.lines().count() >= lines || tokio::time::Instant::now() >= deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}

/// The `listen` addresses of `servers`; each must be `127.0.0.1:<port>` (tests never listen on
/// other interfaces, and a bare port would mean all of them).
fn listen_addresses(servers: &str) -> Vec<SocketAddr> {
    let addrs: Vec<SocketAddr> = servers
        .lines()
        .filter_map(|line| line.trim().strip_prefix("listen"))
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map(|rest| {
            let first = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_end_matches(';');
            let addr: SocketAddr = first.parse().unwrap_or_else(|_| {
                panic!("nginx `listen {first}`: tests must listen on 127.0.0.1:<port>")
            });
            assert!(
                addr.ip().is_loopback(),
                "nginx `listen {first}`: tests must listen on 127.0.0.1"
            );
            addr
        })
        .collect();
    assert!(
        !addrs.is_empty(),
        "the nginx server blocks have no `listen 127.0.0.1:<port>;` line"
    );
    addrs
}

/// A real Alertmanager, clustering off, storing in its temp dir.
pub struct Alertmanager {
    pub addr: SocketAddr,
    process: Process,
}

impl Alertmanager {
    /// Writes `config_yaml` as `alertmanager.yml`, starts Alertmanager and waits until `/-/ready`.
    pub async fn start(config_yaml: &str) -> Self {
        let binary = require("prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("alertmanager.yml"), config_yaml)
            .expect("write alertmanager.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let args = [
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            // Empty disables clustering; otherwise it binds 0.0.0.0:9094 and tries to gossip,
            // which collides between parallel tests and leaves 127.0.0.1.
            "--cluster.listen-address=".to_owned(),
            "--log.level=info".to_owned(),
        ];
        let mut process = Process::spawn("alertmanager", &binary, &args, dir);
        process.wait_http_ok(addr, "/-/ready", READY_LIMIT).await;
        Self { addr, process }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// The alerts Alertmanager holds now (API v2: a bare JSON array, no envelope).
    pub async fn alerts(&self) -> Vec<Alert> {
        let (status, body) = get(self.addr, "/api/v2/alerts")
            .await
            .unwrap_or_else(|e| panic!("alertmanager alerts: {e}\n{}", self.logs()));
        assert_eq!(status, 200, "alertmanager /api/v2/alerts: {body}");
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("alertmanager alerts: {e}: {body}"));
        json.as_array()
            .expect("alerts is an array")
            .iter()
            .map(|a| {
                let labels = string_map(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    // `active`, `suppressed` (silenced or inhibited) or `unprocessed`.
                    state: a["status"]["state"].as_str().unwrap_or_default().to_owned(),
                    labels,
                    annotations: string_map(&a["annotations"]),
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Environment for children that write to `$HOME` (Caddy keeps its data and autosaved config
// under the XDG directories, which default to paths under `/root`).
// ---------------------------------------------------------------------------------------------

impl Process {
    /// Like [`spawn`](Self::spawn), with extra environment variables for the child.
    pub fn spawn_with_env<S: AsRef<OsStr>>(
        name: &str,
        program: &Path,
        args: &[S],
        env: &[(&str, &Path)],
        dir: TempDir,
    ) -> Self {
        let stdout =
            std::fs::File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let stderr =
            std::fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({}): {e}", program.display()));
        Self {
            name: name.to_owned(),
            child,
            dir,
        }
    }
}

/// The `127.0.0.1:<port>` after `keyword` on each line of `config` that starts with it, e.g.
/// HAProxy's `bind 127.0.0.1:8080`. Tests never listen on other interfaces.
fn addresses_after(config: &str, keyword: &str, what: &str) -> Vec<SocketAddr> {
    let addrs: Vec<SocketAddr> = config
        .lines()
        .filter_map(|line| line.trim().strip_prefix(keyword))
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map(|rest| {
            let first = rest.split_whitespace().next().unwrap_or_default();
            let addr: SocketAddr = first.parse().unwrap_or_else(|_| {
                panic!("{what} `{keyword} {first}`: tests must listen on 127.0.0.1:<port>")
            });
            assert!(
                addr.ip().is_loopback(),
                "{what} `{keyword} {first}`: tests must listen on 127.0.0.1"
            );
            addr
        })
        .collect();
    assert!(
        !addrs.is_empty(),
        "the {what} config has no `{keyword} 127.0.0.1:<port>` line"
    );
    addrs
}

// ---------------------------------------------------------------------------------------------
// HAProxy
// ---------------------------------------------------------------------------------------------

/// A real HAProxy (foreground, one process) serving the caller's `frontend`/`backend`/`listen`
/// sections.
pub struct Haproxy {
    process: Process,
}

impl Haproxy {
    /// Wraps `sections` (each `bind 127.0.0.1:<free_port()>`) in a complete `haproxy.cfg` with
    /// HTTP mode and `timeout server` set to `server_timeout`, starts HAProxy and waits until
    /// every `bind` address accepts connections.
    ///
    /// - `-db` (and no `daemon`): stays in the foreground as the child we hold, so a SIGKILL on
    ///   drop leaves nothing behind; warnings and alerts go to `stderr.log`.
    /// - The pid file and the admin socket live in the temp dir (the packaged ones are in /run).
    /// - `timeout connect 200ms`: HAProxy waits min(timeout connect, 1s) between its 3 connect
    ///   retries, so a refused upstream answers 503 after ~0.6s instead of 3s.
    pub async fn start(server_timeout: Duration, sections: &str) -> Self {
        let binary = require("haproxy");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let conf = format!(
            "global\n    pidfile {d}/haproxy.pid\n    stats socket {d}/admin.sock mode 600 level admin\n\n\
             defaults\n    mode http\n    timeout connect 200ms\n    timeout client 10s\n    \
             timeout server {}ms\n\n{sections}\n",
            server_timeout.as_millis().max(1)
        );
        let binds = addresses_after(sections, "bind", "haproxy");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).expect("write haproxy.cfg");
        let args = [
            "-f".to_owned(),
            path.display().to_string(),
            "-db".to_owned(),
        ];
        let mut process = Process::spawn("haproxy", &binary, &args, dir);
        for addr in binds {
            process.wait_tcp(addr, READY_LIMIT).await;
        }
        Self { process }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}

// ---------------------------------------------------------------------------------------------
// Caddy
// ---------------------------------------------------------------------------------------------

/// A real Caddy serving the caller's Caddyfile site blocks over plain HTTP.
pub struct Caddy {
    process: Process,
}

impl Caddy {
    /// Prepends global options to `sites` (site blocks addressed `http://127.0.0.1:<port> {`),
    /// runs `caddy run --adapter caddyfile` and waits until every site address accepts
    /// connections.
    ///
    /// - `admin off`: no admin endpoint (it would bind localhost:2019, shared between tests).
    /// - `auto_https off`: no certificates, no redirects, no attempt to install a local CA.
    /// - `storage` and `HOME`/`XDG_DATA_HOME`/`XDG_CONFIG_HOME` point into the temp dir, so
    ///   Caddy writes nothing under /root (it autosaves its config under XDG_CONFIG_HOME).
    pub async fn start(sites: &str) -> Self {
        let binary = require("caddy");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let conf = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n}}\n\n{sites}\n"
        );
        let listens: Vec<SocketAddr> = sites
            .lines()
            .filter_map(|line| line.trim().strip_prefix("http://"))
            .filter_map(|rest| rest.strip_suffix('{'))
            .map(|addr| {
                let addr: SocketAddr = addr.trim().parse().unwrap_or_else(|_| {
                    panic!("caddy site `http://{addr}`: tests must listen on 127.0.0.1:<port>")
                });
                assert!(addr.ip().is_loopback(), "caddy site {addr}: not 127.0.0.1");
                addr
            })
            .collect();
        assert!(
            !listens.is_empty(),
            "the Caddyfile has no `http://127.0.0.1:<port> {{` site"
        );
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, conf).expect("write Caddyfile");
        let args = [
            "run".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
            "--adapter".to_owned(),
            "caddyfile".to_owned(),
        ];
        let home = dir.path().to_owned();
        let env = [
            ("HOME", home.as_path()),
            ("XDG_DATA_HOME", home.as_path()),
            ("XDG_CONFIG_HOME", home.as_path()),
        ];
        let mut process = Process::spawn_with_env("caddy", &binary, &args, &env, dir);
        for addr in listens {
            process.wait_tcp(addr, READY_LIMIT).await;
        }
        Self { process }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}
