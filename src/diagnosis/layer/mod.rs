//! Says which layer (CDN, load balancer, reverse proxy, application) most likely generated an
//! error response, from what the response carries: headers and the body's default error page.
//!
//! A proxy's `Server` header says who relayed a response, not who wrote it: nginx, Envoy and
//! Caddy stamp their own on everything they pass through. The strong evidence is the body: each
//! product's built-in error page is distinctive. So a fingerprint matches on a combination of
//! header and body signals, user fingerprints are tried before the built-in ones (and replace a
//! built-in of the same name), then the user's own application signatures (`origin`), and
//! anything else is `unknown`. The label values are therefore a small set fixed by config.

mod fingerprints;

use http::header::{HeaderMap, HeaderName};

pub use fingerprints::builtins;
use fingerprints::EDGE_SERVERS;

/// The layer label of responses that match a user's application signature.
pub const ORIGIN: &str = "origin";
/// The layer label when nothing matched.
pub const UNKNOWN: &str = "unknown";

/// One signal: a header containing a value (case-insensitive; empty means "present"), or a body
/// containing a text (case-sensitive, as error pages are fixed text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    Header(HeaderName, String),
    Body(String),
    /// The body is empty (or only whitespace).
    EmptyBody,
}

impl Signal {
    fn matches(&self, headers: &HeaderMap, body: &[u8]) -> bool {
        match self {
            Signal::Header(name, want) => headers.get_all(name).iter().any(|v| {
                let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
                v.contains(want.as_str())
            }),
            Signal::Body(text) => contains(body, text.as_bytes()),
            Signal::EmptyBody => body.iter().all(u8::is_ascii_whitespace),
        }
    }

    fn describe(&self) -> String {
        match self {
            Signal::Header(name, v) if v.is_empty() => format!("header {name}"),
            Signal::Header(name, v) => format!("{name}: *{v}*"),
            Signal::Body(text) => format!("body contains {text:?}"),
            Signal::EmptyBody => "empty body".to_owned(),
        }
    }
}

/// Whether `needle` occurs in `haystack` (an empty needle always does). Bodies are scanned a
/// few times per failed probe at most, so the plain scan is enough.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A fingerprint: the layer it names, and one or more alternative sets of signals, each of
/// which identifies the layer when all of its signals match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub layer: String,
    pub any_of: Vec<Vec<Signal>>,
}

impl Fingerprint {
    fn matching(&self, headers: &HeaderMap, body: &[u8]) -> Option<&[Signal]> {
        self.any_of
            .iter()
            .find(|all| all.iter().all(|s| s.matches(headers, body)))
            .map(Vec::as_slice)
    }
}

/// The verdict on one response: the layer label and the signals that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub layer: String,
    pub evidence: String,
}

/// Built-in and user fingerprints, in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributor {
    fingerprints: Vec<Fingerprint>,
    origin: Vec<Vec<Signal>>,
}

impl Default for Attributor {
    fn default() -> Self {
        Self::new(Vec::new(), Vec::new())
    }
}

impl Attributor {
    /// User fingerprints come first and replace any built-in with the same layer name;
    /// `origin` lists the signal sets of the user's own application's error responses.
    pub fn new(user: Vec<Fingerprint>, origin: Vec<Vec<Signal>>) -> Self {
        let mut fingerprints = user;
        for builtin in builtins() {
            if !fingerprints.iter().any(|f| f.layer == builtin.layer) {
                fingerprints.push(builtin);
            }
        }
        Self {
            fingerprints,
            origin,
        }
    }

    /// Every label value this attributor can return.
    pub fn layers(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.fingerprints.iter().map(|f| f.layer.as_str()).collect();
        all.extend([ORIGIN, UNKNOWN]);
        all
    }

    /// The layer that most likely generated this response.
    pub fn attribute(&self, headers: &HeaderMap, body: &[u8]) -> Attribution {
        for f in &self.fingerprints {
            if let Some(signals) = f.matching(headers, body) {
                return Attribution {
                    layer: f.layer.clone(),
                    evidence: describe(signals),
                };
            }
        }
        if let Some(signals) = self
            .origin
            .iter()
            .find(|all| all.iter().all(|s| s.matches(headers, body)))
        {
            return Attribution {
                layer: ORIGIN.to_owned(),
                evidence: describe(signals),
            };
        }
        let relayed = headers
            .get(http::header::SERVER)
            .and_then(|v| v.to_str().ok());
        let evidence = match relayed {
            Some(server) => format!("no known error page; relayed by server {server:?}"),
            None => "no known error page or header".to_owned(),
        };
        Attribution {
            layer: UNKNOWN.to_owned(),
            evidence,
        }
    }

    /// The layer tickr talks to first, judged from the headers of a response (any status):
    /// used for failures without a response, such as a refused or reset connection.
    pub fn edge(&self, headers: &HeaderMap) -> Option<String> {
        // Runs on every response: each `Server` value is lowered once, not once per product.
        headers.get_all(http::header::SERVER).iter().find_map(|v| {
            let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
            EDGE_SERVERS
                .iter()
                .find(|(_, server)| v.contains(server))
                .map(|(layer, _)| (*layer).to_owned())
        })
    }
}

fn describe(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(Signal::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::fingerprints::{b, h};
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_body_decides_over_the_relaying_server_header() {
        let a = Attributor::default();
        let nginx_page = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx/1.22.1</center></body></html>";
        assert_eq!(
            a.attribute(&headers(&[("server", "nginx/1.22.1")]), nginx_page)
                .layer,
            "nginx"
        );
        // nginx relaying the application's own 502 page: not nginx's doing.
        let app = b"<h1>Sorry, the shop is down</h1>";
        let relayed = a.attribute(&headers(&[("server", "nginx/1.22.1")]), app);
        assert_eq!(relayed.layer, UNKNOWN);
        assert!(relayed.evidence.contains("nginx"), "{}", relayed.evidence);
    }

    #[test]
    fn user_fingerprints_and_origin_signatures() {
        let shop = Fingerprint {
            layer: "shop_gateway".into(),
            any_of: vec![vec![h("x-gateway", "shop")]],
        };
        let origin = vec![vec![b("Sorry, the shop is down")]];
        let a = Attributor::new(vec![shop], origin);
        assert_eq!(
            a.attribute(&headers(&[("x-gateway", "Shop-GW/2")]), b"")
                .layer,
            "shop_gateway"
        );
        assert_eq!(
            a.attribute(&headers(&[]), b"<h1>Sorry, the shop is down</h1>")
                .layer,
            ORIGIN
        );
        assert!(a.layers().contains(&"shop_gateway") && a.layers().contains(&"nginx"));

        // A user fingerprint named like a built-in replaces it.
        let mine = Fingerprint {
            layer: "nginx".into(),
            any_of: vec![vec![b("my nginx page")]],
        };
        let a = Attributor::new(vec![mine], vec![]);
        assert_eq!(
            a.attribute(&headers(&[]), b"<center>nginx</center>").layer,
            UNKNOWN
        );
        assert_eq!(a.layers().iter().filter(|l| **l == "nginx").count(), 1);
    }

    #[test]
    fn edge_from_server_header() {
        let a = Attributor::default();
        assert_eq!(
            a.edge(&headers(&[("server", "cloudflare")])).as_deref(),
            Some("cloudflare")
        );
        assert_eq!(a.edge(&headers(&[("server", "gunicorn")])), None);
    }
}
