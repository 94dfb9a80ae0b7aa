//! Request metrics in the Prometheus text format at `/metrics`, named as kube-apiserver names them:
//! `apiserver_request_total{verb, group, resource, subresource, code}`.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The labels of one request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource, or "".
    pub subresource: String,
    /// HTTP status code.
    pub code: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let mut registry = Registry::default();
        registry.register(
            "apiserver_request",
            "Requests served, by verb, group, resource, subresource and HTTP code",
            requests.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
        }
    }
}

impl Metrics {
    /// Counts one request.
    pub fn request(&self, labels: &RequestLabels) {
        self.requests.get_or_create(labels).inc();
    }

    /// The text exposition.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_kube_apiservers_names() {
        let m = Metrics::default();
        let l = RequestLabels {
            verb: "create".into(),
            group: "kubevirt.io".into(),
            resource: "virtualmachineinstances".into(),
            subresource: String::new(),
            code: "201".into(),
        };
        m.request(&l);
        m.request(&l);
        let text = m.encode();
        assert!(
            text.contains(
                r#"apiserver_request_total{verb="create",group="kubevirt.io",resource="virtualmachineinstances",subresource="",code="201"} 2"#
            ),
            "{text}"
        );
    }
}
