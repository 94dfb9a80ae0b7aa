//! Watch: a 200 response streaming one JSON event per line (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`).
//!
//! 1. No resourceVersion (or "0"): synthetic ADDED events for the current state, then changes after it.
//! 2. resourceVersion N: every change after N. Too old: one ERROR event with a 410 Status, then the stream ends —
//!    never an HTTP 410, which kube-rs's watcher would retry forever.
//! 3. `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`): the initial ADDED events end with a
//!    BOOKMARK annotated `k8s.io/initial-events-end`.
//! 4. Bookmarks (`allowWatchBookmarks`) every minute; the stream ends at `timeoutSeconds` (default 30–60 minutes).
//! 5. Label and field selectors filter events; an object that stops matching is reported as DELETED.

use std::time::Duration;

use apiserver_store::{EventKind, StoreError};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures_util::stream;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::context::Ctx;
use crate::objects::from_kv;
use crate::selectors::{FieldReq, LabelReq, fields_match, labels_match, parse_fields, parse_labels};
use crate::status::ApiError;
use crate::table::{table_for, wants_table};

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

struct Filter {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        labels_match(
            &self.labels,
            obj.pointer("/metadata/labels").and_then(Value::as_object),
        ) && fields_match(&self.fields, obj)
    }
}

struct Stream {
    ctx_rt: crate::registry::ResourceType,
    watcher: apiserver_store::Watcher,
    filter: Filter,
    pending: std::collections::VecDeque<Bytes>,
    deadline: Instant,
    bookmarks: bool,
    table: bool,
    last_rv: i64,
    store: apiserver_store::Store,
    state: std::sync::Arc<crate::context::ApiState>,
    done: bool,
}

impl Stream {
    fn event(&self, kind: &str, obj: Value) -> Bytes {
        let obj = if self.table {
            table_for(&self.ctx_rt, &[obj], "Metadata")
        } else {
            obj
        };
        line(&json!({"type": kind, "object": obj}))
    }

    fn bookmark(&self, annotations: Option<Value>) -> Bytes {
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if let Some(a) = annotations {
            meta["annotations"] = a;
        }
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": self.ctx_rt.kind, "apiVersion": self.ctx_rt.api_version(), "metadata": meta}}),
        )
    }

    /// Turns a store event into a watch event line, applying the selectors.
    fn translate(&mut self, ev: &apiserver_store::Event) -> Option<Bytes> {
        self.last_rv = ev.revision();
        let unfiltered = self.filter.labels.is_empty() && self.filter.fields.is_empty();
        if unfiltered && !self.table {
            let kind = match ev.kind {
                EventKind::Created => "ADDED",
                EventKind::Updated => "MODIFIED",
                EventKind::Deleted => "DELETED",
            };
            let key = (
                ev.revision(),
                format!(
                    "{}/{}/{}",
                    self.ctx_rt.group, self.ctx_rt.version, self.ctx_rt.plural
                ),
                kind,
            );
            let (cache, rt) = (&self.state.watch_cache, &self.ctx_rt);
            return cache.get_or(key, || {
                let obj = from_kv(rt, &ev.kv).ok()?;
                Some(line(&json!({"type": kind, "object": obj})))
            });
        }
        let obj = from_kv(&self.ctx_rt, &ev.kv).ok()?;
        let now = self.filter.matches(&obj);
        let before = match ev.kind {
            // Without selectors an update is a MODIFIED: no need to read the previous value.
            EventKind::Updated if unfiltered => true,
            EventKind::Updated => self
                .store
                .previous(&ev.kv.key, ev.revision())
                .ok()
                .flatten()
                .and_then(|kv| from_kv(&self.ctx_rt, &kv).ok())
                .is_some_and(|o| self.filter.matches(&o)),
            _ => false,
        };
        match (ev.kind, before, now) {
            (EventKind::Created, _, true) => Some(self.event("ADDED", obj)),
            (EventKind::Updated, true, true) => Some(self.event("MODIFIED", obj)),
            (EventKind::Updated, false, true) => Some(self.event("ADDED", obj)),
            (EventKind::Updated, true, false) => Some(self.event("DELETED", obj)),
            (EventKind::Deleted, _, true) => Some(self.event("DELETED", obj)),
            _ => None,
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            let until_bookmark = Duration::from_secs(60);
            let sleep_until = if self.bookmarks {
                self.deadline.min(Instant::now() + until_bookmark)
            } else {
                self.deadline
            };
            tokio::select! {
                ev = self.watcher.recv() => match ev {
                    Some(ev) => {
                        if let Some(b) = self.translate(&ev) {
                            return Some(b);
                        }
                    }
                    None => return None,
                },
                () = tokio::time::sleep_until(sleep_until) => {
                    if Instant::now() >= self.deadline {
                        self.done = true;
                        if self.bookmarks {
                            return Some(self.bookmark(None));
                        }
                        return None;
                    }
                    return Some(self.bookmark(None));
                }
            }
        }
    }
}

fn error_event(e: &ApiError) -> Response {
    let body = line(&json!({"type": "ERROR", "object": e.status()}));
    ok_stream(Body::from(body))
}

fn ok_stream(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// GET with `watch=true`.
///
/// # Errors
/// 400 for bad selectors; 422 for `sendInitialEvents` without `resourceVersionMatch=NotOlderThan`.
pub async fn watch(ctx: Ctx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let labels = parse_labels(q.get("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fields = parse_fields(q.get("fieldSelector").unwrap_or_default(), &ctx.rt.kind)
        .map_err(ApiError::bad_request)?;
    let send_initial = q.flag("sendInitialEvents")?;
    if send_initial && q.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            &[(
                "resourceVersionMatch".into(),
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
                "FieldValueForbidden".into(),
            )],
        ));
    }
    let timeout = match q.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(u64::try_from(t).unwrap_or(u64::MAX)),
        _ => Duration::from_secs(1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7),
    };
    let bookmarks = q.flag("allowWatchBookmarks")?;
    let rv = q.get("resourceVersion").filter(|r| *r != "0");
    let store = ctx.state.store.clone();
    let prefix = ctx.rt.prefix_in(ctx.path.namespace.as_deref());
    let filter = Filter { labels, fields };
    let mut pending = std::collections::VecDeque::new();
    let table = wants_table(&ctx.headers);
    let start = match rv {
        Some(rv) if !send_initial => rv
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        _ => {
            let page = store.list(&prefix, &apiserver_store::ListOptions::default())?;
            for kv in &page.items {
                let obj = from_kv(&ctx.rt, kv)?;
                if filter.matches(&obj) {
                    let obj = if table {
                        table_for(&ctx.rt, &[obj], "Metadata")
                    } else {
                        obj
                    };
                    pending.push_back(line(&json!({"type": "ADDED", "object": obj})));
                }
            }
            page.revision
        }
    };
    let watcher = match store.watch(&prefix, start) {
        Ok(w) => w,
        Err(StoreError::Compacted { requested, compacted }) => {
            return Ok(error_event(&ApiError::expired(requested, compacted)));
        }
        Err(e) => return Err(e.into()),
    };
    let mut s = Stream {
        ctx_rt: ctx.rt.clone(),
        watcher,
        filter,
        pending,
        deadline: Instant::now() + timeout,
        bookmarks,
        table,
        last_rv: start,
        store,
        state: ctx.state.clone(),
        done: false,
    };
    if send_initial {
        let b = s.bookmark(Some(json!({"k8s.io/initial-events-end": "true"})));
        s.pending.push_back(b);
    }
    let body = stream::unfold(s, |mut s| async move {
        s.next().await.map(|b| (Ok::<_, std::convert::Infallible>(b), s))
    });
    Ok(ok_stream(Body::from_stream(body)))
}
