//! Protobuf request bodies: `kubectl create namespace|configmap|secret|serviceaccount|token|service|role|
//! rolebinding|clusterrole|clusterrolebinding` send
//! `application/vnd.kubernetes.protobuf` (the `k8s\0` magic, then a `runtime.Unknown` envelope holding the typed
//! message). The typed messages come from `k8s-pb`; this module turns the few kinds clients send into the JSON the
//! rest of the server works with. Responses stay JSON (clients accept it).

use base64::Engine as _;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message as _;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

const MAGIC: &[u8] = b"k8s\0";

fn meta(m: Option<ObjectMeta>) -> Value {
    let Some(m) = m else { return json!({}) };
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.insert(k.into(), Value::String(v));
        }
    };
    put("name", m.name);
    put("generateName", m.generate_name);
    put("namespace", m.namespace);
    put("resourceVersion", m.resource_version);
    put("uid", m.uid);
    if !m.labels.is_empty() {
        out.insert("labels".into(), json!(m.labels));
    }
    if !m.annotations.is_empty() {
        out.insert("annotations".into(), json!(m.annotations));
    }
    if !m.finalizers.is_empty() {
        out.insert("finalizers".into(), json!(m.finalizers));
    }
    Value::Object(out)
}

fn b64(map: std::collections::BTreeMap<String, Vec<u8>>) -> Value {
    let e = base64::engine::general_purpose::STANDARD;
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, Value::String(e.encode(v))))
            .collect(),
    )
}

/// Puts `v` at `k` when it is set and not empty.
fn put_str(m: &mut Map<String, Value>, k: &str, v: Option<String>) {
    if let Some(v) = v.filter(|v| !v.is_empty()) {
        m.insert(k.into(), Value::String(v));
    }
}

/// `kubectl create service clusterip|nodeport|loadbalancer|externalname`.
fn service(inner: &[u8]) -> Result<Value, ApiError> {
    let svc = core::Service::decode(inner).map_err(bad)?;
    let spec = svc.spec.unwrap_or_default();
    let ports: Vec<Value> = spec
        .ports
        .into_iter()
        .map(|p| {
            let mut m = Map::new();
            put_str(&mut m, "name", p.name);
            put_str(&mut m, "protocol", p.protocol);
            put_str(&mut m, "appProtocol", p.app_protocol);
            if let Some(port) = p.port {
                m.insert("port".into(), json!(port));
            }
            if let Some(t) = p.target_port {
                // IntOrString: type 0 is the number, 1 the name.
                let v = match t.r#type {
                    Some(1) => json!(t.str_val.unwrap_or_default()),
                    _ => json!(t.int_val.unwrap_or_default()),
                };
                m.insert("targetPort".into(), v);
            }
            if let Some(n) = p.node_port.filter(|n| *n != 0) {
                m.insert("nodePort".into(), json!(n));
            }
            Value::Object(m)
        })
        .collect();
    let mut out = Map::new();
    if !ports.is_empty() {
        out.insert("ports".into(), Value::Array(ports));
    }
    if !spec.selector.is_empty() {
        out.insert("selector".into(), json!(spec.selector));
    }
    put_str(&mut out, "clusterIP", spec.cluster_ip);
    if !spec.cluster_ips.is_empty() {
        out.insert("clusterIPs".into(), json!(spec.cluster_ips));
    }
    put_str(&mut out, "type", spec.r#type);
    put_str(&mut out, "externalName", spec.external_name);
    put_str(&mut out, "sessionAffinity", spec.session_affinity);
    put_str(&mut out, "externalTrafficPolicy", spec.external_traffic_policy);
    if !spec.external_ips.is_empty() {
        out.insert("externalIPs".into(), json!(spec.external_ips));
    }
    Ok(json!({"metadata": meta(svc.metadata), "spec": out}))
}

fn rules(rules: Vec<rbac::PolicyRule>) -> Value {
    let list = |v: Vec<String>| (!v.is_empty()).then(|| json!(v));
    Value::Array(
        rules
            .into_iter()
            .map(|r| {
                let mut m = Map::new();
                for (k, v) in [
                    ("verbs", Some(json!(r.verbs))),
                    ("apiGroups", list(r.api_groups)),
                    ("resources", list(r.resources)),
                    ("resourceNames", list(r.resource_names)),
                    ("nonResourceURLs", list(r.non_resource_ur_ls)),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn binding(b: rbac::RoleBinding) -> Value {
    let subjects: Vec<Value> = b
        .subjects
        .into_iter()
        .map(|s| {
            let mut m = Map::new();
            put_str(&mut m, "kind", s.kind);
            put_str(&mut m, "apiGroup", s.api_group);
            put_str(&mut m, "name", s.name);
            put_str(&mut m, "namespace", s.namespace);
            Value::Object(m)
        })
        .collect();
    let r = b.role_ref.unwrap_or_default();
    json!({"metadata": meta(b.metadata), "subjects": subjects,
        "roleRef": {"apiGroup": r.api_group.unwrap_or_default(), "kind": r.kind.unwrap_or_default(),
            "name": r.name.unwrap_or_default()}})
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("the protobuf body could not be decoded: {e}"))
}

/// Decodes a protobuf body into the JSON object it describes.
///
/// # Errors
/// 400 for malformed bodies; 415 for kinds this server cannot take as protobuf (JSON works for every kind).
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf magic"))?;
    let unknown = Unknown::decode(raw).map_err(bad)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let inner = unknown.raw.unwrap_or_default();
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {
            let ns = core::Namespace::decode(inner.as_slice()).map_err(bad)?;
            let finalizers = ns.spec.map(|s| s.finalizers).unwrap_or_default();
            json!({"metadata": meta(ns.metadata), "spec": {"finalizers": finalizers}})
        }
        ("v1", "ConfigMap") => {
            let cm = core::ConfigMap::decode(inner.as_slice()).map_err(bad)?;
            let mut v = json!({"metadata": meta(cm.metadata), "data": cm.data});
            if !cm.binary_data.is_empty() {
                v["binaryData"] = b64(cm.binary_data);
            }
            if let Some(i) = cm.immutable {
                v["immutable"] = json!(i);
            }
            v
        }
        ("v1", "Secret") => {
            let s = core::Secret::decode(inner.as_slice()).map_err(bad)?;
            let mut v = json!({"metadata": meta(s.metadata), "data": b64(s.data)});
            if !s.string_data.is_empty() {
                v["stringData"] = json!(s.string_data);
            }
            if let Some(t) = s.r#type {
                v["type"] = json!(t);
            }
            if let Some(i) = s.immutable {
                v["immutable"] = json!(i);
            }
            v
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            // `kubectl create token`.
            let r = k8s_pb::api::authentication::v1::TokenRequest::decode(inner.as_slice()).map_err(bad)?;
            let spec = r.spec.unwrap_or_default();
            let mut s = json!({"audiences": spec.audiences});
            if let Some(e) = spec.expiration_seconds {
                s["expirationSeconds"] = json!(e);
            }
            if let Some(b) = spec.bound_object_ref {
                s["boundObjectRef"] =
                    json!({"kind": b.kind, "apiVersion": b.api_version, "name": b.name, "uid": b.u_id});
            }
            json!({"metadata": meta(r.metadata), "spec": s})
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            let r = k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(inner.as_slice())
                .map_err(bad)?;
            let spec = r.spec.unwrap_or_default();
            let mut out = json!({});
            if let Some(a) = spec.resource_attributes {
                out["resourceAttributes"] = json!({
                    "namespace": a.namespace, "verb": a.verb, "group": a.group, "version": a.version,
                    "resource": a.resource, "subresource": a.subresource, "name": a.name,
                });
            }
            if let Some(a) = spec.non_resource_attributes {
                out["nonResourceAttributes"] = json!({"path": a.path, "verb": a.verb});
            }
            json!({"metadata": meta(r.metadata), "spec": out})
        }
        ("v1", "ServiceAccount") => {
            let sa = core::ServiceAccount::decode(inner.as_slice()).map_err(bad)?;
            json!({"metadata": meta(sa.metadata)})
        }
        ("v1", "Service") => service(&inner)?,
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => {
            // Role and ClusterRole share their wire shape (metadata 1, rules 2).
            let r = rbac::Role::decode(inner.as_slice()).map_err(bad)?;
            json!({"metadata": meta(r.metadata), "rules": rules(r.rules)})
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            let b = rbac::RoleBinding::decode(inner.as_slice()).map_err(bad)?;
            binding(b)
        }
        _ => {
            return Err(ApiError::unsupported_media(
                "application/json, application/yaml, and application/vnd.kubernetes.protobuf for v1 Namespace, ConfigMap, Secret, ServiceAccount, Service and rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding, ClusterRoleBinding",
            ));
        }
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;

    use super::*;

    fn envelope(kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some("v1".into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn decodes_what_kubectl_create_sends() {
        let ns = core::Namespace {
            metadata: Some(ObjectMeta {
                name: Some("team-a".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {"finalizers": []}})
        );
        let s = core::Secret {
            metadata: Some(ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: [("k".to_string(), b"hi".to_vec())].into_iter().collect(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("Secret", s.encode_to_vec())).unwrap();
        assert_eq!(v["data"]["k"], "aGk=");
        assert_eq!(decode(b"garbage").unwrap_err().code, 400);
        assert_eq!(decode(&envelope("Pod", Vec::new())).unwrap_err().code, 415);
    }
}
