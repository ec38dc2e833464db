//! What the reverse proxies of the harness (Apache, Varnish, lighttpd, Squid in accel mode, h2o,
//! nghttpx) share: a [`Route`] from a front address to an upstream, the access-log format they
//! are configured with, and reading that log once it has the lines a test waits for.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::process::{free_port, Process, READY_LIMIT};

/// One front of a reverse proxy: it listens on `listen` and forwards every request to
/// `upstream` (a test server, a port nothing listens on, or another proxy's front: chains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
}

impl Route {
    /// A front on `127.0.0.1:<free_port()>` forwarding to `upstream`.
    pub fn to(upstream: SocketAddr) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            upstream,
        }
    }

    /// `http://127.0.0.1:<port>/` of the front.
    pub fn url(&self) -> String {
        format!("http://{}/", self.listen)
    }
}

/// Checks that a proxy is given at least one route and that every front is on loopback.
pub(crate) fn check_routes(what: &str, routes: &[Route]) {
    assert!(!routes.is_empty(), "{what}: no route");
    for r in routes {
        assert!(
            r.listen.ip().is_loopback(),
            "{what}: front {} is not on 127.0.0.1",
            r.listen
        );
    }
}

/// One parsed access-log line. Every proxy here logs
/// `status=<code> rid=<X-Request-Id> tp=<traceparent> <rest>` (`-` or empty when the request
/// had no such header), so a test can match a probe's line by its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    pub status: u16,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    pub line: String,
}

impl AccessLine {
    pub fn parse(line: &str) -> Option<Self> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.trim_matches('"').to_owned())
                .filter(|v| !v.is_empty() && v != "-")
        };
        Some(Self {
            // Squid logs `000` for a connection closed before any request (a readiness check).
            status: field("status=")?.parse().ok().filter(|s| *s >= 100)?,
            request_id: field("rid="),
            traceparent: field("tp="),
            line: line.to_owned(),
        })
    }
}

/// The parsed lines of the access log at `path` once there are at least `n` (or whatever there
/// are after 5 s): proxies write a request's line after its response has gone out, so a client
/// that has just read its answer may be ahead of the log. Lines that do not parse (a readiness
/// check's connection without a request, in some products) are left out.
pub(crate) async fn access_lines(path: &Path, n: usize) -> Vec<AccessLine> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<AccessLine> = log.lines().filter_map(AccessLine::parse).collect();
        if lines.len() >= n || tokio::time::Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens `dir` to every user: products that drop root privileges to their own user
/// (`www-data`, `proxy`, `nobody`) must still write their logs and sockets there. It holds only
/// this test's config and logs.
pub(crate) fn make_writable_for_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod temp dir");
}

/// A proxy process serving [`Route`]s, its access log `access.log` in its temp dir: what Apache,
/// h2o and lighttpd share once their configuration is written.
pub struct Fronts {
    process: Process,
    pub routes: Vec<Route>,
}

impl Fronts {
    /// Spawns `binary` with `args` and waits until every route's front accepts.
    pub async fn spawn(
        name: &str,
        binary: &Path,
        args: &[String],
        dir: tempfile::TempDir,
        routes: &[Route],
    ) -> Self {
        let mut process = Process::spawn(name, binary, args, dir);
        for r in routes {
            process.wait_tcp(r.listen, READY_LIMIT).await;
        }
        Self {
            process,
            routes: routes.to_vec(),
        }
    }

    /// The access log's lines once there are at least `n` (or whatever there are after 5 s).
    pub async fn access_log(&self, n: usize) -> Vec<AccessLine> {
        access_lines(&self.process.dir().join("access.log"), n).await
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}
