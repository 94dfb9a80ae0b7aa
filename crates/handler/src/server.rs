//! The handler's HTTPS endpoint (upstream's port 8186), what virt-api proxies to on the VMI's node, with upstream's
//! paths under `/v1/namespaces/{namespace}/virtualmachineinstances/{name}/`: `console` and `vnc` (websockets onto
//! the launcher's serial and VNC sockets, see [`crate::stream`]), `guestosinfo`, `userlist`, `filesystemlist`
//! (guest agent data, see [`crate::guestinfo`]) and `pause`, `unpause`, `softreboot`, `reset` (launcher
//! commands); `/healthz`. Only virt-api may call: TLS with a client certificate from the KubeVirt CA whose CN is
//! [`CLIENT_CN`]; others fail the handshake or are dropped right after it. The bound address is published on the
//! Node ([`crate::node::ENDPOINT`]). Errors are Kubernetes `Status` objects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use kube::api::Api;
use kubevirt_api::v1::VirtualMachineInstance;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::mpsc;

use crate::certs::{self, CLIENT_CN};
use crate::guestinfo;
use crate::launcher::{Launcher, LauncherError};
use crate::stream::{self, Sessions};
use crate::vmi::Ctx;

/// How long a guest agent or launcher call may take.
const CALL: Duration = Duration::from_secs(10);

/// What the endpoint serves.
#[derive(Debug)]
pub struct Endpoint {
    ctx: Arc<Ctx>,
    sessions: Arc<Sessions>,
    keepalive: Duration,
}

/// A failed request: the HTTP code, the Status reason and the message.
#[derive(Debug)]
struct Failure(StatusCode, &'static str, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let Self(code, reason, message) = self;
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()});
        (code, axum::Json(body)).into_response()
    }
}

impl From<LauncherError> for Failure {
    fn from(e: LauncherError) -> Self {
        match e {
            LauncherError::Refused(m) => Self(StatusCode::CONFLICT, "Conflict", m),
            LauncherError::Timeout(_) => Self(StatusCode::GATEWAY_TIMEOUT, "Timeout", e.to_string()),
            e => Self(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                e.to_string(),
            ),
        }
    }
}

type Reply = Result<Response, Failure>;

impl Endpoint {
    /// An endpoint over the handler loop's state; streams are pinged every `keepalive`.
    #[must_use]
    pub fn new(ctx: Arc<Ctx>, keepalive: Duration) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            sessions: Arc::default(),
            keepalive,
        })
    }

    /// The VMI, if it runs on this node.
    async fn vmi(&self, ns: &str, name: &str) -> Result<(VirtualMachineInstance, String), Failure> {
        let api: Api<VirtualMachineInstance> = Api::namespaced(self.ctx.client.clone(), ns);
        let not_found = || {
            Failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "virtualmachineinstance {ns}/{name} not found on node {}",
                    self.ctx.node_name
                ),
            )
        };
        let vmi = api
            .get_opt(name)
            .await
            .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()))?
            .ok_or_else(not_found)?;
        let on_node =
            vmi.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.ctx.node_name.as_str());
        let uid = vmi.metadata.uid.clone().unwrap_or_default();
        if !on_node || uid.is_empty() {
            return Err(not_found());
        }
        Ok((vmi, uid))
    }

    async fn launcher(&self, ns: &str, name: &str) -> Result<Arc<Launcher>, Failure> {
        let (vmi, _) = self.vmi(ns, name).await?;
        self.ctx.launcher(&vmi).await.ok_or_else(|| {
            Failure(
                StatusCode::CONFLICT,
                "Conflict",
                format!("VMI {ns}/{name} is not running: its launcher cannot be reached"),
            )
        })
    }

    async fn stream(&self, ns: &str, name: &str, kind: &str, preserve: bool, ws: WebSocketUpgrade) -> Reply {
        let (vmi, uid) = self.vmi(ns, name).await?;
        let running = matches!(
            vmi.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Running" | "Scheduled")
        );
        if !running {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("VMI {ns}/{name} is not running"),
            ));
        }
        let file = if kind == "console" {
            "serial.sock"
        } else {
            "vnc.sock"
        };
        let Some(claim) = self.sessions.claim(&format!("{uid}/{kind}"), preserve) else {
            return Err(Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!("a {kind} session of VMI {ns}/{name} is open and preserveSession was asked"),
            ));
        };
        let path = self.ctx.launchers_dir.join(&uid).join(file);
        let sock = UnixStream::connect(&path).await.map_err(|e| {
            Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!("the {kind} of VMI {ns}/{name} cannot be reached: {e}"),
            )
        })?;
        let keepalive = self.keepalive;
        let (kind, name) = (kind.to_string(), format!("{ns}/{name}"));
        Ok(ws
            .protocols([stream::SUBPROTOCOL])
            .on_upgrade(move |socket| async move {
                tracing::info!(vmi = %name, kind, "stream opened");
                let end = stream::splice(socket, sock, claim, keepalive).await;
                tracing::info!(vmi = %name, kind, ?end, "stream closed");
            }))
    }

    async fn command(&self, ns: &str, name: &str, command: &str) -> Reply {
        let launcher = self.launcher(ns, name).await?;
        launcher.call(json!(command), CALL).await?;
        Ok(StatusCode::OK.into_response())
    }

    async fn agent(&self, ns: &str, name: &str, what: &str) -> Reply {
        let launcher = self.launcher(ns, name).await?;
        let call = |c: &'static str| {
            let l = launcher.clone();
            async move { l.call(json!(c), CALL).await }
        };
        let body = match what {
            "guestosinfo" => {
                let info = call("GetGuestInfo").await?;
                if info.get("agent").is_none_or(Value::is_null) {
                    return Err(Failure(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!("VMI {ns}/{name} has no guest agent connected"),
                    ));
                }
                let users = call("GetUsers").await.unwrap_or(Value::Null);
                let fs = call("GetFilesystems").await.unwrap_or(Value::Null);
                guestinfo::agent_info(&info, &users, &fs)
            }
            "userlist" => guestinfo::user_list(&call("GetUsers").await?),
            _ => guestinfo::filesystem_list(&call("GetFilesystems").await?),
        };
        Ok(axum::Json(body).into_response())
    }
}

type Vmi = Path<(String, String)>;

#[derive(Debug, serde::Deserialize)]
struct VncQuery {
    #[serde(rename = "preserveSession", default)]
    preserve_session: Option<String>,
}

/// The endpoint's routes.
pub fn router(ep: Arc<Endpoint>) -> Router {
    const BASE: &str = "/v1/namespaces/{namespace}/virtualmachineinstances/{name}";
    let r = |op: &str| format!("{BASE}/{op}");
    let mut router = Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route(
            &r("console"),
            get(
                |State(ep): State<Arc<Endpoint>>, Path((ns, name)): Vmi, ws: WebSocketUpgrade| async move {
                    ep.stream(&ns, &name, "console", false, ws).await
                },
            ),
        )
        .route(
            &r("vnc"),
            get(
                |State(ep): State<Arc<Endpoint>>,
                 Path((ns, name)): Vmi,
                 q: Query<VncQuery>,
                 ws: WebSocketUpgrade| async move {
                    let preserve = q.preserve_session.as_deref() == Some("true");
                    ep.stream(&ns, &name, "vnc", preserve, ws).await
                },
            ),
        );
    for (op, command) in [
        ("pause", "Pause"),
        ("unpause", "Unpause"),
        ("softreboot", "SoftReboot"),
        ("reset", "Reset"),
    ] {
        router = router.route(
            &r(op),
            put(
                move |State(ep): State<Arc<Endpoint>>, Path((ns, name)): Vmi| async move {
                    ep.command(&ns, &name, command).await
                },
            ),
        );
    }
    for op in ["guestosinfo", "userlist", "filesystemlist"] {
        router = router.route(
            &r(op),
            get(
                move |State(ep): State<Arc<Endpoint>>, Path((ns, name)): Vmi| async move {
                    ep.agent(&ns, &name, op).await
                },
            ),
        );
    }
    router.with_state(ep)
}

/// TLS connections that passed the handshake with virt-api's client certificate.
struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Accepts on `tcp`, handshakes (each connection on its own task) and passes on the connections of virt-api.
fn accept_loop(tcp: TcpListener, tls: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
    let addr = tcp.local_addr()?;
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let (conn, peer) = match tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let cn = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| certs::common_name(c));
                if cn.as_deref() != Some(CLIENT_CN) {
                    tracing::warn!(%peer, ?cn, "refusing a client certificate that is not virt-api's");
                    return;
                }
                let _ = tx.send((stream, peer)).await;
            });
        }
    });
    Ok(TlsListener { rx, addr })
}

/// Serves `ep` on `tcp` once the handler's certificates can be read from `namespace` (retried until they exist),
/// until the task is dropped.
pub async fn run(tcp: TcpListener, ep: Arc<Endpoint>, namespace: String) {
    let mut warned = false;
    let tls = loop {
        let loaded = certs::load(&ep.ctx.client, &namespace, certs::SERVER_SECRET).await;
        match loaded.and_then(|id| certs::server_config(&id)) {
            Ok(tls) => break tls,
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "the handler endpoint waits for its certificates");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let listener = match accept_loop(tcp, tls) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the handler endpoint cannot serve");
            return;
        }
    };
    tracing::info!(addr = %listener.addr, "handler endpoint serving");
    if let Err(e) = axum::serve(listener, router(ep)).await {
        tracing::error!(error = %e, "the handler endpoint stopped");
    }
}
