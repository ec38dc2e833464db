//! A target's series: one [`TargetMetrics`] per target (or per address of a per-address
//! target), its counters and gauges as plain atomics and each phase histogram as
//! prometheus-client's; recording an outcome, the landing page's summary, and removal.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::config::{PhaseDetail, Target};
use crate::probe::{Ids, Outcome, Phase, Reason, TraceId};
use crate::tls::CertFacts;

use super::histogram::{Bounds, Histograms};
use super::probe::LastProbe;
use super::PRECREATED_CODES;

/// `target` first, then the target's own labels. Shared by every series of one target, which
/// write them as the text rendered once here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetLabels(Arc<[(String, String)]>);

impl TargetLabels {
    /// `target="…",…` as it stands between a sample's braces.
    pub(super) fn rendered(&self) -> String {
        let mut text = String::new();
        super::encode::label_pairs(
            &mut text,
            self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        text
    }
}

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

/// The exemplar of a failure observation: the id of its event in the failure recorder and,
/// when the probe sent one, its trace id (`trace_id`, as OpenTelemetry names it and Grafana
/// links it to a tracing backend) or else its request id. OpenMetrics allows 128 characters
/// of names and values in all; these take at most 70 (`event_id` and 20 digits, `request_id`
/// and 32 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExemplarLabels {
    event: u64,
    id: Option<(&'static str, TraceId)>,
}

impl ExemplarLabels {
    fn new(event: u64, ids: Option<Ids>) -> Self {
        let id = ids.and_then(|i| match (i.traceparent, i.request_id) {
            (true, _) => Some(("trace_id", i.trace_id)),
            (false, true) => Some(("request_id", i.trace_id)),
            (false, false) => None,
        });
        Self { event, id }
    }
}

impl ExemplarLabels {
    /// ` # {event_id="…"[,trace_id="…"]} value`, after a sample's value.
    pub(super) fn write(&self, out: &mut String, value: f64) {
        out.push_str(" # {event_id=\"");
        super::encode::uint(out, self.event);
        out.push('"');
        if let Some((name, id)) = self.id {
            out.push(',');
            out.push_str(name);
            out.push_str("=\"");
            out.push_str(id.hex().as_str());
            out.push('"');
        }
        out.push_str("} ");
        super::encode::float(out, value);
    }
}

/// A counter every target has (runs by result, failures by reason): its value only. The
/// exemplar of its last failure increment is kept in the target's `marks`, which stay empty
/// for a target that never failed: 16 bytes less per counter than [`Count`]'s slot.
#[derive(Debug, Default)]
pub(super) struct Tally(AtomicU64);

impl Tally {
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter whose last failure increment keeps the failure's exemplar.
#[derive(Debug, Default)]
pub(super) struct Count {
    value: AtomicU64,
    /// Boxed: most counters never count a failure, and a target has a few dozen of them.
    exemplar: Mutex<Option<Box<ExemplarLabels>>>,
}

impl Count {
    fn inc(&self, exemplar: Option<ExemplarLabels>) {
        self.value.fetch_add(1, Ordering::Relaxed);
        if let Some(new) = exemplar {
            let mut slot = self.exemplar.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                Some(kept) => **kept = new,
                None => *slot = Some(Box::new(new)),
            }
        }
    }

    pub(super) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// The value, and the exemplar of the last failure counted, if any.
    pub(super) fn read(&self) -> (u64, Option<ExemplarLabels>) {
        let value = self.get();
        let exemplar = self
            .exemplar
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .copied();
        (value, exemplar.filter(|_| value > 0))
    }
}

/// Every target's series, keyed (and so exposed) in label order, and the bucket bounds they
/// share.
#[derive(Debug, Default)]
pub(super) struct Targets {
    all: RwLock<BTreeMap<TargetLabels, Arc<TargetMetrics>>>,
    bounds: Mutex<Vec<Arc<Bounds>>>,
}

impl Targets {
    pub(super) fn insert(
        self: &Arc<Self>,
        target: &Target,
        labels: TargetLabels,
        own: Option<Box<Own>>,
    ) -> Arc<TargetMetrics> {
        // `proxy` only for targets that can go through one: a direct target's exposition
        // stays as it was, without a histogram that could never be observed.
        let proxied = target.proxy.is_some();
        let phases: &'static [Phase] = match target.histograms.phases {
            PhaseDetail::All if proxied => &Phase::ALL,
            PhaseDetail::All => &DIRECT_PHASES,
            PhaseDetail::Total => &[Phase::Total],
        };
        let bounds = {
            let mut known = self.bounds.lock().unwrap_or_else(|e| e.into_inner());
            let buckets = &target.histograms.buckets;
            match known.iter().find(|b| b.same(buckets)) {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(Bounds::new(buckets));
                    known.push(b.clone());
                    b
                }
            }
        };
        let tm = Arc::new(TargetMetrics {
            text: labels.rendered().into(),
            labels: labels.clone(),
            targets: Arc::downgrade(self),
            own,
            runs: Default::default(),
            success: AtomicI64::new(0),
            status_code: AtomicI64::new(0),
            histograms: Histograms::new(bounds, phases),
            failures: Default::default(),
            marks: Mutex::new(Vec::new()),
            proxied,
            matchers: target
                .matchers
                .iter()
                .map(|m| (m.label.clone(), AtomicI64::new(0), AtomicU64::new(0)))
                .collect(),
            header_matchers: target
                .header_checks
                .iter()
                .map(|c| {
                    (
                        c.matcher.label.clone(),
                        AtomicI64::new(0),
                        AtomicU64::new(0),
                    )
                })
                .collect(),
            state_changes: AtomicU64::new(0),
            // Only targets that confirm failures have these series.
            confirmations: (target.confirm > 0).then(Default::default),
            last_probe: AtomicU64::new(0),
            cert_not_after: AtomicI64::new(NO_CERT),
            tls_info: Mutex::new(None),
            cert: Mutex::new(None),
            chain_verified: AtomicI64::new(NO_CHAIN),
            codes: Mutex::new(
                PRECREATED_CODES
                    .map(|c| (c, false, Count::default()))
                    .into(),
            ),
            server_errors: Mutex::new(Vec::new()),
            last_result: AtomicU8::new(UNKNOWN),
            children: Mutex::new(BTreeMap::new()),
            last: Mutex::new(None),
        });
        // Until the first probe, "last probe" is when the target was loaded: a target whose
        // probes never start then ages like one whose probes stopped, and alerts can see both.
        tm.touch();
        self.all
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(labels, tm.clone());
        tm
    }

    /// The targets now; probes and reloads go on while a scrape encodes them.
    pub(super) fn snapshot(&self) -> Vec<Arc<TargetMetrics>> {
        self.all
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// The phases of a target that never goes through a proxy.
const DIRECT_PHASES: [Phase; 6] = [
    Phase::Resolve,
    Phase::Connect,
    Phase::Tls,
    Phase::Processing,
    Phase::Transfer,
    Phase::Total,
];

const UNKNOWN: u8 = 0;
const SUCCEEDED: u8 = 1;
const FAILED: u8 = 2;
pub(super) const NO_CERT: i64 = i64::MIN;
pub(super) const NO_CHAIN: i64 = -1;

/// The leaf certificate a target last served, and what `tickr_tls_cert_info` shows of it:
/// worked out when the leaf's bytes change, not on every probe.
#[derive(Debug)]
pub(super) struct ServedCert {
    der: bytes::Bytes,
    pub(super) facts: CertFacts,
}

/// What only a configured target has, not each of its addresses.
#[derive(Debug)]
pub(super) struct Own {
    pub(super) interval: f64,
    /// The values of `tickr_target_info`'s own labels, in the order its entry in
    /// [`super::families`] names them.
    pub(super) facts: [String; 4],
}

impl Own {
    pub(super) fn of(target: &Target) -> Self {
        Self {
            interval: target.interval.as_secs_f64(),
            facts: [
                target.shown_url.clone(),
                target.method.to_string(),
                format!("{:?}", target.interval),
                format!("{:?}", target.timeout),
            ],
        }
    }
}

/// The series of one target (or one address of a per-address target).
pub struct TargetMetrics {
    pub(super) labels: TargetLabels,
    /// The labels as every sample line writes them.
    pub(super) text: Box<str>,
    targets: Weak<Targets>,
    pub(super) own: Option<Box<Own>>,
    /// Success, failure.
    pub(super) runs: [Tally; 2],
    pub(super) success: AtomicI64,
    pub(super) status_code: AtomicI64,
    pub(super) histograms: Histograms,
    pub(super) failures: [Tally; Reason::ALL.len()],
    /// The last failure's exemplar of each [`Tally`] that counted one, by [`mark`](Self::mark)
    /// slot.
    marks: Mutex<Vec<(u8, ExemplarLabels)>>,
    /// Whether the target has a proxy: only then is reason `proxy` exposed (at 0 until it
    /// happens), as a direct target can never fail that way.
    pub(super) proxied: bool,
    /// Label, last result, mismatches.
    pub(super) matchers: Box<[(String, AtomicI64, AtomicU64)]>,
    /// Likewise for the header checks.
    pub(super) header_matchers: Box<[(String, AtomicI64, AtomicU64)]>,
    pub(super) state_changes: AtomicU64,
    /// Success, failure.
    pub(super) confirmations: Option<[AtomicU64; 2]>,
    /// Unix seconds, as f64 bits.
    pub(super) last_probe: AtomicU64,
    pub(super) cert_not_after: AtomicI64,
    /// Version and cipher suite of the last handshake that completed.
    pub(super) tls_info: Mutex<Option<[&'static str; 2]>>,
    pub(super) cert: Mutex<Option<Box<ServedCert>>>,
    /// 0 or 1 for the last chain presented; [`NO_CHAIN`] before any.
    pub(super) chain_verified: AtomicI64,
    /// Per status code and whether the body broke off (`class="cut"`), in that order.
    pub(super) codes: Mutex<Vec<(u16, bool, Count)>>,
    pub(super) server_errors: Mutex<Vec<(u16, Box<str>, Count)>>,
    last_result: AtomicU8,
    /// Per-address series of a target probed at every address.
    pub(super) children: Mutex<BTreeMap<IpAddr, Arc<TargetMetrics>>>,
    /// The last probe, as `/probe`'s blackbox gauges show it.
    last: Mutex<Option<LastProbe>>,
}

impl fmt::Debug for TargetMetrics {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
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
    fn run_slot(i: usize) -> u8 {
        i as u8
    }

    fn failure_slot(i: usize) -> u8 {
        (2 + i) as u8
    }

    /// Counts one in `tally`, keeping `exemplar` (a failure's) under `slot`.
    fn count(&self, tally: &Tally, slot: u8, exemplar: Option<ExemplarLabels>) {
        tally.0.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = exemplar {
            let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
            match marks.iter_mut().find(|(s, _)| *s == slot) {
                Some(kept) => kept.1 = e,
                None => marks.push((slot, e)),
            }
        }
    }

    /// The value of `runs[i]` and its exemplar, for encoding.
    pub(super) fn run(&self, i: usize) -> (u64, Option<ExemplarLabels>) {
        (self.runs[i].get(), self.mark(Self::run_slot(i)))
    }

    /// The value of `failures[i]` and its exemplar, for encoding.
    pub(super) fn failure(&self, i: usize) -> (u64, Option<ExemplarLabels>) {
        (self.failures[i].get(), self.mark(Self::failure_slot(i)))
    }

    fn mark(&self, slot: u8) -> Option<ExemplarLabels> {
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.iter().find(|(s, _)| *s == slot).map(|(_, e)| *e)
    }

    /// Records one finished probe. `event` is the failure recorder's id for it, attached as an
    /// exemplar to the failure observations; `layer` is the attributed layer of a 5xx.
    pub fn record(&self, outcome: &Outcome, event: Option<u64>, layer: Option<&str>) {
        let ok = outcome.success();
        let labelled = event.map(|id| ExemplarLabels::new(id, outcome.ids));
        let exemplar = if ok { None } else { labelled };
        let run = usize::from(!ok);
        self.count(&self.runs[run], Self::run_slot(run), exemplar);
        self.success.store(i64::from(ok), Ordering::Relaxed);
        self.histograms.observe(outcome, exemplar);
        if let Some(code) = outcome.status {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            let key = (outcome.cut, code);
            match codes.iter().position(|(c, cut, _)| (*cut, *c) == key) {
                Some(i) => codes[i].2.inc(exemplar),
                None => {
                    let count = Count::default();
                    count.inc(exemplar);
                    let at = codes.partition_point(|(c, cut, _)| (*cut, *c) < key);
                    codes.insert(at, (code, outcome.cut, count));
                }
            }
            drop(codes);
            if code >= 500 {
                let layer = layer.unwrap_or(crate::diagnosis::layer::UNKNOWN);
                let mut all = self.server_errors.lock().unwrap_or_else(|e| e.into_inner());
                match all.iter().position(|(c, l, _)| *c == code && **l == *layer) {
                    Some(i) => all[i].2.inc(labelled),
                    None => {
                        let count = Count::default();
                        count.inc(labelled);
                        all.push((code, layer.into(), count));
                        all.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                    }
                }
            }
        }
        self.status_code
            .store(outcome.status.map_or(0, i64::from), Ordering::Relaxed);
        if let Some(failure) = &outcome.failure {
            let i = Reason::ALL
                .iter()
                .position(|r| *r == failure.reason)
                .expect("every reason is listed");
            self.count(&self.failures[i], Self::failure_slot(i), exemplar);
        }
        for (matchers, results) in [
            (&self.matchers, &outcome.matches),
            (&self.header_matchers, &outcome.header_matches),
        ] {
            for (i, (_, gauge, mismatches)) in matchers.iter().enumerate() {
                let matched = results.get(i).copied();
                gauge.store(i64::from(matched == Some(true)), Ordering::Relaxed);
                if matched == Some(false) {
                    mismatches.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let now = if ok { SUCCEEDED } else { FAILED };
        let before = self.last_result.swap(now, Ordering::Relaxed);
        if before != UNKNOWN && before != now {
            self.state_changes.fetch_add(1, Ordering::Relaxed);
        }
        self.touch();
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastProbe::of(outcome));
        if let Some(not_after) = outcome.cert_not_after {
            self.cert_not_after.store(not_after, Ordering::Relaxed);
        }
        self.record_tls(outcome);
    }

    /// The TLS facts: each series is replaced when its value changes, so a target has at most
    /// one of each; a probe without a handshake leaves them as they were.
    fn record_tls(&self, outcome: &Outcome) {
        if let (Some(version), Some(cipher)) = (outcome.tls_version, outcome.tls_cipher) {
            *self.tls_info.lock().unwrap_or_else(|e| e.into_inner()) = Some([version, cipher]);
        }
        if let Some(leaf) = &outcome.cert_leaf {
            let mut cert = self.cert.lock().unwrap_or_else(|e| e.into_inner());
            if cert.as_ref().is_none_or(|c| c.der != *leaf) {
                *cert = Some(Box::new(ServedCert {
                    der: leaf.clone(),
                    facts: CertFacts::of(leaf),
                }));
            }
        }
        if let Some(verified) = outcome.chain_verified {
            self.chain_verified
                .store(i64::from(verified), Ordering::Relaxed);
        }
    }

    /// The last probe's facts, once there was one.
    pub fn last_probe(&self) -> Option<LastProbe> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The series of its addresses now (per-address targets).
    pub fn children_now(&self) -> Vec<Arc<TargetMetrics>> {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.values().cloned().collect()
    }

    /// Counts one follow-up probe after a failure.
    pub fn record_confirmation(&self, success: bool) {
        if let Some([ok, failed]) = &self.confirmations {
            if success { ok } else { failed }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks a round of per-address probes as done, for the stall alert.
    pub fn touch(&self) {
        self.last_probe
            .store(crate::time::unix_now().to_bits(), Ordering::Relaxed);
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
            last_status: self.status_code.load(Ordering::Relaxed),
            last_probe_timestamp: f64::from_bits(self.last_probe.load(Ordering::Relaxed)),
            successes: self.runs[0].get(),
            failures: self.runs[1].get(),
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

    /// Removes every series of this target (and of its addresses) from the exposition. A newer
    /// registration under the same labels (a changed target, restarted) keeps its own.
    pub fn remove(&self) {
        for (_, child) in
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()))
        {
            child.remove();
        }
        let Some(targets) = self.targets.upgrade() else {
            return;
        };
        let mut all = targets.all.write().unwrap_or_else(|e| e.into_inner());
        if all
            .get(&self.labels)
            .is_some_and(|tm| std::ptr::eq(Arc::as_ptr(tm), self))
        {
            all.remove(&self.labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(traceparent: bool, request_id: bool) -> Ids {
        Ids {
            trace_id: TraceId::random(),
            span_id: crate::probe::SpanId::random(),
            sampled: true,
            traceparent,
            request_id,
        }
    }

    /// The exemplar's label set as OpenMetrics writes it: `{name="value",...}`.
    fn encoded(labels: ExemplarLabels) -> String {
        let mut line = String::new();
        labels.write(&mut line, 1.0);
        let start = line.find(" # {").expect("exemplar") + 3;
        let end = line[start..].find('}').expect("closing brace") + start + 1;
        line[start..end].to_owned()
    }

    /// OpenMetrics: "The combined length of the label names and values of an Exemplar's
    /// LabelSet MUST NOT exceed 128 UTF-8 character code points." Prometheus refuses a scrape
    /// that breaks it.
    #[test]
    fn exemplars_carry_the_trace_or_request_id_within_128_characters() {
        let longest = [
            ExemplarLabels::new(u64::MAX, Some(ids(true, true))),
            ExemplarLabels::new(u64::MAX, Some(ids(false, true))),
        ];
        for labels in longest {
            let text = encoded(labels);
            let chars: usize = text
                .trim_matches(['{', '}'])
                .split(',')
                .map(|pair| {
                    let (name, value) = pair.split_once('=').expect("name=value");
                    name.chars().count() + value.trim_matches('"').chars().count()
                })
                .sum();
            assert!(chars <= 70, "{chars}: {text}");
        }
        let both = ids(true, true);
        assert_eq!(
            encoded(ExemplarLabels::new(42, Some(both))),
            format!("{{event_id=\"42\",trace_id=\"{}\"}}", both.trace_id)
        );
        let request_only = ids(false, true);
        assert_eq!(
            encoded(ExemplarLabels::new(42, Some(request_only))),
            format!(
                "{{event_id=\"42\",request_id=\"{}\"}}",
                request_only.trace_id
            )
        );
        assert_eq!(
            encoded(ExemplarLabels::new(42, Some(ids(false, false)))),
            "{event_id=\"42\"}"
        );
        assert_eq!(encoded(ExemplarLabels::new(7, None)), "{event_id=\"7\"}");
    }
}
