//! The errors of the shared REST plumbing. Each connector maps them into its own error
//! type, adding which setting or endpoint of that connector is concerned. No variant holds
//! a token, a key or a response body that could carry one.

use stepstack_core::ErrorKind;

/// What can go wrong in the shared REST plumbing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The endpoint could not be reached, or did not answer in time.
    #[error("could not reach {endpoint}: {reason}")]
    Unreachable {
        /// The URL (without query) that was called.
        endpoint: String,
        /// What failed: the whole cause chain, or the timeout.
        reason: String,
    },

    /// The endpoint answered with something the caller cannot use.
    #[error("{endpoint} answered with an unexpected response (HTTP {status}): {reason}")]
    BadResponse {
        /// The URL (without query) that was called.
        endpoint: String,
        /// The HTTP status of the answer.
        status: u16,
        /// What was wrong with it.
        reason: String,
    },

    /// The request could not be built (an invalid URL or header).
    #[error("the request to {endpoint} cannot be built: {reason}")]
    InvalidRequest {
        /// The URL that was to be called.
        endpoint: String,
        /// What was invalid.
        reason: String,
    },

    /// A bearer token holds characters that an HTTP header cannot carry.
    #[error(
        "an access token contains characters not allowed in an HTTP header; if it was given in the connector configuration, copy it again without line breaks or spaces"
    )]
    InvalidToken,

    /// TLS could not be set up.
    #[error("TLS cannot be set up: {reason}")]
    Tls {
        /// rustls' reason.
        reason: String,
    },

    /// A PEM document holds no certificate, or a certificate that cannot be used.
    #[error("{reason}")]
    InvalidCertificate {
        /// What is wrong, e.g. "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".
        reason: String,
    },

    /// A private key cannot be read or used.
    #[error("{reason}")]
    InvalidKey {
        /// What is wrong (never the key itself).
        reason: String,
    },
}

impl HttpError {
    /// The kind of core error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            HttpError::Unreachable { .. } => ErrorKind::Unavailable,
            HttpError::BadResponse { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            HttpError::BadResponse { .. } | HttpError::Tls { .. } => ErrorKind::Internal,
            HttpError::InvalidRequest { .. }
            | HttpError::InvalidToken
            | HttpError::InvalidCertificate { .. }
            | HttpError::InvalidKey { .. } => ErrorKind::InvalidSettings,
        }
    }
}

/// Shorthand for this crate's fallible results.
pub(crate) type HResult<T> = Result<T, HttpError>;
