//! `--web.config.file`: the exporter-toolkit web configuration (TLS with optional client
//! certificates, bcrypt basic auth, extra response headers), read strictly into a rustls
//! `ServerConfig` and a user list, re-read when its files change; [`auth`] holds the basic-auth
//! check itself.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::config::{locate, ConfigError, Seg};
use crate::tls;

pub mod auth;

use auth::{digest, Authenticator, Verdict};

/// A loaded, validated web configuration.
pub struct WebConfig {
    path: PathBuf,
    tls: Option<Arc<ServerConfig>>,
    /// Whether TLS asks clients for certificates.
    client_certs: bool,
    users: Vec<User>,
    /// The highest bcrypt cost among `users`: unknown users are checked against a decoy hash of
    /// this cost, so that timing does not tell which user names exist.
    max_cost: u32,
    headers: HeaderMap,
    /// The file itself and every file it names, watched for changes.
    files: Vec<PathBuf>,
}

struct User {
    name_digest: [u8; 32],
    hash: String,
    cost: u32,
}

impl WebConfig {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The TLS configuration every connection is served with, if TLS is on.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// True when every request needs basic-auth credentials.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// The headers added to every response (`http_server_config.headers`).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// A one-line summary without secrets, for `--config.check` and logs.
    pub fn summary(&self) -> String {
        let tls = match (&self.tls, self.client_certs) {
            (None, _) => "no TLS",
            (Some(_), true) => "TLS with client certificates",
            (Some(_), false) => "TLS",
        };
        let users = match self.users.len() {
            0 => "no basic auth".to_owned(),
            1 => "basic auth for 1 user".to_owned(),
            n => format!("basic auth for {n} users"),
        };
        format!("{tls}, {users}")
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // Never the hashes: they are secrets too (they can be attacked offline).
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads and validates the web configuration file at `path`.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    parse(
        path,
        &crate::config::read_capped(path, "web configuration")?,
    )
}

/// Validates web configuration `text`; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<WebConfig, ConfigError> {
    let error = |position, message: String| ConfigError {
        file: path.to_owned(),
        position: Some(position),
        message: crate::config::one_line(&message),
    };
    // An empty file (or one with only comments) is valid, as with exporter-toolkit: plain HTTP.
    let file: Option<File> = serde_yaml::from_str(text).map_err(|e| {
        let position = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        error(position, crate::config::strip_positions(&e.to_string()))
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    validate(file.unwrap_or_default(), dir, path).map_err(|Invalid(at, message)| {
        let path: Vec<Seg> = at.into_iter().map(Seg::Field).collect();
        error(locate(text, &path).unwrap_or((1, 1)), message)
    })
}

// --- The file as written ---------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<Users>,
    rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<Secret>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_auth_type: Option<ClientAuth>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    cipher_suites: Option<Vec<CipherName>>,
    curve_preferences: Option<Vec<CurveName>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// Go's `tls.ClientAuthType` names, as exporter-toolkit spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls12,
    Tls13,
}

impl FromStr for TlsVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "TLS12" => Ok(Self::Tls12),
            "TLS13" => Ok(Self::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{s} is not supported: tickr's TLS library (rustls) speaks TLS 1.2 and 1.3 only; \
                 use TLS12 or TLS13"
            )),
            _ => Err(format!(
                "unknown TLS version {s:?}; expected TLS12 or TLS13"
            )),
        }
    }
}

/// A TLS 1.2 cipher suite by its Go (IANA) name, among those rustls implements.
#[derive(Debug, Clone, Copy)]
struct CipherName(SupportedCipherSuite);

impl FromStr for CipherName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if matches!(
            s,
            "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256"
        ) {
            return Err(format!(
                "{s} is a TLS 1.3 suite: TLS 1.3 suites are not configurable (in Go either), \
                 all of them are enabled"
            ));
        }
        // Go also knows the ChaCha20 suites without their `_SHA256` suffix.
        let full = match s.strip_suffix("_POLY1305") {
            Some(_) => format!("{s}_SHA256"),
            None => s.to_owned(),
        };
        let tls12 = tls12_suites();
        tls12
            .iter()
            .find(|suite| suite.suite().as_str() == Some(full.as_str()))
            .map(|suite| CipherName(*suite))
            .ok_or_else(|| {
                let names: Vec<&str> = tls12.iter().filter_map(|s| s.suite().as_str()).collect();
                format!(
                    "cipher suite {s:?} is not supported by tickr's TLS library (rustls); \
                     supported: {}",
                    names.join(", ")
                )
            })
    }
}

fn tls12_suites() -> Vec<SupportedCipherSuite> {
    tls::provider()
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .copied()
        .collect()
}

/// A key-exchange group by its Go name.
#[derive(Debug, Clone, Copy)]
struct CurveName(&'static dyn SupportedKxGroup);

impl FromStr for CurveName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use rustls::crypto::ring::kx_group;
        match s {
            "X25519" => Ok(Self(kx_group::X25519)),
            "CurveP256" => Ok(Self(kx_group::SECP256R1)),
            "CurveP384" => Ok(Self(kx_group::SECP384R1)),
            _ => Err(format!(
                "curve {s:?} is not supported by tickr's TLS library (rustls with ring); \
                 supported: X25519, CurveP256, CurveP384"
            )),
        }
    }
}

/// Deserializes a string through `FromStr`, inside the visitor so that errors carry the value's
/// position.
struct Parsed<T>(PhantomData<T>);

impl<'de, T: FromStr<Err = String>> Visitor<'de> for Parsed<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! deserialize_via_from_str {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(Parsed(PhantomData))
            }
        }
    )*};
}
deserialize_via_from_str!(TlsVersion, CipherName, CurveName, BcryptHash);

/// A secret string (an inline private key). Errors about it never repeat its value.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor("a PEM private key"))
            .map(Secret)
    }
}

/// Accepts a string; refuses anything else without quoting it, as serde's own message would.
struct SecretVisitor(&'static str);

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(E::custom(format!("expected {}, not a boolean", self.0)))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(E::custom(format!("expected {}, not a number", self.0)))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(E::custom(format!("expected {}, not a number", self.0)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(E::custom(format!("expected {}, not a number", self.0)))
    }
}

/// `basic_auth_users` in file order. A user given twice is an error, not "the last one wins".
#[derive(Debug, Default)]
struct Users(Vec<(String, BcryptHash)>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UsersVisitor;

        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of user names to bcrypt hashes")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut users = Vec::new();
                let mut seen = HashSet::new();
                while let Some(name) = map.next_key_seed(UserName(&mut seen))? {
                    users.push((name, map.next_value()?));
                }
                Ok(Users(users))
            }
        }

        d.deserialize_map(UsersVisitor)
    }
}

/// A user name, checked as a key so that errors point at it.
struct UserName<'a>(&'a mut HashSet<String>);

impl<'de> DeserializeSeed<'de> for UserName<'_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for UserName<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a user name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        if v.contains(':') {
            return Err(E::custom(format!(
                "user name {v:?} contains ':', which basic auth cannot carry"
            )));
        }
        if !self.0.insert(v.to_owned()) {
            return Err(E::custom(format!("user {v:?} is given twice")));
        }
        Ok(v.to_owned())
    }
}

/// A user's bcrypt hash, checked for shape and cost when read. Errors never repeat it.
struct BcryptHash {
    hash: String,
    cost: u32,
}

impl fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "<bcrypt hash, cost {}>", self.cost)
    }
}

impl FromStr for BcryptHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const HOW: &str = "expected a bcrypt hash such as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` \
                           prints, not a plain password";
        // bcrypt's parse errors are fixed texts: they never quote the hash.
        let parts = bcrypt::HashParts::from_str(s).map_err(|e| format!("{HOW} ({e})"))?;
        let cost = parts.get_cost();
        if !(4..=31).contains(&cost) {
            return Err(format!("{HOW} (bcrypt cost {cost} is outside 4..=31)"));
        }
        Ok(Self {
            hash: s.to_owned(),
            cost,
        })
    }
}

// --- Validation --------------------------------------------------------------------------------

/// A validation error and the keys leading to the node it is about.
struct Invalid(Vec<String>, String);

fn at(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn tls_at(key: &str) -> Vec<String> {
    at(&["tls_server_config", key])
}

/// Response headers exporter-toolkit lets a web config set, with their allowed values (if fixed).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

fn validate(file: File, dir: &Path, path: &Path) -> Result<WebConfig, Invalid> {
    if file.rate_limit.is_some() {
        return Err(Invalid(
            at(&["rate_limit"]),
            "rate_limit is not supported by tickr; put a reverse proxy in front if you need it"
                .into(),
        ));
    }
    let mut files = vec![path.to_owned()];
    let client_certs = file.tls_server_config.as_ref().is_some_and(|t| {
        matches!(
            t.client_auth_type,
            Some(ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert)
        )
    });
    let tls = match file.tls_server_config {
        Some(t) => Some(Arc::new(server_config(t, dir, &mut files)?)),
        None => None,
    };

    let mut headers = HeaderMap::new();
    if let Some(http) = file.http_server_config {
        if http.http2 == Some(true) {
            return Err(Invalid(
                at(&["http_server_config", "http2"]),
                "HTTP/2 is not supported: tickr serves HTTP/1.1 (all a scrape needs); \
                 set `http2: false` or remove the key"
                    .into(),
            ));
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let here = at(&["http_server_config", "headers", &name]);
            let Some((canonical, allowed)) = ALLOWED_HEADERS
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(h, _)| *h).collect();
                let message = format!(
                    "HTTP header {name:?} cannot be configured; allowed: {}",
                    names.join(", ")
                );
                return Err(Invalid(here, message));
            };
            if value.is_empty() {
                continue; // "Unset if blank", as exporter-toolkit documents.
            }
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                let message = format!(
                    "invalid value {value:?} for {canonical}; expected one of {}",
                    allowed.join(", ")
                );
                return Err(Invalid(here, message));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| Invalid(here, format!("invalid value for {canonical}")))?;
            let name = HeaderName::from_bytes(canonical.as_bytes()).expect("a valid header name");
            headers.insert(name, value);
        }
    }

    let mut users = Vec::new();
    for (name, hash) in file.basic_auth_users.unwrap_or_default().0 {
        users.push(User {
            name_digest: digest(&[name.as_bytes()]),
            hash: hash.hash,
            cost: hash.cost,
        });
    }
    let max_cost = users.iter().map(|u| u.cost).max().unwrap_or(4);
    Ok(WebConfig {
        path: path.to_owned(),
        tls,
        client_certs,
        users,
        max_cost,
        headers,
        files,
    })
}

/// Where PEM material comes from: a file (relative to the web config) or an inline value.
fn pem(
    t_file: Option<&str>,
    inline: Option<&str>,
    (file_key, inline_key): (&str, &str),
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Vec<u8>>, Invalid> {
    let t_file = t_file.filter(|f| !f.is_empty());
    let inline = inline.filter(|i| !i.is_empty());
    match (t_file, inline) {
        (Some(_), Some(_)) => Err(Invalid(
            tls_at(inline_key),
            format!("set {inline_key} or {file_key}, not both"),
        )),
        (Some(name), None) => {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| {
                Invalid(
                    tls_at(file_key),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            files.push(path);
            Ok(Some(bytes))
        }
        (None, inline) => Ok(inline.map(|i| i.as_bytes().to_vec())),
    }
}

fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    tls::parse_certs(pem).map_err(|m| Invalid(tls_at(key), m))
}

fn server_config(
    t: TlsFile,
    dir: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<ServerConfig, Invalid> {
    let cert = pem(
        t.cert_file.as_deref(),
        t.cert.as_deref(),
        ("cert_file", "cert"),
        dir,
        files,
    )?;
    let key = pem(
        t.key_file.as_deref(),
        t.key.as_ref().map(|k| k.0.as_str()),
        ("key_file", "key"),
        dir,
        files,
    )?;
    let client_ca = pem(
        t.client_ca_file.as_deref(),
        t.client_ca.as_deref(),
        ("client_ca_file", "client_ca"),
        dir,
        files,
    )?;
    let key_at = if t.key_file.is_some() {
        "key_file"
    } else {
        "key"
    };
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err(Invalid(
            at(&["tls_server_config"]),
            "TLS needs both cert_file and key_file (or inline cert and key)".into(),
        ));
    };
    let cert_at = if t.cert_file.is_some() {
        "cert_file"
    } else {
        "cert"
    };
    let chain = certificates(&cert, cert_at)?;
    let key = tls::parse_key(&key).map_err(|m| Invalid(tls_at(key_at), m))?;

    let min = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max = t.max_version.unwrap_or(TlsVersion::Tls13);
    if min > max {
        return Err(Invalid(
            tls_at("max_version"),
            "max_version is lower than min_version".into(),
        ));
    }
    let versions: Vec<&'static SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, p)| p)
    .collect();

    let mut provider: CryptoProvider = (*tls::provider()).clone();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Invalid(tls_at(key_at), format!("unsupported private key: {e}")))?;
    // Empty lists mean the defaults, as in Go.
    if let Some(names) = t.cipher_suites.as_ref().filter(|n| !n.is_empty()) {
        if min == TlsVersion::Tls13 {
            return Err(Invalid(
                tls_at("cipher_suites"),
                "cipher_suites only apply to TLS 1.2, which min_version TLS13 turns off".into(),
            ));
        }
        let mut chosen: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .filter(|s| s.tls13().is_some())
            .copied()
            .collect();
        for CipherName(suite) in names {
            if !chosen.contains(suite) {
                chosen.push(*suite);
            }
        }
        let algorithm = signing_key.algorithm();
        if !chosen
            .iter()
            .any(|s| s.tls13().is_none() && s.usable_for_signature_algorithm(algorithm))
        {
            return Err(Invalid(
                tls_at("cipher_suites"),
                format!(
                    "none of cipher_suites can be used with the certificate's {algorithm:?} key"
                ),
            ));
        }
        provider.cipher_suites = chosen;
    }
    if let Some(curves) = t.curve_preferences.as_ref().filter(|c| !c.is_empty()) {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for CurveName(group) in curves {
            if !groups.iter().any(|g| g.name() == group.name()) {
                groups.push(*group);
            }
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| Invalid(tls_at("min_version"), format!("unusable TLS settings: {e}")))?;
    let verifier = client_verifier(&t, client_ca, provider)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        Invalid(
            tls_at(key_at),
            format!("the key does not go with the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Go's default, and what the key means: the server's order of cipher_suites wins.
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    Ok(config)
}

fn client_verifier(
    t: &TlsFile,
    client_ca: Option<Vec<u8>>,
    provider: Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, Invalid> {
    let auth = t.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
    let ca_at = if t.client_ca_file.is_some() {
        "client_ca_file"
    } else {
        "client_ca"
    };
    let optional = match auth {
        ClientAuth::NoClientCert => {
            if client_ca.is_some() {
                return Err(Invalid(
                    tls_at(ca_at),
                    "a client CA is set but client_auth_type is NoClientCert; \
                     set client_auth_type: RequireAndVerifyClientCert"
                        .into(),
                ));
            }
            if t.client_allowed_sans.is_some() {
                return Err(Invalid(
                    tls_at("client_allowed_sans"),
                    "client_allowed_sans needs client_auth_type: RequireAndVerifyClientCert".into(),
                ));
            }
            return Ok(None);
        }
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            return Err(Invalid(
                tls_at("client_auth_type"),
                format!(
                    "{auth:?} is not supported: it accepts client certificates without \
                     verifying them; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) \
                     with client_ca_file"
                ),
            ));
        }
        ClientAuth::VerifyClientCertIfGiven => true,
        ClientAuth::RequireAndVerifyClientCert => false,
    };
    let Some(client_ca) = client_ca else {
        return Err(Invalid(
            tls_at("client_auth_type"),
            format!("{auth:?} needs client_ca_file, the CA that signs client certificates"),
        ));
    };
    if optional && t.client_allowed_sans.is_some() {
        return Err(Invalid(
            tls_at("client_allowed_sans"),
            "client_allowed_sans needs client_auth_type: RequireAndVerifyClientCert: with \
             VerifyClientCertIfGiven a client without a certificate has no SAN to check"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certificates(&client_ca, ca_at)? {
        roots
            .add(cert)
            .map_err(|e| Invalid(tls_at(ca_at), format!("unusable CA certificate: {e}")))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if optional {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder
        .build()
        .map_err(|e| Invalid(tls_at(ca_at), format!("unusable client CA: {e}")))?;
    Ok(Some(match &t.client_allowed_sans {
        Some(sans) => Arc::new(AllowedSans {
            inner: verifier,
            allowed: sans.clone(),
        }),
        None => verifier,
    }))
}

/// Verifies client certificates as `inner` does, then requires one of their subject alternative
/// names (DNS, e-mail, IP or URI, compared exactly) to be in `allowed`.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl AllowedSans {
    fn names(cert: &CertificateDer<'_>) -> Vec<String> {
        use x509_parser::extensions::GeneralName;
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else {
            return Vec::new();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some((*s).to_owned())
                }
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => {
                        Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if Self::names(end_entity)
            .iter()
            .any(|n| self.allowed.contains(n))
        {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "no subject alternative name of the client certificate is in client_allowed_sans"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// --- Serving: the live configuration and the basic-auth check --------------------------------

/// Modification time and size of a file, or `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// A web configuration in use: re-read when the file or a file it names changes (so renewed
/// certificates apply to new connections), and the basic-auth check with its cache.
pub struct Web {
    live: Mutex<Live>,
    auth: Authenticator,
}

struct Live {
    config: Arc<WebConfig>,
    seen: Vec<Stamp>,
}

impl fmt::Debug for Web {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Web").finish_non_exhaustive()
    }
}

impl Web {
    pub fn new(config: WebConfig) -> Self {
        let seen = stamps(&config.files);
        Self {
            live: Mutex::new(Live {
                config: Arc::new(config),
                seen,
            }),
            auth: Authenticator::new(),
        }
    }

    /// The configuration for a new connection. When a watched file changed since the last call,
    /// the file is read again; a configuration that fails validation is logged and the previous
    /// one stays in use, so a half-written certificate never takes the exporter down.
    ///
    /// The files are checked (and read, parsed and turned into a TLS configuration when they
    /// changed) on a blocking thread, like the main configuration on reload: never on the
    /// thread that runs probes.
    pub async fn current(self: &Arc<Self>) -> Arc<WebConfig> {
        let web = Arc::clone(self);
        match tokio::task::spawn_blocking(move || web.refresh()).await {
            Ok(config) => config,
            Err(_) => self.lock().config.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self) -> Arc<WebConfig> {
        let mut live = self.lock();
        let now = stamps(&live.config.files);
        if now == live.seen {
            return live.config.clone();
        }
        // Remember what was seen even when it fails, so a broken file is reported once.
        live.seen = now;
        let path = live.config.path.clone();
        match load(&path) {
            Ok(config) if config.tls.is_some() != live.config.tls.is_some() => {
                tracing::error!(
                    file = %path.display(),
                    "web configuration rejected: TLS cannot be turned on or off while tickr runs; \
                     restart it"
                );
            }
            Ok(config) => {
                tracing::info!(file = %path.display(), settings = %config.summary(), "web configuration reloaded");
                if config.files != live.config.files {
                    live.seen = stamps(&config.files);
                }
                live.config = Arc::new(config);
            }
            Err(e) => {
                tracing::error!(error = %e, "web configuration rejected; the previous one stays in use");
            }
        }
        live.config.clone()
    }

    /// Whether a request from `peer` with `headers` may be served under `config`: always when
    /// it needs no credentials, else after the basic-auth check (see [`auth`]).
    pub async fn authorize(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Verdict {
        self.auth.authorize(config, headers, peer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(Path::new("/nonexistent/web.yml"), text)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn empty_file_is_plain_http() {
        for text in ["", "# nothing\n", "basic_auth_users:\n"] {
            let c = parse(Path::new("web.yml"), text).expect("valid");
            assert!(c.tls().is_none() && !c.requires_auth(), "{text:?}");
        }
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(
            error("tls_server_config:\n  cert_file: a\n  colour: blue\n"),
            "/nonexistent/web.yml:3:3: tls_server_config: unknown field `colour`, expected one of \
             `cert_file`, `key_file`, `cert`, `key`, `client_ca_file`, `client_ca`, \
             `client_auth_type`, `client_allowed_sans`, `min_version`, `max_version`, \
             `cipher_suites`, `curve_preferences`, `prefer_server_cipher_suites`"
        );
        let e = error("tls_server_config:\n  min_version: TLS10\n");
        assert!(
            e.starts_with(
                "/nonexistent/web.yml:2:16: tls_server_config.min_version: TLS10 is not supported"
            ),
            "{e}"
        );
        let e = error("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n");
        assert!(
            e.starts_with("/nonexistent/web.yml:2:14: cannot read /nonexistent/cert.pem"),
            "{e}"
        );
        let e = error("rate_limit:\n  interval: 1s\n");
        assert!(
            e.starts_with("/nonexistent/web.yml:2:3: rate_limit is not supported"),
            "{e}"
        );
        let e = error("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(
            e.starts_with("/nonexistent/web.yml:3:22: invalid value \"allow\""),
            "{e}"
        );
        let e = error("tls_server_config:\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n");
        assert!(
            e.starts_with(
                "/nonexistent/web.yml:2:19: tls_server_config.cipher_suites[0]: cipher suite"
            ),
            "{e}"
        );
    }

    #[test]
    fn hashes_and_plain_passwords_are_never_quoted() {
        for (text, secret) in [
            (
                "basic_auth_users:\n  alice: hunter2hunter2\n",
                "hunter2hunter2",
            ),
            ("basic_auth_users:\n  alice: 123456789\n", "123456789"),
            ("basic_auth_users:\n  alice: $2y$10$abc\n", "$2y$10$abc"),
            ("basic_auth_users:\n  alice: true\n", "true"),
        ] {
            let e = error(text);
            assert!(e.starts_with("/nonexistent/web.yml:2:10: "), "{e}");
            assert!(!e.contains(secret), "{e}");
        }
    }
}
