//! Probes against real local servers (plain and TLS with generated certificates), asserting the
//! exact counters, reasons and phases that each scripted behaviour must produce.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;

use tickr::config::Target;
use tickr::metrics::Metrics;
use tickr::probe::{self, Outcome, Reason};

use crate::common::exposition::Exposition;
use crate::common::server::{ServerTls, Step, TestCa, TestServer, Validity};
use crate::common::tickr::target;

/// Runs `n` probes of `t`, recording each, and returns the outcomes and the parsed exposition.
pub(crate) async fn probe_n(t: &Target, n: usize) -> (Vec<Outcome>, Exposition) {
    let metrics = Arc::new(Metrics::new());
    let tm = metrics.register_target(t);
    let mut outcomes = Vec::new();
    for _ in 0..n {
        let o = probe::run(t).await;
        tm.record(&o, None, None);
        outcomes.push(o);
    }
    (outcomes, Exposition::parse(&metrics.encode()))
}

async fn probe_once(t: &Target) -> Outcome {
    probe::run(t).await
}

fn reason(o: &Outcome) -> Option<&'static str> {
    o.failure.as_ref().map(|f| f.reason.as_str())
}

#[tokio::test]
async fn ten_probes_with_three_502s_are_counted_exactly() {
    let server = TestServer::plain(Step::statuses(&[
        200, 502, 200, 200, 502, 200, 200, 502, 200, 200,
    ]))
    .await;
    let t = target(&format!(
        "name: shop\nurl: {}\ntimeout: 2s\nlabels: {{team: web}}",
        server.url("/")
    ));
    let (outcomes, m) = probe_n(&t, 10).await;
    assert_eq!(server.connections(), 10, "one fresh connection per probe");
    let shop = [("target", "shop"), ("team", "web")];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = shop.to_vec();
        l.push(extra);
        l
    };
    assert_eq!(
        m.value(
            "tickr_http_responses_total",
            &[&with(("code", "502"))[..], &[("class", "5xx")]].concat()
        ),
        3.0
    );
    assert_eq!(
        m.value("tickr_http_responses_total", &with(("code", "200"))),
        7.0
    );
    assert_eq!(
        m.value("tickr_probe_runs_total", &with(("result", "failure"))),
        3.0
    );
    assert_eq!(
        m.value("tickr_probe_runs_total", &with(("result", "success"))),
        7.0
    );
    assert_eq!(
        m.value("tickr_probe_failures_total", &with(("reason", "status"))),
        3.0
    );
    assert_eq!(
        m.value("tickr_probe_failures_total", &with(("reason", "reset"))),
        0.0
    );
    // S F S S F S S F S S: six transitions.
    assert_eq!(m.value("tickr_probe_state_changes_total", &shop), 6.0);
    assert_eq!(
        m.value(
            "tickr_probe_duration_seconds_count",
            &with(("phase", "total"))
        ),
        10.0
    );
    // A 502 still has a head and a body: processing and transfer are observed for every probe.
    assert_eq!(
        m.value(
            "tickr_probe_duration_seconds_count",
            &with(("phase", "processing"))
        ),
        10.0
    );
    assert_eq!(
        m.value(
            "tickr_probe_duration_seconds_count",
            &with(("phase", "tls"))
        ),
        0.0
    );
    assert_eq!(m.value("tickr_probe_success", &shop), 1.0);
    assert_eq!(m.value("tickr_http_status_code", &shop), 200.0);
    assert!(m.value("tickr_last_probe_timestamp_seconds", &shop) > 1.7e9);
    assert_eq!(outcomes.iter().filter(|o| o.status == Some(502)).count(), 3);
}

#[tokio::test]
async fn gateway_codes_exist_at_zero_before_the_first_one() {
    let server = TestServer::plain(Step::statuses(&[200])).await;
    let t = target(&format!("name: fresh\nurl: {}", server.url("/")));
    let (_, m) = probe_n(&t, 1).await;
    for code in ["500", "502", "503", "504"] {
        assert_eq!(
            m.get(
                "tickr_http_responses_total",
                &[("target", "fresh"), ("code", code)]
            ),
            Some(0.0),
            "{code}"
        );
    }
    // `proxy` only for targets with a proxy (tests/it/proxy.rs): a direct one never fails so.
    for r in Reason::ALL.into_iter().filter(|r| *r != Reason::Proxy) {
        assert_eq!(
            m.get(
                "tickr_probe_failures_total",
                &[("target", "fresh"), ("reason", r.as_str())]
            ),
            Some(0.0)
        );
    }
    assert_eq!(
        m.get(
            "tickr_probe_failures_total",
            &[("target", "fresh"), ("reason", "proxy")]
        ),
        None
    );
}

struct Tls {
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Self {
        let ca = TestCa::new("tickr test CA");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.pem).unwrap();
        Self { ca, dir }
    }

    fn ca_file(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }
}

#[tokio::test]
async fn tls_with_a_trusted_ca_succeeds_over_h2_and_reports_expiry() {
    let tls = Tls::new();
    let leaf = tls.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    let t = target(&format!(
        "name: secure\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        tls.ca_file()
    ));
    let (outcomes, m) = probe_n(&t, 2).await;
    let o = &outcomes[0];
    assert_eq!(reason(o), None, "{:?}", o.failure);
    assert_eq!(
        o.http_version,
        Some(http::Version::HTTP_2),
        "ALPN auto prefers h2"
    );
    assert_eq!(o.tls_version, Some("TLS 1.3"));
    assert!(o.phases.tls.is_some() && o.phases.connect.is_some() && o.phases.processing.is_some());
    assert_eq!(
        m.value(
            "tickr_probe_duration_seconds_count",
            &[("target", "secure"), ("phase", "tls")]
        ),
        2.0
    );
    let not_after = m.get(
        "tickr_tls_cert_not_after_timestamp_seconds",
        &[("target", "secure")],
    );
    // The chain is leaf + CA: the leaf expires first.
    assert_eq!(not_after, Some(leaf.not_after_unix as f64));
}

#[tokio::test]
async fn every_probe_is_a_full_handshake() {
    let tls = Tls::new();
    let leaf = tls.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;

    // Control: a client that keeps its session cache does resume against this server, so the
    // server can tell the difference.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(tls.ca.pem.as_bytes()).unwrap())
        .unwrap();
    let resuming = Arc::new(
        rustls::ClientConfig::builder_with_provider(tickr::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(resuming.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        // Read the server's session tickets, which arrive after the handshake.
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
    }
    assert_eq!(
        server.handshakes().last(),
        Some(&rustls::HandshakeKind::Resumed),
        "control client must resume"
    );

    let t = target(&format!(
        "name: fresh\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        tls.ca_file()
    ));
    let before = server.handshakes().len();
    let (outcomes, _) = probe_n(&t, 3).await;
    assert!(outcomes
        .iter()
        .all(|o| o.success() && o.phases.tls.is_some()));
    let probes = &server.handshakes()[before..];
    assert_eq!(probes.len(), 3);
    assert!(
        probes.iter().all(|k| *k == rustls::HandshakeKind::Full),
        "probes must never resume: {probes:?}"
    );
}

#[tokio::test]
async fn expired_certificate_is_a_tls_failure_that_still_reports_expiry() {
    let tls = Tls::new();
    let leaf = tls.ca.leaf(&["127.0.0.1"], Validity::Expired);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    let t = target(&format!(
        "name: expired\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        tls.ca_file()
    ));
    let (outcomes, m) = probe_n(&t, 1).await;
    assert_eq!(reason(&outcomes[0]), Some("tls"));
    assert!(outcomes[0]
        .failure
        .as_ref()
        .unwrap()
        .detail
        .to_lowercase()
        .contains("expired"));
    assert_eq!(
        m.get(
            "tickr_tls_cert_not_after_timestamp_seconds",
            &[("target", "expired")]
        ),
        Some(leaf.not_after_unix as f64)
    );
    assert_eq!(
        m.value(
            "tickr_probe_failures_total",
            &[("target", "expired"), ("reason", "tls")]
        ),
        1.0
    );
    // The handshake did not finish: no tls phase, no processing.
    assert_eq!(
        m.value(
            "tickr_probe_duration_seconds_count",
            &[("target", "expired"), ("phase", "tls")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "tickr_probe_duration_seconds_count",
            &[("target", "expired"), ("phase", "connect")]
        ),
        1.0
    );
}

#[tokio::test]
async fn wrong_host_and_untrusted_ca_are_tls_failures_with_expiry() {
    let tls = Tls::new();
    let wrong = tls.ca.leaf(&["shop.test"], Validity::Valid);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&wrong)).await;
    let t = target(&format!(
        "name: wrong\nurl: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        tls.ca_file()
    ));
    let o = probe_once(&t).await;
    assert_eq!(reason(&o), Some("tls"));
    assert_eq!(o.cert_not_after, Some(wrong.not_after_unix));

    // The same certificate verifies when the configured server_name matches it.
    let t = target(&format!(
        "name: sni\nurl: {}\ntls: {{ca_file: {}, server_name: shop.test}}",
        server.url("/"),
        tls.ca_file()
    ));
    assert_eq!(reason(&probe_once(&t).await), None);

    // Without the CA, the chain is untrusted; insecure_skip_verify accepts it and still reports expiry.
    let other = Tls::new();
    let leaf = other.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    let t = target(&format!("name: untrusted\nurl: {}", server.url("/")));
    let o = probe_once(&t).await;
    assert_eq!(reason(&o), Some("tls"));
    assert_eq!(o.cert_not_after, Some(leaf.not_after_unix));
    let t = target(&format!(
        "name: insecure\nurl: {}\ntls: {{insecure_skip_verify: true}}",
        server.url("/")
    ));
    let o = probe_once(&t).await;
    assert_eq!(reason(&o), None, "{:?}", o.failure);
    assert_eq!(o.cert_not_after, Some(leaf.not_after_unix));
}

#[tokio::test]
async fn http_version_can_be_forced() {
    let tls = Tls::new();
    let leaf = tls.ca.leaf(&["127.0.0.1"], Validity::Valid);
    let server = TestServer::tls(Step::statuses(&[200]), ServerTls::new(&leaf)).await;
    let base = format!(
        "url: {}\ntls: {{ca_file: {}}}",
        server.url("/"),
        tls.ca_file()
    );
    let o = probe_once(&target(&format!("name: h1\nhttp_version: http1\n{base}"))).await;
    assert_eq!(
        (reason(&o), o.http_version),
        (None, Some(http::Version::HTTP_11))
    );
    let o = probe_once(&target(&format!("name: h2\nhttp_version: http2\n{base}"))).await;
    assert_eq!(
        (reason(&o), o.http_version),
        (None, Some(http::Version::HTTP_2))
    );

    // A server offering only http/1.1 cannot satisfy a forced HTTP/2: this one refuses the
    // handshake (RFC 7301 no_application_protocol); one that ignores ALPN fails as `protocol`.
    let h1_only = TestServer::tls(
        Step::statuses(&[200]),
        ServerTls::with_alpn(&leaf, &[b"http/1.1"]),
    )
    .await;
    let t = target(&format!(
        "name: noh2\nhttp_version: http2\nurl: {}\ntls: {{ca_file: {}}}",
        h1_only.url("/"),
        tls.ca_file()
    ));
    let o = probe_once(&t).await;
    assert_eq!(reason(&o), Some("tls"));
    assert!(o.failure.unwrap().detail.contains("NoApplicationProtocol"));
    let ignores_alpn =
        TestServer::tls(Step::statuses(&[200]), ServerTls::with_alpn(&leaf, &[])).await;
    let t = target(&format!(
        "name: noh2\nhttp_version: http2\nurl: {}\ntls: {{ca_file: {}}}",
        ignores_alpn.url("/"),
        tls.ca_file()
    ));
    assert_eq!(reason(&probe_once(&t).await), Some("protocol"));

    // Plain HTTP/2 with prior knowledge.
    let plain = TestServer::plain(Step::statuses(&[200])).await;
    let o = probe_once(&target(&format!(
        "name: h2c\nhttp_version: http2\nurl: {}",
        plain.url("/")
    )))
    .await;
    assert_eq!(
        (reason(&o), o.http_version),
        (None, Some(http::Version::HTTP_2))
    );
}

#[tokio::test]
async fn connection_level_failures_are_classified() {
    let cases: Vec<(Step, &str)> = vec![
        (Step::Close, "reset"),
        (Step::Reset, "reset"),
        (Step::Raw(b"SSH-2.0-OpenSSH_9.2\r\n"), "protocol"),
        (
            Step::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"),
            "reset",
        ),
        (Step::Hang, "timeout"),
        (Step::slow(200, Duration::from_secs(5)), "timeout"),
    ];
    for (step, want) in cases {
        let server = TestServer::plain(vec![step.clone()]).await;
        let t = target(&format!(
            "name: t\nurl: {}\ninterval: 5s\ntimeout: 300ms",
            server.url("/")
        ));
        let started = std::time::Instant::now();
        let o = probe_once(&t).await;
        assert_eq!(reason(&o), Some(want), "{step:?}: {:?}", o.failure);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{step:?} must end within its timeout"
        );
        if want == "timeout" {
            assert!(o.phases.total >= Duration::from_millis(300));
            assert!(
                o.phases.processing.is_none(),
                "an unanswered request has no processing time"
            );
            assert!(o.phases.connect.is_some(), "the connect phase finished");
        }
    }
}

#[tokio::test]
async fn refused_connections_and_unresolvable_names() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = probe_once(&target(&format!(
        "name: closed\nurl: http://127.0.0.1:{port}/"
    )))
    .await;
    assert_eq!(reason(&o), Some("connect"));
    assert!(o.phases.resolve.is_some() && o.phases.connect.is_none());

    // Both fail without any query leaving the machine.
    let o = probe_once(&target("name: reserved\nurl: http://no-such-host.invalid/")).await;
    assert_eq!(reason(&o), Some("dns"));
    let o = probe_once(&target(&format!(
        "name: v6only\nurl: http://127.0.0.1:{port}/\nip_protocol: ipv6"
    )))
    .await;
    assert_eq!(reason(&o), Some("dns"));
}

#[tokio::test]
async fn redirects_are_followed_bounded_or_reported() {
    let end = TestServer::plain(vec![Step::body(200, "arrived")]).await;
    let hop = TestServer::plain(vec![Step::redirect(302, &end.url("/end"))]).await;
    let t = target(&format!(
        "name: r\nurl: {}\nexpect: {{body_contains: [arrived]}}",
        hop.url("/start")
    ));
    let o = probe_once(&t).await;
    assert_eq!((reason(&o), o.status, o.redirects), (None, Some(200), 1));

    // Not following: the 302 is the final answer.
    let t = target(&format!(
        "name: r\nurl: {}\nfollow_redirects: false",
        hop.url("/start")
    ));
    let o = probe_once(&t).await;
    assert_eq!((reason(&o), o.status), (Some("status"), Some(302)));
    let t = target(&format!(
        "name: r\nurl: {}\nfollow_redirects: false\nexpect: {{status: [302]}}",
        hop.url("/")
    ));
    assert_eq!(reason(&probe_once(&t).await), None);

    // A host the URL parser takes but HTTP cannot carry is the server's error, not a panic, and
    // is refused before any lookup.
    let odd = TestServer::plain(vec![Step::redirect(302, "http://a}b.test/")]).await;
    let o = probe_once(&target(&format!("name: odd\nurl: {}", odd.url("/")))).await;
    assert_eq!((reason(&o), o.redirects), (Some("protocol"), 0));

    // A loop ends after ten hops.
    let looping = TestServer::plain(vec![Step::redirect(301, "/again")]).await;
    let o = probe_once(&target(&format!("name: loop\nurl: {}", looping.url("/")))).await;
    assert_eq!((reason(&o), o.redirects), (Some("redirects"), 10));
    assert_eq!(looping.connections(), 11);
}

#[tokio::test]
async fn bodies_are_bounded_and_matched() {
    let big = "x".repeat(5000);
    let server = TestServer::plain(vec![Step::body(200, &big)]).await;
    let t = target(&format!(
        "name: big\nurl: {}\nmax_body_bytes: 1KiB",
        server.url("/")
    ));
    assert_eq!(reason(&probe_once(&t).await), Some("too_large"));

    let server = TestServer::plain(vec![Step::body(200, "<title>Shop</title> Bad Gateway")]).await;
    let t = target(&format!(
        "name: m\nurl: {}\nexpect:\n  body_contains: [\"<title>Shop\"]\n  body_not_contains: [{{name: gateway_page, text: Bad Gateway}}]",
        server.url("/")
    ));
    let (outcomes, m) = probe_n(&t, 2).await;
    assert_eq!(reason(&outcomes[0]), Some("body_mismatch"));
    assert_eq!(outcomes[0].matches, vec![true, false]);
    assert_eq!(
        m.get(
            "tickr_body_match",
            &[("target", "m"), ("matcher", "<title>Shop")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "tickr_body_match",
            &[("target", "m"), ("matcher", "gateway_page")]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.get(
            "tickr_body_mismatches_total",
            &[("target", "m"), ("matcher", "gateway_page")]
        ),
        Some(2.0)
    );
    assert_eq!(
        m.get(
            "tickr_body_mismatches_total",
            &[("target", "m"), ("matcher", "<title>Shop")]
        ),
        Some(0.0)
    );

    // Regular expressions, exposed the same way; the first that fails names the failure.
    let t = target(&format!(
        "name: r\nurl: {}\nexpect:\n  body_matches: [\"<title>[A-Z][a-z]+</title>\"]\n  \
         body_not_matches: [{{name: gateway_regex, text: \"Bad Gateway|Service Unavailable\"}}]",
        server.url("/")
    ));
    let (outcomes, m) = probe_n(&t, 1).await;
    assert_eq!(reason(&outcomes[0]), Some("body_mismatch"));
    assert_eq!(outcomes[0].matches, vec![true, false]);
    let detail = &outcomes[0].failure.as_ref().unwrap().detail;
    assert_eq!(detail, "body matches \"gateway_regex\"");
    assert_eq!(
        m.get(
            "tickr_body_mismatches_total",
            &[("target", "r"), ("matcher", "gateway_regex")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "tickr_body_match",
            &[("target", "r"), ("matcher", "<title>[A-Z][a-z]+</title>")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_request_carries_method_headers_host_and_body() {
    let server = TestServer::plain(vec![Step::Echo]).await;
    let t = target(&format!(
        "name: echo\nurl: {}\nmethod: post\nbody: '{{\"q\":1}}'\nheaders: {{X-Api-Key: k-123}}\nexpect:\n  body_contains: [\"POST /search?x=1\", \"x-api-key: k-123\", \"host: {}\", \"user-agent: tickr/\", '{{\"q\":1}}']",
        server.url("/search?x=1"),
        server.addr
    ));
    let o = probe_once(&t).await;
    assert_eq!(reason(&o), None, "{:?} {:?}", o.failure, o.matches);
}
