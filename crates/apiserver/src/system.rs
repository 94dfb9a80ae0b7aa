//! Objects a real cluster's own controllers keep, which clients expect to find: in every namespace the
//! `kube-root-ca.crt` ConfigMap (root-ca-cert-publisher) and the `default` ServiceAccount (serviceaccounts
//! controller), made when the namespace is; and the `default/kubernetes` Service and Endpoints naming the API server
//! (kube-apiserver's bootstrap controller), refreshed at every start.

use crate::object_store::Resource;
use std::net::SocketAddr;

use apiserver_store::{Store, StoreError};
use serde_json::{Value, json};

fn stamp(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    obj["metadata"]["creationTimestamp"] = json!(crate::objects::now_rfc3339());
    obj
}

/// Stores `obj` under `key` unless something is there.
///
/// # Errors
/// Store failures.
pub fn ensure(store: &Store, key: &str, obj: &Value) -> Result<(), StoreError> {
    if store.get(key)?.is_some() {
        return Ok(());
    }
    let bytes = serde_json::to_vec(obj).unwrap_or_default();
    match store.create(key, bytes) {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Stores `obj` under `key`, replacing what is there when its `field` differs.
///
/// # Errors
/// Store failures.
pub fn ensure_field(store: &Store, key: &str, obj: &Value, field: &str) -> Result<(), StoreError> {
    match store.get(key)? {
        Some(kv) => {
            let old: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if old.get(field) == obj.get(field) {
                return Ok(());
            }
            let mut new = old;
            new[field] = obj[field].clone();
            let bytes = serde_json::to_vec(&new).unwrap_or_default();
            match store.update(key, bytes, kv.mod_revision) {
                // Someone else wrote it meanwhile: theirs stands until the next start.
                Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        None => ensure(store, key, obj),
    }
}

/// The `kube-root-ca.crt` ConfigMap and `default` ServiceAccount of namespace `ns`.
///
/// # Errors
/// Store failures.
pub fn namespace_contents(store: &Store, ns: &str, root_ca: &str) -> Result<(), StoreError> {
    if !root_ca.is_empty() {
        ensure(
            store,
            &Resource::core("configmaps").key(Some(ns), "kube-root-ca.crt"),
            &stamp(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": root_ca}})),
        )?;
    }
    ensure(
        store,
        &Resource::core("serviceaccounts").key(Some(ns), "default"),
        &stamp(json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": ns}})),
    )
}

/// The `default/kubernetes` Service (the range's first address, port 443 → the server's port) and its Endpoints
/// and EndpointSlice (the server's address), as kube-apiserver's endpoint reconciler keeps them.
///
/// # Errors
/// Store failures.
pub fn kubernetes_service(
    store: &Store,
    range: crate::services::ServiceRange,
    addr: SocketAddr,
) -> Result<(), StoreError> {
    let ip = range.first().to_string();
    let port = addr.port();
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure_field(
        store,
        &Resource::core("services").key(Some("default"), "kubernetes"),
        &stamp(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            "status": {"loadBalancer": {}}})),
        "spec",
    )?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    ensure_field(
        store,
        &Resource::core("endpoints").key(Some("default"), "kubernetes"),
        &stamp(json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": host}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})),
        "subsets",
    )?;
    let mut slice = stamp(
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
    );
    slice["metadata"]["generation"] = json!(1);
    let slice_key = Resource::of("discovery.k8s.io", "endpointslices").key(Some("default"), "kubernetes");
    ensure_field(store, &slice_key, &slice, "endpoints")?;
    ensure_field(store, &slice_key, &slice, "ports")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn get(store: &Store, key: &str) -> Value {
        serde_json::from_slice(&store.get(key).unwrap().unwrap().value).unwrap()
    }

    #[test]
    fn namespaces_get_their_ca_and_default_account() {
        let store = Store::memory();
        namespace_contents(&store, "team-a", "PEM").unwrap();
        namespace_contents(&store, "team-a", "PEM").unwrap();
        let cm = get(&store, "/registry/core/configmaps/team-a/kube-root-ca.crt");
        assert_eq!(cm["data"]["ca.crt"], "PEM");
        let sa = get(&store, "/registry/core/serviceaccounts/team-a/default");
        assert_eq!(sa["metadata"]["namespace"], "team-a");
    }

    #[test]
    fn the_kubernetes_service_follows_the_server() {
        let store = Store::memory();
        let range = crate::services::ServiceRange::default();
        kubernetes_service(&store, range, "127.0.0.1:6443".parse().unwrap()).unwrap();
        let svc = get(&store, "/registry/core/services/default/kubernetes");
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 6443);
        kubernetes_service(&store, range, "127.0.0.1:7443".parse().unwrap()).unwrap();
        let ep = get(&store, "/registry/core/endpoints/default/kubernetes");
        assert_eq!(ep["subsets"][0]["ports"][0]["port"], 7443);
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
        let svc = get(&store, "/registry/core/services/default/kubernetes");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 7443);
        let slice = get(
            &store,
            "/registry/discovery.k8s.io/endpointslices/default/kubernetes",
        );
        assert_eq!(slice["ports"][0]["port"], 7443);
        assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kubernetes"
        );
    }
}
