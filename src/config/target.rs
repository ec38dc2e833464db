//! One target, validated: [`Target`] with every default applied, and the steps that build it
//! from the target's settings over its module's and `defaults`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, USER_AGENT};
use http::{Method, Version};
use url::Url;

use super::error::{at, Invalid};
use super::file::{
    ByteSize, ExpectTls, HeaderValueSpec, Headers, HttpVersion, HumanDuration, IpProtocol,
    MatcherSpec, PhaseDetail, RequestIdSpec, Settings, StatusPattern, TraceparentSpec,
};
use super::locate::Seg;
use super::merge::{Layers, Rank};
use super::proxy::{self, Proxy};
use super::secret::{self, Content, FileHeader, Form, SecretFile};
use crate::limits::{
    MAX_ADDRESSES, MAX_BODY_LIMIT, MAX_BUCKETS, MAX_CONFIRM, MAX_PATTERN_BYTES, MIN_INTERVAL,
};
use crate::redact::{self, Secrets};
use crate::tls::{ClientTls, TlsSettings, TlsVersion, TlsVersions};

/// The label that says where the probes ran from (`global.location`, `--probe.location`).
pub const LOCATION_LABEL: &str = "location";

/// Label names tickr uses itself, which a target's `labels` must not shadow.
pub const RESERVED_LABELS: &[&str] = &[
    "target",
    LOCATION_LABEL,
    "result",
    "phase",
    "code",
    "class",
    "reason",
    "matcher",
    "layer",
    "address",
    "url",
    "le",
    "quantile",
    "version",
    "cipher",
    "subject",
    "issuer",
    "serial",
    "fingerprint_sha256",
];

/// One target, with every default applied: who it is (name, URL, labels) and, behind
/// [`Target::probing`], how it is probed. Reads of the probing settings go through `Deref`
/// (`target.interval`), as if they were the target's own fields.
#[derive(Clone, PartialEq)]
pub struct Target {
    pub name: String,
    /// The module whose settings lie between the target's own and `defaults`, if any.
    pub module: Option<String>,
    pub url: Url,
    /// The URL as labels, pages, events and logs show it: secret-looking parameters' values
    /// replaced (see [`redact::url`]).
    pub shown_url: String,
    /// The user's extra labels, sorted by name; `target` is not among them.
    pub labels: Vec<(String, String)>,
    /// The configured header values and secret parameter values, for events to replace
    /// wherever a server echoes them; [`Target::secrets`] adds those read from files.
    pub secrets: Secrets,
    /// Shared by every target whose settings come out the same (see [`Probing::shared`]): in a
    /// fleet most targets differ only in name, URL and labels, and one copy of the rest per
    /// target was about 400 bytes each.
    pub probing: Arc<Probing>,
}

impl std::ops::Deref for Target {
    type Target = Probing;

    fn deref(&self) -> &Probing {
        &self.probing
    }
}

/// How a target is probed and judged: every setting besides its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Probing {
    pub interval: Duration,
    pub timeout: Duration,
    pub method: Method,
    /// Every value is marked sensitive: header values are treated as secrets.
    /// Shared by every target that sends only tickr's own `User-Agent` (most do): a header
    /// map with one entry allocates about a kilobyte.
    pub headers: Arc<HeaderMap>,
    /// Headers whose values live in files (`{file: …}`, `basic_auth.password_file`,
    /// `bearer_token_file`), read as each request is built; they replace static ones.
    pub file_headers: Vec<FileHeader>,
    pub body: Bytes,
    /// `body_file`: the body, read from a file as each request is built (then `body` is empty).
    pub body_file: Option<Arc<SecretFile>>,
    pub follow_redirects: bool,
    pub max_body_bytes: u64,
    pub ip_protocol: IpProtocol,
    /// The local address probes connect from.
    pub source_address: Option<IpAddr>,
    pub http_version: HttpVersion,
    pub tls: Arc<ClientTls>,
    /// The forward proxy probes go through, for the URLs it applies to; `None`: always direct.
    pub proxy: Option<Arc<Proxy>>,
    pub expect_status: Vec<StatusPattern>,
    pub matchers: Vec<Matcher>,
    /// Checks of the final response's headers.
    pub header_checks: Vec<HeaderCheck>,
    /// The HTTP versions the final response may come in; empty: any.
    pub http_versions: Vec<Version>,
    /// Whether the final response must (not) have come over TLS (`expect.tls`).
    pub expect_tls: Option<ExpectTls>,
    /// Follow-up probes after a failure (0: none), and the pause before each.
    pub confirm: usize,
    pub confirm_delay: Duration,
    /// Probe every resolved address (at most [`MAX_ADDRESSES`]), each with an `address` label.
    pub per_address: bool,
    /// Static addresses for the URL's host instead of DNS (like curl's `--resolve`).
    pub addresses: Vec<IpAddr>,
    /// Which phases get a duration histogram, and its buckets.
    pub histograms: HistogramDetail,
    /// The header each request carries the probe's request id in (`request_id`); `None`: none.
    pub request_id: Option<HeaderName>,
    /// Whether requests carry a W3C `traceparent`, and with which sampled flag.
    pub traceparent: Option<Traceparent>,
}

/// `traceparent` as sent: its sampled flag (`-01` or `-00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    pub sampled: bool,
}

/// The W3C Trace Context header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request id header unless `request_id` names another.
pub const DEFAULT_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers a request id must not be sent in: HTTP's own (framing, routing, credentials),
/// and those tickr sets itself.
const NOT_A_REQUEST_ID: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "authorization",
    "proxy-authorization",
    "cookie",
    "user-agent",
    "traceparent",
    "tracestate",
];

/// Written out by hand so that the URL shows as [`Target::shown_url`]: its query may hold a key.
/// The probing settings print as the target's own fields, as they read.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let p = &*self.probing;
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("module", &self.module)
            .field("url", &self.shown_url)
            .field("labels", &self.labels)
            .field("interval", &p.interval)
            .field("timeout", &p.timeout)
            .field("method", &p.method)
            .field("headers", &p.headers)
            .field("file_headers", &p.file_headers)
            .field("secrets", &self.secrets)
            .field("body", &p.body)
            .field("body_file", &p.body_file)
            .field("follow_redirects", &p.follow_redirects)
            .field("max_body_bytes", &p.max_body_bytes)
            .field("ip_protocol", &p.ip_protocol)
            .field("source_address", &p.source_address)
            .field("http_version", &p.http_version)
            .field("tls", &p.tls)
            .field("proxy", &p.proxy)
            .field("expect_status", &p.expect_status)
            .field("matchers", &p.matchers)
            .field("header_checks", &p.header_checks)
            .field("http_versions", &p.http_versions)
            .field("expect_tls", &p.expect_tls)
            .field("confirm", &p.confirm)
            .field("confirm_delay", &p.confirm_delay)
            .field("per_address", &p.per_address)
            .field("addresses", &p.addresses)
            .field("histograms", &p.histograms)
            .field("request_id", &p.request_id)
            .field("traceparent", &p.traceparent)
            .finish()
    }
}

/// The [`Probing`]s made most recently, for [`Probing::shared`] to hand out again.
static RECENT: Mutex<Vec<Weak<Probing>>> = Mutex::new(Vec::new());

/// How many distinct [`Probing`]s [`RECENT`] remembers: targets come in runs of one module or
/// one source's template; a configuration where every target differs only costs the look.
const RECENT_PROBINGS: usize = 8;

impl Probing {
    /// `self` as an `Arc`, the one already made if an equal one was made recently (by this
    /// load, an earlier one or a source's refresh: equal settings probe alike, whichever load
    /// made them).
    pub fn shared(self) -> Arc<Self> {
        let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|w| w.strong_count() > 0);
        let found = (recent.iter().enumerate())
            .find_map(|(i, w)| w.upgrade().filter(|p| **p == self).map(|p| (i, p)));
        if let Some((i, p)) = found {
            // The most recently used last, so the oldest goes first.
            let w = recent.remove(i);
            recent.push(w);
            return p;
        }
        let made = Arc::new(self);
        if recent.len() == RECENT_PROBINGS {
            recent.remove(0);
        }
        recent.push(Arc::downgrade(&made));
        made
    }
}

impl Target {
    /// The target as probed from `location`: its labels gain `location` (which no configured
    /// label may be, see [`LOCATION_LABEL`]).
    pub(super) fn placed(mut self, location: Option<&str>) -> Self {
        if let Some(place) = location {
            let at = self
                .labels
                .partition_point(|(name, _)| name.as_str() < LOCATION_LABEL);
            self.labels
                .insert(at, (LOCATION_LABEL.to_owned(), place.to_owned()));
        }
        self
    }

    /// Where the probes of this target run from, if the configuration says.
    pub fn location(&self) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| name == LOCATION_LABEL)
            .map(|(_, v)| v.as_str())
    }

    /// Every secret the target sends as it sends it now: the configured ones and the current
    /// values of those read from files.
    pub fn secrets(&self) -> std::borrow::Cow<'_, Secrets> {
        let proxy_files = || self.proxy.iter().flat_map(|p| p.file_headers());
        if self.file_headers.is_empty()
            && self.body_file.is_none()
            && proxy_files().next().is_none()
        {
            return std::borrow::Cow::Borrowed(&self.secrets);
        }
        let from_files = (self.file_headers.iter())
            .chain(proxy_files())
            .flat_map(FileHeader::secrets);
        let body = self.body_file.iter().map(|f| f.value());
        std::borrow::Cow::Owned(self.secrets.and(from_files.chain(body)))
    }

    /// The request body as it is now.
    pub fn body(&self) -> Bytes {
        match &self.body_file {
            Some(f) => f.value(),
            None => self.body.clone(),
        }
    }
}

/// The detail of a target's `tickr_probe_duration_seconds`: its phases and bucket bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramDetail {
    pub phases: PhaseDetail,
    /// Upper bounds in seconds, strictly increasing; `+Inf` is implied.
    pub buckets: Arc<[f64]>,
}

/// Prometheus' default buckets, which users know, from 5 ms to 10 s.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for HistogramDetail {
    fn default() -> Self {
        static DEFAULT: std::sync::LazyLock<Arc<[f64]>> =
            std::sync::LazyLock::new(|| DEFAULT_BUCKETS.into());
        Self {
            phases: PhaseDetail::All,
            buckets: DEFAULT.clone(),
        }
    }
}

/// A body matcher. `label` is what the `matcher` label shows: the text (or pattern), or the
/// configured name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub text: String,
    /// `body_not_contains` / `body_not_matches`: satisfied when the text or pattern is absent.
    pub negate: bool,
    /// `body_matches` / `body_not_matches`: `text` is a regular expression.
    pub pattern: Option<Pattern>,
}

impl Matcher {
    pub fn is_satisfied_by(&self, body: &[u8]) -> bool {
        let found = match &self.pattern {
            Some(p) => p.0.is_match(body),
            None => crate::diagnosis::layer::contains(body, self.text.as_bytes()),
        };
        found != self.negate
    }
}

/// A check of one response header: its matcher over each of the header's values (a positive
/// one passes when one value satisfies it, a negative one when every value does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCheck {
    pub name: HeaderName,
    pub matcher: Matcher,
    /// An absent header passes instead of failing.
    pub allow_missing: bool,
}

impl HeaderCheck {
    pub fn is_satisfied_by(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        if values.peek().is_none() {
            return self.allow_missing;
        }
        if self.matcher.negate {
            values.all(|v| self.matcher.is_satisfied_by(v.as_bytes()))
        } else {
            values.any(|v| self.matcher.is_satisfied_by(v.as_bytes()))
        }
    }
}

/// A compiled body pattern, bounded in size (so no configured pattern can take unbounded memory
/// or time; the regex crate matches in linear time). Equal when written the same.
#[derive(Clone)]
pub struct Pattern(pub Arc<regex::bytes::Regex>);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0.as_str())
    }
}

/// Compiles a pattern (a body matcher, an adoption rule) within [`MAX_PATTERN_BYTES`]; the
/// error is the parser's last line (it draws the pattern with a caret over the lines before).
pub(crate) fn compile_pattern(text: &str) -> Result<Pattern, String> {
    regex::bytes::RegexBuilder::new(text)
        .size_limit(MAX_PATTERN_BYTES)
        .dfa_size_limit(MAX_PATTERN_BYTES)
        .build()
        .map(|r| Pattern(Arc::new(r)))
        .map_err(|e| {
            let text = e.to_string();
            let why = text.lines().last().unwrap_or_default();
            format!(
                "invalid pattern: {}",
                why.trim().trim_start_matches("error: ")
            )
        })
}

/// Built-in values of settings no layer sets. The timeout's depends on the interval: 10 s, or
/// four fifths of a shorter interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
const DEFAULT_CONFIRM_DELAY: Duration = Duration::from_millis(500);

/// Validates the target at `base` over `defaults`, step by step in the order its errors are
/// reported: the first invalid setting, in that order, is the one named.
pub(super) fn validate_target(
    d: &Settings,
    module: Option<(&str, &Settings)>,
    t: &Settings,
    dir: &Path,
    base: &[Seg],
    secret_params: &[String],
) -> Result<Target, Invalid> {
    let layers = Layers::new(t, base, module, d);
    let (name, url) = identity(t, base, secret_params)?;
    let shown_url = redact::url(url.as_str(), secret_params).into_owned();
    let labels = validate_labels(&layers)?;
    let (interval, timeout) = validate_timing(&layers)?;
    let method = validate_method(&layers)?;
    let RequestHeaders {
        mut headers,
        files: mut file_headers,
        passwords,
    } = validate_headers(&layers, dir)?;
    let (request_id, traceparent) = validate_request_ids(&layers)?;
    // Where tickr's own header won over a configured one of the same name, only it is sent.
    let tracing = traceparent.map(|_| TRACEPARENT);
    for name in request_id.iter().chain(&tracing) {
        headers.remove(name);
        file_headers.retain(|f| f.name != *name);
    }
    let proxy = proxy::validate_proxy(&layers, dir, secret_params)?;
    let secrets = Secrets::new(
        headers
            .values()
            .filter(|v| v.is_sensitive())
            .map(HeaderValue::as_bytes)
            .map(<[u8]>::to_vec)
            .chain(passwords)
            .chain(redact::url_secrets(url.as_str(), secret_params))
            .chain(proxy.iter().flat_map(proxy::secrets)),
    );
    let (body, body_file) = validate_body(&layers, dir)?;
    let (ip_protocol, source_address) = validate_addressing(&layers)?;
    let max_body_bytes = validate_max_body_bytes(&layers)?;
    let tls = validate_tls(&layers, dir)?;
    let addresses = validate_addresses(&layers)?;
    let per_address = layers.get(|s| s.per_address.as_ref(), false);
    if let Some(via) = proxy.as_ref().and_then(|p| p.route(&url)) {
        // Both connect to the target's own addresses, which a proxy hides.
        let key = match (per_address.value, addresses.is_empty()) {
            (true, _) => Some(layers.at(per_address.rank, "per_address")),
            (false, false) => layers
                .first(|s| s.addresses.as_ref())
                .map(|a| layers.at(a.rank, "addresses")),
            (false, true) => None,
        };
        if let Some(at) = key {
            let msg = format!(
                "per_address and addresses connect to the target's own addresses, which the proxy {} hides: add the host to no_proxy, or leave them out",
                via.shown
            );
            return Err(Invalid(at, msg));
        }
    }
    let (confirm, confirm_delay) = validate_confirm(&layers, interval, timeout)?;
    let histograms = validate_histograms(&layers)?;
    let (expect_status, matchers) = validate_expect(&layers)?;
    let header_checks = validate_header_checks(&layers)?;
    let http_versions = validate_http_versions(&layers)?;
    let probing = Probing {
        interval,
        timeout,
        method,
        headers: shared_headers(headers),
        file_headers,
        body,
        body_file,
        follow_redirects: layers.get(|s| s.follow_redirects.as_ref(), true).value,
        max_body_bytes,
        ip_protocol,
        source_address,
        http_version: layers
            .get(|s| s.http_version.as_ref(), HttpVersion::Auto)
            .value,
        tls,
        proxy: proxy.map(Arc::new),
        expect_status,
        matchers,
        header_checks,
        http_versions,
        expect_tls: layers
            .first(|s| s.expect.as_ref()?.tls.as_ref())
            .map(|m| *m.value),
        confirm,
        confirm_delay,
        per_address: per_address.value,
        addresses,
        histograms,
        request_id,
        traceparent,
    };
    Ok(Target {
        name,
        module: module.map(|(name, _)| name.to_owned()),
        url,
        shown_url,
        labels,
        secrets,
        probing: probing.shared(),
    })
}

/// `request_id` and `traceparent`: both on by default. A header of the same name in `headers`
/// set in a more specific layer is sent instead (the built-in ones are the least specific);
/// both in one layer is an error.
fn validate_request_ids(
    layers: &Layers,
) -> Result<(Option<HeaderName>, Option<Traceparent>), Invalid> {
    let spec = layers.get(|s| s.request_id.as_ref(), RequestIdSpec::On);
    let name = match &spec.value {
        RequestIdSpec::Off => None,
        RequestIdSpec::On => Some(DEFAULT_REQUEST_ID),
        RequestIdSpec::Header(text) => {
            let at = layers.at(spec.rank, "request_id");
            let name = HeaderName::from_bytes(text.as_bytes()).map_err(|_| {
                Invalid(
                    at.clone(),
                    format!("invalid header name {text:?} for request_id"),
                )
            })?;
            if NOT_A_REQUEST_ID.contains(&name.as_str()) {
                let msg = format!(
                    "request_id cannot be sent in {text:?}, a header HTTP or tickr uses for \
                     something else: name another, such as X-Request-Id"
                );
                return Err(Invalid(at, msg));
            }
            Some(name)
        }
    };
    let shown = match &spec.value {
        RequestIdSpec::Header(text) => text.as_str(),
        _ => "X-Request-Id",
    };
    let request_id = match name {
        Some(name) if generated_wins(layers, &name, shown, spec.rank, "request_id")? => Some(name),
        _ => None,
    };
    let spec = layers.get(
        |s| s.traceparent.as_ref(),
        TraceparentSpec::On { sampled: None },
    );
    let traceparent = match spec.value {
        TraceparentSpec::On { sampled }
            if generated_wins(
                layers,
                &TRACEPARENT,
                "traceparent",
                spec.rank,
                "traceparent",
            )? =>
        {
            // Sampled unless told otherwise: a probe's trace is worth keeping, and a parent
            // marked unsampled makes the usual parent-based samplers drop the whole trace.
            Some(Traceparent {
                sampled: sampled.unwrap_or(true),
            })
        }
        _ => None,
    };
    Ok((request_id, traceparent))
}

/// Whether tickr's own `name` header (written `shown`), switched on by `key` at `rank`, is sent
/// rather than one of that name in `headers`: the more specific layer wins, and both in one
/// layer is an error.
fn generated_wins(
    layers: &Layers,
    name: &HeaderName,
    shown: &str,
    rank: Rank,
    key: &'static str,
) -> Result<bool, Invalid> {
    let configured = layers
        .each(|s| s.headers.as_ref())
        .filter(|l| {
            l.value
                .0
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name.as_str()))
        })
        .map(|l| l.rank)
        .min();
    match configured {
        Some(h) if h == rank => Err(Invalid(
            layers.at(rank, key),
            format!("{shown} is set both in headers and by {key}: keep one"),
        )),
        Some(h) => Ok(h > rank),
        None => Ok(true),
    }
}

/// The target's own `name` and `url`: no other layer may set them.
fn identity(
    t: &Settings,
    base: &[Seg],
    secret_params: &[String],
) -> Result<(String, Url), Invalid> {
    let name = t
        .name
        .clone()
        .ok_or_else(|| Invalid(base.to_vec(), "target needs a `name`".into()))?;
    if name.trim().is_empty() {
        return Err(Invalid(
            at(base, "name"),
            "target name must not be empty".into(),
        ));
    }
    let raw_url = t
        .url
        .as_deref()
        .ok_or_else(|| Invalid(base.to_vec(), format!("target {name:?} needs a `url`")))?;
    let url = validate_url(raw_url, secret_params).map_err(|m| Invalid(at(base, "url"), m))?;
    Ok((name, url))
}

/// Labels merge by name, the more specific layer's value winning; sorted by name.
fn validate_labels(layers: &Layers) -> Result<Vec<(String, String)>, Invalid> {
    let mut labels = BTreeMap::new();
    for layer in layers.each(|s| s.labels.as_ref()) {
        for (name, value) in layer.value {
            labels.insert(name.clone(), (value.clone(), layer.rank));
        }
    }
    for (label, (_, rank)) in &labels {
        check_label_name(label).map_err(|m| {
            let mut at = layers.at(*rank, "labels");
            at.push(Seg::Name(label.clone(), 0));
            Invalid(at, m)
        })?;
    }
    Ok(labels.into_iter().map(|(k, (v, _))| (k, v)).collect())
}

/// The interval and the timeout, which must fit in it.
fn validate_timing(layers: &Layers) -> Result<(Duration, Duration), Invalid> {
    let interval = layers
        .get(|s| s.interval.as_ref(), HumanDuration(DEFAULT_INTERVAL))
        .map(|h| h.0);
    if interval.value < MIN_INTERVAL {
        return Err(Invalid(
            layers.at(interval.rank, "interval"),
            format!("interval must be at least {}", HumanDuration(MIN_INTERVAL)),
        ));
    }
    let timeout = layers
        .get_or_else(
            |s| s.timeout.as_ref(),
            || HumanDuration(DEFAULT_TIMEOUT.min(interval.value * 4 / 5)),
        )
        .map(|h| h.0);
    if timeout.value.is_zero() {
        return Err(Invalid(
            layers.at(timeout.rank, "timeout"),
            "timeout must be above zero".into(),
        ));
    }
    if timeout.value >= interval.value {
        // Blame the more specific of the two (the timeout on a tie): that is the line to change.
        // The built-in timeout always fits.
        let at = if timeout.rank <= interval.rank {
            layers.at(timeout.rank, "timeout")
        } else {
            layers.at(interval.rank, "interval")
        };
        let (timeout, interval) = (HumanDuration(timeout.value), HumanDuration(interval.value));
        return Err(Invalid(
            at,
            format!("timeout ({timeout}) must be shorter than the interval ({interval})"),
        ));
    }
    Ok((interval.value, timeout.value))
}

fn validate_method(layers: &Layers) -> Result<Method, Invalid> {
    let text = layers.get(|s| s.method.as_ref(), "GET".to_owned());
    Method::from_bytes(text.value.to_ascii_uppercase().as_bytes()).map_err(|_| {
        Invalid(
            layers.at(text.rank, "method"),
            format!("invalid HTTP method {:?}", text.value),
        )
    })
}

/// Headers configured under `key` (`headers`, `proxy_connect_headers`), each layer's over the
/// one below by name. Inline values are sensitive; values from files are opened here (an
/// unreadable file is an error at its line) and read again when they change.
pub(super) struct MergedHeaders {
    pub fixed: HeaderMap,
    pub files: Vec<FileHeader>,
    /// The most specific layer that set `Authorization`.
    pub authorization: Option<Rank>,
}

pub(super) fn merge_headers(
    layers: &Layers,
    key: &'static str,
    field: fn(&Settings) -> Option<&Headers>,
    dir: &Path,
) -> Result<MergedHeaders, Invalid> {
    let mut merged = MergedHeaders {
        fixed: HeaderMap::new(),
        files: Vec::new(),
        authorization: None,
    };
    for layer in layers.each(field) {
        for (k, v) in &layer.value.0 {
            let at = |seg| [layers.at(layer.rank, key), vec![seg]].concat();
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                Invalid(
                    at(Seg::Name(k.clone(), 0)),
                    format!("invalid header name {k:?}"),
                )
            })?;
            if name == AUTHORIZATION {
                merged.authorization = Some(layer.rank);
            }
            merged.fixed.remove(&name);
            merged.files.retain(|f| f.name != name);
            match v {
                HeaderValueSpec::File(path) => {
                    let file = open_secret(dir, path, Content::Token, at(Seg::Field(k.clone())))?;
                    merged.files.push(FileHeader {
                        name,
                        file,
                        form: Form::Plain,
                    });
                }
                HeaderValueSpec::Text(text) => {
                    // The value is a secret as far as tickr knows: never echo it.
                    let mut value = HeaderValue::from_str(text).map_err(|_| {
                        Invalid(
                            at(Seg::Field(k.clone())),
                            format!("header {k:?} has a value that is not valid in HTTP"),
                        )
                    })?;
                    value.set_sensitive(true);
                    merged.fixed.insert(name, value);
                }
                // Filled in from the document before validation.
                HeaderValueSpec::Scalar => {}
            }
        }
    }
    Ok(merged)
}

/// tickr's `User-Agent`, then each layer's headers, least specific first: a more specific
/// layer's header replaces one of the same name. `basic_auth` / `bearer_token_file` make
/// `Authorization`. Also the secrets that are sent only in an encoded form (a basic-auth
/// password).
fn validate_headers(layers: &Layers, dir: &Path) -> Result<RequestHeaders, Invalid> {
    let MergedHeaders {
        fixed,
        mut files,
        authorization: header_auth,
    } = merge_headers(layers, "headers", |s| s.headers.as_ref(), dir)?;
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_static(TICKR_USER_AGENT));
    for (name, value) in &fixed {
        headers.insert(name, value.clone());
    }
    if files.iter().any(|f| f.name == USER_AGENT) {
        headers.remove(USER_AGENT);
    }
    let mut passwords = Vec::new();
    if let Some(auth) = validate_auth(layers, dir, header_auth, &mut passwords)? {
        headers.remove(AUTHORIZATION);
        files.retain(|f| f.name != AUTHORIZATION);
        match auth {
            Auth::Static(value) => {
                headers.insert(AUTHORIZATION, value);
            }
            Auth::File(header) => files.push(header),
        }
    }
    Ok(RequestHeaders {
        headers,
        files,
        passwords,
    })
}

/// `headers`, or the one map every target shares when they are only tickr's `User-Agent`.
fn shared_headers(headers: HeaderMap) -> Arc<HeaderMap> {
    static DEFAULT: std::sync::LazyLock<Arc<HeaderMap>> = std::sync::LazyLock::new(|| {
        let mut only = HeaderMap::new();
        only.insert(USER_AGENT, HeaderValue::from_static(TICKR_USER_AGENT));
        Arc::new(only)
    });
    if headers == **DEFAULT {
        DEFAULT.clone()
    } else {
        Arc::new(headers)
    }
}

const TICKR_USER_AGENT: &str = concat!("tickr/", env!("CARGO_PKG_VERSION"));

/// What a target's request headers validate into.
struct RequestHeaders {
    /// Fixed headers, sent as they are.
    headers: HeaderMap,
    /// Headers whose values come from files, read when a probe is sent.
    files: Vec<FileHeader>,
    /// Secrets sent only in an encoded form (an inline basic-auth password).
    passwords: Vec<Vec<u8>>,
}

/// `Authorization` from `basic_auth` or `bearer_token_file`.
enum Auth {
    Static(HeaderValue),
    File(FileHeader),
}

/// The `Authorization` the most specific of `basic_auth`, `bearer_token_file` and an
/// `Authorization` header makes, unless it is the header (two of them in one layer are an
/// error). An inline password goes into `passwords`: it is sent only base64-encoded.
fn validate_auth(
    layers: &Layers,
    dir: &Path,
    header: Option<Rank>,
    passwords: &mut Vec<Vec<u8>>,
) -> Result<Option<Auth>, Invalid> {
    let basic = layers.first(|s| s.basic_auth.as_ref());
    let bearer = layers.first(|s| s.bearer_token_file.as_ref());
    let chosen = match (&basic, &bearer) {
        (Some(b), Some(t)) if b.rank == t.rank => {
            return Err(Invalid(
                layers.at(t.rank, "bearer_token_file"),
                "set one of basic_auth and bearer_token_file, not both".into(),
            ))
        }
        (Some(b), Some(t)) => Some(if b.rank < t.rank {
            "basic_auth"
        } else {
            "bearer_token_file"
        }),
        (Some(_), None) => Some("basic_auth"),
        (None, Some(_)) => Some("bearer_token_file"),
        (None, None) => None,
    };
    let Some(key) = chosen else { return Ok(None) };
    let rank = if key == "basic_auth" {
        basic.as_ref().map(|b| b.rank)
    } else {
        bearer.as_ref().map(|b| b.rank)
    }
    .expect("the chosen one is set");
    match header {
        Some(h) if h == rank => {
            let msg = format!("Authorization is set both in headers and by {key}: keep one");
            return Err(Invalid(layers.at(rank, key), msg));
        }
        // A more specific layer's Authorization header wins.
        Some(h) if h < rank => return Ok(None),
        _ => {}
    }
    if let (Some(t), "bearer_token_file") = (&bearer, key) {
        let file = open_secret(dir, t.value, Content::Token, layers.at(t.rank, key))?;
        return Ok(Some(Auth::File(FileHeader {
            name: AUTHORIZATION,
            file,
            form: Form::Bearer,
        })));
    }
    let b = basic.expect("basic_auth is the chosen one");
    let at = |k| [layers.at(b.rank, "basic_auth"), vec![Seg::Key(k)]].concat();
    let username = b.value.username.clone().ok_or_else(|| {
        Invalid(
            layers.at(b.rank, "basic_auth"),
            "basic_auth needs a `username`".into(),
        )
    })?;
    if username.contains(':') {
        let msg = "a basic_auth username cannot contain `:` (RFC 7617)".into();
        return Err(Invalid(at("username"), msg));
    }
    match (&b.value.password, &b.value.password_file) {
        (Some(_), Some(_)) => Err(Invalid(
            at("password_file"),
            "set one of password and password_file, not both".into(),
        )),
        (_, Some(path)) => {
            let file = open_secret(dir, path, Content::Token, at("password_file"))?;
            Ok(Some(Auth::File(FileHeader {
                name: AUTHORIZATION,
                file,
                form: Form::Basic(username),
            })))
        }
        (password, None) => {
            let password = password.as_ref().map_or("", |p| p.0.as_str());
            passwords.push(password.as_bytes().to_vec());
            let mut value = secret::header_value(&Form::Basic(username), password.as_bytes());
            value.set_sensitive(true);
            Ok(Some(Auth::Static(value)))
        }
    }
}

/// Opens a secret file named in the configuration (relative to its directory).
fn open_secret(
    dir: &Path,
    path: &Path,
    content: Content,
    at: Vec<Seg>,
) -> Result<Arc<SecretFile>, Invalid> {
    let full = dir.join(path);
    SecretFile::open(&full, content).map_err(|why| Invalid(at, format!("{} {why}", full.display())))
}

/// The request body: inline, or read from `body_file` (the more specific wins; both in one layer
/// is an error).
fn validate_body(layers: &Layers, dir: &Path) -> Result<(Bytes, Option<Arc<SecretFile>>), Invalid> {
    let inline = layers.first(|s| s.body.as_ref());
    let file = layers.first(|s| s.body_file.as_ref());
    match (inline, file) {
        (Some(i), Some(f)) if i.rank == f.rank => Err(Invalid(
            layers.at(f.rank, "body_file"),
            "set one of body and body_file, not both".into(),
        )),
        (Some(i), Some(f)) if i.rank < f.rank => Ok((Bytes::from(i.value.clone()), None)),
        (_, Some(f)) => {
            let at = layers.at(f.rank, "body_file");
            Ok((
                Bytes::new(),
                Some(open_secret(dir, f.value, Content::Body, at)?),
            ))
        }
        (Some(i), None) => Ok((Bytes::from(i.value.clone()), None)),
        (None, None) => Ok((Bytes::new(), None)),
    }
}

/// `ip_protocol`, and `source_address`, which must be an address of this host of a family the
/// protocol allows.
fn validate_addressing(layers: &Layers) -> Result<(IpProtocol, Option<IpAddr>), Invalid> {
    let protocol = layers.get(|s| s.ip_protocol.as_ref(), IpProtocol::Auto);
    let Some(source) = layers.first(|s| s.source_address.as_ref()) else {
        return Ok((protocol.value, None));
    };
    let at = || layers.at(source.rank, "source_address");
    let ip: IpAddr = source
        .value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| Invalid(at(), format!("invalid IP address {:?}", source.value)))?;
    let clash = match protocol.value {
        IpProtocol::Ipv4 => ip.is_ipv6(),
        IpProtocol::Ipv6 => ip.is_ipv4(),
        _ => false,
    };
    if clash {
        let msg = format!(
            "source_address {ip} is not of ip_protocol {:?}",
            protocol.value
        );
        return Err(Invalid(at(), msg));
    }
    // Binding once now turns "not an address of this host" into a configuration error.
    std::net::TcpListener::bind((ip, 0))
        .map_err(|e| Invalid(at(), format!("cannot use source_address {ip}: {e}")))?;
    Ok((protocol.value, Some(ip)))
}

fn validate_max_body_bytes(layers: &Layers) -> Result<u64, Invalid> {
    let max = layers.get(
        |s| s.max_body_bytes.as_ref(),
        ByteSize(DEFAULT_MAX_BODY_BYTES),
    );
    if max.value.0 == 0 || max.value.0 > MAX_BODY_LIMIT {
        return Err(Invalid(
            layers.at(max.rank, "max_body_bytes"),
            format!("max_body_bytes must be between 1 and {MAX_BODY_LIMIT} bytes"),
        ));
    }
    Ok(max.value.0)
}

/// Static addresses: the target's own, since they belong to its URL's host.
fn validate_addresses(layers: &Layers) -> Result<Vec<IpAddr>, Invalid> {
    let Some(set) = layers.first(|s| s.addresses.as_ref()) else {
        return Ok(Vec::new());
    };
    let base = layers.at(set.rank, "addresses");
    let mut addresses = Vec::new();
    for (i, text) in set.value.iter().enumerate() {
        let at = [base.clone(), vec![Seg::Index(i)]].concat();
        let ip = text
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        addresses.push(ip.map_err(|_| Invalid(at, format!("invalid IP address {text:?}")))?);
    }
    if addresses.len() > MAX_ADDRESSES {
        return Err(Invalid(base, format!("at most {MAX_ADDRESSES} addresses")));
    }
    Ok(addresses)
}

/// Follow-up probes after a failure and the pause before each.
fn validate_confirm(
    layers: &Layers,
    interval: Duration,
    timeout: Duration,
) -> Result<(usize, Duration), Invalid> {
    let confirm = layers.get(|s| s.confirm.as_ref(), 0);
    let delay = layers
        .get(
            |s| s.confirm_delay.as_ref(),
            HumanDuration(DEFAULT_CONFIRM_DELAY),
        )
        .value
        .0;
    let at = || layers.at(confirm.rank, "confirm");
    let count = confirm.value;
    if count > MAX_CONFIRM {
        return Err(Invalid(
            at(),
            format!("confirm must be at most {MAX_CONFIRM}"),
        ));
    }
    // The follow-ups must fit before the next probe, or they would push it back.
    let burst = (timeout + delay) * count as u32 + timeout;
    if count > 0 && burst > interval {
        let msg = format!(
            "{count} confirmations of up to {} each, after a probe of up to {}, do not fit in the interval ({})",
            HumanDuration(timeout + delay),
            HumanDuration(timeout),
            HumanDuration(interval)
        );
        return Err(Invalid(at(), msg));
    }
    Ok((count, delay))
}

/// The histogram detail, each of its keys from the most specific layer that sets it.
fn validate_histograms(layers: &Layers) -> Result<HistogramDetail, Invalid> {
    let mut detail = HistogramDetail::default();
    if let Some(phases) = layers.first(|s| s.histograms.as_ref()?.phases.as_ref()) {
        detail.phases = *phases.value;
    }
    let Some(buckets) = layers.first(|s| s.histograms.as_ref()?.buckets.as_ref()) else {
        return Ok(detail);
    };
    let at = |i: Option<usize>| {
        let mut p = layers.at(buckets.rank, "histograms");
        p.push(Seg::Key("buckets"));
        p.extend(i.map(Seg::Index));
        p
    };
    let buckets = buckets.value;
    if buckets.is_empty() || buckets.len() > MAX_BUCKETS {
        let msg = format!("histograms.buckets needs 1 to {MAX_BUCKETS} bucket bounds");
        return Err(Invalid(at(None), msg));
    }
    for (i, pair) in buckets.windows(2).enumerate() {
        if pair[1].0 <= pair[0].0 {
            let msg = format!(
                "bucket bounds must increase: {} does not come after {}",
                pair[1], pair[0]
            );
            return Err(Invalid(at(Some(i + 1)), msg));
        }
    }
    if buckets[0].0.is_zero() {
        return Err(Invalid(
            at(Some(0)),
            "bucket bounds must be above zero".into(),
        ));
    }
    detail.buckets = buckets.iter().map(|b| b.0.as_secs_f64()).collect();
    Ok(detail)
}

/// The accepted statuses and the body matchers, each key from the most specific layer that
/// sets it. Errors point into the `expect` of the most specific layer that has one.
fn validate_expect(layers: &Layers) -> Result<(Vec<StatusPattern>, Vec<Matcher>), Invalid> {
    let block = layers
        .first(|s| s.expect.as_ref())
        .map_or(layers.built_in(), |m| m.rank);
    let expect_at = |key| {
        let mut p = layers.at(block, "expect");
        p.push(Seg::Key(key));
        p
    };
    let status = layers.get_or_else(
        |s| s.expect.as_ref()?.status.as_ref(),
        || {
            vec![StatusPattern {
                low: 200,
                high: 299,
            }]
        },
    );
    if status.value.is_empty() {
        return Err(Invalid(
            expect_at("status"),
            "expect.status must list at least one status".into(),
        ));
    }
    let mut matchers = Vec::new();
    let mut seen = HashSet::new();
    for (specs, negate, key) in [
        (
            layers.first(|s| s.expect.as_ref()?.body_contains.as_ref()),
            false,
            "body_contains",
        ),
        (
            layers.first(|s| s.expect.as_ref()?.body_not_contains.as_ref()),
            true,
            "body_not_contains",
        ),
        (
            layers.first(|s| s.expect.as_ref()?.body_matches.as_ref()),
            false,
            "body_matches",
        ),
        (
            layers.first(|s| s.expect.as_ref()?.body_not_matches.as_ref()),
            true,
            "body_not_matches",
        ),
    ] {
        for (i, spec) in specs.into_iter().flat_map(|m| m.value).enumerate() {
            let at = [expect_at(key), vec![Seg::Index(i)]].concat();
            let label = spec.name.clone().unwrap_or_else(|| spec.text.clone());
            let regex = matches!(key, "body_matches" | "body_not_matches");
            matchers.push(matcher(
                "body matcher",
                spec,
                label,
                negate,
                regex,
                &mut seen,
                at,
            )?);
        }
    }
    Ok((status.value, matchers))
}

/// The checks of response headers (`expect.headers`), from the most specific layer that has
/// any. Each check is a matcher labelled `<header>: <text>` (or its `name`).
fn validate_header_checks(layers: &Layers) -> Result<Vec<HeaderCheck>, Invalid> {
    let Some(set) = layers.first(|s| s.expect.as_ref()?.headers.as_ref()) else {
        return Ok(Vec::new());
    };
    let base = [layers.at(set.rank, "expect"), vec![Seg::Key("headers")]].concat();
    let mut checks = Vec::new();
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    for (header, spec) in set.value {
        let here = [&base[..], &[Seg::Field(header.clone())]].concat();
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            let at = [&base[..], &[Seg::Name(header.clone(), 0)]].concat();
            Invalid(at, format!("invalid header name {header:?}"))
        })?;
        if !names.insert(name.clone()) {
            let at = [&base[..], &[Seg::Name(header.clone(), 0)]].concat();
            return Err(Invalid(
                at,
                format!("header {header:?} is checked twice (names ignore case)"),
            ));
        }
        let before = checks.len();
        for (key, list, negate, regex) in [
            ("contains", &spec.contains, false, false),
            ("not_contains", &spec.not_contains, true, false),
            ("matches", &spec.matches, false, true),
            ("not_matches", &spec.not_matches, true, true),
        ] {
            for (i, m) in list.iter().flat_map(|l| &l.0).enumerate() {
                let at = [&here[..], &[Seg::Key(key), Seg::Index(i)]].concat();
                let label = m
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{name}: {}", m.text));
                let matcher = matcher("header matcher", m, label, negate, regex, &mut seen, at)?;
                checks.push(HeaderCheck {
                    name: name.clone(),
                    matcher,
                    allow_missing: spec.allow_missing.unwrap_or(false),
                });
            }
        }
        if checks.len() == before {
            let msg = format!(
                "the check of {header:?} needs contains, not_contains, matches or not_matches"
            );
            return Err(Invalid(here, msg));
        }
    }
    Ok(checks)
}

/// A matcher of `spec`, with a label unique among `seen`.
fn matcher(
    what: &str,
    spec: &MatcherSpec,
    label: String,
    negate: bool,
    regex: bool,
    seen: &mut HashSet<String>,
    at: Vec<Seg>,
) -> Result<Matcher, Invalid> {
    if spec.text.is_empty() {
        return Err(Invalid(at, format!("a {what}'s text must not be empty")));
    }
    if !seen.insert(label.clone()) {
        let msg = format!("two {what}s share the label {label:?}: give one a `name`");
        return Err(Invalid(at, msg));
    }
    let pattern = if regex {
        Some(compile_pattern(&spec.text).map_err(|m| Invalid(at, m))?)
    } else {
        None
    };
    Ok(Matcher {
        label,
        text: spec.text.clone(),
        negate,
        pattern,
    })
}

/// `expect.http_versions`: the versions the final response may come in.
fn validate_http_versions(layers: &Layers) -> Result<Vec<Version>, Invalid> {
    let Some(set) = layers.first(|s| s.expect.as_ref()?.http_versions.as_ref()) else {
        return Ok(Vec::new());
    };
    let base = [
        layers.at(set.rank, "expect"),
        vec![Seg::Key("http_versions")],
    ]
    .concat();
    if set.value.is_empty() {
        let msg = "expect.http_versions must list at least one version".into();
        return Err(Invalid(base, msg));
    }
    let mut versions = Vec::new();
    for (i, text) in set.value.iter().enumerate() {
        let version = match text.trim().to_ascii_uppercase().as_str() {
            "HTTP/1.0" => Version::HTTP_10,
            "HTTP/1.1" => Version::HTTP_11,
            "HTTP/2" | "HTTP/2.0" => Version::HTTP_2,
            "HTTP/3" | "HTTP/3.0" => {
                let msg = "tickr probes over TCP: HTTP/3 is never negotiated".into();
                return Err(Invalid([&base[..], &[Seg::Index(i)]].concat(), msg));
            }
            _ => {
                let msg = format!(
                    "invalid HTTP version {text:?}: expected HTTP/1.0, HTTP/1.1 or HTTP/2.0"
                );
                return Err(Invalid([&base[..], &[Seg::Index(i)]].concat(), msg));
            }
        };
        versions.push(version);
    }
    Ok(versions)
}

fn validate_url(raw: &str, secret_params: &[String]) -> Result<Url, String> {
    // Messages quote the URL as tickr would show it: a key in its query is a secret too.
    let shown = || redact::url(raw, secret_params);
    let url = Url::parse(raw).map_err(|e| {
        let shown = shown();
        match e {
            url::ParseError::RelativeUrlWithoutBase => {
                format!("invalid URL {shown:?}: it needs a scheme, e.g. \"https://{shown}\"")
            }
            e => format!("invalid URL {shown:?}: {e}"),
        }
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "URL scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The URL is exposed as a label; credentials belong in `headers` (Authorization).
        return Err("URL must not carry credentials: put them in `headers` (Authorization)".into());
    }
    // The probe builds its request from an `http::Uri`, which is stricter than the URL
    // standard: `url` keeps `"`, `` ` ``, `{` and `}` in a host name.
    if let Err(e) = url.as_str().parse::<http::Uri>() {
        return Err(format!(
            "invalid URL {:?}: an HTTP request cannot carry it ({e})",
            shown()
        ));
    }
    Ok(url)
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with("__")
    {
        return Err(format!(
            "invalid label name {name:?}: expected [a-zA-Z_][a-zA-Z0-9_]*, not starting with __"
        ));
    }
    if name == LOCATION_LABEL {
        // A target's own place (its data centre, say) read as the prober's would mislead
        // the location alerts.
        return Err(format!(
            "label name {name:?} is where tickr probes from (global.location or --probe.location); name the target's own place otherwise, e.g. \"site\""
        ));
    }
    if RESERVED_LABELS.contains(&name) {
        return Err(format!("label name {name:?} is used by tickr itself"));
    }
    Ok(())
}

/// The client TLS settings, each key from the most specific layer that sets it. Errors point
/// into the `tls` of the most specific layer that has one.
fn validate_tls(layers: &Layers, dir: &Path) -> Result<Arc<ClientTls>, Invalid> {
    let block = layers
        .first(|s| s.tls.as_ref())
        .map_or(layers.built_in(), |m| m.rank);
    let tls_at = |key| {
        let mut p = layers.at(block, "tls");
        p.push(Seg::Key(key));
        p
    };
    let ca_file = layers
        .first(|s| s.tls.as_ref()?.ca_file.as_ref())
        .map(|m| dir.join(m.value));
    let cert = layers.first(|s| s.tls.as_ref()?.cert_file.as_ref());
    let key = layers.first(|s| s.tls.as_ref()?.key_file.as_ref());
    let client_files = match (cert, key) {
        (Some(c), Some(k)) => Some((dir.join(c.value), dir.join(k.value))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Invalid(
                tls_at("cert_file"),
                "cert_file needs key_file too".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Invalid(
                tls_at("key_file"),
                "key_file needs cert_file too".into(),
            ))
        }
    };
    let min = layers.first(|s| s.tls.as_ref()?.min_version.as_ref());
    let max = layers.first(|s| s.tls.as_ref()?.max_version.as_ref());
    let versions = TlsVersions::new(
        min.as_ref().map_or(TlsVersion::Tls12, |m| *m.value),
        max.as_ref().map_or(TlsVersion::Tls13, |m| *m.value),
    )
    .map_err(|msg| {
        // The conflict is the more specific layer's doing.
        let (rank, key) = match (&min, &max) {
            (Some(lo), Some(hi)) if hi.rank < lo.rank => (hi.rank, "max_version"),
            (Some(lo), _) => (lo.rank, "min_version"),
            (None, Some(hi)) => (hi.rank, "max_version"),
            (None, None) => (block, "min_version"),
        };
        let mut p = layers.at(rank, "tls");
        p.push(Seg::Key(key));
        Invalid(p, msg)
    })?;
    let settings = TlsSettings {
        ca_file,
        client_files,
        insecure_skip_verify: layers
            .get(|s| s.tls.as_ref()?.insecure_skip_verify.as_ref(), false)
            .value,
        server_name: layers
            .first(|s| s.tls.as_ref()?.server_name.as_ref())
            .map(|m| m.value.clone()),
        versions,
    };
    ClientTls::shared(settings).map_err(|(key, msg)| Invalid(tls_at(key), msg))
}
