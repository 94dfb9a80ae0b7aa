//! Validation as upstream's validating webhooks do it: every violation as a Kubernetes `StatusCause` whose `field`
//! is upstream's path (`spec.domain.devices.disks[1].name`), `reason` its cause type and `message` its text.

mod devices;
mod grace;
mod hotplug;
mod kinds;
mod network;
mod scheduling;
mod spec;
mod storage;
mod update;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;

use crate::config::ClusterConfig;
use crate::v1::VirtualMachineInstance;

pub use kinds::{
    datavolume, instancetype, migration_create, migration_policy, pool, preference, replicaset, vm,
    vm_instancetype,
};
pub use update::{
    KUBEVIRT_ACCOUNTS, NODE_NAME_EXTRA, handler_node_restriction, kubevirt_account, vmi as vmi_update,
};

/// `FieldValueInvalid`.
pub const INVALID: &str = "FieldValueInvalid";
/// `FieldValueRequired`.
pub const REQUIRED: &str = "FieldValueRequired";
/// `FieldValueNotSupported`.
pub const NOT_SUPPORTED: &str = "FieldValueNotSupported";
/// `FieldValueDuplicate`.
pub const DUPLICATE: &str = "FieldValueDuplicate";
/// `FieldValueNotFound`.
pub const NOT_FOUND: &str = "FieldValueNotFound";
/// `FieldValueForbidden`.
pub const FORBIDDEN: &str = "FieldValueForbidden";
/// `FieldValueTooMany`.
pub const TOO_MANY: &str = "FieldValueTooMany";

/// Most items a VMI list (disks, volumes, interfaces, networks, access credentials) may hold.
pub const MAX_LIST: usize = 256;

/// Collected violations.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Causes(pub Vec<StatusCause>);

impl Causes {
    /// Records one violation.
    pub fn push(&mut self, reason: &str, field: impl Into<String>, message: impl Into<String>) {
        let field: String = field.into();
        self.0.push(StatusCause {
            reason: Some(reason.to_string()),
            field: (!field.is_empty()).then_some(field),
            message: Some(message.into()),
        });
    }
    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Validates a VMI on create (after defaults).
#[must_use]
pub fn vmi_create(vmi: &VirtualMachineInstance, config: &ClusterConfig) -> Vec<StatusCause> {
    let mut c = Causes::default();
    network::feature_gates("spec", &vmi.spec, config, &mut c);
    spec::reserved_labels(vmi.metadata.labels.as_ref(), "metadata.labels", &mut c);
    spec::gated_annotations("metadata", vmi.metadata.annotations.as_ref(), config, &mut c);
    spec::vmi_spec("spec", &vmi.spec, config, &mut c);
    grace::annotations(
        "metadata",
        &vmi.spec,
        vmi.metadata.annotations.as_ref(),
        config,
        &mut c,
    );
    spec::memory_required(&vmi.spec, &mut c);
    storage::volumes_have_disks("spec", &vmi.spec, &mut c);
    devices::per_arch("spec", &vmi.spec, config, &mut c);
    devices::hyperv("spec", &vmi.spec, &mut c);
    network::discontinued_bindings("spec", &vmi.spec, &mut c);
    c.0
}

/// How many of `flags` are set (one-of rules: volume sources, bindings, probe handlers).
pub(crate) fn count(flags: &[bool]) -> usize {
    flags.iter().filter(|f| **f).count()
}

/// `true` if `s` is a DNS-1123 label; otherwise the Kubernetes error text.
pub(crate) fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if label_ok(s) {
        return Ok(());
    }
    if dns1123_subdomain(s).is_ok() {
        return Err("must not contain dots".into());
    }
    Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
}

fn label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `true` if `s` is a DNS-1123 subdomain; otherwise the Kubernetes error text.
pub(crate) fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    if s.split('.').all(label_ok) {
        return Ok(());
    }
    Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert_eq!(dns1123_label("web-1"), Ok(()));
        assert_eq!(dns1123_label("a.b"), Err("must not contain dots".into()));
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert_eq!(dns1123_subdomain("a.b-c.d"), Ok(()));
        assert!(dns1123_subdomain("A.b").is_err());
        assert!(dns1123_subdomain("a..b").is_err());
    }

    #[test]
    fn machine_type_globs() {
        assert!(spec::glob("q35*", "q35"));
        assert!(spec::glob("pc-q35*", "pc-q35-rhel9.6.0"));
        assert!(!spec::glob("q35*", "pc-i440fx"));
        assert!(spec::glob("virt*", "virt-9.2"));
        assert!(spec::glob("s390-ccw-virtio?", "s390-ccw-virtio2"));
    }
}
