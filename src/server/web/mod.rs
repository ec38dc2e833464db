//! `--web.config.file`: the exporter-toolkit web configuration (TLS with optional client
//! certificates, bcrypt basic auth, extra response headers), read strictly into a rustls
//! `ServerConfig` and a user list, re-read when its files change.
//!
//! This file owns [`WebConfig`], reading and validating it; beside it: `file.rs` (the file as
//! written), `tls.rs` (its TLS settings as rustls'), [`auth`] (the basic-auth check) and
//! [`live`] (the configuration in use, re-read when its files change).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::ServerConfig;

use crate::config::{locate, ConfigError, Seg};

pub mod auth;
mod file;
pub mod live;
mod tls;

use auth::digest;
use file::{ClientAuth, File, ALLOWED_HEADERS};

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

// --- Validation --------------------------------------------------------------------------------

/// A validation error and the keys leading to the node it is about.
struct Invalid(Vec<String>, String);

fn at(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn tls_at(key: &str) -> Vec<String> {
    at(&["tls_server_config", key])
}

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
        Some(t) => Some(Arc::new(tls::server_config(t, dir, &mut files)?)),
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
