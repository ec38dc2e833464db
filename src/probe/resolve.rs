//! Which addresses a probe may connect to: the target's static `addresses`, an IP literal, or a
//! lookup through [`super::dns`], filtered by `ip_protocol` (and `source_address`'s family); RFC
//! 6761 names never leave the host.

use std::net::{IpAddr, SocketAddr};

use url::Url;

use super::{dns, Failure, Reason};
use crate::config::{IpProtocol, Target};

/// The addresses for `url`'s host: the target's static `addresses` when the host is the
/// target's own, else DNS.
pub(super) async fn resolve_for(target: &Target, url: &Url) -> Result<Vec<SocketAddr>, Failure> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut addrs = if !target.addresses.is_empty() && url.host_str() == target.url.host_str() {
        (target.addresses.iter())
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    } else {
        resolve(host, port, target.ip_protocol).await?
    };
    prefer_family(&mut addrs, target.ip_protocol);
    // A probe bound to a source address can only reach addresses of its family.
    if let Some(source) = target.source_address {
        addrs.retain(|a| a.is_ipv4() == source.is_ipv4());
        if addrs.is_empty() {
            let msg = format!("{host} has no address of the family of source_address {source}");
            return Err(Failure::new(Reason::Dns, msg));
        }
    }
    Ok(addrs)
}

/// Under `prefer_ipv4` / `prefer_ipv6`, the addresses of the preferred family when there are
/// any, else the others: never both, so that a probe (and every per-address probe) measures the
/// path users of that family take. A preferred address that refuses is a failure, not a reason
/// to try the other family: a broken IPv6 path is what such a target is probed for.
fn prefer_family(addrs: &mut Vec<SocketAddr>, protocol: IpProtocol) {
    let v4 = match protocol {
        IpProtocol::PreferIpv4 => true,
        IpProtocol::PreferIpv6 => false,
        _ => return,
    };
    if addrs.iter().any(|a| a.is_ipv4() == v4) {
        addrs.retain(|a| a.is_ipv4() == v4);
    }
}

/// The addresses of `host` of the wanted family: never empty.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    protocol: IpProtocol,
) -> Result<Vec<SocketAddr>, Failure> {
    let wanted = |ip: &IpAddr| match protocol {
        IpProtocol::Auto | IpProtocol::PreferIpv4 | IpProtocol::PreferIpv6 => true,
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
