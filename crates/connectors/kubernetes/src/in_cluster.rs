//! The in-cluster service account: a token source that re-reads the projected token file,
//! which the kubelet rotates.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use stepstack_core::{BearerToken, Error, ErrorKind, Result, TokenSource};

/// How long a token read from the file is used before the file is read again. The
/// kubelet rotates projected tokens well before they expire; a token rejected with 401
/// is re-read at once.
pub(crate) const REREAD_AFTER: Duration = Duration::from_secs(60);

/// Reads the service-account token from its file on every call.
#[derive(Debug)]
pub(crate) struct ServiceAccountToken {
    pub(crate) path: PathBuf,
}

#[async_trait]
impl TokenSource for ServiceAccountToken {
    async fn token(&self) -> Result<BearerToken> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "could not read the service-account token {}; is this process running in a pod with a service account?",
                    self.path.display()
                ),
            )
            .with_source(e)
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!(
                    "the service-account token file {} is empty",
                    self.path.display()
                ),
            ));
        }
        let expires_at = Timestamp::now()
            .checked_add(SignedDuration::try_from(REREAD_AFTER).unwrap_or_default())
            .ok();
        Ok(BearerToken::new(token, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[tokio::test]
    async fn the_token_file_is_read_again_on_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = ServiceAccountToken { path: path.clone() };
        assert_eq!(source.token().await.unwrap().value.expose_secret(), "first");
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(
            source.token().await.unwrap().value.expose_secret(),
            "rotated"
        );
        std::fs::remove_file(&path).unwrap();
        let err = source.token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert!(format!("{source:?}").contains("token"));
    }
}
