//! An import's progress, read as CDI's controller reads it: the importer pod's
//! `kubevirt_cdi_import_progress_total{ownerUID="<dv uid>"}` from its metrics port (8443), with a 2 s timeout,
//! rendered as `status.progress` (`"45.12%"`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use k8s_openapi::api::core::v1::Pod;

/// The progress in `metrics` (Prometheus' text format) for `owner`, as `status.progress` shows it.
#[must_use]
pub(super) fn parse(metrics: &str, owner: &str) -> Option<String> {
    let label = format!("ownerUID=\"{owner}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("kubevirt_cdi_import_progress_total{") && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| format!("{:.2}%", v.clamp(0.0, 100.0)))
}

/// Scrapes the importer `pod` (once it has an IP) for `owner`'s progress.
pub(super) async fn scrape(pod: Option<&Pod>, owner: &str) -> Option<String> {
    let ip = pod?.status.as_ref()?.pod_ip.as_deref()?;
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{host}:8443/metrics").parse().ok()?;
    let fetch = async {
        let resp = client.get(uri).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(2), fetch).await.ok()??;
    parse(&text, owner)
}
