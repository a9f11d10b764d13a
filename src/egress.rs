//! Where the server's own outbound connections may go.
//!
//! Some settings make the server connect out on a user's behalf: a Lambda processor's
//! URL, an HTTP endpoint destination, a camera source's RTSP URL. Whoever may write those
//! settings could otherwise point the server at what only it can reach (its loopback, the
//! private network behind it, a cloud metadata address) and use it as a proxy. So every
//! such connection asks an [`EgressPolicy`] about each address it would connect to,
//! after name resolution (a name that resolves to a refused address is refused, so DNS
//! cannot smuggle one in), and follows no redirects.
//!
//! Two policies: `open` (anything; the anonymous single-user default, where whoever
//! writes settings is the operator) and `public` (public unicast addresses only, plus
//! whatever ranges the operator lists in `[egress] allow`; the default once access keys
//! are configured). The policy is pure; [`Resolver`] is the one piece that does I/O,
//! the DNS look-up an HTTP client makes through it.

use std::net::IpAddr;

/// An address range, `ADDRESS/BITS` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("'{s}' is not an address range (ADDRESS/BITS)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| format!("'{s}': bits 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { net, bits })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (CGNAT), unique-local, documentation, benchmarking, multicast, broadcast or
/// unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

/// Which addresses outbound connections may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Any address at all.
    open: bool,
    /// Ranges allowed besides the public addresses.
    allow: Vec<Cidr>,
}

/// Why a connection was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error("{0} is not an allowed destination for outbound connections (public addresses and [egress] allow only)")]
    Address(IpAddr),
    #[error("the scheme '{0}' is not allowed for outbound connections")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
}

impl EgressPolicy {
    /// Anything goes.
    pub fn open() -> Self {
        EgressPolicy { open: true, allow: Vec::new() }
    }

    /// Public unicast addresses, and `allow`.
    pub fn public(allow: Vec<Cidr>) -> Self {
        EgressPolicy { open: false, allow }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        self.open || is_public(ip) || self.allow.iter().any(|c| c.contains(ip))
    }

    pub fn check(&self, ip: IpAddr) -> Result<(), EgressRefusal> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(EgressRefusal::Address(ip))
        }
    }

    /// Checks a URL before it is used: its scheme is one of `schemes`, and a host
    /// written as an address is permitted (names are checked where they resolve).
    pub fn check_url(&self, url: &url::Url, schemes: &[&str]) -> Result<(), EgressRefusal> {
        if !schemes.contains(&url.scheme()) {
            return Err(EgressRefusal::Scheme(url.scheme().to_string()));
        }
        match url.host() {
            None => Err(EgressRefusal::NoHost),
            Some(url::Host::Ipv4(a)) => self.check(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => self.check(IpAddr::V6(a)),
            // A non-special scheme (`rtsp://`) keeps its host as text: an address
            // written there is still an address.
            Some(url::Host::Domain(d)) => match d.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                Ok(ip) => self.check(ip),
                Err(_) => Ok(()),
            },
        }
    }
}

/// An HTTP client's name resolution through the policy: a name resolves to its
/// permitted addresses only, and to an error naming the first refused one when none is.
#[derive(Debug, Clone)]
pub struct Resolver(pub EgressPolicy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<std::net::SocketAddr> = found.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            match (allowed.is_empty(), found.first()) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                (true, Some(refused)) => Err(Box::new(EgressRefusal::Address(refused.ip())) as _),
                (true, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

/// An HTTP client for calls made on users' behalf: names resolved through the policy,
/// no redirects followed (a permitted host could otherwise bounce the call anywhere).
pub fn http_client(policy: &EgressPolicy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(Resolver(policy.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")) && !c.contains(ip("10.2.0.1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(one.contains(ip("::ffff:127.0.0.1")), "a mapped address is its IPv4 address");
        let odd: Cidr = "192.168.0.0/23".parse().unwrap();
        assert!(odd.contains(ip("192.168.1.9")) && !odd.contains(ip("192.168.2.1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_pass_the_public_policy() {
        let p = EgressPolicy::public(vec![]);
        for refused in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.251",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!p.permits(ip(refused)), "{refused}");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(p.permits(ip(allowed)), "{allowed}");
        }
        let with = EgressPolicy::public(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(with.permits(ip("127.0.0.5")) && !with.permits(ip("10.0.0.1")));
        assert!(EgressPolicy::open().permits(ip("169.254.169.254")));
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        let p = EgressPolicy::public(vec![]);
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(p.check_url(&u("https://example.com/x"), &["https"]), Ok(()));
        assert_eq!(p.check_url(&u("http://example.com/x"), &["https"]), Err(EgressRefusal::Scheme("http".into())));
        assert!(p.check_url(&u("http://127.0.0.1:8080/"), &["http"]).is_err());
        assert!(p.check_url(&u("http://[::1]/"), &["http"]).is_err());
        assert!(p.check_url(&u("file:///etc/passwd"), &["http", "https"]).is_err());
        assert!(p.check_url(&u("rtsp://127.0.0.1:554/x"), &["rtsp"]).is_err(), "an address in a non-special scheme");
        assert!(p.check_url(&u("rtsp://[::1]:554/x"), &["rtsp"]).is_err());
        assert_eq!(p.check_url(&u("rtsp://camera.example/x"), &["rtsp"]), Ok(()));
    }
}
