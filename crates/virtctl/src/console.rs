//! `virtctl console`: the serial console over a `plain.kubevirt.io` websocket, with the terminal in raw mode (put
//! back however the command ends: escape, disconnect, error or panic), Ctrl+] to leave, and upstream's retries:
//! while the server answers 400 (the VMI is not running yet) it tries again every second until `--timeout`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcsetattr};
use tokio::io::AsyncReadExt as _;
use tokio_tungstenite::tungstenite::Message;

use crate::client::Cluster;
use crate::error::Failure;

/// Ctrl+] (and what terminals send for Ctrl+5).
const ESCAPE: u8 = 0x1d;

/// Restores the terminal's settings when dropped.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            // Not a terminal (a pipe, a test harness): nothing to change.
            return Self { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = tcsetattr(&stdin, OptionalActions::Now, &raw);
        Self { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}

const DISCONNECTED: &str = "\nYou were disconnected from the console. This could be caused by one of the following:\n \
- the target VM was powered off\n - another user connected to the console of the target VM\n - network issues\n";

/// Connects to the console of VMI `name` and relays until the escape key or the end of the stream.
pub(crate) async fn run(c: &Cluster, name: &str, timeout_minutes: u64) -> Result<(), Failure> {
    let path = c.path("virtualmachineinstances", name, "console");
    let deadline = Instant::now() + Duration::from_secs(timeout_minutes * 60);
    let ws = loop {
        match c.websocket(&path).await {
            Ok(ws) => break ws,
            Err((400, _)) if Instant::now() < deadline => tokio::time::sleep(Duration::from_secs(1)).await,
            Err((400, _)) => return Err("Timeout trying to connect to the virtual machine instance".into()),
            Err((_, e)) => return Err(e.to_string()),
        }
    };
    eprintln!("Successfully connected to {name} console. Press Ctrl+] or Ctrl+5 to exit console.");
    let raw = RawMode::enter();
    let (mut tx, mut rx) = ws.split();
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut stdout = std::io::stdout();
    let outcome: Result<(), Failure> = loop {
        tokio::select! {
            n = stdin.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    // Input ended (a pipe): keep showing output until the stream ends.
                    break drain(&mut rx, &mut stdout).await;
                }
                Ok(_) if buf[0] == ESCAPE => {
                    let _ = tx.send(Message::Close(None)).await;
                    break Ok(());
                }
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break Err(DISCONNECTED.trim_start().to_string());
                    }
                }
            },
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let _ = stdout.write_all(&b);
                    let _ = stdout.flush();
                }
                Some(Ok(Message::Close(frame))) => {
                    // The server ended the session (the VM stopped, or another console took over).
                    let why = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                    break Err(match why {
                        Some(r) => format!("{DISCONNECTED}({r})"),
                        None => DISCONNECTED.to_string(),
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break Err(DISCONNECTED.to_string()),
            },
        }
    };
    drop(raw);
    outcome
}

/// Prints what the stream still sends until it ends.
async fn drain(
    rx: &mut (impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    out: &mut std::io::Stdout,
) -> Result<(), Failure> {
    while let Some(msg) = rx.next().await {
        match msg {
            Ok(Message::Binary(b)) => {
                let _ = out.write_all(&b);
                let _ = out.flush();
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}
