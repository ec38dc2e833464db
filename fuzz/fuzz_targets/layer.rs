//! Layer attribution of a response: headers (`name: value` lines up to a blank line), then the
//! body. Always one of the attributor's layers.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tickr::diagnosis::layer::{Attributor, Chain};

fuzz_target!(|data: &[u8]| {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&[][..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let a = Attributor::default();
    let layers = a.layers();
    let got = a.attribute(&headers, body);
    assert!(layers.contains(&got.layer.as_str()), "{got:?}");
    let chain = Chain::read(&headers);
    if let Some(edge) = chain.edge() {
        assert!(layers.contains(&edge), "{edge}");
    }
    let _ = Chain::describe(&chain.relays());
});
