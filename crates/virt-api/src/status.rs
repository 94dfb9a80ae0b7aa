//! Replies in upstream virt-api's shapes: Kubernetes `Status` objects built as apimachinery's constructors build them
//! (NotFound, Conflict "Operation cannot be fulfilled on …", BadRequest, InternalError, Forbidden) with the HTTP code
//! of the status; and the plain-text 500 that upstream's guest-agent and screenshot GETs answer every failure with.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status and `Status.code`.
    pub code: u16,
    /// `Status.reason`.
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details` (name, group, kind, causes).
    pub details: Option<Value>,
    /// Answer as plain text instead of a Status (upstream's GET handlers).
    pub plain: bool,
}

/// `virtualmachine` or `virtualmachineinstance`.
pub type Kind = &'static str;

fn details(kind: Kind, name: &str) -> Value {
    json!({"name": name, "group": "kubevirt.io", "kind": kind})
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            plain: false,
        }
    }

    /// 404: `virtualmachine.kubevirt.io "NAME" not found`.
    #[must_use]
    pub fn not_found(kind: Kind, name: &str) -> Self {
        let mut f = Self::new(
            404,
            "NotFound",
            format!("{kind}.kubevirt.io \"{name}\" not found"),
        );
        f.details = Some(details(kind, name));
        f
    }

    /// 409: `Operation cannot be fulfilled on virtualmachine.kubevirt.io "NAME": MSG`.
    #[must_use]
    pub fn conflict(kind: Kind, name: &str, msg: &str) -> Self {
        let mut f = Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {kind}.kubevirt.io \"{name}\": {msg}"),
        );
        f.details = Some(details(kind, name));
        f
    }

    /// 400 with the bare message.
    #[must_use]
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    /// 500: `Internal error occurred: MSG`.
    #[must_use]
    pub fn internal(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        let mut f = Self::new(500, "InternalError", format!("Internal error occurred: {msg}"));
        f.details = Some(json!({"causes": [{"message": msg}]}));
        f
    }

    /// 403: `virtualmachineinstance.kubevirt.io "NAME" is forbidden: MSG`.
    #[must_use]
    pub fn forbidden(kind: Kind, name: &str, msg: &str) -> Self {
        let mut f = Self::new(
            403,
            "Forbidden",
            format!("{kind}.kubevirt.io \"{name}\" is forbidden: {msg}"),
        );
        f.details = Some(details(kind, name));
        f
    }

    /// 401 in plain text (upstream's authorizer denial).
    #[must_use]
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        let mut f = Self::new(401, "Unauthorized", msg);
        f.plain = true;
        f
    }

    /// The same failure as upstream's GET handlers answer it: 500, the message as plain text.
    #[must_use]
    pub fn as_plain_500(mut self) -> Self {
        self.code = 500;
        self.plain = true;
        self
    }

    /// The Kubernetes API's own failure (a Status from it is passed on as it is).
    #[must_use]
    pub fn from_kube(e: &kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => Self {
                code: s.code,
                reason: match s.code {
                    400 => "BadRequest",
                    403 => "Forbidden",
                    404 => "NotFound",
                    409 => "Conflict",
                    422 => "Invalid",
                    _ => "InternalError",
                },
                message: s.message.clone(),
                details: None,
                plain: false,
            },
            e => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = if self.plain {
            (code, self.message).into_response()
        } else {
            let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code});
            if let Some(d) = self.details {
                body["details"] = d;
            }
            (code, axum::Json(body)).into_response()
        };
        resp.headers_mut()
            .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        if self.plain {
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        resp
    }
}

/// A request's outcome.
pub type Reply = Result<Response, Failure>;

/// 202 with an empty body (VM lifecycle requests).
#[must_use]
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// 200 with an empty body (VMI requests done by the handler).
#[must_use]
pub fn ok() -> Response {
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_apimachinerys() {
        assert_eq!(
            Failure::conflict(
                "virtualmachine",
                "vm1",
                "Always does not support manual start requests"
            )
            .message,
            "Operation cannot be fulfilled on virtualmachine.kubevirt.io \"vm1\": Always does not support manual start requests"
        );
        assert_eq!(
            Failure::not_found("virtualmachineinstance", "x").message,
            "virtualmachineinstance.kubevirt.io \"x\" not found"
        );
        assert_eq!(Failure::internal("boom").message, "Internal error occurred: boom");
        let plain = Failure::conflict("virtualmachineinstance", "x", "VMI is not running").as_plain_500();
        assert_eq!((plain.code, plain.plain), (500, true));
    }
}
