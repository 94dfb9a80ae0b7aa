//! `virtctl image-upload dv NAME`: upstream's upload — a DataVolume with an upload source (unless `--no-create`), a
//! wait for its upload server (`UploadReady`), an UploadTokenRequest, the file POSTed to the upload proxy with a
//! progress bar (the async endpoint when the proxy answers its HEAD probe; retried from the start on failure, the
//! token renewed on a 401 after the first try), then a wait for the claim to be populated. The proxy is found as
//! upstream finds it (`--uploadproxy-url`, else CDIConfig `spec.uploadProxyURLOverride`, else its
//! `status.uploadProxyURL`) and trusted through CDIConfig's `status.uploadProxyCA` and the system's roots, or not
//! checked with `--insecure`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, PostParams};
use kubevirt_api::cdi::{CdiConfig, DataVolume};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use crate::client::Cluster;
use crate::error::Failure;

/// `image-upload`'s arguments (upstream's flags).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `dv` (a DataVolume) or `pvc`.
    kind: String,
    /// Its name.
    name: String,
    /// The size of the volume to create (e.g. 10Gi).
    #[arg(long)]
    size: Option<String>,
    /// The local disk image to upload.
    #[arg(long)]
    image_path: Option<std::path::PathBuf>,
    /// A tar archive to unpack into the volume.
    #[arg(long)]
    archive_path: Option<std::path::PathBuf>,
    /// Do not create the volume: it exists.
    #[arg(long)]
    no_create: bool,
    /// Bind the claim at once, even with a WaitForFirstConsumer class.
    #[arg(long)]
    force_bind: bool,
    /// The StorageClass of the volume.
    #[arg(long)]
    storage_class: Option<String>,
    /// ReadWriteOnce, ReadWriteMany (ReadOnlyMany is refused).
    #[arg(long)]
    access_mode: Option<String>,
    /// block or filesystem.
    #[arg(long)]
    volume_mode: Option<String>,
    /// Do not check the upload proxy's certificate.
    #[arg(long)]
    insecure: bool,
    /// The upload proxy's URL.
    #[arg(long)]
    uploadproxy_url: Option<String>,
    /// Seconds to wait for the upload server.
    #[arg(long, default_value_t = 300)]
    wait_secs: u64,
    /// Times the upload is tried.
    #[arg(long, default_value_t = 5)]
    retry: u32,
}

const CONTENT_TYPE: &str = "cdi.kubevirt.io/storage.contentType";
const POD_PHASE: &str = "cdi.kubevirt.io/storage.pod.phase";

fn annotation(pvc: &PersistentVolumeClaim, key: &str) -> Option<String> {
    pvc.metadata.annotations.as_ref()?.get(key).cloned()
}

fn validate(a: &Args) -> Result<(), Failure> {
    if a.kind != "dv" && a.kind != "pvc" {
        return Err(format!("invalid resource type {}", a.kind));
    }
    match (&a.image_path, &a.archive_path) {
        (None, None) => return Err("either image-path or archive-path must be provided".into()),
        (Some(_), Some(_)) => {
            return Err("cannot handle both image-path and archive-path, provide only one".into());
        }
        _ => {}
    }
    if let Some(m) = &a.volume_mode
        && m != "block"
        && m != "filesystem"
    {
        return Err(format!(
            "Invalid volume mode '{m}'. Valid values are 'block' and 'filesystem'."
        ));
    }
    if a.archive_path.is_some() && a.volume_mode.as_deref() == Some("block") {
        return Err("In archive upload the volume mode should always be filesystem".into());
    }
    if a.access_mode.as_deref() == Some("ReadOnlyMany") {
        return Err(
            "cannot upload to a readonly volume, use either ReadWriteOnce or ReadWriteMany if supported"
                .into(),
        );
    }
    if a.kind == "pvc" {
        return Err("image-upload pvc is not supported by kubevirt-rs yet: use image-upload dv".into());
    }
    Ok(())
}

/// Runs `image-upload`.
///
/// # Errors
/// Upstream's messages.
pub(crate) async fn run(c: &Cluster, a: Args) -> Result<(), Failure> {
    validate(&a)?;
    let path = a
        .image_path
        .clone()
        .or_else(|| a.archive_path.clone())
        .unwrap_or_default();
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let length = file.metadata().await.map_err(|e| e.to_string())?.len();
    drop(file);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), &c.namespace);
    let dvs: Api<DataVolume> = Api::namespaced(c.client.clone(), &c.namespace);
    match pvcs.get_opt(&a.name).await.map_err(|e| e.to_string())? {
        Some(pvc) => {
            if annotation(&pvc, POD_PHASE).as_deref() == Some("Succeeded") {
                return Err(format!(
                    "PVC {} already successfully imported/cloned/updated",
                    a.name
                ));
            }
            if a.archive_path.is_some() && annotation(&pvc, CONTENT_TYPE).as_deref() != Some("archive") {
                return Err(format!(
                    "PVC {} doesn't have archive contentType annotation",
                    a.name
                ));
            }
            if dvs.get_opt(&a.name).await.map_err(|e| e.to_string())?.is_none() {
                return Err(format!(
                    "No DataVolume is associated with the existing PVC {}/{}",
                    c.namespace, a.name
                ));
            }
            println!("Using existing PVC {}/{}", c.namespace, a.name);
        }
        None if a.no_create => return Err(format!("PVC {} not found", a.name)),
        None => {
            let Some(size) = a.size.clone() else {
                return Err("when creating a resource, the size must be specified".into());
            };
            let dv = new_datavolume(c, &a, &size)?;
            dvs.create(&PostParams::default(), &dv)
                .await
                .map_err(|e| e.to_string())?;
            println!("DataVolume {}/{} created", c.namespace, a.name);
        }
    }
    wait_ready(&dvs, &a).await?;
    let url = proxy_url(c, a.uploadproxy_url.clone()).await?;
    println!("Uploading data to {url}");
    let token = token(c, &a.name).await?;
    let client = http_client(c, a.insecure).await?;
    upload(c, &client, &url, token, &a, &path, length).await?;
    println!(
        "Uploading data completed successfully, waiting for processing to complete, you can hit ctrl-c without interrupting the progress"
    );
    let deadline = Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        let pvc = pvcs.get_opt(&a.name).await.map_err(|e| e.to_string())?;
        if pvc.as_ref().and_then(|p| annotation(p, POD_PHASE)).as_deref() == Some("Succeeded") {
            println!("Processing completed successfully");
            break;
        }
        if Instant::now() > deadline {
            println!(
                "Timed out waiting for post upload processing to complete, please check upload pod status for progress"
            );
            return Err("timed out".into());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!("Uploading {} completed successfully", path.display());
    Ok(())
}

fn new_datavolume(c: &Cluster, a: &Args, size: &str) -> Result<DataVolume, Failure> {
    let mut storage = json!({"resources": {"requests": {"storage": size}}});
    if let Some(sc) = &a.storage_class {
        storage["storageClassName"] = json!(sc);
    }
    if let Some(m) = &a.access_mode {
        storage["accessModes"] = json!([m]);
    }
    match a.volume_mode.as_deref() {
        Some("block") => storage["volumeMode"] = json!("Block"),
        Some("filesystem") => storage["volumeMode"] = json!("Filesystem"),
        _ => {}
    }
    let mut dv = json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": a.name, "namespace": c.namespace},
        "spec": {"source": {"upload": {}}, "storage": storage,
            "contentType": if a.archive_path.is_some() { "archive" } else { "kubevirt" }}});
    if a.force_bind {
        dv["metadata"]["annotations"] = json!({"cdi.kubevirt.io/storage.bind.immediate.requested": ""});
    }
    serde_json::from_value(dv).map_err(|e| e.to_string())
}

/// Waits (2 s polls, `--wait-secs`) for the DataVolume's upload server to be ready.
async fn wait_ready(dvs: &Api<DataVolume>, a: &Args) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(a.wait_secs);
    let mut said = false;
    loop {
        match dvs.get_opt(&a.name).await.map_err(|e| e.to_string())? {
            None => println!("DV {} not found... ", a.name),
            Some(dv) => {
                let phase = dv.status.and_then(|s| s.phase).unwrap_or_default();
                if matches!(phase.as_str(), "WaitForFirstConsumer" | "PendingPopulation") && !a.force_bind {
                    return Err(format!(
                        "cannot upload to DataVolume in {phase} phase, make sure the PVC is Bound, or use force-bind flag"
                    ));
                }
                if phase == "UploadReady" {
                    if said {
                        println!("Pod now ready");
                    }
                    return Ok(());
                }
                if !said {
                    println!("Waiting for PVC {} upload pod to be ready...", a.name);
                    said = true;
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out waiting for PVC {} upload pod to be ready",
                a.name
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn cdi_config(c: &Cluster) -> Option<CdiConfig> {
    Api::<CdiConfig>::all(c.client.clone())
        .get_opt("config")
        .await
        .ok()
        .flatten()
}

/// The proxy's URL: the flag, else CDIConfig's override, else its status; `https://` unless a scheme is given.
async fn proxy_url(c: &Cluster, flag: Option<String>) -> Result<String, Failure> {
    let url = match flag.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None => {
            let cfg = cdi_config(c).await;
            cfg.as_ref()
                .and_then(|c| c.spec.upload_proxy_url_override.clone())
                .or_else(|| {
                    cfg.as_ref()
                        .and_then(|c| c.status.as_ref())
                        .and_then(|s| s.upload_proxy_url.clone())
                })
                .filter(|u| !u.is_empty())
                .ok_or("uploadproxy URL not found")?
        }
    };
    Ok(if url.contains("://") {
        url
    } else {
        format!("https://{url}")
    })
}

/// An upload token for claim `name`.
async fn token(c: &Cluster, name: &str) -> Result<String, Failure> {
    let path = format!(
        "/apis/upload.cdi.kubevirt.io/v1beta1/namespaces/{}/uploadtokenrequests",
        c.namespace
    );
    let body = json!({"apiVersion": "upload.cdi.kubevirt.io/v1beta1", "kind": "UploadTokenRequest",
        "metadata": {"generateName": "token-for-virtctl-"}, "spec": {"pvcName": name}});
    let answer = c
        .post_for_body(&path, body.to_string().into_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    v.pointer("/status/token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "the UploadTokenRequest has no token".to_string())
}

type Https = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Body>;
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Accepts any certificate (`--insecure`).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn http_client(c: &Cluster, insecure: bool) -> Result<Https, Failure> {
    use rustls::pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let ca = cdi_config(c)
            .await
            .and_then(|c| c.status)
            .and_then(|s| s.upload_proxy_ca)
            .unwrap_or_default();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()).flatten() {
            let _ = roots.add(cert);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The upload endpoint: the async one when the proxy answers its HEAD with 200.
async fn endpoint(client: &Https, url: &str, token: &str) -> String {
    let base = url.trim_end_matches('/');
    let async_url = format!("{base}/v1beta1/upload-async");
    let probe = http::Request::head(&async_url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(empty());
    if let Ok(req) = probe
        && let Ok(resp) = client.request(req).await
        && resp.status() == http::StatusCode::OK
    {
        return async_url;
    }
    format!("{base}/v1beta1/upload")
}

/// The file as a request body, moving `bar` along.
async fn file_body(path: &std::path::Path, bar: indicatif::ProgressBar) -> Result<Body, Failure> {
    let file = tokio::fs::File::open(path).await.map_err(|e| e.to_string())?;
    let stream = futures_util::stream::unfold((file, bar), |(mut file, bar)| async move {
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                bar.inc(n as u64);
                Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), (file, bar)))
            }
            Err(e) => Some((Err(e), (file, bar))),
        }
    });
    Ok(BodyExt::boxed_unsync(http_body_util::StreamBody::new(
        stream.boxed(),
    )))
}

async fn upload(
    c: &Cluster,
    client: &Https,
    url: &str,
    mut token: String,
    a: &Args,
    path: &std::path::Path,
    length: u64,
) -> Result<(), Failure> {
    let bar = indicatif::ProgressBar::new(length);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bytes} / {total_bytes} [{wide_bar}] {percent}% {binary_bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    println!();
    let mut refreshes = 3;
    let mut last = String::new();
    for attempt in 0..a.retry.max(1) {
        if attempt > 0 {
            bar.set_position(0);
            tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 25)).await;
        }
        let target = endpoint(client, url, &token).await;
        let req = http::Request::post(&target)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(http::header::CONTENT_LENGTH, length)
            .body(file_body(path, bar.clone()).await?)
            .map_err(|e| e.to_string())?;
        let (code, err) = match client.request(req).await {
            Ok(resp) if resp.status() == http::StatusCode::OK => {
                bar.finish();
                println!();
                return Ok(());
            }
            Ok(resp) => {
                let code = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (
                    code,
                    format!(
                        "unexpected return value {code}, {}",
                        String::from_utf8_lossy(&body)
                    ),
                )
            }
            Err(e) => (0, e.to_string()),
        };
        last = err;
        if code == 401 {
            if attempt == 0 || refreshes == 0 {
                bar.abandon();
                return Err(format!("authentication failed: {last}"));
            }
            token = self::token(c, &a.name)
                .await
                .map_err(|e| format!("failed to get upload token: {e}"))?;
            refreshes -= 1;
        }
    }
    bar.abandon();
    println!();
    Err(format!("error uploading image after {} retries: {last}", a.retry))
}
