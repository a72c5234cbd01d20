//! `TokenSource`: where a cluster connection gets fresh bearer tokens from.

use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use crate::Result;

/// Issues bearer tokens for a cluster: an EKS presigned token, a Google access token, an
/// Entra ID token, a rotated service-account token file, …
///
/// Implementations fetch a new token on every call; the client caches it and asks again
/// shortly before `expires_at`, or after the API rejected it.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A fresh token.
    async fn token(&self) -> Result<BearerToken>;
}

/// A bearer token and when it expires. `Debug` never shows the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct BearerToken {
    /// The token itself.
    pub value: SecretString,
    /// When it stops being accepted; `None` for tokens without a known expiry.
    pub expires_at: Option<Timestamp>,
}

impl BearerToken {
    /// A token that expires at `expires_at`.
    pub fn new(value: impl Into<String>, expires_at: Option<Timestamp>) -> Self {
        BearerToken {
            value: SecretString::from(value.into()),
            expires_at,
        }
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("value", &"[HIDDEN]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}
