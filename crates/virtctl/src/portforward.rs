//! `virtctl port-forward TYPE/NAME[/NAMESPACE] [PROTOCOL/]LOCAL[:REMOTE]...`: local TCP or UDP ports tunnelled to
//! a VM's ports through the `portforward` subresource, one websocket per accepted connection (per client address
//! for UDP), as upstream's virtctl does; `--stdio` joins stdin/stdout to a single tunnel (what `virtctl ssh` uses as
//! its ProxyCommand). Runs until interrupted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Cluster, Stream};
use crate::error::Failure;

/// `port-forward`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// TYPE/NAME[/NAMESPACE], TYPE one of vm, vmi (and their long forms).
    target: String,
    /// [PROTOCOL/]LOCAL[:REMOTE], PROTOCOL tcp (default) or udp.
    #[arg(required = true)]
    ports: Vec<String>,
    /// Tunnel stdin/stdout instead of a local port (exactly one port).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    stdio: Option<bool>,
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
}

/// A parsed target: `(resource, namespace, name)`; the namespace may be empty (the context's).
pub(crate) fn parse_target(target: &str) -> Result<(&'static str, String, String), Failure> {
    if target.is_empty() {
        return Err("target cannot be empty".into());
    }
    let parts: Vec<&str> = target.split('/').collect();
    let (kind, name, ns) = match parts.as_slice() {
        [_] => return Err("target must contain type and name separated by '/'".into()),
        [k, n] => (*k, *n, ""),
        [k, n, ns] => {
            if ns.is_empty() {
                return Err("namespace cannot be empty".into());
            }
            (*k, *n, *ns)
        }
        _ => return Err("target is not valid with more than two '/'".into()),
    };
    let resource = match kind {
        "vm" | "vms" | "virtualmachine" | "virtualmachines" => "virtualmachines",
        "vmi" | "vmis" | "virtualmachineinstance" | "virtualmachineinstances" => "virtualmachineinstances",
        other => return Err(format!("unsupported resource type '{other}'")),
    };
    if name.is_empty() {
        return Err("name cannot be empty".into());
    }
    Ok((resource, ns.to_string(), name.to_string()))
}

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    pub(crate) protocol: String,
    pub(crate) local: u16,
    pub(crate) remote: u16,
}

pub(crate) fn parse_port(arg: &str) -> Result<Port, Failure> {
    let (protocol, rest) = match arg.split_once('/') {
        Some((p, rest)) => (p.to_string(), rest),
        None => ("tcp".to_string(), arg),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp") {
        return Err(format!("unsupported protocol '{protocol}' in {arg}: tcp or udp"));
    }
    let nums: Vec<&str> = rest.split(':').filter(|s| !s.is_empty()).collect();
    let num = |s: &str| {
        s.parse::<u16>()
            .map_err(|e| format!("invalid port {s:?} in {arg}: {e}"))
    };
    let (local, remote) = match nums.as_slice() {
        [] => return Err("invalid port, missing local and/or remote port".into()),
        [l] => (num(l)?, num(l)?),
        [l, r, ..] => (num(l)?, num(r)?),
    };
    Ok(Port {
        protocol,
        local,
        remote,
    })
}

/// Runs the command.
pub(crate) async fn run(c: &Cluster, a: Args) -> Result<(), Failure> {
    let (resource, ns, name) = parse_target(&a.target)?;
    let c = Cluster {
        client: c.client.clone(),
        namespace: if ns.is_empty() { c.namespace.clone() } else { ns },
    };
    let ports = a
        .ports
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<Vec<_>, _>>()?;
    let path = |p: &Port| {
        c.path(
            resource,
            &name,
            &format!("portforward/{}/{}", p.remote, p.protocol),
        )
    };
    if a.stdio.unwrap_or(false) {
        let [port] = ports.as_slice() else {
            return Err("only one port supported when forwarding to stdout".into());
        };
        let ws = c.websocket(&path(port)).await.map_err(|(_, e)| e.to_string())?;
        return stdio(ws).await;
    }
    let urls: Vec<String> = ports.iter().map(path).collect();
    let c = Arc::new(c);
    for (port, url) in ports.iter().zip(urls) {
        let addr = format!("{}:{}", a.address, port.local);
        if port.protocol == "udp" {
            let sock = tokio::net::UdpSocket::bind(&addr)
                .await
                .map_err(|e| format!("listen udp {addr}: {e}"))?;
            let bound = sock.local_addr().map_err(|e| e.to_string())?;
            eprintln!("forwarding udp {bound} to {}", port.remote);
            tokio::spawn(udp(c.clone(), Arc::new(sock), url));
        } else {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .map_err(|e| format!("listen tcp {addr}: {e}"))?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            eprintln!("forwarding tcp {bound} to {}", port.remote);
            tokio::spawn(tcp(c.clone(), listener, url));
        }
    }
    kube_support::shutdown_signal().await;
    Ok(())
}

/// stdin → tunnel → stdout, until either side ends.
async fn stdio(ws: Stream) -> Result<(), Failure> {
    let (mut tx, mut rx) = ws.split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = stdin.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Message::Close(None)).await;
                    return Ok(());
                }
                Ok(n) => tx.send(Message::Binary(buf[..n].to_vec().into())).await.map_err(|e| e.to_string())?,
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b).await.map_err(|e| e.to_string())?;
                    stdout.flush().await.map_err(|e| e.to_string())?;
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            },
        }
    }
}

async fn tcp(c: Arc<Cluster>, listener: tokio::net::TcpListener, url: String) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            return;
        };
        let c = c.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let ws = match c.websocket(&url).await {
                Ok(ws) => ws,
                Err((_, e)) => {
                    eprintln!("can't open a tunnel for {peer}: {e}");
                    return;
                }
            };
            splice(conn, ws).await;
        });
    }
}

/// Copies a local TCP connection and a tunnel into each other until either ends.
async fn splice(conn: tokio::net::TcpStream, ws: Stream) {
    let (mut r, mut w) = conn.into_split();
    let (mut tx, mut rx) = ws.split();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() { break },
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => if w.write_all(&b).await.is_err() { break },
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    let _ = w.shutdown().await;
}

/// A UDP port: each client address gets its own tunnel; replies go back to it.
async fn udp(c: Arc<Cluster>, sock: Arc<tokio::net::UdpSocket>, url: String) {
    type Clients = Arc<Mutex<HashMap<SocketAddr, tokio::sync::mpsc::UnboundedSender<Vec<u8>>>>>;
    let clients: Clients = Arc::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let datagram = buf[..n].to_vec();
        let known = clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&peer)
            .map(|tx| tx.send(datagram.clone()).is_ok());
        if known == Some(true) {
            continue;
        }
        let (tx, mut queue) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let _ = tx.send(datagram);
        clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(peer, tx);
        let (c, url, sock, clients) = (c.clone(), url.clone(), sock.clone(), clients.clone());
        tokio::spawn(async move {
            if let Ok(ws) = c.websocket(&url).await {
                let (mut wtx, mut wrx) = ws.split();
                loop {
                    tokio::select! {
                        d = queue.recv() => match d {
                            Some(d) => if wtx.send(Message::Binary(d.into())).await.is_err() { break },
                            None => break,
                        },
                        msg = wrx.next() => match msg {
                            Some(Ok(Message::Binary(b))) => { let _ = sock.send_to(&b, peer).await; }
                            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                            Some(Ok(_)) => {}
                        },
                    }
                }
            } else {
                eprintln!("can't open a udp tunnel for {peer}");
            }
            clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&peer);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ports_parse_as_upstreams() {
        assert_eq!(
            parse_target("vmi/testvmi").unwrap(),
            ("virtualmachineinstances", String::new(), "testvmi".into())
        );
        assert_eq!(
            parse_target("virtualmachine/a/ns1").unwrap(),
            ("virtualmachines", "ns1".into(), "a".into())
        );
        assert_eq!(
            parse_target("vmi").unwrap_err(),
            "target must contain type and name separated by '/'"
        );
        assert_eq!(
            parse_target("pod/x").unwrap_err(),
            "unsupported resource type 'pod'"
        );
        assert_eq!(parse_target("vm/").unwrap_err(), "name cannot be empty");
        assert_eq!(parse_target("vm/a/").unwrap_err(), "namespace cannot be empty");
        assert_eq!(
            parse_target("vm/a/b/c").unwrap_err(),
            "target is not valid with more than two '/'"
        );
        let p = |s| parse_port(s).unwrap();
        assert_eq!(
            p("8080"),
            Port {
                protocol: "tcp".into(),
                local: 8080,
                remote: 8080
            }
        );
        assert_eq!(
            p("8080:22"),
            Port {
                protocol: "tcp".into(),
                local: 8080,
                remote: 22
            }
        );
        assert_eq!(
            p("udp/5353:53"),
            Port {
                protocol: "udp".into(),
                local: 5353,
                remote: 53
            }
        );
        assert!(parse_port("sctp/1").is_err());
        assert!(parse_port("tcp/").is_err());
        assert!(parse_port("x:1").unwrap_err().contains("invalid port"));
    }
}
