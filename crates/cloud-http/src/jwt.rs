//! RS256 JSON Web Tokens signed with `ring`: the self-signed assertions of Google
//! service accounts and of Entra ID client certificates.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;

use crate::error::{HResult, HttpError};

/// An RSA private key that signs RS256 JWTs. `Debug` shows only the key size.
pub struct RsaSigner {
    pair: RsaKeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("modulus_bits", &(self.pair.public().modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

impl RsaSigner {
    /// The first private key of a PEM document (see [`crate::pem_private_key`]).
    pub fn from_pem(pem: &str) -> HResult<Self> {
        Self::from_key(&crate::pem_private_key(pem)?)
    }

    /// An RSA key in PKCS#8 or PKCS#1 DER.
    pub fn from_key(key: &PrivateKeyDer<'_>) -> HResult<Self> {
        let invalid = |reason: String| HttpError::InvalidKey { reason };
        let pair = match key {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => {
                return Err(invalid(
                    "it is not an RSA private key (RS256 needs RSA; this is an EC key)".to_owned(),
                ));
            }
        }
        .map_err(|e| invalid(format!("it is not a usable RSA private key ({e})")))?;
        Ok(RsaSigner { pair })
    }

    /// `header.claims.signature`, base64url without padding; `header` gets `alg: RS256`
    /// and `typ: JWT` added.
    pub fn sign_jwt(
        &self,
        mut header: serde_json::Value,
        claims: &serde_json::Value,
    ) -> HResult<String> {
        header["alg"] = "RS256".into();
        header["typ"] = "JWT".into();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| HttpError::InvalidKey {
                reason: "signing with it failed".to_owned(),
            })?;
        Ok(format!("{input}.{}", b64.encode(signature)))
    }
}
