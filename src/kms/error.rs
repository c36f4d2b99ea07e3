//! The error a KMS call can end in, classified the way the reconciler needs to act on it.

/// What kind of failure a KMS error code stands for. The reconciler decides on this, never on
/// the raw code, so one table below is the only place that knows Alibaba's spellings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The key named in the request does not exist (`Forbidden.KeyNotFound`).
    KeyNotFound,
    /// The alias named in the request does not exist (`Forbidden.AliasNotFound`).
    AliasNotFound,
    /// The alias name is taken in this account and region (`AliasAlreadyExists`).
    AlreadyExists,
    /// The key exists but its state forbids the call (`Rejected.*` state errors, HTTP 409).
    KeyNotUsable,
    /// A quota was hit (`Rejected.LimitExceeded`): needs a human, not a retry loop.
    LimitExceeded,
    /// The call was rate limited (`Throttling*`, `Rejected.Throttling`).
    Throttled,
    /// Credentials were refused or lack permission (signature, AccessKey, RAM).
    Auth,
    /// The request itself was malformed or a parameter broke a rule.
    InvalidParameter,
    /// No credentials could be obtained (file missing, STS unreachable, ...).
    CredentialsUnavailable,
    /// The service or network failed in a way that a later retry may fix.
    Transient,
}

impl ErrorKind {
    /// Whether retrying the same call later can succeed without a spec or config change.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient | Self::CredentialsUnavailable)
    }
}

/// An error answer from KMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub action: &'static str,
    pub code: String,
    pub message: String,
    pub status: u16,
    pub request_id: String,
}

/// A failed KMS call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// KMS answered with an error body.
    #[error(
        "{} failed with {} (HTTP {}): {} (request id {})",
        .0.action, .0.code, .0.status, .0.message, .0.request_id
    )]
    Api(Box<ApiError>),
    /// The request did not get an answer: connection, TLS or timeout.
    #[error("{action} failed to reach KMS at {endpoint}")]
    Transport {
        action: &'static str,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The account's budget is spent for longer than a call may wait; nothing was sent.
    #[error("{action} was not sent: the account's request budget frees up in {retry_after:?}")]
    OverBudget { action: &'static str, retry_after: std::time::Duration },
    /// No credentials could be obtained for the call; nothing was sent.
    #[error("{action} could not get credentials")]
    Credentials {
        action: &'static str,
        #[source]
        source: super::credentials::CredentialsError,
    },
    /// The answer could not be understood.
    #[error("{action} returned a body that is not the documented shape (HTTP {status})")]
    Decode {
        action: &'static str,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api(api) => classify(&api.code, api.status),
            Self::Transport { .. } => ErrorKind::Transient,
            Self::Credentials { .. } => ErrorKind::CredentialsUnavailable,
            Self::OverBudget { .. } => ErrorKind::Throttled,
            Self::Decode { status, .. } if *status >= 500 => ErrorKind::Transient,
            Self::Decode { .. } => ErrorKind::InvalidParameter,
        }
    }

    /// The KMS error code, when KMS gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api(api) => Some(&api.code),
            _ => None,
        }
    }

    /// Whether this outcome is uncertain: the request may have been applied.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Transport { source, .. } => !source.is_connect(),
            Self::Api(api) => api.status >= 500,
            Self::Decode { .. } => true,
            Self::Credentials { .. } | Self::OverBudget { .. } => false,
        }
    }

    /// How long to wait before trying again, when the failure says so.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::OverBudget { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The action that failed.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Api(api) => api.action,
            Self::Transport { action, .. }
            | Self::Decode { action, .. }
            | Self::Credentials { action, .. }
            | Self::OverBudget { action, .. } => action,
        }
    }
}

/// Maps an error code and HTTP status to its kind. Unknown codes fall back on the status.
pub fn classify(code: &str, status: u16) -> ErrorKind {
    match code {
        "Forbidden.KeyNotFound" => ErrorKind::KeyNotFound,
        "Forbidden.AliasNotFound" => ErrorKind::AliasNotFound,
        "AliasAlreadyExists" | "Rejected.ResourceExist" => ErrorKind::AlreadyExists,
        "Rejected.LimitExceeded" => ErrorKind::LimitExceeded,
        "Rejected.Throttling" => ErrorKind::Throttled,
        c if c.starts_with("Throttling") => ErrorKind::Throttled,
        c if c.starts_with("Rejected.") && status == 409 => ErrorKind::KeyNotUsable,
        "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "Forbidden.AccessKey"
        | "Forbidden.NoPermission"
        | "Forbidden.KmsServiceNotEnabled"
        | "Forbidden.InDebt"
        | "Forbidden.InDebtOverdue"
        | "MissingAccessKeyId" => ErrorKind::Auth,
        c if c.starts_with("InvalidAccessKeyId") || c.starts_with("InvalidSecurityToken") => {
            ErrorKind::Auth
        }
        // Clock skew and nonce reuse are fixed by sending the request again with new values.
        c if c.starts_with("InvalidTimeStamp") || c == "SignatureNonceUsed" => ErrorKind::Transient,
        "InternalFailure" | "ServiceUnavailable" => ErrorKind::Transient,
        c if c.starts_with("Serivce") || c.starts_with("ServiceUnavailable") => {
            ErrorKind::Transient
        }
        _ if status == 429 => ErrorKind::Throttled,
        _ if status >= 500 => ErrorKind::Transient,
        _ if status == 401 || status == 403 => ErrorKind::Auth,
        _ => ErrorKind::InvalidParameter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            ("Forbidden.KeyNotFound", 404, ErrorKind::KeyNotFound, "missing key"),
            ("Forbidden.AliasNotFound", 404, ErrorKind::AliasNotFound, "missing alias"),
            ("AliasAlreadyExists", 400, ErrorKind::AlreadyExists, "documented duplicate"),
            ("Rejected.ResourceExist", 409, ErrorKind::AlreadyExists, "newer duplicate code"),
            ("Rejected.StateModifiedFailed", 409, ErrorKind::KeyNotUsable, "pending deletion"),
            ("Rejected.PendingDeletion", 409, ErrorKind::KeyNotUsable, "update target"),
            ("Rejected.Throttling", 429, ErrorKind::Throttled, "QPS limit"),
            ("Throttling.User", 400, ErrorKind::Throttled, "flow control"),
            ("Throttling", 400, ErrorKind::Throttled, "per-action throttling"),
            ("Rejected.LimitExceeded", 400, ErrorKind::LimitExceeded, "alias quota"),
            ("SignatureDoesNotMatch", 400, ErrorKind::Auth, "wrong secret"),
            ("InvalidAccessKeyId.NotFound", 404, ErrorKind::Auth, "unknown AccessKey"),
            ("Forbidden.NoPermission", 403, ErrorKind::Auth, "RAM deny"),
            ("InvalidParameter", 400, ErrorKind::InvalidParameter, "bad parameter"),
            ("InternalFailure", 500, ErrorKind::Transient, "server error"),
            ("SerivceUnvailableTemporary", 503, ErrorKind::Transient, "misspelled 503"),
            ("SomethingNew", 502, ErrorKind::Transient, "unknown 5xx"),
            ("SomethingNew", 429, ErrorKind::Throttled, "unknown 429"),
            ("InvalidTimeStamp.Expired", 400, ErrorKind::Transient, "clock skew"),
        ];
        for (code, status, want, reason) in cases {
            assert_eq!(classify(code, status), want, "{reason}: {code}");
        }
    }

    #[test]
    fn only_throttling_and_transient_are_retryable() {
        assert!(ErrorKind::Throttled.is_transient());
        assert!(ErrorKind::Transient.is_transient());
        assert!(!ErrorKind::KeyNotFound.is_transient());
        assert!(!ErrorKind::Auth.is_transient());
    }
}
