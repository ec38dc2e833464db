//! What tickr tells browsers and refuses from them, over real sockets: the security headers on
//! every response (once each), the reload refused to anything a web page sends and granted to
//! scripts whatever `Host` they use, and JSON with no markup in it.
//! Real Chromium trying the same is in `browser.rs`; the web config's overrides in `webconfig.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::server::{Step, TestServer};
use crate::common::tickr::Tickr;

/// An application error page that a probe records as evidence: markup, a script, entities.
const ERROR_PAGE: &str = "<html><script>alert('x')</script><b>down</b> &amp; out</html>";

/// One request written as is (so that `Host`, `Origin` and the rest are exactly what a client
/// sends), and the answer as status, headers in order (names lowercased) and body.
async fn raw(addr: SocketAddr, request: &str) -> (u16, Vec<(String, String)>, String) {
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.expect("read");
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {answer}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// `method path` with `headers`, `Connection: close` and the body `body`.
fn request(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

async fn with_events() -> (TestServer, Tickr) {
    let server = TestServer::plain(vec![Step::Respond {
        status: 502,
        headers: vec![("content-type", "text/html".to_owned())],
        body: ERROR_PAGE.to_owned(),
        delay: Duration::ZERO,
    }])
    .await;
    let tickr = Tickr::start(&format!(
        "targets:\n  - name: \"shop <&>\"\n    url: {}\n    interval: 200ms\n    timeout: 150ms\n",
        server.url("/down?a=1&b=2")
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tickr.handle.recorder.failures(None, None, 10).is_empty() {
        assert!(Instant::now() < deadline, "no failure recorded within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, tickr)
}

#[tokio::test]
async fn every_response_carries_the_security_headers_once() {
    let (_server, tickr) = with_events().await;
    let host = format!("Host: {}", tickr.addr);
    let origin = format!("Origin: http://{}", tickr.addr);
    for (method, path, extra, status) in [
        ("GET", "/", None, 200),
        ("HEAD", "/", None, 200),
        ("GET", "/metrics", None, 200),
        ("GET", "/events", None, 200),
        ("GET", "/events?format=json", None, 200),
        ("GET", "/-/healthy", None, 200),
        ("GET", "/-/ready", None, 200),
        ("GET", "/-/reload", None, 405),
        ("GET", "/nope", None, 404),
        ("POST", "/-/reload", None, 200),
        ("POST", "/-/reload", Some(origin.as_str()), 403),
    ] {
        let headers: Vec<&str> = [Some(host.as_str()), extra].into_iter().flatten().collect();
        let (got, headers, _) = raw(tickr.addr, &request(method, path, &headers, "")).await;
        let what = format!("{method} {path} {extra:?}");
        assert_eq!(got, status, "{what}: {headers:?}");
        let csp = values(&headers, "content-security-policy");
        assert_eq!(csp.len(), 1, "{what}: {headers:?}");
        for directive in [
            "default-src 'none'",
            "style-src 'sha256-",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ] {
            assert!(csp[0].contains(directive), "{what}: {directive} in {csp:?}");
        }
        assert!(!csp[0].contains("unsafe"), "{what}: {csp:?}");
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(values(&headers, name), [value], "{what}: {headers:?}");
        }
    }
    tickr.stop().await;
}

#[tokio::test]
async fn events_json_carries_no_markup_a_browser_could_sniff() {
    let (_server, tickr) = with_events().await;
    for (path, accept) in [
        ("/events?format=json", None),
        ("/events", Some("Accept: application/json")),
    ] {
        let headers: Vec<&str> = [Some("Host: tickr"), accept]
            .into_iter()
            .flatten()
            .collect();
        let (status, headers, body) = raw(tickr.addr, &request("GET", path, &headers, "")).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(values(&headers, "content-type"), ["application/json"]);
        assert!(
            !body.contains(['<', '>', '&']),
            "{path} has markup characters:\n{body}"
        );
        // Escaped, not lost: the evidence reads back as the target sent it.
        let json: Value = serde_json::from_str(&body).expect("JSON");
        let event = &json["events"][0];
        assert_eq!(event["target"], "shop <&>", "{json}");
        assert!(
            event["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/down?a=1&b=2")),
            "{event}"
        );
        assert!(
            event["body_excerpt"]
                .as_str()
                .is_some_and(|b| b.contains("<script>alert('x')</script>")),
            "{event}"
        );
        assert!(body.contains(r"\u003cscript\u003e"), "{body}");
    }
    tickr.stop().await;
}

/// Every header combination a browser sends on a page's behalf is refused, same origin and
/// rebound names included; scripts get through with any `Host`, any body and content type.
#[tokio::test]
async fn reload_is_refused_to_web_pages_and_granted_to_scripts() {
    let tickr = Tickr::start("targets: []\n").await;
    let own = format!("Host: {}", tickr.addr);
    let own_origin = format!("Origin: http://{}", tickr.addr);
    let refused: &[(&str, &[&str])] = &[
        ("POST", &["Host: tickr", "Origin: http://evil.example"]),
        ("POST", &[own.as_str(), own_origin.as_str()]),
        ("POST", &[own.as_str(), "Origin: null"]),
        ("POST", &[own.as_str(), "Sec-Fetch-Site: cross-site"]),
        ("POST", &[own.as_str(), "Sec-Fetch-Site: same-site"]),
        ("POST", &[own.as_str(), "Sec-Fetch-Site: same-origin"]),
        // DNS rebinding: the attacker's name in both, as Chromium sends them.
        (
            "POST",
            &[
                "Host: rebind.example:10216",
                "Origin: http://rebind.example:10216",
            ],
        ),
        ("PUT", &[own.as_str(), own_origin.as_str()]),
    ];
    for (method, headers) in refused {
        let (status, _, body) = raw(tickr.addr, &request(method, "/-/reload", headers, "")).await;
        assert_eq!(status, 403, "{method} {headers:?}: {body}");
        assert!(
            body.starts_with("Reload refused: a web page sent"),
            "{body}"
        );
        assert_eq!(body.lines().count(), 1, "{body}");
    }
    let granted: &[(&str, &[&str], &str)] = &[
        ("POST", &[own.as_str()], ""),
        ("PUT", &[own.as_str()], ""),
        // curl -d '' and wget --post-data '': a form content type, from a script.
        (
            "POST",
            &[
                own.as_str(),
                "Content-Type: application/x-www-form-urlencoded",
            ],
            "",
        ),
        ("POST", &["Host: tickr.example.com:10216"], "x"),
        ("POST", &["Host: 10.0.0.7"], ""),
        ("POST", &[own.as_str(), "Sec-Fetch-Site: none"], ""),
    ];
    for (method, headers, body) in granted {
        let (status, _, answer) =
            raw(tickr.addr, &request(method, "/-/reload", headers, body)).await;
        assert_eq!(
            (status, answer.as_str()),
            (200, "Configuration reloaded\n"),
            "{method} {headers:?}"
        );
    }
    // Scrapes by any name, as service discovery and proxies address tickr.
    for host in [
        "Host: tickr.example.com",
        "Host: rebind.example:10216",
        "Host: [::1]:1",
    ] {
        let (status, _, body) = raw(tickr.addr, &request("GET", "/metrics", &[host], "")).await;
        assert_eq!(status, 200, "{host}");
        assert!(body.contains("\ntickr_build_info{"), "{host}");
    }
    tickr.stop().await;
}
