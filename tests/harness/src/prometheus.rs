//! A real Prometheus (from its Debian package) scraping the given jobs and evaluating the given
//! rule files, and the parsers of its v1 API that Alertmanager's tests share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::process::{free_port, get, require, Process, POLL, READY_LIMIT};

/// Parses the `{"status":"success","data":...}` envelope of the Prometheus and Alertmanager v1
/// APIs and returns `data`.
pub(crate) fn api_data(what: &str, status: u16, body: &str) -> Value {
    let json: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: HTTP {status}, not JSON ({e}): {body}"));
    if status != 200 || json["status"] != "success" {
        panic!("{what}: HTTP {status}: {body}");
    }
    json["data"].clone()
}

/// A sample value as the Prometheus API writes it: a string, because of `NaN` and `±Inf`.
pub(crate) fn api_value(v: &Value) -> f64 {
    match v
        .as_str()
        .unwrap_or_else(|| panic!("sample value is not a string: {v}"))
    {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s
            .parse()
            .unwrap_or_else(|e| panic!("sample value {s:?}: {e}")),
    }
}

pub(crate) fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Formats a duration the way Prometheus's config reads it (`1500ms`).
fn prom_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// One scrape target as `/api/v1/targets` reports it.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub job: String,
    pub instance: String,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: String,
    pub last_error: String,
}

/// One alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A real Prometheus scraping the given jobs and evaluating the given rule files.
pub struct Prometheus {
    pub addr: SocketAddr,
    process: Process,
}

impl Prometheus {
    /// Starts Prometheus with one static job per `(job, addr)`, scraping `/metrics` every
    /// `scrape_interval` with the default scrape settings (so it negotiates OpenMetrics and gzip
    /// like any production Prometheus), and waits until `/-/ready`.
    ///
    /// `rule_files` should be absolute (Prometheus resolves relative ones against its config
    /// file, which lives in a temp dir). With `alertmanager`, firing alerts are sent there.
    pub async fn start(
        scrape: &[(&str, SocketAddr)],
        rule_files: &[PathBuf],
        scrape_interval: Duration,
        eval_interval: Duration,
        alertmanager: Option<SocketAddr>,
    ) -> Self {
        let interval = prom_duration(scrape_interval);
        // The default scrape_timeout (10s) must not exceed the interval, or the config is refused.
        let mut config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {}\n",
            prom_duration(eval_interval)
        );
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for f in rule_files {
                let f = std::fs::canonicalize(f)
                    .unwrap_or_else(|e| panic!("rule file {}: {e}", f.display()));
                let _ = writeln!(
                    config,
                    "  - {}",
                    serde_json::to_string(&f.to_string_lossy()).expect("json string")
                );
            }
        }
        if let Some(am) = alertmanager {
            let _ = writeln!(
                config,
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]"
            );
        }
        config.push_str("scrape_configs:\n");
        for (job, addr) in scrape {
            let _ = writeln!(
                config,
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]"
            );
        }
        Self::launch(config).await
    }

    /// Starts Prometheus with `scrape_configs` as given (YAML list items, indented by two
    /// spaces), scraping every `scrape_interval`, and waits until `/-/ready`.
    pub async fn start_with_jobs(scrape_configs: &str, scrape_interval: Duration) -> Self {
        let interval = prom_duration(scrape_interval);
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
             scrape_configs:\n{scrape_configs}"
        );
        Self::launch(config).await
    }

    async fn launch(config: String) -> Self {
        let binary = require("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("prometheus.yml"), &config).expect("write prometheus.yml");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let args = [
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address={addr}"),
            // Lets a later test reload rules with POST /-/reload instead of restarting.
            "--web.enable-lifecycle".to_owned(),
            // Tests run for seconds; the default 1m would delay resending to Alertmanager.
            "--rules.alert.resend-delay=1s".to_owned(),
            "--log.level=info".to_owned(),
        ];
        let mut process = Process::spawn("prometheus", &binary, &args, dir);
        process.wait_http_ok(addr, "/-/ready", READY_LIMIT).await;
        Self { addr, process }
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// GETs an API path and returns its `data`, panicking (with the logs) on an API error.
    pub async fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = get(self.addr, path_and_query)
            .await
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}\n{}", self.logs()));
        api_data(&format!("prometheus {path_and_query}"), status, &body)
    }

    /// An instant query at "now": one `(labels, value)` per series of a vector result, or one
    /// with no labels for a scalar. A range-vector or string result is a test error.
    pub async fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let data = self.api(&format!("/api/v1/query?query={q}")).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .expect("vector result is an array")
                .iter()
                .map(|s| (string_map(&s["metric"]), api_value(&s["value"][1])))
                .collect(),
            Some("scalar") => vec![(BTreeMap::new(), api_value(&data["result"][1]))],
            other => panic!("query {promql:?}: unexpected result type {other:?}: {data}"),
        }
    }

    /// Polls `query(promql)` until `done` accepts the result, and returns it; panics with the
    /// last result and the logs after `limit`.
    pub async fn wait_for_query(
        &self,
        promql: &str,
        limit: Duration,
        done: impl Fn(&[(BTreeMap<String, String>, f64)]) -> bool,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        let deadline = Instant::now() + limit;
        loop {
            let result = self.query(promql).await;
            if done(&result) {
                return result;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting on {promql:?}; last result: {result:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The active scrape targets.
    pub async fn targets(&self) -> Vec<ScrapeTarget> {
        let data = self.api("/api/v1/targets?state=active").await;
        data["activeTargets"]
            .as_array()
            .expect("activeTargets is an array")
            .iter()
            .map(|t| ScrapeTarget {
                job: t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                instance: t["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                health: t["health"].as_str().unwrap_or_default().to_owned(),
                last_error: t["lastError"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Waits until every active target has been scraped successfully; panics with each target's
    /// last scrape error after `limit` (a target marked down shows *why* here, e.g. a wrong
    /// content type).
    pub async fn targets_up(&self, limit: Duration) -> Vec<ScrapeTarget> {
        let deadline = Instant::now() + limit;
        loop {
            let targets = self.targets().await;
            if !targets.is_empty() && targets.iter().all(|t| t.health == "up") {
                return targets;
            }
            if Instant::now() > deadline {
                panic!(
                    "targets not all up after {limit:?}: {targets:#?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Alerts that are pending or firing now.
    pub async fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts").await;
        data["alerts"]
            .as_array()
            .expect("alerts is an array")
            .iter()
            .map(|a| {
                let labels = string_map(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    state: a["state"].as_str().unwrap_or_default().to_owned(),
                    labels,
                    annotations: string_map(&a["annotations"]),
                }
            })
            .collect()
    }
}
