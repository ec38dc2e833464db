//! A response cut in the middle of its body: a 200 head, part of the body, then a reset (over
//! HTTP/1.1) or a `RST_STREAM` (over h2), directly and relayed by a real nginx. What arrived is
//! kept and attributed, and the cut response is counted apart from whole ones
//! (`class="cut"` in `tickr_http_responses_total`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::common::procs::Nginx;
use crate::common::server::{H2Abort, Step, TestServer};
use crate::common::tickr::Tickr;

const LIMIT: Duration = Duration::from_secs(20);

/// The head and the first part of a body that announces 100,000 bytes.
const CUT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 100000\r\n\r\n\
<html><body><h1>Today's offers</h1><p>the first part of the body";

#[tokio::test]
async fn what_arrived_of_a_cut_body_is_kept_attributed_and_counted_as_cut() {
    let http1 = TestServer::plain(vec![Step::RawThenReset(CUT)]).await;
    let h2 = TestServer::plain(vec![Step::H2Abort(H2Abort::RstStream)]).await;
    // A real nginx relaying an upstream that resets mid-body: nginx has sent the head and what
    // it had, and closes the connection short of the announced length.
    let upstream = TestServer::plain(vec![Step::RawThenReset(CUT)]).await;
    let port = crate::common::procs::free_port();
    let mut servers = String::new();
    let _ = writeln!(
        servers,
        "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n        proxy_pass http://{};\n        \
         proxy_buffering off;\n    }}\n}}",
        upstream.addr
    );
    let nginx = Nginx::start(&servers).await;

    let yaml = format!(
        "defaults:\n  interval: 1s\n  timeout: 900ms\n  confirm: 0\ntargets:\n  \
         - name: direct\n    url: {}\n  \
         - name: h2\n    url: {}\n    http_version: http2\n  \
         - name: nginx\n    url: http://127.0.0.1:{port}/\n",
        http1.url("/"),
        h2.url("/"),
    );
    let tickr = Tickr::start(&yaml).await;
    let cut = |t: &'static str| [("target", t), ("code", "200"), ("class", "cut")];
    let m = tickr
        .wait_for(LIMIT, "a cut response of every target", |m| {
            ["direct", "h2", "nginx"]
                .iter()
                .all(|t| m.value("tickr_http_responses_total", &cut(t)) >= 1.0)
        })
        .await;
    for t in ["direct", "h2", "nginx"] {
        // A cut 200 is not a 200: the 2xx series stays at zero, the probe failed as a reset.
        assert_eq!(
            m.value(
                "tickr_http_responses_total",
                &[("target", t), ("code", "200"), ("class", "2xx")]
            ),
            0.0,
            "{t}"
        );
        assert!(
            m.value(
                "tickr_probe_failures_total",
                &[("target", t), ("reason", "reset")]
            ) >= 1.0,
            "{t}"
        );
    }

    let event = |t: &str| {
        tickr
            .handle
            .recorder
            .failures(Some(t), None, 10)
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("{t}: no event"))
    };
    let direct = event("direct");
    assert_eq!(
        (direct.status, direct.reason, direct.cut),
        (Some(200), Some("reset"), true),
        "{:?}",
        direct.to_json()
    );
    assert!(direct.body_excerpt.contains("the first part of the body"));
    assert_eq!(direct.body_bytes, 64);
    // No header names a product: the cut is nobody's known doing, and says what arrived.
    assert_eq!(direct.layer.as_deref(), Some("unknown"));
    assert!(
        direct
            .evidence
            .as_deref()
            .is_some_and(|e| e.contains("64 bytes")),
        "{:?}",
        direct.evidence
    );

    let h2 = event("h2");
    assert_eq!((h2.status, h2.cut), (Some(200), true), "{:?}", h2.to_json());
    assert_eq!(h2.body_excerpt, "the first half of a body");

    let relayed = event("nginx");
    assert_eq!((relayed.status, relayed.cut), (Some(200), true));
    assert!(
        relayed.body_excerpt.contains("Today's offers"),
        "{:?}",
        relayed.to_json()
    );
    // nginx closed tickr's connection: the first hop, named with its header.
    assert_eq!(
        relayed.layer.as_deref(),
        Some("nginx"),
        "{:?}",
        relayed.to_json()
    );
    assert!(relayed
        .chain
        .iter()
        .any(|h| h.starts_with("nginx (Server: nginx")));
    let json = relayed.to_json();
    assert_eq!(json["cut"], true);
    tickr.stop().await;
    drop(nginx);
}
