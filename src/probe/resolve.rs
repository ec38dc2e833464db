//! Which addresses a probe may connect to: the target's static `addresses`, an IP literal, or a
//! lookup through [`super::dns`], filtered by `ip_protocol`; RFC 6761 names never leave the host.

use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::{dns, Failure, Reason};
use crate::config::{IpProtocol, Target};

/// The addresses for `url`'s host: the target's static `addresses` when the host is the
/// target's own, else DNS.
pub(super) async fn resolve_for(target: &Target, url: &Url) -> Result<Vec<SocketAddr>, Failure> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    if !target.addresses.is_empty() && url.host_str() == target.url.host_str() {
        return Ok(target
            .addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect());
    }
    resolve(host, port, target.ip_protocol).await
}

/// The addresses of `host` of the wanted family: never empty.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    protocol: IpProtocol,
) -> Result<Vec<SocketAddr>, Failure> {
    let wanted = |ip: &IpAddr| match protocol {
        IpProtocol::Auto => true,
        IpProtocol::Ipv4 => ip.is_ipv4(),
        IpProtocol::Ipv6 => ip.is_ipv6(),
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return if wanted(&ip) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(Failure::new(
                Reason::Dns,
                format!("{ip} is not of the configured ip_protocol"),
            ))
        };
    }
    // RFC 6761: `.invalid` never resolves, so no query needs to leave the machine.
    let bare = literal.trim_end_matches('.').to_ascii_lowercase();
    if bare == "invalid" || bare.ends_with(".invalid") {
        return Err(Failure::new(
            Reason::Dns,
            format!("resolve {host}: reserved name that never resolves (RFC 6761)"),
        ));
    }
    let mut addrs = dns::lookup(host, port)
        .await
        .map_err(|e| Failure::io(Reason::Dns, format_args!("resolve {host}"), &e))?;
    addrs.retain(|a| wanted(&a.ip()));
    if addrs.is_empty() {
        let msg = format!("resolve {host}: no address for ip_protocol {protocol:?}");
        return Err(Failure::new(Reason::Dns, msg));
    }
    Ok(addrs)
}
