//! A small HTTP/1.1 file server for import tests: GET and HEAD of the files in a directory, byte ranges (as web
//! servers serve them) unless switched off, 404 for anything else; one request per connection; plain or over TLS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::io::{BufRead as _, BufReader, Read, Seek as _, SeekFrom, Write};
use std::path::PathBuf;

/// Serves `dir` on `addr`; returns the port. `ranges`: answer `Range` requests (and say `Accept-Ranges: bytes`).
pub(crate) fn serve(addr: std::net::SocketAddr, dir: PathBuf, ranges: bool) -> u16 {
    let server = std::net::TcpListener::bind(addr).unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in server.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let _ = answer(conn, &dir, ranges);
            });
        }
    });
    port
}

/// Serves `dir` over TLS with the certificate chain `cert_pem` and key `key_pem`; returns the port.
pub(crate) fn serve_tls(addr: std::net::SocketAddr, dir: PathBuf, cert_pem: &str, key_pem: &str) -> u16 {
    use rustls::pki_types::pem::PemObject as _;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let cfg = std::sync::Arc::new(cfg);
    let server = std::net::TcpListener::bind(addr).unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in server.incoming().flatten() {
            let (dir, cfg) = (dir.clone(), cfg.clone());
            std::thread::spawn(move || {
                let Ok(tls) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let _ = answer(rustls::StreamOwned::new(tls, conn), &dir, true);
            });
        }
    });
    port
}

fn answer<S: Read + Write>(conn: S, dir: &std::path::Path, ranges: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range: Option<(u64, Option<u64>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap_or((v.trim(), ""));
            range = Some((a.parse().unwrap_or(0), b.parse().ok()));
        }
    }
    let conn = reader.get_mut();
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or("/").trim_start_matches('/').to_string();
    let file = dir.join(&path);
    if path.contains("..") || !file.is_file() {
        return write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let len = std::fs::metadata(&file)?.len();
    let accept = if ranges { "Accept-Ranges: bytes\r\n" } else { "" };
    let (status, start, end) = match range.filter(|_| ranges) {
        Some((a, b)) => ("206 Partial Content", a, b.unwrap_or(len - 1).min(len - 1)),
        None => ("200 OK", 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end + 1 - start };
    let content_range = if status.starts_with("206") {
        format!("Content-Range: bytes {start}-{end}/{len}\r\n")
    } else {
        String::new()
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {count}\r\n{accept}{content_range}Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    if method == "HEAD" {
        return Ok(());
    }
    let mut f = std::fs::File::open(&file)?;
    f.seek(SeekFrom::Start(start))?;
    let mut f = f.take(count);
    std::io::copy(&mut f, conn)?;
    conn.flush()
}
