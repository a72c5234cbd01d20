//! The cluster-connection side of a cloud's tokens: a core [`TokenSource`] over any
//! connector's [`TokenIssuer`]. It is the one piece the gcp and azure connectors' token
//! sources share: ask the issuer for a new token of one scope, name the connector (and
//! the project or subscription) in the error, hand the token to the refresh layer.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret as _;
use stepstack_core::connector::ConnectorError;
use stepstack_core::{BearerToken, Result, TokenSource};

use crate::AccessToken;

/// What issues a connector's access tokens (its credentials' grant), per scope.
#[async_trait]
pub trait TokenIssuer: Send + Sync + fmt::Debug + 'static {
    /// The connector crate's own error.
    type Error: ConnectorError;

    /// A new token for `scope`, through the credentials' real path (not a cache: the
    /// client's refresh layer keeps the token and asks again before it expires).
    async fn issue(&self, scope: &str) -> std::result::Result<AccessToken, Self::Error>;
}

/// Fresh tokens of one scope from `issuer`, for a cluster connection.
///
/// Errors are the issuer's, converted with [`ConnectorError::into_core`] for the
/// connector and given the context fields added with [`with_context`](Self::with_context).
pub struct IssuedTokenSource<I> {
    issuer: Arc<I>,
    scope: String,
    connector: String,
    context: Vec<(&'static str, String)>,
}

impl<I: TokenIssuer> IssuedTokenSource<I> {
    /// Tokens of `scope` from `issuer`, on behalf of connector `connector`.
    pub fn new(issuer: Arc<I>, scope: impl Into<String>, connector: impl Into<String>) -> Self {
        IssuedTokenSource {
            issuer,
            scope: scope.into(),
            connector: connector.into(),
            context: Vec::new(),
        }
    }

    /// Adds a context field (such as `("project", id)`) to every error.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }
}

impl<I: TokenIssuer> fmt::Debug for IssuedTokenSource<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokenSource")
            .field("issuer", &self.issuer)
            .field("scope", &self.scope)
            .field("connector", &self.connector)
            .field("context", &self.context)
            .finish()
    }
}

#[async_trait]
impl<I: TokenIssuer> TokenSource for IssuedTokenSource<I> {
    async fn token(&self) -> Result<BearerToken> {
        let token = self.issuer.issue(&self.scope).await.map_err(|e| {
            self.context
                .iter()
                .fold(e.into_core(&self.connector), |error, (key, value)| {
                    error.with_context(key, value.clone())
                })
        })?;
        Ok(BearerToken::new(
            token.value.expose_secret().to_owned(),
            token.expires_at,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use stepstack_core::{Error, ErrorKind};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the grant was refused for {0}")]
    struct Refused(String);

    impl ConnectorError for Refused {
        fn into_core(self, connector: &str) -> Error {
            Error::new(ErrorKind::Unauthenticated, self.to_string())
                .with_context("connector", connector.to_owned())
        }
    }

    /// Issues `token-N` for the first scope asked, refuses the others; records scopes.
    #[derive(Debug, Default)]
    struct Issuer {
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl TokenIssuer for Issuer {
        type Error = Refused;
        async fn issue(&self, scope: &str) -> std::result::Result<AccessToken, Refused> {
            let mut asked = self.asked.lock().unwrap();
            asked.push(scope.to_owned());
            if scope != "aks" {
                return Err(Refused(scope.to_owned()));
            }
            Ok(AccessToken::expiring_in(
                format!("token-{}", asked.len()),
                Some(3600),
            ))
        }
    }

    #[tokio::test]
    async fn every_call_issues_a_new_token_of_the_scope_and_errors_name_the_connector() {
        let issuer = Arc::new(Issuer::default());
        let source = IssuedTokenSource::new(issuer.clone(), "aks", "az")
            .with_context("subscription", "sub-1");
        let first = source.token().await.unwrap();
        let second = source.token().await.unwrap();
        assert_eq!(first.value.expose_secret(), "token-1");
        assert_eq!(second.value.expose_secret(), "token-2");
        assert!(first.expires_at.is_some());
        assert!(!format!("{source:?}").contains("token-"));

        let refused = IssuedTokenSource::new(issuer.clone(), "arm", "az")
            .with_context("subscription", "sub-1");
        let err = refused.token().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert_eq!(
            err.to_string(),
            "the grant was refused for arm (connector: az, subscription: sub-1)"
        );
        assert_eq!(*issuer.asked.lock().unwrap(), ["aks", "aks", "arm"]);
    }
}
