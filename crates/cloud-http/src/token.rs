//! Access tokens and the cache that renews them before they expire.

use std::collections::HashMap;
use std::hash::Hash;

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use tokio::sync::Mutex;

/// An access token and its expiry. `Debug` hides the token.
#[derive(Clone)]
pub struct AccessToken {
    /// The token.
    pub value: SecretString,
    /// When it expires, if known.
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[HIDDEN]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl AccessToken {
    /// `value`, expiring `expires_in` seconds from now (when given).
    pub fn expiring_in(value: impl Into<String>, expires_in: Option<i64>) -> Self {
        AccessToken {
            value: SecretString::from(value.into()),
            expires_at: expires_in.map(|s| Timestamp::now() + SignedDuration::from_secs(s)),
        }
    }

    /// Whether the token is still good `margin` from now (tokens without expiry always
    /// are).
    pub fn is_fresh(&self, margin: SignedDuration) -> bool {
        self.expires_at
            .is_none_or(|at| Timestamp::now() + margin < at)
    }
}

/// Tokens by key (a scope, say), each replaced `margin` before it expires. One fetch
/// at a time: concurrent callers wait for it and share its result.
#[derive(Debug)]
pub struct TokenCache<K> {
    margin: SignedDuration,
    tokens: Mutex<HashMap<K, AccessToken>>,
}

impl<K: Eq + Hash + Clone> TokenCache<K> {
    /// An empty cache renewing tokens `margin` before they expire.
    pub fn new(margin: SignedDuration) -> Self {
        TokenCache {
            margin,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The cached token of `key` unless it expires within the margin; else the token
    /// `fetch` returns, which is then cached.
    pub async fn get_or_fetch<E, F>(&self, key: &K, fetch: F) -> Result<AccessToken, E>
    where
        F: AsyncFnOnce() -> Result<AccessToken, E>,
    {
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(key).filter(|t| t.is_fresh(self.margin)) {
            return Ok(token.clone());
        }
        let token = fetch().await?;
        tokens.insert(key.clone(), token.clone());
        Ok(token)
    }

    /// Forgets the token of `key` (after an API rejected it).
    pub async fn invalidate(&self, key: &K) {
        self.tokens.lock().await.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_reused_until_the_margin_and_refetched_after_invalidation() {
        let cache = TokenCache::new(SignedDuration::from_secs(300));
        let mut fetches = 0;
        for _ in 0..2 {
            cache
                .get_or_fetch(&"arm", async || {
                    fetches += 1;
                    Ok::<_, ()>(AccessToken::expiring_in("a", Some(3600)))
                })
                .await
                .unwrap();
        }
        assert_eq!(fetches, 1);
        cache.invalidate(&"arm").await;
        // Within the margin: fetched every time.
        for _ in 0..2 {
            cache
                .get_or_fetch(&"arm", async || {
                    fetches += 1;
                    Ok::<_, ()>(AccessToken::expiring_in("b", Some(60)))
                })
                .await
                .unwrap();
        }
        assert_eq!(fetches, 3);
        let err = cache
            .get_or_fetch(&"aks", async || Err::<AccessToken, _>("refused"))
            .await
            .unwrap_err();
        assert_eq!(err, "refused");
        let token = AccessToken::expiring_in("hidden-value", None);
        assert!(!format!("{token:?}").contains("hidden-value"));
        assert!(token.is_fresh(SignedDuration::from_secs(1_000_000)));
    }
}
