//! The records of the cluster zone, as CoreDNS's `kubernetes` plugin answers them: `SVC.NS.svc.ZONE` (the cluster
//! IPs; a headless Service's ready endpoint addresses; an ExternalName's CNAME), `HOST.SVC.NS.svc.ZONE` (a headless
//! Service's endpoint by its `hostname` — a pod's `spec.hostname` under the `spec.subdomain` naming the Service — or
//! by its dashed address), `_PORT._PROTO.SVC.NS.svc.ZONE` (SRV per named port), `A-B-C-D.NS.pod.ZONE` (any
//! well-formed address, CoreDNS's `pods insecure`). Pure: the Services and Endpoints come from the caller's cache.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};

/// CoreDNS's default record TTL.
pub(crate) const TTL: u32 = 5;

/// What the zone knows: the domain and lookups in the caller's caches.
pub(crate) struct Cluster<'a> {
    /// The cluster domain, lower-case, without a trailing dot (`cluster.local`).
    pub domain: &'a str,
    /// The Service `(namespace, name)`.
    pub service: &'a dyn Fn(&str, &str) -> Option<Arc<Service>>,
    /// The Endpoints `(namespace, name)`.
    pub endpoints: &'a dyn Fn(&str, &str) -> Option<Arc<Endpoints>>,
}

/// The zone's answer to a question.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    /// Not in the zone: the question goes to the upstream resolvers.
    NotOurs,
    /// No such name (NXDOMAIN).
    NoSuchName,
    /// The name exists; its records of the asked type (none: NODATA).
    Records(Vec<Record>),
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(format!("{text}.")).ok()
}

/// `a-b-c-d` (or an IPv6 address with `-` for `:`) as an address.
fn dashed(label: &str) -> Option<IpAddr> {
    label
        .replace('-', ".")
        .parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| label.replace('-', ":").parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok()
}

fn dash(ip: &str) -> String {
    ip.replace(['.', ':'], "-")
}

/// Address records of `owner` for those of `ips` the question's type asks for.
fn address_records(owner: &str, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
    let Some(owner) = name(owner) else {
        return Vec::new();
    };
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(owner.clone(), TTL, rdata))
        .collect()
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// An endpoint port: name, protocol, number.
type Port<'a> = (Option<&'a str>, &'a str, i32);

/// The ready endpoint addresses of a Service, with their port lists.
fn ready(ep: Option<&Endpoints>) -> Vec<(&EndpointAddress, Vec<Port<'_>>)> {
    ep.into_iter()
        .flat_map(|e| e.subsets.iter().flatten())
        .flat_map(|s| {
            let ports: Vec<Port<'_>> = s
                .ports
                .iter()
                .flatten()
                .map(|p| (p.name.as_deref(), p.protocol.as_deref().unwrap_or("TCP"), p.port))
                .collect();
            s.addresses.iter().flatten().map(move |a| (a, ports.clone()))
        })
        .collect()
}

fn parse_ips<'a>(ips: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    ips.into_iter().filter_map(|ip| ip.parse().ok()).collect()
}

/// `SVC.NS.svc.ZONE`.
fn service(c: &Cluster, owner: &str, svc_name: &str, ns: &str, qtype: RecordType) -> Answer {
    let Some(svc) = (c.service)(ns, svc_name) else {
        return Answer::NoSuchName;
    };
    let spec = svc.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref().and_then(name);
        return match (target, name(owner)) {
            (Some(t), Some(o)) => Answer::Records(vec![Record::from_rdata(o, TTL, RData::CNAME(CNAME(t)))]),
            _ => Answer::NoSuchName,
        };
    }
    let ips = if is_headless(&svc) {
        let eps = (c.endpoints)(ns, svc_name);
        let ips = parse_ips(ready(eps.as_deref()).iter().map(|(a, _)| &a.ip));
        if ips.is_empty() {
            return Answer::NoSuchName;
        }
        ips
    } else {
        let mut ips = parse_ips(spec.cluster_ips.iter().flatten());
        if ips.is_empty() {
            ips = parse_ips(spec.cluster_ip.iter());
        }
        ips
    };
    Answer::Records(address_records(owner, &ips, qtype))
}

/// `HOST.SVC.NS.svc.ZONE`: an endpoint of a headless Service by hostname or dashed address.
fn endpoint(c: &Cluster, owner: &str, host: &str, svc_name: &str, ns: &str, qtype: RecordType) -> Answer {
    if !(c.service)(ns, svc_name).is_some_and(|s| is_headless(&s)) {
        return Answer::NoSuchName;
    }
    let eps = (c.endpoints)(ns, svc_name);
    let ips = parse_ips(
        ready(eps.as_deref())
            .iter()
            .filter(|(a, _)| match a.hostname.as_deref() {
                Some(h) if !h.is_empty() => h.eq_ignore_ascii_case(host),
                _ => dash(&a.ip) == host,
            })
            .map(|(a, _)| &a.ip),
    );
    if ips.is_empty() {
        return Answer::NoSuchName;
    }
    Answer::Records(address_records(owner, &ips, qtype))
}

/// `_PORT._PROTO.SVC.NS.svc.ZONE`: a Service's named port — the Service name for a cluster IP, each endpoint
/// for a headless Service.
fn srv(
    c: &Cluster,
    owner: &str,
    port: &str,
    proto: &str,
    svc_name: &str,
    ns: &str,
    qtype: RecordType,
) -> Answer {
    let Some(svc) = (c.service)(ns, svc_name) else {
        return Answer::NoSuchName;
    };
    let matches = |n: Option<&str>, p: &str| n == Some(port) && p.eq_ignore_ascii_case(proto);
    let svc_owner = format!("{svc_name}.{ns}.svc.{}", c.domain);
    let targets: Vec<(String, u16)> = if is_headless(&svc) {
        let eps = (c.endpoints)(ns, svc_name);
        ready(eps.as_deref())
            .iter()
            .flat_map(|(a, ports)| {
                let host = a
                    .hostname
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| dash(&a.ip));
                let target = format!("{host}.{svc_owner}");
                ports
                    .iter()
                    .filter(|(n, p, _)| matches(*n, p))
                    .filter_map(move |(_, _, num)| u16::try_from(*num).ok().map(|n| (target.clone(), n)))
            })
            .collect()
    } else {
        svc.spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter(|p| matches(p.name.as_deref(), p.protocol.as_deref().unwrap_or("TCP")))
            .filter_map(|p| u16::try_from(p.port).ok().map(|n| (svc_owner.clone(), n)))
            .collect()
    };
    if targets.is_empty() {
        return Answer::NoSuchName;
    }
    if !matches!(qtype, RecordType::SRV | RecordType::ANY) {
        return Answer::Records(Vec::new());
    }
    let weight = u16::try_from(100 / targets.len()).unwrap_or(1).max(1);
    let Some(owner) = name(owner) else {
        return Answer::NoSuchName;
    };
    Answer::Records(
        targets
            .into_iter()
            .filter_map(|(t, n)| name(&t).map(|t| (t, n)))
            .map(|(t, n)| Record::from_rdata(owner.clone(), TTL, RData::SRV(SRV::new(0, weight, n, t))))
            .collect(),
    )
}

/// The zone's answer for `qname` (lower-case, no trailing dot).
pub(crate) fn lookup(c: &Cluster, qname: &str, qtype: RecordType) -> Answer {
    let rest = if qname == c.domain {
        ""
    } else if let Some(r) = qname.strip_suffix(c.domain).and_then(|r| r.strip_suffix('.')) {
        r
    } else {
        return Answer::NotOurs;
    };
    let labels: Vec<&str> = rest.split('.').filter(|l| !l.is_empty()).collect();
    match labels.as_slice() {
        [svc, ns, "svc"] => service(c, qname, svc, ns, qtype),
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            srv(c, qname, &port[1..], &proto[1..], svc, ns, qtype)
        }
        [host, svc, ns, "svc"] => endpoint(c, qname, host, svc, ns, qtype),
        [ip, _ns, "pod"] => match dashed(ip) {
            Some(ip) => Answer::Records(address_records(qname, &[ip], qtype)),
            None => Answer::NoSuchName,
        },
        // The zone's apex and its interior names exist, without records.
        [] | ["svc" | "pod"] | [_, "svc" | "pod"] => Answer::Records(Vec::new()),
        _ => Answer::NoSuchName,
    }
}

/// The zone's SOA record (for the authority section of negative answers).
pub(crate) fn soa(domain: &str) -> Option<Record> {
    let soa = SOA::new(
        name(&format!("ns.dns.{domain}"))?,
        name(&format!("hostmaster.{domain}"))?,
        1,
        7200,
        1800,
        86400,
        TTL,
    );
    Some(Record::from_rdata(name(domain)?, TTL, RData::SOA(soa)))
}
