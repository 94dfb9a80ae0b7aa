//! A pod's `/etc/resolv.conf`, as the kubelet writes it: from the pod's `dnsPolicy` and `dnsConfig`, the node's
//! cluster DNS (`ClusterFirst`, the default: the cluster's name server, the search list
//! `<ns>.svc.<domain> svc.<domain> <domain>` then the host's, `ndots:5`) or the host's own configuration
//! (`Default`, and `ClusterFirst` on the host network or without a cluster DNS).

use k8s_openapi::api::core::v1::Pod;

/// The node's cluster DNS (the kubelet's `clusterDNS` and `clusterDomain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The name servers pods ask.
    pub servers: Vec<String>,
    /// The cluster domain, e.g. `cluster.local`.
    pub domain: String,
}

/// A resolver configuration: name servers, search list, options (`name` or `name:value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The kubelet's limits: three name servers, 32 search domains.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

impl ResolvConf {
    /// Reads a `resolv.conf` (`nameserver`, `search`/`domain`, `options` lines; comments skipped).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => out.nameservers.extend(words.next().map(str::to_string)),
                Some("search" | "domain") => out.searches = words.map(str::to_string).collect(),
                Some("options") => out.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    /// The file's text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text += &format!("search {}\n", self.searches.join(" "));
        }
        for n in &self.nameservers {
            text += &format!("nameserver {n}\n");
        }
        if !self.options.is_empty() {
            text += &format!("options {}\n", self.options.join(" "));
        }
        text
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in list {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Options merged by name, the later winning (the kubelet's `mergeDNSOptions`).
fn merge_options(base: Vec<String>, more: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = base;
    for o in more {
        let name = o.split(':').next().unwrap_or_default().to_string();
        match out
            .iter_mut()
            .find(|e| e.split(':').next() == Some(name.as_str()))
        {
            Some(e) => *e = o,
            None => out.push(o),
        }
    }
    out
}

/// The resolver configuration of `pod` on a node with `cluster` DNS (if any) and the host configuration `host`.
#[must_use]
pub fn for_pod(pod: &Pod, cluster: Option<&ClusterDns>, host: &ResolvConf) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let base = match (policy, cluster) {
        ("None", _) => ResolvConf::default(),
        ("ClusterFirst", _) if host_network => host.clone(),
        ("ClusterFirst" | "ClusterFirstWithHostNet", Some(c)) => {
            let mut searches = vec![
                format!("{ns}.svc.{}", c.domain),
                format!("svc.{}", c.domain),
                c.domain.clone(),
            ];
            searches.extend(host.searches.iter().cloned());
            ResolvConf {
                nameservers: c.servers.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => host.clone(),
    };
    let extra = spec.and_then(|s| s.dns_config.as_ref());
    let mut nameservers = base.nameservers;
    let mut searches = base.searches;
    let mut options = base.options;
    if let Some(d) = extra {
        nameservers.extend(d.nameservers.iter().flatten().cloned());
        searches.extend(d.searches.iter().flatten().cloned());
        options = merge_options(
            options,
            d.options.iter().flatten().map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            }),
        );
    }
    let mut nameservers = dedup(nameservers);
    nameservers.truncate(MAX_NAMESERVERS);
    let mut searches = dedup(searches);
    searches.truncate(MAX_SEARCHES);
    ResolvConf {
        nameservers,
        searches,
        options,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "team"},
            "spec": spec}))
        .unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.244.0.1".into()],
            domain: "cluster.local".into(),
        }
    }

    fn host() -> ResolvConf {
        ResolvConf::parse(
            "# host\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example\noptions edns0\n",
        )
    }

    #[test]
    fn cluster_first_is_the_cluster_dns_with_the_namespace_search_list_then_the_hosts() {
        let r = for_pod(
            &pod(serde_json::json!({"containers": []})),
            Some(&cluster()),
            &host(),
        );
        assert_eq!(
            r.render(),
            "search team.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.244.0.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_policy_host_network_and_no_cluster_dns_use_the_hosts_configuration() {
        let want = host();
        let default = pod(serde_json::json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(for_pod(&default, Some(&cluster()), &host()), want);
        let host_net = pod(serde_json::json!({"containers": [], "hostNetwork": true}));
        assert_eq!(for_pod(&host_net, Some(&cluster()), &host()), want);
        let plain = pod(serde_json::json!({"containers": []}));
        assert_eq!(for_pod(&plain, None, &host()), want);
    }

    #[test]
    fn dns_config_is_appended_deduplicated_and_its_options_win() {
        let p = pod(
            serde_json::json!({"containers": [], "dnsPolicy": "ClusterFirst", "dnsConfig": {
            "nameservers": ["10.244.0.1", "192.0.2.9", "192.0.2.10", "192.0.2.11"],
            "searches": ["svc.cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
        );
        let r = for_pod(&p, Some(&cluster()), &host());
        assert_eq!(r.nameservers, ["10.244.0.1", "192.0.2.9", "192.0.2.10"]);
        assert_eq!(
            r.searches,
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "extra.example"
            ]
        );
        assert_eq!(r.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn policy_none_takes_only_the_dns_config() {
        let p = pod(serde_json::json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.1"]}}));
        assert_eq!(
            for_pod(&p, Some(&cluster()), &host()).render(),
            "nameserver 192.0.2.1\n"
        );
    }
}
