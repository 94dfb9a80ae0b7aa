//! CDI's `upload.cdi.kubevirt.io/v1beta1` UploadTokenRequest, served beside the subresources: a caller allowed to
//! `create uploadtokenrequests` in a namespace gets a token for one claim's upload, valid five minutes, which the
//! upload proxy checks ([`Tokens::verify`]). Nothing is stored.
//!
//! The token is a compact JWS with upstream's claims (issuer `cdi-apiserver`, `iat`/`nbf`/`exp`, `operation: Upload`,
//! `name`, `namespace`, `resource` = core/v1 persistentvolumeclaims). Upstream signs with PS256 (an RSA key); here
//! it is ES256 (a P-256 key), which `ring` signs and verifies: no client reads the token, only the proxy does.

use std::sync::Arc;

use base64::Engine as _;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

use crate::status::Failure;

/// The API group.
pub const GROUP: &str = "upload.cdi.kubevirt.io";
/// Its version.
pub const VERSION: &str = "v1beta1";
/// How long a token lasts.
pub const LIFETIME_SECS: i64 = 300;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token, or signed by someone else: 401.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Expired or not yet valid: 401.
    #[error("token expired")]
    Expired,
    /// A token for something else: 400.
    #[error("invalid token: not an upload token for a PersistentVolumeClaim")]
    WrongOperation,
}

/// What an upload token allows: uploading into this claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The claim's namespace.
    pub namespace: String,
    /// The claim.
    pub name: String,
}

/// Signs and checks upload tokens with one P-256 key.
pub struct Tokens {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Tokens {
    /// From a PKCS#8 P-256 private key (DER).
    ///
    /// # Errors
    /// The key is not a P-256 PKCS#8 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Arc<Self>, crate::Error> {
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| crate::Error::Setup(format!("the upload token key: {e}")))?;
        Ok(Arc::new(Self { key, rng }))
    }

    /// A token for uploading into `namespace/name`, issued at `iat` (seconds).
    ///
    /// # Errors
    /// Signing failed.
    pub fn sign(&self, namespace: &str, name: &str, iat: i64) -> Result<String, crate::Error> {
        let header = json!({"alg": "ES256", "typ": "JWT"});
        let claims = json!({"iss": "cdi-apiserver", "iat": iat, "nbf": iat - 60, "exp": iat + LIFETIME_SECS,
            "operation": "Upload", "name": name, "namespace": namespace,
            "resource": {"group": "", "version": "v1", "resource": "persistentvolumeclaims"}});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| crate::Error::Setup(format!("signing a token: {e}")))?;
        Ok(format!("{input}.{}", b64(sig.as_ref())))
    }

    /// What `token` allows at `at` (seconds).
    ///
    /// # Errors
    /// [`TokenError`] says why it is refused.
    pub fn verify(&self, token: &str, at: i64) -> Result<Grant, TokenError> {
        let bad = |m: &str| TokenError::Invalid(m.to_string());
        let mut parts = token.trim().split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not a compact JWS"));
        };
        let decode = |p: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| bad("bad encoding"))
        };
        let sig = decode(s)?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| bad("signature does not match"))?;
        let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| bad("header"))?;
        if header["alg"] != "ES256" {
            return Err(bad("unexpected algorithm"));
        }
        let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| bad("claims"))?;
        let (Some(nbf), Some(exp)) = (claims["nbf"].as_i64(), claims["exp"].as_i64()) else {
            return Err(bad("no validity"));
        };
        if at < nbf || at >= exp {
            return Err(TokenError::Expired);
        }
        let resource = &claims["resource"];
        if claims["operation"] != "Upload"
            || resource["resource"] != "persistentvolumeclaims"
            || resource["group"] != ""
        {
            return Err(TokenError::WrongOperation);
        }
        let field = |k: &str| {
            claims[k]
                .as_str()
                .map(str::to_string)
                .ok_or(TokenError::WrongOperation)
        };
        Ok(Grant {
            namespace: field("namespace")?,
            name: field("name")?,
        })
    }
}

/// The group's discovery documents: the APIGroup and the version's resource list.
#[must_use]
pub fn discovery(version_only: bool) -> Value {
    if version_only {
        return json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
            "resources": [{"name": "uploadtokenrequests", "singularName": "uploadtokenrequest", "namespaced": true,
                "kind": "UploadTokenRequest", "verbs": ["create"], "shortNames": ["utr", "utrs"]}]});
    }
    let v = json!({"groupVersion": format!("{GROUP}/{VERSION}"), "version": VERSION});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [v.clone()], "preferredVersion": v})
}

/// `POST …/namespaces/{ns}/uploadtokenrequests`: the request back, named, with `status.token`.
///
/// # Errors
/// 400 for a request without `spec.pvcName`; 500 when no key is configured.
pub fn create(tokens: Option<&Tokens>, ns: &str, body: &[u8]) -> Result<Value, Failure> {
    let Some(tokens) = tokens else {
        return Err(Failure::internal(
            "upload tokens are not configured on this server",
        ));
    };
    let mut req: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("invalid UploadTokenRequest: {e}")))?;
    let Some(pvc) = req
        .pointer("/spec/pvcName")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
    else {
        return Err(Failure::bad_request(
            "UploadTokenRequest spec.pvcName is required",
        ));
    };
    let token = tokens
        .sign(ns, &pvc, now())
        .map_err(|e| Failure::internal(e.to_string()))?;
    let meta = req["metadata"].as_object().cloned().unwrap_or_default();
    let mut meta = Value::Object(meta);
    if meta["name"].as_str().is_none_or(str::is_empty) {
        let prefix = meta["generateName"].as_str().unwrap_or("token-").to_string();
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(5)
            .collect();
        meta["name"] = json!(format!("{prefix}{suffix}"));
    }
    meta["namespace"] = json!(ns);
    meta["creationTimestamp"] = json!(
        jiff::Timestamp::from_second(now())
            .map(|t| t.to_string())
            .unwrap_or_default()
    );
    req["metadata"] = meta;
    req["apiVersion"] = json!(format!("{GROUP}/{VERSION}"));
    req["kind"] = json!("UploadTokenRequest");
    req["status"] = json!({"token": token});
    Ok(req)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tokens() -> Arc<Tokens> {
        let rng = ring::rand::SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Tokens::from_pkcs8(der.as_ref()).unwrap()
    }

    #[test]
    fn a_token_grants_its_claim_for_five_minutes() {
        let t = tokens();
        let token = t.sign("ns", "disk", 1000).unwrap();
        let grant = Grant {
            namespace: "ns".into(),
            name: "disk".into(),
        };
        assert_eq!(t.verify(&token, 1000), Ok(grant.clone()));
        assert_eq!(t.verify(&token, 1299), Ok(grant));
        assert_eq!(t.verify(&token, 1300), Err(TokenError::Expired));
        // Another key's token, or a tampered one, is refused.
        assert!(matches!(
            tokens().verify(&token, 1000),
            Err(TokenError::Invalid(_))
        ));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = b64(br#"{"operation":"Upload","name":"other","namespace":"ns","nbf":0,"exp":9999999999}"#);
        assert!(matches!(
            t.verify(&parts.join("."), 1000),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(t.verify("garbage", 1000), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn a_request_comes_back_named_with_its_token() {
        let t = tokens();
        let body = br#"{"apiVersion":"upload.cdi.kubevirt.io/v1beta1","kind":"UploadTokenRequest","metadata":{"generateName":"token-for-virtctl-"},"spec":{"pvcName":"disk"}}"#;
        let out = create(Some(&t), "ns", body).unwrap();
        assert!(
            out["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("token-for-virtctl-")
        );
        let token = out["status"]["token"].as_str().unwrap();
        assert_eq!(t.verify(token, now()).unwrap().name, "disk");
        assert!(create(Some(&t), "ns", br#"{"spec":{}}"#).is_err());
    }
}
