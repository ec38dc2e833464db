//! A real nghttpx (from Debian's nghttp2-proxy) ending TLS (h2 and http/1.1 by ALPN) with a
//! certificate from the caller's [`Leaf`], and forwarding over HTTP/1.1 to each [`Route`]'s
//! upstream; every file it writes in its temp dir.

use std::path::Path;
use std::time::Duration;

use crate::process::{require, Process, READY_LIMIT};
use crate::reverse::{access_lines, check_routes, AccessLine, Route};
use crate::server::Leaf;

/// Real nghttpx instances, one per [`Route`] (nghttpx routes by host and path, not by the
/// address a request came in on, so a front per process is the plain way to give each route
/// its own upstream).
pub struct Nghttpx {
    processes: Vec<Process>,
    pub routes: Vec<Route>,
}

impl Nghttpx {
    /// Starts `nghttpx --frontend=<listen> --backend=<upstream>;;proto=http/1.1` per route, with
    /// `leaf` as its certificate, and waits until every front accepts.
    ///
    /// - No `--daemon`: the master stays in the foreground as the child we hold; its worker
    ///   process exits when the master is killed. `--workers=1`; `--conf=/dev/null` (the
    ///   packaged config is not read); `--no-ocsp` (it would run a fetch helper).
    /// - `--backend-connect-timeout` and `--backend-read-timeout` are `timeout`. After a failed
    ///   connect nghttpx blocks new connects to that backend for a growing back-off (about a
    ///   second at first), answering 502 meanwhile.
    /// - The access log: `status=$status rid=$http_x_request_id tp=$http_traceparent "$request"`
    ///   (`$request` ends with the client's protocol, `HTTP/2` or `HTTP/1.1`).
    pub async fn start(routes: &[Route], timeout: Duration, leaf: &Leaf) -> Self {
        check_routes("nghttpx", routes);
        let binary = require("nghttpx");
        let t = format!("{}ms", timeout.as_millis().max(1));
        let mut processes = Vec::new();
        for r in routes {
            let dir = tempfile::tempdir().expect("temp dir");
            let d = dir.path().display().to_string();
            std::fs::write(dir.path().join("chain.pem"), &leaf.chain_pem).expect("write chain");
            std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).expect("write key");
            let args = [
                "--conf=/dev/null".to_owned(),
                format!("--frontend={},{}", r.listen.ip(), r.listen.port()),
                format!(
                    "--backend={},{};;proto=http/1.1",
                    r.upstream.ip(),
                    r.upstream.port()
                ),
                "--workers=1".to_owned(),
                "--no-ocsp".to_owned(),
                format!("--backend-connect-timeout={t}"),
                format!("--backend-read-timeout={t}"),
                format!("--pid-file={d}/nghttpx.pid"),
                format!("--errorlog-file={d}/error.log"),
                format!("--accesslog-file={d}/access.log"),
                r#"--accesslog-format=status=$status rid=$http_x_request_id tp=$http_traceparent "$request""#
                    .to_owned(),
                format!("{d}/key.pem"),
                format!("{d}/chain.pem"),
            ];
            let mut process = Process::spawn("nghttpx", &binary, &args, dir);
            process.wait_tcp(r.listen, READY_LIMIT).await;
            processes.push(process);
        }
        Self {
            processes,
            routes: routes.to_vec(),
        }
    }

    /// `https://127.0.0.1:<port>/` of route `i`.
    pub fn url(&self, i: usize) -> String {
        format!("https://{}/", self.routes[i].listen)
    }

    /// The access-log lines of route `i` once there are at least `n` (or whatever there are
    /// after 5 s).
    pub async fn access_log(&self, i: usize, n: usize) -> Vec<AccessLine> {
        access_lines(&self.processes[i].dir().join("access.log"), n).await
    }

    pub fn logs(&self) -> String {
        self.processes.iter().map(Process::logs).collect()
    }

    /// The temp dir of route `i`'s process.
    pub fn dir(&self, i: usize) -> &Path {
        self.processes[i].dir()
    }
}
