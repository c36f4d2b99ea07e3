//! Verifying an OIDC token (for example a Kubernetes service-account token) the way STS does
//! for `AssumeRoleWithOIDC`: RS256 or ES256 signature against the provider's PEM keys, then
//! `iss`, `aud` and `exp` checked against the provider and the emulator's clock.
//!
//! `jsonwebtoken` checks the signature only; the claim checks are done here so that each
//! failure ends in its own STS code and tests can pass their own `now`.

use super::errors;
use crate::emulator::config::OidcProviderSpec;
use crate::emulator::error::ApiError;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Longest `OIDCToken` STS accepts.
const MAX_TOKEN_LEN: usize = 20_000;

/// The claims of a verified token, as `OIDCTokenInfo` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub subject: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub issued_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Verifies `token` for `provider`, whose keys are the PEM blocks in `pem`.
pub fn verify(
    token: &str,
    provider: &OidcProviderSpec,
    pem: &str,
    now: DateTime<Utc>,
) -> Result<TokenInfo, ApiError> {
    if token.is_empty() {
        return Err(errors::token_invalid("The OIDCToken can not empty."));
    }
    if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
        return Err(errors::token_invalid(
            "The number of Jwt field should be divided into 3 parts with '.' .",
        ));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        errors::token_invalid("Cannot decode base64 encoded response(format invalided).")
    })?;
    let claims = verified_claims(token, header.alg, pem)?;
    check_claims(claims, provider, now)
}

/// Checks the signature with every key of the algorithm's family and returns the claims.
fn verified_claims(token: &str, alg: Algorithm, pem: &str) -> Result<Claims, ApiError> {
    let keys = match alg {
        Algorithm::ES256 => decoding_keys(pem, DecodingKey::from_ec_pem),
        Algorithm::RS256 => decoding_keys(pem, DecodingKey::from_rsa_pem),
        other => {
            let detail =
                format!("The algorithm {other:?} that be specified in Jwt header is unknown.");
            return Err(errors::token_invalid(&detail));
        }
    };
    if keys.is_empty() {
        return Err(errors::token_signature());
    }
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    for key in &keys {
        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {}
            Err(_) => {
                return Err(errors::token_invalid(
                    "The Jwt content is invalid that cannot be recognized.",
                ));
            }
        }
    }
    Err(errors::token_signature())
}

/// Every PEM block of `pem` that `parse` accepts as a key.
fn decoding_keys(
    pem: &str,
    parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
) -> Vec<DecodingKey> {
    pem_blocks(pem).filter_map(|block| parse(block.as_bytes()).ok()).collect()
}

/// The `-----BEGIN ...-----` to `-----END ...-----` blocks of a PEM file.
fn pem_blocks(pem: &str) -> impl Iterator<Item = &str> {
    pem.match_indices("-----BEGIN ").filter_map(move |(start, _)| {
        let rest = &pem[start..];
        let end = rest.find("-----END ")?;
        let close = rest[end + 9..].find("-----")? + end + 9 + 5;
        Some(&rest[..close])
    })
}

fn check_claims(
    claims: Claims,
    provider: &OidcProviderSpec,
    now: DateTime<Utc>,
) -> Result<TokenInfo, ApiError> {
    let issuer = claims.iss.unwrap_or_default();
    if issuer != provider.issuer {
        return Err(errors::issuer_mismatch());
    }
    let audiences = match claims.aud {
        Some(Audience::One(one)) => vec![one],
        Some(Audience::Many(many)) => many,
        None => Vec::new(),
    };
    if !audiences.contains(&provider.audience) {
        return Err(errors::audience_mismatch());
    }
    let expires_at =
        claims.exp.and_then(|exp| DateTime::from_timestamp(exp, 0)).ok_or_else(|| {
            errors::token_invalid("The Jwt content is invalid that cannot be recognized.")
        })?;
    if expires_at <= now {
        return Err(errors::token_expired());
    }
    let subject = claims.sub.filter(|s| !s.is_empty()).ok_or_else(|| {
        errors::token_invalid("The Jwt content is invalid that cannot be recognized.")
    })?;
    Ok(TokenInfo {
        subject,
        issuer,
        audiences,
        expires_at,
        issued_at: claims.iat.and_then(|iat| DateTime::from_timestamp(iat, 0)),
    })
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
