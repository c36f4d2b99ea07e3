//! The errors the emulator answers with: one constructor per documented code, so the spelling,
//! HTTP status and message of each code live in exactly one place (`kms-api.md` sections 2.5
//! and 6).

use std::fmt;

/// An error answer: the `Code`, HTTP status and `Message` of a KMS or gateway error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The error code, for example `Forbidden.AliasNotFound`.
    pub code: String,
    /// The HTTP status the code travels with.
    pub status: u16,
    /// The human-readable `Message`.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Any code with any status and message (used for injected faults).
    pub fn new(code: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        Self { code: code.into(), status, message: message.into() }
    }

    // Gateway: transport, authentication and request shape.

    /// The HTTP method is neither GET nor POST.
    pub fn unsupported_http_method() -> Self {
        Self::new("UnsupportedHTTPMethod", 403, "This http method is not supported.")
    }

    /// No `AccessKeyId` parameter.
    pub fn missing_access_key_id() -> Self {
        Self::new("MissingAccessKeyId", 400, "AccessKeyId is mandatory for this action.")
    }

    /// The AccessKey id is not known to the emulator.
    pub fn access_key_not_found() -> Self {
        Self::new(
            "InvalidAccessKeyId.NotFound",
            404,
            "The Access Key ID provided does not exist in our records.",
        )
    }

    /// The AccessKey exists but is disabled.
    pub fn access_key_disabled() -> Self {
        Self::new("Forbidden.AccessKey", 403, "This AccessKey is not enabled.")
    }

    /// An STS key was used without its `SecurityToken`.
    pub fn missing_security_token() -> Self {
        Self::new("MissingSecurityToken", 400, "SecurityToken is mandatory for this action.")
    }

    /// The `SecurityToken` is not the one issued with the AccessKey.
    pub fn security_token_mismatch() -> Self {
        Self::new(
            "InvalidSecurityToken.MismatchWithAccessKey",
            400,
            "Specified SecurityToken mismatch with the AccessKey.",
        )
    }

    /// The STS credentials are past their `Expiration`.
    pub fn security_token_expired() -> Self {
        Self::new("InvalidSecurityToken.Expired", 400, "Specified SecurityToken is expired.")
    }

    /// The account and region used up a QPS quota.
    pub fn throttled() -> Self {
        Self::new("Rejected.Throttling", 429, "QPS Limit Exceeded")
    }

    /// The account may not use this region.
    pub fn invalid_region() -> Self {
        Self::new("InvalidRegionId", 400, "The specified region does not exist.")
    }

    /// `Signature`, `SignatureMethod` or `SignatureVersion` missing or unsupported.
    pub fn incomplete_signature(detail: &str) -> Self {
        Self::new(
            "IncompleteSignature",
            400,
            format!("The request signature does not conform to Alibaba Cloud standards. {detail}"),
        )
    }

    /// No `Timestamp` parameter.
    pub fn illegal_timestamp() -> Self {
        Self::new(
            "IllegalTimestamp",
            400,
            "The input parameter \"Timestamp\" that is mandatory for processing this request \
             is not supplied.",
        )
    }

    /// `Timestamp` is not `yyyy-MM-ddTHH:mm:ssZ`.
    pub fn timestamp_format() -> Self {
        Self::new(
            "InvalidTimeStamp.Format",
            400,
            "Specified time stamp or date value is not well formatted.",
        )
    }

    /// `Timestamp` is more than the allowed skew away from the emulator's clock.
    pub fn timestamp_expired() -> Self {
        Self::new("InvalidTimeStamp.Expired", 400, "Specified time stamp or date value is expired.")
    }

    /// The signature differs from the one the emulator computed.
    pub fn signature_mismatch(string_to_sign: &str) -> Self {
        Self::new(
            "SignatureDoesNotMatch",
            400,
            format!(
                "Specified signature is not matched with our calculation. \
                 server string to sign is:{string_to_sign}"
            ),
        )
    }

    /// The `SignatureNonce` was seen within the replay window.
    pub fn nonce_used() -> Self {
        Self::new("SignatureNonceUsed", 400, "Specified signature nonce was used already.")
    }

    /// `Version` is not `2016-01-20`.
    pub fn invalid_version() -> Self {
        Self::new("InvalidVersion", 400, "Specified parameter Version is not valid.")
    }

    /// `Action` names no KMS action the emulator knows.
    pub fn action_not_found() -> Self {
        Self::new(
            "InvalidAction.NotFound",
            404,
            "Specified api is not found, please check your url and method.",
        )
    }

    // KMS: parameters, resources and key states.

    /// A required parameter is absent or empty.
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            400,
            format!("The parameter \"{name}\" is needed but not provided."),
        )
    }

    /// A parameter breaks its documented rule.
    pub fn invalid_parameter(name: &str) -> Self {
        Self::new(
            "InvalidParameter",
            400,
            format!("The specified parameter \"{name}\" is not valid."),
        )
    }

    /// An alias name was given where only a key id or key ARN is accepted.
    pub fn unsupported_alias() -> Self {
        Self::new("Unsupported.Alias", 400, "Alias is not valid for this api.")
    }

    /// The key does not exist in the caller's account and region.
    pub fn key_not_found() -> Self {
        Self::new("Forbidden.KeyNotFound", 404, "The specified Key is not found.")
    }

    /// The alias does not exist in the caller's account and region.
    pub fn alias_not_found() -> Self {
        Self::new("Forbidden.AliasNotFound", 404, "The specified Alias is not found.")
    }

    /// CreateAlias with a name that is taken.
    pub fn alias_already_exists() -> Self {
        Self::new("AliasAlreadyExists", 400, "AliasName Already Exists.")
    }

    /// A resource quota is used up.
    pub fn limit_exceeded(what: &str) -> Self {
        Self::new(
            "Rejected.LimitExceeded",
            400,
            format!("The request was rejected because the user create {what} limit was exceeded."),
        )
    }

    /// The key's state forbids the transition or the alias operation.
    pub fn state_modified_failed() -> Self {
        Self::new("Rejected.StateModifiedFailed", 409, "Keystate modified failed.")
    }

    /// UpdateAlias towards a key that is pending deletion.
    pub fn pending_deletion() -> Self {
        Self::new(
            "Rejected.PendingDeletion",
            409,
            "The request was rejected because the key state is PendingDeletion.",
        )
    }
}

/// The message an injected fault carries when the caller gives none.
pub fn default_fault_message(code: &str) -> &'static str {
    match code {
        "Throttling" => "Request was denied due to request throttling.",
        "Throttling.User" => "Request was denied due to user flow control.",
        "Rejected.Throttling" => "QPS Limit Exceeded",
        "InternalFailure" => "Internal Failure.",
        c if c.contains("Unavailable") || c.contains("Unvailable") => {
            "Service Unavailable Temporary."
        }
        _ => "Fault injected by the KMS emulator.",
    }
}

/// The HTTP status an injected fault uses when the caller gives none.
pub fn default_fault_status(code: &str) -> u16 {
    match code {
        "Rejected.Throttling" => 429,
        "InternalFailure" => 500,
        c if c.contains("Unavailable") || c.contains("Unvailable") => 503,
        _ => 400,
    }
}
