//! The gateway checks every call passes before it runs, in the order of `kms-api.md` 2.5:
//! method, signature style, AccessKey, signature, timestamp, STS token, nonce, version, action,
//! region; then the QPS quota and fault selection.
//!
//! Which service a call is for is decided by `Version` alone: `2015-04-01` is STS, anything
//! else is KMS (and a wrong KMS version fails after authentication, as the real gateway does).
//! Everything here runs under the emulator's lock and never waits.

use super::calls::CallContext;
use super::config::valid_region;
use super::error::ApiError;
use super::faults::FaultHit;
use super::protocol::Params;
use super::quota::ApiClass;
use super::{Shared, actions, sts};
use crate::kms::{API_VERSION, sign};
use axum::http::{HeaderMap, Method, header};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use std::collections::BTreeMap;

/// How far a request's `Timestamp` may be from the emulator's clock, and how long a
/// `SignatureNonce` stays used.
pub(super) const WINDOW: TimeDelta = TimeDelta::minutes(15);

/// The service a call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Kms,
    Sts,
}

impl Service {
    /// STS when `Version` is STS's, else KMS.
    pub fn of(params: &Params) -> Self {
        if params.get("Version") == Some(sts::STS_VERSION) { Self::Sts } else { Self::Kms }
    }
}

/// A call that passed the gateway: what to run, where, and the fault that hit it.
#[derive(Debug)]
pub struct Admitted {
    pub service: Service,
    pub action: String,
    /// The signing account; `None` for anonymous STS calls.
    pub caller: Option<String>,
    /// The KMS region; empty for STS.
    pub region: String,
    pub class: Option<ApiClass>,
    pub fault: Option<FaultHit>,
}

impl Admitted {
    /// The call log context so far.
    pub fn context(&self) -> CallContext {
        CallContext {
            account_uid: self.caller.clone().unwrap_or_default(),
            region: self.region.clone(),
            fault: self.fault.as_ref().map(FaultHit::kind),
        }
    }
}

/// The request as the gateway sees it.
pub struct Request<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub params: &'a Params,
    pub now: DateTime<Utc>,
}

/// Runs every check; on failure returns the error and what was known by then.
pub(crate) fn admit(
    shared: &mut Shared,
    regions: &BTreeMap<String, Vec<String>>,
    default_region: &str,
    request: &Request<'_>,
) -> Result<Admitted, (ApiError, CallContext)> {
    let mut context = CallContext::default();
    let params = request.params;
    let service = Service::of(params);
    let caller = identify(shared, service, request).map_err(|e| (e, context.clone()))?;
    context.account_uid = caller.clone().unwrap_or_default();
    let fail = |error, context: &CallContext| (error, context.clone());

    let action = check_action(service, params).map_err(|e| fail(e, &context))?.to_owned();
    let mut region = String::new();
    let mut class = None;
    if service == Service::Kms {
        let account = caller.as_deref().unwrap_or_default();
        let allowed = regions.get(account).map_or(&[][..], Vec::as_slice);
        region = resolve_region(params, request.headers, allowed, default_region)
            .map_err(|e| fail(e, &context))?;
        context.region.clone_from(&region);
        class = ApiClass::of(&action);
        if let Some(limit) = class.and_then(|c| shared.quotas.limit(c)) {
            let now_ms = request.now.timestamp_millis();
            let admitted = shared.limiter.admit(
                account,
                &region,
                class.unwrap_or(ApiClass::Read),
                limit,
                now_ms,
            );
            if !admitted {
                return Err(fail(ApiError::throttled(), &context));
            }
        }
    }
    let fault = shared.faults.take(&action);
    Ok(Admitted { service, action, caller, region, class, fault })
}

/// Method, signature style, then authentication unless the action is anonymous; returns the
/// caller's account.
fn identify(
    shared: &mut Shared,
    service: Service,
    request: &Request<'_>,
) -> Result<Option<String>, ApiError> {
    let params = request.params;
    if request.method != Method::GET && request.method != Method::POST {
        return Err(ApiError::unsupported_http_method());
    }
    reject_v3(request.headers)?;
    let action = params.get("Action").unwrap_or_default();
    if service == Service::Sts && sts::is_anonymous(action) {
        if params.get_nonempty("Timestamp").is_some() {
            check_timestamp(params, request.now)?;
        }
        return Ok(None);
    }
    let (account, access_key_id) = authenticate(shared, request)?;
    if let Some(nonce) = params.get_nonempty("SignatureNonce") {
        shared.nonces.check(&access_key_id, nonce, request.now)?;
    }
    Ok(Some(account))
}

/// `Version` and `Action` of the service.
fn check_action(service: Service, params: &Params) -> Result<&str, ApiError> {
    match (service, params.get_nonempty("Version")) {
        (Service::Sts, _) | (Service::Kms, Some(API_VERSION)) => {}
        (Service::Kms, None) => return Err(ApiError::missing_parameter("Version")),
        (Service::Kms, Some(_)) => return Err(ApiError::invalid_version()),
    }
    let action = params.require("Action")?;
    let known = match service {
        Service::Kms => actions::is_known(action),
        Service::Sts => sts::ACTIONS.contains(&action),
    };
    if known { Ok(action) } else { Err(ApiError::action_not_found()) }
}

/// V3 (`ACS3-HMAC-SHA256`) requests are recognised and refused with a pointer to V1.
fn reject_v3(headers: &HeaderMap) -> Result<(), ApiError> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if auth.is_some_and(|a| a.starts_with("ACS3-")) {
        return Err(ApiError::incomplete_signature(
            "This emulator verifies only SignatureVersion 1.0 (HMAC-SHA1) requests.",
        ));
    }
    Ok(())
}

/// AccessKey (known, enabled), signature parameters, timestamp, signature, STS token; returns
/// the account uid and the AccessKey id.
fn authenticate(shared: &Shared, request: &Request<'_>) -> Result<(String, String), ApiError> {
    let params = request.params;
    let access_key_id =
        params.get_nonempty("AccessKeyId").ok_or_else(ApiError::missing_access_key_id)?;
    let key = shared.identities.lookup(access_key_id)?;
    let signature = signature_fields(params)?;
    check_timestamp(params, request.now)?;
    let string_to_sign = sign::string_to_sign(request.method.as_str(), params.pairs());
    let expected = sign::sign_string(&key.secret, &string_to_sign);
    if !sign::signatures_match(&expected, signature) {
        return Err(ApiError::signature_mismatch(&string_to_sign));
    }
    key.check_token(params.get("SecurityToken"), request.now)?;
    Ok((key.account, access_key_id.to_owned()))
}

/// `Signature` present, `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0`, no bearer token.
fn signature_fields(params: &Params) -> Result<&str, ApiError> {
    let signature = params
        .get_nonempty("Signature")
        .ok_or_else(|| ApiError::incomplete_signature("Signature is missing."))?;
    if params.get("SignatureMethod") != Some(sign::SIGNATURE_METHOD) {
        return Err(ApiError::incomplete_signature("SignatureMethod must be HMAC-SHA1."));
    }
    if params.get("SignatureVersion") != Some(sign::SIGNATURE_VERSION) {
        return Err(ApiError::incomplete_signature("SignatureVersion must be 1.0."));
    }
    if params.get_nonempty("SignatureType").is_some() {
        return Err(ApiError::incomplete_signature("SignatureType is not supported."));
    }
    Ok(signature)
}

pub(super) fn check_timestamp(params: &Params, now: DateTime<Utc>) -> Result<(), ApiError> {
    let text = params.get_nonempty("Timestamp").ok_or_else(ApiError::illegal_timestamp)?;
    let at = NaiveDateTime::parse_from_str(text, sign::TIMESTAMP_FORMAT)
        .map_err(|_| ApiError::timestamp_format())?
        .and_utc();
    if (now - at).abs() > WINDOW {
        return Err(ApiError::timestamp_expired());
    }
    Ok(())
}

/// `RegionId`, else the region in a `kms[-vpc].{region}.…` `Host`, else the account's first
/// region, else the emulator's; an account limited to some regions may use only those.
pub fn resolve_region(
    params: &Params,
    headers: &HeaderMap,
    allowed: &[String],
    default: &str,
) -> Result<String, ApiError> {
    let region = match params.get_nonempty("RegionId") {
        Some(r) if valid_region(r) => r.to_owned(),
        Some(_) => return Err(ApiError::invalid_parameter("RegionId")),
        None => host_region(headers)
            .or_else(|| allowed.first().cloned())
            .unwrap_or_else(|| default.to_owned()),
    };
    if !allowed.is_empty() && !allowed.contains(&region) {
        return Err(ApiError::invalid_region());
    }
    Ok(region)
}

/// `cn-shanghai` from `kms.cn-shanghai.aliyuncs.com` or `kms-vpc.cn-shanghai.aliyuncs.com`.
fn host_region(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host.split(':').next()?;
    let rest = host.strip_prefix("kms.").or_else(|| host.strip_prefix("kms-vpc."))?;
    let region = rest.split('.').next()?;
    valid_region(region).then(|| region.to_owned())
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
