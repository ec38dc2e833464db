//! A target's forward proxy: `proxy_url` or the environment's (`proxy_from_environment`),
//! `no_proxy`, and the headers the proxy is sent (`proxy_connect_headers`, and the credentials
//! in the proxy URL), validated into a [`Proxy`] that a probe asks, URL by URL, which way to go.
//!
//! The environment is read when the configuration is loaded (and on each reload), like the rest
//! of the file: a probe never looks at it.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use http::header::{HeaderMap, HeaderValue, PROXY_AUTHORIZATION};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use url::{Host, Url};

use super::error::Invalid;
use super::locate::Seg;
use super::merge::{Layers, Rank};
use super::secret::FileHeader;
use super::target::merge_headers;
use crate::redact;

/// Which proxy a target's probes use, for which URLs.
#[derive(Clone, PartialEq)]
pub struct Proxy {
    /// For `http://` URLs.
    pub http: Option<Arc<ProxyEndpoint>>,
    /// For `https://` URLs.
    pub https: Option<Arc<ProxyEndpoint>>,
    pub no_proxy: NoProxy,
}

impl Proxy {
    /// The headers from files that either endpoint sends, for redaction.
    pub fn file_headers(&self) -> impl Iterator<Item = &FileHeader> {
        [&self.http, &self.https]
            .into_iter()
            .flatten()
            .flat_map(|e| &e.files)
    }

    /// The proxy a request for `url` goes through, or `None` to go direct.
    pub fn route(&self, url: &Url) -> Option<&ProxyEndpoint> {
        let endpoint = match url.scheme() {
            "https" => self.https.as_deref(),
            _ => self.http.as_deref(),
        }?;
        let host = url.host()?;
        let port = url.port_or_known_default().unwrap_or(80);
        (!self.no_proxy.matches(&host, port)).then_some(endpoint)
    }
}

/// Written out by hand: the endpoints show as their redacted URLs.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("http", &self.http.as_ref().map(|e| &e.shown))
            .field("https", &self.https.as_ref().map(|e| &e.shown))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// One proxy: where it listens, whether tickr speaks TLS to it, and what it is sent.
#[derive(Clone, PartialEq)]
pub struct ProxyEndpoint {
    /// Host as a URL writes it (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    /// An `https://` proxy: the connection to it is TLS, before any CONNECT.
    pub tls: bool,
    /// The proxy's URL as events and logs show it: credentials replaced.
    pub shown: Arc<str>,
    /// `proxy_connect_headers`, then `Proxy-Authorization` from the URL's credentials; every
    /// value marked sensitive. Sent on CONNECT; a request forwarded in absolute form carries
    /// only `Proxy-Authorization`, since a proxy passes the others on to the target.
    pub headers: HeaderMap,
    /// `proxy_connect_headers` whose values come from files, read for each CONNECT.
    pub files: Vec<FileHeader>,
}

impl ProxyEndpoint {
    /// The headers a CONNECT carries now: the fixed ones and the current values of those from
    /// files.
    pub fn connect_headers(&self) -> std::borrow::Cow<'_, HeaderMap> {
        if self.files.is_empty() {
            return std::borrow::Cow::Borrowed(&self.headers);
        }
        let mut headers = self.headers.clone();
        for f in &self.files {
            headers.insert(f.name.clone(), f.value());
        }
        std::borrow::Cow::Owned(headers)
    }
}

impl fmt::Debug for ProxyEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Hosts that bypass the proxy, with curl's and Go's meaning: `example.com` is that name and its
/// subdomains, `.example.com` its subdomains only, `*` everything, and IP addresses and CIDR
/// ranges match URLs that name an address (a name is never resolved for it). An entry may end
/// in `:port` to bypass only that port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<(Bypass, Option<u16>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bypass {
    /// A lowercase domain without trailing dot; `true`: subdomains only.
    Domain(String, bool),
    Net(IpAddr, u8),
}

impl NoProxy {
    /// Parses the entries; an error names the entry that is not a host, address or range.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Self::default();
        for raw in entries {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                out.all = true;
                continue;
            }
            out.entries.push(parse_entry(entry)?);
        }
        Ok(out)
    }

    /// Whether a request to `host:port` goes direct.
    pub fn matches(&self, host: &Host<&str>, port: u16) -> bool {
        if self.all {
            return true;
        }
        let ip = match host {
            Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
            Host::Domain(_) => None,
        };
        self.entries.iter().any(|(bypass, only)| {
            only.is_none_or(|p| p == port)
                && match (bypass, ip, host) {
                    (Bypass::Net(net, bits), Some(ip), _) => in_net(ip, *net, *bits),
                    (Bypass::Domain(d, sub_only), None, Host::Domain(name)) => {
                        domain_matches(name, d, *sub_only)
                    }
                    _ => false,
                }
        })
    }

    /// `other`'s entries added to these (the environment's `NO_PROXY` and the file's `no_proxy`).
    fn extend(&mut self, other: NoProxy) {
        self.all |= other.all;
        self.entries.extend(other.entries);
    }
}

fn parse_entry(entry: &str) -> Result<(Bypass, Option<u16>), String> {
    let invalid =
        || format!("no_proxy entry {entry:?} is not a host name, IP address or CIDR range");
    if let Some((ip, bits)) = entry.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits: u8 = bits
            .parse()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(invalid)?;
        return Ok((Bypass::Net(ip, bits), None));
    }
    if let Ok(ip) = entry
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Ok((Bypass::Net(ip, bits), None));
    }
    // `host:port` or `[v6]:port`.
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) => {
            (h, Some(p.parse::<u16>().map_err(|_| invalid())?))
        }
        _ => (entry, None),
    };
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Ok((Bypass::Net(ip, bits), port));
    }
    let host = host.strip_prefix('*').unwrap_or(host);
    let sub_only = host.starts_with('.');
    let name = host
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid {
        return Err(invalid());
    }
    Ok((Bypass::Domain(name, sub_only), port))
}

fn domain_matches(host: &str, domain: &str, sub_only: bool) -> bool {
    let host = host.trim_end_matches('.');
    let Some(prefix) = host.len().checked_sub(domain.len()) else {
        return false;
    };
    if !host[prefix..].eq_ignore_ascii_case(domain) {
        return false;
    }
    match prefix {
        0 => !sub_only,
        n => host.as_bytes()[n - 1] == b'.',
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `no_proxy` as written: a list of entries, or one comma-separated string as in `NO_PROXY`.
#[derive(Debug, Clone, Default)]
pub struct NoProxyList {
    pub entries: Vec<String>,
    pub written_as_list: bool,
}

impl<'de> Deserialize<'de> for NoProxyList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoProxyList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of hosts, or one comma-separated string of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NoProxyList, E> {
                Ok(NoProxyList {
                    entries: vec![v.to_owned()],
                    written_as_list: false,
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<NoProxyList, A::Error> {
                let mut all = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    all.push(entry);
                }
                Ok(NoProxyList {
                    entries: all,
                    written_as_list: true,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The proxy variables of an environment, as read at load: `HTTP_PROXY`, `HTTPS_PROXY` and
/// `NO_PROXY`, each also in lower case (the upper-case name first, as Go reads them).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl Environment {
    /// This process's.
    pub fn read() -> Self {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            http_proxy: var(["HTTP_PROXY", "http_proxy"]),
            https_proxy: var(["HTTPS_PROXY", "https_proxy"]),
            no_proxy: var(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// The target's proxy from its layers: `proxy_url` or `proxy_from_environment` from the most
/// specific layer that sets either (both in one layer is an error), `no_proxy` from the most
/// specific layer that sets it, `proxy_connect_headers` merged by name like `headers`. `None`
/// when no proxy applies at all, so that a direct target carries nothing for it.
pub(super) fn validate_proxy(
    layers: &Layers,
    dir: &Path,
    secret_params: &[String],
) -> Result<Option<Proxy>, Invalid> {
    let url = layers.first(|s| s.proxy_url.as_ref());
    let env = layers.first(|s| s.proxy_from_environment.as_ref());
    let (rank_of, from_env) = match (&url, &env) {
        (Some(u), Some(e)) if u.rank == e.rank && *e.value => {
            return Err(Invalid(
                layers.at(u.rank, "proxy_url"),
                "set either proxy_url or proxy_from_environment: true, not both".into(),
            ))
        }
        (Some(u), Some(e)) if e.rank < u.rank => (e.rank, *e.value),
        (Some(u), _) => (u.rank, false),
        (None, Some(e)) => (e.rank, *e.value),
        (None, None) => return Ok(None),
    };
    let headers = connect_headers(layers, dir)?;
    let mut no_proxy = match layers.first(|s| s.no_proxy.as_ref()) {
        None => NoProxy::default(),
        Some(list) => parse_no_proxy(layers, list.rank, list.value)?,
    };
    let (http, https) = if from_env {
        let at = || layers.at(rank_of, "proxy_from_environment");
        let env = Environment::read();
        if let Some(text) = &env.no_proxy {
            let parsed = NoProxy::parse(text.split(','))
                .map_err(|m| Invalid(at(), format!("NO_PROXY: {m}")))?;
            no_proxy.extend(parsed);
        }
        let endpoint = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| {
                    endpoint(v, true, &headers, secret_params)
                        .map(Arc::new)
                        .map_err(|m| Invalid(at(), format!("{name}: {m}")))
                })
                .transpose()
        };
        (
            endpoint("HTTP_PROXY", &env.http_proxy)?,
            endpoint("HTTPS_PROXY", &env.https_proxy)?,
        )
    } else {
        let Some(url) = url.filter(|u| u.rank == rank_of) else {
            // `proxy_from_environment: false` nearer the target than any `proxy_url`.
            return Ok(None);
        };
        let one = endpoint(url.value, false, &headers, secret_params)
            .map_err(|m| Invalid(layers.at(url.rank, "proxy_url"), m))?;
        let one = Arc::new(one);
        (Some(one.clone()), Some(one))
    };
    if http.is_none() && https.is_none() {
        return Ok(None);
    }
    Ok(Some(Proxy {
        http,
        https,
        no_proxy,
    }))
}

fn parse_no_proxy(layers: &Layers, rank: Rank, list: &NoProxyList) -> Result<NoProxy, Invalid> {
    let mut out = NoProxy::default();
    for (i, entry) in list.entries.iter().enumerate() {
        let parsed = NoProxy::parse(entry.split(',')).map_err(|m| {
            // A list's error points at its entry; a comma-separated string's at the string.
            let mut at = layers.at(rank, "no_proxy");
            if list.written_as_list {
                at.push(Seg::Index(i));
            }
            Invalid(at, m)
        })?;
        out.extend(parsed);
    }
    Ok(out)
}

/// `proxy_connect_headers`, each layer's over the one below, values sensitive; values from files
/// are read again when the files change.
fn connect_headers(layers: &Layers, dir: &Path) -> Result<(HeaderMap, Vec<FileHeader>), Invalid> {
    let merged = merge_headers(
        layers,
        "proxy_connect_headers",
        |s| s.proxy_connect_headers.as_ref(),
        dir,
    )?;
    Ok((merged.fixed, merged.files))
}

/// A proxy from its URL. `bare_host`: a value from the environment, where `proxy:3128` means
/// `http://proxy:3128` (as Go reads it). Messages show the URL with its credentials replaced.
fn endpoint(
    raw: &str,
    bare_host: bool,
    (connect_headers, files): &(HeaderMap, Vec<FileHeader>),
    secret_params: &[String],
) -> Result<ProxyEndpoint, String> {
    let raw = raw.trim();
    let with_scheme;
    let raw = if bare_host && !raw.contains("://") {
        with_scheme = format!("http://{raw}");
        &with_scheme
    } else {
        raw
    };
    let shown = redact::url(raw, secret_params);
    let url = Url::parse(raw).map_err(|e| match e {
        url::ParseError::EmptyHost => format!("proxy URL {shown:?} has no host"),
        e => format!("invalid proxy URL {shown:?}: {e}"),
    })?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "proxy URL scheme must be http or https, not {other:?} (in {shown:?})"
            ))
        }
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => return Err(format!("proxy URL {shown:?} has no host")),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let mut headers = connect_headers.clone();
    if !url.username().is_empty() || url.password().is_some() {
        let decode = |s: &str| {
            percent_encoding_decode(s).ok_or_else(|| {
                format!("proxy URL {shown:?}: its credentials are not valid percent-encoded UTF-8")
            })
        };
        let user = decode(url.username())?;
        let password = decode(url.password().unwrap_or_default())?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| format!("proxy URL {shown:?}: unusable credentials"))?;
        value.set_sensitive(true);
        headers.insert(PROXY_AUTHORIZATION, value);
    }
    Ok(ProxyEndpoint {
        host,
        port,
        tls,
        shown: shown.into(),
        headers,
        files: files.clone(),
    })
}

/// A URL's percent-encoded user or password, decoded.
fn percent_encoding_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What the configured proxy credentials and header values are, for events to redact wherever
/// a server echoes them: each header value, and the decoded `user:password` and password.
pub(super) fn secrets(proxy: &Proxy) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for endpoint in [&proxy.http, &proxy.https].into_iter().flatten() {
        for value in endpoint.headers.values() {
            out.push(value.as_bytes().to_vec());
            let decoded = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
            if let Some(pair) = decoded {
                if let Some(i) = pair.iter().position(|b| *b == b':') {
                    out.push(pair[i + 1..].to_vec());
                }
                out.push(pair);
            }
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bypass(entries: &str, url: &str) -> bool {
        let np = NoProxy::parse(entries.split(',')).unwrap();
        let url = Url::parse(url).unwrap();
        np.matches(&url.host().unwrap(), url.port_or_known_default().unwrap())
    }

    #[test]
    fn no_proxy_reads_like_curl_and_go() {
        assert!(bypass("example.com", "https://example.com/"));
        assert!(bypass("example.com", "https://api.example.com/"));
        assert!(!bypass("example.com", "https://notexample.com/"));
        assert!(!bypass(".example.com", "https://example.com/"));
        assert!(bypass(".example.com", "https://a.b.example.com/"));
        assert!(bypass("*.example.com", "https://a.example.com/"));
        assert!(bypass("EXAMPLE.com.", "https://Example.COM/"));
        assert!(bypass("*", "http://anything/"));
        assert!(bypass("10.0.0.0/8", "http://10.1.2.3/"));
        assert!(!bypass("10.0.0.0/8", "http://11.1.2.3/"));
        assert!(bypass("127.0.0.1", "http://127.0.0.1:8080/"));
        assert!(
            !bypass("127.0.0.1", "http://localhost/"),
            "names are not resolved"
        );
        assert!(bypass("::1", "http://[::1]/"));
        assert!(bypass("[::1]", "http://[::1]/"));
        assert!(bypass("fd00::/8", "http://[fd12::1]/"));
        assert!(bypass("example.com:8443", "https://example.com:8443/"));
        assert!(!bypass("example.com:8443", "https://example.com/"));
        assert!(bypass("127.0.0.1:80", "http://127.0.0.1/"));
        assert!(!bypass(" , ", "http://example.com/"));
        assert!(bypass("0.0.0.0/0", "http://1.2.3.4/"));
    }

    #[test]
    fn bad_no_proxy_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "exa mple.com",
            "a/b",
            "host:99999",
            "::1/200",
        ] {
            let e = NoProxy::parse([bad]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn credentials_become_proxy_authorization_and_are_never_shown() {
        let e = endpoint(
            "http://us%40er:p%3Ass@proxy.example:3128",
            false,
            &Default::default(),
            &[],
        )
        .unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("proxy.example", 3128, false)
        );
        let auth = e.headers.get(PROXY_AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        let token = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(auth.to_str().unwrap(), format!("Basic {token}"));
        assert!(
            !e.shown.contains("p%3Ass") && !e.shown.contains("us%40er"),
            "{}",
            e.shown
        );
        assert!(!format!("{e:?}").contains("p%3Ass"));
    }

    #[test]
    fn bad_proxy_urls_say_why_without_their_password() {
        let err = |u| endpoint(u, false, &Default::default(), &[]).unwrap_err();
        assert!(err("socks5://u:hunter22@p:1080").contains("socks5"));
        assert!(!err("socks5://u:hunter22@p:1080").contains("hunter22"));
        assert_eq!(err("http://"), "proxy URL \"http://\" has no host");
        assert!(err("proxy:3128").contains("scheme must be http or https, not \"proxy\""));
        let from_env = endpoint("proxy.example:3128", true, &Default::default(), &[]).unwrap();
        assert_eq!(
            (from_env.host.as_str(), from_env.port),
            ("proxy.example", 3128)
        );
        let https = endpoint("https://proxy.example", false, &Default::default(), &[]).unwrap();
        assert_eq!((https.port, https.tls), (443, true));
    }
}
