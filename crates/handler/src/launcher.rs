//! The handler's side of a launcher's command socket (`<runtime>/launcher.sock`, protocol 1: JSON lines):
//! requests with ids and their replies, and the domain events the launcher pushes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{Mutex, broadcast, oneshot};

/// Why a launcher call failed.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The socket could not be reached.
    #[error("connecting to {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The launcher speaks another protocol.
    #[error("the launcher speaks protocol {0}, not 1")]
    Protocol(String),
    /// The connection closed (the launcher exited).
    #[error("the launcher closed its socket")]
    Closed,
    /// No answer in time.
    #[error("the launcher did not answer {0} in time")]
    Timeout(String),
    /// The launcher refused the command.
    #[error("{0}")]
    Refused(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A connection to one launcher.
#[derive(Debug)]
pub struct Launcher {
    writer: Mutex<tokio::net::unix::OwnedWriteHalf>,
    pending: Pending,
    next: AtomicU64,
    events: broadcast::Sender<Value>,
    closed: tokio::sync::watch::Receiver<bool>,
    /// The launcher's greeting (`{"protocol":1,"launcher":…,"domain":…}`).
    pub hello: Value,
}

impl Launcher {
    /// Connects to the socket at `path` and reads the greeting.
    ///
    /// # Errors
    /// [`LauncherError`].
    pub async fn connect(path: &Path) -> Result<Arc<Self>, LauncherError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| LauncherError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (r, w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let hello = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .map_err(|_| LauncherError::Timeout("the greeting".into()))?
            .map_err(|_| LauncherError::Closed)?
            .ok_or(LauncherError::Closed)?;
        let hello: Value =
            serde_json::from_str(&hello).map_err(|_| LauncherError::Protocol(hello.clone()))?;
        if hello.get("protocol") != Some(&json!(1)) {
            return Err(LauncherError::Protocol(hello["protocol"].to_string()));
        }
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(64);
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        let reader = {
            let (pending, events) = (pending.clone(), events.clone());
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if let Some(ev) = msg.get("event") {
                        let _ = events.send(ev.clone());
                        continue;
                    }
                    let Some(id) = msg.get("id").and_then(Value::as_u64) else {
                        continue;
                    };
                    if let Some(tx) = pending.lock().await.remove(&id) {
                        let reply = if msg.get("ok") == Some(&json!(true)) {
                            Ok(msg.get("result").cloned().unwrap_or(Value::Null))
                        } else {
                            Err(msg
                                .get("error")
                                .and_then(Value::as_str)
                                .unwrap_or("failed")
                                .to_string())
                        };
                        let _ = tx.send(reply);
                    }
                }
                pending.lock().await.clear();
                let _ = closed_tx.send(true);
            }
        };
        tokio::spawn(reader);
        Ok(Arc::new(Self {
            writer: Mutex::new(w),
            pending,
            next: AtomicU64::new(1),
            events,
            closed,
            hello,
        }))
    }

    /// Domain events (`{"event":"started","domain":{"state":"Running"}}`) from now on.
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    /// Whether the launcher closed the connection.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Waits until the launcher closes the connection.
    pub async fn wait_closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Sends `command` (`"Ping"` or `{"Sync":{…}}`) and waits up to `timeout` for the reply.
    ///
    /// # Errors
    /// [`LauncherError`]: closed, timed out, or refused with the launcher's message.
    pub async fn call(&self, command: Value, timeout: Duration) -> Result<Value, LauncherError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let what = match &command {
            Value::String(s) => s.clone(),
            Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id, tx);
        let line = format!("{}\n", json!({"id": id, "command": command}));
        {
            let mut w = self.writer.lock().await;
            if w.write_all(line.as_bytes()).await.is_err() {
                self.pending.lock().await.remove(&id);
                return Err(LauncherError::Closed);
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.pending.lock().await.remove(&id);
                Err(LauncherError::Timeout(what))
            }
            Ok(Err(_)) => Err(LauncherError::Closed),
            Ok(Ok(reply)) => reply.map_err(LauncherError::Refused),
        }
    }
}
