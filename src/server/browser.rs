//! What tickr's HTTP server tells browsers and what it refuses from them: the security headers
//! on every response, the guard that keeps web pages (of any origin) from reloading tickr, and
//! JSON that no browser can take for HTML.

use std::io;
use std::sync::LazyLock;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_SECURITY_POLICY, ORIGIN, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use serde::Serialize;

/// The browser's marker of why it sent a request; not in `http`'s list of names.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Sets the headers every response carries, whatever its type: the pages' policy (see
/// [`crate::server::pages::content_security_policy`]), no MIME sniffing, no framing, no referrer.
/// The web config's `http_server_config.headers` are applied after these and replace them.
pub fn secure(headers: &mut HeaderMap) {
    static POLICY: LazyLock<HeaderValue> =
        LazyLock::new(|| HeaderValue::from_static(crate::server::pages::content_security_policy()));
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

/// `value` as JSON with `<`, `>` and `&` (and the two line separators JavaScript once rejected)
/// as `\u` escapes: a browser that sniffed it, or a page that inlined it, finds no markup.
pub fn json(value: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    value
        .serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, HtmlSafe,
        ))
        .expect("serializing to a Vec cannot fail");
    out
}

/// serde_json's compact output, with the escapes of [`json`].
struct HtmlSafe;

impl serde_json::ser::Formatter for HtmlSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let c = rest[at..].chars().next().expect("found a char here");
            write!(writer, "\\u{:04x}", u32::from(c))?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json as value;

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

    #[test]
    fn json_has_no_markup_and_reads_back_the_same() {
        let v = value!({"<b>&</b>": ["</script><script>alert(1)</script>", "a\u{2028}b", "é \"q\" \\"]});
        let text = String::from_utf8(json(&v)).expect("UTF-8");
        assert_eq!(
            text,
            r#"{"\u003cb\u003e\u0026\u003c/b\u003e":["\u003c/script\u003e\u003cscript\u003ealert(1)\u003c/script\u003e","a\u2028b","é \"q\" \\"]}"#
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("JSON"),
            v
        );
    }
}
