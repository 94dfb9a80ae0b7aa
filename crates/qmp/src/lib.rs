//! Async clients for QEMU's two JSON protocols over unix sockets: the QMP monitor ([`Qmp`]) and the guest agent
//! ([`Qga`]). Hand-written: the ~15 commands the launcher uses don't justify a generated QAPI binding.
//!
//! QMP: connect with retries until a deadline (QEMU creates the socket as it starts), read the greeting, negotiate
//! with `qmp_capabilities`; then one reader task routes each `return`/`error` to its waiter by `id` and each
//! `event` to a broadcast channel. Every command has a timeout. When QEMU goes away, waiters get
//! [`QmpError::Closed`] and the event stream ends.

mod qga;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, broadcast, oneshot};

pub use qga::Qga;

/// Why a QMP or guest-agent exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached before the deadline.
    #[error("connecting to {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// The last connect error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("monitor I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer spoke something that is not the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// QEMU answered with an error.
    #[error("{command}: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// QEMU's message.
        desc: String,
    },
    /// No answer in time.
    #[error("{0}: no answer within the timeout")]
    Timeout(String),
    /// The connection is gone (QEMU exited).
    #[error("the monitor connection is closed")]
    Closed,
}

/// An asynchronous QEMU event.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Event {
    /// `SHUTDOWN`, `STOP`, `RESUME`, `RESET`, `GUEST_PANICKED`, `WATCHDOG`, `DEVICE_DELETED`, ...
    #[serde(rename = "event")]
    pub name: String,
    /// Event details.
    #[serde(default)]
    pub data: Value,
}

/// `query-status`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// vCPUs are running.
    pub running: bool,
    /// `running`, `paused`, `shutdown`, `prelaunch`, `guest-panicked`, ...
    pub status: String,
}

type Waiters = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Value, (String, String)>>>>>;

/// A QMP connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Qmp {
    writer: Arc<Mutex<OwnedWriteHalf>>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
    events: broadcast::Sender<Event>,
    /// Default per-command timeout.
    pub timeout: Duration,
}

/// Connects to a unix socket, retrying until `deadline` passes.
pub(crate) async fn connect_retrying(path: &Path, deadline: Duration) -> Result<UnixStream, QmpError> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match UnixStream::connect(path).await {
            Ok(s) => return Ok(s),
            Err(e) if tokio::time::Instant::now() >= until => {
                return Err(QmpError::Connect {
                    path: path.display().to_string(),
                    source: e,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

impl Qmp {
    /// How long a command waits for its answer by default.
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

    /// Connects, reads the greeting and negotiates capabilities, all within `deadline`. Commands then wait at most
    /// [`Qmp::COMMAND_TIMEOUT`] (or `deadline`, when shorter) unless they say otherwise.
    ///
    /// # Errors
    /// [`QmpError`] if the socket never appears, the greeting is not QMP, or negotiation fails.
    pub async fn connect(path: &Path, deadline: Duration) -> Result<Self, QmpError> {
        let stream = connect_retrying(path, deadline).await?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = tokio::time::timeout(deadline, lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout("greeting".into()))??
            .ok_or(QmpError::Closed)?;
        let g: Value = serde_json::from_str(&greeting).map_err(|e| QmpError::Protocol(e.to_string()))?;
        if g.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("not a QMP greeting: {greeting}")));
        }
        let (events, _) = broadcast::channel(256);
        let qmp = Self {
            writer: Arc::new(Mutex::new(write)),
            waiters: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            events: events.clone(),
            timeout: deadline.min(Self::COMMAND_TIMEOUT),
        };
        let waiters = qmp.waiters.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    tracing::warn!(%line, "unparseable QMP line");
                    continue;
                };
                if v.get("event").is_some() {
                    if let Ok(ev) = serde_json::from_value::<Event>(v) {
                        let _ = events.send(ev);
                    }
                    continue;
                }
                let Some(id) = v.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let reply = match v.get("error") {
                    Some(e) => Err((
                        e.get("class")
                            .and_then(Value::as_str)
                            .unwrap_or("Error")
                            .to_string(),
                        e.get("desc")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    )),
                    None => Ok(v.get("return").cloned().unwrap_or(Value::Null)),
                };
                if let Some(tx) = waiters.lock().ok().and_then(|mut w| w.remove(&id)) {
                    let _ = tx.send(reply);
                }
            }
            // QEMU is gone: fail every waiter.
            if let Ok(mut w) = waiters.lock() {
                w.clear();
            }
        });
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Subscribes to events from now on.
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Runs `command` with the default timeout.
    ///
    /// # Errors
    /// [`QmpError::Command`] for QEMU's errors, [`QmpError::Timeout`], [`QmpError::Closed`].
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.execute_within(command, arguments, self.timeout).await
    }

    /// Runs `command`, waiting at most `timeout` for the answer.
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub async fn execute_within(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .map_err(|_| QmpError::Protocol("waiter table poisoned".into()))?
            .insert(id, tx);
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        {
            let mut w = self.writer.lock().await;
            if let Err(e) = w.write_all(line.as_bytes()).await {
                let _ = self.waiters.lock().map(|mut m| m.remove(&id));
                return Err(if e.kind() == std::io::ErrorKind::BrokenPipe {
                    QmpError::Closed
                } else {
                    e.into()
                });
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                let _ = self.waiters.lock().map(|mut m| m.remove(&id));
                Err(QmpError::Timeout(command.to_string()))
            }
            Ok(Err(_)) => Err(QmpError::Closed),
            Ok(Ok(Err((class, desc)))) => Err(QmpError::Command {
                command: command.to_string(),
                class,
                desc,
            }),
            Ok(Ok(Ok(v))) => Ok(v),
        }
    }

    /// `query-status`.
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub async fn query_status(&self) -> Result<Status, QmpError> {
        let v = self.execute("query-status", None).await?;
        serde_json::from_value(v).map_err(|e| QmpError::Protocol(e.to_string()))
    }

    /// Pauses the vCPUs (`stop`).
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", None).await.map(drop)
    }

    /// Resumes the vCPUs (`cont`).
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", None).await.map(drop)
    }

    /// Presses the ACPI power button.
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// Hard reset.
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute("system_reset", None).await.map(drop)
    }

    /// Asks QEMU to exit.
    ///
    /// # Errors
    /// As [`Qmp::execute`]; [`QmpError::Closed`] is expected as QEMU goes.
    pub async fn quit(&self) -> Result<(), QmpError> {
        self.execute("quit", None).await.map(drop)
    }
}
