//! A child process in its own temp dir, killed on drop ([`Process`]), and what starting one
//! needs: finding the binary ([`require`]), a port for programs that cannot report an OS-chosen
//! one ([`free_port`]), and the small HTTP client readiness polls with ([`request`], [`get`]).
//! A missing component is a test failure, never a silent skip: CI installs the packages first.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::time::Instant;

/// How long a component may take to become ready. Generous: a loaded CI machine starting
/// Prometheus (which replays an empty WAL and loads rules) can take several seconds.
pub(crate) const READY_LIMIT: Duration = Duration::from_secs(30);

/// How often readiness and queries are polled.
pub(crate) const POLL: Duration = Duration::from_millis(50);

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
        "tinyproxy" => "tinyproxy",
        "squid" => "squid",
        "apache2" => "apache2",
        "varnishd" | "varnishncsa" => "varnish",
        "lighttpd" => "lighttpd",
        "h2o" => "h2o",
        "nghttpx" => "nghttp2-proxy",
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
        Self::spawn_with_env(name, program, args, &[] as &[(&str, &str)], dir)
    }

    /// Like [`spawn`](Self::spawn), with extra environment variables for the child (Caddy keeps
    /// its data under the XDG directories, which default to paths under `/root`).
    pub fn spawn_with_env<S, K, V>(
        name: &str,
        program: &Path,
        args: &[S],
        env: &[(K, V)],
        dir: TempDir,
    ) -> Self
    where
        S: AsRef<OsStr>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let stdout =
            std::fs::File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let stderr =
            std::fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
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

    /// What the process wrote to `stderr.log` so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Waits until the process logs its `listening` line (tickr's, in either log format:
    /// `msg=listening address=127.0.0.1:PORT` or `"msg":"listening","address":"127.0.0.1:PORT"`)
    /// and returns that address: how a program on port 0 tells which one it got. Panics with the
    /// logs if the process exits first or `limit` passes.
    pub async fn wait_listening(&mut self, limit: Duration) -> SocketAddr {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_running();
            if let Some(addr) = self.stderr().lines().find_map(listening_address) {
                return addr;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not log `listening` after {limit:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
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

/// The `127.0.0.1:PORT` of a `listening` log line, in either of tickr's log formats.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let start = line.find("127.0.0.1:")? + "127.0.0.1:".len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("127.0.0.1:{digits}").parse().ok()
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
        // Asks for OpenMetrics as Prometheus does: these requests stand for its scrapes.
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string())
            .header("accept", crate::exposition::PROMETHEUS_ACCEPT);
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
