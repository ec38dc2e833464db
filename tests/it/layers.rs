//! Layer attribution end to end. Live: real nginx, HAProxy and Caddy (Debian packages) turn an
//! upstream that fails on purpose into their own 502/503/504, tickr probes them, and the
//! `tickr_http_server_errors_total` series and the recorded events must name the proxy; an
//! application's own error page relayed through the same proxy must not. Recorded: the
//! response shapes in `tests/fixtures/layers/` (see its README for where each comes from),
//! attributed directly, the expected layer taken from each file's name.
//!
//! Each test prints its attribution table: `cargo test --test it layers -- --nocapture`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tickr::diagnosis::layer::{Attributor, ORIGIN, UNKNOWN};
use tokio::time::Instant;

use crate::common::exposition::Exposition;
use crate::common::procs::{free_port, Caddy, Haproxy, Nginx};
use crate::common::server::{Step, TestCa, TestServer, Validity};
use crate::common::tickr::Tickr;

const SERIES: &str = "tickr_http_server_errors_total";

// ---------------------------------------------------------------------------------------------
// Live: real proxies in front of a failing upstream
// ---------------------------------------------------------------------------------------------

/// The application's own error page, which the configured origin signature recognises.
const SHOP_PAGE: &str = "<html><body><h1>Sorry, the shop is down</h1>\
                         <p>Error reference: shop-app-error-7f3</p></body></html>";
const SHOP_SIGNATURE: &str = "Sorry, the shop is down";
/// Another application's error page, which nothing recognises.
const OTHER_PAGE: &str =
    "<html><body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>";

/// How long each proxy waits to connect to the upstream and for its response head before it
/// gives up: well under tickr's probe timeout, so tickr sees the proxy's 504.
const PROXY_TIMEOUT: Duration = Duration::from_millis(500);

/// How long the probes of one proxy may take to show every expected series.
const LIVE_LIMIT: Duration = Duration::from_secs(30);

/// One way the upstream fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Reads the request and closes the connection without a word.
    Close,
    /// Nothing listens on its port.
    Refused,
    /// Accepts and never answers (slower than the proxy's timeout).
    Slow,
    /// Answers 502 with the shop's own error page.
    ShopPage,
    /// Answers 503 with another application's error page.
    OtherPage,
}

impl Failure {
    const ALL: [Failure; 5] = [
        Failure::Close,
        Failure::Refused,
        Failure::Slow,
        Failure::ShopPage,
        Failure::OtherPage,
    ];

    fn name(self) -> &'static str {
        match self {
            Failure::Close => "close",
            Failure::Refused => "refused",
            Failure::Slow => "slow",
            Failure::ShopPage => "shop-page",
            Failure::OtherPage => "other-page",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Failure::Close => "upstream closes without answering",
            Failure::Refused => "upstream not listening",
            Failure::Slow => "upstream slower than the proxy's timeout",
            Failure::ShopPage => "upstream's own 502 page, origin signature configured",
            Failure::OtherPage => "upstream's own 503 page, no signature matches",
        }
    }
}

/// An upstream for every [`Failure`], alive as long as this is.
struct Upstreams {
    close: TestServer,
    slow: TestServer,
    shop: TestServer,
    other: TestServer,
    /// A port that was free a moment ago and that nothing here listens on.
    refused: SocketAddr,
}

impl Upstreams {
    async fn start() -> Self {
        let page = |status, body: &str| Step::Respond {
            status,
            headers: vec![("content-type", "text/html; charset=utf-8".to_owned())],
            body: body.to_owned(),
            delay: Duration::ZERO,
        };
        Self {
            close: TestServer::plain(vec![Step::Close]).await,
            slow: TestServer::plain(vec![Step::Hang]).await,
            shop: TestServer::plain(vec![page(502, SHOP_PAGE)]).await,
            other: TestServer::plain(vec![page(503, OTHER_PAGE)]).await,
            refused: ([127, 0, 0, 1], free_port()).into(),
        }
    }

    /// A port for the proxy's front of each failure: distinct from each other and from
    /// [`refused`](Self::refused), which [`free_port`] could otherwise hand out again (a proxy
    /// listening there would proxy to itself).
    fn front_ports(&self) -> Vec<(Failure, u16)> {
        let mut taken = HashSet::from([self.refused.port()]);
        Failure::ALL
            .iter()
            .map(|f| loop {
                let port = free_port();
                if taken.insert(port) {
                    break (*f, port);
                }
            })
            .collect()
    }

    fn addr(&self, f: Failure) -> SocketAddr {
        match f {
            Failure::Close => self.close.addr,
            Failure::Refused => self.refused,
            Failure::Slow => self.slow.addr,
            Failure::ShopPage => self.shop.addr,
            Failure::OtherPage => self.other.addr,
        }
    }
}

/// What tickr should report for one failure behind one proxy.
#[derive(Debug, Clone, Copy)]
struct Expect {
    failure: Failure,
    code: u16,
    layer: &'static str,
}

/// The proxy's own error for the first three failures; the application's page relayed as is
/// for the last two.
fn expectations(proxy: &'static str, refused_code: u16) -> Vec<Expect> {
    let e = |failure, code, layer| Expect {
        failure,
        code,
        layer,
    };
    vec![
        e(Failure::Close, 502, proxy),
        e(Failure::Refused, refused_code, proxy),
        e(Failure::Slow, 504, proxy),
        e(Failure::ShopPage, 502, ORIGIN),
        e(Failure::OtherPage, 503, UNKNOWN),
    ]
}

/// One line of the live attribution table.
struct LiveRow {
    proxy: &'static str,
    failure: Failure,
    code: u16,
    layer: String,
    evidence: String,
}

/// Starts tickr on one target per failure (`<proxy>-<failure>` at `urls[i]`), with the shop's
/// origin signature configured, waits until every expected series counts, and checks the
/// series and the recorded events. `tls_yaml` is the targets' `tls:` setting, if any.
async fn probe_proxy(
    proxy: &'static str,
    urls: &[(Failure, String)],
    expected: &[Expect],
    tls_yaml: Option<String>,
    proxy_logs: impl Fn() -> String,
) -> Vec<LiveRow> {
    let mut yaml = String::from("defaults:\n  interval: 2s\n  timeout: 1500ms\n");
    if let Some(tls) = tls_yaml {
        let _ = writeln!(yaml, "  tls: {tls}");
    }
    let _ = writeln!(
        yaml,
        "diagnosis:\n  origin:\n    - body: [{SHOP_SIGNATURE:?}]\ntargets:"
    );
    for (failure, url) in urls {
        let _ = writeln!(yaml, "  - name: {proxy}-{}\n    url: {url}", failure.name());
    }
    let tickr = Tickr::start(&yaml).await;
    let target = |f: Failure| format!("{proxy}-{}", f.name());

    let deadline = Instant::now() + LIVE_LIMIT;
    let metrics = loop {
        let m = tickr.metrics().await;
        let done = expected.iter().all(|e| {
            let code = e.code.to_string();
            let labels = [
                ("target", target(e.failure)),
                ("code", code),
                ("layer", e.layer.to_owned()),
            ];
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            m.value(SERIES, &labels) > 0.0
        });
        if done {
            break m;
        }
        if Instant::now() > deadline {
            panic!(
                "{proxy}: not every expected series after {LIVE_LIMIT:?}\nexpected: {expected:?}\nseen:\n{}\n{}",
                server_errors(&m),
                proxy_logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut rows = Vec::new();
    for e in expected {
        let name = target(e.failure);
        // Every 5xx of this target went to the expected code and layer, none elsewhere.
        for s in metrics.find(SERIES, &[("target", name.as_str())]) {
            assert_eq!(
                (s.labels["code"].as_str(), s.labels["layer"].as_str()),
                (e.code.to_string().as_str(), e.layer),
                "{name} ({}): unexpected series\n{}\n{}",
                e.failure.describe(),
                server_errors(&metrics),
                proxy_logs()
            );
        }
        let events = tickr.handle.recorder.failures(Some(&name), None, 100);
        assert!(!events.is_empty(), "{name}: no recorded failures");
        for ev in &events {
            assert_eq!(ev.status, Some(e.code), "{name}: event {:?}", ev.to_json());
            assert_eq!(
                ev.layer.as_deref(),
                Some(e.layer),
                "{name}: event {:?}",
                ev.to_json()
            );
            assert!(
                ev.evidence.as_deref().is_some_and(|s| !s.is_empty()),
                "{name}: event without evidence: {:?}",
                ev.to_json()
            );
        }
        rows.push(LiveRow {
            proxy,
            failure: e.failure,
            code: e.code,
            layer: events[0].layer.clone().unwrap_or_default(),
            evidence: events[0].evidence.clone().unwrap_or_default(),
        });
    }
    tickr.stop().await;
    rows
}

/// Every server-error sample, for failure messages.
fn server_errors(m: &Exposition) -> String {
    m.find(SERIES, &[])
        .map(|s| format!("  {:?} {}", s.labels, s.value))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_live_table(rows: &[LiveRow]) {
    let mut out = String::from(
        "\n| proxy | upstream failure | code | layer | evidence |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.proxy,
            r.failure.describe(),
            r.code,
            r.layer,
            r.evidence
        );
    }
    eprintln!("{out}");
}

fn timeout_ms() -> u128 {
    PROXY_TIMEOUT.as_millis()
}

#[tokio::test]
async fn nginx_over_tls_generated_errors_are_nginx_and_relayed_pages_are_not() {
    let upstreams = Upstreams::start().await;
    let ca = TestCa::new("tickr layers CA");
    let leaf = ca.leaf(&["127.0.0.1"], Validity::Valid);
    let certs = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, text: &str| {
        let path = certs.path().join(name);
        std::fs::write(&path, text).expect("write pem");
        path.display().to_string()
    };
    let (chain, key, ca_file) = (
        file("chain.pem", &leaf.chain_pem),
        file("key.pem", &leaf.key_pem),
        file("ca.pem", &ca.pem),
    );
    let t = timeout_ms();
    let mut servers = String::new();
    let mut urls = Vec::new();
    for (f, port) in upstreams.front_ports() {
        let _ = writeln!(
            servers,
            "server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {chain};\n    \
             ssl_certificate_key {key};\n    location / {{\n        proxy_pass http://{};\n        \
             proxy_connect_timeout {t}ms;\n        proxy_read_timeout {t}ms;\n    }}\n}}",
            upstreams.addr(f)
        );
        urls.push((f, format!("https://127.0.0.1:{port}/")));
    }
    let nginx = Nginx::start(&servers).await;
    let rows = probe_proxy(
        "nginx",
        &urls,
        &expectations("nginx", 502),
        Some(format!("{{ca_file: {ca_file}}}")),
        || nginx.logs(),
    )
    .await;
    print_live_table(&rows);
}

#[tokio::test]
async fn haproxy_generated_errors_are_haproxy_and_relayed_pages_are_not() {
    let upstreams = Upstreams::start().await;
    let mut sections = String::new();
    let mut urls = Vec::new();
    for (f, port) in upstreams.front_ports() {
        let name = f.name();
        let _ = writeln!(
            sections,
            "frontend fe-{name}\n    bind 127.0.0.1:{port}\n    default_backend be-{name}\n\n\
             backend be-{name}\n    server upstream {}\n",
            upstreams.addr(f)
        );
        urls.push((f, format!("http://127.0.0.1:{port}/")));
    }
    let haproxy = Haproxy::start(PROXY_TIMEOUT, &sections).await;
    // HAProxy answers a refused connection (after its retries) with 503 "No server is
    // available", not 502.
    let rows = probe_proxy(
        "haproxy",
        &urls,
        &expectations("haproxy", 503),
        None,
        || haproxy.logs(),
    )
    .await;
    print_live_table(&rows);
}

#[tokio::test]
async fn caddy_generated_errors_are_caddy_and_relayed_pages_are_not() {
    let upstreams = Upstreams::start().await;
    let t = timeout_ms();
    let mut sites = String::new();
    let mut urls = Vec::new();
    for (f, port) in upstreams.front_ports() {
        let _ = writeln!(
            sites,
            "http://127.0.0.1:{port} {{\n\treverse_proxy {} {{\n\t\ttransport http {{\n\t\t\t\
             dial_timeout {t}ms\n\t\t\tresponse_header_timeout {t}ms\n\t\t}}\n\t}}\n}}\n",
            upstreams.addr(f)
        );
        urls.push((f, format!("http://127.0.0.1:{port}/")));
    }
    let caddy = Caddy::start(&sites).await;
    let rows = probe_proxy("caddy", &urls, &expectations("caddy", 502), None, || {
        caddy.logs()
    })
    .await;
    print_live_table(&rows);
}

// ---------------------------------------------------------------------------------------------
// Recorded: response shapes of hosted products (and captures of the Debian ones)
// ---------------------------------------------------------------------------------------------

/// One `tests/fixtures/layers/<layer>[-<variant>]-<code>.http` file: a raw HTTP response.
struct Fixture {
    /// The file name without `.http`.
    stem: String,
    /// The layer its name expects; `origin` means "origin when the shop's signature is
    /// configured, `unknown` otherwise".
    layer: String,
    code: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layers")
}

fn load_fixtures() -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("read tests/fixtures/layers")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "http"))
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no fixtures in {}",
        fixtures_dir().display()
    );
    paths.iter().map(|p| load_fixture(p)).collect()
}

fn load_fixture(path: &Path) -> Fixture {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("utf-8 file name")
        .to_owned();
    let (layer, rest) = stem
        .split_once('-')
        .unwrap_or_else(|| panic!("{stem}: expected <layer>[-<variant>]-<code>.http"));
    let named_code: u16 = rest
        .rsplit('-')
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{stem}: the name must end in -<status code>"));
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (code, headers, body) =
        parse_response(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        code, named_code,
        "{stem}: the status line says {code}, the name {named_code}"
    );
    Fixture {
        stem: stem.clone(),
        layer: layer.to_owned(),
        code,
        headers,
        body,
    }
}

/// Splits a raw HTTP/1.1 response (`\r\n` or `\n` line ends) into status, headers and body.
fn parse_response(raw: &[u8]) -> Result<(u16, HeaderMap, Vec<u8>), String> {
    let split = [&b"\r\n\r\n"[..], &b"\n\n"[..]]
        .iter()
        .filter_map(|sep| {
            raw.windows(sep.len())
                .position(|w| w == *sep)
                .map(|i| (i, i + sep.len()))
        })
        .min();
    let (head, body) = match split {
        Some((end, start)) => (&raw[..end], &raw[start..]),
        None => (raw, &[][..]),
    };
    let head = std::str::from_utf8(head).map_err(|e| format!("head is not UTF-8: {e}"))?;
    let mut lines = head.lines();
    let status_line = lines.next().ok_or("empty file")?;
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("header value {value:?}: {e}"))?;
        headers.append(name, value);
    }
    Ok((code, headers, body.to_vec()))
}

/// A user fingerprint that adds a layer, one that replaces the built-in `nginx` (a team whose
/// ingress serves its own error pages, marked by a header), and the shop's origin signature.
const CONFIGURED: &str = r#"
diagnosis:
  fingerprints:
    - layer: shop_gateway
      headers: {x-shop-gateway: ""}
    - layer: nginx
      headers: {x-edge: "ingress-edge"}
      body: ["We are having trouble reaching the shop"]
  origin:
    - body: ["Sorry, the shop is down"]
"#;

/// What the built-ins alone should say about a fixture.
fn expected_by_default(f: &Fixture) -> &str {
    match f.layer.as_str() {
        ORIGIN => UNKNOWN,
        layer => layer,
    }
}

/// What the [`CONFIGURED`] attributor should say about a fixture.
fn expected_configured(f: &Fixture) -> &str {
    match (f.stem.as_str(), f.layer.as_str()) {
        ("unknown-shop-gateway-503", _) => "shop_gateway",
        ("unknown-custom-nginx-page-502", _) => "nginx",
        // The user's `nginx` replaced the built-in one: its default pages are no longer known.
        (_, "nginx") => UNKNOWN,
        (_, layer) => layer,
    }
}

fn table(rows: &[(String, u16, String, String)]) -> String {
    let mut out = String::from("\n| fixture | code | layer | evidence |\n|---|---|---|---|\n");
    for (stem, code, layer, evidence) in rows {
        let _ = writeln!(out, "| {stem} | {code} | {layer} | {evidence} |");
    }
    out
}

#[test]
fn recorded_error_pages_are_attributed_to_the_layer_in_their_name() {
    let fixtures = load_fixtures();
    let attributor = Attributor::default();
    let mut rows = Vec::new();
    let mut wrong = Vec::new();
    for f in &fixtures {
        assert!(f.code >= 500, "{}: not a server error", f.stem);
        let got = attributor.attribute(&f.headers, &f.body);
        let want = expected_by_default(f);
        if got.layer != want || got.evidence.is_empty() {
            wrong.push(format!(
                "{}: expected {want}, got {} ({})",
                f.stem, got.layer, got.evidence
            ));
        }
        rows.push((f.stem.clone(), f.code, got.layer, got.evidence));
    }
    eprintln!("{}", table(&rows));
    assert!(wrong.is_empty(), "misattributed:\n{}", wrong.join("\n"));

    // Every built-in layer has at least one recorded shape, and so do origin and unknown.
    for layer in attributor.layers() {
        assert!(
            fixtures.iter().any(|f| f.layer == layer),
            "no fixture for layer {layer}"
        );
    }
}

#[test]
fn configured_fingerprints_add_a_layer_replace_a_builtin_and_recognise_the_origin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = tickr::config::parse(&dir.path().join("config.yml"), CONFIGURED)
        .unwrap_or_else(|e| panic!("{e}"));
    let attributor = &config.diagnosis.attributor;
    let layers = attributor.layers();
    assert!(layers.contains(&"shop_gateway"), "{layers:?}");
    assert_eq!(
        layers.iter().filter(|l| **l == "nginx").count(),
        1,
        "{layers:?}"
    );

    let default = Attributor::default();
    let mut changed = Vec::new();
    let mut wrong = Vec::new();
    for f in &load_fixtures() {
        let got = attributor.attribute(&f.headers, &f.body);
        let want = expected_configured(f);
        if got.layer != want || got.evidence.is_empty() {
            wrong.push(format!(
                "{}: expected {want}, got {} ({})",
                f.stem, got.layer, got.evidence
            ));
        }
        if got.layer != default.attribute(&f.headers, &f.body).layer {
            changed.push((f.stem.clone(), f.code, got.layer, got.evidence));
        }
    }
    eprintln!(
        "\nWith the configured fingerprints, these differ from the built-ins:{}",
        table(&changed)
    );
    assert!(wrong.is_empty(), "misattributed:\n{}", wrong.join("\n"));
    // Both directions were exercised: a built-in replaced, a layer added, origin recognised.
    for layer in ["shop_gateway", "nginx", ORIGIN, UNKNOWN] {
        assert!(
            changed.iter().any(|(_, _, l, _)| l == layer),
            "no fixture changed to {layer}"
        );
    }
}

#[test]
fn a_fixture_parses_with_either_line_ending() {
    let crlf =
        b"HTTP/1.1 502 Bad Gateway\r\nServer: x\r\nVia: 1.1 a\r\nVia: 1.1 b\r\n\r\nbody\n\nmore";
    let (code, headers, body) = parse_response(crlf).expect("parse");
    assert_eq!(code, 502);
    assert_eq!(headers.get_all("via").iter().count(), 2);
    assert_eq!(body, b"body\n\nmore");
    let (code, _, body) = parse_response(b"HTTP/1.1 522 \nServer: cloudflare\n\n").expect("parse");
    assert_eq!((code, body.as_slice()), (522, &b""[..]));
}
