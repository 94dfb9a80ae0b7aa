//! Errors as Kubernetes `metav1.Status` responses (kubectl, kube-rs and the Python client read `code` and `reason`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::ResourceType;

/// A request that failed, with the Status the client receives.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status, if any.
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// An admission webhook's refusal: its code (403 unless it said otherwise) and message.
    #[must_use]
    pub fn webhook_denied(code: u16, message: &str, reason: &str) -> Self {
        let code = if (400..600).contains(&code) { code } else { 403 };
        let mut e = Self::new(code, "Forbidden", message);
        if !reason.is_empty() {
            e.details = Some(serde_json::json!({"causes": [{"reason": reason, "message": message}]}));
        }
        e
    }

    /// 403 for `verb` on `rt` by `user`.
    #[must_use]
    pub fn forbidden(user: &str, verb: &str, rt: Option<&ResourceType>, namespace: Option<&str>) -> Self {
        let (res, group) = rt.map_or(("", ""), |t| (t.plural.as_str(), t.group.as_str()));
        Self::forbidden_for(user, verb, group, res, None, None, namespace)
    }

    /// 403 in kube-apiserver's words: `virtualmachines.subresources.kubevirt.io "vm" is forbidden: User "u" cannot
    /// update resource "virtualmachines/stop" in API group "subresources.kubevirt.io" in the namespace "ns"`.
    #[must_use]
    pub fn forbidden_for(
        user: &str,
        verb: &str,
        group: &str,
        res: &str,
        sub: Option<&str>,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        let scope = namespace
            .map(|n| format!(" in the namespace \"{n}\""))
            .unwrap_or_else(|| " at the cluster scope".into());
        let qualified = if group.is_empty() {
            res.to_string()
        } else {
            format!("{res}.{group}")
        };
        let subject = match name {
            Some(n) => format!("{qualified} \"{n}\""),
            None => qualified,
        };
        let full = match sub {
            Some(s) => format!("{res}/{s}"),
            None => res.to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{full}\" in API group \"{group}\"{scope}"
            ),
        )
    }

    /// 404 for a path the server does not serve.
    #[must_use]
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 for a missing object.
    #[must_use]
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 404 for a missing namespace.
    #[must_use]
    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    /// 405.
    #[must_use]
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 409 AlreadyExists.
    #[must_use]
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 409 Conflict on a stale resourceVersion.
    #[must_use]
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural}))
    }

    /// 409 for a server-side apply that would change fields other managers own.
    #[must_use]
    pub fn apply_conflict(rt: &ResourceType, name: &str, conflicts: &[crate::apply::Conflict]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"reason": "FieldManagerConflict", "field": c.field,
                    "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version)})
            })
            .collect();
        Self::new(409, "Conflict", crate::apply::conflict_message(conflicts))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}))
    }

    /// 410 Expired.
    #[must_use]
    pub fn expired(requested: i64, oldest: i64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 413.
    #[must_use]
    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// 415 listing what is accepted.
    #[must_use]
    pub fn unsupported_media(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    /// 422 with one cause per `(field, message, reason)`.
    #[must_use]
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(String, String, String)]) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(f, m, _)| {
                if f.is_empty() {
                    m.clone()
                } else {
                    format!("{f}: {m}")
                }
            })
            .collect();
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m, r)| {
                let mut c = json!({"reason": r, "message": m});
                if !f.is_empty() {
                    c["field"] = json!(f);
                }
                c
            })
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {}", summary.join(", ")),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// 500.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// 504 for a resourceVersion the server has not reached.
    #[must_use]
    pub fn too_large_rv(requested: i64) -> Self {
        Self::new(504, "Timeout", format!("Too large resource version: {requested}"))
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
    }

    /// The `metav1.Status` body.
    #[must_use]
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<apiserver_store::StoreError> for ApiError {
    fn from(e: apiserver_store::StoreError) -> Self {
        match e {
            apiserver_store::StoreError::Compacted { requested, compacted } => {
                Self::expired(requested, compacted)
            }
            apiserver_store::StoreError::FutureRevision { requested, .. } => Self::too_large_rv(requested),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}
