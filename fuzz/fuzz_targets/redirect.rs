//! Redirects as the probe follows them: a base URL on the first line, a `Location` value on the
//! second, joined with `Url::join`. An http(s) result has a host and a port.
#![no_main]

use http::header::HeaderValue;
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|text: &str| {
    let (base, location) = text.split_once('\n').unwrap_or(("http://127.0.0.1/", text));
    let Ok(base) = Url::parse(base) else { return };
    if !matches!(base.scheme(), "http" | "https") {
        return;
    }
    let Ok(value) = HeaderValue::from_str(location) else {
        return;
    };
    let Ok(location) = value.to_str() else { return };
    if let Ok(next) = base.join(location) {
        if matches!(next.scheme(), "http" | "https") {
            assert!(next.host_str().is_some_and(|h| !h.is_empty()), "{next}");
            assert!(next.port_or_known_default().is_some(), "{next}");
        }
    }
});
