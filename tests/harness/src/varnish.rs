//! A real Varnish (`varnishd -F`, from the Debian package) caching reverse proxy with one backend
//! per [`Route`], its working directory (`-n`) in its temp dir, and `varnishncsa` reading the
//! access log that varnishd keeps only in shared memory.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::process::{require, Process, READY_LIMIT};
use crate::reverse::{check_routes, AccessLine, Route};

/// A real Varnish proxying each [`Route`]'s front to its upstream.
pub struct Varnish {
    process: Process,
    pub routes: Vec<Route>,
}

/// The backend timeouts of [`Varnish::start_with`].
#[derive(Debug, Clone, Copy)]
pub struct VarnishTimeouts {
    /// `.connect_timeout`.
    pub connect: Duration,
    /// `.first_byte_timeout`; `.between_bytes_timeout` is the same.
    pub first_byte: Duration,
}

impl Varnish {
    /// Varnish with `timeout` for connecting to a backend and for its first byte.
    pub async fn start(routes: &[Route], timeout: Duration) -> Self {
        Self::start_with(
            routes,
            VarnishTimeouts {
                connect: timeout,
                first_byte: timeout,
            },
        )
        .await
    }

    /// Writes a VCL with backend `b<i>` for route `i`, chosen by the name of the listen socket
    /// the request came in on (`-a f<i>=127.0.0.1:<port>`), and the built-in VCL for the rest
    /// (so a backend failure is the built-in synthetic 503 "Backend fetch failed").
    ///
    /// - `-F`: manager and child stay in the foreground; the manager is the child we hold, and
    ///   its cache child exits when the manager is killed. `-j none`: no jail, no switch to the
    ///   `varnish` user; `-T none`: no management port; `-s malloc,16m`.
    /// - The access log is read on demand, see [`access_log`](Self::access_log).
    pub async fn start_with(routes: &[Route], timeouts: VarnishTimeouts) -> Self {
        check_routes("varnish", routes);
        let varnishd = require("varnishd");
        // Checked now rather than at the first look at the access log.
        require("varnishncsa");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display().to_string();
        let secs = |t: Duration| format!("{:.3}s", t.as_secs_f64());
        let mut vcl = String::from("vcl 4.1;\n\n");
        for (i, r) in routes.iter().enumerate() {
            let _ = writeln!(
                vcl,
                "backend b{i} {{\n    .host = \"{}\";\n    .port = \"{}\";\n    .connect_timeout = {};\n    \
                 .first_byte_timeout = {};\n    .between_bytes_timeout = {};\n}}\n",
                r.upstream.ip(),
                r.upstream.port(),
                secs(timeouts.connect),
                secs(timeouts.first_byte),
                secs(timeouts.first_byte)
            );
        }
        vcl.push_str("sub vcl_recv {\n");
        for i in 0..routes.len() {
            let _ = writeln!(
                vcl,
                "    if (local.socket == \"f{i}\") {{ set req.backend_hint = b{i}; }}"
            );
        }
        vcl.push_str("}\n");
        std::fs::write(dir.path().join("tickr.vcl"), vcl).expect("write tickr.vcl");
        let mut args = vec![
            "-F".to_owned(),
            "-j".to_owned(),
            "none".to_owned(),
            "-n".to_owned(),
            format!("{d}/work"),
            "-f".to_owned(),
            format!("{d}/tickr.vcl"),
            "-s".to_owned(),
            "malloc,16m".to_owned(),
            "-T".to_owned(),
            "none".to_owned(),
        ];
        for (i, r) in routes.iter().enumerate() {
            args.push("-a".to_owned());
            args.push(format!("f{i}={}", r.listen));
        }
        let mut process = Process::spawn("varnishd", &varnishd, &args, dir);
        for r in routes {
            process.wait_tcp(r.listen, READY_LIMIT).await;
        }
        Self {
            process,
            routes: routes.to_vec(),
        }
    }

    /// The client transactions that have ended, one line each
    /// (`status=%s rid=%{X-Request-Id}i tp=%{traceparent}i "%r"`), once there are at least `n`
    /// (or whatever there are after 5 s).
    ///
    /// `varnishncsa -d` reads the shared-memory log from its head and exits at its end: run once
    /// per look, it misses nothing (a test's log never wraps), where a long-running varnishncsa
    /// sees only what happens after it has attached, which nothing tells.
    pub async fn access_log(&self, n: usize) -> Vec<AccessLine> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<AccessLine> = self
                .ncsa_dump()
                .lines()
                .filter_map(AccessLine::parse)
                .collect();
            if lines.len() >= n || tokio::time::Instant::now() >= deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn ncsa_dump(&self) -> String {
        let workdir = self.process.dir().join("work");
        let out = std::process::Command::new(require("varnishncsa"))
            .arg("-d")
            .arg("-n")
            .arg(&workdir)
            .arg("-F")
            .arg(r#"status=%s rid=%{X-Request-Id}i tp=%{traceparent}i "%r""#)
            .output()
            .expect("run varnishncsa");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // Kept beside the other logs, for failure messages.
        let _ = std::fs::write(self.process.dir().join("access.log"), &text);
        text
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}
