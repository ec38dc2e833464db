//! `/probe`'s exposition of one target: its `tickr_*` series, as `/metrics` has them, and the
//! gauges blackbox_exporter users' dashboards and alerts read (`probe_success`,
//! `probe_http_status_code`, …), computed from the target's last probe.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::probe::{Outcome, Phase, Reason};

use super::target::{TargetMetrics, NO_CERT};

type FloatGauge = Gauge<f64, AtomicU64>;

/// What the blackbox gauges need of a target's last probe, in 64 bytes: every target keeps
/// one. Durations are whole nanoseconds, from which `Duration` gives back the very seconds it
/// gave when the probe ended, so the gauges print the same digits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastProbe {
    total: u64,
    /// resolve, connect, tls, processing, transfer; 0 for a phase the probe did not reach, as
    /// the gauge shows it.
    phases: [u64; 5],
    /// [`NO_CERT`] when the probe saw no certificate.
    cert_not_after: i64,
    status: u16,
    /// `None` without a response.
    version: Option<http::Version>,
    redirects: u8,
    success: bool,
    ssl: bool,
    regex_failed: bool,
}

/// blackbox_exporter's names for the phases it times, in its order.
const PHASES: [(Phase, &str); 5] = [
    (Phase::Resolve, "resolve"),
    (Phase::Connect, "connect"),
    (Phase::Tls, "tls"),
    (Phase::Processing, "processing"),
    (Phase::Transfer, "transfer"),
];

impl LastProbe {
    pub(super) fn of(outcome: &Outcome) -> Self {
        Self {
            success: outcome.success(),
            status: outcome.status.unwrap_or(0),
            total: nanos(outcome.phases.total),
            phases: PHASES.map(|(p, _)| outcome.phases.get(p).map_or(0, nanos)),
            version: outcome.http_version,
            ssl: outcome.tls_version.is_some() && outcome.status.is_some(),
            redirects: outcome.redirects,
            regex_failed: outcome
                .failure
                .as_ref()
                .is_some_and(|f| matches!(f.reason, Reason::BodyMismatch | Reason::HeaderMismatch)),
            cert_not_after: outcome.cert_not_after.unwrap_or(NO_CERT),
        }
    }

    pub(super) fn success(&self) -> bool {
        self.success
    }

    /// The final response's status code, 0 without one.
    pub(super) fn status(&self) -> u16 {
        self.status
    }

    /// 1.0, 1.1, 2 or 3; 0 without a response (or with another version).
    fn version(&self) -> f64 {
        match self.version {
            Some(http::Version::HTTP_10) => 1.0,
            Some(http::Version::HTTP_11) => 1.1,
            Some(http::Version::HTTP_2) => 2.0,
            Some(http::Version::HTTP_3) => 3.0,
            _ => 0.0,
        }
    }
}

/// `d` in nanoseconds (past 584 years, which no probe lasts, the most a `u64` holds).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The seconds of a duration of `nanos`, the very `f64` that `Duration::as_secs_f64` gave.
fn seconds(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}

/// The exposition of `tm` (and its addresses' series) and, once it has probed, the blackbox
/// gauges of its last probe. `matchers`: whether the target has body matchers, for
/// `probe_failed_due_to_regex`.
pub fn encode(tm: &Arc<TargetMetrics>, matchers: bool) -> String {
    let mut all = vec![tm.clone()];
    all.extend(tm.children_now());
    let mut r = Registry::default();
    if let Some(last) = tm.last_probe() {
        register_gauges(&mut r, &last, matchers);
    }
    let out = super::stream(
        &r,
        &all,
        super::Collect(String::with_capacity(8 * 1024)),
        super::Format::OpenMetrics,
    );
    out.expect("collecting into a String cannot fail").0
}

fn register_gauges(r: &mut Registry, last: &LastProbe, matchers: bool) {
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    let float = |v: f64| {
        let g = FloatGauge::default();
        g.set(v);
        g
    };
    r.register(
        "probe_success",
        "Whether the probe was a success",
        gauge(i64::from(last.success)),
    );
    r.register_with_unit(
        "probe_duration",
        "How long the probe took to complete",
        Unit::Seconds,
        float(seconds(last.total)),
    );
    let phases = Family::<[(&'static str, &'static str); 1], FloatGauge>::default();
    for ((_, name), value) in PHASES.iter().zip(last.phases) {
        // As blackbox_exporter: a phase the probe never reached is 0.
        phases.get_or_create(&[("phase", name)]).set(seconds(value));
    }
    r.register_with_unit(
        "probe_http_duration",
        "Duration of the HTTP request by phase, summed over all redirects",
        Unit::Seconds,
        phases,
    );
    r.register(
        "probe_http_status_code",
        "Response HTTP status code",
        gauge(i64::from(last.status)),
    );
    r.register(
        "probe_http_version",
        "Returns the version of HTTP of the probe response",
        float(last.version()),
    );
    r.register(
        "probe_http_ssl",
        "Indicates if SSL was used for the final redirect",
        gauge(i64::from(last.ssl)),
    );
    r.register(
        "probe_http_redirects",
        "The number of redirects",
        gauge(i64::from(last.redirects)),
    );
    if last.cert_not_after != NO_CERT {
        r.register(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            gauge(last.cert_not_after),
        );
    }
    if matchers {
        r.register(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            gauge(i64::from(last.regex_failed)),
        );
    }
}
