//! Locations end to end: three tickr processes probe the same two targets, each with its own
//! `global.location`; a real Prometheus scrapes them as one job per location and evaluates the
//! bundled rules (windows scaled as in `e2e.rs`), and a real Alertmanager with the shipped example
//! configuration delivers to a webhook in the test.
//!
//! | target   | eu-west, us-east          | ap-south                                   | expected |
//! |----------|---------------------------|--------------------------------------------|----------|
//! | `shop`   | its node, 200             | `addresses` point at a broken node: refused | `TickrFailingFromSomeLocations` for ap-south only, naming the healthy two |
//! | `outage` | 200, then refused         | 200, then refused                          | `TickrTargetDownEverywhere` delivered once; the per-location `TickrTargetDown`s fire in Prometheus and are held back by Alertmanager |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::common::procs::{Alertmanager, Prometheus};
use crate::common::tickr::Tickr;
use crate::e2e::{
    alertmanager_config, read_shipped, scaled_rules, write, Webhook, LIMIT, POLL,
    PROMETHEUS_INTERVAL,
};
use crate::fleet::CountingServer;

const LOCATIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
const BROKEN: &str = "ap-south";

/// Every (alert, location, state) Prometheus showed for a target while the test watched.
#[derive(Default)]
struct Seen(BTreeMap<(String, String, String, String), BTreeMap<String, String>>);

impl Seen {
    async fn poll(&mut self, prometheus: &Prometheus) {
        for a in prometheus.alerts().await {
            let get = |k: &str| a.labels.get(k).cloned().unwrap_or_default();
            let key = (
                a.name.clone(),
                get("target"),
                get("location"),
                a.state.clone(),
            );
            self.0.entry(key).or_insert(a.labels.clone());
        }
    }

    fn has(&self, alert: &str, target: &str, location: &str, state: &str) -> bool {
        let key = (alert.into(), target.into(), location.into(), state.into());
        self.0.contains_key(&key)
    }

    fn of(&self, alert: &str, target: &str) -> Vec<(String, String)> {
        (self.0.keys())
            .filter(|k| k.0 == alert && k.1 == target)
            .map(|k| (k.2.clone(), k.3.clone()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_location_is_named_and_an_outage_everywhere_pages_once() {
    let files = tempfile::tempdir().expect("temp dir");
    let shop = CountingServer::start().await;
    let mut outage = CountingServer::start().await;

    let mut tickrs = Vec::new();
    for location in LOCATIONS {
        // Every location resolves `shop.test` to its node, except the broken one, whose path
        // leads to an address where nothing listens (as a dead node behind a regional record).
        let node = if location == BROKEN {
            "127.0.0.2"
        } else {
            "127.0.0.1"
        };
        let yaml = format!(
            "global:\n  location: {location}\ndefaults:\n  interval: 500ms\n  timeout: 400ms\n\
             targets:\n  - name: shop\n    url: http://shop.test:{}/\n    addresses: [{node}]\n  \
             - name: outage\n    url: http://{}/\n",
            shop.addr.port(),
            outage.addr
        );
        tickrs.push(Tickr::start(&yaml).await);
    }
    let webhook = Webhook::start().await;
    let alertmanager = Alertmanager::start(&alertmanager_config(webhook.addr)).await;
    let rules = write(
        files.path(),
        "tickr.rules.yml",
        &scaled_rules(&read_shipped("alerts/tickr.rules.yml")),
    );
    // One scrape job per location, as the README suggests: the location rules sum `job` away.
    let jobs: Vec<(String, SocketAddr)> = (LOCATIONS.iter().zip(&tickrs))
        .map(|(l, t)| (format!("tickr-{l}"), t.addr))
        .collect();
    let jobs: Vec<(&str, SocketAddr)> = jobs.iter().map(|(j, a)| (j.as_str(), *a)).collect();
    let prometheus = Prometheus::start(
        &jobs,
        &[rules.into()],
        PROMETHEUS_INTERVAL,
        PROMETHEUS_INTERVAL,
        Some(alertmanager.addr),
    )
    .await;
    prometheus.targets_up(LIMIT).await;
    let mut seen = Seen::default();

    // --- One location broken: named, with the healthy ones. ---
    let started = Instant::now();
    let delivered = loop {
        seen.poll(&prometheus).await;
        if let Some(d) = webhook.firing("TickrFailingFromSomeLocations", "shop") {
            break d;
        }
        assert!(
            started.elapsed() < 2 * LIMIT,
            "TickrFailingFromSomeLocations for shop was not delivered; Prometheus showed {:#?}; deliveries {:#?}\n{}",
            seen.0.keys().collect::<Vec<_>>(),
            webhook.received(),
            alertmanager.logs()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(
        delivered.labels.get("location").map(String::as_str),
        Some(BROKEN)
    );
    assert_eq!(
        delivered.labels.get("severity").map(String::as_str),
        Some("warning")
    );
    let description = &delivered.annotations["description"];
    println!("TickrFailingFromSomeLocations: {description}");
    for place in LOCATIONS {
        assert!(description.contains(place), "{place} in {description:?}");
    }
    assert!(
        description.contains("connect"),
        "the failing location's reason is given: {description:?}"
    );
    for healthy in ["eu-west", "us-east"] {
        for state in ["pending", "firing"] {
            assert!(
                !seen.has("TickrFailingFromSomeLocations", "shop", healthy, state),
                "{healthy} reaches shop and must never be called failing"
            );
        }
    }
    assert_eq!(
        seen.of("TickrFailingFromSomeLocations", "outage"),
        vec![],
        "outage is healthy everywhere so far"
    );

    // --- Every location loses `outage`: one page, the per-location ones held back. ---
    outage.stop().await;
    let stopped = Instant::now();
    loop {
        seen.poll(&prometheus).await;
        if webhook
            .firing("TickrTargetDownEverywhere", "outage")
            .is_some()
        {
            break;
        }
        assert!(
            stopped.elapsed() < LIMIT,
            "TickrTargetDownEverywhere for outage was not delivered; Prometheus showed {:#?}; deliveries {:#?}\n{}",
            seen.0.keys().collect::<Vec<_>>(),
            webhook.received(),
            alertmanager.logs()
        );
        tokio::time::sleep(POLL).await;
    }
    // Long enough for every per-location TickrTargetDown to fire in Prometheus (for: 1m, scaled)
    // and for Alertmanager to have notified them had they not been held back (group_wait 1 s).
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        seen.poll(&prometheus).await;
        tokio::time::sleep(POLL).await;
    }
    for location in LOCATIONS {
        assert!(
            seen.has("TickrTargetDown", "outage", location, "firing"),
            "TickrTargetDown fires per location in Prometheus ({location}): {:#?}",
            seen.0.keys().collect::<Vec<_>>()
        );
    }
    let deliveries = webhook.received();
    let everywhere: Vec<_> = (deliveries.iter())
        .filter(|d| d.alertname() == "TickrTargetDownEverywhere" && d.target() == "outage")
        .collect();
    assert_eq!(everywhere.len(), 1, "one page: {everywhere:#?}");
    let page = everywhere[0];
    println!(
        "TickrTargetDownEverywhere: {}",
        page.annotations["description"]
    );
    assert_eq!(page.receiver, "pager");
    assert!(!page.labels.contains_key("location"));
    for place in LOCATIONS {
        assert!(
            page.annotations["description"].contains(place),
            "{place}: {page:#?}"
        );
    }
    let held: Vec<_> = (deliveries.iter())
        .filter(|d| d.target() == "outage" && d.alertname() != "TickrTargetDownEverywhere")
        .collect();
    assert_eq!(
        held,
        Vec::<&crate::e2e::Delivery>::new(),
        "TickrTargetDownEverywhere holds back every other alert of outage"
    );
    // At the start of the outage one location may count two failures a scrape before another
    // stops looking healthy: the rule may go pending for an evaluation or two, and its `for`
    // is there so that it never fires.
    let fired: Vec<_> = (seen
        .of("TickrFailingFromSomeLocations", "outage")
        .into_iter())
    .filter(|(_, state)| state == "firing")
    .collect();
    assert_eq!(
        fired,
        vec![],
        "no location reaches outage, so none is failing 'from some locations'"
    );
    drop(tickrs);
}
