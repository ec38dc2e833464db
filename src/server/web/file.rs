//! The web configuration file as written: a strict serde mirror of exporter-toolkit's format,
//! whose names (TLS versions, cipher suites, curves, bcrypt hashes) are checked as they are read,
//! so that every error points at its value.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use rustls::crypto::SupportedKxGroup;
use rustls::SupportedCipherSuite;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::tls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) tls_server_config: Option<TlsFile>,
    pub(super) http_server_config: Option<HttpFile>,
    pub(super) basic_auth_users: Option<Users>,
    pub(super) rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) cert: Option<String>,
    pub(super) key: Option<Secret>,
    pub(super) client_ca_file: Option<String>,
    pub(super) client_ca: Option<String>,
    pub(super) client_auth_type: Option<ClientAuth>,
    pub(super) client_allowed_sans: Option<Vec<String>>,
    pub(super) min_version: Option<TlsVersion>,
    pub(super) max_version: Option<TlsVersion>,
    pub(super) cipher_suites: Option<Vec<CipherName>>,
    pub(super) curve_preferences: Option<Vec<CurveName>>,
    pub(super) prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpFile {
    pub(super) http2: Option<bool>,
    pub(super) headers: Option<BTreeMap<String, String>>,
}

/// Go's `tls.ClientAuthType` names, as exporter-toolkit spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(super) enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TlsVersion {
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
pub(super) struct CipherName(pub(super) SupportedCipherSuite);

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

/// A key-exchange group by its Go name.
#[derive(Debug, Clone, Copy)]
pub(super) struct CurveName(pub(super) &'static dyn SupportedKxGroup);

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
pub(super) struct Secret(pub(super) String);

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
pub(super) struct Users(pub(super) Vec<(String, BcryptHash)>);

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
pub(super) struct BcryptHash {
    pub(super) hash: String,
    pub(super) cost: u32,
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

/// The TLS 1.2 suites a `cipher_suites` name may name: those of tickr's provider. Here, where
/// the names are read, rather than in `tls.rs`, which reads this file's types: no cycle.
fn tls12_suites() -> Vec<SupportedCipherSuite> {
    tls::provider()
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .copied()
        .collect()
}

/// Response headers exporter-toolkit lets a web config set, with their allowed values (if fixed).
pub(super) const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];
