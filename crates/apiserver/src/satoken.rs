//! Service account tokens: the TokenRequest subresource (`POST …/serviceaccounts/NAME/token`) mints a JWT signed
//! with the server's key (HS256; `sa.key` in the data dir), with kube-apiserver's claims; a bearer token that is such
//! a JWT authenticates as `system:serviceaccount:NS:NAME` while it is unexpired and the account (same uid) exists.
//! Written by hand: a JWT here is three base64url parts and one HMAC, which `ring` provides.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::status::ApiError;

/// The issuer and default audience kube-apiserver uses.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Shortest lifetime a TokenRequest may ask for.
const MIN_SECONDS: i64 = 600;
/// Lifetime when none is asked for.
const DEFAULT_SECONDS: i64 = 3600;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Namespace.
    pub namespace: String,
    /// Account name.
    pub name: String,
    /// Account uid.
    pub uid: String,
}

/// A signed token for the account, valid from `now` for `seconds`.
#[must_use]
pub fn mint(key: &[u8], sub: &Subject, audiences: &[String], seconds: i64, now: i64) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({
        "aud": audiences,
        "exp": now + seconds,
        "iat": now,
        "nbf": now,
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{}:{}", sub.namespace, sub.name),
        "kubernetes.io": {"namespace": sub.namespace, "serviceaccount": {"name": sub.name, "uid": sub.uid}},
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", b64(tag.as_ref()))
}

/// The subject of a token this server signed, if its signature holds and it has not expired at `now`.
#[must_use]
pub fn verify(key: &[u8], token: &str, now: i64) -> Option<Subject> {
    if key.is_empty() {
        return None;
    }
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    ring::hmac::verify(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        format!("{h}.{c}").as_bytes(),
        &sig,
    )
    .ok()?;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
    if now >= exp || now < nbf {
        return None;
    }
    let k = claims.get("kubernetes.io")?;
    Some(Subject {
        namespace: k.get("namespace")?.as_str()?.to_string(),
        name: k.pointer("/serviceaccount/name")?.as_str()?.to_string(),
        uid: k.pointer("/serviceaccount/uid")?.as_str()?.to_string(),
    })
}

/// The uid of the stored account `ns/name`.
///
/// # Errors
/// Store failures.
pub fn account_uid(store: &apiserver_store::Store, ns: &str, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = crate::object_store::Resource::core("serviceaccounts").get(store, Some(ns), name)? else {
        return Ok(None);
    };
    Ok(v.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// `POST …/serviceaccounts/NAME/token`: a TokenRequest answered with its `status.token`.
///
/// # Errors
/// 404 for a missing account, 400/422 for a bad request body.
pub fn request(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let ns = ctx.path.namespace.clone().unwrap_or_default();
    let name = ctx.path.name.clone().unwrap_or_default();
    let mut req = crate::context::decode_body(&ctx.headers, body)?;
    let uid =
        account_uid(&ctx.state.store, &ns, &name)?.ok_or_else(|| ApiError::not_found(&ctx.rt, &name))?;
    let seconds = req
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_SECONDS);
    if seconds < MIN_SECONDS {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            &name,
            &[(
                "spec.expirationSeconds".into(),
                format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
                "FieldValueInvalid".into(),
            )],
        ));
    }
    let audiences: Vec<String> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_string()]);
    let now = jiff::Timestamp::now().as_second();
    let sub = Subject {
        namespace: ns.clone(),
        name: name.clone(),
        uid,
    };
    let token = mint(&ctx.state.sa_key, &sub, &audiences, seconds, now);
    let expires = jiff::Timestamp::from_second(now + seconds)
        .map(|t| t.to_string())
        .unwrap_or_default();
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    req["spec"]["audiences"] = json!(audiences);
    req["spec"]["expirationSeconds"] = json!(seconds);
    req["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(crate::context::json(StatusCode::CREATED, &req))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let sub = Subject {
            namespace: "ns".into(),
            name: "default".into(),
            uid: "u1".into(),
        };
        let t = mint(b"key", &sub, &[ISSUER.to_string()], 600, 1000);
        assert_eq!(verify(b"key", &t, 1500), Some(sub));
        assert_eq!(verify(b"key", &t, 1600), None);
        assert_eq!(verify(b"other", &t, 1500), None);
        assert_eq!(verify(b"", &t, 1500), None);
        let mut forged = t.clone();
        forged.push('x');
        assert_eq!(verify(b"key", &forged, 1500), None);
        assert_eq!(verify(b"key", "not-a-jwt", 1500), None);
    }
}
