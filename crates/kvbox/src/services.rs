//! Services in box mode, which has no kube-controller-manager and no kube-proxy: an endpoints controller (each
//! Service with a selector gets Endpoints listing the Running pods it selects, named target ports resolved
//! against the pods' containers) and, per node, a service proxy — cluster IPs are DNATed to the endpoints by an
//! nftables table of the node's own (`kvbox-svc-<bridge>`, replaced atomically on every change; random choice
//! between endpoints), and node ports are TCP listeners on the node address relaying to an endpoint (which also
//! works for `127.0.0.1`, where kernel DNAT would need `route_localnet`). Not supported: UDP node ports, session
//! affinity, external IPs and load balancers, traffic policies. A Service without endpoints refuses connections
//! (TCP reset), as with kube-proxy. A clean shutdown of the node removes its table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube_support::resync::{mirror, settle};
use serde_json::{Value, json};

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The container port a Service's `targetPort` means on `pod` (a number, or a container port's name).
fn target_port(port: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The Endpoints subsets of `svc`: Running pods with an IP grouped by their resolved ports.
fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Value {
    let Some(spec) = svc.spec.as_ref() else {
        return json!([]);
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return json!([]);
    };
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace.as_deref() != Some(ns)
            || !selects(selector, pod)
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let status = pod.status.as_ref();
        let (Some("Running"), Some(ip)) = (
            status.and_then(|s| s.phase.as_deref()),
            status.and_then(|s| s.pod_ip.as_deref()),
        ) else {
            continue;
        };
        let ports: Option<Vec<Value>> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                target_port(p, pod).map(|t| {
                    let mut v = json!({"port": t, "protocol": p.protocol.as_deref().unwrap_or("TCP")});
                    if let Some(n) = &p.name {
                        v["name"] = json!(n);
                    }
                    v
                })
            })
            .collect();
        let Some(ports) = ports else { continue };
        let mut address = json!({"ip": ip, "nodeName": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            "targetRef": {"kind": "Pod", "namespace": ns, "name": pod.metadata.name, "uid": pod.metadata.uid}});
        // A pod's DNS name under the Service its `subdomain` names (`hostname.subdomain.ns.svc.zone`).
        if let Some(ps) = pod.spec.as_ref()
            && let Some(h) = ps.hostname.as_deref().filter(|h| !h.is_empty())
            && ps.subdomain.as_deref() == svc.metadata.name.as_deref()
        {
            address["hostname"] = json!(h);
        }
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (json!(ports), Vec::new()))
            .1
            .push(address);
    }
    let mut out: Vec<Value> = groups
        .into_values()
        .map(|(ports, mut addresses)| {
            addresses.sort_by(|a, b| a["ip"].as_str().cmp(&b["ip"].as_str()));
            json!({"addresses": addresses, "ports": ports})
        })
        .collect();
    out.sort_by_key(|s| s.to_string());
    Value::Array(out)
}

/// Keeps the Endpoints of every Service with a selector true to the pods it selects, until `stop`.
pub(crate) async fn endpoints_controller(client: kube::Client, stop: Arc<tokio::sync::Notify>) {
    let dirty = Arc::new(tokio::sync::Notify::new());
    let (services, t1) = mirror(Api::<Service>::all(client.clone()), dirty.clone());
    let (pods, t2) = mirror(Api::<Pod>::all(client.clone()), dirty.clone());
    let (endpoints, t3) = mirror(Api::<Endpoints>::all(client.clone()), dirty.clone());
    let (slices, t4) = mirror(Api::<EndpointSlice>::all(client.clone()), dirty.clone());
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = settle(&dirty) => {}
        }
        let all_pods = pods.state();
        for svc in services.state() {
            if svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_none_or(BTreeMap::is_empty)
            {
                continue;
            }
            let ns = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let name = svc.metadata.name.clone().unwrap_or_default();
            let want = subsets(&svc, &all_pods);
            sync_slices(&client, &svc, &want, &slices).await;
            let have = endpoints
                .get(&reflector::ObjectRef::new(&name).within(&ns))
                .map(|e| serde_json::to_value(e.subsets.clone().unwrap_or_default()).unwrap_or_default());
            if have.as_ref() == Some(&want) {
                continue;
            }
            let span = tracing::info_span!("endpoints", service = %format!("{ns}/{name}"));
            let mut metadata = json!({"name": name, "namespace": ns});
            if let Some(l) = &svc.metadata.labels {
                metadata["labels"] = json!(l);
            }
            let body =
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata, "subsets": want});
            let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
            let write = async {
                if let Err(e) = api
                    .patch(
                        &name,
                        &PatchParams::apply("endpoint-controller").force(),
                        &Patch::Apply(&body),
                    )
                    .await
                {
                    tracing::warn!(error = %e, "writing endpoints");
                }
            };
            tracing::Instrument::instrument(write, span).await;
        }
    }
    for t in [t1, t2, t3, t4] {
        t.abort();
    }
}

const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The EndpointSlices kube-controller-manager's EndpointSlice controller keeps for `svc`: one per port set of its
/// Endpoints `subsets` (a placeholder without endpoints when none), named after the Service and owned by it.
fn slices_for(svc: &Service, subsets: &Value) -> Vec<Value> {
    let ns = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = svc.metadata.name.clone().unwrap_or_default();
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let stem: String = uid.chars().filter(char::is_ascii_alphanumeric).take(5).collect();
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert("kubernetes.io/service-name".into(), name.clone());
    labels.insert("endpointslice.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    let groups: Vec<Value> = subsets.as_array().cloned().unwrap_or_default();
    let groups = if groups.is_empty() {
        vec![json!({})]
    } else {
        groups
    };
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let endpoints: Vec<Value> = g["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let mut e = json!({"addresses": [a["ip"]],
                        "conditions": {"ready": true, "serving": true, "terminating": false},
                        "targetRef": a["targetRef"]});
                    if let Some(n) = a["nodeName"].as_str() {
                        e["nodeName"] = json!(n);
                    }
                    if let Some(h) = a["hostname"].as_str() {
                        e["hostname"] = json!(h);
                    }
                    e
                })
                .collect();
            let ports: Vec<Value> = g["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| json!({"name": p["name"].as_str().unwrap_or(""), "port": p["port"], "protocol": p["protocol"]}))
                .collect();
            let slice_name = if i == 0 { format!("{name}-{stem}") } else { format!("{name}-{stem}{i}") };
            let mut slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "namespace": ns, "labels": labels,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid,
                        "controller": true, "blockOwnerDeletion": true}]},
                "addressType": "IPv4", "endpoints": endpoints});
            if !ports.is_empty() {
                slice["ports"] = json!(ports);
            }
            slice
        })
        .collect()
}

/// Writes `svc`'s slices where they differ from what is stored and deletes the ones it no longer needs.
async fn sync_slices(client: &kube::Client, svc: &Service, subsets: &Value, have: &Store<EndpointSlice>) {
    let ns = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = svc.metadata.name.clone().unwrap_or_default();
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let want = slices_for(svc, subsets);
    let span = tracing::info_span!("endpointslices", service = %format!("{ns}/{name}"));
    let work = async {
        for slice in &want {
            let slice_name = slice["metadata"]["name"].as_str().unwrap_or_default();
            let stored = have.get(&reflector::ObjectRef::new(slice_name).within(&ns));
            let same = stored.as_ref().is_some_and(|s| {
                serde_json::to_value(&s.endpoints).unwrap_or_default() == slice["endpoints"]
                    && serde_json::to_value(&s.ports).unwrap_or_default()
                        == slice.get("ports").cloned().unwrap_or(Value::Null)
            });
            if same {
                continue;
            }
            let params = PatchParams::apply("endpointslice-controller").force();
            if let Err(e) = api.patch(slice_name, &params, &Patch::Apply(slice)).await {
                tracing::warn!(error = %e, slice = slice_name, "writing an EndpointSlice");
            }
        }
        let wanted: Vec<&str> = want
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        for stale in have.state().iter().filter(|s| {
            let labels = s.metadata.labels.as_ref();
            s.metadata.namespace.as_deref() == Some(ns.as_str())
                && labels.and_then(|l| l.get("kubernetes.io/service-name")) == Some(&name)
                && labels
                    .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                    .map(String::as_str)
                    == Some(MANAGED_BY)
                && !wanted.contains(&s.metadata.name.as_deref().unwrap_or_default())
        }) {
            let stale_name = stale.metadata.name.clone().unwrap_or_default();
            if let Err(e) = api.delete(&stale_name, &Default::default()).await {
                tracing::warn!(error = %e, slice = %stale_name, "deleting an EndpointSlice");
            }
        }
    };
    tracing::Instrument::instrument(work, span).await;
}

/// One way into a Service: its cluster IP or node port, protocol, and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    cluster_ip: Option<String>,
    port: i32,
    node_port: Option<u16>,
    protocol: String,
    backends: Vec<String>,
}

/// The routes the Services and Endpoints call for.
fn routes(services: &[Arc<Service>], endpoints: &Store<Endpoints>) -> Vec<Route> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        let ns = svc.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ep = endpoints.get(&reflector::ObjectRef::new(&name).within(&ns));
        let ip = spec
            .cluster_ip
            .clone()
            .filter(|ip| !ip.is_empty() && ip != "None");
        for p in spec.ports.iter().flatten() {
            let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let mut backends: Vec<String> = ep
                .iter()
                .flat_map(|e| e.subsets.iter().flatten())
                .flat_map(|s| {
                    let port = s
                        .ports
                        .iter()
                        .flatten()
                        .find(|ep| ep.name == p.name || s.ports.as_ref().is_some_and(|l| l.len() == 1))
                        .map(|ep| ep.port);
                    s.addresses
                        .iter()
                        .flatten()
                        .filter_map(move |a| port.map(|port| format!("{}:{port}", a.ip)))
                })
                .collect();
            backends.sort();
            out.push(Route {
                cluster_ip: ip.clone(),
                port: p.port,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
                protocol,
                backends,
            });
        }
    }
    out
}

/// The nftables table for the cluster IPs of `routes`.
fn ruleset(table: &str, routes: &[Route]) -> String {
    let mut rules = String::new();
    let mut rejects = String::new();
    for r in routes {
        let Some(ip) = &r.cluster_ip else { continue };
        let proto = r.protocol.to_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp") {
            continue;
        }
        if r.backends.is_empty() {
            // As kube-proxy: a Service without endpoints refuses connections at once.
            let how = if proto == "tcp" {
                "reject with tcp reset"
            } else {
                "reject"
            };
            rejects.push_str(&format!("\t\tip daddr {ip} {proto} dport {} {how}\n", r.port));
            continue;
        }
        let to = if let [one] = r.backends.as_slice() {
            format!("dnat ip to {one}")
        } else {
            let map: Vec<String> = r
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| format!("{i} : {}", b.replace(':', " . ")))
                .collect();
            format!(
                "dnat ip to numgen random mod {} map {{ {} }}",
                r.backends.len(),
                map.join(", ")
            )
        };
        rules.push_str(&format!("\t\tip daddr {ip} {proto} dport {} {to}\n", r.port));
    }
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n\tchain services {{\n{rules}\t}}\n\
         \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain no-endpoints {{\n{rejects}\t}}\n\
         \tchain filter-output {{\n\t\ttype filter hook output priority 0; policy accept;\n\t\tjump no-endpoints\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tjump no-endpoints\n\t}}\n}}\n"
    )
}

async fn nft(script: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft (install nftables): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Removes the node's nftables table (at shutdown).
pub(crate) async fn remove_table(table: &str) {
    let _ = nft(&format!("table ip {table}\ndelete table ip {table}\n")).await;
}

/// A node port listener and the endpoints it relays to.
struct NodePort {
    backends: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn relay(listener: tokio::net::TcpListener, backends: Arc<std::sync::Mutex<Vec<String>>>) {
    let mut next = 0usize;
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let choice = {
            let b = backends.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            next = next.wrapping_add(1);
            (!b.is_empty()).then(|| b[next % b.len()].clone())
        };
        let Some(backend) = choice else { continue };
        tokio::spawn(async move {
            if let Ok(mut up) = tokio::net::TcpStream::connect(&backend).await {
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
            }
        });
    }
}

/// A node's caches of every Service and Endpoints (the service proxy's and the cluster DNS's), and the signal of
/// their changes.
#[derive(Clone)]
pub(crate) struct Caches {
    pub(crate) services: Store<Service>,
    pub(crate) endpoints: Store<Endpoints>,
    dirty: Arc<tokio::sync::Notify>,
}

impl Caches {
    /// Starts mirroring; the tasks run until aborted.
    pub(crate) fn start(client: &kube::Client) -> (Self, [tokio::task::JoinHandle<()>; 2]) {
        let dirty = Arc::new(tokio::sync::Notify::new());
        let (services, t1) = mirror(Api::<Service>::all(client.clone()), dirty.clone());
        let (endpoints, t2) = mirror(Api::<Endpoints>::all(client.clone()), dirty.clone());
        (
            Self {
                services,
                endpoints,
                dirty,
            },
            [t1, t2],
        )
    }
}

/// The service proxy of one node: its nftables table `table` and node port listeners on `node_ip`, until `stop`.
pub(crate) async fn proxy(caches: Caches, table: String, node_ip: String, stop: Arc<tokio::sync::Notify>) {
    let Caches {
        services,
        endpoints,
        dirty,
    } = caches;
    let mut applied = String::new();
    let mut node_ports: HashMap<u16, NodePort> = HashMap::new();
    loop {
        tokio::select! {
            () = stop.notified() => break,
            () = settle(&dirty) => {}
        }
        let routes = routes(&services.state(), &endpoints);
        let script = ruleset(&table, &routes);
        if script != applied {
            match nft(&script).await {
                Ok(()) => {
                    tracing::info!(%table, rules = routes.len(), "service rules applied");
                    applied = script;
                }
                Err(e) => tracing::warn!(%table, error = %e, "applying service rules"),
            }
        }
        let wanted: HashMap<u16, Vec<String>> = routes
            .iter()
            .filter(|r| r.protocol == "TCP")
            .filter_map(|r| r.node_port.map(|n| (n, r.backends.clone())))
            .collect();
        node_ports.retain(|port, np| {
            let keep = wanted.contains_key(port);
            if !keep {
                np.task.abort();
            }
            keep
        });
        for (port, backends) in wanted {
            if let Some(np) = node_ports.get(&port) {
                *np.backends
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = backends;
                continue;
            }
            match tokio::net::TcpListener::bind((node_ip.as_str(), port)).await {
                Ok(l) => {
                    let shared = Arc::new(std::sync::Mutex::new(backends));
                    let task = tokio::spawn(relay(l, shared.clone()));
                    node_ports.insert(
                        port,
                        NodePort {
                            backends: shared,
                            task,
                        },
                    );
                }
                Err(e) => tracing::warn!(port, error = %e, "listening on a node port"),
            }
        }
    }
    for np in node_ports.into_values() {
        np.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_a_pod_under_the_service_its_subdomain_names() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "virt-launcher-a", "namespace": "ns",
                "labels": {"app": "a"}},
            "spec": {"containers": [], "hostname": "db1", "subdomain": "grp"},
            "status": {"phase": "Running", "podIP": "10.244.0.7"}}))
            .unwrap();
        let svc = |name: &str| -> Service {
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
                "spec": {"clusterIP": "None", "selector": {"app": "a"}}}))
            .unwrap()
        };
        let pods = [Arc::new(pod)];
        let grp = subsets(&svc("grp"), &pods);
        assert_eq!(grp[0]["addresses"][0]["hostname"], "db1");
        assert_eq!(grp[0]["ports"], json!([]));
        assert_eq!(
            slices_for(&svc("grp"), &grp)[0]["endpoints"][0]["hostname"],
            "db1"
        );
        let other = subsets(&svc("other"), &pods);
        assert!(other[0]["addresses"][0].get("hostname").is_none());
    }

    #[test]
    fn the_ruleset_is_valid_nftables() {
        let route = |ip: &str, port, proto: &str, backends: &[&str]| Route {
            cluster_ip: Some(ip.into()),
            port,
            node_port: None,
            protocol: proto.into(),
            backends: backends.iter().map(|b| (*b).to_string()).collect(),
        };
        let text = ruleset(
            "kvbox-svc-unit",
            &[
                route("10.96.0.10", 80, "TCP", &["10.244.0.5:8080", "10.244.0.6:8080"]),
                route("10.96.0.11", 53, "UDP", &["10.244.0.7:5353"]),
                route("10.96.0.12", 443, "TCP", &[]),
                route("10.96.0.13", 9, "SCTP", &["10.244.0.8:9"]),
            ],
        );
        assert!(text.contains(
            "ip daddr 10.96.0.10 tcp dport 80 dnat ip to numgen random mod 2 map { 0 : 10.244.0.5 . 8080, 1 : 10.244.0.6 . 8080 }"
        ));
        assert!(text.contains("ip daddr 10.96.0.11 udp dport 53 dnat ip to 10.244.0.7:5353"));
        assert!(text.contains("ip daddr 10.96.0.12 tcp dport 443 reject with tcp reset"));
        assert!(!text.contains("10.96.0.13"), "SCTP is not proxied");
        // nft itself checks it (without applying) where it is installed.
        if let Ok(mut child) = std::process::Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}\n{text}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
