//! Authorization until RBAC objects are enforced: members of `system:masters` may do anything; every other
//! authenticated identity may read (`get`, `list`, `watch`) what Kubernetes' `view` role lets it read — not Secrets,
//! and not the subresources that reach into a workload (pod exec/attach/portforward/proxy; a VMI's console, VNC,
//! port-forward, USB redirection, VSOCK). One decision serves requests, SelfSubjectAccessReviews and
//! SubjectAccessReviews (which aggregated API servers such as virt-api send), including requests for aggregated
//! groups.

use serde_json::Value;

use crate::context::Identity;

/// What a request asks to do, as Kubernetes' authorizers see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, …
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource, if any (`status`, `console`, …).
    pub subresource: String,
    /// Namespace, if any.
    pub namespace: String,
}

/// Subresources that reach into a running workload: not readable with the view role.
const CONNECT: &[(&str, &str)] = &[
    ("", "exec"),
    ("", "attach"),
    ("", "portforward"),
    ("", "proxy"),
    ("subresources.kubevirt.io", "console"),
    ("subresources.kubevirt.io", "vnc"),
    ("subresources.kubevirt.io", "portforward"),
    ("subresources.kubevirt.io", "usbredir"),
    ("subresources.kubevirt.io", "vsock"),
];

/// Whether `id` may do `a`; the reason either way.
#[must_use]
pub fn decide(id: &Identity, a: &Attributes) -> (bool, String) {
    if id.can_write {
        return (true, format!("{} is in system:masters", id.user));
    }
    if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
        return (false, format!("{} may only read", id.user));
    }
    if a.group.is_empty() && a.resource == "secrets" {
        return (false, format!("{} may not read secrets", id.user));
    }
    if CONNECT.iter().any(|(g, s)| *g == a.group && *s == a.subresource) {
        return (
            false,
            format!("{} may not connect to {}/{}", id.user, a.resource, a.subresource),
        );
    }
    (true, format!("{} may read", id.user))
}

/// The attributes of a review's `spec.resourceAttributes` (or `nonResourceAttributes`: only the verb counts).
#[must_use]
pub fn from_review(spec: &Value) -> Option<Attributes> {
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if spec.get("resourceAttributes").is_some() {
        return Some(Attributes {
            verb: s("/resourceAttributes/verb"),
            group: s("/resourceAttributes/group"),
            resource: s("/resourceAttributes/resource"),
            subresource: s("/resourceAttributes/subresource"),
            namespace: s("/resourceAttributes/namespace"),
        })
        .filter(|a| !a.verb.is_empty());
    }
    let verb = s("/nonResourceAttributes/verb");
    (!verb.is_empty()).then(|| Attributes {
        verb,
        ..Attributes::default()
    })
}

/// The identity a SubjectAccessReview asks about (`spec.user`, `spec.groups`).
#[must_use]
pub fn subject(spec: &Value) -> Identity {
    let user = spec
        .get("user")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    Identity {
        can_write: groups.iter().any(|g| g == "system:masters"),
        user,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(verb: &str, group: &str, resource: &str, sub: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: "default".into(),
        }
    }

    #[test]
    fn viewers_read_but_do_not_connect_or_see_secrets() {
        let view = Identity {
            user: "v".into(),
            groups: vec!["kvbox:view".into()],
            can_write: false,
        };
        assert!(decide(&view, &a("get", "kubevirt.io", "virtualmachines", "")).0);
        assert!(
            decide(
                &view,
                &a(
                    "get",
                    "subresources.kubevirt.io",
                    "virtualmachineinstances",
                    "guestosinfo"
                )
            )
            .0
        );
        assert!(
            !decide(
                &view,
                &a(
                    "get",
                    "subresources.kubevirt.io",
                    "virtualmachineinstances",
                    "console"
                )
            )
            .0
        );
        assert!(
            !decide(
                &view,
                &a("update", "subresources.kubevirt.io", "virtualmachines", "start")
            )
            .0
        );
        assert!(!decide(&view, &a("list", "", "secrets", "")).0);
        assert!(!decide(&view, &a("create", "", "pods", "exec")).0);
        assert!(decide(&Identity::admin(), &a("get", "", "secrets", "")).0);
    }

    #[test]
    fn reviews_name_their_subject_and_attributes() {
        let spec = serde_json::json!({"user": "alice", "groups": ["system:masters"],
            "resourceAttributes": {"verb": "update", "group": "subresources.kubevirt.io",
                "resource": "virtualmachines", "subresource": "start", "namespace": "ns"}});
        let who = subject(&spec);
        assert!(who.can_write);
        let attrs = from_review(&spec).unwrap();
        assert_eq!(attrs.subresource, "start");
        assert!(from_review(&serde_json::json!({"resourceAttributes": {}})).is_none());
    }
}
