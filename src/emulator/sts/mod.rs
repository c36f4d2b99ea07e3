//! A local STS (API version 2015-04-01) on the emulator's port: `AssumeRole` (signed with the
//! caller's AccessKey) and `AssumeRoleWithOIDC` (unsigned, authenticated by a JWT), answering
//! the shapes of `kms-api.md` sections 10.2 and 10.3.
//!
//! Roles and OIDC providers come from the configuration. Issued keys land in
//! [`Identities`] and act in the role's account. The gateway checks for `AssumeRole`
//! (signature, timestamp, nonce) are done by the protocol layer before [`execute`] runs.

pub mod errors;
pub mod oidc;

use super::config::{EmulatorConfig, OidcProviderSpec, RoleSpec};
use super::error::ApiError;
use super::identity::{Identities, TempKey};
use super::protocol::Params;
use super::state::format_time;
use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use serde_json::{Value, json};

/// The STS API version.
pub const STS_VERSION: &str = "2015-04-01";
/// The actions served; only `AssumeRoleWithOIDC` is unsigned.
pub const ACTIONS: &[&str] = &["AssumeRole", "AssumeRoleWithOIDC"];
/// Shortest `DurationSeconds`.
const MIN_DURATION: u32 = 900;
/// `DurationSeconds` when none is given.
const DEFAULT_DURATION: u32 = 3600;
/// A role's `MaxSessionDuration` when the configuration gives none.
const DEFAULT_MAX_DURATION: u32 = 3600;
/// Longest `Policy`.
const MAX_POLICY_LEN: usize = 2048;

/// Whether an STS action needs no signature.
pub fn is_anonymous(action: &str) -> bool {
    action == "AssumeRoleWithOIDC"
}

/// A successful STS call: its body and the account the issued key belongs to.
#[derive(Debug)]
pub struct Issued {
    pub body: Value,
    pub account: String,
}

/// Runs one STS action. `caller` is the signing account for `AssumeRole`.
pub fn execute(
    config: &EmulatorConfig,
    identities: &mut Identities,
    caller: Option<&str>,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Issued, ApiError> {
    match (params.get("Action").unwrap_or_default(), caller) {
        ("AssumeRole", Some(caller)) => assume_role(config, identities, caller, params, now),
        ("AssumeRoleWithOIDC", _) => assume_role_with_oidc(config, identities, params, now),
        _ => Err(ApiError::action_not_found()),
    }
}

fn assume_role(
    config: &EmulatorConfig,
    identities: &mut Identities,
    caller: &str,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Issued, ApiError> {
    let session = common_params(params)?;
    let role = find_role(config, params.get_nonempty("RoleArn").unwrap_or_default())?;
    let duration = duration(params, role)?;
    let own = [role_account(&role.arn).unwrap_or_default().to_owned()];
    let trusted = role.trusted_accounts.as_deref().unwrap_or(&own);
    if !trusted.iter().any(|uid| uid == caller) {
        return Err(errors::no_permission());
    }
    let key = issue(identities, role, session, duration, now);
    Ok(Issued { body: credentials_body(&key, role), account: key.account })
}

fn assume_role_with_oidc(
    config: &EmulatorConfig,
    identities: &mut Identities,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Issued, ApiError> {
    let provider_arn =
        params.get_nonempty("OIDCProviderArn").ok_or_else(|| errors::missing("OIDCProviderArn"))?;
    if parse_arn(provider_arn, "oidc-provider/").is_none() {
        return Err(errors::invalid("OIDCProviderArn"));
    }
    let token = params.get("OIDCToken").unwrap_or_default();
    let session = common_params(params)?;
    let provider = find_provider(config, provider_arn)?;
    let role = find_role(config, params.get_nonempty("RoleArn").unwrap_or_default())?;
    if role.trusted_oidc_provider.as_deref().is_none_or(|p| !same_arn(p, &provider.arn)) {
        return Err(errors::oidc_no_permission());
    }
    let duration = duration(params, role)?;
    let pem = std::fs::read_to_string(&provider.public_key_file).map_err(|error| {
        tracing::warn!(%error, provider = %provider.arn, "cannot read OIDC public key file");
        errors::internal()
    })?;
    let info = oidc::verify(token, provider, &pem, now)?;
    if !role.allowed_subjects.is_empty() && !role.allowed_subjects.contains(&info.subject) {
        return Err(errors::oidc_no_permission());
    }
    let key = issue(identities, role, session, duration, now);
    let mut body = credentials_body(&key, role);
    body["OIDCTokenInfo"] = json!({
        "Subject": info.subject,
        "Issuer": info.issuer,
        "ClientIds": info.audiences.join(","),
        "ExpirationTime": format_time(info.expires_at),
        "IssuanceTime": info.issued_at.map(format_time),
        "VerificationInfo": "Success",
    });
    Ok(Issued { body, account: key.account })
}

/// `RoleArn` present and well formed, `RoleSessionName` valid, `Policy` sane; returns the
/// session name.
fn common_params(params: &Params) -> Result<&str, ApiError> {
    let role_arn = params.get_nonempty("RoleArn").ok_or_else(|| errors::missing("RoleArn"))?;
    if parse_arn(role_arn, "role/").is_none() {
        return Err(errors::invalid("RoleArn"));
    }
    let session =
        params.get_nonempty("RoleSessionName").ok_or_else(|| errors::missing("RoleSessionName"))?;
    if !valid_session_name(session) {
        return Err(errors::invalid("RoleSessionName"));
    }
    if let Some(policy) = params.get_nonempty("Policy") {
        if policy.chars().count() > MAX_POLICY_LEN {
            return Err(errors::policy_size());
        }
        let parsed: Result<Value, _> = serde_json::from_str(policy);
        if !parsed.is_ok_and(|p| p.is_object()) {
            return Err(errors::policy_grammar());
        }
    }
    Ok(session)
}

/// 2–64 characters of letters, digits, `.`, `@`, `-`, `_`.
pub fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'))
}

/// `acs:ram::{uid}:{kind}{name}` → `(uid, name)`.
pub fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let (uid, resource) = arn.strip_prefix("acs:ram::")?.split_once(':')?;
    let name = resource.strip_prefix(kind)?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'));
    (super::config::valid_uid(uid) && name_ok).then_some((uid, name))
}

/// The account uid of a role or provider ARN.
pub fn role_account(arn: &str) -> Option<&str> {
    arn.strip_prefix("acs:ram::")?.split_once(':').map(|(uid, _)| uid)
}

/// RAM names are case-insensitive.
fn same_arn(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn find_role<'a>(config: &'a EmulatorConfig, arn: &str) -> Result<&'a RoleSpec, ApiError> {
    let found = config.roles.iter().find(|r| same_arn(&r.arn, arn));
    found.ok_or_else(|| errors::role_not_found(arn))
}

fn find_provider<'a>(
    config: &'a EmulatorConfig,
    arn: &str,
) -> Result<&'a OidcProviderSpec, ApiError> {
    let found = config.oidc_providers.iter().find(|p| same_arn(&p.arn, arn));
    found.ok_or_else(errors::provider_not_found)
}

/// `DurationSeconds` between 900 and the role's maximum, default 3600 (capped at the max).
fn duration(params: &Params, role: &RoleSpec) -> Result<u32, ApiError> {
    let max = role.max_session_duration.unwrap_or(DEFAULT_MAX_DURATION);
    let Some(text) = params.get_nonempty("DurationSeconds") else {
        return Ok(DEFAULT_DURATION.min(max));
    };
    let seconds: u32 = text.trim().parse().map_err(|_| errors::invalid_duration(max))?;
    if (MIN_DURATION..=max).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(errors::invalid_duration(max))
    }
}

fn issue(
    identities: &mut Identities,
    role: &RoleSpec,
    session: &str,
    duration: u32,
    now: DateTime<Utc>,
) -> TempKey {
    let account = role_account(&role.arn).unwrap_or_default();
    // `Expiration` travels in whole seconds; the key expires at exactly that instant.
    let expiration = now.trunc_subsecs(0) + TimeDelta::seconds(i64::from(duration));
    identities.issue(account, &role.arn, session, expiration, now)
}

fn credentials_body(key: &TempKey, role: &RoleSpec) -> Value {
    json!({
        "AssumedRoleUser": {
            "Arn": format!("{}/{}", role.arn, key.session_name),
            "AssumedRoleId": format!("{}:{}", role_id(&role.arn), key.session_name),
        },
        "Credentials": {
            "AccessKeyId": key.access_key_id,
            "AccessKeySecret": key.secret,
            "SecurityToken": key.security_token,
            "Expiration": format_time(key.expiration),
        },
    })
}

/// A stable 18-digit role id derived from the ARN (FNV-1a), like RAM's numeric ids.
fn role_id(arn: &str) -> String {
    let hash = arn
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("3{:017}", hash % 100_000_000_000_000_000)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
