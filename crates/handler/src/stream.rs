//! Console and VNC streams: a websocket (subprotocol `plain.kubevirt.io`, payload in binary frames, text frames
//! ignored, Close = end of stream) spliced onto a launcher's unix socket (`serial.sock`, `vnc.sock`). One session
//! per VMI and stream kind: a new session takes over and the old one is closed, as upstream's handler does — unless
//! the new one asks to preserve the running session (VNC's `preserveSession`), then it is refused. Idle sessions
//! are pinged so that no proxy on the way ever sees them idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

/// The websocket subprotocol of KubeVirt's streams.
pub const SUBPROTOCOL: &str = "plain.kubevirt.io";

/// The buffer size upstream uses for stream copies.
const BUFFER: usize = 10240;

/// The sessions open on this handler, by `<vmi uid>/<kind>`.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    next: AtomicU64,
}

/// A session's claim on its stream: ends it when dropped; `kicked` fires when another session takes over.
#[derive(Debug)]
pub struct Claim {
    sessions: Arc<Sessions>,
    key: String,
    id: u64,
    /// Fires when a newer session took the stream.
    pub kicked: oneshot::Receiver<()>,
}

impl Sessions {
    /// Claims the stream `key`, closing the session that held it — or, with `preserve`, refusing (`None`) when one
    /// does.
    pub fn claim(self: &Arc<Self>, key: &str, preserve: bool) -> Option<Claim> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, kicked) = oneshot::channel();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if preserve && open.get(key).is_some_and(|(_, old)| !old.is_closed()) {
            return None;
        }
        if let Some((_, old)) = open.insert(key.to_string(), (id, tx)) {
            let _ = old.send(());
        }
        Some(Claim {
            sessions: self.clone(),
            key: key.to_string(),
            id,
            kicked,
        })
    }

    /// Whether a session holds `key`.
    #[must_use]
    pub fn is_open(&self, key: &str) -> bool {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.contains_key(key)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut open = self
            .sessions
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            open.remove(&self.key);
        }
    }
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The websocket client closed (or went away).
    Client,
    /// The unix socket closed (the VM stopped).
    Guest,
    /// A newer session took over.
    TakenOver,
}

/// Copies between `ws` and `sock` until one side ends, `claim` is taken over, or a write fails; pings the client
/// every `keepalive`.
pub async fn splice(ws: WebSocket, sock: UnixStream, mut claim: Claim, keepalive: Duration) -> End {
    let (mut tx, mut rx) = ws.split();
    let (mut sr, mut sw) = sock.into_split();
    let mut buf = vec![0u8; BUFFER];
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let end = loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if sw.write_all(&data).await.is_err() {
                        break End::Guest;
                    }
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break End::Client,
            },
            n = sr.read(&mut buf) => match n {
                Ok(0) | Err(_) => break End::Guest,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break End::Client;
                    }
                }
            },
            _ = &mut claim.kicked => break End::TakenOver,
            _ = ping.tick() => {
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break End::Client;
                }
            }
        }
    };
    let reason = match end {
        End::Client => None,
        End::Guest => Some("the VMI's stream ended"),
        End::TakenOver => Some("a new session took over"),
    };
    if let Some(reason) = reason {
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: reason.into(),
            })))
            .await;
    }
    let _ = tx.close().await;
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_claim_kicks_the_old_unless_it_preserves_it() {
        let s = Arc::new(Sessions::default());
        let mut first = s.claim("uid/console", false).unwrap();
        assert!(s.claim("uid/console", true).is_none(), "preserveSession refused");
        assert!(first.kicked.try_recv().is_err(), "a refused claim kicks nobody");
        let second = s.claim("uid/console", false).unwrap();
        assert!(first.kicked.try_recv().is_ok(), "the first session is told to go");
        drop(first);
        assert!(
            s.is_open("uid/console"),
            "the old claim's drop leaves the new one"
        );
        drop(second);
        assert!(!s.is_open("uid/console"));
        assert!(s.claim("uid/console", true).is_some(), "free again");
    }
}
