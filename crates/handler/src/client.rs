//! The caller's side of the handler endpoint (virt-api's, and tests'): finds a node's handler from its
//! [`crate::node::ENDPOINT`] annotation, connects with the client certificate over TLS (verifying the handler's
//! certificate against the KubeVirt CA for [`SERVER_NAME`]), and makes plain requests or opens websocket streams.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::certs::{self, CertError, SERVER_NAME};
use crate::stream::SUBPROTOCOL;

/// Why a call to a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The certificates are unusable.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// The node publishes no endpoint (its handler has not started, or is too old).
    #[error("node {0} has no handler endpoint")]
    NoEndpoint(String),
    /// Reading the node failed.
    #[error("reading node {0}: {1}")]
    Node(String, #[source] kube::Error),
    /// Connecting or the TLS handshake failed.
    #[error("connecting to the handler at {0}: {1}")]
    Connect(String, #[source] std::io::Error),
    /// The HTTP exchange failed.
    #[error("talking to the handler: {0}")]
    Http(String),
}

/// A handler that would not upgrade: its HTTP status and body (502 when it could not be reached).
#[derive(Debug, thiserror::Error)]
#[error("{status}: {body}")]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// The body (a Status object from our handler).
    pub body: String,
}

/// A TLS stream to a handler.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A client of handler endpoints.
#[derive(Clone)]
pub struct HandlerClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for HandlerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerClient").finish_non_exhaustive()
    }
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl HandlerClient {
    /// A client presenting `id` (the `kubevirt-virt-handler-certs` identity).
    ///
    /// # Errors
    /// The material does not parse.
    pub fn new(id: &certs::Identity) -> Result<Self, ClientError> {
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(certs::client_config(id)?),
        })
    }

    /// A client with the identity read from `namespace`.
    ///
    /// # Errors
    /// The objects are missing or unusable.
    pub async fn from_cluster(client: &kube::Client, namespace: &str) -> Result<Self, ClientError> {
        Self::new(&certs::load(client, namespace, certs::CLIENT_SECRET).await?)
    }

    /// The handler endpoint (`host:port`) of `node`.
    ///
    /// # Errors
    /// The node cannot be read or publishes no endpoint.
    pub async fn endpoint_of(client: &kube::Client, node: &str) -> Result<String, ClientError> {
        let nodes: Api<Node> = Api::all(client.clone());
        let n = nodes
            .get_opt(node)
            .await
            .map_err(|e| ClientError::Node(node.into(), e))?
            .ok_or_else(|| ClientError::NoEndpoint(node.into()))?;
        n.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::node::ENDPOINT))
            .cloned()
            .ok_or_else(|| ClientError::NoEndpoint(node.into()))
    }

    async fn connect(&self, endpoint: &str) -> Result<Tls, ClientError> {
        let err = |e| ClientError::Connect(endpoint.into(), e);
        let tcp = TcpStream::connect(endpoint).await.map_err(err)?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME)
            .map_err(|e| ClientError::Http(e.to_string()))?;
        self.tls.connect(name, tcp).await.map_err(err)
    }

    /// `method path` with `body` on the handler at `endpoint`.
    ///
    /// # Errors
    /// Connecting or the exchange failed (an HTTP error status is an [`Answer`]).
    pub async fn request(
        &self,
        endpoint: &str,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let tls = self.connect(endpoint).await?;
        let http = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| http(&e))?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, SERVER_NAME)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| http(&e))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| http(&e))?.to_bytes();
        Ok(Answer { status, body })
    }

    /// Asks the handler at `endpoint` to upgrade `path` to a websocket and hands back the raw upgraded connection
    /// (the handshake done, frames untouched), for relays that pass another client's frames through.
    ///
    /// # Errors
    /// Connecting failed, or the handler answered without upgrading: its status and body.
    pub async fn upgrade(&self, endpoint: &str, path: &str) -> Result<hyper::upgrade::Upgraded, Refused> {
        let tls = self.connect(endpoint).await.map_err(|e| Refused {
            status: 502,
            body: e.to_string(),
        })?;
        let fail = |e: &dyn std::fmt::Display| Refused {
            status: 502,
            body: format!("talking to the handler: {e}"),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(path)
            .header(http::header::HOST, SERVER_NAME)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", key)
            .header("Sec-WebSocket-Protocol", SUBPROTOCOL)
            .body(Full::new(Bytes::new()))
            .map_err(|e| fail(&e))?;
        let mut resp = sender.send_request(req).await.map_err(|e| fail(&e))?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(Refused {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        hyper::upgrade::on(&mut resp).await.map_err(|e| fail(&e))
    }

    /// Opens the websocket stream at `path` (`…/console`, `…/vnc`) on the handler at `endpoint`.
    ///
    /// # Errors
    /// Connecting or the upgrade failed (an HTTP error answer names its status).
    pub async fn websocket(&self, endpoint: &str, path: &str) -> Result<WebSocketStream<Tls>, ClientError> {
        let tls = self.connect(endpoint).await?;
        let mut req = format!("wss://{SERVER_NAME}{path}")
            .into_client_request()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            http::HeaderValue::from_static(SUBPROTOCOL),
        );
        let (ws, _) = tokio_tungstenite::client_async(req, tls)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(ws)
    }
}
