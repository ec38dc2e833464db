//! Diagnosis end to end in-process: events with their evidence, exemplars that point at them,
//! confirmation bursts, static and per-address probing.

use std::time::Duration;

use crate::common::exposition::{http, Exposition};
use crate::common::server::{Step, TestServer};
use crate::common::tickr::Tickr;

const NGINX_502: &str = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx/1.22.1</center></body></html>";

fn nginx_502() -> Step {
    Step::Respond {
        status: 502,
        headers: vec![
            ("server", "nginx/1.22.1".into()),
            ("set-cookie", "session=s3cr3t-cookie".into()),
        ],
        body: NGINX_502.into(),
        delay: Duration::ZERO,
    }
}

async fn events(tickr: &Tickr, query: &str) -> serde_json::Value {
    let reply = http(
        tickr.addr,
        "GET",
        &format!("/events?format=json{query}"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    serde_json::from_slice(&reply.body).expect("JSON")
}

#[tokio::test]
async fn a_502_becomes_an_event_with_its_layer_evidence_and_an_exemplar() {
    let server = TestServer::plain(vec![Step::status(200), nginx_502()]).await;
    let yaml = format!(
        "defaults: {{interval: 200ms, timeout: 150ms}}\ntargets:\n  - name: shop\n    url: {}\n",
        server.url("/")
    );
    let tickr = Tickr::start(&yaml).await;
    let m = tickr
        .wait_for(Duration::from_secs(10), "a 502 and a success", |m| {
            m.value(
                "tickr_http_server_errors_total",
                &[("target", "shop"), ("code", "502"), ("layer", "nginx")],
            ) >= 1.0
                && m.value(
                    "tickr_probe_runs_total",
                    &[("target", "shop"), ("result", "success")],
                ) >= 1.0
        })
        .await;

    let json = events(&tickr, "&target=shop").await;
    let event = &json["events"][0];
    assert_eq!(event["status"], 502);
    assert_eq!(event["reason"], "status");
    assert_eq!(event["layer"], "nginx");
    assert!(
        event["evidence"]
            .as_str()
            .unwrap()
            .contains("<center>nginx/"),
        "{event}"
    );
    assert!(event["body_excerpt"]
        .as_str()
        .unwrap()
        .contains("502 Bad Gateway"));
    let headers = event["headers"].as_array().unwrap();
    assert!(headers
        .iter()
        .any(|h| h[0] == "server" && h[1] == "nginx/1.22.1"));
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "set-cookie" && h[1] == "<redacted>"),
        "{headers:?}"
    );
    assert!(event["phases_ms"]["processing"].as_f64().is_some());
    assert_eq!(
        json["last_success"]["shop"]["success"], true,
        "the last success is kept for comparison"
    );
    assert!(
        !json.to_string().contains("s3cr3t"),
        "a cookie value leaked into events"
    );

    // The exemplar on the 502 counter names a recorded event.
    let line = m
        .text
        .lines()
        .find(|l| l.starts_with("tickr_http_server_errors_total{") && l.contains("# {event_id="))
        .expect("an exemplar");
    let id: u64 = line
        .split("event_id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let one = events(&tickr, &format!("&id={id}")).await;
    assert_eq!(
        one["events"][0]["id"], id,
        "the exemplar's event is on /events"
    );

    // The HTML page shows it, anchored for links.
    let page = tickr
        .get(&format!("/events?target=shop#event-{id}"))
        .await
        .text();
    assert!(page.contains(&format!("id=\"event-{id}\"")) && page.contains("layer nginx"));
    tickr.stop().await;
}

#[tokio::test]
async fn confirmations_tell_transient_from_persistent_and_stay_off_the_books() {
    // One failure, then successes: the follow-ups all succeed.
    let flaky = TestServer::plain(vec![
        Step::status(502),
        Step::status(200),
        Step::status(200),
        Step::status(200),
    ])
    .await;
    // Always failing: the follow-ups all fail.
    let down = TestServer::plain(vec![Step::status(503)]).await;
    let yaml = format!(
        "defaults: {{interval: 2s, timeout: 200ms, confirm: 3, confirm_delay: 50ms}}\ntargets:\n  - name: flaky\n    url: {}\n  - name: down\n    url: {}\n",
        flaky.url("/"),
        down.url("/")
    );
    let tickr = Tickr::start(&yaml).await;
    let m = tickr
        .wait_for(
            Duration::from_secs(10),
            "both targets' confirmations",
            |m| {
                m.value(
                    "tickr_confirmations_total",
                    &[("target", "flaky"), ("result", "success")],
                ) >= 3.0
                    && m.value(
                        "tickr_confirmations_total",
                        &[("target", "down"), ("result", "failure")],
                    ) >= 3.0
            },
        )
        .await;
    // Three follow-ups, and still exactly one scheduled probe each.
    assert_eq!(
        m.value(
            "tickr_confirmations_total",
            &[("target", "flaky"), ("result", "failure")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "tickr_probe_runs_total",
            &[("target", "flaky"), ("result", "failure")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "tickr_probe_runs_total",
            &[("target", "flaky"), ("result", "success")]
        ),
        0.0
    );
    assert_eq!(
        m.value(
            "tickr_http_responses_total",
            &[("target", "down"), ("code", "503")]
        ),
        1.0
    );
    assert_eq!(flaky.connections(), 4);
    for (target, verdict) in [("flaky", "transient"), ("down", "persistent")] {
        let json = events(&tickr, &format!("&target={target}")).await;
        assert_eq!(
            json["events"][0]["confirmation"]["verdict"], verdict,
            "{target}: {json}"
        );
    }
    tickr.stop().await;
}

#[tokio::test]
async fn per_address_probing_singles_out_the_bad_node() {
    // Two "nodes" of one service on two loopback addresses, the same port: one of them is bad.
    let good = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = good.local_addr().unwrap().port();
    drop(good);
    let good = TestServer::plain_on(([127, 0, 0, 1], port).into(), vec![Step::status(200)]).await;
    let bad = TestServer::plain_on(
        ([127, 0, 0, 2], port).into(),
        vec![Step::status(200), nginx_502()],
    )
    .await;
    let yaml = format!(
        "targets:\n  - name: pool\n    url: http://shop.test:{port}/\n    addresses: [127.0.0.1, 127.0.0.2]\n    per_address: true\n    interval: 200ms\n    timeout: 150ms\n"
    );
    let tickr = Tickr::start(&yaml).await;
    let m = tickr
        .wait_for(
            Duration::from_secs(10),
            "probes of both addresses",
            |m: &Exposition| {
                m.value(
                    "tickr_probe_runs_total",
                    &[
                        ("target", "pool"),
                        ("address", "127.0.0.1"),
                        ("result", "success"),
                    ],
                ) >= 3.0
                    && m.value(
                        "tickr_http_responses_total",
                        &[
                            ("target", "pool"),
                            ("address", "127.0.0.2"),
                            ("code", "502"),
                        ],
                    ) >= 2.0
            },
        )
        .await;
    assert_eq!(
        m.value(
            "tickr_http_responses_total",
            &[
                ("target", "pool"),
                ("address", "127.0.0.1"),
                ("code", "502")
            ]
        ),
        0.0
    );
    assert!(good.connections() >= 3 && bad.connections() >= 3);
    // Host stays the URL's: both nodes were asked for shop.test.
    let json = events(&tickr, "&target=pool").await;
    assert_eq!(json["events"][0]["remote"], format!("127.0.0.2:{port}"));
    // The landing page sums the addresses.
    assert!(tickr.get("/").await.text().contains("failing"));
    tickr.stop().await;
}

#[tokio::test]
async fn static_addresses_replace_dns_and_the_host_header_stays() {
    let server = TestServer::plain(vec![Step::Echo]).await;
    let port = server.addr.port();
    let yaml = format!(
        "targets:\n  - name: pinned\n    url: http://shop.test:{port}/\n    addresses: [127.0.0.1]\n    interval: 200ms\n    timeout: 150ms\n    expect: {{body_contains: [\"host: shop.test:{port}\"]}}\n"
    );
    let tickr = Tickr::start(&yaml).await;
    tickr
        .wait_for(Duration::from_secs(10), "a successful pinned probe", |m| {
            m.value(
                "tickr_probe_runs_total",
                &[("target", "pinned"), ("result", "success")],
            ) >= 1.0
        })
        .await;
    tickr.stop().await;
}
