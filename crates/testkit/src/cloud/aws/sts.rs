//! The STS actions behind a verified request: the `GetCallerIdentity` answer and the
//! temporary credentials of `AssumeRole`, `GetSessionToken` and `GetFederationToken`
//! (issued into the fake's key store), in STS's XML.

use std::time::Duration;

use base64::Engine as _;

use super::state::{AccessKey, AwsFault, AwsState};

/// The XML namespace of STS answers.
pub(super) const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn caller_identity_xml(state: &AwsState, key: &AccessKey) -> String {
    let account = state.options.read().account_id.clone();
    format!(
        "<GetCallerIdentityResponse xmlns=\"{STS_NS}\">\n  <GetCallerIdentityResult>\n    <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{account}</Account>\n  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        xml_escape(&key.arn),
        xml_escape(&format!(
            "AIDA{}",
            &key.access_key_id.chars().skip(4).collect::<String>()
        )),
        request_id()
    )
}

fn random_upper(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn random_secret(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .take(n)
        .collect()
}

fn duration_param(
    get: &dyn Fn(&str) -> Option<String>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, AwsFault> {
    match get("DurationSeconds") {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(d) if (min..=max).contains(&d) => Ok(d),
            _ => Err(AwsFault::new(
                400,
                "ValidationError",
                format!(
                    "1 validation error detected: Value '{v}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {min} and {max}"
                ),
            )),
        },
    }
}

fn check_policy(get: &dyn Fn(&str) -> Option<String>) -> Result<(), AwsFault> {
    if let Some(policy) = get("Policy")
        && serde_json::from_str::<serde_json::Value>(&policy).is_err()
    {
        return Err(AwsFault::new(
            400,
            "MalformedPolicyDocument",
            "The policy is not in the valid JSON format.",
        ));
    }
    Ok(())
}

/// Issues a temporary key for `arn` valid for `seconds` and returns its XML.
fn issue(state: &AwsState, arn: String, seconds: u64) -> (AccessKey, String) {
    let expires_at = state.now() + Duration::from_secs(seconds);
    let key = AccessKey {
        access_key_id: format!("ASIA{}", random_upper(16)),
        secret_access_key: random_secret(40),
        session_token: Some(format!("FQoGZXIvYXdzE{}", random_secret(120))),
        arn,
        expires_at: Some(expires_at),
    };
    state
        .keys
        .write()
        .insert(key.access_key_id.clone(), key.clone());
    let expiration = jiff::Timestamp::try_from(expires_at)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let xml = format!(
        "<Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>",
        key.access_key_id,
        xml_escape(&key.secret_access_key),
        xml_escape(key.session_token.as_deref().unwrap_or_default()),
    );
    (key, xml)
}

pub(super) fn assume_role(
    state: &AwsState,
    caller: &AccessKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AwsFault> {
    let role_arn = get("RoleArn").ok_or_else(|| AwsFault::new(400, "ValidationError", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"))?;
    let session = get("RoleSessionName").ok_or_else(|| AwsFault::new(400, "ValidationError", "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"))?;
    let session_ok = (2..=64).contains(&session.len())
        && session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if !session_ok {
        return Err(AwsFault::new(
            400,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            ),
        ));
    }
    let seconds = duration_param(get, 3600, 900, 43_200)?;
    check_policy(get)?;
    if !state.roles.read().contains(&role_arn) {
        return Err(AwsFault::new(
            403,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ),
        ));
    }
    let (role_path, role_name) = match role_arn.split_once(":role/") {
        Some((prefix, name)) => (
            prefix.to_owned(),
            name.rsplit('/').next().unwrap_or(name).to_owned(),
        ),
        None => {
            return Err(AwsFault::new(
                400,
                "ValidationError",
                format!("{role_arn} is invalid"),
            ));
        }
    };
    let account = role_path.rsplit(':').next().unwrap_or_default().to_owned();
    let partition = role_path.split(':').nth(1).unwrap_or("aws").to_owned();
    let assumed = format!("arn:{partition}:sts::{account}:assumed-role/{role_name}/{session}");
    let (_, creds) = issue(state, assumed.clone(), seconds);
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"{STS_NS}\">\n  <AssumeRoleResult>\n    {creds}\n    <AssumedRoleUser>\n      <AssumedRoleId>AROA{}:{}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        random_upper(16),
        xml_escape(&session),
        xml_escape(&assumed),
        request_id()
    ))
}

pub(super) fn session_token(
    state: &AwsState,
    caller: &AccessKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AwsFault> {
    if caller.session_token.is_some() {
        return Err(AwsFault::new(
            403,
            "AccessDenied",
            "Cannot call GetSessionToken with session credentials",
        ));
    }
    let seconds = duration_param(get, 43_200, 900, 129_600)?;
    let (_, creds) = issue(state, caller.arn.clone(), seconds);
    Ok(format!(
        "<GetSessionTokenResponse xmlns=\"{STS_NS}\">\n  <GetSessionTokenResult>\n    {creds}\n  </GetSessionTokenResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetSessionTokenResponse>\n",
        request_id()
    ))
}

pub(super) fn federation_token(
    state: &AwsState,
    caller: &AccessKey,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AwsFault> {
    if caller.session_token.is_some() {
        return Err(AwsFault::new(
            403,
            "AccessDenied",
            "Cannot call GetFederationToken with session credentials",
        ));
    }
    let name = get("Name").unwrap_or_default();
    if !(2..=32).contains(&name.len())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(AwsFault::new(
            400,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must have length between 2 and 32"
            ),
        ));
    }
    let seconds = duration_param(get, 43_200, 900, 129_600)?;
    check_policy(get)?;
    let account = state.options.read().account_id.clone();
    let arn = format!("arn:aws:sts::{account}:federated-user/{name}");
    let (_, creds) = issue(state, arn.clone(), seconds);
    Ok(format!(
        "<GetFederationTokenResponse xmlns=\"{STS_NS}\">\n  <GetFederationTokenResult>\n    {creds}\n    <FederatedUser>\n      <FederatedUserId>{account}:{}</FederatedUserId>\n      <Arn>{}</Arn>\n    </FederatedUser>\n    <PackedPolicySize>6</PackedPolicySize>\n  </GetFederationTokenResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</GetFederationTokenResponse>\n",
        xml_escape(&name),
        xml_escape(&arn),
        request_id()
    ))
}
