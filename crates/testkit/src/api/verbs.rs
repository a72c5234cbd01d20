//! get, list, create, update, patch, delete and deletecollection (watch lives in
//! `server::watch`, logs are streamed from the runtime).

use std::sync::Arc;

use base64::Engine as _;
use futures::StreamExt;
use http::Response;
use serde_json::{Value, json};

use super::patch::{self, PatchType};
use super::{Req, schema, table};
use crate::error::ApiError;
use crate::runtime::kubelet::disrupt::add_condition;
use crate::server::respond::{self, Body};
use crate::server::{Ctx, decode_body, watch};
use crate::store::{DeleteOptions, ListFilter, Propagation, ResourceKind, Store};
use crate::validation;

/// Dispatches a resource request by verb.
pub(crate) async fn handle(ctx: Arc<Ctx>, req: Req) -> Response<Body> {
    let r = match req.route.verb {
        "get" if req.route.subresource.as_deref() == Some("log") => logs(&ctx, &req).await,
        "get" => get(&ctx.store, &req),
        "list" => list(&ctx.store, &req),
        "watch" => return watch::watch(ctx, req),
        "create" if req.route.subresource.as_deref() == Some("eviction") => evict(&ctx.store, &req),
        "create" => create(&ctx.store, &req),
        "update" => update(&ctx.store, &req),
        "patch" => patch_obj(&ctx.store, &req),
        "delete" => delete(&ctx.store, &req),
        "deletecollection" => delete_collection(&ctx.store, &req),
        _ => Err(ApiError::method_not_allowed("unsupported verb")),
    };
    r.unwrap_or_else(|e| respond::error(&e))
}

fn name(req: &Req) -> &str {
    req.route.name.as_deref().unwrap_or("")
}

fn get(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let obj = store.get(req.route.kind, req.ns(), name(req))?;
    if req.wants_table() {
        return Ok(respond::json(
            200,
            &table::table(req.route.kind, &[obj], None, None),
        ));
    }
    Ok(respond::json(200, &obj))
}

/// Parses the selectors of a list/watch/deletecollection request.
pub(crate) fn filter_of(req: &Req) -> Result<ListFilter, ApiError> {
    let filter = ListFilter::parse(req.q("labelSelector"), req.q("fieldSelector"))?;
    if let Some(f) = &filter.fields {
        f.check_supported(req.route.kind)?;
    }
    Ok(filter)
}

fn object_key(v: &Value) -> String {
    format!(
        "{}/{}",
        v.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    )
}

fn encode_continue(rv: u64, key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "meta.k8s.io/v1", "rv": rv, "start": key}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rv, start))
}

/// The list kind of a kind (`PodList`).
pub(crate) fn list_kind(kind: ResourceKind) -> String {
    format!("{}List", kind.kind())
}

fn list(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    let filter = filter_of(req)?;
    let (items, rv) = store.list(kind, req.ns(), &filter);
    let limit = match req.q("limit") {
        None => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        )
        .filter(|l| *l > 0),
    };
    let (list_rv, start) = match req.q("continue") {
        Some(t) => {
            let (rv, key) = decode_continue(t)?;
            (rv, Some(key))
        }
        None => (rv, None),
    };
    let mut items: Vec<Value> = match &start {
        Some(k) => items
            .into_iter()
            .filter(|v| object_key(v).as_str() > k.as_str())
            .collect(),
        None => items,
    };
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if let Some(limit) = limit.and_then(|l| usize::try_from(l).ok())
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().map(object_key).unwrap_or_default();
        meta["continue"] = json!(encode_continue(list_rv, &last));
        meta["remainingItemCount"] = json!(remaining);
    }
    if req.wants_table() {
        return Ok(respond::json(
            200,
            &table::table(kind, &items, Some(meta), None),
        ));
    }
    Ok(respond::json(
        200,
        &json!({"kind": list_kind(kind), "apiVersion": kind.api_version(), "metadata": meta, "items": items}),
    ))
}

fn check_type_meta(kind: ResourceKind, obj: &Value) -> Result<(), ApiError> {
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != kind.kind()
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind()
        )));
    }
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && v != kind.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    Ok(())
}

fn reject_node_writes(kind: ResourceKind, verb: &str) -> Result<(), ApiError> {
    if kind == ResourceKind::Node && matches!(verb, "create" | "delete" | "deletecollection") {
        return Err(ApiError::method_not_allowed(
            "nodes are managed by the testkit runtime and cannot be created or deleted through the API",
        ));
    }
    Ok(())
}

fn create(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    reject_node_writes(kind, "create")?;
    let mut obj = decode_body(kind, &req.headers, &req.body)?;
    check_type_meta(kind, &obj)?;
    let warnings = schema::field_validation(kind, &obj, req.q("fieldValidation"))?;
    if matches!(
        kind,
        ResourceKind::Pod | ResourceKind::Job | ResourceKind::Service | ResourceKind::Namespace
    ) && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    if let Some(ns) = req.ns()
        && let Some(ons) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
        && !ons.is_empty()
        && ons != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    drop_empty_meta(&mut obj);
    validation::validate(kind, &obj, None)?;
    let created = if req.dry_run()? {
        store.create_dry_run(kind, req.ns(), obj)?
    } else {
        store.create(kind, req.ns(), obj)?
    };
    Ok(respond::json_with_warnings(201, &created, &warnings))
}

/// Builds the object an update or patch stores, from the current object and the
/// requested new state: status-only for `/status`, status preserved otherwise.
fn merge_for_subresource(req: &Req, cur: &Value, mut new: Value) -> Value {
    let kind = req.route.kind;
    match req.route.subresource.as_deref() {
        Some("status") => {
            let mut out = cur.clone();
            out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if let Some(m) = out.as_object_mut()
                && m.get("status").is_some_and(Value::is_null)
            {
                m.remove("status");
            }
            out
        }
        _ => {
            if kind.has_status() {
                match cur.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new
        }
    }
}

fn finish_update(req: &Req, cur: &Value, new: Value) -> Result<Value, ApiError> {
    let kind = req.route.kind;
    let mut new = merge_for_subresource(req, cur, new);
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = json!({});
    }
    for f in ["name", "namespace", "uid", "creationTimestamp"] {
        if let Some(v) = cur["metadata"].get(f) {
            new["metadata"][f] = v.clone();
        }
    }
    crate::store::default_object(kind, &mut new);
    drop_empty_meta(&mut new);
    validation::validate(kind, &new, Some(cur))?;
    Ok(new)
}

/// Go's `omitempty`: empty label/annotation maps and finalizer/ownerReference lists are
/// not stored.
fn drop_empty_meta(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, v| {
            let empty = v.is_null()
                || v.as_object().is_some_and(|o| o.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty());
            !(empty
                && matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences" | "managedFields"
                ))
        });
    }
}

fn rv_precondition(
    kind: ResourceKind,
    name: &str,
    wanted: Option<&str>,
    cur: &Value,
) -> Result<(), ApiError> {
    if let Some(rv) = wanted.filter(|s| !s.is_empty())
        && cur
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            != Some(rv)
    {
        return Err(ApiError::conflict(&kind.qualified(), name));
    }
    Ok(())
}

fn write(
    store: &Store,
    req: &Req,
    compute: impl FnOnce(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let kind = req.route.kind;
    if req.dry_run()? {
        let cur = store.get(kind, req.ns(), name(req))?;
        return compute(&cur);
    }
    store.modify(kind, req.ns(), name(req), |cur| {
        let new = compute(cur)?;
        *cur = new;
        Ok(())
    })
}

fn update(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    let obj = decode_body(kind, &req.headers, &req.body)?;
    check_type_meta(kind, &obj)?;
    let body_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name(req) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            name(req)
        )));
    }
    let warnings = schema::field_validation(kind, &obj, req.q("fieldValidation"))?;
    let wanted_rv = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let n = name(req).to_string();
    let out = write(store, req, |cur| {
        rv_precondition(kind, &n, wanted_rv.as_deref(), cur)?;
        finish_update(req, cur, obj)
    })?;
    Ok(respond::json_with_warnings(200, &out, &warnings))
}

fn patch_obj(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    let ct = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pt = PatchType::from_content_type(ct)?;
    let body = patch::parse_body(pt, &req.body)?;
    if pt == PatchType::Apply {
        if req.q("fieldManager").is_none() {
            return Err(ApiError::invalid(
                "PatchOptions.meta.k8s.io",
                "",
                vec![crate::error::StatusCause::new(
                    "fieldManager",
                    "FieldValueRequired",
                    "Required value: is required for apply patch",
                )],
            ));
        }
        check_type_meta(kind, &body)?;
        if let Err(e) = store.get(kind, req.ns(), name(req))
            && e.code == 404
        {
            let warnings = schema::field_validation(kind, &body, req.q("fieldValidation"))?;
            let mut obj = body;
            obj["metadata"]["name"] = json!(name(req));
            validation::validate(kind, &obj, None)?;
            let created = if req.dry_run()? {
                store.create_dry_run(kind, req.ns(), obj)?
            } else {
                store.create(kind, req.ns(), obj)?
            };
            return Ok(respond::json_with_warnings(201, &created, &warnings));
        }
    }
    let wanted_rv = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let n = name(req).to_string();
    let directive = req.q("fieldValidation").map(str::to_string);
    let mut warnings = Vec::new();
    let out = write(store, req, |cur| {
        rv_precondition(kind, &n, wanted_rv.as_deref(), cur)?;
        let mut new = cur.clone();
        patch::apply(pt, &mut new, &body)?;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        check_type_meta(kind, &new)?;
        warnings = schema::field_validation(kind, &new, directive.as_deref())?;
        finish_update(req, cur, new)
    })?;
    Ok(respond::json_with_warnings(200, &out, &warnings))
}

fn delete_options(req: &Req) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let grace = req
        .q("gracePeriodSeconds")
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {s:?}")))
        })
        .transpose()?
        .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64));
    opts.grace_period_seconds = grace;
    let prop = req.q("propagationPolicy").map(str::to_string).or_else(|| {
        body.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    opts.propagation = match prop {
        Some(p) => Propagation::parse(&p)?,
        None => match req
            .q("orphanDependents")
            .map(|s| s == "true")
            .or_else(|| body.get("orphanDependents").and_then(Value::as_bool))
        {
            Some(true) => Propagation::Orphan,
            Some(false) => Propagation::Background,
            None => Propagation::Default,
        },
    };
    opts.precondition_uid = body
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    opts.precondition_resource_version = body
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(opts)
}

fn delete_response(
    store: &Store,
    kind: ResourceKind,
    ns: Option<&str>,
    name: &str,
    obj: Value,
) -> Value {
    let still_there = store.get(kind, ns, name).is_ok();
    if still_there || matches!(kind, ResourceKind::Pod | ResourceKind::Namespace) {
        return obj;
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": name,
            "group": kind.group(),
            "kind": kind.plural(),
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        }
    })
}

fn delete(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    reject_node_writes(kind, "delete")?;
    if kind == ResourceKind::Namespace
        && matches!(name(req), "default" | "kube-system" | "kube-public")
    {
        return Err(ApiError::forbidden(
            "namespaces",
            name(req),
            "this namespace may not be deleted",
        ));
    }
    let opts = delete_options(req)?;
    if req.dry_run()? {
        let cur = store.get(kind, req.ns(), name(req))?;
        return Ok(respond::json(200, &cur));
    }
    let out = store.delete(kind, req.ns(), name(req), opts)?;
    Ok(respond::json(
        200,
        &delete_response(store, kind, req.ns(), name(req), out),
    ))
}

fn delete_collection(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let kind = req.route.kind;
    reject_node_writes(kind, "deletecollection")?;
    let filter = filter_of(req)?;
    let opts = delete_options(req)?;
    let dry = req.dry_run()?;
    let (items, rv) = store.list(kind, req.ns(), &filter);
    let mut deleted = Vec::new();
    for item in items {
        let n = item
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        if dry {
            deleted.push(item);
            continue;
        }
        match store.delete(kind, ns.as_deref(), &n, opts.clone()) {
            Ok(v) => deleted.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(respond::json(
        200,
        &json!({"kind": list_kind(kind), "apiVersion": kind.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}

fn log_query(req: &Req) -> Result<crate::runtime::LogQuery, ApiError> {
    let mut m = serde_json::Map::new();
    for (k, v) in &req.query {
        let val = match k.as_str() {
            "follow" | "previous" | "timestamps" | "insecureSkipTLSVerifyBackend" => {
                json!(v == "true" || v == "1")
            }
            "sinceSeconds" | "tailLines" | "limitBytes" => {
                let n: i64 = v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid {k} {v:?}: must be an integer"))
                })?;
                json!(n)
            }
            "container" | "sinceTime" => json!(v),
            _ => continue,
        };
        m.insert(k.clone(), val);
    }
    if let Some(s) = m.get("sinceSeconds").and_then(Value::as_i64)
        && s < 1
    {
        return Err(ApiError::invalid(
            "PodLogOptions",
            "",
            vec![crate::error::StatusCause::new(
                "sinceSeconds",
                "FieldValueInvalid",
                "Invalid value: must be greater than 0",
            )],
        ));
    }
    serde_json::from_value(Value::Object(m))
        .map_err(|e| ApiError::bad_request(format!("invalid log options: {e}")))
}

async fn logs(ctx: &Ctx, req: &Req) -> Result<Response<Body>, ApiError> {
    let ns = req.ns().unwrap_or("default");
    let q = log_query(req)?;
    // 404 for a missing pod, as the real server answers before streaming.
    ctx.store.get(ResourceKind::Pod, Some(ns), name(req))?;
    let stream = ctx.runtime.pod_log(ns, name(req), q).await?;
    let shutdown = ctx.shutdown.clone();
    let stream = stream.take_until(async move { shutdown.cancelled().await });
    let mut r = Response::new(respond::streamed(stream));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

/// The condition the eviction subresource puts on a pod before deleting it (the API
/// server's `addConditionAndDeletePod`).
const EVICTION_REASON: &str = "EvictionByEvictionAPI";
const EVICTION_MESSAGE: &str = "Eviction API: evicting";

/// `POST pods/{name}/eviction` (policy/v1 Eviction), as the real API server does it
/// (there are no PodDisruptionBudgets to honour): the pod is first marked with a
/// `DisruptionTarget` condition (reason `EvictionByEvictionAPI`), then deleted
/// gracefully. Without the mark a watcher could not tell an eviction (`kubectl drain`)
/// from someone deleting the pod, and stepstack's operator would end the step as
/// cancelled instead of retrying it on its infrastructure budget. The delete options'
/// preconditions are checked against the pod before it is marked. A protobuf body is
/// accepted with default delete options.
fn evict(store: &Store, req: &Req) -> Result<Response<Body>, ApiError> {
    let is_json = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|c| c.contains("json"));
    let mut opts = DeleteOptions::default();
    let mut dry_run = req.dry_run()?;
    if is_json && !req.body.is_empty() {
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding Eviction: {e}")))?;
        let delete = body.get("deleteOptions").unwrap_or(&Value::Null);
        opts.grace_period_seconds = delete.get("gracePeriodSeconds").and_then(Value::as_i64);
        if let Some(p) = delete.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Propagation::parse(p)?;
        }
        let precondition = |field: &str| {
            delete
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        opts.precondition_uid = precondition("uid");
        opts.precondition_resource_version = precondition("resourceVersion");
        dry_run |= delete
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    }
    let pod = name(req);
    if dry_run {
        store.get(ResourceKind::Pod, req.ns(), pod)?;
    } else {
        let now = crate::store::now_rfc3339();
        let marked = store.modify(ResourceKind::Pod, req.ns(), pod, |p| {
            eviction_preconditions(p, pod, &opts)?;
            add_condition(
                p,
                "DisruptionTarget",
                EVICTION_REASON,
                EVICTION_MESSAGE,
                &now,
            );
            Ok(())
        })?;
        if opts.precondition_resource_version.is_some() {
            // The mark is this request's own write: the delete must not conflict with it.
            opts.precondition_resource_version = marked
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        store.delete(ResourceKind::Pod, req.ns(), pod, opts)?;
    }
    Ok(respond::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// The eviction's `deleteOptions.preconditions` against the pod it would mark, with the
/// API server's wording.
fn eviction_preconditions(pod: &Value, name: &str, opts: &DeleteOptions) -> Result<(), ApiError> {
    let meta = |field: &str| {
        pod.pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if let Some(uid) = &opts.precondition_uid
        && *uid != meta("uid")
    {
        return Err(ApiError::conflict_msg(
            "pods",
            name,
            format!(
                "Operation cannot be fulfilled on Pod \"{name}\": the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                meta("uid")
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_resource_version
        && *rv != meta("resourceVersion")
    {
        return Err(ApiError::conflict_msg(
            "pods",
            name,
            format!(
                "Operation cannot be fulfilled on Pod \"{name}\": the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                meta("resourceVersion")
            ),
        ));
    }
    Ok(())
}
