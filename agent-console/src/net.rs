//! Who the client is: the peer address, or behind trusted proxies the
//! address they forwarded; and the group an address counts in for limits.
//!
//! Pure: addresses in, an address out, so the rules are tested without sockets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

pub use telemed::sip::Cidr;

/// The client's address for a request from `peer` carrying the
/// `X-Forwarded-For` values `forwarded` (each a comma-separated list, in
/// header order).
///
/// Without a trusted proxy, or from a peer that is not one, `X-Forwarded-For`
/// is ignored: anyone can write it. From a trusted proxy the client is the
/// rightmost entry that is not itself a trusted proxy: each proxy appends
/// the address it saw, so entries left of the last untrusted one were
/// written by the client and can be spoofed (MDN, `X-Forwarded-For`,
/// "Security and privacy concerns"; OWASP's guidance on client IPs). When
/// every entry is a trusted proxy the leftmost is the client; an entry that
/// does not parse stops the walk at the last trusted hop.
pub fn client_ip<'a>(peer: IpAddr, forwarded: impl IntoIterator<Item = &'a str>, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded.into_iter().flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded(entry) else { return client };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    entry.parse::<SocketAddr>().ok().map(|s| s.ip().to_canonical())
}

/// The address a limit counts: IPv4 as is; IPv6 by its /64, because one
/// subscriber (a home, a phone) gets a whole /64 and picks addresses in it
/// freely (RFC 6177, RFC 8981 temporary addresses).
pub fn group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn without_trusted_proxies_forwarded_for_is_ignored() {
        assert_eq!(client_ip(ip("203.0.113.9"), ["198.51.100.1"], &[]), ip("203.0.113.9"));
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("203.0.113.9"), ["198.51.100.1"], &trusted), ip("203.0.113.9"), "peer not trusted");
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_entry() {
        let trusted = cidrs(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client claims 1.1.1.1; the proxy appended what it saw.
        assert_eq!(client_ip(ip("10.0.0.2"), ["1.1.1.1, 198.51.100.7"], &trusted), ip("198.51.100.7"));
        // Two proxies, two headers.
        assert_eq!(client_ip(ip("10.0.0.2"), ["1.1.1.1, 198.51.100.7", "10.0.0.3"], &trusted), ip("198.51.100.7"));
        // Ports and brackets.
        assert_eq!(client_ip(ip("10.0.0.2"), ["198.51.100.7:4711"], &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.0.0.2"), ["[2001:db8::5]:443"], &trusted), ip("2001:db8::5"));
        // Every entry trusted: the leftmost.
        assert_eq!(client_ip(ip("10.0.0.2"), ["10.0.0.9, 10.0.0.3"], &trusted), ip("10.0.0.9"));
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.2"), [], &trusted), ip("10.0.0.2"));
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(client_ip(ip("10.0.0.2"), ["198.51.100.7, junk, 10.0.0.3"], &trusted), ip("10.0.0.3"));
        // An IPv4 peer on a dual-stack socket counts as IPv4.
        assert_eq!(client_ip(ip("::ffff:10.0.0.2"), ["198.51.100.7"], &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn ipv6_groups_by_64() {
        assert_eq!(group(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(group(ip("2001:db8:1:2:bbbb::2")), group(ip("2001:db8:1:2:cccc::3")));
        assert_ne!(group(ip("2001:db8:1:2::1")), group(ip("2001:db8:1:3::1")));
        assert_eq!(group(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(group(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }
}
