//! Client certificates of service principals: the PEM holding the application's
//! certificate and its RSA private key, and the JWT client assertion signed with it
//! (RS256, `x5t` = the certificate's SHA-1 thumbprint), which Entra ID accepts in place of
//! a client secret.

use base64::Engine as _;
use ring::rand::SecureRandom as _;
use secrecy::{ExposeSecret as _, SecretString};
use stepstack_cloud_http::{HttpError, RsaSigner, pem_certificates};

use crate::error::{AzureError, AzureResult};

/// The `client_assertion_type` of a JWT client assertion.
pub(crate) const CLIENT_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid (Entra ID takes up to an hour; one use is enough).
const ASSERTION_LIFETIME_SECS: i64 = 600;

/// A certificate and its private key. `Debug` shows only the (public) thumbprint.
pub(crate) struct ClientCertificate {
    signer: RsaSigner,
    /// base64url SHA-1 of the certificate's DER: the JWT header's `x5t`.
    thumbprint: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// The certificate (the first in `pem`) and the private key of `pem`. A password is
    /// only needed for an encrypted key, which this build cannot decrypt.
    pub(crate) fn from_pem(
        pem: &SecretString,
        password: Option<&SecretString>,
        method: &str,
    ) -> AzureResult<Self> {
        let invalid = |e: HttpError| AzureError::InvalidClientCertificate {
            method: method.to_owned(),
            reason: e.to_string(),
        };
        let pem = pem.expose_secret();
        let certificate = pem_certificates(pem)
            .map_err(invalid)?
            .into_iter()
            .next()
            .unwrap_or_default();
        let signer = RsaSigner::from_pem(pem).map_err(|e| {
            let mut error = invalid(e);
            if let (Some(_), AzureError::InvalidClientCertificate { reason, .. }) =
                (password, &mut error)
            {
                reason.push_str(" (`client_certificate_password` cannot be used: decrypting private keys needs ciphers this build does not carry)");
            }
            error
        })?;
        if password.is_some() {
            tracing::debug!(
                "the private key of `client_certificate` is not encrypted; `client_certificate_password` is not used"
            );
        }
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &certificate);
        Ok(ClientCertificate {
            signer,
            thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// The certificate's thumbprint as Entra ID shows it (`x5t`, base64url SHA-1).
    pub(crate) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A client assertion for `client_id` at token endpoint `audience`, valid from `now`
    /// (Unix seconds) for ten minutes.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> AzureResult<String> {
        let mut jti = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| AzureError::InvalidConfig {
                method: "service-principal".to_owned(),
                reason: "no random numbers for the client assertion's `jti`".to_owned(),
            })?;
        let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
        let header = serde_json::json!({"x5t": self.thumbprint});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        Ok(self.signer.sign_jwt(header, &claims)?)
    }
}
