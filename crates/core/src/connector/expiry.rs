//! When stored or issued credentials count as expired: `expires_at` minus a skew
//! tolerance (300 s unless the connector sets its own), so a client is never handed
//! credentials that run out while it uses them.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::ConnectorConfig;
use crate::{Error, ErrorKind, Result};

/// The skew tolerance used when a connector sets none.
pub const DEFAULT_EXPIRY_SKEW: Duration = Duration::from_secs(300);

/// The skew tolerance of `config`: its `expires_skew_tolerance`, or [`DEFAULT_EXPIRY_SKEW`].
pub fn skew_tolerance(config: &ConnectorConfig) -> Duration {
    config
        .expires_skew_tolerance
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_EXPIRY_SKEW)
}

/// Whether credentials that expire at `expires_at` count as expired at `now`, that is
/// whether `now` has reached `expires_at - skew`. Credentials without an expiry never
/// expire.
pub fn has_expired(expires_at: Option<Timestamp>, skew: Duration, now: Timestamp) -> bool {
    let Some(expires_at) = expires_at else {
        return false;
    };
    let skew = SignedDuration::try_from(skew).unwrap_or(SignedDuration::MAX);
    match expires_at.checked_sub(skew) {
        Ok(deadline) => now >= deadline,
        Err(_) => true,
    }
}

/// An `Unauthenticated` error naming the connector when its credentials count as expired
/// at `now`.
pub fn check_not_expired(config: &ConnectorConfig, now: Timestamp) -> Result<()> {
    let skew = skew_tolerance(config);
    if !has_expired(config.expires_at, skew, now) {
        return Ok(());
    }
    let expires_at = config.expires_at.map(|t| t.to_string()).unwrap_or_default();
    Err(Error::new(
        ErrorKind::Unauthenticated,
        format!(
            "the credentials of connector `{}` have expired (they expire at {expires_at}, counted {} s early); renew them by updating the connector",
            config.name,
            skew.as_secs()
        ),
    )
    .with_context("connector", config.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn expiry_counts_the_skew() {
        let expires = Some(at("2030-01-01T12:00:00Z"));
        let skew = Duration::from_secs(300);
        assert!(!has_expired(expires, skew, at("2030-01-01T11:54:59Z")));
        assert!(has_expired(expires, skew, at("2030-01-01T11:55:00Z")));
        assert!(has_expired(expires, skew, at("2030-01-01T13:00:00Z")));
        assert!(!has_expired(None, skew, at("2100-01-01T00:00:00Z")));
        assert!(has_expired(
            expires,
            Duration::MAX,
            at("1971-01-01T00:00:00Z")
        ));
    }

    #[test]
    fn the_default_skew_is_300_seconds_unless_set() {
        let mut config = ConnectorConfig::new("eks", "aws", "iam-role");
        assert_eq!(skew_tolerance(&config), Duration::from_secs(300));
        config.expires_skew_tolerance = Some(10);
        assert_eq!(skew_tolerance(&config), Duration::from_secs(10));
        config.expires_skew_tolerance = None;
        config.expires_at = Some(at("2030-01-01T12:00:00Z"));
        assert!(check_not_expired(&config, at("2030-01-01T11:50:00Z")).is_ok());
        let err = check_not_expired(&config, at("2030-01-01T11:56:00Z")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
        assert_eq!(
            err.message(),
            "the credentials of connector `eks` have expired (they expire at 2030-01-01T12:00:00Z, counted 300 s early); renew them by updating the connector"
        );
    }
}
