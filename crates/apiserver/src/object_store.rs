//! Objects in the store by what they are — group, resource, namespace, name — rather than by key: the one place a
//! store key is spelled (`/registry/<group, or core>/<resource>/[<namespace>/]<name>`, etcd's layout as
//! kube-apiserver writes it), and reads that decode.

use apiserver_store::{ListOptions, Store};
use serde_json::Value;

use crate::status::ApiError;

/// Where the objects of one resource live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource<'a> {
    /// The API group (`""`: core).
    pub group: &'a str,
    /// The resource (plural).
    pub plural: &'a str,
}

impl<'a> Resource<'a> {
    /// A core (`v1`) resource.
    #[must_use]
    pub const fn core(plural: &'a str) -> Self {
        Self { group: "", plural }
    }

    /// A resource of `group`.
    #[must_use]
    pub const fn of(group: &'a str, plural: &'a str) -> Self {
        Self { group, plural }
    }

    /// The key prefix of all its objects (events.k8s.io Events are a view of the core Events: one store).
    #[must_use]
    pub fn prefix(&self) -> String {
        let core = self.group.is_empty() || (self.group == "events.k8s.io" && self.plural == "events");
        let group = if core { "core" } else { self.group };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The key of one object (`namespace`: `None` for cluster-scoped ones).
    #[must_use]
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{}{ns}/{name}", self.prefix()),
            None => format!("{}{name}", self.prefix()),
        }
    }

    /// One object, decoded.
    ///
    /// # Errors
    /// Store failures; 500 for a stored object that does not decode.
    pub fn get(&self, store: &Store, namespace: Option<&str>, name: &str) -> Result<Option<Value>, ApiError> {
        store
            .get(&self.key(namespace, name))?
            .map(|kv| serde_json::from_slice(&kv.value).map_err(ApiError::internal))
            .transpose()
    }

    /// Every object of the resource, decoded.
    ///
    /// # Errors
    /// As [`Resource::get`].
    pub fn list(&self, store: &Store) -> Result<Vec<Value>, ApiError> {
        store
            .list(&self.prefix(), &ListOptions::default())?
            .items
            .iter()
            .map(|kv| serde_json::from_slice(&kv.value).map_err(ApiError::internal))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_apiservers_layout() {
        assert_eq!(
            Resource::core("pods").key(Some("default"), "p"),
            "/registry/core/pods/default/p"
        );
        assert_eq!(
            Resource::of("apiextensions.k8s.io", "customresourcedefinitions").key(None, "vms.kubevirt.io"),
            "/registry/apiextensions.k8s.io/customresourcedefinitions/vms.kubevirt.io"
        );
        assert_eq!(
            Resource::of("events.k8s.io", "events").prefix(),
            "/registry/core/events/"
        );
    }
}
