//! The failure recorder: the evidence that vanishes on refresh, kept in memory. A bounded ring
//! of the last failed probes (successes never evict them) and each target's last success, for
//! comparison; and pattern hints computed from the ring in plain words.

mod hints;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::header::{HeaderName, CONTENT_LOCATION, LOCATION};
use serde_json::{json, Value};

use crate::config::{Diagnosis, Target};
use crate::diagnosis::layer::Attribution;
use crate::probe::{Ids, Outcome, Phase};
use crate::redact::{self, Secrets, REDACTED};

use crate::limits::{MAX_HEADERS, MAX_HEADER_VALUE};
use hints::hints_for;
pub use hints::Hint;

/// One probe as the recorder keeps it.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    /// Unix seconds when the probe finished.
    pub time: f64,
    pub target: String,
    pub url: String,
    /// Where the probe ran from (`global.location`), if set.
    pub location: Option<String>,
    pub success: bool,
    pub remote: Option<String>,
    /// The forward proxy the probe's last request went through (credentials replaced).
    pub proxy: Option<Arc<str>>,
    pub http_version: Option<&'static str>,
    pub tls_version: Option<&'static str>,
    pub status: Option<u16>,
    pub reason: Option<&'static str>,
    pub error: Option<String>,
    /// Milliseconds per phase, for the phases the probe finished (exactly as many: every
    /// target keeps its last success).
    pub phases_ms: Box<[(&'static str, f64)]>,
    pub layer: Option<String>,
    pub evidence: Option<String>,
    /// The hops that relayed the response from the layer that generated it.
    pub relayed_by: Vec<String>,
    /// Every hop the response's headers show (or, without a response, the last one's),
    /// origin's side first.
    pub chain: Vec<String>,
    /// The final response's body broke off, after `body_bytes`.
    pub cut: bool,
    pub body_bytes: u64,
    /// Response headers, secrets redacted.
    pub headers: Vec<(String, String)>,
    pub body_excerpt: String,
    pub redirects: u8,
    pub confirmation: Mutex<Option<Confirmation>>,
    /// The request id and trace ids the probe's last request carried, if it sent any.
    pub ids: Option<Ids>,
    /// The header that request id went in.
    pub request_id_header: Option<HeaderName>,
}

/// What the follow-up probes after a failure found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    pub probes: usize,
    pub failed: usize,
}

impl Confirmation {
    /// `transient` (every follow-up succeeded), `persistent` (every one failed) or `mixed`.
    pub fn verdict(&self) -> &'static str {
        match self.failed {
            0 => "transient",
            n if n == self.probes => "persistent",
            _ => "mixed",
        }
    }
}

impl Event {
    pub fn to_json(&self) -> Value {
        let confirmation = self
            .confirmation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|c| json!({"probes": c.probes, "failed": c.failed, "verdict": c.verdict()}));
        json!({
            "id": self.id,
            "time": self.time,
            "target": self.target,
            "url": self.url,
            "location": self.location,
            "success": self.success,
            "remote": self.remote,
            "proxy": self.proxy.as_deref(),
            "http_version": self.http_version,
            "tls_version": self.tls_version,
            "status": self.status,
            "reason": self.reason,
            "error": self.error,
            "phases_ms": self.phases_ms.iter().map(|(p, ms)| (p.to_string(), json!(ms))).collect::<serde_json::Map<_, _>>(),
            "layer": self.layer,
            "evidence": self.evidence,
            "relayed_by": self.relayed_by,
            "chain": self.chain,
            "cut": self.cut,
            "body_bytes": self.body_bytes,
            "headers": self.headers,
            "body_excerpt": self.body_excerpt,
            "redirects": self.redirects,
            "confirmation": confirmation,
            "request_id": self.request_id(),
            "request_id_header": self.request_id_header.as_ref().map(HeaderName::as_str),
            "trace_id": self.trace_id(),
            "traceparent": self.traceparent(),
        })
    }

    /// The request id sent (the trace id's 32 hex digits), if one was.
    pub fn request_id(&self) -> Option<String> {
        let ids = self.ids.filter(|i| i.request_id)?;
        Some(ids.request_id_value().as_str().to_owned())
    }

    /// The trace id sent in `traceparent`, if one was.
    pub fn trace_id(&self) -> Option<String> {
        let ids = self.ids.filter(|i| i.traceparent)?;
        Some(ids.trace_id.to_string())
    }

    /// The last request's `traceparent`, if it carried one.
    pub fn traceparent(&self) -> Option<String> {
        let ids = self.ids.filter(|i| i.traceparent)?;
        Some(ids.traceparent_value().as_str().to_owned())
    }

    pub fn set_confirmation(&self, c: Confirmation) {
        *self.confirmation.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
    }
}

/// Whether a response header's value must not be kept.
pub fn is_secret(name: &str, redact: &[String]) -> bool {
    // `http` keeps header names in lower case already; names from elsewhere may not be.
    let name = match name.bytes().any(|b| b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Owned(name.to_ascii_lowercase()),
        false => std::borrow::Cow::Borrowed(name),
    };
    redact.iter().any(|r| *r == *name)
        || crate::redact::REDACTED_FRAGMENTS
            .iter()
            .any(|f| name.contains(f))
}

/// The response headers an event keeps: at most [`MAX_HEADERS`], each value cut to
/// [`MAX_HEADER_VALUE`], secret ones replaced and the configured secrets redacted in the rest.
fn kept_headers(o: &Outcome, secrets: &Secrets, d: &Diagnosis) -> Vec<(String, String)> {
    o.headers
        .iter()
        .flatten()
        .take(MAX_HEADERS)
        .map(|(name, value)| {
            let value = if is_secret(name.as_str(), &d.redact_headers) {
                REDACTED.to_owned()
            } else {
                let value = secrets.redact(value.as_bytes(), false, MAX_HEADER_VALUE + 1);
                let value = String::from_utf8_lossy(&value);
                // A redirect's target is a URL like any other: its keys are secrets too.
                match *name {
                    LOCATION | CONTENT_LOCATION => truncate(
                        &redact::url(&value, &d.redact_query_params),
                        MAX_HEADER_VALUE,
                    ),
                    _ => truncate(&value, MAX_HEADER_VALUE),
                }
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The ring and the last successes.
#[derive(Debug)]
pub struct Recorder {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    capacity: usize,
    failures: VecDeque<Arc<Event>>,
    /// How many of the ring's failures each target has.
    failing: HashMap<String, usize>,
    /// Keyed by the event's own target name, which is not copied again for the key.
    last_success: HashSet<LastSuccess>,
}

/// A target's last success in [`Inner::last_success`], found by its target's name.
#[derive(Debug)]
enum LastSuccess {
    /// Kept with its headers and excerpt while the target has failures in the ring.
    Detailed(Arc<Event>),
    /// Every other target's: what an [`Event`] of a success without details holds, made into one
    /// when asked for. An `Event` is about 500 bytes, most of them fields only a failure fills,
    /// and every healthy target keeps its last success.
    Lean(Box<Lean>),
}

/// A phase the probe did not finish, in [`Lean::phases_us`].
const NO_PHASE: u32 = u32::MAX;

/// The fields of a success's [`Event`] that a success without details fills.
#[derive(Debug)]
struct Lean {
    id: u64,
    time: f64,
    target: String,
    url: String,
    location: Option<String>,
    remote: Option<SocketAddr>,
    proxy: Option<Arc<str>>,
    http_version: Option<&'static str>,
    tls_version: Option<&'static str>,
    status: Option<u16>,
    /// Whole microseconds per phase of [`Phase::ALL`], [`NO_PHASE`] for one not finished: the
    /// event's milliseconds are those microseconds over 1,000, so they come back exactly.
    phases_us: [u32; Phase::ALL.len()],
    body_bytes: u64,
    redirects: u8,
    ids: Option<Ids>,
    request_id_header: Option<HeaderName>,
}

impl LastSuccess {
    /// `event` as kept: whole if it has details, else only what a success without any fills.
    fn of(event: &Arc<Event>) -> Self {
        let e = &**event;
        let lean = e.success
            && e.headers.is_empty()
            && e.body_excerpt.is_empty()
            && !e.cut
            && e.reason.is_none()
            && e.error.is_none()
            && e.layer.is_none()
            && e.evidence.is_none()
            && e.relayed_by.is_empty()
            && e.chain.is_empty();
        let remote = e.remote.as_deref().map(str::parse::<SocketAddr>);
        let mut phases_us = [NO_PHASE; Phase::ALL.len()];
        let mut exact = true;
        for (name, ms) in &e.phases_ms {
            let us = (ms * 1e3).round();
            match Phase::ALL.iter().position(|p| p.as_str() == *name) {
                Some(i) if (0.0..f64::from(NO_PHASE)).contains(&us) => phases_us[i] = us as u32,
                _ => exact = false,
            }
        }
        // Anything that would not come back as it was keeps the whole event.
        let (true, true, Some(Ok(_)) | None) = (lean, exact, &remote) else {
            return Self::Detailed(event.clone());
        };
        Self::Lean(Box::new(Lean {
            id: e.id,
            time: e.time,
            target: e.target.clone(),
            url: e.url.clone(),
            location: e.location.clone(),
            remote: remote.and_then(Result::ok),
            proxy: e.proxy.clone(),
            http_version: e.http_version,
            tls_version: e.tls_version,
            status: e.status,
            phases_us,
            body_bytes: e.body_bytes,
            redirects: e.redirects,
            ids: e.ids,
            request_id_header: e.request_id_header.clone(),
        }))
    }

    fn target(&self) -> &str {
        match self {
            Self::Detailed(e) => &e.target,
            Self::Lean(l) => &l.target,
        }
    }

    fn event(&self) -> Arc<Event> {
        let l = match self {
            Self::Detailed(e) => return e.clone(),
            Self::Lean(l) => l,
        };
        Arc::new(Event {
            id: l.id,
            time: l.time,
            target: l.target.clone(),
            url: l.url.clone(),
            location: l.location.clone(),
            success: true,
            remote: l.remote.map(|a| a.to_string()),
            proxy: l.proxy.clone(),
            http_version: l.http_version,
            tls_version: l.tls_version,
            status: l.status,
            reason: None,
            error: None,
            phases_ms: (Phase::ALL.iter().zip(l.phases_us))
                .filter(|(_, us)| *us != NO_PHASE)
                .map(|(p, us)| (p.as_str(), f64::from(us) / 1e3))
                .collect(),
            layer: None,
            evidence: None,
            relayed_by: Vec::new(),
            chain: Vec::new(),
            cut: false,
            body_bytes: l.body_bytes,
            headers: Vec::new(),
            body_excerpt: String::new(),
            redirects: l.redirects,
            confirmation: Mutex::new(None),
            ids: l.ids,
            request_id_header: l.request_id_header.clone(),
        })
    }
}

impl std::borrow::Borrow<str> for LastSuccess {
    fn borrow(&self) -> &str {
        self.target()
    }
}

impl PartialEq for LastSuccess {
    fn eq(&self, other: &Self) -> bool {
        self.target() == other.target()
    }
}

impl Eq for LastSuccess {}

impl std::hash::Hash for LastSuccess {
    // As `str` hashes, which `Borrow<str>` requires.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.target().hash(state);
    }
}

/// `HTTP/1.1` and the like, as `http::Version`'s `Debug` writes them.
fn version_text(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

impl Inner {
    fn push(&mut self, event: Arc<Event>) {
        while self.failures.len() >= self.capacity.max(1) {
            self.pop();
        }
        *self.failing.entry(event.target.clone()).or_default() += 1;
        self.failures.push_back(event);
    }

    fn pop(&mut self) {
        let Some(gone) = self.failures.pop_front() else {
            return;
        };
        if let Some(n) = self.failing.get_mut(&gone.target) {
            *n -= 1;
            if *n == 0 {
                self.failing.remove(&gone.target);
            }
        }
    }
}

impl Recorder {
    pub fn new(capacity: usize) -> Self {
        // Ids start at the current time in ms, so they stay unique across restarts in exemplars.
        let start = (crate::time::since_epoch().as_millis() as u64).max(1);
        let inner = Inner {
            capacity,
            ..Inner::default()
        };
        Self {
            next_id: AtomicU64::new(start),
            inner: Mutex::new(inner),
        }
    }

    /// Changes how many failures are kept; the oldest go first.
    pub fn set_capacity(&self, capacity: usize) {
        let mut inner = self.lock();
        inner.capacity = capacity;
        while inner.failures.len() > capacity {
            inner.pop();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one probe. Failures enter the ring; a success replaces the target's last one.
    pub fn record(
        &self,
        target: &Target,
        o: &Outcome,
        attribution: Option<&Attribution>,
        d: &Diagnosis,
    ) -> Arc<Event> {
        let secrets = &*target.secrets();
        // A success keeps its headers and body excerpt only while the target has failures in
        // the ring, where the pages compare them: every target keeps its last success, and
        // those 1 to 2 KB each were most of tickr's memory beyond the series at 100,000
        // healthy targets.
        let detailed = !o.success() || self.lock().failing.contains_key(target.name.as_str());
        let headers = if detailed {
            kept_headers(o, secrets, d)
        } else {
            Vec::new()
        };
        // Redacted before the excerpt is cut, so that the cut cannot split a secret.
        let read_limit = crate::limits::BODY_HEAD
            .min(usize::try_from(target.max_body_bytes).unwrap_or(usize::MAX));
        let cut = o.body_head.len() >= read_limit;
        let excerpt_bytes = if detailed { d.body_excerpt } else { 0 };
        let body = secrets.redact(&o.body_head, cut, excerpt_bytes);
        let excerpt = &body[..body.len().min(excerpt_bytes)];
        let event = Arc::new(Event {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time: crate::time::unix_now(),
            target: target.name.clone(),
            url: target.shown_url.clone(),
            location: target.location().map(str::to_owned),
            success: o.success(),
            remote: o.remote.map(|a| a.to_string()),
            proxy: o.proxy.clone(),
            http_version: o.http_version.map(version_text),
            tls_version: o.tls_version,
            status: o.status,
            reason: o.failure.as_ref().map(|f| f.reason.as_str()),
            error: o
                .failure
                .as_ref()
                .map(|f| secrets.redact_str(&f.detail).into_owned()),
            phases_ms: Phase::ALL
                .iter()
                .filter_map(|p| {
                    o.phases
                        .get(*p)
                        .map(|d| (p.as_str(), (d.as_secs_f64() * 1e6).round() / 1e3))
                })
                .collect(),
            layer: attribution.map(|a| a.layer.clone()),
            evidence: attribution.map(|a| secrets.redact_str(&a.evidence).into_owned()),
            relayed_by: attribution
                .map(|a| a.relayed_by.clone())
                .unwrap_or_default(),
            chain: attribution
                .map(|a| {
                    a.chain
                        .iter()
                        .map(|h| secrets.redact_str(h).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            cut: o.cut,
            body_bytes: o.body_bytes,
            headers,
            body_excerpt: String::from_utf8_lossy(excerpt).into_owned(),
            redirects: o.redirects,
            confirmation: Mutex::new(None),
            ids: o.ids,
            request_id_header: o
                .ids
                .filter(|i| i.request_id)
                .and(target.request_id.clone()),
        });
        let mut inner = self.lock();
        if event.success {
            inner.last_success.replace(LastSuccess::of(&event));
        } else {
            inner.push(event.clone());
        }
        event
    }

    /// Failures, newest first, optionally of one target and since a Unix time.
    pub fn failures(
        &self,
        target: Option<&str>,
        since: Option<f64>,
        limit: usize,
    ) -> Vec<Arc<Event>> {
        let inner = self.lock();
        inner
            .failures
            .iter()
            .rev()
            .filter(|e| target.is_none_or(|t| e.target == t) && since.is_none_or(|s| e.time >= s))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn last_success(&self, target: &str) -> Option<Arc<Event>> {
        self.lock().last_success.get(target).map(LastSuccess::event)
    }

    /// Forgets a removed target's last success (its failures stay in the ring: they happened).
    pub fn forget(&self, target: &str) {
        self.lock().last_success.remove(target);
    }

    /// Plain-words observations about the failures in the ring, per target.
    pub fn hints(&self) -> Vec<Hint> {
        let inner = self.lock();
        let mut by_target: HashMap<&str, Vec<&Event>> = HashMap::new();
        for e in &inner.failures {
            by_target.entry(e.target.as_str()).or_default().push(e);
        }
        let mut hints = Vec::new();
        let mut targets: Vec<_> = by_target.into_iter().collect();
        targets.sort_by_key(|(t, _)| *t);
        for (target, failures) in targets {
            let success = inner.last_success.get(target).map(LastSuccess::event);
            hints.extend(hints_for(target, &failures, success.as_deref()));
        }
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A success without details is kept as a compact record; asked for, it is the same event
    /// to the last digit of every phase.
    #[test]
    fn a_lean_success_comes_back_as_it_was_recorded() {
        let yaml = "targets:\n  - {name: shop, url: 'http://shop.example/?token=x'}\n";
        let config = crate::config::parse(std::path::Path::new("config.yml"), yaml).unwrap();
        let shop = &config.targets[0];
        let recorder = Recorder::new(config.diagnosis.events);
        let phases = crate::probe::Phases {
            resolve: Some(std::time::Duration::from_nanos(1_234_567)),
            connect: Some(std::time::Duration::from_nanos(333_333_333)),
            processing: Some(std::time::Duration::from_secs_f64(0.1 + 0.2)),
            ..Default::default()
        };
        let outcome = Outcome {
            status: Some(200),
            remote: Some("[2001:db8::1]:8443".parse().unwrap()),
            http_version: Some(http::Version::HTTP_2),
            body_bytes: 512,
            phases,
            ..Outcome::default()
        };
        let recorded = recorder.record(shop, &outcome, None, &config.diagnosis);
        assert!(!recorded.phases_ms.is_empty());
        assert!(matches!(
            recorder.lock().last_success.get("shop"),
            Some(LastSuccess::Lean(_))
        ));
        let kept = recorder.last_success("shop").unwrap();
        assert_eq!(kept.to_json(), recorded.to_json());
        assert_eq!(kept.phases_ms, recorded.phases_ms);
    }

    #[test]
    fn versions_read_as_http_writes_them() {
        use http::Version;
        for v in [
            Version::HTTP_09,
            Version::HTTP_10,
            Version::HTTP_11,
            Version::HTTP_2,
            Version::HTTP_3,
        ] {
            assert_eq!(version_text(v), format!("{v:?}"));
        }
    }

    /// A success keeps its headers and excerpt only while its target has a failure in the
    /// ring (where the pages compare them); out of the ring, the next success is kept lean.
    #[test]
    fn successes_keep_their_details_only_while_the_target_has_failures_in_the_ring() {
        let yaml = "targets:\n  - {name: shop, url: 'http://shop.example/'}\n  - {name: api, url: 'http://api.example/'}\ndiagnosis: {events: 2}\n";
        let config = crate::config::parse(std::path::Path::new("config.yml"), yaml).unwrap();
        let (shop, api) = (&config.targets[0], &config.targets[1]);
        let recorder = Recorder::new(config.diagnosis.events);
        let mut headers = http::HeaderMap::new();
        headers.insert("server", http::HeaderValue::from_static("nginx"));
        let answer = |status| Outcome {
            status: Some(status),
            headers: Some(headers.clone()),
            body_head: b"<title>Shop</title>".to_vec().into(),
            failure: (status != 200)
                .then(|| crate::probe::Failure::new(crate::probe::Reason::Status, "502")),
            ..Outcome::default()
        };
        let d = &config.diagnosis;
        let lean = recorder.record(shop, &answer(200), None, d);
        assert!(lean.headers.is_empty() && lean.body_excerpt.is_empty());
        assert_eq!(recorder.last_success("shop").unwrap().id, lean.id);
        let failed = recorder.record(shop, &answer(502), None, d);
        assert!(!failed.headers.is_empty() && !failed.body_excerpt.is_empty());
        let full = recorder.record(shop, &answer(200), None, d);
        assert_eq!(full.body_excerpt, "<title>Shop</title>");
        assert_eq!(
            full.headers,
            vec![("server".to_owned(), "nginx".to_owned())]
        );
        // Two failures of another target push shop's out of the ring (capacity 2).
        recorder.record(api, &answer(502), None, d);
        recorder.record(api, &answer(502), None, d);
        let lean = recorder.record(shop, &answer(200), None, d);
        assert!(lean.headers.is_empty() && lean.body_excerpt.is_empty());
        assert!(!recorder
            .record(api, &answer(200), None, d)
            .headers
            .is_empty());
    }

    #[test]
    fn configured_header_values_are_redacted_wherever_a_server_echoes_them() {
        let redact = |text: &[u8], secrets: &[&[u8]], cut, limit| {
            redact::Secrets::new(secrets).redact(text, cut, limit)
        };
        let secrets: Vec<&[u8]> = vec![b"Bearer tok-123", b"tok"];
        let echoed = b"authorization: Bearer tok-123\nx-key: tok\n";
        let all = usize::MAX;
        assert_eq!(
            redact(echoed, &secrets, false, all),
            b"authorization: <redacted>\nx-key: <redacted>\n"
        );
        // Cut at the read limit in the middle of a secret: its start goes too.
        assert_eq!(
            redact(b"a: Bearer to", &secrets, true, all),
            b"a: <redacted>"
        );
        assert_eq!(
            redact(b"a: Bearer to", &secrets, false, all),
            b"a: Bearer to"
        );
        assert_eq!(redact(b"plain", &[], true, all), b"plain");
        // Only what is kept is scanned, and a secret across the limit is still replaced whole.
        assert_eq!(redact(b"plain text", &[], false, 5), b"plain");
        assert_eq!(redact(b"ab tok-1", &[b"tok-1"], false, 4), b"ab <redacted>");
        assert_eq!(redact(b"abcdef", &[b"tok"], false, 3), b"abc");
        // The read limit's partial secret is the end of the text, not of the scan.
        assert_eq!(redact(b"abcde tok", &[b"tokyo"], true, 3), b"abc");
    }

    #[test]
    fn secrets_are_recognised() {
        let redact = vec!["x-internal".to_owned()];
        for name in [
            "Set-Cookie",
            "authorization",
            "X-Auth-Token",
            "x-api-key",
            "X-Internal",
            "x-session-id",
        ] {
            assert!(is_secret(name, &redact), "{name}");
        }
        assert!(!is_secret("server", &redact));
    }
}
