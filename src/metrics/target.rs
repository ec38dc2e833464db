//! A target's series: one [`TargetMetrics`] per target (or per address of a per-address
//! target), its counters, gauges and histogram buckets as atomics and the rest under one lock,
//! what only some targets need boxed apart; recording an outcome, the summary, and removal.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use crate::config::{PhaseDetail, Target};
use crate::probe::{Ids, Outcome, Phase, Reason, TraceId};
use crate::tls::CertFacts;

use super::histogram::{Histograms, Kept, Layout};
use super::probe::LastProbe;
use super::PRECREATED_CODES;

/// `target` first, then the target's own labels. Shared by every series of one target, which
/// write them as the text rendered once here. The names `target` and `address` are not copied
/// for each target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetLabels(Arc<[(Cow<'static, str>, String)]>);

impl TargetLabels {
    /// `target="…",…` as it stands between a sample's braces.
    pub(super) fn rendered(&self) -> Box<str> {
        // The length without escapes (`k="v"` and a comma each but the last), so that the
        // usual text is not copied again to fit.
        let len = self
            .0
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>();
        let len = len.saturating_sub(1);
        let mut text = String::with_capacity(len);
        super::encode::label_pairs(&mut text, self.0.iter().map(|(k, v)| (&**k, v.as_str())));
        text.into_boxed_str()
    }
}

impl TargetLabels {
    pub fn new(target: &Target) -> Self {
        Self::with_address(target, None)
    }

    /// With per-address probing, each address's series also carry `address`.
    pub fn with_address(target: &Target, address: Option<IpAddr>) -> Self {
        let mut labels =
            Vec::with_capacity(target.labels.len() + 1 + usize::from(address.is_some()));
        labels.push((Cow::Borrowed("target"), target.name.clone()));
        labels.extend((target.labels.iter()).map(|(k, v)| (Cow::Owned(k.clone()), v.clone())));
        if let Some(ip) = address {
            labels.push((Cow::Borrowed("address"), ip.to_string()));
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

/// Every target's series, keyed (and so exposed) in label order, and what they share.
#[derive(Debug, Default)]
pub(super) struct Targets {
    all: RwLock<BTreeMap<TargetLabels, Arc<TargetMetrics>>>,
    shared: Mutex<Shared>,
}

/// Kept once however many targets use them: the histogram layouts (bucket bounds and phases)
/// and the texts of `tickr_target_info` other than the URL (method, interval, timeout). Like
/// the configurations that brought them, a few.
#[derive(Debug, Default)]
struct Shared {
    layouts: Vec<Arc<Layout>>,
    texts: BTreeSet<Arc<str>>,
}

impl Shared {
    fn text(&mut self, text: String) -> Arc<str> {
        if let Some(known) = self.texts.get(text.as_str()) {
            return known.clone();
        }
        let new: Arc<str> = text.into();
        self.texts.insert(new.clone());
        new
    }
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
        let layout = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let buckets = &target.histograms.buckets;
            match shared.layouts.iter().find(|l| l.same(buckets, phases)) {
                Some(l) => l.clone(),
                None => {
                    let l = Arc::new(Layout::new(buckets, phases));
                    shared.layouts.push(l.clone());
                    l
                }
            }
        };
        let check = |label: &String| Check {
            label: label.as_str().into(),
            passed: AtomicBool::new(false),
            mismatches: AtomicU64::new(0),
        };
        let tm = Arc::new(TargetMetrics {
            text: labels.rendered(),
            labels: labels.clone(),
            targets: Arc::downgrade(self),
            own,
            histograms: Histograms::new(layout),
            runs: Default::default(),
            checks: (target.matchers.iter().map(|m| check(&m.label)))
                .chain(target.header_checks.iter().map(|c| check(&c.matcher.label)))
                .collect(),
            // Far fewer than 4 billion: a configuration or a source is a few tens of MiB at most.
            body_checks: target.matchers.len() as u32,
            // Only targets that confirm failures have these series.
            confirmations: (target.confirm > 0).then(Default::default),
            state_changes: AtomicU64::new(0),
            last_probe: AtomicU64::new(0),
            last_result: AtomicU8::new(UNKNOWN),
            proxied,
            state: Mutex::default(),
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

    /// What `target` has that its addresses do not, its texts shared with other targets'.
    pub(super) fn own(&self, target: &Target) -> Own {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        Own {
            interval: target.interval.as_secs_f64(),
            url: target.shown_url.as_str().into(),
            facts: [
                shared.text(target.method.to_string()),
                shared.text(format!("{:?}", target.interval)),
                shared.text(format!("{:?}", target.timeout)),
            ],
        }
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
    /// [`super::families`] names them: the URL, then the texts other targets share.
    pub(super) url: Box<str>,
    pub(super) facts: [Arc<str>; 3],
}

/// A body or header check's series: 1 if the last evaluation passed, else 0, and the
/// mismatches counted.
#[derive(Debug)]
pub(super) struct Check {
    pub(super) label: Box<str>,
    pub(super) passed: AtomicBool,
    pub(super) mismatches: AtomicU64,
}

/// The series of one target (or one address of a per-address target). A number of its own is
/// an atomic here; the rest is under one lock (its `State`), which keeps what only some targets
/// ever need in boxes allocated on first use. Every target has one: each byte counts 100,000
/// times.
pub struct TargetMetrics {
    pub(super) labels: TargetLabels,
    /// The labels as every sample line writes them.
    pub(super) text: Box<str>,
    targets: Weak<Targets>,
    pub(super) own: Option<Box<Own>>,
    pub(super) histograms: Histograms,
    /// Success, failure. The exemplar of the last failure is one of the [`Rare::marks`].
    runs: [AtomicU64; 2],
    /// The body checks (the first `body_checks`), then the header checks.
    checks: Box<[Check]>,
    body_checks: u32,
    /// Success, failure.
    pub(super) confirmations: Option<Box<[AtomicU64; 2]>>,
    pub(super) state_changes: AtomicU64,
    /// Unix seconds, as f64 bits.
    pub(super) last_probe: AtomicU64,
    last_result: AtomicU8,
    /// Whether the target has a proxy: only then is reason `proxy` exposed (at 0 until it
    /// happens), as a direct target can never fail that way.
    pub(super) proxied: bool,
    state: Mutex<State>,
}

/// A target's series that a probe changes together, under one lock, which is never held
/// while another target's is taken.
#[derive(Debug, Default)]
pub(super) struct State {
    /// Final responses by status code and whether the body broke off (`class="cut"`), in the
    /// order they are exposed: the whole ones first, by code. The pre-created codes are left
    /// out until they count one: [`State::codes`] adds them at zero.
    codes: Vec<Code>,
    /// The last probe, as `/probe`'s blackbox gauges show it; also what `tickr_probe_success`
    /// and `tickr_http_status_code` show.
    last: Option<LastProbe>,
    /// From the first certificate or handshake on.
    tls: Option<Box<Tls>>,
    /// From the first failure, 5xx or address on.
    rare: Option<Box<Rare>>,
}

#[derive(Debug)]
struct Code {
    code: u16,
    cut: bool,
    count: u64,
}

/// The TLS facts: each series is replaced when its value changes, so a target has at most one
/// of each; a probe without a handshake leaves them as they were.
#[derive(Debug)]
pub(super) struct Tls {
    /// Earliest notAfter of the last chain presented, [`NO_CERT`] before any.
    pub(super) not_after: i64,
    /// 0 or 1 for the last chain presented; [`NO_CHAIN`] before any.
    pub(super) verified: i64,
    /// Version and cipher suite of the last handshake that completed.
    pub(super) info: Option<[&'static str; 2]>,
    pub(super) cert: Option<ServedCert>,
}

/// What a target needs only once it failed, answered a 5xx or was probed at every address:
/// a plain-HTTP target that never failed pays one pointer for all of it.
#[derive(Debug, Default)]
pub(super) struct Rare {
    /// Failed probes by reason (its index in [`Reason::ALL`]), for the reasons seen: most
    /// failing targets fail one way.
    failures: Vec<(u8, u64)>,
    /// The last failure's exemplar of each counter that counted one, by slot: [`RUNS`] +
    /// result, [`FAILURES`] + reason, or [`code_slot`].
    marks: Vec<(u32, ExemplarLabels)>,
    /// The histograms' exemplars, one per bucket a failure landed in.
    kept: Vec<Kept>,
    /// By status code and the layer that most likely generated it, in that order.
    server_errors: Vec<ServerErrors>,
    /// Per-address series of a target probed at every address.
    children: BTreeMap<IpAddr, Arc<TargetMetrics>>,
}

/// The 5xx responses of one status code that one layer most likely generated, and the
/// exemplar of the last (failure or not: the response is the evidence).
#[derive(Debug)]
pub(super) struct ServerErrors {
    pub(super) code: u16,
    pub(super) layer: Box<str>,
    pub(super) count: u64,
    pub(super) exemplar: Option<ExemplarLabels>,
}

/// Slots of [`Rare::marks`].
const RUNS: u32 = 0;
const FAILURES: u32 = 2;

fn code_slot(code: u16, cut: bool) -> u32 {
    1 << 17 | u32::from(cut) << 16 | u32::from(code)
}

impl State {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The exemplar kept under `slot`.
    fn mark(&self, slot: u32) -> Option<ExemplarLabels> {
        let rare = self.rare.as_deref()?;
        rare.marks.iter().find(|(s, _)| *s == slot).map(|(_, e)| *e)
    }

    /// Failures by `Reason::ALL[i]`, and the exemplar of the last.
    pub(super) fn failure(&self, i: usize) -> (u64, Option<ExemplarLabels>) {
        let failures = self.rare.as_deref().map_or(&[][..], |r| &r.failures);
        let count = failures.iter().find(|(r, _)| usize::from(*r) == i);
        (count.map_or(0, |(_, n)| *n), self.mark(FAILURES + i as u32))
    }

    /// Each status code's count and the exemplar of its last failure, in exposition order,
    /// the pre-created ones included.
    pub(super) fn codes(
        &self,
    ) -> impl Iterator<Item = (u16, bool, u64, Option<ExemplarLabels>)> + '_ {
        // Both in (cut, code) order: a merge, the pre-created side at zero unless counted.
        let mut precreated = PRECREATED_CODES
            .iter()
            .map(|&code| (false, code))
            .peekable();
        let mut counted = self.codes.iter().peekable();
        std::iter::from_fn(move || {
            let p = precreated.peek().copied();
            let from_precreated = match (p, counted.peek()) {
                (None, None) => return None,
                (Some(p), Some(c)) => p < (c.cut, c.code),
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            let (cut, code, count) = if from_precreated {
                let (cut, code) = precreated.next()?;
                (cut, code, 0)
            } else {
                let c = counted.next()?;
                if p == Some((c.cut, c.code)) {
                    precreated.next();
                }
                (c.cut, c.code, c.count)
            };
            let exemplar = self.mark(code_slot(code, cut)).filter(|_| count > 0);
            Some((code, cut, count, exemplar))
        })
    }

    pub(super) fn server_errors(&self) -> &[ServerErrors] {
        self.rare.as_deref().map_or(&[], |r| &r.server_errors)
    }

    /// The histograms' exemplars.
    pub(super) fn kept(&self) -> &[Kept] {
        self.rare.as_deref().map_or(&[], |r| &r.kept)
    }

    pub(super) fn tls(&self) -> Option<&Tls> {
        self.tls.as_deref()
    }

    pub(super) fn success(&self) -> i64 {
        self.last.map_or(0, |l| i64::from(l.success()))
    }

    pub(super) fn status_code(&self) -> i64 {
        self.last.map_or(0, |l| i64::from(l.status()))
    }

    fn count_code(&mut self, code: u16, cut: bool, exemplar: Option<ExemplarLabels>) {
        let i = match (self.codes).binary_search_by_key(&(cut, code), |c| (c.cut, c.code)) {
            Ok(i) => i,
            Err(i) => {
                self.codes.reserve_exact(1);
                self.codes.insert(
                    i,
                    Code {
                        code,
                        cut,
                        count: 0,
                    },
                );
                i
            }
        };
        self.codes[i].count += 1;
        if let Some(e) = exemplar {
            self.rare().mark(code_slot(code, cut), e);
        }
    }

    /// The TLS facts of `outcome`, if it has any.
    fn record_tls(&mut self, outcome: &Outcome) {
        let info = outcome.tls_version.zip(outcome.tls_cipher);
        if info.is_none()
            && outcome.cert_not_after.is_none()
            && outcome.cert_leaf.is_none()
            && outcome.chain_verified.is_none()
        {
            return;
        }
        let tls = self.tls.get_or_insert_with(|| {
            Box::new(Tls {
                not_after: NO_CERT,
                verified: NO_CHAIN,
                info: None,
                cert: None,
            })
        });
        if let Some(not_after) = outcome.cert_not_after {
            tls.not_after = not_after;
        }
        if let Some((version, cipher)) = info {
            tls.info = Some([version, cipher]);
        }
        if let Some(leaf) = &outcome.cert_leaf {
            if tls.cert.as_ref().is_none_or(|c| c.der != *leaf) {
                tls.cert = Some(ServedCert {
                    der: leaf.clone(),
                    facts: CertFacts::of(leaf),
                });
            }
        }
        if let Some(verified) = outcome.chain_verified {
            tls.verified = i64::from(verified);
        }
    }
}

impl Rare {
    /// Keeps `exemplar` under `slot`, replacing the one before. The list grows by one: a
    /// failing target has a few.
    fn mark(&mut self, slot: u32, exemplar: ExemplarLabels) {
        match self.marks.iter_mut().find(|(s, _)| *s == slot) {
            Some(kept) => kept.1 = exemplar,
            None => {
                self.marks.reserve_exact(1);
                self.marks.push((slot, exemplar));
            }
        }
    }

    /// Counts a failure for `Reason::ALL[reason]`.
    fn fail(&mut self, reason: u8) {
        match self.failures.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += 1,
            None => {
                self.failures.reserve_exact(1);
                self.failures.push((reason, 1));
            }
        }
    }

    fn server_error(&mut self, code: u16, layer: &str, exemplar: Option<ExemplarLabels>) {
        let all = &mut self.server_errors;
        let i = match all.binary_search_by(|e| (e.code, &*e.layer).cmp(&(code, layer))) {
            Ok(i) => i,
            Err(i) => {
                all.reserve_exact(1);
                all.insert(
                    i,
                    ServerErrors {
                        code,
                        layer: layer.into(),
                        count: 0,
                        exemplar: None,
                    },
                );
                i
            }
        };
        all[i].count += 1;
        all[i].exemplar = exemplar.or(all[i].exemplar);
    }
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
    /// The lock of everything that is not an atomic of its own.
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `runs[i]` (success, failure) and its exemplar, for encoding.
    pub(super) fn run(&self, i: usize) -> (u64, Option<ExemplarLabels>) {
        let exemplar = self.state().mark(RUNS + i as u32);
        (self.runs[i].load(Ordering::Relaxed), exemplar)
    }

    /// The body checks.
    pub(super) fn body_checks(&self) -> &[Check] {
        &self.checks[..self.body_checks as usize]
    }

    /// The header checks.
    pub(super) fn header_checks(&self) -> &[Check] {
        &self.checks[self.body_checks as usize..]
    }

    /// Records one finished probe. `event` is the failure recorder's id for it, attached as an
    /// exemplar to the failure observations; `layer` is the attributed layer of a 5xx.
    pub fn record(&self, outcome: &Outcome, event: Option<u64>, layer: Option<&str>) {
        let ok = outcome.success();
        let labelled = event.map(|id| ExemplarLabels::new(id, outcome.ids));
        let exemplar = if ok { None } else { labelled };
        let run = usize::from(!ok);
        let mut state = self.state();
        self.runs[run].fetch_add(1, Ordering::Relaxed);
        if let Some(e) = exemplar {
            state.rare().mark(RUNS + run as u32, e);
        }
        self.histograms.observe(outcome, |cell, value| {
            if let Some(labels) = exemplar {
                Kept::keep(&mut state.rare().kept, cell, labels, value);
            }
        });
        if let Some(code) = outcome.status {
            state.count_code(code, outcome.cut, exemplar);
            if code >= 500 {
                let layer = layer.unwrap_or(crate::diagnosis::layer::UNKNOWN);
                state.rare().server_error(code, layer, labelled);
            }
        }
        if let Some(failure) = &outcome.failure {
            let i = Reason::ALL
                .iter()
                .position(|r| *r == failure.reason)
                .expect("every reason is listed");
            let rare = state.rare();
            rare.fail(i as u8);
            if let Some(e) = exemplar {
                rare.mark(FAILURES + i as u32, e);
            }
        }
        for (checks, results) in [
            (self.body_checks(), &outcome.matches),
            (self.header_checks(), &outcome.header_matches),
        ] {
            for (i, check) in checks.iter().enumerate() {
                let matched = results.get(i).copied();
                check.passed.store(matched == Some(true), Ordering::Relaxed);
                if matched == Some(false) {
                    check.mismatches.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let now = if ok { SUCCEEDED } else { FAILED };
        let before = self.last_result.swap(now, Ordering::Relaxed);
        if before != UNKNOWN && before != now {
            self.state_changes.fetch_add(1, Ordering::Relaxed);
        }
        self.touch();
        state.last = Some(LastProbe::of(outcome));
        state.record_tls(outcome);
    }

    /// The last probe's facts, once there was one.
    pub fn last_probe(&self) -> Option<LastProbe> {
        self.state().last
    }

    /// The series of its addresses now (per-address targets).
    pub fn children_now(&self) -> Vec<Arc<TargetMetrics>> {
        let state = self.state();
        let children = state.rare.as_deref().map(|r| &r.children);
        children.map_or_else(Vec::new, |c| c.values().cloned().collect())
    }

    /// Adds the series of one of its addresses.
    pub(super) fn add_child(&self, ip: IpAddr, child: Arc<TargetMetrics>) {
        self.state().rare().children.insert(ip, child);
    }

    /// Takes away the series of one of its addresses.
    pub(super) fn take_child(&self, ip: IpAddr) -> Option<Arc<TargetMetrics>> {
        self.state().rare.as_deref_mut()?.children.remove(&ip)
    }

    /// Counts one follow-up probe after a failure.
    pub fn record_confirmation(&self, success: bool) {
        if let Some(confirmations) = &self.confirmations {
            let [ok, failed] = &**confirmations;
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
            last_status: self.state().status_code(),
            last_probe_timestamp: f64::from_bits(self.last_probe.load(Ordering::Relaxed)),
            successes: self.runs[0].load(Ordering::Relaxed),
            failures: self.runs[1].load(Ordering::Relaxed),
        };
        let Some(mut all) = self
            .children_now()
            .iter()
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
        let children = match self.state().rare.as_deref_mut() {
            Some(rare) => std::mem::take(&mut rare.children),
            None => BTreeMap::new(),
        };
        for child in children.values() {
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

    fn target(yaml: &str) -> Target {
        let text = format!("targets:\n  - name: t\n    url: http://example.com/\n{yaml}");
        let config =
            crate::config::parse(std::path::Path::new("config.yml"), &text).expect("valid");
        (*config.targets[0]).clone()
    }

    fn answered(code: u16, cut: bool, failed: bool) -> Outcome {
        Outcome {
            status: Some(code),
            cut,
            failure: failed.then(|| crate::probe::Failure::new(Reason::Status, "status")),
            ..Outcome::default()
        }
    }

    /// Every target has one: a field added here costs 100,000 times over.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_target_block_stays_small() {
        assert!(
            std::mem::size_of::<TargetMetrics>() <= 248,
            "{}",
            std::mem::size_of::<TargetMetrics>()
        );
        assert!(std::mem::size_of::<Option<LastProbe>>() <= 64);
    }

    #[test]
    fn a_plain_target_that_never_fails_keeps_nothing_apart() {
        let metrics = super::super::Metrics::new();
        let tm = metrics.register_target(&target(""));
        tm.record(&answered(200, false, false), Some(1), None);
        tm.record(&answered(200, false, false), Some(2), None);
        let state = tm.state();
        assert!(state.rare.is_none() && state.tls.is_none());
        assert_eq!(state.codes.capacity(), 1);
        drop(state);
        tm.record(&answered(503, false, true), Some(3), None);
        let state = tm.state();
        let rare = state.rare.as_deref().expect("a failure's exemplars");
        assert_eq!(rare.marks.len(), 3, "run, reason, code");
        assert_eq!(rare.marks.capacity(), 3);
        assert_eq!(
            state
                .failure(
                    Reason::ALL
                        .iter()
                        .position(|r| *r == Reason::Status)
                        .unwrap()
                )
                .0,
            1
        );
    }

    /// The codes come out as they did when the pre-created ones were stored from the start:
    /// whole responses by code, then the cut ones, the pre-created at zero until counted.
    #[test]
    fn codes_merge_with_the_precreated_ones_in_order() {
        assert!(PRECREATED_CODES.windows(2).all(|w| w[0] < w[1]));
        let metrics = super::super::Metrics::new();
        let tm = metrics.register_target(&target(""));
        let codes = |tm: &TargetMetrics| -> Vec<(u16, bool, u64, bool)> {
            (tm.state().codes())
                .map(|(code, cut, n, e)| (code, cut, n, e.is_some()))
                .collect()
        };
        let zero = |code| (code, false, 0, false);
        assert_eq!(codes(&tm), PRECREATED_CODES.map(zero));
        for (code, cut, failed) in [
            (599, true, true),
            (502, false, true),
            (200, true, false),
            (100, false, false),
            (505, false, false),
            (502, false, false),
            (200, false, false),
            (503, true, true),
        ] {
            tm.record(&answered(code, cut, failed), Some(u64::from(code)), None);
        }
        assert_eq!(
            codes(&tm),
            [
                (100, false, 1, false),
                (200, false, 1, false),
                zero(500),
                (502, false, 2, true),
                zero(503),
                zero(504),
                (505, false, 1, false),
                (200, true, 1, false),
                (503, true, 1, true),
                (599, true, 1, true),
            ]
        );
    }
}
