//! Server-side printing: `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` answers are `meta.k8s.io/v1` Tables whose
//! rows carry the object's metadata and whose dates are already ages (kubectl prints what it gets).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::registry::{Column, ResourceType};

/// Whether the client's preferred (first) `Accept` entry contains `needle` (`as=Table`, `as=APIGroupDiscoveryList`).
#[must_use]
pub fn prefers(headers: &HeaderMap, needle: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').next().is_some_and(|first| first.contains(needle)))
}

/// Whether the client asked for a Table.
#[must_use]
pub fn wants_table(headers: &HeaderMap) -> bool {
    prefers(headers, "as=Table")
}

/// Responds with `obj` (an object or a list) as JSON, or as a Table when asked for one.
pub fn respond(ctx: &Ctx, code: StatusCode, obj: Value, is_list: bool) -> Response {
    if !wants_table(&ctx.headers) || obj.get("kind").and_then(Value::as_str) == Some("Status") {
        return (code, axum::Json(obj)).into_response();
    }
    let include = ctx.query.get("includeObject").unwrap_or("Metadata");
    let items = if is_list {
        obj.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    } else {
        vec![obj.clone()]
    };
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(json!(""));
    let mut table = table_for(&ctx.rt, &items, include);
    table["metadata"] = json!({"resourceVersion": rv, "continue": obj.pointer("/metadata/continue").cloned().unwrap_or(json!(""))});
    let mut resp = (code, axum::Json(table)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    resp
}

fn col(name: &str, type_: &str, path: &str, priority: i64) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        json_path: path.into(),
        priority,
        description: String::new(),
    }
}

/// The columns after Name: the CRD's printer columns, or a built-in printer, or just Age.
fn columns(rt: &ResourceType) -> Vec<Column> {
    if !rt.columns.is_empty() {
        return rt.columns.clone();
    }
    let age = col("Age", "date", ".metadata.creationTimestamp", 0);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => vec![col("Status", "string", ".status.phase", 0), age],
        ("", "Pod") => vec![
            col("Ready", "string", "@pod-ready", 0),
            col("Status", "string", "@pod-status", 0),
            col("Restarts", "string", "@pod-restarts", 0),
            age,
            col("IP", "string", ".status.podIP", 1),
            col("Node", "string", ".spec.nodeName", 1),
        ],
        ("", "Node") => vec![
            col("Status", "string", "@node-status", 0),
            col("Roles", "string", "@none", 0),
            age,
            col("Version", "string", ".status.nodeInfo.kubeletVersion", 0),
            col(
                "Internal-IP",
                "string",
                ".status.addresses[?(@.type=='InternalIP')].address",
                1,
            ),
        ],
        ("", "Secret") => vec![col("Type", "string", ".type", 0), age],
        ("", "Service") => vec![
            col("Type", "string", ".spec.type", 0),
            col("Cluster-IP", "string", ".spec.clusterIP", 0),
            col("External-IP", "string", "@service-external-ip", 0),
            col("Port(s)", "string", "@service-ports", 0),
            age,
            col("Selector", "string", "@service-selector", 1),
        ],
        ("", "Endpoints") => vec![col("Endpoints", "string", "@endpoints", 0), age],
        ("", "PersistentVolumeClaim") => vec![
            col("Status", "string", ".status.phase", 0),
            col("Volume", "string", ".spec.volumeName", 0),
            col("Capacity", "string", ".status.capacity.storage", 0),
            col("Access Modes", "string", "@status-access-modes", 0),
            col("StorageClass", "string", ".spec.storageClassName", 0),
            col("VolumeAttributesClass", "string", "@unset", 0),
            age,
            col("VolumeMode", "string", ".spec.volumeMode", 1),
        ],
        ("", "PersistentVolume") => vec![
            col("Capacity", "string", ".spec.capacity.storage", 0),
            col("Access Modes", "string", "@spec-access-modes", 0),
            col(
                "Reclaim Policy",
                "string",
                ".spec.persistentVolumeReclaimPolicy",
                0,
            ),
            col("Status", "string", ".status.phase", 0),
            col("Claim", "string", "@pv-claim", 0),
            col("StorageClass", "string", ".spec.storageClassName", 0),
            col("VolumeAttributesClass", "string", "@unset", 0),
            col("Reason", "string", ".status.reason", 0),
            age,
            col("VolumeMode", "string", ".spec.volumeMode", 1),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            col("Provisioner", "string", ".provisioner", 0),
            col("ReclaimPolicy", "string", ".reclaimPolicy", 0),
            col("VolumeBindingMode", "string", ".volumeBindingMode", 0),
            col("AllowVolumeExpansion", "string", "@sc-expansion", 0),
            age,
        ],
        ("", "Event") => vec![
            col("Last Seen", "date", ".lastTimestamp", 0),
            col("Type", "string", ".type", 0),
            col("Reason", "string", ".reason", 0),
            col("Object", "string", ".involvedObject.name", 0),
            col("Message", "string", ".message", 0),
        ],
        ("apiregistration.k8s.io", "APIService") => vec![
            col("Service", "string", "@apiservice-service", 0),
            col("Available", "string", "@apiservice-available", 0),
            age,
        ],
        ("apps", "ControllerRevision") => vec![
            col("Controller", "string", "@controller-ref", 0),
            col("Revision", "integer", ".revision", 0),
            age,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            col("AddressType", "string", ".addressType", 0),
            col("Ports", "string", "@slice-ports", 0),
            col("Endpoints", "string", "@slice-endpoints", 0),
            age,
        ],
        ("coordination.k8s.io", "Lease") => vec![col("Holder", "string", ".spec.holderIdentity", 0), age],
        ("apiextensions.k8s.io", _) => vec![col("Created At", "date", ".metadata.creationTimestamp", 0)],
        _ => vec![age],
    }
}

/// The Table for `items`.
#[must_use]
pub fn table_for(rt: &ResourceType, items: &[Value], include: &str) -> Value {
    let cols = columns(rt);
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    defs.extend(cols.iter().map(|c| json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() }, "format": if c.type_ == "date" { "date" } else { "" }, "description": c.description, "priority": c.priority})));
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut name = item.pointer("/metadata/name").cloned().unwrap_or(json!(""));
            // kubectl marks the default StorageClass in its name.
            if rt.kind == "StorageClass"
                && item.pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    == Some(&json!("true"))
            {
                name = json!(format!("{} (default)", name.as_str().unwrap_or_default()));
            }
            let mut cells = vec![name];
            cells.extend(cols.iter().map(|c| cell(item, c, now)));
            let object = match include {
                "None" => Value::Null,
                "Object" => item.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "columnDefinitions": defs, "rows": rows})
}

/// The columns kubectl computes rather than reads (`@name`): a pod's READY/STATUS/RESTARTS, a node's STATUS, a
/// Service's EXTERNAL-IP/PORT(S)/SELECTOR, an Endpoints' ENDPOINTS, ...
fn computed(item: &Value, name: &str) -> Value {
    match name {
        "pod-ready" => pod_ready(item),
        "pod-restarts" => pod_restarts(item),
        "pod-status" => pod_status(item),
        "node-status" => node_status(item),
        "slice-ports" => slice_ports(item),
        "slice-endpoints" => slice_endpoints(item),
        "controller-ref" => controller_ref(item),
        "apiservice-service" => apiservice_service(item),
        "apiservice-available" => apiservice_available(item),
        "service-external-ip" => service_external_ip(item),
        "service-ports" => service_ports(item),
        "service-selector" => service_selector(item),
        "endpoints" => endpoints(item),
        "status-access-modes" => access_modes(item.pointer("/status/accessModes")),
        "spec-access-modes" => access_modes(item.pointer("/spec/accessModes")),
        "pv-claim" => match (
            item.pointer("/spec/claimRef/namespace").and_then(Value::as_str),
            item.pointer("/spec/claimRef/name").and_then(Value::as_str),
        ) {
            (Some(ns), Some(n)) => json!(format!("{ns}/{n}")),
            (None, Some(n)) => json!(n),
            _ => json!(""),
        },
        "sc-expansion" => json!(
            item.get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        ),
        "unset" => json!("<unset>"),
        _ => json!("<none>"),
    }
}

/// Access modes as kubectl abbreviates them (`RWO,ROX,RWX,RWOP`).
fn access_modes(modes: Option<&Value>) -> Value {
    let short: Vec<&str> = modes
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    json!(short.join(","))
}

fn container_statuses(item: &Value) -> Vec<Value> {
    item.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The `@pod-ready` column.
fn pod_ready(item: &Value) -> Value {
    let statuses = container_statuses(item);
    let total = item
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == json!(true)).count();
    json!(format!("{ready}/{total}"))
}

/// The `@pod-restarts` column.
fn pod_restarts(item: &Value) -> Value {
    let statuses = container_statuses(item);
    json!(
        statuses
            .iter()
            .filter_map(|c| c["restartCount"].as_i64())
            .sum::<i64>()
            .to_string()
    )
}

/// The `@pod-status` column.
fn pod_status(item: &Value) -> Value {
    let statuses = container_statuses(item);
    if item.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let waiting = statuses.iter().find_map(|c| {
        c.pointer("/state/waiting/reason")
            .or_else(|| c.pointer("/state/terminated/reason"))
            .and_then(Value::as_str)
    });
    let phase = item
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    let reason = item.pointer("/status/reason").and_then(Value::as_str);
    json!(reason.or(waiting.filter(|_| phase != "Running")).unwrap_or(phase))
}

/// The `@node-status` column.
fn node_status(item: &Value) -> Value {
    let ready = item
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True");
    let mut s = match ready {
        Some(true) => "Ready".to_string(),
        Some(false) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if item.pointer("/spec/unschedulable") == Some(&json!(true)) {
        s.push_str(",SchedulingDisabled");
    }
    json!(s)
}

/// kubectl's formatDiscoveryPorts / formatDiscoveryEndpoints: three at most, then "+ N more...".
fn slice_ports(item: &Value) -> Value {
    let ports: Vec<String> = item["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
            (Some(n), _) => n.to_string(),
            (None, Some(n)) => n.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    json!(three_or_more(&ports))
}

/// The `@slice-endpoints` column.
fn slice_endpoints(item: &Value) -> Value {
    let addresses: Vec<String> = item["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    json!(three_or_more(&addresses))
}

/// kubectl's `<group-resource>/<name>` of the controlling owner, e.g. `virtualmachine.kubevirt.io/vm1`.
fn controller_ref(item: &Value) -> Value {
    let owner = item
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|os| os.iter().find(|o| o["controller"] == json!(true)));
    match owner {
        Some(o) => {
            let group = o["apiVersion"].as_str().unwrap_or_default();
            let group = group.rsplit_once('/').map_or("", |(g, _)| g);
            let kind = o["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = o["name"].as_str().unwrap_or_default();
            json!(if group.is_empty() {
                format!("{kind}/{name}")
            } else {
                format!("{kind}.{group}/{name}")
            })
        }
        None => json!("<none>"),
    }
}

/// The `@apiservice-service` column.
fn apiservice_service(item: &Value) -> Value {
    match item.pointer("/spec/service").filter(|s| !s.is_null()) {
        Some(s) => json!(format!(
            "{}/{}",
            s.get("namespace").and_then(Value::as_str).unwrap_or_default(),
            s.get("name").and_then(Value::as_str).unwrap_or_default()
        )),
        None => json!("Local"),
    }
}

/// The `@apiservice-available` column.
fn apiservice_available(item: &Value) -> Value {
    let c = item
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
    match c {
        Some(c) if c["status"] == "True" => json!("True"),
        Some(c) => json!(format!(
            "{} ({})",
            c["status"].as_str().unwrap_or("Unknown"),
            c["reason"].as_str().unwrap_or_default()
        )),
        None => json!("Unknown"),
    }
}

/// The `@service-external-ip` column.
fn service_external_ip(item: &Value) -> Value {
    let mut ips: Vec<String> = item
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.get("ip")
                .or_else(|| i.get("hostname"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    ips.extend(
        item.pointer("/spec/externalIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str().map(str::to_string)),
    );
    match item.pointer("/spec/type").and_then(Value::as_str) {
        Some("ExternalName") => json!(
            item.pointer("/spec/externalName")
                .and_then(Value::as_str)
                .unwrap_or("<none>")
        ),
        Some("LoadBalancer") if ips.is_empty() => json!("<pending>"),
        _ if ips.is_empty() => json!("<none>"),
        _ => json!(ips.join(",")),
    }
}

/// The `@service-ports` column.
fn service_ports(item: &Value) -> Value {
    let ports: Vec<String> = item
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let port = p.get("port").map(Value::to_string).unwrap_or_default();
            match p.get("nodePort") {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    json!(if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    })
}

/// The `@service-selector` column.
fn service_selector(item: &Value) -> Value {
    let sel: Vec<String> = item
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    json!(if sel.is_empty() {
        "<none>".to_string()
    } else {
        sel.join(",")
    })
}

/// The `@endpoints` column.
fn endpoints(item: &Value) -> Value {
    // kubectl's form: IP:PORT for every address and port, the first three, then "+ N more...".
    let mut all = Vec::new();
    for s in item
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<String> = s
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| p.get("port").map(Value::to_string).unwrap_or_default())
            .collect();
        for a in s.get("addresses").and_then(Value::as_array).into_iter().flatten() {
            let ip = a.get("ip").and_then(Value::as_str).unwrap_or_default();
            if ports.is_empty() {
                all.push(ip.to_string());
            }
            all.extend(ports.iter().map(|p| format!("{ip}:{p}")));
        }
    }
    let shown = all.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    json!(match all.len() {
        0 => "<none>".to_string(),
        n if n > 3 => format!("{shown} + {} more...", n - 3),
        _ => shown,
    })
}

fn cell(item: &Value, c: &Column, now: jiff::Timestamp) -> Value {
    if let Some(name) = c.json_path.strip_prefix('@') {
        return computed(item, name);
    }
    let v = jsonpath(item, &c.json_path);
    match (c.type_.as_str(), v) {
        (_, None) => Value::Null,
        ("date", Some(Value::String(s))) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => json!(human_duration(now.as_second() - t.as_second())),
            Err(_) => Value::String(s),
        },
        ("string", Some(Value::String(s))) => Value::String(s),
        ("string", Some(other)) => Value::String(other.to_string()),
        (_, Some(other)) => other,
    }
}

/// Evaluates the simple JSONPath forms printer columns use: `.a.b`, `.a[0].b`, `.a[?(@.k=='v')].b`.
#[must_use]
pub fn jsonpath(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = vec![obj.clone()];
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.');
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = r[end + 1..].trim_start_matches('.');
            let mut next = Vec::new();
            for v in &cur {
                let arr = v.as_array()?;
                if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                    let (k, want) = filter.split_once("==")?;
                    let want = want.trim().trim_matches('\'').trim_matches('"');
                    next.extend(
                        arr.iter()
                            .filter(|e| e.get(k.trim()).and_then(Value::as_str) == Some(want))
                            .cloned(),
                    );
                } else {
                    let i: usize = inner.parse().ok()?;
                    next.extend(arr.get(i).cloned());
                }
            }
            cur = next;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let field = &rest[..end];
            rest = rest[end..].trim_start_matches('.');
            cur = cur.iter().filter_map(|v| v.get(field).cloned()).collect();
        }
        if cur.is_empty() {
            return None;
        }
    }
    cur.into_iter().next()
}

/// Kubernetes' `HumanDuration`: 45s, 5m3s, 47m, 3h5m, 23h, 3d5h, 120d, 2y10d.
#[must_use]
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if h < 24 * 8 {
        return if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    let y = d / 365;
    if d % 365 == 0 {
        format!("{y}y")
    } else {
        format!("{y}y{}d", d % 365)
    }
}

/// kubectl's `listWithMoreString` over the first three of `items`.
fn three_or_more(items: &[String]) -> String {
    match items.len() {
        0 => "<unset>".to_string(),
        n if n > 3 => format!("{} + {} more...", items[..3].join(","), n - 3),
        _ => items.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpaths_of_printer_columns() {
        let vmi = json!({"status": {"phase": "Running", "interfaces": [{"ipAddress": "10.0.0.5"}],
            "conditions": [{"type": "LiveMigratable", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(jsonpath(&vmi, ".status.phase"), Some(json!("Running")));
        assert_eq!(
            jsonpath(&vmi, ".status.interfaces[0].ipAddress"),
            Some(json!("10.0.0.5"))
        );
        assert_eq!(
            jsonpath(&vmi, ".status.conditions[?(@.type=='Ready')].status"),
            Some(json!("True"))
        );
        assert_eq!(jsonpath(&vmi, ".status.nodeName"), None);
        assert_eq!(
            jsonpath(&vmi, ".status.conditions[?(@.type=='Paused')].status"),
            None
        );
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(303), "5m3s");
        assert_eq!(human_duration(47 * 60), "47m");
        assert_eq!(human_duration(3 * 3600 + 300), "3h5m");
        assert_eq!(human_duration(23 * 3600), "23h");
        assert_eq!(human_duration(3 * 86400 + 5 * 3600), "3d5h");
        assert_eq!(human_duration(120 * 86400), "120d");
        assert_eq!(human_duration(740 * 86400), "2y10d");
    }
}
