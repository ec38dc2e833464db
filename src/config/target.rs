//! One target, validated: [`Target`] with every default applied, and the steps that build it
//! from the target's settings over `defaults`.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::Method;
use url::Url;

use super::error::{at, Invalid};
use super::file::{HttpVersion, HumanDuration, IpProtocol, PhaseDetail, Settings, StatusPattern};
use super::locate::Seg;
use crate::limits::{MAX_ADDRESSES, MAX_BODY_LIMIT, MAX_BUCKETS, MAX_CONFIRM, MIN_INTERVAL};
use crate::redact::{self, Secrets};
use crate::tls::{ClientTls, TlsSettings};

/// Label names tickr uses itself, which a target's `labels` must not shadow.
pub const RESERVED_LABELS: &[&str] = &[
    "target", "result", "phase", "code", "class", "reason", "matcher", "layer", "address", "url",
    "le", "quantile", "version",
];

/// One target, with every default applied.
#[derive(Clone, PartialEq)]
pub struct Target {
    pub name: String,
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
    pub expect_status: Vec<StatusPattern>,
    pub matchers: Vec<Matcher>,
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
            .field("expect_status", &self.expect_status)
            .field("matchers", &self.matchers)
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

/// A body matcher. `label` is what the `matcher` label shows: the text, or the configured name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub text: String,
    /// `body_not_contains`: satisfied when the text is absent.
    pub negate: bool,
}

impl Matcher {
    pub fn is_satisfied_by(&self, body: &[u8]) -> bool {
        let found = memmem(body, self.text.as_bytes());
        found != self.negate
    }
}

fn memmem(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where a merged setting came from: the target when it sets it, else the defaults.
fn origin(base: &[Seg], target_sets: bool, key: &'static str) -> Vec<Seg> {
    if target_sets {
        at(base, key)
    } else {
        vec![Seg::Key("defaults"), Seg::Key(key)]
    }
}

pub(super) fn validate_target(
    d: &Settings,
    t: &Settings,
    dir: &Path,
    base: &[Seg],
    secret_params: &[String],
) -> Result<Target, Invalid> {
    let err = |key: &'static str, msg: String| Invalid(at(base, key), msg);
    let name = t
        .name
        .clone()
        .ok_or_else(|| Invalid(base.to_vec(), "target needs a `name`".into()))?;
    if name.trim().is_empty() {
        return Err(err("name", "target name must not be empty".into()));
    }
    let raw_url = t
        .url
        .as_deref()
        .ok_or_else(|| Invalid(base.to_vec(), format!("target {name:?} needs a `url`")))?;
    let url = validate_url(raw_url, secret_params).map_err(|m| err("url", m))?;
    let shown_url = redact::url(url.as_str(), secret_params).into_owned();

    let mut labels = d.labels.clone().unwrap_or_default();
    labels.extend(t.labels.clone().unwrap_or_default());
    for label in labels.keys() {
        check_label_name(label).map_err(|m| {
            let from_target = t.labels.as_ref().is_some_and(|l| l.contains_key(label));
            let mut at = origin(base, from_target, "labels");
            at.push(Seg::Name(label.clone(), 0));
            Invalid(at, m)
        })?;
    }

    let interval = t
        .interval
        .or(d.interval)
        .map_or(Duration::from_secs(60), |h| h.0);
    if interval < MIN_INTERVAL {
        let at = origin(base, t.interval.is_some(), "interval");
        return Err(Invalid(
            at,
            format!("interval must be at least {}", HumanDuration(MIN_INTERVAL)),
        ));
    }
    let timeout = match t.timeout.or(d.timeout) {
        Some(h) => h.0,
        None => Duration::from_secs(10).min(interval * 4 / 5),
    };
    let timeout_at = || origin(base, t.timeout.is_some(), "timeout");
    if timeout.is_zero() {
        return Err(Invalid(timeout_at(), "timeout must be above zero".into()));
    }
    if timeout >= interval {
        let at = if t.timeout.is_some() || (d.timeout.is_some() && t.interval.is_none()) {
            timeout_at()
        } else {
            origin(base, t.interval.is_some(), "interval")
        };
        let (timeout, interval) = (HumanDuration(timeout), HumanDuration(interval));
        return Err(Invalid(
            at,
            format!("timeout ({timeout}) must be shorter than the interval ({interval})"),
        ));
    }

    let method_text = t.method.as_deref().or(d.method.as_deref()).unwrap_or("GET");
    let method = Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()).map_err(|_| {
        Invalid(
            origin(base, t.method.is_some(), "method"),
            format!("invalid HTTP method {method_text:?}"),
        )
    })?;

    let mut headers = HeaderMap::new();
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tickr/", env!("CARGO_PKG_VERSION"))),
    );
    for (source, set) in [(&d.headers, false), (&t.headers, true)] {
        for (k, v) in source.iter().flat_map(|h| h.0.iter()) {
            let at = |seg| [origin(base, set, "headers"), vec![seg]].concat();
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
    let secrets = Secrets::new(
        headers
            .values()
            .filter(|v| v.is_sensitive())
            .map(HeaderValue::as_bytes)
            .map(<[u8]>::to_vec)
            .chain(redact::url_secrets(url.as_str(), secret_params)),
    );
    let body = Bytes::from(
        t.body
            .clone()
            .or_else(|| d.body.clone())
            .unwrap_or_default(),
    );

    let max_body_bytes = t
        .max_body_bytes
        .or(d.max_body_bytes)
        .map_or(1 << 20, |b| b.0);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        let at = origin(base, t.max_body_bytes.is_some(), "max_body_bytes");
        return Err(Invalid(
            at,
            format!(
                "max_body_bytes must be between 1 and {} bytes",
                MAX_BODY_LIMIT
            ),
        ));
    }

    let tls = validate_tls(d, t, dir, base)?;

    let mut addresses = Vec::new();
    for (i, text) in t.addresses.iter().flatten().enumerate() {
        let at = [at(base, "addresses"), vec![Seg::Index(i)]].concat();
        let ip = text
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        addresses.push(ip.map_err(|_| Invalid(at, format!("invalid IP address {text:?}")))?);
    }
    if addresses.len() > MAX_ADDRESSES {
        return Err(Invalid(
            at(base, "addresses"),
            format!("at most {MAX_ADDRESSES} addresses"),
        ));
    }

    let confirm = t.confirm.or(d.confirm).unwrap_or(0);
    let confirm_delay = t
        .confirm_delay
        .or(d.confirm_delay)
        .map_or(Duration::from_millis(500), |h| h.0);
    if confirm > MAX_CONFIRM {
        let at = origin(base, t.confirm.is_some(), "confirm");
        return Err(Invalid(
            at,
            format!("confirm must be at most {MAX_CONFIRM}"),
        ));
    }
    // The follow-ups must fit before the next probe, or they would push it back.
    let burst = (timeout + confirm_delay) * confirm as u32 + timeout;
    if confirm > 0 && burst > interval {
        let at = origin(base, t.confirm.is_some(), "confirm");
        let msg = format!(
            "{confirm} confirmations of up to {} each, after a probe of up to {}, do not fit in the interval ({})",
            HumanDuration(timeout + confirm_delay),
            HumanDuration(timeout),
            HumanDuration(interval)
        );
        return Err(Invalid(at, msg));
    }

    let histograms = validate_histograms(d, t, base)?;

    let te = t.expect.clone().unwrap_or_default();
    let de = d.expect.clone().unwrap_or_default();
    let expect_at = |key| {
        let mut p = origin(base, t.expect.is_some(), "expect");
        p.push(Seg::Key(key));
        p
    };
    let expect_status = te.status.or(de.status).unwrap_or_else(|| {
        vec![StatusPattern {
            low: 200,
            high: 299,
        }]
    });
    if expect_status.is_empty() {
        return Err(Invalid(
            expect_at("status"),
            "expect.status must list at least one status".into(),
        ));
    }
    let mut matchers = Vec::new();
    let mut seen = HashSet::new();
    for (specs, negate, key) in [
        (
            te.body_contains.or(de.body_contains),
            false,
            "body_contains",
        ),
        (
            te.body_not_contains.or(de.body_not_contains),
            true,
            "body_not_contains",
        ),
    ] {
        for (i, spec) in specs.unwrap_or_default().into_iter().enumerate() {
            let at = || [expect_at(key), vec![Seg::Index(i)]].concat();
            let label = spec.name.unwrap_or_else(|| spec.text.clone());
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
            matchers.push(Matcher {
                label,
                text: spec.text,
                negate,
            });
        }
    }

    Ok(Target {
        name,
        url,
        shown_url,
        labels: labels.into_iter().collect(),
        interval,
        timeout,
        method,
        headers,
        secrets,
        body,
        follow_redirects: t.follow_redirects.or(d.follow_redirects).unwrap_or(true),
        max_body_bytes,
        ip_protocol: t.ip_protocol.or(d.ip_protocol).unwrap_or(IpProtocol::Auto),
        http_version: t
            .http_version
            .or(d.http_version)
            .unwrap_or(HttpVersion::Auto),
        tls,
        expect_status,
        matchers,
        confirm,
        confirm_delay,
        per_address: t.per_address.or(d.per_address).unwrap_or(false),
        addresses,
        histograms,
    })
}

/// The histogram detail, each of its keys from the target or else the defaults.
fn validate_histograms(
    d: &Settings,
    t: &Settings,
    base: &[Seg],
) -> Result<HistogramDetail, Invalid> {
    let (th, dh) = (
        t.histograms.clone().unwrap_or_default(),
        d.histograms.clone().unwrap_or_default(),
    );
    let mut detail = HistogramDetail::default();
    if let Some(phases) = th.phases.or(dh.phases) {
        detail.phases = phases;
    }
    let from_target = th.buckets.is_some();
    let Some(buckets) = th.buckets.or(dh.buckets) else {
        return Ok(detail);
    };
    let at = |i: Option<usize>| {
        let mut p = origin(base, from_target, "histograms");
        p.push(Seg::Key("buckets"));
        p.extend(i.map(Seg::Index));
        p
    };
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

fn validate_tls(
    d: &Settings,
    t: &Settings,
    dir: &Path,
    base: &[Seg],
) -> Result<Arc<ClientTls>, Invalid> {
    let dt = d.tls.clone().unwrap_or_default();
    let tt = t.tls.clone().unwrap_or_default();
    let tls_at = |key| {
        let mut p = origin(base, t.tls.is_some(), "tls");
        p.push(Seg::Key(key));
        p
    };
    let read = |p: &PathBuf, key: &'static str| -> Result<Vec<u8>, Invalid> {
        let full = dir.join(p);
        std::fs::read(&full)
            .map_err(|e| Invalid(tls_at(key), format!("cannot read {}: {e}", full.display())))
    };
    let ca_pem = tt
        .ca_file
        .as_ref()
        .or(dt.ca_file.as_ref())
        .map(|p| read(p, "ca_file"))
        .transpose()?;
    let cert = tt.cert_file.as_ref().or(dt.cert_file.as_ref());
    let key = tt.key_file.as_ref().or(dt.key_file.as_ref());
    let client_pem = match (cert, key) {
        (Some(c), Some(k)) => Some((read(c, "cert_file")?, read(k, "key_file")?)),
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
    let server_name = tt.server_name.or(dt.server_name);
    let settings = TlsSettings {
        ca_pem,
        client_pem,
        insecure_skip_verify: tt
            .insecure_skip_verify
            .or(dt.insecure_skip_verify)
            .unwrap_or(false),
        server_name,
    };
    ClientTls::new(settings)
        .map(Arc::new)
        .map_err(|(key, msg)| Invalid(tls_at(key), msg))
}
