//! A minimal decoder of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! for the kinds kubectl's typed `create` subcommands send without a pod spec:
//! Namespace, Secret, ConfigMap and ServiceAccount. Other kinds get 415.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::store::ResourceKind;

#[derive(Clone, Copy)]
enum F {
    Str,
    Bytes,
    Int,
    /// An int64/int32 whose zero value means unset (`omitempty` in JSON).
    IntNz,
    Bool,
    Time,
    Msg(&'static [(u64, &'static str, F)]),
    RepStr,
    RepMsg(&'static [(u64, &'static str, F)]),
    MapStr,
    MapBytes,
    /// `map<string, Quantity>` where `Quantity { string string = 1; }`.
    MapQty,
}

const OWNER_REF: &[(u64, &str, F)] = &[
    (1, "kind", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "controller", F::Bool),
    (7, "blockOwnerDeletion", F::Bool),
];
const META: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "generation", F::IntNz),
    (8, "creationTimestamp", F::Time),
    (9, "deletionTimestamp", F::Time),
    (10, "deletionGracePeriodSeconds", F::Int),
    (11, "labels", F::MapStr),
    (12, "annotations", F::MapStr),
    (13, "ownerReferences", F::RepMsg(OWNER_REF)),
    (14, "finalizers", F::RepStr),
];
const NS_SPEC: &[(u64, &str, F)] = &[(1, "finalizers", F::RepStr)];
const NS_STATUS: &[(u64, &str, F)] = &[(1, "phase", F::Str)];
const NAMESPACE: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(META)),
    (2, "spec", F::Msg(NS_SPEC)),
    (3, "status", F::Msg(NS_STATUS)),
];
const SECRET: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(META)),
    (2, "data", F::MapBytes),
    (3, "type", F::Str),
    (4, "stringData", F::MapStr),
    (5, "immutable", F::Bool),
];
const CONFIGMAP: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(META)),
    (2, "data", F::MapStr),
    (3, "binaryData", F::MapBytes),
    (4, "immutable", F::Bool),
];
const OBJ_REF: &[(u64, &str, F)] = &[
    (1, "kind", F::Str),
    (2, "namespace", F::Str),
    (3, "name", F::Str),
    (4, "uid", F::Str),
    (5, "apiVersion", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "fieldPath", F::Str),
];
const LOCAL_REF: &[(u64, &str, F)] = &[(1, "name", F::Str)];
const SERVICE_ACCOUNT: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(META)),
    (2, "secrets", F::RepMsg(OBJ_REF)),
    (3, "imagePullSecrets", F::RepMsg(LOCAL_REF)),
    (4, "automountServiceAccountToken", F::Bool),
];
const RES_ATTRS: &[(u64, &str, F)] = &[
    (1, "namespace", F::Str),
    (2, "verb", F::Str),
    (3, "group", F::Str),
    (4, "version", F::Str),
    (5, "resource", F::Str),
    (6, "subresource", F::Str),
    (7, "name", F::Str),
];
const NONRES_ATTRS: &[(u64, &str, F)] = &[(1, "path", F::Str), (2, "verb", F::Str)];
const SSAR_SPEC: &[(u64, &str, F)] = &[
    (1, "resourceAttributes", F::Msg(RES_ATTRS)),
    (2, "nonResourceAttributes", F::Msg(NONRES_ATTRS)),
];
const SSAR: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(META)),
    (2, "spec", F::Msg(SSAR_SPEC)),
];
const SSRR_SPEC: &[(u64, &str, F)] = &[(1, "namespace", F::Str)];
const SSRR: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(META)),
    (2, "spec", F::Msg(SSRR_SPEC)),
];
const CONTAINER_PORT: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "hostPort", F::IntNz),
    (3, "containerPort", F::Int),
    (4, "protocol", F::Str),
    (5, "hostIP", F::Str),
];
const ENV_VAR: &[(u64, &str, F)] = &[(1, "name", F::Str), (2, "value", F::Str)];
const RESOURCES: &[(u64, &str, F)] = &[(1, "limits", F::MapQty), (2, "requests", F::MapQty)];
const VOLUME_MOUNT: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "readOnly", F::Bool),
    (3, "mountPath", F::Str),
    (4, "subPath", F::Str),
];
const CONTAINER: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "image", F::Str),
    (3, "command", F::RepStr),
    (4, "args", F::RepStr),
    (5, "workingDir", F::Str),
    (6, "ports", F::RepMsg(CONTAINER_PORT)),
    (7, "env", F::RepMsg(ENV_VAR)),
    (8, "resources", F::Msg(RESOURCES)),
    (9, "volumeMounts", F::RepMsg(VOLUME_MOUNT)),
    (13, "terminationMessagePath", F::Str),
    (14, "imagePullPolicy", F::Str),
    (20, "terminationMessagePolicy", F::Str),
];
const POD_SPEC: &[(u64, &str, F)] = &[
    (2, "containers", F::RepMsg(CONTAINER)),
    (3, "restartPolicy", F::Str),
    (4, "terminationGracePeriodSeconds", F::Int),
    (5, "activeDeadlineSeconds", F::Int),
    (6, "dnsPolicy", F::Str),
    (7, "nodeSelector", F::MapStr),
    (8, "serviceAccountName", F::Str),
    (19, "schedulerName", F::Str),
    (20, "initContainers", F::RepMsg(CONTAINER)),
];
const POD_TEMPLATE: &[(u64, &str, F)] =
    &[(1, "metadata", F::Msg(META)), (2, "spec", F::Msg(POD_SPEC))];
const LABEL_SELECTOR: &[(u64, &str, F)] = &[(1, "matchLabels", F::MapStr)];
const JOB_SPEC: &[(u64, &str, F)] = &[
    (1, "parallelism", F::Int),
    (2, "completions", F::Int),
    (3, "activeDeadlineSeconds", F::Int),
    (4, "selector", F::Msg(LABEL_SELECTOR)),
    (5, "manualSelector", F::Bool),
    (6, "template", F::Msg(POD_TEMPLATE)),
    (7, "backoffLimit", F::Int),
    (8, "ttlSecondsAfterFinished", F::Int),
    (9, "completionMode", F::Str),
    (10, "suspend", F::Bool),
];
const JOB: &[(u64, &str, F)] = &[(1, "metadata", F::Msg(META)), (2, "spec", F::Msg(JOB_SPEC))];
const QUANTITY: &[(u64, &str, F)] = &[(1, "string", F::Str)];
const TYPE_META: &[(u64, &str, F)] = &[(1, "apiVersion", F::Str), (2, "kind", F::Str)];
const UNKNOWN: &[(u64, &str, F)] = &[
    (1, "typeMeta", F::Msg(TYPE_META)),
    (2, "raw", F::Bytes),
    (3, "contentEncoding", F::Str),
    (4, "contentType", F::Str),
];

fn bad(msg: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {msg}"))
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or_else(|| bad("truncated varint"))?;
            self.i += 1;
            out |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
        let end = self
            .i
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| bad("truncated field"))?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            _ => Err(bad("unsupported wire type")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), ApiError> {
        if self.i + n > self.b.len() {
            return Err(bad("truncated"));
        }
        self.i += n;
        Ok(())
    }
}

fn utf8(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8"))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ApiError> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while r.i < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = utf8(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = if bytes_value {
                    json!(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    json!(utf8(raw)?)
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { b, i: 0 };
    let mut secs = 0i64;
    while r.i < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => secs = r.varint()? as i64,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(jiff::Timestamp::from_second(secs)
        .map(|t| json!(t.to_string()))
        .unwrap_or(Value::Null))
}

fn message(b: &[u8], desc: &[(u64, &str, F)]) -> Result<Value, ApiError> {
    let mut r = Reader { b, i: 0 };
    let mut out = Map::new();
    while r.i < b.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some((_, name, ty)) = desc.iter().find(|(n, _, _)| *n == num) else {
            r.skip(wire)?;
            continue;
        };
        let name = name.to_string();
        match (ty, wire) {
            (F::IntNz, 0) => {
                let v = r.varint()? as i64;
                if v != 0 {
                    out.insert(name, json!(v));
                }
            }
            (F::Int, 0) => {
                out.insert(name, json!(r.varint()? as i64));
            }
            (F::Bool, 0) => {
                out.insert(name, json!(r.varint()? != 0));
            }
            (F::Str, 2) => {
                // Go treats "" as unset; gogo-protobuf still sends it.
                let v = utf8(r.bytes()?)?;
                if !v.is_empty() {
                    out.insert(name, json!(v));
                }
            }
            (F::Bytes, 2) => {
                out.insert(
                    name,
                    json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
                );
            }
            (F::Time, 2) => {
                let t = time(r.bytes()?)?;
                if t != json!("1970-01-01T00:00:00Z") {
                    out.insert(name, t);
                }
            }
            (F::Msg(d), 2) => {
                out.insert(name, message(r.bytes()?, d)?);
            }
            (F::RepStr, 2) => {
                let s = utf8(r.bytes()?)?;
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(json!(s));
                }
            }
            (F::RepMsg(d), 2) => {
                let m = message(r.bytes()?, d)?;
                if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                    a.push(m);
                }
            }
            (F::MapQty, 2) => {
                let (k, v) = map_entry(r.bytes()?, true)?;
                // The value is a Quantity message: field 1 is its string form.
                let raw = v
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .unwrap_or_default();
                let q = message(&raw, QUANTITY)?;
                let q = q.get("string").cloned().unwrap_or(json!("0"));
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, q);
                }
            }
            (F::MapStr | F::MapBytes, 2) => {
                let (k, v) = map_entry(r.bytes()?, matches!(ty, F::MapBytes))?;
                if let Some(m) = out.entry(name).or_insert_with(|| json!({})).as_object_mut() {
                    m.insert(k, v);
                }
            }
            (_, w) => r.skip(w)?,
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body for `kind` into its JSON form.
pub(crate) fn decode(kind: ResourceKind, body: &[u8]) -> Result<Value, ApiError> {
    let desc = match kind {
        ResourceKind::Namespace => NAMESPACE,
        ResourceKind::Secret => SECRET,
        ResourceKind::ConfigMap => CONFIGMAP,
        ResourceKind::ServiceAccount => SERVICE_ACCOUNT,
        // The fields `kubectl create job` sends; other pod-spec fields are not decoded.
        ResourceKind::Job => JOB,
        _ => {
            return Err(ApiError::unsupported_body_format(
                "application/vnd.kubernetes.protobuf",
            ));
        }
    };
    let mut obj = decode_with(desc, body)?;
    obj["apiVersion"] = json!(kind.api_version());
    obj["kind"] = json!(kind.kind());
    Ok(obj)
}

/// Decodes a protobuf SelfSubjectAccessReview / SelfSubjectRulesReview body.
pub(crate) fn decode_review(which: &str, body: &[u8]) -> Result<Value, ApiError> {
    decode_with(
        if which == "selfsubjectrulesreviews" {
            SSRR
        } else {
            SSAR
        },
        body,
    )
}

fn decode_with(desc: &'static [(u64, &'static str, F)], body: &[u8]) -> Result<Value, ApiError> {
    let payload = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| bad("missing k8s magic prefix"))?;
    let unknown = message(payload, UNKNOWN)?;
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    message(&raw, desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn decodes_namespace() {
        let meta = [
            field(1, b"demo"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let ns = field(1, &meta);
        let body = [
            b"k8s\x00".to_vec(),
            field(1, &[field(1, b"v1"), field(2, b"Namespace")].concat()),
            field(2, &ns),
        ]
        .concat();
        let v = decode(ResourceKind::Namespace, &body).unwrap();
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["metadata"]["labels"]["a"], "b");
    }
}
