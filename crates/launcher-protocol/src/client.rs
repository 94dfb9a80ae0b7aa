//! The node agent's side of a launcher's command socket: one connection, requests matched to their responses by
//! id, domain events fanned out to subscribers, typed calls for the commands whose replies it reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{Mutex, broadcast, oneshot};

use crate::message::{
    AccessCredentials, Command, DomainInfo, Event, EventLine, GuestInfo, Hello, Request, Response, Synced,
};

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
    #[error("the launcher speaks protocol {0}, not {expected}", expected = crate::PROTOCOL)]
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
    /// The reply is not what the command replies.
    #[error("the launcher's reply to {command} is not understood: {error}")]
    Reply {
        /// The command.
        command: &'static str,
        /// Why it could not be read.
        error: String,
    },
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A connection to one launcher.
#[derive(Debug)]
pub struct Launcher {
    writer: Mutex<tokio::net::unix::OwnedWriteHalf>,
    pending: Pending,
    next: AtomicU64,
    events: broadcast::Sender<Event>,
    closed: tokio::sync::watch::Receiver<bool>,
    /// The launcher's greeting.
    pub hello: Hello,
    /// The launcher process on the other end (`SO_PEERCRED`): the node agent enters its network namespace.
    pub peer: Option<Peer>,
}

/// The process behind a launcher socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its pid (absent on platforms that do not say).
    pub pid: Option<i32>,
    /// Its user.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

impl Launcher {
    /// Connects to the socket at `path` and reads the greeting.
    ///
    /// # Errors
    /// [`LauncherError`]: not reachable, no greeting, or another protocol version.
    pub async fn connect(path: &Path) -> Result<Arc<Self>, LauncherError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| LauncherError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let peer = stream.peer_cred().ok().map(|c| Peer {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        });
        let (r, w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let hello = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .map_err(|_| LauncherError::Timeout("the greeting".into()))?
            .map_err(|_| LauncherError::Closed)?
            .ok_or(LauncherError::Closed)?;
        let hello: Hello = match serde_json::from_str::<Value>(&hello) {
            Ok(v) if v.get("protocol") == Some(&Value::from(crate::PROTOCOL)) => {
                serde_json::from_value(v).map_err(|_| LauncherError::Protocol(hello.clone()))?
            }
            Ok(v) => return Err(LauncherError::Protocol(v["protocol"].to_string())),
            Err(_) => return Err(LauncherError::Protocol(hello)),
        };
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(64);
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        let reader = {
            let (pending, events) = (pending.clone(), events.clone());
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    dispatch(&line, &pending, &events).await;
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
            peer,
        }))
    }

    /// Domain events from now on.
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<Event> {
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

    /// Sends `command` and waits up to `timeout` for its reply, as JSON.
    ///
    /// # Errors
    /// [`LauncherError`]: closed, timed out, or refused with the launcher's message.
    pub async fn call(&self, command: Command, timeout: Duration) -> Result<Value, LauncherError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let what = command.name();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id, tx);
        let line = serde_json::to_string(&Request { id, command }).map_err(|e| LauncherError::Reply {
            command: what,
            error: e.to_string(),
        })?;
        {
            let mut w = self.writer.lock().await;
            if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                self.pending.lock().await.remove(&id);
                return Err(LauncherError::Closed);
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.pending.lock().await.remove(&id);
                Err(LauncherError::Timeout(what.to_string()))
            }
            Ok(Err(_)) => Err(LauncherError::Closed),
            Ok(Ok(reply)) => reply.map_err(LauncherError::Refused),
        }
    }

    /// Sends `command` and reads its reply as `R`.
    ///
    /// # Errors
    /// As [`Launcher::call`], and [`LauncherError::Reply`] when the reply is not an `R`.
    pub async fn request<R: DeserializeOwned>(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<R, LauncherError> {
        let what = command.name();
        let reply = self.call(command, timeout).await?;
        serde_json::from_value(reply).map_err(|e| LauncherError::Reply {
            command: what,
            error: e.to_string(),
        })
    }

    /// Sync: starts the VMI (the first time) or checks it against the running domain.
    ///
    /// # Errors
    /// As [`Launcher::request`]; a VMI that cannot start or changed is [`LauncherError::Refused`].
    pub async fn sync(
        &self,
        vmi: &kubevirt_api::v1::VirtualMachineInstance,
        network: &[crate::network::PlumbedInterface],
        timeout: Duration,
    ) -> Result<Synced, LauncherError> {
        let command = Command::Sync {
            vmi: Box::new(vmi.clone()),
            network: network.to_vec(),
        };
        self.request(command, timeout).await
    }

    /// GetDomain.
    ///
    /// # Errors
    /// As [`Launcher::request`].
    pub async fn domain(&self, timeout: Duration) -> Result<DomainInfo, LauncherError> {
        self.request(Command::GetDomain, timeout).await
    }

    /// GetGuestInfo.
    ///
    /// # Errors
    /// As [`Launcher::request`]; no agent connected is [`LauncherError::Refused`].
    pub async fn guest_info(&self, timeout: Duration) -> Result<GuestInfo, LauncherError> {
        self.request(Command::GetGuestInfo, timeout).await
    }

    /// SyncAccessCredentials.
    ///
    /// # Errors
    /// As [`Launcher::request`].
    pub async fn sync_access_credentials(
        &self,
        timeout: Duration,
    ) -> Result<AccessCredentials, LauncherError> {
        self.request(Command::SyncAccessCredentials, timeout).await
    }
}

/// Routes one line from the launcher: an event to the subscribers, a response to its caller.
async fn dispatch(line: &str, pending: &Pending, events: &broadcast::Sender<Event>) {
    let Ok(msg) = serde_json::from_str::<Value>(line) else {
        return;
    };
    if msg.get("event").is_some() {
        if let Ok(ev) = serde_json::from_value::<EventLine>(msg) {
            let _ = events.send(ev.event);
        }
        return;
    }
    let Ok(response) = serde_json::from_value::<Response>(msg) else {
        return;
    };
    let Some(id) = response.id else { return };
    if let Some(tx) = pending.lock().await.remove(&id) {
        let _ = tx.send(response.into_result());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::UnixListener;

    use super::*;
    use crate::DomainState;

    /// A launcher that greets with `hello`, then answers GetDomain, refuses the rest, and sends one event.
    async fn fake(dir: &Path, hello: Value) -> std::path::PathBuf {
        let sock = dir.join("launcher.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            w.write_all(format!("{hello}\n").as_bytes()).await.unwrap();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let req: Request = serde_json::from_str(&line).unwrap();
                let outcome = match req.command {
                    Command::GetDomain => {
                        Ok(json!({"domain": {}, "state": {"state": "Paused"}, "status": null,
                        "blocks": null, "cpus": null}))
                    }
                    other => Err(format!("{} refused", other.name())),
                };
                let event = EventLine {
                    event: Event {
                        event: "STOP".into(),
                        domain: DomainState::Paused,
                    },
                };
                let out = format!(
                    "{}\n{}\n",
                    serde_json::to_string(&event).unwrap(),
                    serde_json::to_string(&Response::to(Some(req.id), outcome)).unwrap()
                );
                w.write_all(out.as_bytes()).await.unwrap();
            }
        });
        sock
    }

    #[tokio::test]
    async fn calls_get_their_replies_and_events_reach_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake(
            dir.path(),
            json!({"protocol": 1, "launcher": "test", "domain": "ns_vm"}),
        )
        .await;
        let l = Launcher::connect(&sock).await.unwrap();
        assert_eq!(l.hello.domain.as_deref(), Some("ns_vm"));
        let mut events = l.events();
        let d = l.domain(Duration::from_secs(5)).await.unwrap();
        assert_eq!(d.state, DomainState::Paused);
        assert_eq!(events.recv().await.unwrap().domain, DomainState::Paused);
        match l.call(Command::Kill, Duration::from_secs(5)).await {
            Err(LauncherError::Refused(m)) => assert_eq!(m, "Kill refused"),
            other => panic!("{other:?}"),
        }
        // A reply of the wrong shape is an error naming the command, not a panic.
        match l.guest_info(Duration::from_secs(5)).await {
            Err(LauncherError::Refused(m)) => assert_eq!(m, "GetGuestInfo refused"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn another_protocol_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sock = fake(dir.path(), json!({"protocol": 2, "launcher": "future"})).await;
        match Launcher::connect(&sock).await {
            Err(LauncherError::Protocol(v)) => assert_eq!(v, "2"),
            other => panic!("{other:?}"),
        }
    }
}
