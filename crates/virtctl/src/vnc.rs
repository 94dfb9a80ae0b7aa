//! `virtctl vnc`: a local TCP listener whose connections are each relayed over a `vnc` websocket of the VMI. With
//! `--proxy-only` it prints `{"port":N}` and serves until interrupted; otherwise it starts a VNC viewer
//! (`remote-viewer`, else `vncviewer`) on the port when one is installed, and waits up to a minute for it to connect.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Cluster;
use crate::error::Failure;

/// `virtctl vnc NAME` and `virtctl vnc screenshot NAME --file F`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The VMI (or `screenshot`, then the VMI).
    name: String,
    /// After `screenshot`: the VMI.
    vmi: Option<String>,
    /// screenshot: where to write the PNG (`-` for stdout).
    #[arg(short, long)]
    file: Option<String>,
    /// screenshot: move the mouse pointer first (to wake a screen saver).
    #[arg(short, long)]
    move_cursor: bool,
    /// Only run the proxy: print its port and serve.
    #[arg(long)]
    proxy_only: bool,
    /// The local port (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The local address (only with --proxy-only; otherwise 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Refuse to take over a VNC session another client has open.
    #[arg(long)]
    preserve_session: bool,
}

/// A viewer program and how it is told the port.
type Viewer = (&'static str, fn(u16) -> Vec<String>);

async fn screenshot(c: &Cluster, name: &str, file: &str, move_cursor: bool) -> Result<(), Failure> {
    let path = format!(
        "{}?moveCursor={move_cursor}",
        c.path("virtualmachineinstances", name, "vnc/screenshot")
    );
    let png = c
        .get(&path)
        .await
        .map_err(|e| format!("Can't access VMI {name}: {e}"))?;
    let written = if file == "-" {
        use std::io::Write as _;
        std::io::stdout().write_all(&png)
    } else {
        std::fs::write(file, &png)
    };
    written.map_err(|e| format!("Can't write image to a file: {e}"))
}

fn viewer() -> Option<Viewer> {
    let on_path = |bin: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
    };
    if on_path("remote-viewer") {
        return Some(("remote-viewer", |p| vec![format!("vnc://127.0.0.1:{p}")]));
    }
    if on_path("vncviewer") {
        return Some(("vncviewer", |p| vec![format!("127.0.0.1:{p}")]));
    }
    None
}

/// Relays one local connection over a new websocket.
async fn relay(c: &Cluster, path: &str, mut tcp: TcpStream) -> Result<(), Failure> {
    let ws = c
        .websocket(path)
        .await
        .map_err(|(_, e)| format!("error encountered: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let mut buf = vec![0u8; 10240];
    loop {
        tokio::select! {
            n = tcp.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if tcp.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

/// Runs the proxy (and a viewer).
pub(crate) async fn run(c: &Cluster, a: Args) -> Result<(), Failure> {
    if a.name == "screenshot" {
        let vmi = a
            .vmi
            .as_deref()
            .ok_or("usage: virtctl vnc screenshot NAME --file FILE")?;
        let file = a.file.as_deref().ok_or("required flag(s) \"file\" not set")?;
        return screenshot(c, vmi, file, a.move_cursor).await;
    }
    if let Some(extra) = &a.vmi {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let name = a.name.clone();
    let address = if a.proxy_only {
        a.address.clone()
    } else {
        "127.0.0.1".into()
    };
    let listener = TcpListener::bind((address.as_str(), a.port))
        .await
        .map_err(|e| format!("error encountered: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let path = format!(
        "{}?preserveSession={}",
        c.path("virtualmachineinstances", &name, "vnc"),
        a.preserve_session
    );
    if a.proxy_only {
        println!("{{\"port\":{port}}}");
        loop {
            let (tcp, _) = listener
                .accept()
                .await
                .map_err(|e| format!("error encountered: {e}"))?;
            let (c2, p2) = (
                Cluster {
                    client: c.client.clone(),
                    namespace: c.namespace.clone(),
                },
                path.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = relay(&c2, &p2, tcp).await {
                    eprintln!("{e}");
                }
            });
        }
    }
    let Some((bin, args)) = viewer() else {
        println!("{{\"port\":{port}}}");
        eprintln!("no VNC viewer (remote-viewer, vncviewer) found: connect one to 127.0.0.1:{port}");
        let (tcp, _) = listener
            .accept()
            .await
            .map_err(|e| format!("error encountered: {e}"))?;
        return relay(c, &path, tcp).await;
    };
    let mut child = tokio::process::Command::new(bin)
        .args(args(port))
        .spawn()
        .map_err(|e| format!("error encountered: starting {bin}: {e}"))?;
    let accepted = tokio::time::timeout(Duration::from_secs(60), listener.accept()).await;
    let Ok(Ok((tcp, _))) = accepted else {
        let _ = child.kill().await;
        return Err("error encountered: the VNC viewer did not connect within 60 s".into());
    };
    let r = relay(c, &path, tcp).await;
    let _ = child.wait().await;
    r
}
