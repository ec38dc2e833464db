//! A real Caddy (from the Debian package) serving the caller's Caddyfile site blocks over plain
//! HTTP, with its data, autosaved config and `$HOME` inside its temp dir.

use std::net::SocketAddr;
use std::path::Path;

use crate::process::{require, Process, READY_LIMIT};

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
