//! Request verification: JWT client assertions, checked as Entra ID does (RS256 with the
//! key of a registered certificate, audience, issuer and subject, `jti`, lifetime).

use base64::Engine as _;

use super::state::FakePrincipal;

/// The longest lifetime of a client assertion Entra ID accepts.
const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// Clock skew allowed on a client assertion's `nbf`.
const ASSERTION_SKEW: i64 = 300;

/// Why a client assertion was refused: the AADSTS code and description.
#[derive(Debug)]
pub(super) struct AssertionError {
    pub(super) code: u32,
    pub(super) description: String,
}

impl AssertionError {
    pub(super) fn new(code: u32, description: String) -> Self {
        AssertionError { code, description }
    }
}

/// Checks a JWT client assertion as Entra ID does: RS256, signed by the key of a
/// certificate registered on the application (found by the header's `x5t`), `aud` the
/// token endpoint, `iss` = `sub` = the client id, `jti` present, and `now` within
/// `nbf`..`exp` (at most an hour apart).
pub(super) fn verify_assertion(
    principal: &FakePrincipal,
    client_id: &str,
    token_endpoint: &str,
    assertion: &str,
    now: i64,
) -> Result<(), AssertionError> {
    let malformed = || AssertionError::new(50027, "JWT token is invalid or malformed.".to_owned());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode = |part: &str| -> Result<serde_json::Value, AssertionError> {
        let bytes = b64.decode(part).map_err(|_| malformed())?;
        serde_json::from_slice(&bytes).map_err(|_| malformed())
    };
    let header_json = decode(header)?;
    let claims_json = decode(claims)?;
    if header_json["alg"] != "RS256" {
        return Err(AssertionError::new(
            5002738,
            "Invalid JWT token. 'RS256' is the only supported signing algorithm for client assertions here.".to_owned(),
        ));
    }
    let Some(thumbprint) = header_json["x5t"].as_str() else {
        return Err(AssertionError::new(
            70021,
            "No matching federated identity record found for presented assertion.".to_owned(),
        ));
    };
    let Some(public_key) = principal.certificates.get(thumbprint) else {
        return Err(AssertionError::new(
            700027,
            format!(
                "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}']"
            ),
        ));
    };
    let signature = b64.decode(signature).map_err(|_| malformed())?;
    let signed = format!("{header}.{claims}");
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key,
    )
    .verify(signed.as_bytes(), &signature)
    .map_err(|_| {
        AssertionError::new(
            700027,
            "Client assertion failed signature validation.".to_owned(),
        )
    })?;
    if claims_json["aud"] != token_endpoint {
        return Err(AssertionError::new(
            700016,
            format!(
                "Invalid JWT token. The token's audience must be the token endpoint {token_endpoint}."
            ),
        ));
    }
    if claims_json["iss"] != client_id || claims_json["sub"] != client_id {
        return Err(AssertionError::new(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter."
                .to_owned(),
        ));
    }
    if claims_json["jti"].as_str().is_none_or(str::is_empty) {
        return Err(AssertionError::new(
            700023,
            "Client assertion contains no 'jti' claim.".to_owned(),
        ));
    }
    let exp = claims_json["exp"].as_i64().ok_or_else(malformed)?;
    let nbf = claims_json["nbf"].as_i64().unwrap_or(now);
    if exp <= now || nbf > now + ASSERTION_SKEW || exp - nbf > MAX_ASSERTION_LIFETIME {
        return Err(AssertionError::new(
            700024,
            "Client assertion is not within its valid time range.".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::keys::{KEY_POOL, public_key_der};

    /// An RS256 JWT over `header` and `claims`, signed with pool key `key`.
    fn sign(key: usize, header: serde_json::Value, claims: serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let pem = KEY_POOL[key];
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", b64.encode(signature))
    }

    #[test]
    fn client_assertions_are_verified_for_real() {
        let endpoint = "https://127.0.0.1:1/t/oauth2/v2.0/token";
        let mut principal = FakePrincipal::default();
        principal
            .certificates
            .insert("thumb".into(), public_key_der(KEY_POOL[0]));
        let now = 1_000_000;
        let claims = |aud: &str, sub: &str, nbf: i64, exp: i64| serde_json::json!({"aud": aud, "iss": "app", "sub": sub, "jti": "j", "nbf": nbf, "exp": exp});
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": "thumb"});
        let good = sign(0, header.clone(), claims(endpoint, "app", now, now + 600));
        verify_assertion(&principal, "app", endpoint, &good, now).unwrap();
        let code = |assertion: &str, now: i64| {
            verify_assertion(&principal, "app", endpoint, assertion, now)
                .unwrap_err()
                .code
        };
        // Signed by another key, or with an unknown thumbprint, or tampered with.
        assert_eq!(
            code(
                &sign(1, header.clone(), claims(endpoint, "app", now, now + 600)),
                now
            ),
            700027
        );
        let unknown = serde_json::json!({"alg": "RS256", "x5t": "other"});
        assert_eq!(
            code(
                &sign(0, unknown, claims(endpoint, "app", now, now + 600)),
                now
            ),
            700027
        );
        let mut tampered = good.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(verify_assertion(&principal, "app", endpoint, &tampered, now).is_err());
        // Wrong audience, subject, expired, too long-lived.
        assert_eq!(
            code(
                &sign(
                    0,
                    header.clone(),
                    claims("https://elsewhere/token", "app", now, now + 600)
                ),
                now
            ),
            700016
        );
        assert_eq!(
            code(
                &sign(0, header.clone(), claims(endpoint, "other", now, now + 600)),
                now
            ),
            700021
        );
        assert_eq!(code(&good, now + 601), 700024);
        assert_eq!(
            code(
                &sign(0, header, claims(endpoint, "app", now, now + 7200)),
                now
            ),
            700024
        );
        assert_eq!(code("not.a.jwt", now), 50027);
    }
}
