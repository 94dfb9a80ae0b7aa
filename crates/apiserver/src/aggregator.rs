//! API aggregation, as kube-apiserver's aggregator does it: an `APIService` (`<version>.<group>`) with a
//! `spec.service` hands every request under `/apis/<group>/<version>` to that Service's endpoints (the address in
//! its Endpoints, as with `--enable-aggregator-routing`), over TLS verified with the APIService's `caBundle` (for the
//! name `<service>.<namespace>.svc`) unless `insecureSkipTLSVerify`. The caller was authenticated and authorized
//! here; the backend learns who it is from `X-Remote-User`/`X-Remote-Group`, trusting them because this server
//! presents the front proxy's client certificate (published in `kube-system/extension-apiserver-authentication`).
//! Upgrades (websockets: consoles, VNC) are spliced through. Discovery lists aggregated groups; their resources come
//! from the backend's own discovery, cached for a minute.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::context::{ApiState, Identity};
use crate::object_store::Resource;
use crate::status::ApiError;

use crate::upstreams::{Backend, DISCOVERY_TTL, Group, unavailable};

/// The group and version of an `/apis/<group>/<version>[/…]` path.
fn group_version(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.strip_prefix("/apis/")?.split('/');
    let g = parts.next().filter(|g| !g.is_empty())?;
    let v = parts.next().filter(|v| !v.is_empty())?;
    Some((g, v))
}

/// The APIService objects that send their group elsewhere.
fn remote_services(state: &ApiState) -> Result<Vec<Value>, ApiError> {
    let list = state.store.list(
        &Resource::of("apiregistration.k8s.io", "apiservices").prefix(),
        &apiserver_store::ListOptions::default(),
    )?;
    Ok(list
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|s| s.pointer("/spec/service").is_some_and(|v| !v.is_null()))
        .collect())
}

/// The `IP:PORT` of Service `ns/name`'s endpoint for service port `port` (the endpoint port of the same name, or the
/// only one) — how box mode reaches a Service without cluster networking.
///
/// # Errors
/// 503 when the Service, its port or a ready endpoint is missing.
pub fn service_address(state: &ApiState, ns: &str, name: &str, port: i64) -> Result<String, ApiError> {
    let service = Resource::core("services")
        .get(&state.store, Some(ns), name)?
        .ok_or_else(|| unavailable(format!("service \"{ns}/{name}\" not found")))?;
    // The service port the APIService names, then the endpoint port of the same name (or the only one).
    let port_name = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_i64) == Some(port))
        .map(|p| {
            p.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .ok_or_else(|| unavailable(format!("service \"{ns}/{name}\" has no port {port}")))?;
    let endpoints = Resource::core("endpoints")
        .get(&state.store, Some(ns), name)?
        .unwrap_or_default();
    endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|subset| {
            let ip = subset.pointer("/addresses/0/ip")?.as_str()?;
            let ports = subset.get("ports")?.as_array()?;
            let p = ports
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
                .or_else(|| (ports.len() == 1).then(|| &ports[0]))?;
            let port = p.get("port")?.as_i64()?;
            Some(if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            })
        })
        .ok_or_else(|| unavailable(format!("service \"{ns}/{name}\" has no ready endpoint")))
}

/// The backend of the path's group-version when an APIService sends it to a service (`None`: served here).
///
/// # Errors
/// 503 when the service has no ready endpoint or the APIService cannot be used.
pub fn backend(state: &ApiState, path: &str) -> Result<Option<Backend>, ApiError> {
    let Some(agg) = state.aggregator.as_ref() else {
        return Ok(None);
    };
    let Some((g, v)) = group_version(path) else {
        return Ok(None);
    };
    // Every request passes here: a local group must cost no copy of the registry.
    if state.registry.has_group(g) {
        return Ok(None);
    }
    let Some(svc) =
        Resource::of("apiregistration.k8s.io", "apiservices").get(&state.store, None, &format!("{v}.{g}"))?
    else {
        return Ok(None);
    };
    let Some(sref) = svc.pointer("/spec/service").filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let s = |k: &str| {
        sref.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (ns, name) = (s("namespace"), s("name"));
    let port = sref.get("port").and_then(Value::as_i64).unwrap_or(443);
    let addr = service_address(state, &ns, &name, port)?;
    let insecure = svc
        .pointer("/spec/insecureSkipTLSVerify")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tls = agg.tls(svc.pointer("/spec/caBundle").and_then(Value::as_str), insecure)?;
    Ok(Some(Backend {
        addr,
        server_name: format!("{name}.{ns}.svc"),
        tls,
    }))
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;

async fn connect(b: &Backend) -> Result<Sender, ApiError> {
    let fail = |e: &dyn std::fmt::Display| {
        unavailable(format!(
            "the aggregated API server at {} is unreachable: {e}",
            b.addr
        ))
    };
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&b.addr))
        .await
        .map_err(|_| fail(&"timed out"))?
        .map_err(|e| fail(&e))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(b.server_name.clone()).map_err(|e| fail(&e))?;
    let tls = tokio_rustls::TlsConnector::from(b.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| fail(&e))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// The authorization attributes of a request for an aggregated path (`/apis/G/V/[namespaces/NS/]RES[/NAME[/SUB…]]`;
/// as kube-apiserver's RequestInfo: the subresource is the segment after the name).
#[must_use]
pub fn attributes(method: &axum::http::Method, path: &str, watching: bool) -> crate::authz::Attributes {
    let (g, _) = group_version(path).unwrap_or_default();
    let rest: Vec<&str> = path.split('/').skip(4).filter(|s| !s.is_empty()).collect();
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => ((*ns).to_string(), tail.to_vec()),
        _ => (String::new(), rest),
    };
    let resource = rest.first().copied().unwrap_or_default().to_string();
    let named = rest.len() > 1;
    crate::authz::Attributes {
        verb: crate::request::request_verb(method, named, watching).to_string(),
        group: g.to_string(),
        resource,
        subresource: rest.get(2).copied().unwrap_or_default().to_string(),
        namespace,
    }
}

/// Sends `req` (authenticated as `who`) to `b` and relays the answer, splicing an upgraded connection through.
pub async fn proxy(b: Backend, who: &Identity, mut req: Request) -> Response {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = upgrade
        .then(|| req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    headers.remove(header::AUTHORIZATION);
    // Hop-by-hop headers are this connection's, not the backend's (the body is framed anew); an upgrade keeps
    // the two it needs.
    for h in [
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(h);
    }
    headers.remove("keep-alive");
    if !upgrade {
        headers.remove(header::CONNECTION);
    }
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-remote-") || k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for k in spoofed {
        headers.remove(k);
    }
    if let Ok(v) = HeaderValue::from_str(&who.user) {
        headers.insert("x-remote-user", v);
    }
    for g in &who.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&b.server_name) {
        headers.insert(header::HOST, v);
    }
    // The client may have come over HTTP/2; the backend connection is HTTP/1.1 (so a body of unknown length is
    // sent chunked rather than dropped).
    parts.version = http::Version::HTTP_11;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    parts.uri = match path.parse() {
        Ok(u) => u,
        Err(_) => return ApiError::bad_request("unparseable path").into_response(),
    };
    let mut sender = match connect(&b).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut resp = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => return unavailable(format!("the aggregated API server failed: {e}")).into_response(),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client) = client_upgrade
    {
        let backend = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(c), Ok(s)) = (client.await, backend.await) {
                let (mut c, mut s) = (hyper_util::rt::TokioIo::new(c), hyper_util::rt::TokioIo::new(s));
                let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = resp.into_parts();
    for h in [header::TRANSFER_ENCODING, header::CONNECTION, header::TRAILER] {
        parts.headers.remove(h);
    }
    parts.headers.remove("keep-alive");
    Response::from_parts(parts, Body::new(body))
}

/// The aggregated groups, from the APIServices; with `resources`, each version's resource list from its backend
/// (cached for [`DISCOVERY_TTL`]; `None` when the backend cannot say).
pub async fn groups(state: &ApiState, resources: bool) -> Vec<Group> {
    let Ok(services) = remote_services(state) else {
        return Vec::new();
    };
    let mut out: Vec<Group> = Vec::new();
    let mut sorted: Vec<(String, String, i64)> = services
        .iter()
        .filter_map(|s| {
            Some((
                s.pointer("/spec/group")?.as_str()?.to_string(),
                s.pointer("/spec/version")?.as_str()?.to_string(),
                s.pointer("/spec/versionPriority")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            ))
        })
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(a.1.cmp(&b.1)));
    for (g, v, _) in sorted {
        let list = if resources {
            discover(state, &g, &v).await
        } else {
            None
        };
        match out.iter_mut().find(|x| x.name == g) {
            Some(group) => group.versions.push((v, list)),
            None => out.push(Group {
                name: g,
                versions: vec![(v, list)],
            }),
        }
    }
    out
}

/// kube-aggregator's availability check of `v.g`: the backend is found and answers its discovery path. The error is
/// the condition's reason and message.
///
/// # Errors
/// `ServiceNotFound`/`MissingEndpoints` when the backend cannot be located, `FailedDiscoveryCheck` when it does not
/// answer 2xx within five seconds.
pub async fn probe(state: &ApiState, g: &str, v: &str) -> Result<(), (&'static str, String)> {
    let path = format!("/apis/{g}/{v}");
    let b = match backend(state, &path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(()),
        Err(e) if e.message.contains("not found") => return Err(("ServiceNotFound", e.message)),
        Err(e) => return Err(("MissingEndpoints", e.message)),
    };
    let url = format!("https://{}{path}", b.addr);
    let failed = |e: &dyn std::fmt::Display| {
        (
            "FailedDiscoveryCheck",
            format!("failing or missing response from {url}: {e}"),
        )
    };
    let mut sender = connect(&b).await.map_err(|e| failed(&e.message))?;
    let req = Request::get(&path)
        .header(header::HOST, b.server_name.clone())
        .header(header::ACCEPT, "application/json")
        .body(Body::empty())
        .map_err(|e| failed(&e))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .map_err(|_| failed(&"Get: context deadline exceeded"))?
        .map_err(|e| failed(&e))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(failed(&format!(
            "bad status from {url}: {}",
            resp.status().as_u16()
        )))
    }
}

async fn discover(state: &ApiState, g: &str, v: &str) -> Option<Value> {
    let agg = state.aggregator.as_ref()?;
    let key = format!("{g}/{v}");
    if let Ok(cache) = agg.discovery.lock()
        && let Some((at, doc)) = cache.get(&key)
        && at.elapsed() < DISCOVERY_TTL
    {
        return doc.clone();
    }
    let path = format!("/apis/{g}/{v}");
    let fetched = async {
        let b = backend(state, &path).ok()??;
        let mut sender = connect(&b).await.ok()?;
        let req = Request::get(&path)
            .header(header::HOST, b.server_name.clone())
            .header(header::ACCEPT, "application/json")
            .header("x-remote-user", "system:kube-aggregator")
            .header("x-remote-group", "system:masters")
            .body(Body::empty())
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
            .await
            .ok()?
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?
            .to_bytes();
        let doc: Value = serde_json::from_slice(&bytes).ok()?;
        doc.get("resources").cloned()
    }
    .await;
    if let Ok(mut cache) = agg.discovery.lock() {
        cache.insert(key, (Instant::now(), fetched.clone()));
    }
    fetched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_paths_give_request_attributes() {
        let a = attributes(
            &axum::http::Method::GET,
            "/apis/subresources.kubevirt.io/v1/namespaces/d/virtualmachineinstances/x/vnc/screenshot",
            false,
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.namespace.as_str()
            ),
            ("get", "virtualmachineinstances", "vnc", "d")
        );
        let a = attributes(
            &axum::http::Method::PUT,
            "/apis/subresources.kubevirt.io/v1/namespaces/d/virtualmachines/x/start",
            false,
        );
        assert_eq!((a.verb.as_str(), a.subresource.as_str()), ("update", "start"));
        let a = attributes(
            &axum::http::Method::GET,
            "/apis/subresources.kubevirt.io/v1",
            false,
        );
        assert_eq!((a.verb.as_str(), a.resource.as_str()), ("list", ""));
    }

    #[test]
    fn paths_name_their_group_version() {
        assert_eq!(
            group_version("/apis/subresources.kubevirt.io/v1/namespaces/d/virtualmachines/x/start"),
            Some(("subresources.kubevirt.io", "v1"))
        );
        assert_eq!(group_version("/apis/subresources.kubevirt.io"), None);
        assert_eq!(group_version("/api/v1/pods"), None);
    }
}
