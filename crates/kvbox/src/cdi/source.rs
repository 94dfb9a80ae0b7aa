//! Where an import's bytes come from: an http(s) GET (the source's CA bundle or the system's, basic auth from the
//! source's Secret, extra headers, redirects followed) handed to the converting thread as a blocking reader, counting
//! the bytes received for progress.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::importer::ImportError;

/// How to reach an http(s) source.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpSettings {
    /// `accessKeyId` and `secretKey` of the source's Secret: basic auth.
    pub(crate) basic_auth: Option<(String, String)>,
    /// `"Name: value"` headers sent with every request.
    pub(crate) extra_headers: Vec<String>,
    /// The directory of the certConfigMap's CA bundle (every file in it); none: the system's roots.
    pub(crate) cert_dir: Option<std::path::PathBuf>,
}

/// An opened http(s) response.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The body, for a blocking thread.
    pub(crate) body: BodyReader,
    /// `Content-Length`, when the server said.
    pub(crate) length: Option<u64>,
    /// The URL after redirects.
    pub(crate) url: String,
}

/// The response body as a blocking [`Read`]: chunks from the receiving task.
#[derive(Debug)]
pub(crate) struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl BodyReader {
    /// A reader of the chunks `rx` receives (an error ends the stream with it).
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

fn tls_config(cert_dir: Option<&Path>) -> Result<rustls::ClientConfig, ImportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImportError::Source(format!("TLS: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    match cert_dir {
        Some(dir) => {
            let files = std::fs::read_dir(dir).map_err(|e| {
                ImportError::Source(format!("reading the CA bundle in {}: {e}", dir.display()))
            })?;
            for f in files.flatten().filter(|f| f.path().is_file()) {
                let pem = std::fs::read(f.path()).unwrap_or_default();
                for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem).flatten() {
                    let cert: rustls::pki_types::CertificateDer<'static> = cert;
                    let _ = roots.add(cert);
                }
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// GETs `url` (following up to 10 redirects); a status other than 200 is an error saying which.
pub(crate) async fn open(
    url: &str,
    settings: &HttpSettings,
    received: Arc<AtomicU64>,
) -> Result<Opened, ImportError> {
    let tls = tls_config(settings.cert_dir.as_deref())?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, http_body_util::Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let mut url = url.to_string();
    for _ in 0..10 {
        let mut req = http::Request::get(&url);
        if let Some((user, password)) = &settings.basic_auth {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        for h in &settings.extra_headers {
            let Some((name, value)) = h.split_once(':') else {
                return Err(ImportError::Source(format!(
                    "extra header {h:?} is not \"Name: value\""
                )));
            };
            req = req.header(name.trim(), value.trim());
        }
        let req = req
            .body(http_body_util::Empty::new())
            .map_err(|e| ImportError::Source(format!("invalid request for {url:?}: {e}")))?;
        let resp = client.request(req).await.map_err(|e| {
            ImportError::Source(format!("Unable to connect to http data source: {}", chain(&e)))
        })?;
        let status = resp.status();
        if status.is_redirection()
            && let Some(next) = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
        {
            url = redirect(&url, next);
            continue;
        }
        if status != http::StatusCode::OK {
            return Err(ImportError::Source(format!(
                "Unable to connect to http data source: expected status code 200, got {}. Status: {status}",
                status.as_u16()
            )));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let length = header(http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let mut body = resp.into_body();
        tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Ok(data) = f.into_data() {
                            received.fetch_add(data.len() as u64, Ordering::Relaxed);
                            if tx.send(Ok(data)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("reading the response: {e}"))).await;
                        return;
                    }
                }
            }
        });
        return Ok(Opened {
            body: BodyReader {
                rx,
                current: Bytes::new(),
            },
            length,
            url,
        });
    }
    Err(ImportError::Source(format!("too many redirects from {url:?}")))
}

/// An error with its causes (`client error (Connect): invalid peer certificate: UnknownIssuer`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// Where a redirect from `from` to `location` leads (absolute, or absolute path on the same server).
fn redirect(from: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme_end = from.find("://").map_or(0, |i| i + 3);
    let host_end = from[scheme_end..]
        .find('/')
        .map_or(from.len(), |i| scheme_end + i);
    if location.starts_with('/') {
        format!("{}{location}", &from[..host_end])
    } else {
        let dir_end = from
            .rfind('/')
            .filter(|i| *i >= host_end)
            .map_or(from.len(), |i| i + 1);
        format!(
            "{}{}{location}",
            &from[..dir_end.min(from.len())],
            if dir_end > from.len() { "/" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_request() {
        assert_eq!(redirect("http://a:1/x/y.img", "http://b/z.img"), "http://b/z.img");
        assert_eq!(redirect("http://a:1/x/y.img", "/z.img"), "http://a:1/z.img");
        assert_eq!(redirect("http://a:1/x/y.img", "z.img"), "http://a:1/x/z.img");
    }
}
