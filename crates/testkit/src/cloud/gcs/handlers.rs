//! The fake's HTTP routes: the XML API requests `object_store`'s GCS client makes, each
//! recorded as a [`GcsCall`](super::GcsCall), with GCS's XML error shape.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use super::{GcsCall, GcsState, MIN_PART_SIZE, StoredObject, Upload};

/// The largest request body accepted (a part or a single upload).
const MAX_BODY: usize = 64 * 1024 * 1024;

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// An error in the XML API's shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml; charset=UTF-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn xml() -> http::response::Builder {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/xml; charset=UTF-8")
}

/// Percent-decodes a URL path segment (object names arrive fully encoded, `/` as `%2F`).
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A quoted content hash, as GCS's ETags are (the MD5 there; any digest serves here).
fn etag(data: &[u8]) -> String {
    format!("\"{}\"", hex(&Sha256::digest(data)[..16]))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub(super) async fn handle(State(state): State<Arc<GcsState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().to_owned();
    let query_text = parts.uri.query().unwrap_or_default().to_owned();
    let response = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => route(
            &state,
            &parts.method,
            &raw_path,
            &query_text,
            &parts.headers,
            body,
        ),
        Err(_) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "EntityTooLarge",
            "the fake accepts bodies of at most 64 MiB",
        ),
    };
    state.calls.lock().push(GcsCall {
        method: parts.method.to_string(),
        path: percent_decode(&raw_path).unwrap_or(raw_path),
        query: query_text,
        status: response.status().as_u16(),
    });
    response
}

fn route(
    state: &GcsState,
    method: &Method,
    raw_path: &str,
    query_text: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    {
        let mut failures = state.failures.lock();
        if *failures > 0 {
            *failures -= 1;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "injected failure",
            );
        }
    }
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query_text.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (bucket, object) = match path.split_once('/') {
        Some((bucket, object)) => (percent_decode(bucket), percent_decode(object)),
        None => (percent_decode(path), Some(String::new())),
    };
    let (Some(bucket), Some(object)) = (bucket, object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidURI",
            "the path is not valid percent-encoded UTF-8",
        );
    };

    let Some(token) = bearer(headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "no bearer token",
        );
    };
    let Some(allowed) = state.options.tokens.get(token) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationInfo",
            "the bearer token is not valid",
        );
    };
    if !allowed.is_empty() && !allowed.contains(&bucket) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!("the caller may not use bucket {bucket}"),
        );
    }
    if !state.buckets.lock().contains_key(&bucket) {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            &format!("bucket {bucket} does not exist"),
        );
    }

    if object.is_empty() {
        return match *method {
            Method::GET if param("list-type") == Some("2") => list(state, &bucket, &param),
            _ => error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "only `list-type=2` listings are served on a bucket",
            ),
        };
    }
    if headers.contains_key("x-goog-copy-source") {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "copies are not served",
        );
    }
    match (method.clone(), param("uploadId")) {
        (Method::PUT, Some(upload)) => put_part(state, &bucket, &object, upload, &param, body),
        (Method::PUT, None) => put_object(state, &bucket, &object, headers, body),
        (Method::POST, None) if param("uploads").is_some() => initiate(state, &bucket, &object),
        (Method::POST, Some(upload)) => complete(state, &bucket, &object, upload, &body),
        (Method::DELETE, Some(upload)) => abort(state, &bucket, &object, upload),
        (Method::DELETE, None) => delete(state, &bucket, &object),
        (Method::GET | Method::HEAD, None) => {
            get(state, &bucket, &object, method.clone(), headers, &param)
        }
        _ => error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            &format!("{method} with query `{query_text}` is not served"),
        ),
    }
}

fn next_generation(state: &GcsState) -> u64 {
    let mut next = state.next_generation.lock();
    let generation = *next;
    *next += 1;
    generation
}

/// Stores `data` as `bucket/object` unless `if_generation` (from
/// `x-goog-if-generation-match`) does not hold (`None`); checked and written under one
/// lock, so two creators cannot both succeed.
fn store(
    state: &GcsState,
    bucket: &str,
    object: &str,
    data: Bytes,
    if_generation: Option<u64>,
) -> Option<StoredObject> {
    let mut buckets = state.buckets.lock();
    let objects = buckets.entry(bucket.to_owned()).or_default();
    if let Some(expected) = if_generation {
        let current = objects.get(object).map(|o| o.generation).unwrap_or(0);
        if current != expected {
            return None;
        }
    }
    let stored = StoredObject {
        etag: etag(&data),
        data,
        generation: next_generation(state),
        updated: jiff::Timestamp::now(),
    };
    objects.insert(object.to_owned(), stored.clone());
    Some(stored)
}

fn precondition_failed() -> Response<Body> {
    error(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold.",
    )
}

fn put_object(
    state: &GcsState,
    bucket: &str,
    object: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let if_generation = match headers.get("x-goog-if-generation-match") {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.trim().parse().ok()) {
            Some(generation) => Some(generation),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "x-goog-if-generation-match is not a number",
                );
            }
        },
    };
    match store(state, bucket, object, body, if_generation) {
        Some(stored) => Response::builder()
            .status(StatusCode::OK)
            .header("etag", &stored.etag)
            .header("x-goog-generation", stored.generation.to_string())
            .body(Body::empty())
            .unwrap_or_default(),
        None => precondition_failed(),
    }
}

fn initiate(state: &GcsState, bucket: &str, object: &str) -> Response<Body> {
    let id: String = hex(&rand::rng().random::<[u8; 16]>());
    state.uploads.lock().insert(
        id.clone(),
        Upload {
            bucket: bucket.to_owned(),
            object: object.to_owned(),
            parts: Default::default(),
        },
    );
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Bucket>{}</Bucket><Key>{}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>",
        xml_escape(bucket),
        xml_escape(object)
    );
    xml().body(Body::from(body)).unwrap_or_default()
}

fn no_such_upload() -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchUpload",
        "The requested upload was not found.",
    )
}

fn put_part<'a>(
    state: &GcsState,
    bucket: &str,
    object: &str,
    upload: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
    body: Bytes,
) -> Response<Body> {
    let Some(number) = param("partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=10_000).contains(n))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "partNumber must be 1 to 10000",
        );
    };
    let mut uploads = state.uploads.lock();
    let Some(upload) = uploads
        .get_mut(upload)
        .filter(|u| u.bucket == bucket && u.object == object)
    else {
        return no_such_upload();
    };
    let tag = etag(&body);
    upload.parts.insert(number, (tag.clone(), body));
    Response::builder()
        .status(StatusCode::OK)
        .header("etag", tag)
        .body(Body::empty())
        .unwrap_or_default()
}

/// The `(PartNumber, ETag)` pairs of a `CompleteMultipartUpload` body, in order.
fn parse_parts(body: &str) -> Option<Vec<(u32, String)>> {
    let field = |part: &str, name: &str| -> Option<String> {
        let start = part.find(&format!("<{name}>"))? + name.len() + 2;
        let end = part[start..].find(&format!("</{name}>"))? + start;
        Some(xml_unescape(part[start..end].trim()))
    };
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<Part>") {
        let end = rest[start..].find("</Part>")? + start;
        let part = &rest[start..end];
        let number = field(part, "PartNumber")?.parse().ok()?;
        let tag = field(part, "ETag")?;
        parts.push((number, tag.trim_matches('"').to_owned()));
        rest = &rest[end..];
    }
    Some(parts)
}

fn complete(
    state: &GcsState,
    bucket: &str,
    object: &str,
    upload_id: &str,
    body: &[u8],
) -> Response<Body> {
    let Some(listed) = std::str::from_utf8(body).ok().and_then(parse_parts) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            "the CompleteMultipartUpload body is not valid",
        );
    };
    let mut uploads = state.uploads.lock();
    let Some(upload) = uploads
        .get(upload_id)
        .filter(|u| u.bucket == bucket && u.object == object)
    else {
        return no_such_upload();
    };
    if listed.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            "a multipart upload needs at least one part",
        );
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidPartOrder",
            "the parts must be listed in ascending order",
        );
    }
    let mut data = Vec::new();
    for (i, (number, tag)) in listed.iter().enumerate() {
        let Some((stored_tag, bytes)) = upload.parts.get(number) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidPart",
                &format!("part {number} was not uploaded"),
            );
        };
        if stored_tag.trim_matches('"') != tag {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidPart",
                &format!("part {number}'s ETag does not match"),
            );
        }
        if i + 1 < listed.len() && bytes.len() < MIN_PART_SIZE {
            return error(
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                &format!("part {number} is smaller than 5 MiB and not the last"),
            );
        }
        data.extend_from_slice(bytes);
    }
    uploads.remove(upload_id);
    drop(uploads);
    let Some(stored) = store(state, bucket, object, Bytes::from(data), None) else {
        return precondition_failed();
    };
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Location>/{0}/{1}</Location><Bucket>{0}</Bucket><Key>{1}</Key><ETag>{2}</ETag></CompleteMultipartUploadResult>",
        xml_escape(bucket),
        xml_escape(object),
        xml_escape(&stored.etag)
    );
    xml()
        .header("x-goog-generation", stored.generation.to_string())
        .body(Body::from(body))
        .unwrap_or_default()
}

fn abort(state: &GcsState, bucket: &str, object: &str, upload: &str) -> Response<Body> {
    let mut uploads = state.uploads.lock();
    match uploads.get(upload) {
        Some(u) if u.bucket == bucket && u.object == object => {
            uploads.remove(upload);
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::empty())
                .unwrap_or_default()
        }
        _ => no_such_upload(),
    }
}

fn no_such_key(object: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        &format!("No such object: {object}"),
    )
}

fn delete(state: &GcsState, bucket: &str, object: &str) -> Response<Body> {
    let mut buckets = state.buckets.lock();
    match buckets.get_mut(bucket).and_then(|b| b.remove(object)) {
        Some(_) => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .unwrap_or_default(),
        None => no_such_key(object),
    }
}

fn get<'a>(
    state: &GcsState,
    bucket: &str,
    object: &str,
    method: Method,
    headers: &HeaderMap,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Response<Body> {
    if headers.contains_key(http::header::RANGE)
        || headers.contains_key(http::header::IF_MATCH)
        || headers.contains_key(http::header::IF_NONE_MATCH)
    {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "ranged and conditional reads are not served",
        );
    }
    let found = state
        .buckets
        .lock()
        .get(bucket)
        .and_then(|b| b.get(object).cloned());
    let Some(found) = found.filter(|o| {
        param("generation").is_none_or(|g| g.parse::<u64>().ok() == Some(o.generation))
    }) else {
        return no_such_key(object);
    };
    let modified = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&found.updated)
        .unwrap_or_default();
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header("content-length", found.data.len().to_string())
        .header("etag", &found.etag)
        .header("last-modified", modified)
        .header("x-goog-generation", found.generation.to_string());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(found.data)
    };
    builder.body(body).unwrap_or_default()
}

fn list<'a>(
    state: &GcsState,
    bucket: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Response<Body> {
    let prefix = param("prefix").unwrap_or_default();
    let delimiter = param("delimiter").filter(|d| !d.is_empty());
    let token = match param("continuation-token") {
        None => None,
        Some(token) => match unhex(token) {
            Some(after) => Some(after),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "the continuation token is not one this fake issued",
                );
            }
        },
    };
    let after = match (token, param("start-after")) {
        (Some(t), Some(s)) => Some(t.max(s.to_owned())),
        (t, s) => t.or(s.map(str::to_owned)),
    };
    let limit = param("max-keys")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .clamp(1, state.options.page_size);

    let buckets = state.buckets.lock();
    let objects = buckets.get(bucket).cloned().unwrap_or_default();
    drop(buckets);
    let mut contents = String::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut count = 0;
    let mut last_consumed: Option<String> = None;
    let mut truncated = false;
    let candidates = objects
        .iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .filter(|(key, _)| after.as_ref().is_none_or(|a| key.as_str() > a.as_str()));
    for (key, stored) in candidates {
        let common = delimiter.and_then(|d| {
            let rest = &key[prefix.len()..];
            rest.find(d)
                .map(|i| format!("{prefix}{}", &rest[..i + d.len()]))
        });
        if let Some(common) = &common
            && prefixes.last() == Some(common)
        {
            // Further keys under a prefix already listed: consumed with it.
            last_consumed = Some(key.clone());
            continue;
        }
        if count == limit {
            truncated = true;
            break;
        }
        count += 1;
        last_consumed = Some(key.clone());
        match common {
            Some(common) => prefixes.push(common),
            None => contents.push_str(&format!(
                "<Contents><Key>{}</Key><Generation>{}</Generation><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
                xml_escape(key),
                stored.generation,
                stored.updated,
                xml_escape(&stored.etag),
                stored.data.len()
            )),
        }
    }
    let mut body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='http://doc.s3.amazonaws.com/2006-03-01'><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount><MaxKeys>{limit}</MaxKeys><IsTruncated>{truncated}</IsTruncated>{contents}",
        xml_escape(bucket),
        xml_escape(prefix)
    );
    for common in &prefixes {
        body.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            xml_escape(common)
        ));
    }
    if truncated && let Some(last) = last_consumed {
        body.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            hex(last.as_bytes())
        ));
    }
    body.push_str("</ListBucketResult>");
    xml().body(Body::from(body)).unwrap_or_default()
}
