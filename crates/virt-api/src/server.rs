//! The HTTPS server: upstream's routes under `/apis/subresources.kubevirt.io/{v1,v1alpha3}`, each request
//! authenticated from the front proxy's headers and authorized with a SubjectAccessReview before it is handled;
//! discovery, `version` and `healthz` are open, as upstream's allow-list has them.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use handler::tls::Peer;
use serde_json::{Value, json};

use crate::app::App;
use crate::status::{Failure, Reply};

/// The versions served.
pub const VERSIONS: &[&str] = &["v1", "v1alpha3"];

/// Subresources listed in discovery (upstream's list, less what is not served here yet).
const RESOURCES: &[&str] = &[
    "virtualmachineinstances/vnc",
    "virtualmachineinstances/vnc/screenshot",
    "virtualmachineinstances/console",
    "virtualmachineinstances/portforward",
    "virtualmachineinstances/pause",
    "virtualmachineinstances/unpause",
    "virtualmachineinstances/freeze",
    "virtualmachineinstances/unfreeze",
    "virtualmachineinstances/reset",
    "virtualmachineinstances/softreboot",
    "virtualmachineinstances/addvolume",
    "virtualmachineinstances/removevolume",
    "virtualmachines/start",
    "virtualmachines/stop",
    "virtualmachines/restart",
    "virtualmachines/migrate",
    "virtualmachines/memorydump",
    "virtualmachines/expand-spec",
    "expand-vm-spec",
    "virtualmachines/removememorydump",
    "virtualmachineinstances/guestosinfo",
    "virtualmachineinstances/userlist",
    "virtualmachineinstances/filesystemlist",
];

fn resource_list(version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|r| json!({"name": r, "singularName": "", "namespaced": true, "kind": "", "verbs": null}))
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": format!("{}/{version}", crate::authz::GROUP), "resources": resources})
}

fn version_info() -> Value {
    json!({
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION"), "+kubevirt-rs"),
        "gitCommit": "kubevirt-rs",
        "gitTreeState": "clean",
        "buildDate": "2026-12-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.client.apiserver_version().await {
        Ok(v) => axum::Json(json!({"apiserver": {"connectivity": "ok", "version": v}})).into_response(),
        Err(e) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"apiserver": {"connectivity": "failed", "error": e.to_string()}})),
        )
            .into_response(),
    }
}

/// `guestfs`: where `virtctl guestfs` finds the libguestfs-tools image. kubevirt-rs ships none, so the answer is
/// upstream's failure shape (`{"guestfs": {"status": "failed", "error": …}}`, 500) saying so.
async fn guestfs() -> Response {
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({"guestfs": {"status": "failed",
            "error": "libguestfs-tools is not available: kubevirt-rs does not ship a libguestfs-tools image"}})),
    )
        .into_response()
}

/// Paths anyone may read (upstream's allow-list).
fn open_path(path: &str) -> bool {
    // Admission reviews come from kube-apiserver, not through the front proxy.
    if crate::webhooks::PATHS.iter().any(|(p, _)| *p == path) {
        return true;
    }
    if matches!(
        path,
        "/" | "/apis"
            | "/healthz"
            | "/apis/subresources.kubevirt.io"
            | "/apis/upload.cdi.kubevirt.io"
            | "/apis/upload.cdi.kubevirt.io/v1beta1"
    ) {
        return true;
    }
    VERSIONS.iter().any(|v| {
        let base = format!("/apis/subresources.kubevirt.io/{v}");
        path == base
            || path == format!("{base}/version")
            || path == format!("{base}/healthz")
            || path == format!("{base}/guestfs")
    })
}

/// Authenticates and authorizes every request that is not open.
async fn guard(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if open_path(&path) {
        return next.run(req).await;
    }
    if peer.cn.is_none() {
        return Failure::unauthorized("request is not authenticated").into_response();
    }
    let Some(caller) = app.request_header.caller(peer.cn.as_deref(), req.headers()) else {
        return Failure::unauthorized("a valid user header is required for authorization").into_response();
    };
    // /apis/G/V/namespaces/NS/RES/NAME/SUB…, or /apis/G/V/namespaces/NS/expand-vm-spec
    let segs: Vec<&str> = path.split('/').collect();
    if segs.get(2) == Some(&crate::upload::GROUP) {
        // /apis/upload.cdi.kubevirt.io/v1beta1/namespaces/NS/uploadtokenrequests
        if segs.len() != 7 || segs[4] != "namespaces" || segs[6] != "uploadtokenrequests" {
            return Failure::unauthorized(format!("unknown api endpoint: {path}")).into_response();
        }
        let ask = crate::authz::Ask {
            group: crate::upload::GROUP,
            verb: "create",
            resource: "uploadtokenrequests",
            subresource: "",
            namespace: segs[5],
            name: "",
        };
        return match crate::authz::check(&app.client, &caller, &ask).await {
            Ok(()) => next.run(req).await,
            Err(crate::Error::Forbidden(reason)) => Failure::unauthorized(reason).into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "access review failed");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        };
    }
    let base_resource = segs.len() == 7 && segs[4] == "namespaces";
    if !base_resource && (segs.len() < 9 || segs[4] != "namespaces") {
        return Failure::unauthorized(format!("unknown api endpoint: {path}")).into_response();
    }
    let resource = segs[6];
    let known = if base_resource {
        resource == "expand-vm-spec"
    } else {
        matches!(resource, "virtualmachineinstances" | "virtualmachines")
    };
    if !known {
        return Failure::unauthorized(format!("unknown resource type {resource}")).into_response();
    }
    let mut sub: Vec<&str> = segs.get(8..).map(<[&str]>::to_vec).unwrap_or_default();
    if sub.first() == Some(&"portforward") {
        sub.truncate(1);
    }
    let subresource = sub.join("/");
    let verb = match *req.method() {
        axum::http::Method::PUT => "update",
        axum::http::Method::POST => "create",
        axum::http::Method::PATCH => "patch",
        axum::http::Method::DELETE => "delete",
        _ => "get",
    };
    let ask = crate::authz::Ask {
        group: crate::authz::GROUP,
        verb,
        resource,
        subresource: &subresource,
        namespace: segs[5],
        name: segs.get(7).copied().unwrap_or_default(),
    };
    match crate::authz::check(&app.client, &caller, &ask).await {
        Ok(()) => {}
        Err(crate::Error::Forbidden(reason)) => return Failure::unauthorized(reason).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "access review failed");
            return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

type Op = Path<(String, String, String, String)>;

async fn vm_op(State(app): State<Arc<App>>, Path((_, ns, name, op)): Op, body: Bytes) -> Reply {
    match op.as_str() {
        "start" => crate::vm::start(&app.client, &ns, &name, &body).await,
        "stop" => crate::vm::stop(&app.client, &ns, &name, &body).await,
        "restart" => crate::vm::restart(&app.client, &ns, &name, &body).await,
        "migrate" => crate::vm::migrate(&app.client, &ns, &name, &body).await,
        "memorydump" | "removememorydump" => crate::vm::memory_dump(&app.client, &ns, &name, &op).await,
        "addvolume" | "removevolume" => {
            crate::volumes::handle(
                &app.client,
                &ns,
                "virtualmachines",
                &name,
                op == "addvolume",
                &body,
            )
            .await
        }
        _ => Err(Failure::bad_request(format!("unknown api endpoint: {op}"))),
    }
}

async fn vmi_put(State(app): State<Arc<App>>, Path((_, ns, name, op)): Op, body: Bytes) -> Reply {
    if matches!(op.as_str(), "addvolume" | "removevolume") {
        return crate::volumes::handle(
            &app.client,
            &ns,
            "virtualmachineinstances",
            &name,
            op == "addvolume",
            &body,
        )
        .await;
    }
    crate::vmi::command(&app, &ns, &name, &op, &body).await
}

async fn vmi_get(State(app): State<Arc<App>>, Path((_, ns, name, op)): Op, req: Request) -> Reply {
    match op.as_str() {
        "guestosinfo" | "userlist" | "filesystemlist" => crate::vmi::guest(&app, &ns, &name, &op).await,
        "console" | "vnc" => crate::stream::open(&app, &ns, &name, &op, req).await,
        _ => Err(Failure::bad_request(format!("unknown api endpoint: {op}"))),
    }
}

type Params = Path<std::collections::HashMap<String, String>>;
type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn portforward(
    app: &App,
    resource: &str,
    p: &std::collections::HashMap<String, String>,
    ws: Upgrade,
) -> Reply {
    let at = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    crate::portforward::open(
        app,
        at("namespace"),
        resource,
        at("name"),
        at("port"),
        p.get("protocol").map(String::as_str),
        ws,
    )
    .await
}

async fn portforward_vmi(State(app): State<Arc<App>>, Path(p): Params, ws: Upgrade) -> Reply {
    portforward(&app, "virtualmachineinstances", &p, ws).await
}

async fn portforward_vm(State(app): State<Arc<App>>, Path(p): Params, ws: Upgrade) -> Reply {
    portforward(&app, "virtualmachines", &p, ws).await
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    let base = "/apis/subresources.kubevirt.io/{version}";
    let mut r = Router::new();
    for (path, kind) in crate::webhooks::PATHS {
        r = r.route(
            path,
            axum::routing::post(move |state: State<Arc<App>>, body: Bytes| {
                crate::webhooks::review(state, kind, body)
            }),
        );
    }
    r
        .route("/healthz", get(healthz))
        .route(&format!("{base}/healthz"), get(healthz))
        .route(&format!("{base}/guestfs"), get(guestfs))
        .route(
            &format!("{base}/version"),
            get(|| async { axum::Json(version_info()) }),
        )
        .route(
            base,
            get(|Path(version): Path<String>| async move {
                if VERSIONS.contains(&version.as_str()) {
                    axum::Json(resource_list(&version)).into_response()
                } else {
                    axum::http::StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route(
            "/apis/subresources.kubevirt.io",
            get(|| async {
                let versions: Vec<Value> = VERSIONS
                    .iter()
                    .map(|v| json!({"groupVersion": format!("subresources.kubevirt.io/{v}"), "version": v}))
                    .collect();
                axum::Json(json!({"kind": "APIGroup", "apiVersion": "v1", "name": "subresources.kubevirt.io",
                    "versions": versions, "preferredVersion": versions[0]}))
            }),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/virtualmachines/{{name}}/expand-spec"),
            get(|State(app): State<Arc<App>>, Path((_, ns, name)): Path<(String, String, String)>| async move {
                crate::expand::stored(&app, &ns, &name).await
            }),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/expand-vm-spec"),
            put(|State(app): State<Arc<App>>, Path((_, ns)): Path<(String, String)>, body: Bytes| async move {
                crate::expand::posted(&app, &ns, &body).await
            }),
        )
        .route(&format!("{base}/namespaces/{{namespace}}/virtualmachines/{{name}}/{{op}}"), put(vm_op))
        .route(&format!("{base}/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/{{op}}"), put(vmi_put).get(vmi_get))
        .route(
            &format!("{base}/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/vnc/screenshot"),
            get(|State(app): State<Arc<App>>, Path((_, ns, name)): Path<(String, String, String)>| async move {
                crate::vmi::screenshot(&app, &ns, &name).await
            }),
        )
        .route(&format!("{base}/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/portforward/{{port}}"), get(portforward_vmi))
        .route(
            &format!("{base}/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/portforward/{{port}}/{{protocol}}"),
            get(portforward_vmi),
        )
        .route(&format!("{base}/namespaces/{{namespace}}/virtualmachines/{{name}}/portforward/{{port}}"), get(portforward_vm))
        .route(
            &format!("{base}/namespaces/{{namespace}}/virtualmachines/{{name}}/portforward/{{port}}/{{protocol}}"),
            get(portforward_vm),
        )
        .route(
            "/apis/upload.cdi.kubevirt.io",
            get(|| async { axum::Json(crate::upload::discovery(false)) }),
        )
        .route(
            "/apis/upload.cdi.kubevirt.io/v1beta1",
            get(|| async { axum::Json(crate::upload::discovery(true)) }),
        )
        .route(
            "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/{namespace}/uploadtokenrequests",
            axum::routing::post(|State(app): State<Arc<App>>, Path(ns): Path<String>, body: Bytes| async move {
                match crate::upload::create(app.tokens.as_deref(), &ns, &body) {
                    Ok(v) => (axum::http::StatusCode::CREATED, axum::Json(v)).into_response(),
                    Err(f) => f.into_response(),
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Serves `app` on `tcp` with the serving certificate `cert_pem`/`key_pem` until the task is dropped.
///
/// # Errors
/// The certificates do not parse or the listener fails.
pub async fn serve(
    tcp: tokio::net::TcpListener,
    app: Arc<App>,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), crate::Error> {
    let tls = app.request_header.server_config(cert_pem, key_pem)?;
    let listener =
        handler::tls::listen(tcp, tls, |_| true).map_err(|e| crate::Error::Setup(e.to_string()))?;
    tracing::info!(addr = %listener.local_addr_now(), "virt-api serving");
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<Peer>(),
    )
    .await
    .map_err(|e| crate::Error::Setup(e.to_string()))
}
