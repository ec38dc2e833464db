//! Turns probe outcomes into Prometheus samples, and encodes the exposition.
//!
//! Each target gets a [`TargetMetrics`] holding handles cloned out of the families once, so
//! recording an outcome is a handful of atomic operations. Counters a user alerts on (runs by
//! result, failures by reason, the gateway 5xx codes, body mismatches) are created at zero when
//! the target starts: a series that appears already at 1 hides its first increment from
//! `increase()`, and the first 502 is the one that matters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Target;
use crate::probe::{Outcome, Phase, Reason};

/// Buckets of `tickr_probe_duration_seconds`: Prometheus' default set, which users know.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of `tickr_scheduler_lag_seconds`.
pub const LAG_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];
/// Status codes whose counters exist from the start, at zero (see the module docs).
pub const PRECREATED_CODES: [u16; 4] = [500, 502, 503, 504];

/// `target` first, then the target's own labels. Shared by every series of one target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetLabels(Arc<[(String, String)]>);

impl TargetLabels {
    pub fn new(target: &Target) -> Self {
        Self::with_address(target, None)
    }

    /// With per-address probing, each address's series also carry `address`.
    pub fn with_address(target: &Target, address: Option<IpAddr>) -> Self {
        let mut labels = vec![("target".to_owned(), target.name.clone())];
        labels.extend(target.labels.iter().cloned());
        if let Some(ip) = address {
            labels.push(("address".to_owned(), ip.to_string()));
        }
        Self(labels.into())
    }
}

impl EncodeLabelSet for TargetLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.as_ref().encode(encoder)
    }
}

type Extra<const N: usize> = [(&'static str, Cow<'static, str>); N];
type With<const N: usize> = (TargetLabels, Extra<N>);
type FloatGauge = Gauge<f64, AtomicU64>;
/// The exemplar of a failure observation: the id of its event in the failure recorder.
type EventLabel = [(&'static str, String); 1];
type ExCounter = CounterWithExemplar<EventLabel>;
type ExHistogram = HistogramWithExemplars<EventLabel>;

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<ExHistogram> for Buckets {
    fn new_metric(&self) -> ExHistogram {
        ExHistogram::new(self.0.iter().copied())
    }
}

/// Every family tickr exposes, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    runs: Family<With<1>, ExCounter>,
    success: Family<TargetLabels, Gauge>,
    duration: Family<With<1>, ExHistogram, Buckets>,
    responses: Family<With<2>, ExCounter>,
    server_errors: Family<With<2>, ExCounter>,
    status_code: Family<TargetLabels, Gauge>,
    failures: Family<With<1>, ExCounter>,
    body_match: Family<With<1>, Gauge>,
    body_mismatches: Family<With<1>, Counter>,
    state_changes: Family<TargetLabels, Counter>,
    confirmations: Family<With<1>, Counter>,
    last_probe: Family<TargetLabels, FloatGauge>,
    interval: Family<TargetLabels, FloatGauge>,
    cert_not_after: Family<TargetLabels, Gauge>,
    target_info: Arc<TargetInfo>,
    pub reload_successful: Gauge,
    pub reload_timestamp: FloatGauge,
    pub scheduler_lag: Histogram,
    pub in_flight: Gauge,
    pub targets: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::default();
        let runs = Family::default();
        r.register(
            "tickr_probe_runs",
            "Finished probes, by result",
            runs.clone(),
        );
        let success = Family::default();
        r.register(
            "tickr_probe_success",
            "1 if the last probe succeeded, else 0",
            success.clone(),
        );
        let duration = Family::new_with_constructor(Buckets(&DURATION_BUCKETS));
        r.register_with_unit(
            "tickr_probe_duration",
            "Duration of each probe phase; a failed probe observes the phases it finished, and total",
            Unit::Seconds,
            duration.clone(),
        );
        let responses = Family::default();
        r.register(
            "tickr_http_responses",
            "Final HTTP responses received, by status code and class",
            responses.clone(),
        );
        let server_errors = Family::default();
        r.register(
            "tickr_http_server_errors",
            "Final 5xx responses, by status code and the layer that most likely generated them",
            server_errors.clone(),
        );
        let status_code = Family::default();
        r.register(
            "tickr_http_status_code",
            "Status code of the last probe's final response, 0 if none",
            status_code.clone(),
        );
        let failures = Family::default();
        r.register(
            "tickr_probe_failures",
            "Failed probes, by reason",
            failures.clone(),
        );
        let body_match = Family::default();
        r.register(
            "tickr_body_match",
            "1 if the last evaluated body satisfied the matcher, else 0",
            body_match.clone(),
        );
        let body_mismatches = Family::default();
        r.register(
            "tickr_body_mismatches",
            "Probes with an expected status whose body failed the matcher",
            body_mismatches.clone(),
        );
        let state_changes = Family::default();
        r.register(
            "tickr_probe_state_changes",
            "Transitions between success and failure",
            state_changes.clone(),
        );
        let confirmations = Family::default();
        r.register(
            "tickr_confirmations",
            "Follow-up probes after a failure, by result; not counted in tickr_probe_runs_total",
            confirmations.clone(),
        );
        let last_probe = Family::default();
        r.register_with_unit(
            "tickr_last_probe_timestamp",
            "When the last probe finished (before the first: when the target was loaded)",
            Unit::Seconds,
            last_probe.clone(),
        );
        let interval = Family::default();
        r.register_with_unit(
            "tickr_probe_interval",
            "Configured time between the starts of two probes",
            Unit::Seconds,
            interval.clone(),
        );
        let cert_not_after = Family::default();
        r.register_with_unit(
            "tickr_tls_cert_not_after_timestamp",
            "Earliest notAfter in the last certificate chain served, also when verification failed",
            Unit::Seconds,
            cert_not_after.clone(),
        );
        let target_info = Arc::new(TargetInfo::default());
        r.register_collector(Box::new(target_info.clone()));
        r.register(
            "tickr_build",
            "Build information",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("tls", "rustls"),
            ]),
        );
        let reload_successful = Gauge::default();
        r.register(
            "tickr_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded",
            reload_successful.clone(),
        );
        let reload_timestamp = FloatGauge::default();
        r.register_with_unit(
            "tickr_config_last_reload_success_timestamp",
            "When the configuration was last loaded successfully",
            Unit::Seconds,
            reload_timestamp.clone(),
        );
        let scheduler_lag = Histogram::new(LAG_BUCKETS.iter().copied());
        r.register_with_unit(
            "tickr_scheduler_lag",
            "How late each probe started versus its slot",
            Unit::Seconds,
            scheduler_lag.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "tickr_probes_in_flight",
            "Probes running now",
            in_flight.clone(),
        );
        let targets = Gauge::default();
        r.register("tickr_targets", "Configured targets", targets.clone());
        Self {
            registry: r,
            runs,
            success,
            duration,
            responses,
            server_errors,
            status_code,
            failures,
            body_match,
            body_mismatches,
            state_changes,
            confirmations,
            last_probe,
            interval,
            cert_not_after,
            target_info,
            reload_successful,
            reload_timestamp,
            scheduler_lag,
            in_flight,
            targets,
        }
    }

    /// The whole exposition in OpenMetrics text, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Creates the series of `target` (at zero) and returns the handles to record its outcomes.
    pub fn register_target(self: &Arc<Self>, target: &Target) -> TargetMetrics {
        let tm = self.register_series(target, TargetLabels::new(target));
        self.interval
            .get_or_create(&tm.labels)
            .set(target.interval.as_secs_f64());
        self.target_info.insert(target, tm.labels.clone());
        tm
    }

    /// The series of one address of a per-address target; they belong to `parent`, which
    /// removes them with its own and sums them in its summary.
    pub fn register_address(
        self: &Arc<Self>,
        parent: &TargetMetrics,
        target: &Target,
        ip: IpAddr,
    ) -> Arc<TargetMetrics> {
        let tm =
            Arc::new(self.register_series(target, TargetLabels::with_address(target, Some(ip))));
        parent
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip, tm.clone());
        tm
    }

    /// Forgets an address that no longer resolves, with its series.
    pub fn remove_address(&self, parent: &TargetMetrics, ip: IpAddr) {
        if let Some(tm) = parent
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip)
        {
            tm.remove();
        }
    }

    fn register_series(self: &Arc<Self>, target: &Target, labels: TargetLabels) -> TargetMetrics {
        let with = |k: &'static str, v: Cow<'static, str>| (labels.clone(), [(k, v)]);
        let runs_success = self
            .runs
            .get_or_create_owned(&with("result", "success".into()));
        let runs_failure = self
            .runs
            .get_or_create_owned(&with("result", "failure".into()));
        let phases = Phase::ALL.map(|p| {
            self.duration
                .get_or_create_owned(&with("phase", p.as_str().into()))
        });
        let failures = Reason::ALL.map(|r| {
            self.failures
                .get_or_create_owned(&with("reason", r.as_str().into()))
        });
        let matchers = target
            .matchers
            .iter()
            .map(|m| {
                let l = with("matcher", m.label.clone().into());
                (
                    self.body_match.get_or_create_owned(&l),
                    self.body_mismatches.get_or_create_owned(&l),
                )
            })
            .collect();
        let tm = TargetMetrics {
            labels: labels.clone(),
            metrics: self.clone(),
            matcher_labels: target.matchers.iter().map(|m| m.label.clone()).collect(),
            runs_success,
            runs_failure,
            success: self.success.get_or_create_owned(&labels),
            status_code: self.status_code.get_or_create_owned(&labels),
            phases,
            failures,
            matchers,
            state_changes: self.state_changes.get_or_create_owned(&labels),
            // Only targets that confirm failures have these series.
            confirmations: (target.confirm > 0).then(|| {
                ["success", "failure"].map(|r| {
                    self.confirmations
                        .get_or_create_owned(&with("result", r.into()))
                })
            }),
            last_probe: self.last_probe.get_or_create_owned(&labels),
            codes: Mutex::new(HashMap::new()),
            server_errors: Mutex::new(HashMap::new()),
            last_result: AtomicU8::new(UNKNOWN),
            children: Mutex::new(BTreeMap::new()),
        };
        for code in PRECREATED_CODES {
            tm.response_counter(code);
        }
        // Until the first probe, "last probe" is when the target was loaded: a target whose
        // probes never start then ages like one whose probes stopped, and alerts can see both.
        tm.last_probe.set(unix_now());
        tm
    }
}

const UNKNOWN: u8 = 0;
const SUCCEEDED: u8 = 1;
const FAILED: u8 = 2;

/// The handles of one target's series.
pub struct TargetMetrics {
    labels: TargetLabels,
    metrics: Arc<Metrics>,
    matcher_labels: Vec<String>,
    runs_success: ExCounter,
    runs_failure: ExCounter,
    success: Gauge,
    status_code: Gauge,
    phases: [ExHistogram; 6],
    failures: [ExCounter; 10],
    matchers: Vec<(Gauge, Counter)>,
    state_changes: Counter,
    confirmations: Option<[Counter; 2]>,
    last_probe: FloatGauge,
    codes: Mutex<HashMap<u16, ExCounter>>,
    server_errors: Mutex<HashMap<(u16, String), ExCounter>>,
    last_result: AtomicU8,
    /// Per-address series of a target probed at every address.
    children: Mutex<BTreeMap<IpAddr, Arc<TargetMetrics>>>,
}

impl std::fmt::Debug for TargetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("TargetMetrics")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// What the landing page shows of a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub last_success: Option<bool>,
    pub last_status: i64,
    pub last_probe_timestamp: f64,
    pub successes: u64,
    pub failures: u64,
}

impl TargetMetrics {
    fn response_counter(&self, code: u16) -> ExCounter {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes
            .entry(code)
            .or_insert_with(|| {
                let class = format!("{}xx", code / 100);
                let labels = (
                    self.labels.clone(),
                    [("code", code.to_string().into()), ("class", class.into())],
                );
                self.metrics.responses.get_or_create_owned(&labels)
            })
            .clone()
    }

    fn server_error_counter(&self, code: u16, layer: &str) -> ExCounter {
        let mut all = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
        all.entry((code, layer.to_owned()))
            .or_insert_with(|| {
                let labels = (
                    self.labels.clone(),
                    [
                        ("code", code.to_string().into()),
                        ("layer", layer.to_owned().into()),
                    ],
                );
                self.metrics.server_errors.get_or_create_owned(&labels)
            })
            .clone()
    }

    /// Records one finished probe. `event` is the failure recorder's id for it, attached as an
    /// exemplar to the failure observations; `layer` is the attributed layer of a 5xx.
    pub fn record(&self, outcome: &Outcome, event: Option<u64>, layer: Option<&str>) {
        let ok = outcome.success();
        let exemplar = || {
            if ok {
                None
            } else {
                event.map(|id| [("event_id", id.to_string())])
            }
        };
        if ok {
            &self.runs_success
        } else {
            &self.runs_failure
        }
        .inc_by(1, exemplar(), None);
        self.success.set(i64::from(ok));
        for (phase, histogram) in Phase::ALL.iter().zip(&self.phases) {
            if let Some(d) = outcome.phases.get(*phase) {
                histogram.observe(d.as_secs_f64(), exemplar(), None);
            }
        }
        if let Some(code) = outcome.status {
            self.response_counter(code).inc_by(1, exemplar(), None);
            if code >= 500 {
                let id = event.map(|id| [("event_id", id.to_string())]);
                self.server_error_counter(code, layer.unwrap_or(crate::layer::UNKNOWN))
                    .inc_by(1, id, None);
            }
        }
        self.status_code.set(outcome.status.map_or(0, i64::from));
        if let Some(failure) = &outcome.failure {
            let i = Reason::ALL
                .iter()
                .position(|r| *r == failure.reason)
                .expect("every reason is listed");
            self.failures[i].inc_by(1, exemplar(), None);
        }
        for (i, (gauge, mismatches)) in self.matchers.iter().enumerate() {
            match outcome.matches.get(i) {
                Some(true) => {
                    gauge.set(1);
                }
                Some(false) => {
                    gauge.set(0);
                    mismatches.inc();
                }
                None => {
                    gauge.set(0);
                }
            }
        }
        let now = if ok { SUCCEEDED } else { FAILED };
        let before = self.last_result.swap(now, Ordering::Relaxed);
        if before != UNKNOWN && before != now {
            self.state_changes.inc();
        }
        self.last_probe.set(unix_now());
        if let Some(not_after) = outcome.cert_not_after {
            self.metrics
                .cert_not_after
                .get_or_create(&self.labels)
                .set(not_after);
        }
    }

    /// Counts one follow-up probe after a failure.
    pub fn record_confirmation(&self, success: bool) {
        if let Some([ok, failed]) = &self.confirmations {
            if success { ok } else { failed }.inc();
        }
    }

    /// Marks a round of per-address probes as done, for the stall alert.
    pub fn touch(&self) {
        self.last_probe.set(unix_now());
    }

    /// The target at a glance; for a per-address target, its addresses together: failing when
    /// any address failed last, counts summed, status of the most recent probe.
    pub fn summary(&self) -> Summary {
        let own = Summary {
            last_success: match self.last_result.load(Ordering::Relaxed) {
                SUCCEEDED => Some(true),
                FAILED => Some(false),
                _ => None,
            },
            last_status: self.status_code.get(),
            last_probe_timestamp: self.last_probe.get(),
            successes: self.runs_success.get().0,
            failures: self.runs_failure.get().0,
        };
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut all) = children
            .values()
            .map(|c| c.summary())
            .reduce(|a, b| Summary {
                last_success: match (a.last_success, b.last_success) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    _ => None,
                },
                last_status: if b.last_probe_timestamp >= a.last_probe_timestamp {
                    b.last_status
                } else {
                    a.last_status
                },
                last_probe_timestamp: a.last_probe_timestamp.max(b.last_probe_timestamp),
                successes: a.successes + b.successes,
                failures: a.failures + b.failures,
            })
        else {
            return own;
        };
        // The target's own series count the rounds whose lookup failed.
        all.successes += own.successes;
        all.failures += own.failures;
        if own.last_success == Some(false) {
            all.last_success = Some(false);
            all.last_status = 0;
        }
        all
    }

    /// A per-address round resolved: the last lookup failure, if any, is over.
    pub fn resolved(&self) {
        self.last_result.store(UNKNOWN, Ordering::Relaxed);
    }

    /// Removes every series of this target (and of its addresses) from the exposition.
    pub fn remove(&self) {
        for (_, child) in
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()))
        {
            child.remove();
        }
        let m = &self.metrics;
        let with = |k: &'static str, v: Cow<'static, str>| (self.labels.clone(), [(k, v)]);
        m.runs.remove(&with("result", "success".into()));
        m.runs.remove(&with("result", "failure".into()));
        for p in Phase::ALL {
            m.duration.remove(&with("phase", p.as_str().into()));
        }
        for r in Reason::ALL {
            m.failures.remove(&with("reason", r.as_str().into()));
        }
        for label in &self.matcher_labels {
            m.body_match.remove(&with("matcher", label.clone().into()));
            m.body_mismatches
                .remove(&with("matcher", label.clone().into()));
        }
        for code in self.codes.lock().unwrap_or_else(|e| e.into_inner()).keys() {
            let class = format!("{}xx", code / 100);
            m.responses.remove(&(
                self.labels.clone(),
                [("code", code.to_string().into()), ("class", class.into())],
            ));
        }
        for (code, layer) in self
            .server_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
        {
            m.server_errors.remove(&(
                self.labels.clone(),
                [
                    ("code", code.to_string().into()),
                    ("layer", layer.clone().into()),
                ],
            ));
        }
        for family in [&m.success, &m.status_code, &m.cert_not_after] {
            family.remove(&self.labels);
        }
        m.state_changes.remove(&self.labels);
        for r in ["success", "failure"] {
            m.confirmations.remove(&with("result", r.into()));
        }
        m.last_probe.remove(&self.labels);
        m.interval.remove(&self.labels);
        m.target_info.remove(&self.labels);
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// `tickr_target_info`: one info series per target with its static facts. A collector rather
/// than a family because an info metric carries its labels from construction.
#[derive(Debug, Default)]
struct TargetInfo(RwLock<BTreeMap<TargetKey, Vec<(&'static str, String)>>>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TargetKey(Vec<(String, String)>);

impl TargetInfo {
    fn insert(&self, target: &Target, labels: TargetLabels) {
        let facts = vec![
            ("url", target.url.to_string()),
            ("method", target.method.to_string()),
            ("interval", format!("{:?}", target.interval)),
            ("timeout", format!("{:?}", target.timeout)),
        ];
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(TargetKey(labels.0.to_vec()), facts);
    }

    fn remove(&self, labels: &TargetLabels) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&TargetKey(labels.0.to_vec()));
    }
}

impl Collector for TargetInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let targets = self.0.read().unwrap_or_else(|e| e.into_inner());
        if targets.is_empty() {
            return Ok(());
        }
        let mut metric = encoder.encode_descriptor(
            "tickr_target",
            "Static facts about each configured target.",
            None,
            MetricType::Info,
        )?;
        for (key, facts) in targets.iter() {
            let mut labels: Vec<(&str, &str)> = key
                .0
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            labels.extend(facts.iter().map(|(k, v)| (*k, v.as_str())));
            metric.encode_info(&labels)?;
        }
        Ok(())
    }
}
