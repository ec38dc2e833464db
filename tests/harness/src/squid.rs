//! A real Squid (no daemon, from the Debian package) as a forward proxy on 127.0.0.1 that
//! caches nothing, with every file it writes in its temp dir and one access-log line per
//! request, request headers included.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::process::{free_port, require, Process, READY_LIMIT};

/// A real Squid on `127.0.0.1:<free_port()>`.
pub struct Squid {
    process: Process,
    pub addr: SocketAddr,
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
        Self { process, addr }
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

fn make_writable_for_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod temp dir");
}
