//! What tickr's HTTP server tells browsers and what it refuses from them: the security headers
//! on every response, and the guard that keeps web pages (of any origin) from reloading tickr.

use std::sync::LazyLock;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, ORIGIN, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

/// The browser's marker of why it sent a request; not in `http`'s list of names.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Sets the headers every response carries, whatever its type: the pages' policy (see
/// [`crate::pages::content_security_policy`]), no MIME sniffing, no framing, no referrer.
/// The web config's `http_server_config.headers` are applied after these and replace them.
pub fn secure(headers: &mut HeaderMap) {
    static POLICY: LazyLock<HeaderValue> =
        LazyLock::new(|| HeaderValue::from_static(crate::pages::content_security_policy()));
    headers.insert(CONTENT_SECURITY_POLICY, POLICY.clone());
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// The header showing that a browser sent this request on behalf of a web page, if one does;
/// a state-changing endpoint refuses such a request.
///
/// Browsers send `Origin` with every `POST`, same-origin ones included, and `Sec-Fetch-Site`
/// (`none` only when the user asked for the URL directly) to HTTPS and loopback; scripts and
/// tooling (curl, Prometheus' config reloaders) send neither. A page of tickr's own origin is
/// refused too: tickr's pages never reload, and a page of a name rebound by DNS to tickr's
/// address is "same-origin" to the browser, with a `Host` that only its attacker knows. Checking
/// the content type instead would refuse `curl -d ''`, and stop no browser these headers miss.
pub fn sent_by_web_page(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(ORIGIN) {
        return Some(format!("Origin: {}", printable(origin)));
    }
    headers
        .get(SEC_FETCH_SITE)
        .filter(|site| site.as_bytes() != b"none")
        .map(|site| format!("Sec-Fetch-Site: {}", printable(site)))
}

/// A header value for a log line: what a client sent is not necessarily text, nor short.
fn printable(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes())
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn only_requests_without_a_page_behind_them_pass() {
        // curl, wget, Prometheus-style reloaders: no browser headers.
        assert_eq!(sent_by_web_page(&headers(&[])), None);
        assert_eq!(
            sent_by_web_page(&headers(&[("content-type", "text/plain")])),
            None
        );
        // A user typing the URL: the browser says so (and cannot POST that way anyway).
        assert_eq!(
            sent_by_web_page(&headers(&[("sec-fetch-site", "none")])),
            None
        );
        for (pairs, why) in [
            (
                &[("sec-fetch-site", "cross-site")][..],
                "Sec-Fetch-Site: cross-site",
            ),
            (
                &[("sec-fetch-site", "same-site")],
                "Sec-Fetch-Site: same-site",
            ),
            (
                &[("sec-fetch-site", "same-origin")],
                "Sec-Fetch-Site: same-origin",
            ),
            (&[("origin", "null")], "Origin: null"),
            (
                &[("origin", "http://tickr:10216"), ("sec-fetch-site", "none")],
                "Origin: http://tickr:10216",
            ),
        ] {
            assert_eq!(
                sent_by_web_page(&headers(pairs)).as_deref(),
                Some(why),
                "{pairs:?}"
            );
        }
    }
}
