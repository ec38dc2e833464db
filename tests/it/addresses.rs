//! Which address a probe connects to and from: `ip_protocol: prefer_ipv4 | prefer_ipv6` (the
//! preferred family when the host has it, else the other), and `source_address`. Servers on
//! `::1`, `127.0.0.1` and `127.0.0.2`, one port for both families.

use std::net::{IpAddr, SocketAddr};

use tickr::probe;

use crate::common::server::{Step, TestServer};
use crate::common::tickr::target;

/// Two servers on one port: one on `::1`, one on `127.0.0.1`.
async fn both_families() -> (TestServer, TestServer) {
    for _ in 0..20 {
        let v6 = TestServer::plain_on("[::1]:0".parse().unwrap(), vec![Step::status(200)]).await;
        let v4_addr = SocketAddr::new([127, 0, 0, 1].into(), v6.addr.port());
        if std::net::TcpListener::bind(v4_addr).is_ok() {
            let v4 = TestServer::plain_on(v4_addr, vec![Step::status(204)]).await;
            return (v6, v4);
        }
    }
    panic!("no port free on both ::1 and 127.0.0.1");
}

/// A dropped server's listener closes when the runtime next polls its aborted task: until then
/// the kernel still completes handshakes into its backlog.
async fn wait_until_refused(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections");
}

fn reason(o: &probe::Outcome) -> Option<&'static str> {
    o.failure.as_ref().map(|f| f.reason.as_str())
}

#[tokio::test]
async fn a_preferred_family_is_used_when_the_host_has_it_and_the_other_when_not() {
    let (v6, v4) = both_families().await;
    let port = v6.addr.port();
    let probe_with = |protocol: &str, addresses: &str| {
        target(&format!(
            "name: dual\nurl: http://dual.test:{port}/\nip_protocol: {protocol}\naddresses: {addresses}"
        ))
    };
    let both = "[\"127.0.0.1\", \"::1\"]";
    let out = probe::run(&probe_with("prefer_ipv6", both)).await;
    assert_eq!((reason(&out), out.status), (None, Some(200)), "{out:?}");
    assert_eq!(out.remote.map(|a| a.ip()), Some("::1".parse().unwrap()));
    let out = probe::run(&probe_with("prefer_ipv4", "[\"::1\", \"127.0.0.1\"]")).await;
    assert_eq!(out.status, Some(204), "{out:?}");
    // Only the other family: the fallback.
    let out = probe::run(&probe_with("prefer_ipv4", "[\"::1\"]")).await;
    assert_eq!(out.status, Some(200), "{out:?}");
    let out = probe::run(&probe_with("prefer_ipv6", "[\"127.0.0.1\"]")).await;
    assert_eq!(out.status, Some(204), "{out:?}");
    assert_eq!((v6.connections(), v4.connections()), (2, 2));

    // A preferred address that refuses is the probe's result: no quiet retry over the other.
    let v6_addr = v6.addr;
    drop(v6);
    wait_until_refused(v6_addr).await;
    let out = probe::run(&probe_with("prefer_ipv6", both)).await;
    assert_eq!(reason(&out), Some("connect"), "{out:?}");
    assert_eq!(v4.connections(), 2);
}

#[tokio::test]
async fn probes_leave_from_the_source_address() {
    let server = TestServer::plain(vec![Step::status(200)]).await;
    let t = target(&format!(
        "name: from\nurl: {}\nsource_address: 127.0.0.2",
        server.url("/")
    ));
    for _ in 0..3 {
        let out = probe::run(&t).await;
        assert_eq!(reason(&out), None, "{out:?}");
    }
    let from: Vec<IpAddr> = server.peers().iter().map(|p| p.ip()).collect();
    assert_eq!(from, vec![IpAddr::from([127, 0, 0, 2]); 3]);

    // An IPv6 target from an IPv4 source cannot work: said plainly, before any connection.
    let t = target(&format!(
        "name: mixed\nurl: http://[::1]:{}/\nsource_address: 127.0.0.2",
        server.addr.port()
    ));
    let out = probe::run(&t).await;
    assert_eq!(reason(&out), Some("dns"), "{out:?}");
    assert!(out.failure.unwrap().detail.contains("source_address"));
}
