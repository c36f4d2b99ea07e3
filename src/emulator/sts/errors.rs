//! The STS (API version 2015-04-01) error codes the emulator answers with. Codes and messages
//! follow Alibaba's STS error-code table where it has one; `IssuerNotMatch` and the
//! `Missing{Name}` form are modelled on their documented siblings.

use crate::emulator::error::ApiError;

/// A required STS parameter is absent or empty: `Missing{Name}`, 400.
pub fn missing(name: &str) -> ApiError {
    ApiError::new(format!("Missing{name}"), 400, format!("{name} is mandatory for this action."))
}

/// `InvalidParameter.{Name}`, 400, "The parameter {Name} is wrongly formed."
pub fn invalid(name: &str) -> ApiError {
    ApiError::new(
        format!("InvalidParameter.{name}"),
        400,
        format!("The parameter {name} is wrongly formed."),
    )
}

/// `DurationSeconds` outside 900 to the role's maximum.
pub fn invalid_duration(max: u32) -> ApiError {
    ApiError::new(
        "InvalidParameter.DurationSeconds",
        400,
        format!("The Min/Max value of DurationSeconds is 900/{max} seconds."),
    )
}

/// `Policy` is not a JSON object.
pub fn policy_grammar() -> ApiError {
    ApiError::new(
        "InvalidParameter.PolicyGrammar",
        400,
        "The parameter Policy has not passed grammar check.",
    )
}

/// `Policy` is longer than 2048 characters.
pub fn policy_size() -> ApiError {
    ApiError::new("InvalidParameter.PolicySize", 400, "The parameter Policy is too long.")
}

/// No configured role has this ARN.
pub fn role_not_found(arn: &str) -> ApiError {
    ApiError::new("EntityNotExist.Role", 404, format!("The role not exists: {arn}."))
}

/// The role does not trust the caller's account.
pub fn no_permission() -> ApiError {
    ApiError::new(
        "NoPermission",
        403,
        "No permission perform sts:AssumeRole on this Role. Maybe you should check the role's \
         trust policy.",
    )
}

/// No OIDC provider has this ARN.
pub fn provider_not_found() -> ApiError {
    ApiError::new("AuthenticationFail.NoPermission", 401, "No such OIDC Provider registered.")
}

/// The role does not trust the provider, or the token's subject is not allowed.
pub fn oidc_no_permission() -> ApiError {
    ApiError::new("AuthenticationFail.NoPermission", 401, "There is no permission.")
}

/// The token is empty, malformed or uses an unsupported algorithm.
pub fn token_invalid(detail: &str) -> ApiError {
    ApiError::new("AuthenticationFail.OIDCToken.Invalid", 401, detail)
}

/// The token's signature does not verify with the provider's keys.
pub fn token_signature() -> ApiError {
    ApiError::new(
        "AuthenticationFail.OIDCToken.InvalidSignature",
        401,
        "OIDC token validate failed: invalid signature.",
    )
}

/// The token's `exp` has passed.
pub fn token_expired() -> ApiError {
    ApiError::new("AuthenticationFail.OIDCToken.Expired", 401, "This JsonWebToken is expired.")
}

/// The token's `aud` does not include the provider's audience.
pub fn audience_mismatch() -> ApiError {
    ApiError::new("AuthenticationFail.OIDCToken.AudienceNotMatch", 401, "Invalid audience.")
}

/// The token's `iss` is not the provider's issuer.
pub fn issuer_mismatch() -> ApiError {
    ApiError::new("AuthenticationFail.OIDCToken.IssuerNotMatch", 401, "Invalid issuer.")
}

/// The provider's public key file cannot be read or holds no usable key.
pub fn internal() -> ApiError {
    ApiError::new(
        "InternalError",
        500,
        "The request processing has failed due to some unknown error.",
    )
}
