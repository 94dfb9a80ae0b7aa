//! The QEMU guest agent client: one request at a time over the agent's virtio-serial socket, resynchronised with
//! `guest-sync-delimited` on connect (the channel may hold a half-read answer from an earlier client).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;

use crate::QmpError;

/// A guest agent connection.
#[derive(Debug)]
pub struct Qga {
    inner: Mutex<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
    timeout: Duration,
}

impl Qga {
    /// Connects and synchronises; fails if no agent answers within `timeout`.
    ///
    /// # Errors
    /// [`QmpError::Timeout`] when the guest runs no agent, [`QmpError::Connect`] without the socket.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream: UnixStream = crate::connect_retrying(path, timeout).await?;
        let (r, w) = stream.into_split();
        let qga = Self {
            inner: Mutex::new((BufReader::new(r), w)),
            timeout,
        };
        let token = u64::from(std::process::id()) << 20
            | u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_micros()),
            );
        let got = qga
            .execute("guest-sync-delimited", Some(json!({"id": token})))
            .await?;
        if got.as_u64() != Some(token) {
            // An answer left over from an earlier client: ours follows.
            qga.read_until_sync(token).await?;
        }
        Ok(qga)
    }

    async fn read_until_sync(&self, token: u64) -> Result<(), QmpError> {
        let mut guard = self.inner.lock().await;
        let reader = &mut guard.0;
        let read = async {
            loop {
                let mut buf = Vec::new();
                if reader.read_until(b'\n', &mut buf).await? == 0 {
                    return Err(QmpError::Closed);
                }
                let text = String::from_utf8_lossy(&buf);
                let v: Value =
                    serde_json::from_str(text.trim_start_matches('\u{FFFD}').trim()).unwrap_or_default();
                if v.get("return").and_then(Value::as_u64) == Some(token) {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| QmpError::Timeout("guest-sync-delimited".into()))?
    }

    /// Runs one agent command.
    ///
    /// # Errors
    /// [`QmpError::Command`] for the agent's errors, [`QmpError::Timeout`], [`QmpError::Closed`].
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({"execute": command});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut guard = self.inner.lock().await;
        let (reader, writer) = &mut *guard;
        let mut line = msg.to_string();
        line.push('\n');
        if command == "guest-sync-delimited" {
            // 0xFF makes the agent drop any partial input before the request.
            writer.write_all(&[0xff]).await?;
        }
        writer.write_all(line.as_bytes()).await?;
        let read = async {
            loop {
                let mut buf = Vec::new();
                let n = reader.read_until(b'\n', &mut buf).await?;
                if n == 0 {
                    return Err(QmpError::Closed);
                }
                // The delimiter the agent sends before a guest-sync-delimited answer.
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim_start_matches('\u{FFFD}').trim();
                if text.is_empty() {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(text).map_err(|e| QmpError::Protocol(format!("{e}: {text}")))?;
                // The 0xFF sent before a sync makes the agent report a parse error first: skip it.
                if command == "guest-sync-delimited" && v.get("error").is_some() {
                    continue;
                }
                if let Some(e) = v.get("error") {
                    return Err(QmpError::Command {
                        command: command.to_string(),
                        class: e
                            .get("class")
                            .and_then(Value::as_str)
                            .unwrap_or("Error")
                            .to_string(),
                        desc: e
                            .get("desc")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                if let Some(r) = v.get("return") {
                    return Ok(r.clone());
                }
            }
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| QmpError::Timeout(command.to_string()))?
    }
}
