//! The one dispatcher every API request goes through: the router, authorization, and the verb's handler.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::context::{Ctx, Identity, Shared};
use crate::request::{Query, Target, parse_path, request_verb};
use crate::status::ApiError;
use crate::{crud, delete, discovery, patch, watch};

/// The API router (no TLS or authentication: [`crate::server`] adds those).
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/version", get(discovery::version))
        .route("/version/", get(discovery::version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(state): State<Shared>| async move { state.metrics.encode() }),
        )
        .route("/openapi/v3", get(crate::openapi::index))
        .route("/openapi/v3/{*rest}", get(crate::openapi::group_version))
        .fallback(dispatch)
        .with_state(state)
}

async fn dispatch(State(state): State<Shared>, req: Request) -> Response {
    match handle(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: Shared, req: Request) -> Result<Response, ApiError> {
    let identity = req
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or_else(Identity::admin);
    if let Some(backend) = crate::aggregator::backend(&state, req.uri().path())? {
        let watching = Query::parse(req.uri().query())?.flag("watch").unwrap_or(false);
        let attrs = crate::aggregator::attributes(req.method(), req.uri().path(), watching);
        // The group-version's discovery document is for everyone; its resources are authorized here.
        if !attrs.resource.is_empty() && !crate::authz::decide(&identity, &attrs).0 {
            let ns = (!attrs.namespace.is_empty()).then_some(attrs.namespace.as_str());
            let sub = (!attrs.subresource.is_empty()).then_some(attrs.subresource.as_str());
            let name = req
                .uri()
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(if ns.is_some() { 6 } else { 4 });
            return Err(ApiError::forbidden_for(
                &identity.user,
                &attrs.verb,
                &attrs.group,
                &attrs.resource,
                sub,
                name,
                ns,
            ));
        }
        return Ok(crate::aggregator::proxy(backend, &identity, req).await);
    }
    let (parts, body) = req.into_parts();
    let target = parse_path(parts.uri.path())?;
    let query = Query::parse(parts.uri.query())?;
    let path = match target {
        Target::Resource(p) => p,
        other => {
            if parts.method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            let aggregated = match &other {
                Target::Groups | Target::Group(_) => {
                    crate::aggregator::groups(&state, discovery::wants_aggregated(&parts.headers)).await
                }
                _ => Vec::new(),
            };
            return discovery::serve(&state, &other, &parts.headers, &aggregated);
        }
    };
    let rt = state
        .registry
        .lookup(&path.group, &path.version, &path.resource)
        .ok_or_else(ApiError::no_route)?;
    if !rt.namespaced && path.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    // Reviews are questions, not writes; asking about oneself needs no permission.
    let review = rt.group == "authorization.k8s.io" || rt.group == "authentication.k8s.io";
    let self_review = review && rt.plural.starts_with("self");
    let write = !matches!(parts.method, Method::GET | Method::HEAD) && !review;
    let watching = query.flag("watch").unwrap_or(false);
    let verb = request_verb(&parts.method, path.name.is_some(), watching);
    let attrs = crate::authz::Attributes {
        verb: verb.to_string(),
        group: rt.group.clone(),
        resource: rt.plural.clone(),
        subresource: path.subresource.clone().unwrap_or_default(),
        namespace: path.namespace.clone().unwrap_or_default(),
    };
    if !self_review && !crate::authz::decide(&identity, &attrs).0 {
        return Err(ApiError::forbidden_for(
            &identity.user,
            verb,
            &rt.group,
            &rt.plural,
            path.subresource.as_deref(),
            path.name.as_deref(),
            path.namespace.as_deref(),
        ));
    }
    let body = if write || review {
        read_body(body).await?
    } else {
        Bytes::new()
    };
    let warning = rt.deprecation_warning.clone();
    let ctx = Ctx {
        state,
        rt,
        path,
        query,
        headers: parts.headers,
        identity: identity.clone(),
    };
    let mut labels = crate::metrics::RequestLabels {
        verb: verb.to_string(),
        group: ctx.rt.group.clone(),
        resource: ctx.rt.plural.clone(),
        subresource: ctx.path.subresource.clone().unwrap_or_default(),
        code: String::new(),
    };
    let metrics_state = ctx.state.clone();
    let routed = route(ctx, &parts.method, body).await;
    labels.code = match &routed {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => e.code.to_string(),
    };
    metrics_state.metrics.request(&labels);
    let mut resp = routed?;
    if let Some(w) = warning
        && let Ok(v) = header::HeaderValue::from_str(&format!("299 - \"{w}\""))
    {
        resp.headers_mut().append(header::WARNING, v);
    }
    Ok(resp)
}

async fn route(ctx: Ctx, method: &Method, body: Bytes) -> Result<Response, ApiError> {
    let has_name = ctx.path.name.is_some();
    let sub = ctx.path.subresource.clone();
    match (method, has_name, sub.as_deref()) {
        (&Method::GET, false, None) if ctx.query.flag("watch")? => watch::watch(ctx).await,
        (&Method::GET, false, None) => crud::list(&ctx),
        (&Method::GET, true, None | Some("status")) => crud::get(&ctx),
        (&Method::GET, true, Some("scale")) => crate::scale::get(&ctx),
        (&Method::POST, false, None) if ctx.rt.group == "authorization.k8s.io" => {
            crud::access_review(&ctx, &body)
        }
        (&Method::POST, false, None) if ctx.rt.group == "authentication.k8s.io" => crud::self_review(&ctx),
        (&Method::GET | &Method::HEAD, _, _) => Err(ApiError::method_not_allowed()),
        _ => {
            // Writes wait for their group fsync: off the async workers, so many can wait on one fsync together.
            let method = method.clone();
            tokio::task::spawn_blocking(move || route_write(&ctx, &method, &body))
                .await
                .map_err(|e| ApiError::internal(format!("write task failed: {e}")))?
        }
    }
}

fn route_write(ctx: &Ctx, method: &Method, body: &Bytes) -> Result<Response, ApiError> {
    let (ctx, body) = (ctx, body.clone());
    let has_name = ctx.path.name.is_some();
    let sub = ctx.path.subresource.clone();
    match (method, has_name, sub.as_deref()) {
        (&Method::POST, false, None) => crud::create(ctx, &body),
        (&Method::PUT, true, None | Some("status")) => crud::update(ctx, &body),
        (&Method::PATCH, true, None | Some("status")) => patch::patch(ctx, &body),
        (&Method::POST, true, Some("binding")) => crud::bind(ctx, &body),
        (&Method::POST, true, Some("token")) if ctx.rt.plural == "serviceaccounts" => {
            crate::satoken::request(ctx, &body)
        }
        (&Method::PUT, true, Some("scale")) => crate::scale::write(ctx, &body, false),
        (&Method::PATCH, true, Some("scale")) => crate::scale::write(ctx, &body, true),
        (&Method::DELETE, true, None) => delete::delete(ctx, &body),
        (&Method::DELETE, false, None) => delete::delete_collection(ctx, &body),
        _ => Err(ApiError::method_not_allowed()),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, crate::objects::MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large())
}
