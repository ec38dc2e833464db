//! The configuration file exactly as users write it: a strict serde mirror of `config.yml`.
//!
//! Scalars with their own syntax (durations, sizes, status patterns) are parsed here, while the
//! parser still knows their position; everything that needs more than one node is checked in
//! [`super::validate`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::locate::Seg;
use crate::tls::TlsVersion;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub global: Global,
    #[serde(default)]
    pub defaults: Settings,
    /// Named sets of target settings, between a target and `defaults`.
    #[serde(default)]
    pub modules: BTreeMap<String, Settings>,
    #[serde(default)]
    pub targets: Vec<Settings>,
    /// Where more targets come from: files and HTTP inventories in Prometheus' SD formats.
    #[serde(default)]
    pub target_sources: Vec<SourceSpec>,
    #[serde(default)]
    pub diagnosis: Diagnosis,
}

/// One target source: exactly one of `file_sd` and `http_sd`, and how its entries become
/// targets.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: Option<String>,
    /// File names or globs (in the last path element), relative to the configuration file.
    pub file_sd: Option<Vec<String>>,
    pub http_sd: Option<HttpSdSpec>,
    /// How often `file_sd` files are checked for a change.
    pub refresh: Option<HumanDuration>,
    pub module: Option<String>,
    /// For entries given as `host[:port]`.
    pub scheme: Option<String>,
    pub path: Option<String>,
}

/// An HTTP inventory in Prometheus' HTTP SD format, and the client settings to fetch it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdSpec {
    pub url: Option<String>,
    pub refresh: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub headers: Option<Headers>,
    pub tls: Option<Tls>,
}

/// How tickr explains failures: the event recorder and the layer fingerprints.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diagnosis {
    pub events: Option<usize>,
    pub body_excerpt: Option<ByteSize>,
    pub redact_headers: Option<Vec<String>>,
    pub redact_query_params: Option<Vec<String>>,
    pub fingerprints: Option<Vec<FingerprintSpec>>,
    pub origin: Option<Vec<SignalsSpec>>,
}

/// A user fingerprint: the layer it names and the signals that identify it (all must match:
/// headers containing a text, `""` meaning present, and body texts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintSpec {
    pub layer: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Vec<String>,
}

/// An application signature: signals that all match the user's own error responses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalsSpec {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Vec<String>,
}

/// Settings of the exporter itself, not of any one target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub max_concurrent_probes: Option<usize>,
    /// Where this tickr probes from: the `location` label of every per-target series.
    pub location: Option<String>,
}

/// One target, a module, or the defaults every target starts from (only a target may set
/// `name`, `url` and `module`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub name: Option<String>,
    pub url: Option<String>,
    pub module: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<HumanDuration>,
    pub method: Option<String>,
    pub headers: Option<Headers>,
    /// `Authorization: Basic …` from a username and an inline or file password.
    pub basic_auth: Option<Box<BasicAuthSpec>>,
    /// `Authorization: Bearer …` with the token read from a file.
    pub bearer_token_file: Option<PathBuf>,
    pub body: Option<String>,
    /// The request body, read from a file (and again when it changes).
    pub body_file: Option<PathBuf>,
    pub follow_redirects: Option<bool>,
    pub max_body_bytes: Option<ByteSize>,
    pub ip_protocol: Option<IpProtocol>,
    /// The local address probes connect from.
    pub source_address: Option<String>,
    pub http_version: Option<HttpVersion>,
    pub tls: Option<Box<Tls>>,
    /// A forward proxy for the probes (see [`super::proxy`]).
    pub proxy_url: Option<String>,
    pub proxy_connect_headers: Option<Headers>,
    pub no_proxy: Option<Box<super::proxy::NoProxyList>>,
    pub proxy_from_environment: Option<bool>,
    pub confirm: Option<usize>,
    pub confirm_delay: Option<HumanDuration>,
    pub per_address: Option<bool>,
    pub addresses: Option<Vec<String>>,
    /// The header each request carries the probe's id in, or none.
    pub request_id: Option<RequestIdSpec>,
    /// Whether requests carry a W3C `traceparent`, and its sampled flag.
    pub traceparent: Option<TraceparentSpec>,
    pub expect: Option<Box<Expect>>,
    pub histograms: Option<Box<Histograms>>,
    /// Only in a module: what `/probe` may do with targets of this module.
    pub probe_endpoint: Option<Box<ProbeEndpointSpec>>,
}

/// `/probe`'s leave to add targets: URLs matching one of `adopt` (regexes), forgotten after
/// `forget_after` without a request.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeEndpointSpec {
    pub adopt: Option<Vec<String>>,
    pub forget_after: Option<HumanDuration>,
}

/// How much of `tickr_probe_duration_seconds` to keep: which phases, which buckets.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histograms {
    pub phases: Option<PhaseDetail>,
    pub buckets: Option<Vec<HumanDuration>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseDetail {
    /// A histogram per phase, and `total`.
    All,
    /// `total` only.
    Total,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: Option<bool>,
    pub server_name: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
}

/// `TLS12`, `TLS 1.3`, `1.2`…: see [`TlsVersion::parse`]. An unquoted `1.2` is a YAML number.
impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TlsVersion;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TLS version: TLS12 or TLS13")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TlsVersion, E> {
                TlsVersion::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TlsVersion, E> {
                TlsVersion::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `request_id`: a header name, `true` for `X-Request-Id`, or `false` for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestIdSpec {
    Off,
    /// The default name.
    On,
    Header(String),
}

impl<'de> Deserialize<'de> for RequestIdSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RequestIdSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header name (such as X-Request-Id), or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RequestIdSpec, E> {
                Ok(if v {
                    RequestIdSpec::On
                } else {
                    RequestIdSpec::Off
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RequestIdSpec, E> {
                Ok(RequestIdSpec::Header(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `traceparent`: `true`, `false`, or `{sampled: true|false}` (sent, with that flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceparentSpec {
    Off,
    On { sampled: Option<bool> },
}

impl<'de> Deserialize<'de> for TraceparentSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TraceparentSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or {sampled: true|false}")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TraceparentSpec, E> {
                Ok(if v {
                    TraceparentSpec::On { sampled: None }
                } else {
                    TraceparentSpec::Off
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TraceparentSpec, A::Error> {
                let mut sampled = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "sampled" if sampled.is_none() => sampled = Some(map.next_value()?),
                        "sampled" => return Err(de::Error::duplicate_field("sampled")),
                        other => return Err(de::Error::unknown_field(other, &["sampled"])),
                    }
                }
                Ok(TraceparentSpec::On { sampled })
            }
        }
        d.deserialize_any(V)
    }
}

/// `expect.tls`: whether the final response must have come over TLS, or must not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectTls {
    Required,
    Forbidden,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<Vec<StatusPattern>>,
    pub body_contains: Option<Vec<MatcherSpec>>,
    pub body_not_contains: Option<Vec<MatcherSpec>>,
    /// Regular expressions the body must (not) match.
    pub body_matches: Option<Vec<MatcherSpec>>,
    pub body_not_matches: Option<Vec<MatcherSpec>>,
    /// Checks of response headers, by header name.
    pub headers: Option<BTreeMap<String, HeaderCheckSpec>>,
    /// The HTTP versions the final response may come in, e.g. `[HTTP/1.1, HTTP/2.0]`.
    pub http_versions: Option<Vec<String>>,
    pub tls: Option<ExpectTls>,
}

/// `basic_auth`: a username, and exactly one of `password` and `password_file`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSpec {
    pub username: Option<String>,
    pub password: Option<SecretText>,
    pub password_file: Option<PathBuf>,
}

/// The checks of one response header: each is a matcher (text, list of texts, or
/// `{name, text}`), and `allow_missing` passes them all when the header is absent.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderCheckSpec {
    pub contains: Option<OneOrMany<MatcherSpec>>,
    pub not_contains: Option<OneOrMany<MatcherSpec>>,
    pub matches: Option<OneOrMany<MatcherSpec>>,
    pub not_matches: Option<OneOrMany<MatcherSpec>>,
    pub allow_missing: Option<bool>,
}

/// One value or a list of them.
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Many(Vec<T>),
            One(T),
        }
        Ok(OneOrMany(match Either::deserialize(d)? {
            Either::Many(v) => v,
            Either::One(v) => vec![v],
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpProtocol {
    Auto,
    Ipv4,
    Ipv6,
    /// IPv4 when the host has an IPv4 address, else IPv6.
    #[serde(rename = "prefer_ipv4")]
    PreferIpv4,
    /// IPv6 when the host has an IPv6 address, else IPv4.
    #[serde(rename = "prefer_ipv6")]
    PreferIpv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    Auto,
    Http1,
    Http2,
}

/// A body matcher: a bare substring, or `{name: ..., text: ...}` to give it a shorter label.
#[derive(Debug, Clone)]
pub struct MatcherSpec {
    pub name: Option<String>,
    pub text: String,
}

impl<'de> Deserialize<'de> for MatcherSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MatcherVisitor)
    }
}

struct MatcherVisitor;

impl<'de> Visitor<'de> for MatcherVisitor {
    type Value = MatcherSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a substring, or a mapping with `text` and optional `name`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MatcherSpec, E> {
        Ok(MatcherSpec {
            name: None,
            text: v.to_owned(),
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<MatcherSpec, A::Error> {
        let (mut name, mut text) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value()?),
                "text" => text = Some(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, &["name", "text"])),
            }
        }
        let text = text.ok_or_else(|| de::Error::missing_field("text"))?;
        Ok(MatcherSpec { name, text })
    }
}

/// Request headers, in file order. Values are secrets: no error message repeats one.
#[derive(Debug, Clone, Default)]
pub struct Headers(pub Vec<(String, HeaderValueSpec)>);

/// A request header's value: text, or `{file: PATH}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValueSpec {
    Text(String),
    File(PathBuf),
    /// A scalar YAML reads as something other than text (`0x1F`, `true`, `~`): replaced by its
    /// text as written ([`Headers::fill`]) before anything reads it.
    Scalar,
}

impl Headers {
    /// The paths (under `at`, this mapping's own) of values to read back as written.
    pub fn scalars(&self, at: &[Seg]) -> impl Iterator<Item = Vec<Seg>> + '_ {
        let at = at.to_vec();
        self.0
            .iter()
            .filter(|(_, v)| *v == HeaderValueSpec::Scalar)
            .map(move |(name, _)| [&at[..], &[Seg::Field(name.clone())]].concat())
    }

    /// Replaces each [`HeaderValueSpec::Scalar`] under `at` with its text in `written`.
    pub fn fill(&mut self, at: &[Seg], written: &HashMap<Vec<Seg>, String>) {
        for (name, value) in &mut self.0 {
            if *value == HeaderValueSpec::Scalar {
                let path = [at, &[Seg::Field(name.clone())]].concat();
                let text = written.get(&path).cloned().unwrap_or_default();
                *value = HeaderValueSpec::Text(text);
            }
        }
    }
}

impl<'de> Deserialize<'de> for HeaderValueSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(HeaderValueVisitor)
    }
}

struct HeaderValueVisitor;

const HEADER_VALUE_EXPECTED: &str = "a header value (text) or {file: PATH}";

impl<'de> Visitor<'de> for HeaderValueVisitor {
    type Value = HeaderValueSpec;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(HEADER_VALUE_EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Text(v.to_owned()))
    }

    // The value as YAML typed it has lost how it was written: read again as text after parsing.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<HeaderValueSpec, E> {
        Ok(HeaderValueSpec::Scalar)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderValueSpec, A::Error> {
        let mut file = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "file" if file.is_none() => file = Some(map.next_value::<PathBuf>()?),
                "file" => return Err(de::Error::duplicate_field("file")),
                other => return Err(de::Error::unknown_field(other, &["file"])),
            }
        }
        file.map(HeaderValueSpec::File)
            .ok_or_else(|| de::Error::missing_field("file"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<HeaderValueSpec, A::Error> {
        Err(de::Error::custom(format!(
            "a header value must be {HEADER_VALUE_EXPECTED}, not a list"
        )))
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_any`: with `deserialize_map`, the parser itself would reject a scalar and
        // quote it in the message.
        d.deserialize_any(HeadersVisitor)
    }
}

struct HeadersVisitor;

const HEADERS_EXPECTED: &str =
    "a mapping of header names to values, e.g. {Authorization: Bearer ...}";

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Headers;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(HEADERS_EXPECTED)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
        let mut headers = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value::<HeaderValueSpec>()?;
            headers.push((name, value));
        }
        Ok(Headers(headers))
    }

    // serde's default messages quote the offending value, which here may be a token.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Headers, E> {
        Err(E::custom(format!(
            "headers must be {HEADERS_EXPECTED}, not a string"
        )))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Headers, A::Error> {
        Err(de::Error::custom(format!(
            "headers must be {HEADERS_EXPECTED}, not a list"
        )))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Headers, E> {
        Err(E::custom(format!(
            "headers must be {HEADERS_EXPECTED}, not a number"
        )))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Headers, E> {
        Err(E::custom(format!(
            "headers must be {HEADERS_EXPECTED}, not a number"
        )))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Headers, E> {
        Err(E::custom(format!(
            "headers must be {HEADERS_EXPECTED}, not a boolean"
        )))
    }
}

/// A scalar read as text, exactly as written, whose errors never echo it.
///
/// `deserialize_str`, not `deserialize_any`: YAML reads `X-Api-Key: 0x1F` as the number 31 (a
/// different key would be sent), and `1.50` or `12345678901234567890123` as numbers that a type
/// error would quote. As text, any scalar is the value written in the file.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("SecretText(…)")
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SecretText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value (text)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretText, E> {
                Ok(SecretText(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A duration written the Prometheus way: `500ms`, `30s`, `1m30s`, `2h`, `1d`.
///
/// Counted in milliseconds in a `u64` (up to 584 million years), like Prometheus's own: the sum
/// of the parts must fit, and so the factors validation multiplies durations by (timeout ×
/// confirmations, …) cannot overflow a [`Duration`]. Anything [`fmt::Display`] prints parses back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let invalid = || format!("invalid duration {s:?}: expected e.g. 500ms, 30s, 1m30s, 2h");
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut total_ms: u64 = 0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(invalid)?;
            if digits == 0 {
                return Err(invalid());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_ms: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                _ => return Err(invalid()),
            };
            rest = &rest[unit_len..];
            total_ms = n
                .checked_mul(unit_ms)
                .and_then(|part| total_ms.checked_add(part))
                .ok_or_else(invalid)?;
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a visitor, so that an error carries the value's own position.
        d.deserialize_any(NumberOrString(Self::parse, "a duration such as 30s"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let mut secs = d.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

/// A size in bytes: `4096`, `512KiB`, `1MiB`, `1MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let invalid = || format!("invalid size {s:?}: expected e.g. 65536, 512KiB, 1MiB");
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n: u64 = s[..split].parse().map_err(|_| invalid())?;
        let unit: u64 = match s[split..].trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            _ => return Err(invalid()),
        };
        n.checked_mul(unit).map(Self).ok_or_else(invalid)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrString(Self::parse, "a size such as 1MiB"))
    }
}

/// An expected status: one code (`200`), a class (`2xx`) or an inclusive range (`200-299`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusPattern {
    pub low: u16,
    pub high: u16,
}

impl StatusPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid status {s:?}: expected a code (200), a class (5xx) or a range (200-299)"
            )
        };
        let code = |t: &str| -> Result<u16, String> {
            match t.trim().parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => Ok(c),
                _ => Err(invalid()),
            }
        };
        let s = s.trim();
        let pattern = if let Some((a, b)) = s.split_once('-') {
            Self {
                low: code(a)?,
                high: code(b)?,
            }
        } else if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let c = code(&format!("{class}00"))?;
            Self {
                low: c,
                high: c + 99,
            }
        } else {
            let c = code(s)?;
            Self { low: c, high: c }
        };
        if pattern.low > pattern.high {
            return Err(invalid());
        }
        Ok(pattern)
    }

    pub fn matches(&self, code: u16) -> bool {
        (self.low..=self.high).contains(&code)
    }
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else if self.low.is_multiple_of(100) && self.high == self.low + 99 {
            write!(f, "{}xx", self.low / 100)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NumberOrString(
            Self::parse,
            "a status such as 200, 5xx or 200-299",
        ))
    }
}

/// Accepts a YAML number or string and hands its text to a parser.
struct NumberOrString<T>(fn(&str) -> Result<T, String>, &'static str);

impl<T> Visitor<'_> for NumberOrString<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.0)(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.0)(&v.to_string()).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = |s: &str| HumanDuration::parse(s).unwrap().0;
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(HumanDuration(Duration::from_secs(90)).to_string(), "1m30s");
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        for bad in ["", "10", "1.5s", "5 min", "s", "-1s", "1y"] {
            assert!(
                HumanDuration::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("1MiB").unwrap().0, 1 << 20);
        assert_eq!(ByteSize::parse("1000").unwrap().0, 1000);
        assert_eq!(ByteSize::parse("2 KB").unwrap().0, 2000);
        assert!(ByteSize::parse("1PiB").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn status_patterns() {
        let p = |s: &str| StatusPattern::parse(s).unwrap();
        assert!(p("2xx").matches(204) && !p("2xx").matches(302));
        assert!(p("200-399").matches(302));
        assert!(p("502").matches(502) && !p("502").matches(503));
        assert_eq!(p("5xx").to_string(), "5xx");
        assert_eq!(p("200-204").to_string(), "200-204");
        for bad in ["6xx", "abc", "99", "300-200", "2x"] {
            assert!(
                StatusPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
