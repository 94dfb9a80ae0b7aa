//! Cluster DNS in box mode, where no CoreDNS runs: each node serves the cluster zone ([`zone`]) from its caches of
//! Services and Endpoints on its pod network's gateway address, port 53 (UDP and TCP) — the name server the pod
//! runtime writes into its pods' `resolv.conf`, which the launcher's DHCP server hands to guests — and forwards
//! every other name to the host's resolvers (or `--dns-upstream`). The wire format is `hickory-proto`'s; the
//! dispatch is ours because the answers come from a live cache, not a zone file (`hickory-server`'s authorities
//! would need the whole cache copied into records on every change).

mod zone;

#[cfg(test)]
mod zone_tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long an upstream resolver gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client may stay idle between questions.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What a node's DNS server serves.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The address it listens on (port 53): the pod network's gateway.
    pub(crate) addr: Ipv4Addr,
    /// The cluster domain (`cluster.local`).
    pub(crate) domain: String,
    /// Where other names go.
    pub(crate) upstream: Vec<SocketAddr>,
}

/// The host's resolvers (its `/etc/resolv.conf`), except `own`.
pub(crate) fn host_resolvers(own: Ipv4Addr) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    podruntime::dns::ResolvConf::parse(&text)
        .nameservers
        .iter()
        .filter_map(|n| n.parse::<std::net::IpAddr>().ok())
        .filter(|ip| *ip != std::net::IpAddr::V4(own))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

struct Server {
    settings: Settings,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
}

impl Server {
    /// The reply to the message `query`, or `None` when there is nothing to say (not a question, no answer).
    async fn reply(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let Ok(msg) = Message::from_vec(query) else {
            // The id, when there is one, gets a FORMERR.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        };
        if msg.message_type() != MessageType::Query {
            return None;
        }
        if msg.op_code() != OpCode::Query || msg.queries().len() != 1 {
            let code = if msg.op_code() == OpCode::Query {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            return Message::error_msg(msg.id(), msg.op_code(), code).to_vec().ok();
        }
        let q = msg.queries()[0].clone();
        let qname = q.name().to_lowercase().to_ascii();
        let qname = qname.trim_end_matches('.');
        let (code, answers) = match self.lookup(qname, q.query_type()) {
            zone::Answer::NotOurs => {
                if let Some(r) = self.forward(query, tcp).await {
                    return Some(r);
                }
                tracing::debug!(name = qname, "no upstream resolver answered");
                return Message::error_msg(msg.id(), OpCode::Query, ResponseCode::ServFail)
                    .to_vec()
                    .ok();
            }
            zone::Answer::NoSuchName => (ResponseCode::NXDomain, Vec::new()),
            zone::Answer::Records(r) => (ResponseCode::NoError, r),
        };
        let mut out = Message::new();
        out.set_id(msg.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_authoritative(true)
            .set_recursion_desired(msg.recursion_desired())
            .set_recursion_available(true)
            .set_response_code(code)
            .add_query(q);
        if answers.is_empty() {
            out.add_name_servers(zone::soa(&self.settings.domain));
        }
        out.add_answers(answers);
        if msg.extensions().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            out.set_edns(edns);
        }
        let bytes = out.to_vec().ok()?;
        let limit = if msg.extensions().is_some() {
            usize::from(msg.max_payload().max(512))
        } else {
            512
        };
        if tcp || bytes.len() <= limit {
            return Some(bytes);
        }
        // Too big for the datagram: the client asks again over TCP.
        out.take_answers();
        out.set_truncated(true);
        out.to_vec().ok()
    }

    fn lookup(&self, qname: &str, qtype: hickory_proto::rr::RecordType) -> zone::Answer {
        let service = |ns: &str, name: &str| self.services.get(&ObjectRef::new(name).within(ns));
        let endpoints = |ns: &str, name: &str| self.endpoints.get(&ObjectRef::new(name).within(ns));
        let cluster = zone::Cluster {
            domain: &self.settings.domain,
            service: &service,
            endpoints: &endpoints,
        };
        zone::lookup(&cluster, qname, qtype)
    }

    /// The first upstream resolver's answer to `query`, asked the way the client asked.
    async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        for up in &self.settings.upstream {
            let asked = if tcp {
                forward_tcp(*up, query).await
            } else {
                forward_udp(*up, query).await
            };
            match asked {
                Ok(r) => return Some(r),
                Err(e) => tracing::debug!(upstream = %up, error = %e, "upstream resolver"),
            }
        }
        None
    }
}

async fn forward_udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if up.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let n = sock.recv(&mut buf).await?;
            if n >= 2 && buf[..2] == query[..2] {
                return Ok(buf[..n].to_vec());
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

async fn forward_tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut s = tokio::net::TcpStream::connect(up).await?;
        write_framed(&mut s, query).await?;
        read_framed(&mut s).await
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

async fn read_framed(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_framed(s: &mut tokio::net::TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::Error::other("message too long"))?;
    s.write_all(&[&len.to_be_bytes()[..], msg].concat()).await
}

/// A socket on `addr` even before the address exists (the pod bridge, and its gateway address, appear with the
/// first pod).
fn socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(socket2::Domain::for_address(addr), ty, None)?;
    s.set_freebind_v4(true)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Serves the cluster zone on `settings.addr:53` until the task is aborted.
///
/// # Errors
/// When the address cannot be bound (another server on it).
pub(crate) async fn serve(
    settings: Settings,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let addr = SocketAddr::from((settings.addr, 53));
    let udp = tokio::net::UdpSocket::from_std(socket(addr, socket2::Type::DGRAM)?.into())?;
    let tcp = socket(addr, socket2::Type::STREAM)?;
    tcp.listen(128)?;
    let tcp = tokio::net::TcpListener::from_std(tcp.into())?;
    let server = Arc::new(Server {
        settings,
        services,
        endpoints,
    });
    tracing::info!(%addr, domain = %server.settings.domain, upstream = ?server.settings.upstream, "cluster DNS");
    Ok(tokio::spawn(async move {
        let udp = Arc::new(udp);
        let datagrams = serve_udp(udp, server.clone());
        let streams = serve_tcp(tcp, server);
        tokio::join!(datagrams, streams);
    }))
}

async fn serve_udp(sock: Arc<tokio::net::UdpSocket>, server: Arc<Server>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "DNS datagram");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let (sock, server) = (sock.clone(), server.clone());
        tokio::spawn(async move {
            if let Some(r) = server.reply(&query, false).await {
                let _ = sock.send_to(&r, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, server: Arc<Server>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            while let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut s)).await {
                let Some(r) = server.reply(&query, true).await else {
                    break;
                };
                if write_framed(&mut s, &r).await.is_err() {
                    break;
                }
            }
        });
    }
}
