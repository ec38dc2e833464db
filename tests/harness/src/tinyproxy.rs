//! A real tinyproxy (foreground, from the Debian package): a forward proxy for CONNECT and
//! plain forwarding, optionally requiring basic auth, with its log and pid file in its temp dir.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::process::{free_port, require, Process, READY_LIMIT};

/// A real tinyproxy on `127.0.0.1:<free_port()>`.
pub struct Tinyproxy {
    process: Process,
    pub addr: SocketAddr,
}

impl Tinyproxy {
    /// Starts tinyproxy open to every client; with `auth` (`user`, `password`), it answers 407
    /// to requests without those credentials.
    ///
    /// - `-d`: stays in the foreground as the child we hold, so a SIGKILL on drop leaves
    ///   nothing behind.
    /// - Log and pid file in the temp dir (the packaged ones are under /var); `LogLevel Connect`
    ///   logs one `Request (file descriptor N): METHOD target HTTP/1.1` line per request.
    /// - No `ConnectPort` line: CONNECT may go to any port (the test servers' are random).
    pub async fn start(auth: Option<(&str, &str)>) -> Self {
        let binary = require("tinyproxy");
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let port = free_port();
        let auth = auth.map_or(String::new(), |(u, p)| format!("BasicAuth {u} {p}\n"));
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 200\n\
             LogFile \"{d}/tinyproxy.log\"\nLogLevel Connect\nPidFile \"{d}/tinyproxy.pid\"\n{auth}"
        );
        let path = dir.path().join("tinyproxy.conf");
        std::fs::write(&path, conf).expect("write tinyproxy.conf");
        let args = ["-d".to_owned(), "-c".to_owned(), path.display().to_string()];
        let mut process = Process::spawn("tinyproxy", &binary, &args, dir);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        process.wait_tcp(addr, READY_LIMIT).await;
        Self { process, addr }
    }

    /// `http://127.0.0.1:<port>`, with `user:password@` when given.
    pub fn url(&self, credentials: Option<&str>) -> String {
        let userinfo = credentials.map_or(String::new(), |c| format!("{c}@"));
        format!("http://{userinfo}{}", self.addr)
    }

    /// The requests tinyproxy logged (`CONNECT 127.0.0.1:4321 HTTP/1.1`, `GET http://… HTTP/1.1`),
    /// once there are at least `n` (or whatever there are after 5 s).
    pub async fn requests(&self, n: usize) -> Vec<String> {
        let path = self.process.dir().join("tinyproxy.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<String> = log
                .lines()
                .filter_map(|l| l.split_once("]: Request (file descriptor "))
                .filter_map(|(_, rest)| rest.split_once("): "))
                .map(|(_, request)| request.to_owned())
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

    /// The tinyproxy process, for its CPU time and memory.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }
}
