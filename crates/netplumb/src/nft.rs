//! The masquerade binding's nftables ruleset, as upstream's commands build it (table `nat` per family, base chains
//! prerouting/input/output/postrouting, regular chains `KUBEVIRT_PREINBOUND`/`KUBEVIRT_POSTINBOUND`, a counter on
//! every rule), written as one `nft -f` file so it is applied atomically (upstream runs one `nft` call per rule).

use std::fmt::Write as _;
use std::net::IpAddr;

/// Ports forwarded to the guest: none listed forwards everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Every port.
    All,
    /// Only these (`tcp`/`udp`, a port or `A-B` range).
    Ports(Vec<(String, String)>),
}

/// One family's table: the pod interface, the in-pod bridge, the gateway and guest addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masquerade<'a> {
    /// The pod interface (`eth0`).
    pub pod_iface: &'a str,
    /// The in-pod bridge (`k6t-eth0`).
    pub bridge: &'a str,
    /// The gateway (`10.0.2.1`).
    pub gateway: IpAddr,
    /// The guest (`10.0.2.2`).
    pub guest: IpAddr,
    /// What is forwarded.
    pub forward: &'a Forward,
}

/// The table for `m`'s family (`ip` or `ip6`), replacing one left by an earlier attempt.
#[must_use]
pub fn ruleset(m: &Masquerade<'_>) -> String {
    let (family, lo) = match m.guest {
        IpAddr::V4(_) => ("ip", "127.0.0.1"),
        IpAddr::V6(_) => ("ip6", "::1"),
    };
    let (guest, gw) = (m.guest, m.gateway);
    let (mut pre, mut post, mut out) = (Vec::new(), Vec::new(), Vec::new());
    match m.forward {
        Forward::All => {
            pre.push(format!("counter dnat to {guest}"));
            post.push(format!("{family} saddr {{ {lo} }} counter snat to {gw}"));
            out.push(format!("{family} daddr {{ {lo} }} counter dnat to {guest}"));
        }
        Forward::Ports(ports) => {
            for (proto, port) in ports {
                pre.push(format!("{proto} dport {{ {port} }} counter dnat to {guest}"));
                post.push(format!(
                    "{proto} dport {port} {family} saddr {{ {lo} }} counter snat to {gw}"
                ));
                out.push(format!(
                    "{family} daddr {{ {lo} }} {proto} dport {port} counter dnat to {guest}"
                ));
            }
        }
    }
    let mut s = String::new();
    // `add` then `delete` removes a table left behind, whether or not there is one.
    let _ = writeln!(
        s,
        "add table {family} nat\ndelete table {family} nat\ntable {family} nat {{"
    );
    let base = |s: &mut String, name: &str, hook: &str, prio: &str, rules: &[String]| {
        let _ = writeln!(
            s,
            "\tchain {name} {{\n\t\ttype nat hook {hook} priority {prio}; policy accept;"
        );
        for r in rules {
            let _ = writeln!(s, "\t\t{r}");
        }
        let _ = writeln!(s, "\t}}");
    };
    base(
        &mut s,
        "prerouting",
        "prerouting",
        "dstnat",
        &[format!(
            "iifname \"{}\" counter jump KUBEVIRT_PREINBOUND",
            m.pod_iface
        )],
    );
    base(&mut s, "input", "input", "100", &[]);
    base(&mut s, "output", "output", "-100", &out);
    base(
        &mut s,
        "postrouting",
        "postrouting",
        "srcnat",
        &[
            format!("{family} saddr {guest} counter masquerade"),
            format!("oifname \"{}\" counter jump KUBEVIRT_POSTINBOUND", m.bridge),
        ],
    );
    for (name, rules) in [("KUBEVIRT_PREINBOUND", pre), ("KUBEVIRT_POSTINBOUND", post)] {
        let _ = writeln!(s, "\tchain {name} {{");
        for r in rules {
            let _ = writeln!(s, "\t\t{r}");
        }
        let _ = writeln!(s, "\t}}");
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn one_forwarded_port_gives_upstreams_rules() {
        let forward = Forward::Ports(vec![("tcp".into(), "80".into())]);
        let m = Masquerade {
            pod_iface: "eth0",
            bridge: "k6t-eth0",
            gateway: "10.0.2.1".parse().unwrap(),
            guest: "10.0.2.2".parse().unwrap(),
            forward: &forward,
        };
        assert_eq!(
            ruleset(&m),
            "add table ip nat\ndelete table ip nat\ntable ip nat {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"eth0\" counter jump KUBEVIRT_PREINBOUND
\t}
\tchain input {
\t\ttype nat hook input priority 100; policy accept;
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr { 127.0.0.1 } tcp dport 80 counter dnat to 10.0.2.2
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.0.2.2 counter masquerade
\t\toifname \"k6t-eth0\" counter jump KUBEVIRT_POSTINBOUND
\t}
\tchain KUBEVIRT_PREINBOUND {
\t\ttcp dport { 80 } counter dnat to 10.0.2.2
\t}
\tchain KUBEVIRT_POSTINBOUND {
\t\ttcp dport 80 ip saddr { 127.0.0.1 } counter snat to 10.0.2.1
\t}
}
"
        );
    }

    #[test]
    fn no_ports_forward_everything_and_ipv6_uses_ip6() {
        let m = Masquerade {
            pod_iface: "eth0",
            bridge: "k6t-eth0",
            gateway: "fd10:0:2::1".parse().unwrap(),
            guest: "fd10:0:2::2".parse().unwrap(),
            forward: &Forward::All,
        };
        let s = ruleset(&m);
        assert!(s.starts_with("add table ip6 nat\n"), "{s}");
        assert!(s.contains("\t\tcounter dnat to fd10:0:2::2\n"), "{s}");
        assert!(s.contains("ip6 saddr { ::1 } counter snat to fd10:0:2::1"), "{s}");
        assert!(s.contains("ip6 daddr { ::1 } counter dnat to fd10:0:2::2"), "{s}");
    }
}
