//! Request verification: SigV4 signatures (in the Authorization header or presigned in
//! the query string) checked against the configured keys, with their scope, date and
//! expiry; and EKS bearer tokens checked as aws-iam-authenticator and STS together do.

use std::time::Duration;

use base64::Engine as _;
use http::HeaderMap;

use super::sigv4::{
    amz_date, canonical_query, hex, hmac, normalize_header_value, parse_amz_date, parse_query,
    same, sha256_hex, signing_key, uri_encode,
};
use super::state::{AccessKey, AwsFault, AwsState, CallerIdentity};

/// The prefix of EKS bearer tokens.
pub const EKS_TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// How old an EKS token may be (aws-iam-authenticator's check of `X-Amz-Date`).
pub const EKS_TOKEN_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// How far a header-signed request's `X-Amz-Date` may be from the clock.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// What signing produced: the scope and the signed header names.
struct Signed<'a> {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    header: &'a dyn Fn(&str) -> Option<String>,
}

/// Error codes per service for the same failure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Service {
    Sts,
    Eks,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Sts => "sts",
            Service::Eks => "eks",
        }
    }
    fn unknown_key(self) -> AwsFault {
        match self {
            Service::Sts => AwsFault::new(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ),
            Service::Eks => AwsFault::new(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
        }
    }
    fn bad_signature(self, detail: &str) -> AwsFault {
        let message = format!(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. {detail}"
        );
        match self {
            Service::Sts => AwsFault::new(403, "SignatureDoesNotMatch", message.trim_end()),
            Service::Eks => AwsFault::new(403, "InvalidSignatureException", message.trim_end()),
        }
    }
    fn expired_token(self) -> AwsFault {
        match self {
            Service::Sts => AwsFault::new(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            Service::Eks => AwsFault::new(
                403,
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ),
        }
    }
    fn missing_auth(self) -> AwsFault {
        match self {
            Service::Sts => AwsFault::new(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ),
            Service::Eks => AwsFault::new(
                403,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
        }
    }
}

/// Checks a signature over a request; returns the key that signed it.
#[allow(clippy::too_many_arguments)]
fn check_signature(
    state: &AwsState,
    service: Service,
    method: &str,
    raw_path: &str,
    canonical_query: &str,
    payload_hashes: &[String],
    signed: &Signed<'_>,
    session_token: Option<&str>,
) -> Result<AccessKey, AwsFault> {
    let key = state
        .keys
        .read()
        .get(&signed.access_key_id)
        .cloned()
        .ok_or_else(|| service.unknown_key())?;
    if key.session_token.as_deref() != session_token {
        return Err(service.unknown_key());
    }
    if let Some(expires) = key.expires_at
        && state.now() > expires
    {
        return Err(service.expired_token());
    }
    if signed.service != service.name() {
        return Err(service.bad_signature(&format!(
            "Credential should be scoped to correct service: '{}'.",
            service.name()
        )));
    }
    let region = state.options.read().region.clone();
    if signed.region != region {
        return Err(service.bad_signature(&format!(
            "Credential should be scoped to a valid region. (expected '{region}', got '{}')",
            signed.region
        )));
    }
    if !signed.amz_date.starts_with(&signed.date) {
        return Err(service.bad_signature(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.",
        ));
    }
    let mut canonical_headers = String::new();
    for name in &signed.signed_headers {
        let value = (signed.header)(name).ok_or_else(|| {
            service.bad_signature(&format!(
                "The signed header '{name}' is missing from the request."
            ))
        })?;
        canonical_headers.push_str(&format!("{name}:{}\n", normalize_header_value(&value)));
    }
    let canonical_uri = uri_encode(if raw_path.is_empty() { "/" } else { raw_path }, true);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        signed.date, signed.region, signed.service
    );
    let key_bytes = signing_key(
        &key.secret_access_key,
        &signed.date,
        &signed.region,
        &signed.service,
    );
    for payload_hash in payload_hashes {
        let canonical_request = format!(
            "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
            signed.signed_headers.join(";")
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            signed.amz_date,
            sha256_hex(canonical_request.as_bytes())
        );
        let expected = hex(&hmac(&key_bytes, string_to_sign.as_bytes()));
        if same(&expected, &signed.signature) {
            return Ok(key);
        }
    }
    Err(service.bad_signature(""))
}

fn parse_credential(credential: &str) -> Option<(String, String, String, String)> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"] => Some((
            (*key).to_owned(),
            (*date).to_owned(),
            (*region).to_owned(),
            (*service).to_owned(),
        )),
        _ => None,
    }
}

/// Verifies a query-string presigned request (`X-Amz-*` parameters).
pub(super) fn verify_presigned(
    state: &AwsState,
    service: Service,
    method: &str,
    raw_path: &str,
    params: &[(String, String)],
    header: &dyn Fn(&str) -> Option<String>,
) -> Result<AccessKey, AwsFault> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("X-Amz-Algorithm").as_deref() != Some("AWS4-HMAC-SHA256") {
        return Err(service.missing_auth());
    }
    let (Some(credential), Some(date), Some(signed_headers), Some(signature)) = (
        get("X-Amz-Credential"),
        get("X-Amz-Date"),
        get("X-Amz-SignedHeaders"),
        get("X-Amz-Signature"),
    ) else {
        return Err(AwsFault::new(
            400,
            "AuthorizationQueryParametersError",
            "Query-string authentication requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    let (access_key_id, scope_date, region, scope_service) = parse_credential(&credential)
        .ok_or_else(|| {
            AwsFault::new(
                400,
                "AuthorizationQueryParametersError",
                "Error parsing the X-Amz-Credential parameter.",
            )
        })?;
    let signed_at = parse_amz_date(&date).ok_or_else(|| {
        AwsFault::new(
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        )
    })?;
    let expires: u64 = get("X-Amz-Expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| {
            AwsFault::new(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be a number of seconds.",
            )
        })?;
    let max_age = state
        .options
        .read()
        .presigned_max_age
        .unwrap_or(Duration::from_secs(expires));
    let now = state.now();
    if signed_at > now + MAX_SKEW {
        return Err(service.bad_signature("Signature not yet current."));
    }
    if now > signed_at + max_age {
        return Err(AwsFault::new(
            403,
            if service == Service::Sts {
                "ExpiredToken"
            } else {
                "ExpiredTokenException"
            },
            format!(
                "Request has expired: signed at {date} for {} s, now {}",
                max_age.as_secs(),
                amz_date(now)
            ),
        ));
    }
    let signed = Signed {
        access_key_id,
        date: scope_date,
        region,
        service: scope_service,
        signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
        signature,
        amz_date: date,
        header,
    };
    let session_token = get("X-Amz-Security-Token");
    let payloads = [sha256_hex(b""), "UNSIGNED-PAYLOAD".to_owned()];
    check_signature(
        state,
        service,
        method,
        raw_path,
        &canonical_query(params, true),
        &payloads,
        &signed,
        session_token.as_deref(),
    )
}

/// Verifies a request signed in the Authorization header.
pub(super) fn verify_header_signed(
    state: &AwsState,
    service: Service,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AccessKey, AwsFault> {
    let header = |name: &str| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let Some(authorization) = header("authorization") else {
        return Err(service.missing_auth());
    };
    let Some(fields) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(AwsFault::new(
            400,
            "IncompleteSignature",
            "Unsupported authorization type",
        ));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v.to_owned()),
            Some(("SignedHeaders", v)) => signed_headers = Some(v.to_owned()),
            Some(("Signature", v)) => signature = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(AwsFault::new(
            400,
            "IncompleteSignature",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters.",
        ));
    };
    let (access_key_id, scope_date, region, scope_service) = parse_credential(&credential)
        .ok_or_else(|| {
            AwsFault::new(
                400,
                "IncompleteSignature",
                "Authorization header's Credential is malformed.",
            )
        })?;
    let Some(date) = header("x-amz-date") else {
        return Err(AwsFault::new(
            400,
            "IncompleteSignature",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    let signed_at = parse_amz_date(&date).ok_or_else(|| {
        AwsFault::new(
            400,
            "IncompleteSignature",
            "X-Amz-Date is not in the ISO8601 basic format.",
        )
    })?;
    let now = state.now();
    let skew = match now.duration_since(signed_at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_SKEW {
        return Err(service.bad_signature(&format!(
            "Signature expired: {date} is now earlier than {} ({} - 15 min.)",
            amz_date(now - MAX_SKEW),
            amz_date(now)
        )));
    }
    let signed = Signed {
        access_key_id,
        date: scope_date,
        region,
        service: scope_service,
        signed_headers: signed_headers.split(';').map(str::to_owned).collect(),
        signature,
        amz_date: date,
        header: &header,
    };
    let payload = header("x-amz-content-sha256").unwrap_or_else(|| sha256_hex(body));
    let params = parse_query(raw_query);
    check_signature(
        state,
        service,
        method,
        raw_path,
        &canonical_query(&params, false),
        &[payload],
        &signed,
        header("x-amz-security-token").as_deref(),
    )
}

/// The STS hosts EKS tokens may name (aws-iam-authenticator's list): the global host and
/// regional hosts of the partitions.
fn is_sts_host(host: &str) -> bool {
    if host == "sts.amazonaws.com" {
        return true;
    }
    let Some(rest) = host.strip_prefix("sts.") else {
        return false;
    };
    let Some((region, suffix)) = rest.split_once('.') else {
        return false;
    };
    let regional_suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    suffix == regional_suffix && region.split('-').count() >= 3
}

pub(super) fn validate_eks_token(
    state: &AwsState,
    token: &str,
    cluster_name: &str,
) -> Result<CallerIdentity, AwsFault> {
    let reject = |m: String| AwsFault::new(401, "InvalidToken", m);
    let encoded = token.strip_prefix(EKS_TOKEN_PREFIX).ok_or_else(|| {
        reject(format!(
            "token is missing the expected \"{EKS_TOKEN_PREFIX}\" prefix"
        ))
    })?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| reject("token is not valid base64url".into()))?;
    let url = String::from_utf8(bytes).map_err(|_| reject("token is not a UTF-8 URL".into()))?;
    let parsed = url::Url::parse(&url).map_err(|_| reject("token does not hold a URL".into()))?;
    if parsed.scheme() != "https" {
        return Err(reject(format!(
            "unexpected scheme {:?} in pre-signed URL",
            parsed.scheme()
        )));
    }
    let host = parsed.host_str().unwrap_or_default().to_owned();
    if !is_sts_host(&host) || parsed.port().is_some() {
        return Err(reject(format!(
            "unexpected hostname {host:?} in pre-signed URL"
        )));
    }
    if parsed.path() != "/" {
        return Err(reject("unexpected path in pre-signed URL".into()));
    }
    let params = parse_query(parsed.query().unwrap_or_default());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    for (name, _) in &params {
        let allowed = matches!(name.as_str(), "Action" | "Version") || name.starts_with("X-Amz-");
        if !allowed {
            return Err(reject(format!("non-whitelisted query parameter {name:?}")));
        }
    }
    if get("Action") != Some("GetCallerIdentity") {
        return Err(reject(
            "unexpected action parameter in pre-signed URL".into(),
        ));
    }
    if get("Version") != Some("2011-06-15") {
        return Err(reject(
            "unexpected version parameter in pre-signed URL".into(),
        ));
    }
    let signed_headers: Vec<&str> = get("X-Amz-SignedHeaders")
        .unwrap_or_default()
        .split(';')
        .collect();
    if !signed_headers.contains(&"x-k8s-aws-id") {
        return Err(reject(
            "client did not sign the x-k8s-aws-id header in the pre-signed URL".into(),
        ));
    }
    if !signed_headers.contains(&"host") {
        return Err(reject(
            "client did not sign the host header in the pre-signed URL".into(),
        ));
    }
    let date = get("X-Amz-Date")
        .and_then(parse_amz_date)
        .ok_or_else(|| reject("X-Amz-Date parameter is missing or malformed".into()))?;
    if state.now() > date + EKS_TOKEN_MAX_AGE {
        return Err(reject(
            "X-Amz-Date parameter is expired (15 minute expiration)".into(),
        ));
    }
    let cluster = cluster_name.to_owned();
    let header = move |name: &str| -> Option<String> {
        match name {
            "host" => Some(host.clone()),
            "x-k8s-aws-id" => Some(cluster.clone()),
            _ => None,
        }
    };
    let key = verify_presigned(state, Service::Sts, "GET", "/", &params, &header)?;
    Ok(CallerIdentity {
        arn: key.arn,
        account: state.options.read().account_id.clone(),
        access_key_id: key.access_key_id,
    })
}
