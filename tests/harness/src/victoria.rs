//! A real VictoriaMetrics single-node server (from the Debian package): a second scraper of
//! tickr that does not ask for OpenMetrics, with its own query API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::process::{free_port, get, require, Process, READY_LIMIT};
use crate::prometheus::{api_data, api_value, string_map};

/// VictoriaMetrics scraping the given `(job, addr)` pairs every `interval`.
pub struct Victoria {
    pub addr: SocketAddr,
    process: Process,
}

impl Victoria {
    /// Starts `victoria-metrics` with a `-promscrape.config` of one static job per pair, and
    /// waits until `/health` answers. Queries see the newest samples at once
    /// (`-search.latencyOffset=0s`; the default hides the last 30 s).
    pub async fn start(scrape: &[(&str, SocketAddr)], interval: Duration) -> Self {
        let binary = require("victoria-metrics");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = String::from("scrape_configs:\n");
        for (job, target) in scrape {
            config.push_str(&format!(
                "  - job_name: {job}\n    scrape_interval: {}ms\n    static_configs:\n      - targets: [\"{target}\"]\n",
                interval.as_millis()
            ));
        }
        let file = dir.path().join("scrape.yml");
        std::fs::write(&file, config).expect("write scrape config");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let args = [
            format!("-storageDataPath={}", dir.path().join("data").display()),
            format!("-httpListenAddr={addr}"),
            format!("-promscrape.config={}", file.display()),
            "-search.latencyOffset=0s".to_owned(),
            "-search.disableCache".to_owned(),
            "-retentionPeriod=1d".to_owned(),
        ];
        let mut process = Process::spawn("victoria-metrics", &binary, &args, dir);
        process.wait_http_ok(addr, "/health", READY_LIMIT).await;
        Self { addr, process }
    }

    /// An instant query through its Prometheus-compatible API.
    pub async fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (status, body) = get(self.addr, &format!("/api/v1/query?query={q}"))
            .await
            .unwrap_or_else(|e| panic!("victoria-metrics query: {e}"));
        let data = api_data("victoria-metrics query", status, &body);
        data["result"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|s| (string_map(&s["metric"]), api_value(&s["value"][1])))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}
