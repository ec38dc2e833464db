//! Every per-target family, one entry each: name, help, unit, type, its own labels, which
//! targets have it and how its series are read from a [`TargetMetrics`], side by side. Adding
//! or renaming a series is an edit here (plus the field it reads); the collector walks [`FAMILIES`].

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::metrics::MetricType::{self, Counter, Gauge, Histogram, Info};
use prometheus_client::registry::Unit;

use crate::probe::Reason;

use super::encode::{self, GaugeValue};
use super::histogram::{Kept, Read};
use super::target::{ExemplarLabels, TargetMetrics, NO_CERT, NO_CHAIN};

/// One family of per-target series.
pub(super) struct Family {
    /// Without the suffixes prometheus-client appends (`_total`, the unit, `_info`).
    pub(super) name: &'static str,
    pub(super) help: &'static str,
    pub(super) unit: Option<Unit>,
    pub(super) kind: MetricType,
    /// The family's own labels, after the target's; `read` gives their values in this order.
    pub(super) labels: &'static [&'static str],
    /// Whether a target has series in this family; a family no target has is left out whole.
    pub(super) has: fn(&TargetMetrics) -> bool,
    /// Writes one target's series of this family.
    pub(super) read: fn(&TargetMetrics, &mut Series) -> fmt::Result,
}

const SECONDS: Option<Unit> = Some(Unit::Seconds);

fn always(_: &TargetMetrics) -> bool {
    true
}

/// In exposition order.
pub(super) static FAMILIES: [Family; 20] = [
    Family {
        name: "tickr_probe_runs",
        help: "Finished probes, by result.",
        unit: None,
        kind: Counter,
        labels: &["result"],
        has: always,
        read: |tm, s| {
            s.marked(&["failure"], tm.run(1))?;
            s.marked(&["success"], tm.run(0))
        },
    },
    Family {
        name: "tickr_probe_success",
        help: "1 if the last probe succeeded, else 0.",
        unit: None,
        kind: Gauge,
        labels: &[],
        has: always,
        read: |tm, s| s.gauge(&[], tm.state().success()),
    },
    Family {
        name: "tickr_probe_duration",
        help: "Duration of each probe phase; a failed probe observes the phases it finished, and total.",
        unit: SECONDS,
        kind: Histogram,
        labels: &["phase"],
        has: |tm| !tm.histograms.phases().is_empty(),
        read: |tm, s| {
            let state = tm.state();
            for (i, phase) in tm.histograms.phases().iter().enumerate() {
                s.histogram(&[phase.as_str()], tm.histograms.read(i), state.kept())?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_http_responses",
        help: "Final HTTP responses received, by status code and class (cut: the body broke off).",
        unit: None,
        kind: Counter,
        labels: &["code", "class"],
        has: always,
        read: |tm, s| {
            let state = tm.state();
            let mut text = itoa::Buffer::new();
            for (code, cut, count, exemplar) in state.codes() {
                let class = if cut { "cut" } else { class(code) };
                s.marked(&[text.format(code), class], (count, exemplar))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_http_server_errors",
        help: "Final 5xx responses, by status code and the layer that most likely generated them.",
        unit: None,
        kind: Counter,
        labels: &["code", "layer"],
        has: |tm| !tm.state().server_errors().is_empty(),
        read: |tm, s| {
            let state = tm.state();
            let mut text = itoa::Buffer::new();
            for e in state.server_errors() {
                s.marked(&[text.format(e.code), &e.layer], (e.count, e.exemplar))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_http_status_code",
        help: "Status code of the last probe's final response, 0 if none.",
        unit: None,
        kind: Gauge,
        labels: &[],
        has: always,
        read: |tm, s| s.gauge(&[], tm.state().status_code()),
    },
    Family {
        name: "tickr_probe_failures",
        help: "Failed probes, by reason.",
        unit: None,
        kind: Counter,
        labels: &["reason"],
        has: always,
        read: |tm, s| {
            let state = tm.state();
            for (i, reason) in Reason::ALL.iter().enumerate() {
                if *reason == Reason::Proxy && !tm.proxied {
                    continue;
                }
                s.marked(&[reason.as_str()], state.failure(i))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_body_match",
        help: "1 if the last evaluated body satisfied the matcher, else 0.",
        unit: None,
        kind: Gauge,
        labels: &["matcher"],
        has: |tm| !tm.body_checks().is_empty(),
        read: |tm, s| {
            for c in tm.body_checks() {
                s.gauge(&[&c.label], i64::from(c.passed.load(Relaxed)))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_body_mismatches",
        help: "Probes with an expected status whose body failed the matcher.",
        unit: None,
        kind: Counter,
        labels: &["matcher"],
        has: |tm| !tm.body_checks().is_empty(),
        read: |tm, s| {
            for c in tm.body_checks() {
                s.counter(&[&c.label], c.mismatches.load(Relaxed))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_header_match",
        help: "1 if the last evaluated response's headers satisfied the matcher, else 0.",
        unit: None,
        kind: Gauge,
        labels: &["matcher"],
        has: |tm| !tm.header_checks().is_empty(),
        read: |tm, s| {
            for c in tm.header_checks() {
                s.gauge(&[&c.label], i64::from(c.passed.load(Relaxed)))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_header_mismatches",
        help: "Probes with an expected status whose headers failed the matcher.",
        unit: None,
        kind: Counter,
        labels: &["matcher"],
        has: |tm| !tm.header_checks().is_empty(),
        read: |tm, s| {
            for c in tm.header_checks() {
                s.counter(&[&c.label], c.mismatches.load(Relaxed))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_probe_state_changes",
        help: "Transitions between success and failure.",
        unit: None,
        kind: Counter,
        labels: &[],
        has: always,
        read: |tm, s| s.counter(&[], tm.state_changes.load(Relaxed)),
    },
    Family {
        name: "tickr_confirmations",
        help: "Follow-up probes after a failure, by result; not counted in tickr_probe_runs_total.",
        unit: None,
        kind: Counter,
        labels: &["result"],
        has: |tm| tm.confirmations.is_some(),
        read: |tm, s| {
            for (result, count) in ["success", "failure"]
                .iter()
                .zip(tm.confirmations.iter().flat_map(|c| c.iter()))
            {
                s.counter(&[*result], count.load(Relaxed))?;
            }
            Ok(())
        },
    },
    Family {
        name: "tickr_last_probe_timestamp",
        help: "When the last probe finished (before the first: when the target was loaded).",
        unit: SECONDS,
        kind: Gauge,
        labels: &[],
        has: always,
        read: |tm, s| s.gauge(&[], f64::from_bits(tm.last_probe.load(Relaxed))),
    },
    Family {
        name: "tickr_probe_interval",
        help: "Configured time between the starts of two probes.",
        unit: SECONDS,
        kind: Gauge,
        labels: &[],
        has: |tm| tm.own.is_some(),
        read: |tm, s| match &tm.own {
            Some(own) => s.gauge(&[], own.interval),
            None => Ok(()),
        },
    },
    Family {
        name: "tickr_tls_cert_not_after_timestamp",
        help: "Earliest notAfter in the last certificate chain served, also when verification failed.",
        unit: SECONDS,
        kind: Gauge,
        labels: &[],
        has: |tm| tm.state().tls().is_some_and(|t| t.not_after != NO_CERT),
        read: |tm, s| match tm.state().tls() {
            Some(t) => s.gauge(&[], t.not_after),
            None => Ok(()),
        },
    },
    Family {
        name: "tickr_tls_chain_verified",
        help: "1 if the last certificate chain served verified against the target's roots (also under insecure_skip_verify), else 0.",
        unit: None,
        kind: Gauge,
        labels: &[],
        has: |tm| tm.state().tls().is_some_and(|t| t.verified != NO_CHAIN),
        read: |tm, s| match tm.state().tls() {
            Some(t) => s.gauge(&[], t.verified),
            None => Ok(()),
        },
    },
    Family {
        name: "tickr_tls_cert",
        help: "The leaf certificate last served, also when verification failed.",
        unit: None,
        kind: Info,
        labels: &["subject", "issuer", "serial", "fingerprint_sha256"],
        has: |tm| tm.state().tls().is_some_and(|t| t.cert.is_some()),
        read: |tm, s| {
            let state = tm.state();
            match state.tls().and_then(|t| t.cert.as_ref()) {
                Some(c) => s.info(&[
                    &c.facts.subject,
                    &c.facts.issuer,
                    &c.facts.serial,
                    &c.facts.fingerprint_sha256,
                ]),
                None => Ok(()),
            }
        },
    },
    Family {
        name: "tickr_tls",
        help: "TLS version and cipher suite of the last handshake that completed.",
        unit: None,
        kind: Info,
        labels: &["version", "cipher"],
        has: |tm| tm.state().tls().is_some_and(|t| t.info.is_some()),
        read: |tm, s| match tm.state().tls().and_then(|t| t.info) {
            Some(info) => s.info(&info),
            None => Ok(()),
        },
    },
    Family {
        name: "tickr_target",
        help: "Static facts about each configured target.",
        unit: None,
        kind: Info,
        // The values are computed once, when the target is registered (`Own::of`).
        labels: &["url", "method", "interval", "timeout"],
        has: |tm| tm.own.is_some(),
        read: |tm, s| match &tm.own {
            Some(own) => s.info(&[&own.url, &own.facts[0], &own.facts[1], &own.facts[2]]),
            None => Ok(()),
        },
    },
];

fn class(code: u16) -> &'static str {
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl Family {
    /// Appends `tm`'s series of this family to `out`, with their exemplars or without (the
    /// text format has none).
    pub(super) fn write(
        &self,
        tm: &TargetMetrics,
        out: &mut String,
        exemplars: bool,
    ) -> fmt::Result {
        (self.read)(
            tm,
            &mut Series {
                out,
                target: &tm.text,
                family: self,
                exemplars,
            },
        )
    }
}

/// Where a family's `read` writes one target's series: it names the values of the family's
/// labels, and each sample gets the target's labels, then the family's.
pub(super) struct Series<'a> {
    out: &'a mut String,
    target: &'a str,
    family: &'a Family,
    exemplars: bool,
}

impl Series<'_> {
    /// A sample line up to its value: name, suffix and labels (`le` first, as
    /// prometheus-client writes it). The values are checked against the family's entry: a
    /// mismatch is a bug in the table, so debug builds (and so every test) catch it.
    fn start(&mut self, kind: MetricType, suffix: Option<&str>, le: Option<&str>, values: &[&str]) {
        let family = self.family;
        debug_assert_eq!(
            values.len(),
            family.labels.len(),
            "{}: label values",
            family.name
        );
        debug_assert_eq!(
            std::mem::discriminant(&kind),
            std::mem::discriminant(&family.kind),
            "{}: type",
            family.name
        );
        let out = &mut *self.out;
        encode::sample_name(out, family, suffix);
        out.push('{');
        if let Some(le) = le {
            out.push_str("le=\"");
            out.push_str(le);
            out.push_str("\",");
        }
        out.push_str(self.target);
        for (name, value) in family.labels.iter().zip(values) {
            out.push(',');
            out.push_str(name);
            out.push_str("=\"");
            encode::escaped(out, value);
            out.push('"');
        }
        out.push_str("} ");
    }

    /// A counter carrying its last failure's event id (and trace id) as an exemplar, with the
    /// increment it marks (1) as the exemplar's value.
    fn marked(
        &mut self,
        values: &[&str],
        (value, exemplar): (u64, Option<ExemplarLabels>),
    ) -> fmt::Result {
        self.start(Counter, None, None, values);
        encode::uint(self.out, value);
        if let Some(e) = exemplar.filter(|_| self.exemplars) {
            e.write(self.out, 1.0);
        }
        self.out.push('\n');
        Ok(())
    }

    fn counter(&mut self, values: &[&str], value: u64) -> fmt::Result {
        self.start(Counter, None, None, values);
        encode::uint(self.out, value);
        self.out.push('\n');
        Ok(())
    }

    fn gauge(&mut self, values: &[&str], value: impl GaugeValue) -> fmt::Result {
        self.start(Gauge, None, None, values);
        value.write(self.out);
        self.out.push('\n');
        Ok(())
    }

    /// A histogram, its buckets' exemplars from `kept`.
    fn histogram(&mut self, values: &[&str], h: Read, kept: &[Kept]) -> fmt::Result {
        self.start(Histogram, Some("sum"), None, values);
        encode::float(self.out, h.sum);
        self.out.push('\n');
        self.start(Histogram, Some("count"), None, values);
        encode::uint(self.out, h.count);
        self.out.push('\n');
        let exemplars = self.exemplars;
        h.buckets(kept, |le, cumulative, exemplar| {
            self.start(Histogram, Some("bucket"), Some(le), values);
            encode::uint(self.out, cumulative);
            if let Some((labels, value)) = exemplar.filter(|_| exemplars) {
                labels.write(self.out, value);
            }
            self.out.push('\n');
        });
        Ok(())
    }

    fn info(&mut self, values: &[&str]) -> fmt::Result {
        self.start(Info, None, None, values);
        self.out.push_str("1\n");
        Ok(())
    }
}
