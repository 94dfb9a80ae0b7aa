//! The cluster as virtctl sees it: a kube-rs client from the kubeconfig (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`
//! or in-cluster, with kubectl's `--context`), and upstream's requests on `subresources.kubevirt.io`: PUTs with an
//! options body, GETs, and websockets with the `plain.kubevirt.io` subprotocol (kube-rs' own `connect` insists on
//! the Kubernetes channel protocols, so the upgrade is made here on the client's connection).

use http::{Method, Request};
use http_body_util::BodyExt as _;
use tokio_tungstenite::WebSocketStream;

/// Why a request failed: the server's Status message, or what went wrong on the way.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The server answered with an error.
    #[error("{0}")]
    Server(String),
    /// No kubeconfig or no connection.
    #[error("{0}")]
    Client(String),
}

/// The websocket virtctl streams over.
pub(crate) type Stream = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Where and as whom.
pub(crate) struct Cluster {
    /// The client.
    pub(crate) client: kube::Client,
    /// The namespace (`-n`, else the context's, else `default`).
    pub(crate) namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects as kubectl would.
    ///
    /// # Errors
    /// No usable kubeconfig.
    pub(crate) async fn connect(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Self, CallError> {
        let (client, default_namespace) =
            kube_support::client(kubeconfig, context)
                .await
                .map_err(|e| match e {
                    kube_support::Error::Kubeconfig { .. } => CallError::Client(e.to_string()),
                    other => CallError::Client(format!("no usable kubeconfig: {other}")),
                })?;
        let namespace = namespace.map_or(default_namespace, str::to_string);
        Ok(Self { client, namespace })
    }

    /// The path of `sub` of `resource` `name` (`virtualmachines`/`virtualmachineinstances`).
    #[must_use]
    pub(crate) fn path(&self, resource: &str, name: &str, sub: &str) -> String {
        format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{}/{resource}/{name}/{sub}",
            self.namespace
        )
    }

    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), CallError> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::from(body))
            .map_err(|e| CallError::Client(e.to_string()))?;
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| CallError::Client(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError::Client(e.to_string()))?
            .to_bytes();
        Ok((status, bytes.to_vec()))
    }

    /// `PUT path` with `body`; an error status becomes the server's message.
    ///
    /// # Errors
    /// [`CallError`].
    pub(crate) async fn put(&self, path: &str, body: &serde_json::Value) -> Result<(), CallError> {
        let (status, bytes) = self
            .send(Method::PUT, path, body.to_string().into_bytes())
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(CallError::Server(message(status, &bytes)))
        }
    }

    /// `PUT path` with `body`: the answer's body, or the server's message.
    ///
    /// # Errors
    /// [`CallError`].
    pub(crate) async fn put_for_body(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let (status, bytes) = self.send(Method::PUT, path, body).await?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(CallError::Server(message(status, &bytes)))
        }
    }

    /// `POST path` with `body`: the answer's body, or the server's message.
    ///
    /// # Errors
    /// [`CallError`].
    pub(crate) async fn post_for_body(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let (status, bytes) = self.send(Method::POST, path, body).await?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(CallError::Server(message(status, &bytes)))
        }
    }

    /// `PUT path` with `body`; an error keeps the HTTP status (0: no answer).
    ///
    /// # Errors
    /// The status and [`CallError`].
    pub(crate) async fn put_status(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(), (u16, CallError)> {
        let (status, bytes) = self
            .send(Method::PUT, path, body.to_string().into_bytes())
            .await
            .map_err(|e| (0, e))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err((status, CallError::Server(message(status, &bytes))))
        }
    }

    /// `GET path`: the body, or the server's message.
    ///
    /// # Errors
    /// [`CallError`].
    pub(crate) async fn get(&self, path: &str) -> Result<Vec<u8>, CallError> {
        let (status, bytes) = self.send(Method::GET, path, Vec::new()).await?;
        if status == 200 {
            Ok(bytes)
        } else {
            Err(CallError::Server(message(status, &bytes)))
        }
    }

    /// Opens the websocket at `path`. Errors carry the HTTP status (virtctl console retries on 400).
    ///
    /// # Errors
    /// The status and message of a refused upgrade, or a client failure (status 0).
    pub(crate) async fn websocket(&self, path: &str) -> Result<Stream, (u16, CallError)> {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", &key)
            .header("Sec-WebSocket-Protocol", "plain.kubevirt.io")
            .body(kube::client::Body::empty())
            .map_err(|e| (0, CallError::Client(e.to_string())))?;
        let resp = self
            .client
            .send(req)
            .await
            .map_err(|e| (0, CallError::Client(e.to_string())))?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err((status, CallError::Server(message(status, &bytes))));
        }
        let accept = resp
            .headers()
            .get("sec-websocket-accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if accept != tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()) {
            return Err((
                0,
                CallError::Client("the server's websocket handshake does not match".into()),
            ));
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| (0, CallError::Client(e.to_string())))?;
        Ok(WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await)
    }
}

/// The message of an error answer: a Status's `message`, else the body as text.
fn message(status: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").and_then(serde_json::Value::as_str)
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        format!("the server answered {status}")
    } else {
        text
    }
}
