//! A TLS listener for axum: connections are accepted and handshaken on tasks of their own (a slow client holds up
//! nobody), and each connection carries its peer — address and client-certificate CN — as axum's connect info. A
//! filter may drop connections whose peer it does not want before any request is read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The common name of its certificate, if it presented one.
    pub cn: Option<String>,
}

/// TLS connections that passed the handshake and the filter.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, Peer)>,
    addr: SocketAddr,
}

impl TlsListener {
    /// The address listened on.
    #[must_use]
    pub fn local_addr_now(&self) -> SocketAddr {
        self.addr
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.addr,
            cn: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Accepts on `tcp` with `tls`, passing on the connections whose peer `keep` accepts.
///
/// # Errors
/// The listener has no local address.
pub fn listen(
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    keep: impl Fn(&Peer) -> bool + Send + Sync + 'static,
) -> std::io::Result<TlsListener> {
    let addr = tcp.local_addr()?;
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let keep = Arc::new(keep);
    tokio::spawn(async move {
        loop {
            let (conn, addr) = match tcp.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, tx, keep) = (acceptor.clone(), tx.clone(), keep.clone());
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(conn)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
                let cn = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| crate::certs::common_name(c));
                let peer = Peer { addr, cn };
                if keep(&peer) {
                    let _ = tx.send((stream, peer)).await;
                }
            });
        }
    });
    Ok(TlsListener { rx, addr })
}
