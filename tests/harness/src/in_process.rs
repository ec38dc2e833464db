//! tickr in-process, the way `main.rs` runs it: a config file in a temp dir, a listener on a
//! port the OS picks, and a shutdown trigger the test holds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::exposition::{http, Exposition, Reply, PROMETHEUS_ACCEPT};

pub struct Tickr {
    pub addr: SocketAddr,
    pub handle: tickr::Handle,
    pub dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Tickr {
    /// Writes `yaml` as `config.yml` in a fresh temp dir and starts tickr on it.
    pub async fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("config.yml"), yaml).expect("write config");
        let config = tickr::config::load(&dir.path().join("config.yml"))
            .unwrap_or_else(|e| panic!("test config: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let exporter = tickr::Exporter::start(config).await;
        let handle = exporter.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(exporter.run(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            handle,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Replaces the config file (a reload still has to be asked for).
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(self.config_path(), yaml).expect("write config");
    }

    pub async fn get(&self, path: &str) -> Reply {
        http(self.addr, "GET", path, &[]).await
    }

    pub async fn post(&self, path: &str) -> Reply {
        http(self.addr, "POST", path, &[]).await
    }

    /// Scrapes `/metrics` over HTTP as Prometheus does (asking for OpenMetrics) and parses it.
    pub async fn metrics(&self) -> Exposition {
        let reply = http(
            self.addr,
            "GET",
            "/metrics",
            &[("accept", PROMETHEUS_ACCEPT)],
        )
        .await;
        assert_eq!(reply.status, 200);
        Exposition::parse(&reply.text())
    }

    /// Polls `/metrics` until `done` holds, or panics after `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&Exposition) -> bool,
    ) -> Exposition {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let m = self.metrics().await;
            if done(&m) {
                return m;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out after {limit:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts down the way SIGTERM does, and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("tickr stops within 10s")
                .expect("tickr task");
        }
    }
}

impl Drop for Tickr {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A validated target from the YAML of one `targets:` entry (indented as a list item's body).
pub fn target(yaml: &str) -> Arc<tickr::config::Target> {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("targets:\n  - {}\n", yaml.trim().replace('\n', "\n    "));
    let config = tickr::config::parse(&dir.path().join("config.yml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.targets[0].clone()
}
