//! virt-api in box mode: the same server as the `virt-api` binary, run in-process on loopback, and registered as
//! an operator registers it on a cluster — Service `kubevirt/virt-api` (443 → its port), its Endpoints (this
//! address; box mode has no service network, and the aggregator routes to endpoints), and the APIServices
//! `v1.subresources.kubevirt.io` and `v1alpha3.subresources.kubevirt.io` with the KubeVirt CA bundle — so
//! `kubectl`/`virtctl` reach it through the API server like any aggregated API.

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::KUBEVIRT_NAMESPACE as NS;

/// Starts virt-api and registers it; returns its serving task.
pub(crate) async fn start(client: &kube::Client) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let id = handler::certs::load(client, NS, crate::certs::VIRT_API_SECRET)
        .await
        .context("virt-api's serving certificate")?;
    let rh = virt_api::authn::RequestHeader::load(client)
        .await
        .context("the front proxy's trust settings")?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding virt-api")?;
    let port = tcp.local_addr()?.port();
    let key = crate::certs::signing_key(client, NS)
        .await
        .context("the upload token signing key")?;
    let tokens = virt_api::upload::Tokens::from_pkcs8(&key)?;
    let app = virt_api::app::App::with_tokens(client.clone(), rh, NS, Some(tokens));
    let (cert, key) = (id.cert.clone(), id.key.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = virt_api::server::serve(tcp, app, &cert, &key).await {
            tracing::error!(error = %e, "virt-api stopped");
        }
    });
    register(client, port, &id.ca_bundle).await?;
    Ok(task)
}

async fn register(client: &kube::Client, port: u16, ca_bundle: &str) -> anyhow::Result<()> {
    let apply = PatchParams::apply("kvbox").force();
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "virt-api", "namespace": NS, "labels": {"kubevirt.io": "virt-api"}},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]}});
    services
        .patch("virt-api", &apply, &Patch::Apply(&svc))
        .await
        .context("the virt-api Service")?;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NS);
    let ep = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "virt-api", "namespace": NS, "labels": {"kubevirt.io": "virt-api"}},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    endpoints
        .patch("virt-api", &apply, &Patch::Apply(&ep))
        .await
        .context("the virt-api Endpoints")?;
    let api_services: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource {
            group: "apiregistration.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiregistration.k8s.io/v1".into(),
            kind: "APIService".into(),
            plural: "apiservices".into(),
        },
    );
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_bundle);
    for version in virt_api::server::VERSIONS {
        let name = format!("{version}.subresources.kubevirt.io");
        let obj = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name, "labels": {"kubevirt.io": "virt-api-aggregator"}},
            "spec": {"group": "subresources.kubevirt.io", "version": version, "groupPriorityMinimum": 1000,
                "versionPriority": 15, "service": {"namespace": NS, "name": "virt-api"}, "caBundle": bundle}});
        api_services
            .patch(&name, &apply, &Patch::Apply(&obj))
            .await
            .with_context(|| format!("the APIService {name}"))?;
    }
    // CDI's UploadTokenRequests, served by the same server (upstream's cdi-apiserver).
    let name = format!("{}.{}", virt_api::upload::VERSION, virt_api::upload::GROUP);
    let obj = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name, "labels": {"cdi.kubevirt.io": "cdi-aggregator"}},
        "spec": {"group": virt_api::upload::GROUP, "version": virt_api::upload::VERSION, "groupPriorityMinimum": 1000,
            "versionPriority": 15, "service": {"namespace": NS, "name": "virt-api"}, "caBundle": bundle}});
    api_services
        .patch(&name, &apply, &Patch::Apply(&obj))
        .await
        .with_context(|| format!("the APIService {name}"))?;
    Ok(())
}
