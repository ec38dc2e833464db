//! Says which layer (CDN, load balancer, reverse proxy, application) most likely generated an
//! error response, from what the response carries: headers and the body's default error page.
//!
//! A proxy's `Server` header says who relayed a response, not who wrote it: nginx, Envoy and
//! Caddy stamp their own on everything they pass through. The strong evidence is the body: each
//! product's built-in error page is distinctive. So a fingerprint matches on a combination of
//! header and body signals, user fingerprints are tried before the built-in ones (and replace a
//! built-in of the same name), then the user's own application signatures (`origin`), and
//! anything else is `unknown`. The label values are therefore a small set fixed by config.
//!
//! The `chain` module reads who relayed a response (`Via`, CDN headers, `Server`), which names
//! the relaying hops in the evidence and the first hop for failures without a response.

mod chain;
mod fingerprints;

use http::header::{HeaderMap, HeaderName};

pub use chain::{Chain, Hop};
pub use fingerprints::builtins;

/// Fingerprints look for their body texts in this much of the body. The pages proxies and CDNs
/// generate are small (nginx's is under 600 bytes, Cloudflare's largest about 7 KiB), and a
/// 5xx during an outage is the common case, when every probe's body is attributed: a 64 KiB
/// application page is not scanned whole for each of some seventy texts. Origin signatures,
/// which describe the user's own pages, are looked for in all of the body kept.
pub const PAGE_WINDOW: usize = 16 << 10;

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
    /// The body is exactly this text, byte for byte.
    BodyIs(String),
    /// The response has no such header.
    Without(HeaderName),
}

impl Signal {
    /// Whether the response has this signal; a body text is looked for in the first `window`
    /// bytes.
    fn matches(&self, headers: &HeaderMap, body: &[u8], window: usize) -> bool {
        match self {
            Signal::Header(name, want) => headers.get_all(name).iter().any(|v| {
                let v = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
                v.contains(want.as_str())
            }),
            Signal::Body(text) => contains(&body[..body.len().min(window)], text.as_bytes()),
            Signal::EmptyBody => body.iter().all(u8::is_ascii_whitespace),
            Signal::BodyIs(text) => body == text.as_bytes(),
            Signal::Without(name) => !headers.contains_key(name),
        }
    }

    fn describe(&self) -> String {
        match self {
            Signal::Header(name, v) if v.is_empty() => format!("header {name}"),
            Signal::Header(name, v) => format!("{name}: *{v}*"),
            Signal::Body(text) => format!("body contains {text:?}"),
            Signal::EmptyBody => "empty body".to_owned(),
            Signal::BodyIs(text) => format!("body is {text:?}"),
            Signal::Without(name) => format!("no {name}"),
        }
    }
}

/// Whether `needle` occurs in `haystack` (an empty needle always does).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
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
            .find(|all| all.iter().all(|s| s.matches(headers, body, PAGE_WINDOW)))
            .map(Vec::as_slice)
    }
}

/// The verdict on one response: the layer label, the signals that decided it, and the chain of
/// products the response came through (origin's side first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub layer: String,
    pub evidence: String,
    /// The hops that passed the response on from the one that generated it, tickr's side last.
    pub relayed_by: Vec<String>,
    /// Every hop the headers show, as `product (Header: value)`, origin's side first.
    pub chain: Vec<String>,
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

    /// The layer that most likely generated this response, and the hops that relayed it.
    pub fn attribute(&self, headers: &HeaderMap, body: &[u8]) -> Attribution {
        self.attribute_in(headers, body, &Chain::read(headers))
    }

    /// [`attribute`](Self::attribute) with the response's chain already read.
    pub fn attribute_in(&self, headers: &HeaderMap, body: &[u8], chain: &Chain) -> Attribution {
        let generated = self
            .fingerprints
            .iter()
            .find_map(|f| f.matching(headers, body).map(|s| (f.layer.as_str(), s)))
            .or_else(|| {
                self.origin
                    .iter()
                    .find(|all| all.iter().all(|s| s.matches(headers, body, usize::MAX)))
                    .map(|s| (ORIGIN, s.as_slice()))
            });
        let (layer, evidence, relays) = match generated {
            Some((ORIGIN, signals)) => (ORIGIN, describe(signals), chain.relays()),
            Some((layer, signals)) => (layer, describe(signals), chain.relays_of(layer)),
            None => {
                let relays = chain.relays();
                let evidence = match chain.hops.iter().find(|h| h.passed_on) {
                    Some(server) => format!("no known error page; {}", server.seen),
                    None if relays.is_empty() => "no known error page or header".to_owned(),
                    None => "no known error page".to_owned(),
                };
                (UNKNOWN, evidence, relays)
            }
        };
        Attribution::new(layer, evidence, &relays, chain)
    }
}

impl Attribution {
    /// The verdict on `layer`, its evidence followed by the hops that relayed it.
    pub fn new(layer: &str, evidence: String, relays: &[&Hop], chain: &Chain) -> Self {
        let evidence = match relays {
            [] => evidence,
            relays => format!("{evidence}; relayed by {}", Chain::describe(relays)),
        };
        Self {
            layer: layer.to_owned(),
            evidence,
            relayed_by: relays
                .iter()
                .map(|h| h.product.unwrap_or(UNKNOWN).to_owned())
                .collect(),
            chain: chain.texts(),
        }
    }
}

/// Every response header the built-in attribution reads: its fingerprints' (present or
/// absent), `Server`, `Via` and the products' own headers. Any other header never changes a
/// verdict.
pub fn headers_read() -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = builtins()
        .iter()
        .flat_map(|f| f.any_of.iter().flatten())
        .filter_map(|s| match s {
            Signal::Header(name, _) | Signal::Without(name) => Some(name.clone()),
            _ => None,
        })
        .chain([http::header::SERVER, http::header::VIA])
        .chain(
            fingerprints::PRODUCT_HEADERS
                .iter()
                .map(|(name, _, _)| HeaderName::from_static(name)),
        )
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

fn describe(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(Signal::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(super) mod tests {
    use super::fingerprints::{b, h};
    use super::*;

    /// A header map from name/value pairs (for this module's tests and `chain`'s).
    pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
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
        assert_eq!(
            Chain::read(&headers(&[("server", "cloudflare")])).edge(),
            Some("cloudflare")
        );
        assert_eq!(
            Chain::read(&headers(&[("server", "gunicorn")])).edge(),
            None
        );
    }

    #[test]
    fn the_generating_hop_and_the_relaying_ones() {
        let a = Attributor::default();
        let nginx_page = b"<html><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx/1.22.1</center></body></html>";
        // Varnish in front of nginx: nginx generated, Varnish relayed.
        let got = a.attribute(
            &headers(&[
                ("server", "nginx/1.22.1"),
                ("via", "1.1 varnish (Varnish/7.1)"),
            ]),
            nginx_page,
        );
        assert_eq!(got.layer, "nginx");
        assert_eq!(got.relayed_by, ["varnish"]);
        assert!(
            got.evidence
                .ends_with("relayed by varnish (Via: 1.1 varnish (Varnish/7.1))"),
            "{}",
            got.evidence
        );
        // An application's page through Varnish in front of Apache: nobody's page; the
        // evidence names the chain, not only the origin's `Server`.
        let got = a.attribute(
            &headers(&[
                ("server", "Apache/2.4.62"),
                ("via", "1.1 varnish (Varnish/7.1)"),
            ]),
            b"<h1>Sorry</h1>",
        );
        assert_eq!(got.layer, UNKNOWN);
        assert_eq!(got.relayed_by, ["varnish"]);
        assert!(
            got.evidence
                .contains("Server: Apache/2.4.62; relayed by varnish"),
            "{}",
            got.evidence
        );
        assert_eq!(got.chain.len(), 2);
    }

    #[test]
    fn fingerprints_read_the_window_and_origin_signatures_the_whole_body() {
        let mut page = vec![b' '; PAGE_WINDOW];
        page.extend_from_slice(b"<center>nginx</center> Sorry, the shop is down");
        let a = Attributor::new(
            Vec::new(),
            vec![vec![fingerprints::b("Sorry, the shop is down")]],
        );
        assert_eq!(a.attribute(&headers(&[]), &page).layer, ORIGIN);
        page.drain(..32);
        assert_eq!(a.attribute(&headers(&[]), &page).layer, "nginx");
    }

    #[test]
    fn traefik_is_told_from_applications_saying_the_same_words() {
        let a = Attributor::default();
        let plain = [("content-type", "text/plain; charset=utf-8")];
        assert_eq!(
            a.attribute(&headers(&plain), b"Bad Gateway").layer,
            "traefik"
        );
        // Go's http.Error: nosniff and a newline.
        let go = [plain[0], ("x-content-type-options", "nosniff")];
        assert_eq!(a.attribute(&headers(&go), b"Bad Gateway\n").layer, UNKNOWN);
        assert_eq!(
            a.attribute(&headers(&plain), b"Bad Gateway\n").layer,
            UNKNOWN
        );
        // Express's sendStatus: ETag and X-Powered-By.
        let express = [plain[0], ("x-powered-by", "Express"), ("etag", "W/\"b-x\"")];
        assert_eq!(
            a.attribute(&headers(&express), b"Bad Gateway").layer,
            UNKNOWN
        );
    }
}
