//! A real Alertmanager (from the Debian package), clustering off, storing in its temp dir.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use crate::process::{free_port, get, require, Process, READY_LIMIT};
use crate::prometheus::{string_map, Alert};

/// A real Alertmanager, clustering off, storing in its temp dir.
pub struct Alertmanager {
    pub addr: SocketAddr,
    process: Process,
}

impl Alertmanager {
    /// Writes `config_yaml` as `alertmanager.yml`, starts Alertmanager and waits until `/-/ready`.
    pub async fn start(config_yaml: &str) -> Self {
        let binary = require("prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("alertmanager.yml"), config_yaml)
            .expect("write alertmanager.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let args = [
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            // Empty disables clustering; otherwise it binds 0.0.0.0:9094 and tries to gossip,
            // which collides between parallel tests and leaves 127.0.0.1.
            "--cluster.listen-address=".to_owned(),
            "--log.level=info".to_owned(),
        ];
        let mut process = Process::spawn("alertmanager", &binary, &args, dir);
        process.wait_http_ok(addr, "/-/ready", READY_LIMIT).await;
        Self { addr, process }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// The alerts Alertmanager holds now (API v2: a bare JSON array, no envelope).
    pub async fn alerts(&self) -> Vec<Alert> {
        let (status, body) = get(self.addr, "/api/v2/alerts")
            .await
            .unwrap_or_else(|e| panic!("alertmanager alerts: {e}\n{}", self.logs()));
        assert_eq!(status, 200, "alertmanager /api/v2/alerts: {body}");
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("alertmanager alerts: {e}: {body}"));
        json.as_array()
            .expect("alerts is an array")
            .iter()
            .map(|a| {
                let labels = string_map(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    // `active`, `suppressed` (silenced or inhibited) or `unprocessed`.
                    state: a["status"]["state"].as_str().unwrap_or_default().to_owned(),
                    labels,
                    annotations: string_map(&a["annotations"]),
                }
            })
            .collect()
    }
}
