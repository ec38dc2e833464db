//! Checks of the response beyond its status and body: `expect.headers` (substrings and regexes
//! per header, with `allow_missing`), counted per matcher like body matchers and failing the
//! probe as `header_mismatch`; and `expect.http_versions`.

use std::time::Duration;

use tickr::probe::{self, Outcome};

use crate::common::server::{Step, TestServer};
use crate::common::tickr::target;
use crate::probes::probe_n;

fn respond(headers: &[(&'static str, &str)]) -> Step {
    Step::Respond {
        status: 200,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: "{}".into(),
        delay: Duration::ZERO,
    }
}

fn reason(o: &Outcome) -> Option<&'static str> {
    o.failure.as_ref().map(|f| f.reason.as_str())
}

#[tokio::test]
async fn header_checks_are_counted_per_matcher_and_fail_as_header_mismatch() {
    let good = [
        ("content-type", "application/json; charset=utf-8"),
        ("x-frame-options", "DENY"),
        ("server", "envoy"),
    ];
    let server = TestServer::plain(vec![
        respond(&good),
        // The wrong type, and a frame option the regex refuses.
        respond(&[
            ("content-type", "text/html"),
            ("x-frame-options", "ALLOWALL"),
            ("server", "envoy"),
        ]),
        // No content type at all, and a server the negative check refuses.
        respond(&[("x-frame-options", "SAMEORIGIN"), ("server", "nginx/1.25")]),
        respond(&good),
    ])
    .await;
    let t = target(&format!(
        "name: api\nurl: {}\nexpect:\n  headers:\n    Content-Type: {{contains: application/json}}\n    X-Frame-Options: {{matches: [{{name: frames, text: \"^(DENY|SAMEORIGIN)$\"}}]}}\n    Server: {{not_contains: nginx}}\n    X-Cache: {{contains: HIT, allow_missing: true}}",
        server.url("/")
    ));
    let (outcomes, m) = probe_n(&t, 4).await;
    let reasons: Vec<_> = outcomes.iter().map(reason).collect();
    assert_eq!(
        reasons,
        [None, Some("header_mismatch"), Some("header_mismatch"), None]
    );
    let detail = &outcomes[2].failure.as_ref().unwrap().detail;
    assert!(detail.contains("content-type is missing"), "{detail}");

    let at = |matcher: &str| vec![("target", "api".to_owned()), ("matcher", matcher.into())];
    let value = |name: &str, matcher: &str| {
        let labels = at(matcher);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        m.get(name, &labels)
            .unwrap_or_else(|| panic!("no {name} for {matcher}"))
    };
    let mismatches = "tickr_header_mismatches_total";
    assert_eq!(value(mismatches, "content-type: application/json"), 2.0);
    assert_eq!(value(mismatches, "frames"), 1.0);
    assert_eq!(value(mismatches, "server: nginx"), 1.0);
    assert_eq!(
        value(mismatches, "x-cache: HIT"),
        0.0,
        "allowed to be missing"
    );
    for matcher in ["content-type: application/json", "frames", "server: nginx"] {
        assert_eq!(value("tickr_header_match", matcher), 1.0, "{matcher}");
    }
    assert_eq!(
        m.value(
            "tickr_probe_failures_total",
            &[("target", "api"), ("reason", "header_mismatch")]
        ),
        2.0
    );
    // Body matchers are a family of their own: none here.
    assert!(m.find("tickr_body_match", &[]).next().is_none());
}

#[tokio::test]
async fn a_repeated_header_passes_a_positive_check_once_and_a_negative_one_never() {
    let server = TestServer::plain(vec![respond(&[
        ("cache-control", "public"),
        ("cache-control", "no-store"),
    ])])
    .await;
    let positive = target(&format!(
        "name: p\nurl: {}\nexpect: {{headers: {{Cache-Control: {{matches: \"^no-store$\"}}}}}}",
        server.url("/")
    ));
    assert_eq!(reason(&probe::run(&positive).await), None);
    let negative = target(&format!(
        "name: n\nurl: {}\nexpect: {{headers: {{Cache-Control: {{not_contains: no-store}}}}}}",
        server.url("/")
    ));
    assert_eq!(
        reason(&probe::run(&negative).await),
        Some("header_mismatch")
    );
}

#[tokio::test]
async fn http_versions_limit_what_the_final_response_may_come_in() {
    let server = TestServer::plain(vec![Step::status(200)]).await;
    let h2_only = target(&format!(
        "name: a\nurl: {}\nexpect: {{http_versions: [HTTP/2.0]}}",
        server.url("/")
    ));
    let out = probe::run(&h2_only).await;
    assert_eq!(reason(&out), Some("protocol"));
    let detail = &out.failure.unwrap().detail;
    assert!(detail.contains("HTTP/1.1"), "{detail}");
    let either = target(&format!(
        "name: b\nurl: {}\nexpect: {{http_versions: [\"HTTP/2\", http/1.1]}}",
        server.url("/")
    ));
    assert_eq!(reason(&probe::run(&either).await), None);
}
