//! The handler's HTTPS endpoint (upstream's port 8186), what virt-api proxies to on the VMI's node, with upstream's
//! paths under `/v1/namespaces/{namespace}/virtualmachineinstances/{name}/`: `console` and `vnc` (websockets onto
//! the launcher's serial and VNC sockets, see [`crate::stream`]), `guestosinfo`, `userlist`, `filesystemlist`
//! (guest agent data, see [`crate::guestinfo`]) and `pause`, `unpause`, `softreboot`, `reset` (launcher
//! commands); `/healthz`. Only virt-api may call: TLS with a client certificate from the KubeVirt CA whose CN is
//! [`CLIENT_CN`]; others fail the handshake or are dropped right after it. The bound address is published on the
//! Node ([`crate::node::ENDPOINT`]). Errors are Kubernetes `Status` objects.

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
use tokio::net::{TcpListener, UnixStream};

use crate::certs::{self, CLIENT_CN};
use crate::guestinfo;
use crate::stream::{self, Sessions};
use crate::vmi::Ctx;
use launcher_protocol::{Command, Launcher, LauncherError, Screenshot};

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

    async fn command(&self, ns: &str, name: &str, command: Command) -> Reply {
        let launcher = self.launcher(ns, name).await?;
        launcher.call(command, CALL).await?;
        Ok(StatusCode::OK.into_response())
    }

    async fn freeze(&self, ns: &str, name: &str, body: &[u8]) -> Reply {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let timeout = v
            .get("unfreezeTimeout")
            .and_then(Value::as_str)
            .and_then(go_duration_secs)
            .ok_or_else(|| {
                Failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Unfreeze timeout in freeze request is not set".into(),
                )
            })?;
        let launcher = self.launcher(ns, name).await?;
        launcher
            .call(
                Command::Freeze {
                    unfreeze_timeout_seconds: timeout,
                },
                CALL,
            )
            .await?;
        Ok(StatusCode::OK.into_response())
    }

    async fn screenshot(&self, ns: &str, name: &str) -> Reply {
        let launcher = self.launcher(ns, name).await?;
        let shot: Screenshot = launcher.request(Command::GetScreenshot, CALL).await?;
        let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &shot.png)
            .ok()
            .ok_or_else(|| {
                Failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "no screenshot".into(),
                )
            })?;
        Ok(([(axum::http::header::CONTENT_TYPE, "image/png")], png).into_response())
    }

    async fn agent(&self, ns: &str, name: &str, what: &str) -> Reply {
        let launcher = self.launcher(ns, name).await?;
        let call = |c: Command| {
            let l = launcher.clone();
            async move { l.call(c, CALL).await }
        };
        let body = match what {
            "guestosinfo" => {
                let info = launcher.guest_info(CALL).await?;
                if !info.agent_connected() {
                    return Err(Failure(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!("VMI {ns}/{name} has no guest agent connected"),
                    ));
                }
                let users = call(Command::GetUsers).await.unwrap_or(Value::Null);
                let fs = call(Command::GetFilesystems).await.unwrap_or(Value::Null);
                guestinfo::agent_info(&serde_json::to_value(&info).unwrap_or_default(), &users, &fs)
            }
            "userlist" => guestinfo::user_list(&call(Command::GetUsers).await?),
            _ => guestinfo::filesystem_list(&call(Command::GetFilesystems).await?),
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
    router = router
        .route(
            &r("freeze"),
            put(
                |State(ep): State<Arc<Endpoint>>, Path((ns, name)): Vmi, body: axum::body::Bytes| async move {
                    ep.freeze(&ns, &name, &body).await
                },
            ),
        )
        .route(
            &r("vnc/screenshot"),
            get(
                |State(ep): State<Arc<Endpoint>>, Path((ns, name)): Vmi| async move {
                    ep.screenshot(&ns, &name).await
                },
            ),
        );
    for (op, command) in [
        ("pause", Command::Pause),
        ("unpause", Command::Unpause),
        ("softreboot", Command::SoftReboot),
        ("reset", Command::Reset),
        ("unfreeze", Command::Unfreeze),
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

/// Whole seconds of a Go duration (`5m0s`, `1h`, `90s`, `1500ms`), as metav1.Duration writes them.
fn go_duration_secs(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(total.ceil() as u64)
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
    let only_virt_api = |peer: &crate::tls::Peer| {
        let ok = peer.cn.as_deref() == Some(CLIENT_CN);
        if !ok {
            tracing::warn!(peer = %peer.addr, cn = ?peer.cn, "refusing a client certificate that is not virt-api's");
        }
        ok
    };
    let listener = match crate::tls::listen(tcp, tls, only_virt_api) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the handler endpoint cannot serve");
            return;
        }
    };
    tracing::info!(addr = %listener.local_addr_now(), "handler endpoint serving");
    if let Err(e) = axum::serve(listener, router(ep)).await {
        tracing::error!(error = %e, "the handler endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration_secs;

    #[test]
    fn go_durations_parse() {
        assert_eq!(go_duration_secs("5m0s"), Some(300));
        assert_eq!(go_duration_secs("1h2m3s"), Some(3723));
        assert_eq!(go_duration_secs("1500ms"), Some(2));
        assert_eq!(go_duration_secs(""), None);
        assert_eq!(go_duration_secs("5 minutes"), None);
    }
}
