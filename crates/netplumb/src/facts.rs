//! The pod interface as iproute2 reports it (`ip -j addr show dev IF`, `ip -j -4 route show dev IF`): index, MAC,
//! MTU, addresses and IPv4 routes — what the plans start from.

use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;

use crate::PlumbError;

/// The pod interface before anything was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLink {
    /// Its name (`eth0`).
    pub name: String,
    /// Its ifindex.
    pub index: u32,
    /// Its MAC (lower case).
    pub mac: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its addresses.
    pub addrs: Vec<Addr>,
    /// Its IPv4 routes.
    pub routes4: Vec<Route>,
}

impl PodLink {
    /// The first global-unicast IPv4 address.
    #[must_use]
    pub fn ipv4(&self) -> Option<(Ipv4Addr, u8)> {
        self.addrs.iter().find_map(|a| match a.ip {
            IpAddr::V4(ip) if a.global => Some((ip, a.prefix)),
            _ => None,
        })
    }

    /// Whether it has a global IPv6 address.
    #[must_use]
    pub fn has_ipv6(&self) -> bool {
        self.addrs.iter().any(|a| a.global && a.ip.is_ipv6())
    }
}

/// One address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    /// The address.
    pub ip: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// Scope global (not link-local or host).
    pub global: bool,
}

/// One IPv4 route through the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination (`None`: the default route).
    pub dst: Option<(Ipv4Addr, u8)>,
    /// The next hop (`None`: on-link).
    pub gateway: Option<Ipv4Addr>,
}

#[derive(Deserialize)]
struct JsonLink {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    address: String,
    mtu: u32,
    #[serde(default)]
    addr_info: Vec<JsonAddr>,
}

#[derive(Deserialize)]
struct JsonAddr {
    local: IpAddr,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct JsonRoute {
    dst: String,
    #[serde(default)]
    gateway: Option<Ipv4Addr>,
}

/// Reads `ip -j addr show dev IF` and `ip -j -4 route show dev IF` answers.
///
/// # Errors
/// [`PlumbError::Parse`] when the answers are not what iproute2 prints.
pub fn parse(name: &str, addr_json: &str, route_json: &str) -> Result<PodLink, PlumbError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| PlumbError::Parse(format!("{what} of {name}: {e}"));
    let links: Vec<JsonLink> = serde_json::from_str(addr_json).map_err(|e| bad("addresses", &e))?;
    let link = links
        .into_iter()
        .find(|l| l.ifname == name)
        .ok_or_else(|| PlumbError::NoLink(name.to_string()))?;
    let routes: Vec<JsonRoute> = serde_json::from_str(route_json).map_err(|e| bad("routes", &e))?;
    let routes4 = routes
        .into_iter()
        .map(|r| {
            let dst = match r.dst.as_str() {
                "default" => None,
                other => Some(parse_cidr4(other).ok_or_else(|| bad("route", &other))?),
            };
            Ok(Route {
                dst,
                gateway: r.gateway,
            })
        })
        .collect::<Result<_, PlumbError>>()?;
    Ok(PodLink {
        name: link.ifname,
        index: link.ifindex,
        mac: link.address.to_ascii_lowercase(),
        mtu: link.mtu,
        addrs: link
            .addr_info
            .into_iter()
            .map(|a| Addr {
                ip: a.local,
                prefix: a.prefixlen,
                global: a.scope == "global",
            })
            .collect(),
        routes4,
    })
}

/// `10.0.0.0/24`, or a host `10.0.0.5` (/32).
#[must_use]
pub fn parse_cidr4(s: &str) -> Option<(Ipv4Addr, u8)> {
    match s.split_once('/') {
        Some((ip, len)) => Some((ip.parse().ok()?, len.parse().ok().filter(|l| *l <= 32)?)),
        None => Some((s.parse().ok()?, 32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iproute2_answers_become_the_pod_link() {
        let addrs = r#"[{"ifindex":3,"link_index":4,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
            "mtu":1450,"qdisc":"noqueue","operstate":"UP","group":"default","link_type":"ether",
            "address":"7E:1B:2c:3d:4e:5f","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":0,"addr_info":[
            {"family":"inet","local":"10.251.2.3","prefixlen":24,"broadcast":"10.251.2.255","scope":"global",
             "label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295},
            {"family":"inet6","local":"fe80::7c1b:2cff:fe3d:4e5f","prefixlen":64,"scope":"link"}]}]"#;
        let routes = r#"[{"dst":"default","gateway":"10.251.2.1","flags":[]},
            {"dst":"10.251.2.0/24","protocol":"kernel","scope":"link","prefsrc":"10.251.2.3","flags":[]},
            {"dst":"192.168.7.9","gateway":"10.251.2.1","flags":[]}]"#;
        let l = parse("eth0", addrs, routes).unwrap();
        assert_eq!((l.index, l.mac.as_str(), l.mtu), (3, "7e:1b:2c:3d:4e:5f", 1450));
        assert_eq!(l.ipv4(), Some(("10.251.2.3".parse().unwrap(), 24)));
        assert!(!l.has_ipv6(), "link-local does not count");
        assert_eq!(l.routes4.len(), 3);
        assert_eq!(l.routes4[0].dst, None);
        assert_eq!(l.routes4[2].dst, Some(("192.168.7.9".parse().unwrap(), 32)));
        assert!(matches!(parse("eth1", addrs, routes), Err(PlumbError::NoLink(_))));
    }
}
