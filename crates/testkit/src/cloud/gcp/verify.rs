//! Request verification: the RS256 JWT assertions of service-account keys, checked
//! against the public keys the fake handed out, with their audience, scope and lifetime.

use base64::Engine as _;
use jiff::Timestamp;
use ring::signature;

use super::state::{CLOUD_PLATFORM_SCOPE, GcpState};

/// The longest lifetime of a self-signed JWT assertion Google accepts.
const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// How far in the future an assertion's `iat` may be (clock skew).
const MAX_IAT_SKEW: i64 = 300;

/// Checks a service-account JWT assertion and returns the service account's email.
pub(super) fn check_assertion(
    state: &GcpState,
    assertion: Option<&String>,
) -> Result<String, String> {
    let assertion = assertion.ok_or("Missing required parameter: assertion")?;
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into(),
        );
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = b64
            .decode(part)
            .map_err(|_| "Invalid JWT: not base64url".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "Invalid JWT: not JSON".to_owned())
    };
    let header = decode(header)?;
    let claims = decode(claims)?;
    if header["alg"] != "RS256" {
        return Err("Invalid JWT: alg must be RS256".into());
    }
    let email = claims["iss"]
        .as_str()
        .ok_or("Invalid JWT: no iss")?
        .to_owned();
    let keys = state.keys.read();
    let account_keys = keys
        .get(&email)
        .ok_or_else(|| format!("Invalid grant: account not found ({email})"))?;
    let candidates: Vec<&Vec<u8>> = match header["kid"].as_str() {
        Some(kid) => account_keys.get(kid).into_iter().collect(),
        None => account_keys.values().collect(),
    };
    if candidates.is_empty() {
        return Err("Invalid JWT Signature.".into());
    }
    let signed = &assertion[..assertion.len() - signature.len() - 1];
    let signature = b64
        .decode(signature)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let verified = candidates.iter().any(|public| {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &signature)
            .is_ok()
    });
    if !verified {
        return Err("Invalid JWT Signature.".into());
    }
    if claims["aud"] != state.token_url().as_str() {
        return Err(format!(
            "Invalid JWT: audience must be {}",
            state.token_url()
        ));
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE) {
        return Err("Invalid JWT: the scope must include cloud-platform".into());
    }
    let now = Timestamp::now().as_second();
    let iat = claims["iat"].as_i64().ok_or("Invalid JWT: no iat")?;
    let exp = claims["exp"].as_i64().ok_or("Invalid JWT: no exp")?;
    if exp <= now || iat > now + MAX_IAT_SKEW || exp - iat > MAX_ASSERTION_LIFETIME || exp <= iat {
        return Err(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".into(),
        );
    }
    Ok(email)
}
