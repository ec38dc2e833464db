//! A real Squid (no daemon, from the Debian package) that caches nothing, with every file it
//! writes in its temp dir and one access-log line per request: a forward proxy on 127.0.0.1
//! ([`Squid::start`]), or a reverse proxy in accel mode in front of upstreams
//! ([`Squid::reverse`]).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::process::{free_port, require, Process, READY_LIMIT};
use crate::reverse::{access_lines, check_routes, make_writable_for_all, AccessLine, Route};

/// A real Squid on `127.0.0.1:<free_port()>` (forward), or on its routes' fronts (reverse).
pub struct Squid {
    process: Process,
    /// The forward proxy's address; a reverse proxy's first front.
    pub addr: SocketAddr,
    /// A reverse proxy's routes (empty for a forward proxy).
    pub routes: Vec<Route>,
}

impl Squid {
    /// Starts Squid, allowing every client, caching nothing.
    ///
    /// - `-N`: no daemon, one process (no kid to orphan), the child we hold; SIGKILL on drop.
    /// - pid file, `cache_log`, access log and core dumps in the temp dir (the packaged ones are
    ///   under /run and /var); no pinger, no netdb file, no disk cache, no shutdown grace.
    /// - Run as root, Squid drops to its `cache_effective_user` (`proxy`), which must write its
    ///   logs: the temp dir is opened up to everyone (it holds only this test's config and
    ///   logs). As any other user, Squid stays that user.
    /// - The access log's format is `METHOD URL STATUS "HEADERS"`: the request's headers as
    ///   Squid received them, `\r\n` between them, written as those four characters. Squid
    ///   logs a URL without its query (`/health?`).
    pub async fn start() -> Self {
        let binary = require("squid");
        let dir = tempfile::tempdir().expect("temp dir");
        make_writable_for_all(dir.path());
        let d = dir.path().display();
        let port = free_port();
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             logformat tickr %rm %ru %>Hs \"%>h\"\n\
             access_log stdio:{d}/access.log tickr\n\
             coredump_dir {d}\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             http_access allow all\n\
             pinger_enable off\n\
             netdb_filename none\n\
             shutdown_lifetime 0 seconds\n\
             logfile_rotate 0\n"
        );
        let path = dir.path().join("squid.conf");
        std::fs::write(&path, conf).expect("write squid.conf");
        let args = ["-N".to_owned(), "-f".to_owned(), path.display().to_string()];
        let mut process = Process::spawn("squid", &binary, &args, dir);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        process.wait_tcp(addr, READY_LIMIT).await;
        Self {
            process,
            addr,
            routes: Vec::new(),
        }
    }

    /// Starts Squid as a reverse proxy ("accelerator"): per route an `http_port <listen> accel`
    /// named `f<i>`, and a `cache_peer` `p<i>` (`originserver`) to its upstream that only
    /// requests from that port may use; `never_direct allow all`, so every request goes through
    /// its peer. Caches nothing.
    ///
    /// - `timeout` sets `connect_timeout`, `peer_connect_timeout` and `read_timeout`, which take
    ///   whole seconds: it is rounded up (500 ms becomes 1 s).
    /// - `visible_hostname tickr-squid`: the name in `Via`, `X-Cache` and the error pages (else
    ///   the machine's host name).
    /// - The access log: `status=%>Hs rid=%{X-Request-Id}>h tp=%{traceparent}>h "%rm %ru"
    ///   %Ss/%Sh` (Squid's result code, e.g. `TCP_MISS/HIER_NONE`, last).
    /// - Otherwise as [`start`](Self::start): `-N`, files in the temp dir.
    pub async fn reverse(routes: &[Route], timeout: Duration) -> Self {
        check_routes("squid", routes);
        let binary = require("squid");
        let dir = tempfile::tempdir().expect("temp dir");
        make_writable_for_all(dir.path());
        let d = dir.path().display();
        let t = timeout.as_millis().div_ceil(1000).max(1);
        let mut conf = String::new();
        for (i, r) in routes.iter().enumerate() {
            let _ = writeln!(
                conf,
                "http_port {} accel name=f{i} defaultsite={} no-vhost\nacl f{i} myportname f{i}\n\
                 cache_peer {} parent {} 0 no-query no-digest originserver name=p{i} connect-timeout={t}\n\
                 cache_peer_access p{i} allow f{i}\ncache_peer_access p{i} deny all",
                r.listen,
                r.upstream,
                r.upstream.ip(),
                r.upstream.port()
            );
        }
        let _ = write!(
            conf,
            "visible_hostname tickr-squid\n\
             never_direct allow all\n\
             http_access allow all\n\
             connect_timeout {t} seconds\n\
             peer_connect_timeout {t} seconds\n\
             read_timeout {t} seconds\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             logformat tickr status=%>Hs rid=%{{X-Request-Id}}>h tp=%{{traceparent}}>h \"%rm %ru\" %Ss/%Sh\n\
             access_log stdio:{d}/access.log tickr\n\
             coredump_dir {d}\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             pinger_enable off\n\
             netdb_filename none\n\
             shutdown_lifetime 0 seconds\n\
             logfile_rotate 0\n"
        );
        let path = dir.path().join("squid.conf");
        std::fs::write(&path, conf).expect("write squid.conf");
        let args = ["-N".to_owned(), "-f".to_owned(), path.display().to_string()];
        let mut process = Process::spawn("squid", &binary, &args, dir);
        for r in routes {
            process.wait_tcp(r.listen, READY_LIMIT).await;
        }
        Self {
            process,
            addr: routes[0].listen,
            routes: routes.to_vec(),
        }
    }

    /// A reverse proxy's access-log lines (see [`reverse`](Self::reverse)) once there are at
    /// least `n` (or whatever there are after 5 s).
    pub async fn reverse_access_log(&self, n: usize) -> Vec<AccessLine> {
        access_lines(&self.process.dir().join("access.log"), n).await
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The access log's lines once there are at least `n` (or whatever there are after 5 s).
    /// Squid writes a line when a transaction ends: for a CONNECT, when the tunnel closes. The
    /// readiness check's connection (closed before any request) is left out.
    pub async fn access_log(&self, n: usize) -> Vec<String> {
        let path = self.process.dir().join("access.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = log
                .lines()
                .filter(|l| !l.contains("error:transaction-end-before-headers"))
                .map(str::to_owned)
                .collect();
            if lines.len() >= n || tokio::time::Instant::now() >= deadline {
                return lines;
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
