//! Tests of the harness itself: each real component starts, works and stops.
//! Checking the harness against the real components means a broken package or flag shows up
//! here, with the component's own logs, rather than as a puzzling e2e failure.

use std::net::SocketAddr;

use serde_json::Value;

use crate::common::procs::*;
use crate::common::server::{Step, TestServer};

#[tokio::test]
async fn nginx_proxies_and_turns_a_dropped_upstream_into_a_logged_502() {
    // Connection 1 answers 200; connection 2 closes without a word, which nginx reports as 502.
    let upstream = TestServer::plain(vec![Step::status(200), Step::Close]).await;
    let port = free_port();
    let nginx = Nginx::start(&format!(
        "server {{\n    listen 127.0.0.1:{port};\n    location / {{ proxy_pass http://{}; }}\n}}",
        upstream.addr
    ))
    .await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let first = get(addr, "/").await.expect("first request");
    let second = get(addr, "/").await.expect("second request");
    assert_eq!((first.0, second.0), (200, 502), "{}", nginx.logs());
    let log = nginx.access_log(2).await;
    assert!(log.contains("status=200 upstream_status=200"), "{log}");
    assert!(log.contains("status=502 upstream_status=502"), "{log}");
}

#[tokio::test]
async fn alertmanager_starts_without_clustering() {
    let am = Alertmanager::start("route:\n  receiver: none\nreceivers:\n  - name: none\n").await;
    assert!(am.alerts().await.is_empty());
    let (status, body) = get(am.addr, "/api/v2/status").await.expect("status");
    assert_eq!(status, 200);
    let status: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["cluster"]["status"], "disabled", "{body}");
}

#[test]
#[should_panic(expected = "apt-get install -y prometheus")]
fn a_missing_component_fails_with_the_package_to_install() {
    require("/nonexistent/prometheus");
}
