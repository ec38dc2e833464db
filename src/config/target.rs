//! One target, validated: [`Target`] with every default applied, and the steps that build it
//! from the target's settings over its module's and `defaults`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::Method;
use url::Url;

use super::error::{at, Invalid};
use super::file::{
    ByteSize, ExpectTls, HttpVersion, HumanDuration, IpProtocol, PhaseDetail, Settings,
    StatusPattern,
};
use super::locate::Seg;
use super::merge::Layers;
use super::proxy::{self, Proxy};
use crate::limits::{
    MAX_ADDRESSES, MAX_BODY_LIMIT, MAX_BUCKETS, MAX_CONFIRM, MAX_PATTERN_BYTES, MIN_INTERVAL,
};
use crate::redact::{self, Secrets};
use crate::tls::{ClientTls, TlsSettings, TlsVersion, TlsVersions};

/// Label names tickr uses itself, which a target's `labels` must not shadow.
pub const RESERVED_LABELS: &[&str] = &[
    "target",
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

/// One target, with every default applied.
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
    pub interval: Duration,
    pub timeout: Duration,
    pub method: Method,
    /// Every value is marked sensitive: header values are treated as secrets.
    pub headers: HeaderMap,
    /// The configured header values and secret parameter values, for events to replace
    /// wherever a server echoes them.
    pub secrets: Secrets,
    pub body: Bytes,
    pub follow_redirects: bool,
    pub max_body_bytes: u64,
    pub ip_protocol: IpProtocol,
    pub http_version: HttpVersion,
    pub tls: Arc<ClientTls>,
    /// The forward proxy probes go through, for the URLs it applies to; `None`: always direct.
    pub proxy: Option<Arc<Proxy>>,
    pub expect_status: Vec<StatusPattern>,
    pub matchers: Vec<Matcher>,
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
}

/// Written out by hand so that the URL shows as [`Target::shown_url`]: its query may hold a key.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("module", &self.module)
            .field("url", &self.shown_url)
            .field("labels", &self.labels)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("secrets", &self.secrets)
            .field("body", &self.body)
            .field("follow_redirects", &self.follow_redirects)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("ip_protocol", &self.ip_protocol)
            .field("http_version", &self.http_version)
            .field("tls", &self.tls)
            .field("proxy", &self.proxy)
            .field("expect_status", &self.expect_status)
            .field("matchers", &self.matchers)
            .field("expect_tls", &self.expect_tls)
            .field("confirm", &self.confirm)
            .field("confirm_delay", &self.confirm_delay)
            .field("per_address", &self.per_address)
            .field("addresses", &self.addresses)
            .field("histograms", &self.histograms)
            .finish()
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
    let headers = validate_headers(&layers)?;
    let proxy = proxy::validate_proxy(&layers, secret_params)?;
    let secrets = Secrets::new(
        headers
            .values()
            .filter(|v| v.is_sensitive())
            .map(HeaderValue::as_bytes)
            .map(<[u8]>::to_vec)
            .chain(redact::url_secrets(url.as_str(), secret_params))
            .chain(proxy.iter().flat_map(proxy::secrets)),
    );
    let body = Bytes::from(layers.get(|s| s.body.as_ref(), String::new()).value);
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
    Ok(Target {
        name,
        module: module.map(|(name, _)| name.to_owned()),
        url,
        shown_url,
        labels,
        interval,
        timeout,
        method,
        headers,
        secrets,
        body,
        follow_redirects: layers.get(|s| s.follow_redirects.as_ref(), true).value,
        max_body_bytes,
        ip_protocol: layers
            .get(|s| s.ip_protocol.as_ref(), IpProtocol::Auto)
            .value,
        http_version: layers
            .get(|s| s.http_version.as_ref(), HttpVersion::Auto)
            .value,
        tls,
        proxy: proxy.map(Arc::new),
        expect_status,
        matchers,
        expect_tls: layers
            .first(|s| s.expect.as_ref()?.tls.as_ref())
            .map(|m| *m.value),
        confirm,
        confirm_delay,
        per_address: per_address.value,
        addresses,
        histograms,
    })
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

/// tickr's `User-Agent`, then each layer's headers, least specific first: a more specific
/// layer's header replaces one of the same name.
fn validate_headers(layers: &Layers) -> Result<HeaderMap, Invalid> {
    let mut headers = HeaderMap::new();
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tickr/", env!("CARGO_PKG_VERSION"))),
    );
    for layer in layers.each(|s| s.headers.as_ref()) {
        for (k, v) in &layer.value.0 {
            let at = |seg| [layers.at(layer.rank, "headers"), vec![seg]].concat();
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                Invalid(
                    at(Seg::Name(k.clone(), 0)),
                    format!("invalid header name {k:?}"),
                )
            })?;
            // The value is a secret as far as tickr knows: never echo it.
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                Invalid(
                    at(Seg::Field(k.clone())),
                    format!("header {k:?} has a value that is not valid in HTTP"),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    }
    Ok(headers)
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
            let at = || [expect_at(key), vec![Seg::Index(i)]].concat();
            let label = spec.name.clone().unwrap_or_else(|| spec.text.clone());
            if spec.text.is_empty() {
                return Err(Invalid(
                    at(),
                    "a body matcher's text must not be empty".into(),
                ));
            }
            if !seen.insert(label.clone()) {
                let msg = format!("two body matchers share the label {label:?}: give one a `name`");
                return Err(Invalid(at(), msg));
            }
            let pattern = match key {
                "body_matches" | "body_not_matches" => {
                    Some(compile_pattern(&spec.text).map_err(|m| Invalid(at(), m))?)
                }
                _ => None,
            };
            matchers.push(Matcher {
                label,
                text: spec.text.clone(),
                negate,
                pattern,
            });
        }
    }
    Ok((status.value, matchers))
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
