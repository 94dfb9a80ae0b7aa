//! What kube-apiserver's Service strategy does on create and update: defaults (`type: ClusterIP`,
//! `sessionAffinity: None`, TCP, `targetPort` = `port`, single-stack IPv4), a cluster IP from the service range and
//! node ports from 30000-32767 (given ones checked for range and conflicts), both kept across updates. Box mode's
//! service proxy (in kvbox) makes the addresses carry traffic.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::status::ApiError;

/// The node port range.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The service IP range (`--service-cluster-ip-range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRange {
    net: u32,
    prefix: u8,
}

impl Default for ServiceRange {
    fn default() -> Self {
        Self {
            net: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            prefix: 16,
        }
    }
}

impl std::str::FromStr for ServiceRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if !(8..=28).contains(&prefix) {
            return Err(format!("{s:?}: the prefix must be between /8 and /28"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            net: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for ServiceRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.net), self.prefix)
    }
}

impl ServiceRange {
    fn size(self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The range's first usable address (kube-apiserver gives it to `default/kubernetes`).
    #[must_use]
    pub fn first(self) -> Ipv4Addr {
        Ipv4Addr::from(self.net + 1)
    }

    fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & (u32::MAX << (32 - self.prefix)) == self.net
    }

    /// A free address (not the network's first or last), starting from a random point as kube-apiserver picks them.
    fn allocate(self, used: &BTreeSet<Ipv4Addr>, seed: u32) -> Option<Ipv4Addr> {
        let usable = self.size().checked_sub(2)?;
        (0..usable)
            .map(|i| Ipv4Addr::from(self.net + 1 + (seed.wrapping_add(i) % usable)))
            .find(|ip| !used.contains(ip))
    }
}

fn seed() -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u32
}

/// What the other Services hold.
#[derive(Debug, Default)]
pub struct Taken {
    /// Cluster IPs.
    pub ips: BTreeSet<Ipv4Addr>,
    /// Node ports (TCP and UDP share the range, as kube-apiserver allocates them).
    pub node_ports: BTreeSet<u16>,
}

impl Taken {
    /// Collects what `services` hold, leaving out the one named `skip` (`namespace/name`).
    #[must_use]
    pub fn from_services(services: &[Value], skip: &str) -> Self {
        let mut t = Self::default();
        for s in services {
            let key = format!(
                "{}/{}",
                s.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                s.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            if key == skip {
                continue;
            }
            if let Some(ip) = s
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .and_then(|i| i.parse().ok())
            {
                t.ips.insert(ip);
            }
            for p in s
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = p
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                {
                    t.node_ports.insert(n);
                }
            }
        }
        t
    }
}

fn invalid(name: &str, field: String, message: String) -> ApiError {
    ApiError::invalid(
        "Service",
        "",
        name,
        &[(field, message, "FieldValueInvalid".into())],
    )
}

/// Defaults and allocations for a Service being created (`old: None`) or updated.
///
/// # Errors
/// 422 naming the field: an address outside the range or taken, a node port outside 30000-32767 or taken, a
/// changed cluster IP.
pub fn prepare(
    svc: &mut Value,
    old: Option<&Value>,
    range: ServiceRange,
    taken: &Taken,
) -> Result<(), ApiError> {
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    let spec = &mut svc["spec"];
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    spec["type"] = json!(kind);
    if spec.get("sessionAffinity").is_none() {
        spec["sessionAffinity"] = json!("None");
    }
    if kind != "ExternalName" {
        if spec.get("internalTrafficPolicy").is_none() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        let ip = cluster_ip(&name, spec, old, range, taken)?;
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        // Single-stack IPv4, headless Services included.
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        if kind == "LoadBalancer" && spec.get("allocateLoadBalancerNodePorts").is_none() {
            spec["allocateLoadBalancerNodePorts"] = json!(true);
        }
        let wants_node_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
        if wants_node_ports && spec.get("externalTrafficPolicy").is_none() {
            spec["externalTrafficPolicy"] = json!("Cluster");
        }
        ports(&name, spec, old, wants_node_ports, taken)?;
    }
    if svc.get("status").is_none() {
        svc["status"] = json!({"loadBalancer": {}});
    }
    Ok(())
}

/// The cluster IP: kept from the old object, checked when given, allocated otherwise.
fn cluster_ip(
    name: &str,
    spec: &Value,
    old: Option<&Value>,
    range: ServiceRange,
    taken: &Taken,
) -> Result<String, ApiError> {
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let given = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    match (given, old_ip) {
        (Some(g), Some(o)) if g != o => Err(invalid(
            name,
            "spec.clusterIPs[0]".into(),
            format!("Invalid value: []string{{\"{g}\"}}: may not change once set"),
        )),
        (None, Some(o)) => Ok(o),
        (Some(g), _) if g == "None" => Ok(g),
        (Some(g), None) => {
            let addr: Ipv4Addr = g.parse().map_err(|_| {
                invalid(
                    name,
                    "spec.clusterIPs[0]".into(),
                    format!("Invalid value: \"{g}\": must be a valid IP address"),
                )
            })?;
            if !range.contains(addr) {
                return Err(invalid(
                    name,
                    "spec.clusterIPs".into(),
                    format!(
                        "Invalid value: []string{{\"{g}\"}}: failed to allocate IP {g}: the provided IP ({g}) is not in the valid range. The range of valid IPs is {range}"
                    ),
                ));
            }
            if taken.ips.contains(&addr) {
                return Err(invalid(
                    name,
                    "spec.clusterIPs".into(),
                    format!(
                        "Invalid value: []string{{\"{g}\"}}: failed to allocate IP {g}: provided IP is already allocated"
                    ),
                ));
            }
            Ok(g)
        }
        (Some(g), Some(_)) => Ok(g),
        (None, None) => range
            .allocate(&taken.ips, seed())
            .map(|ip| ip.to_string())
            .ok_or_else(|| {
                ApiError::internal(format!("failed to allocate a serviceIP: range {range} is full"))
            }),
    }
}

/// The ports' defaults (protocol, targetPort) and, for NodePort and LoadBalancer Services, their node ports: kept
/// from the old object, checked when given, allocated otherwise.
fn ports(
    name: &str,
    spec: &mut Value,
    old: Option<&Value>,
    wants_node_ports: bool,
    taken: &Taken,
) -> Result<(), ApiError> {
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut mine = BTreeSet::new();
    let mut seed = seed();
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (i, p) in ports.iter_mut().enumerate() {
        if p.get("protocol").is_none() {
            p["protocol"] = json!("TCP");
        }
        // kube-apiserver's SetDefaults_Service: a missing, empty or zero targetPort is the port.
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty() || s == "0",
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(_) => false,
        };
        if unset && let Some(port) = p.get("port").cloned() {
            p["targetPort"] = port;
        }
        if !wants_node_ports {
            if let Some(o) = p.as_object_mut() {
                o.remove("nodePort");
            }
            continue;
        }
        let field = format!("spec.ports[{i}].nodePort");
        let node_port = match p.get("nodePort").and_then(Value::as_u64) {
            Some(n) => {
                let ok = u16::try_from(n).ok().filter(|n| NODE_PORTS.contains(n));
                let Some(n) = ok else {
                    return Err(invalid(
                        name,
                        field,
                        format!(
                            "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                        ),
                    ));
                };
                if taken.node_ports.contains(&n) || mine.contains(&n) {
                    return Err(invalid(
                        name,
                        field,
                        format!("Invalid value: {n}: provided port is already allocated"),
                    ));
                }
                n
            }
            None => {
                let same = old_ports
                    .iter()
                    .find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"))
                    .and_then(|o| o.get("nodePort"))
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok());
                match same {
                    Some(n) => n,
                    None => {
                        let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
                        let free = (0..span)
                            .map(|k| NODE_PORTS.start() + ((seed.wrapping_add(k) % span) as u16))
                            .find(|n| !taken.node_ports.contains(n) && !mine.contains(n));
                        seed = seed.wrapping_add(1);
                        free.ok_or_else(|| {
                            ApiError::internal("failed to allocate a nodePort: range is full")
                        })?
                    }
                }
            }
        };
        mine.insert(node_port);
        p["nodePort"] = json!(node_port);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ips_and_node_ports_are_allocated_and_kept() {
        let range: ServiceRange = "10.97.0.0/24".parse().unwrap();
        let mut s =
            json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        prepare(&mut s, None, range, &Taken::default()).unwrap();
        let ip: Ipv4Addr = s["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(range.contains(ip));
        let np = s["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
        assert!(NODE_PORTS.contains(&np));
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        // An update without them keeps both.
        let mut u =
            json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        prepare(&mut u, Some(&s), range, &Taken::default()).unwrap();
        assert_eq!(u["spec"]["clusterIP"], s["spec"]["clusterIP"]);
        assert_eq!(u["spec"]["ports"][0]["nodePort"], np);
        // Taken and out-of-range values are refused, naming the field.
        let taken = Taken::from_services(&[s.clone()], "x/y");
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"type": "NodePort", "clusterIP": ip.to_string(), "ports": [{"port": 1}]}});
        assert!(
            prepare(&mut d, None, range, &taken)
                .unwrap_err()
                .message
                .contains("already allocated")
        );
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 1, "nodePort": 80}]}});
        assert!(
            prepare(&mut d, None, range, &taken)
                .unwrap_err()
                .message
                .contains("not in the valid range")
        );
        let mut h = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        prepare(&mut h, None, range, &taken).unwrap();
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
    }
}
