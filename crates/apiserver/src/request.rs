//! Turning a request path and query into what is asked for (Kubernetes' `RequestInfo`).

use std::collections::HashMap;

use crate::status::ApiError;

/// What a resource path names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group (`""` for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`), if any.
    pub subresource: Option<String>,
}

/// A parsed request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/G`.
    Group(String),
    /// `/api/v1` or `/apis/G/V`.
    GroupVersion(String, String),
    /// A resource, collection or object.
    Resource(ResourcePath),
}

/// Parses `/api/...` and `/apis/...` paths.
///
/// # Errors
/// 404 for paths that are not API paths.
pub fn parse_path(path: &str) -> Result<Target, ApiError> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Ok(Target::CoreVersions),
        ["apis"] => return Ok(Target::Groups),
        ["apis", g] => return Ok(Target::Group((*g).to_string())),
        ["api", v] => return Ok(Target::GroupVersion(String::new(), (*v).to_string())),
        ["apis", g, v] => return Ok(Target::GroupVersion((*g).to_string(), (*v).to_string())),
        ["api", v, rest @ ..] => (String::new(), (*v).to_string(), rest),
        ["apis", g, v, rest @ ..] => ((*g).to_string(), (*v).to_string(), rest),
        _ => return Err(ApiError::no_route()),
    };
    let mut rest: &[&str] = rest;
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some((*n).to_string()), None),
        [r, n, s] => (*r, Some((*n).to_string()), Some((*s).to_string())),
        _ => return Err(ApiError::no_route()),
    };
    if resource == "namespaces" {
        namespace = None;
    }
    Ok(Target::Resource(ResourcePath {
        group,
        version,
        namespace,
        resource: resource.to_string(),
        name,
        subresource: sub,
    }))
}

/// Query parameters, last value winning.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    /// Parses a raw query string.
    ///
    /// # Errors
    /// 400 for undecodable queries.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = match raw {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?,
            None => Vec::new(),
        };
        Ok(Self(pairs.into_iter().collect()))
    }

    /// A parameter's value.
    #[must_use]
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean parameter, parsed like Go's `strconv.ParseBool` (Python sends `watch=True`).
    ///
    /// # Errors
    /// 400 for values ParseBool rejects.
    pub fn flag(&self, k: &str) -> Result<bool, ApiError> {
        match self.get(k) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid boolean value for {k}: {other:?}"
            ))),
        }
    }

    /// An integer parameter.
    ///
    /// # Errors
    /// 400 when not an integer.
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?}")))
            })
            .transpose()
    }
}

/// The authorization verb of a request (kube-apiserver's RequestInfo).
pub(crate) fn request_verb(method: &axum::http::Method, named: bool, watching: bool) -> &'static str {
    match (method, named) {
        (&axum::http::Method::GET | &axum::http::Method::HEAD, true) => "get",
        (&axum::http::Method::GET | &axum::http::Method::HEAD, false) if watching => "watch",
        (&axum::http::Method::GET | &axum::http::Method::HEAD, false) => "list",
        (&axum::http::Method::POST, _) => "create",
        (&axum::http::Method::PUT, _) => "update",
        (&axum::http::Method::PATCH, _) => "patch",
        (&axum::http::Method::DELETE, true) => "delete",
        (&axum::http::Method::DELETE, false) => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> ResourcePath {
        match parse_path(p).unwrap() {
            Target::Resource(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("/api").unwrap(), Target::CoreVersions);
        assert_eq!(
            parse_path("/apis/kubevirt.io/v1").unwrap(),
            Target::GroupVersion("kubevirt.io".into(), "v1".into())
        );
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            (Some("default"), "pods", Some("web"), Some("status"))
        );
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("kube-system"))
        );
        let r = res("/api/v1/namespaces/ns1/status");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("ns1"), Some("status"))
        );
        let r = res("/apis/kubevirt.io/v1/virtualmachineinstances");
        assert_eq!(
            (r.group.as_str(), r.namespace, r.name),
            ("kubevirt.io", None, None)
        );
        assert!(parse_path("/healthz/x").is_err());
        assert!(parse_path("/api/v1/pods/a/b/c/d").is_err());
    }

    #[test]
    fn go_booleans() {
        let q = Query::parse(Some("watch=True&x=0&limit=500&bad=maybe")).unwrap();
        assert!(q.flag("watch").unwrap());
        assert!(!q.flag("x").unwrap());
        assert!(!q.flag("absent").unwrap());
        assert!(q.flag("bad").is_err());
        assert_eq!(q.int("limit").unwrap(), Some(500));
    }
}
