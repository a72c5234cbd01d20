//! The HTTP routes: EKS `ListClusters` and `DescribeCluster` (JSON), and the STS
//! dispatch (form or presigned query, XML), each authenticated through `verify` and
//! recorded as an [`AwsCall`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use base64::Engine as _;
use http::{HeaderMap, Response, StatusCode};

use super::sigv4::{parse_query, percent_decode};
use super::state::{AwsCall, AwsFault, AwsState};
use super::sts::{
    STS_NS, assume_role, caller_identity_xml, federation_token, request_id, session_token,
    xml_escape,
};
use super::verify::{Service, verify_header_signed, verify_presigned};

pub(super) async fn handle(State(state): State<Arc<AwsState>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return sts_error(&AwsFault::new(400, "InvalidRequest", "unreadable body")),
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    if path == "/clusters" || path.starts_with("/clusters/") {
        let result = eks(&state, &method, &path, &query, &parts.headers, &body);
        return match result {
            Ok(json) => json_response(StatusCode::OK, json),
            Err(fault) => eks_error(&fault),
        };
    }
    if path == "/" || path.is_empty() {
        return match sts(&state, &method, &query, &parts.headers, &body) {
            Ok(xml) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/xml")
                .body(Body::from(xml))
                .unwrap_or_default(),
            Err(fault) => sts_error(&fault),
        };
    }
    let fault = AwsFault::new(
        404,
        "UnknownOperationException",
        format!("no fake AWS operation at {method} {path}"),
    );
    eks_error(&fault)
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

fn eks_error(fault: &AwsFault) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "application/json")
        .header("x-amzn-errortype", fault.code.as_str())
        .body(Body::from(
            serde_json::json!({"message": fault.message}).to_string(),
        ))
        .unwrap_or_default()
}

fn sts_error(fault: &AwsFault) -> Response<Body> {
    let kind = if fault.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    let xml = format!(
        "<ErrorResponse xmlns=\"{STS_NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml_escape(&fault.code),
        xml_escape(&fault.message),
        request_id()
    );
    Response::builder()
        .status(StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "text/xml")
        .body(Body::from(xml))
        .unwrap_or_default()
}

fn eks(
    state: &AwsState,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, AwsFault> {
    let name = path.strip_prefix("/clusters/").map(percent_decode);
    let action = if name.is_some() {
        "DescribeCluster"
    } else {
        "ListClusters"
    };
    let auth = verify_header_signed(state, Service::Eks, method, path, query, headers, body);
    let result = auth.clone().and_then(|_| {
        if method != "GET" {
            return Err(AwsFault::new(
                405,
                "UnknownOperationException",
                format!("the fake EKS serves only GET, not {method}"),
            ));
        }
        match &name {
            Some(name) => describe_cluster(state, name),
            None => list_clusters(state, query),
        }
    });
    state.record(AwsCall {
        service: "eks".into(),
        action: action.into(),
        access_key_id: auth.ok().map(|k| k.access_key_id),
        error_code: result.as_ref().err().map(|e| e.code.clone()),
        params: name
            .map(|n| BTreeMap::from([("name".to_owned(), n)]))
            .unwrap_or_default(),
    });
    result
}

fn list_clusters(state: &AwsState, query: &str) -> Result<serde_json::Value, AwsFault> {
    let params = parse_query(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let page_size = match get("maxResults") {
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(AwsFault::new(
                    400,
                    "InvalidParameterException",
                    "maxResults must be between 1 and 100",
                ));
            }
        },
        None => state.options.read().default_page_size.max(1),
    };
    let start = match get("nextToken") {
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(&t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.strip_prefix("fake-eks:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .ok_or_else(|| {
                AwsFault::new(
                    400,
                    "InvalidParameterException",
                    "The nextToken is invalid.",
                )
            })?,
        None => 0,
    };
    let names: Vec<String> = state.clusters.read().keys().cloned().collect();
    let page: Vec<&String> = names.iter().skip(start).take(page_size).collect();
    let mut out = serde_json::json!({ "clusters": page });
    if start + page_size < names.len() {
        out["nextToken"] = serde_json::Value::String(
            base64::engine::general_purpose::STANDARD
                .encode(format!("fake-eks:{}", start + page_size)),
        );
    }
    Ok(out)
}

fn describe_cluster(state: &AwsState, name: &str) -> Result<serde_json::Value, AwsFault> {
    let cluster = state.clusters.read().get(name).cloned().ok_or_else(|| {
        AwsFault::new(
            404,
            "ResourceNotFoundException",
            format!("No cluster found for name: {name}."),
        )
    })?;
    let options = state.options.read().clone();
    Ok(serde_json::json!({
        "cluster": {
            "name": cluster.name,
            "arn": format!("arn:aws:eks:{}:{}:cluster/{}", options.region, options.account_id, cluster.name),
            "createdAt": 1_700_000_000.0,
            "version": cluster.version,
            "endpoint": cluster.endpoint,
            "roleArn": format!("arn:aws:iam::{}:role/eks-cluster", options.account_id),
            "status": cluster.status,
            "certificateAuthority": {
                "data": base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem.as_bytes())
            },
            "platformVersion": "eks.1",
            "tags": {}
        }
    }))
}

fn sts(
    state: &AwsState,
    method: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, AwsFault> {
    let presigned = method == "GET" && query.contains("X-Amz-Signature=");
    let mut params: Vec<(String, String)> = parse_query(query);
    if method == "POST" {
        params.extend(
            url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
        );
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = get("Action").unwrap_or_default();
    let auth = if presigned {
        let header = |name: &str| -> Option<String> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let query_params = parse_query(query);
        verify_presigned(state, Service::Sts, method, "/", &query_params, &header)
    } else {
        verify_header_signed(state, Service::Sts, method, "/", query, headers, body)
    };
    let mut recorded = BTreeMap::new();
    for k in [
        "RoleArn",
        "RoleSessionName",
        "DurationSeconds",
        "Policy",
        "Name",
    ] {
        if let Some(v) = get(k) {
            recorded.insert(k.to_owned(), v);
        }
    }
    let arns: Vec<String> = params
        .iter()
        .filter(|(k, _)| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
        .map(|(_, v)| v.clone())
        .collect();
    if !arns.is_empty() {
        recorded.insert("PolicyArns".into(), arns.join(","));
    }
    if presigned {
        recorded.insert("presigned".into(), "url".into());
    }
    let result = auth.clone().and_then(|key| match action.as_str() {
        "GetCallerIdentity" => Ok(caller_identity_xml(state, &key)),
        "AssumeRole" => assume_role(state, &key, &get),
        "GetSessionToken" => session_token(state, &key, &get),
        "GetFederationToken" => federation_token(state, &key, &get),
        "" => Err(AwsFault::new(400, "MissingAction", "Missing Action")),
        other => Err(AwsFault::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    });
    state.record(AwsCall {
        service: "sts".into(),
        action,
        access_key_id: auth.ok().map(|k| k.access_key_id),
        error_code: result.as_ref().err().map(|e| e.code.clone()),
        params: recorded,
    });
    result
}
