//! A real HAProxy (foreground, one process, from the Debian package) serving the caller's
//! `frontend`/`backend`/`listen` sections.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::process::{require, Process, READY_LIMIT};

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
