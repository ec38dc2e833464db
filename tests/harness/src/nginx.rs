//! A real nginx (single process, foreground, from the Debian package) serving the caller's
//! `server { ... }` blocks, with every file it writes inside its temp dir.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::process::{require, Process, READY_LIMIT};

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
    /// `status=502 upstream_status=502 upstream=127.0.0.1:4321 request="GET / HTTP/1.1" rt=0.001
    /// urt=0.001 conn=7 request_id="4bf9…" traceparent="00-4bf9…-00f0…-01"`, where `conn` is the
    /// connection's serial number, which the error log's lines carry as `*7`.
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
                     'request="$request" rt=$request_time urt=$upstream_response_time '
                     'conn=$connection request_id="$http_x_request_id" '
                     'traceparent="$http_traceparent"';
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
