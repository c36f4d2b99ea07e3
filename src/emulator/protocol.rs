//! The RPC wire protocol: parameters from query and form body, the gateway checks of
//! `kms-api.md` section 2.5 in their order, and the JSON success and error bodies of section 4.
//!
//! Signatures are rebuilt with [`crate::kms::sign`], the same code the client signs with, so a
//! mismatch between the two is a bug in one shared place. KMS semantics live in
//! [`super::actions`] and [`super::state`].

use super::admin::CallRecord;
use super::error::ApiError;
use super::state::Scope;
use super::{Emulator, Shared, actions};
use crate::kms::{API_VERSION, sign};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;
use std::collections::HashMap;

/// How far a request's `Timestamp` may be from the emulator's clock, and how long a
/// `SignatureNonce` stays used.
const WINDOW: TimeDelta = TimeDelta::minutes(15);
/// Content type of every answer.
const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";

/// The request parameters: query pairs, then form-body pairs, both form-decoded.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parameters from already decoded pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { pairs: pairs.into_iter().collect() }
    }

    /// Merges the query string and, unless the Content-Type says otherwise, a form body.
    pub fn from_request(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let is_form = content_type.is_none_or(|ct| {
            ct.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
        });
        if is_form && !body.is_empty() {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        Self { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, treating an empty value as absent.
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A required parameter; absent or empty is `MissingParameter`.
    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get_nonempty(name).ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// Every pair, in arrival order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Nonces seen within the replay window, per AccessKey.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<(String, String), DateTime<Utc>>,
}

impl NonceCache {
    /// Records a nonce; fails if it was used within the window.
    fn check(
        &mut self,
        access_key_id: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        self.seen.retain(|_, at| now - *at <= WINDOW);
        let key = (access_key_id.to_owned(), nonce.to_owned());
        if self.seen.contains_key(&key) {
            return Err(ApiError::nonce_used());
        }
        self.seen.insert(key, now);
        Ok(())
    }
}

/// Serves `/`: every KMS call, signed or not, ends here and in the call log.
pub(super) async fn handle(
    State(emulator): State<Emulator>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::from_request(uri.query(), &headers, &body);
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let now = Utc::now();
    let result = {
        let mut shared = emulator.lock();
        let result = process(&mut shared, &method, &headers, &params, now);
        shared.calls.record(CallRecord::new(&params, &result, &request_id, now));
        result
    };
    let action = params.get("Action").unwrap_or_default();
    let access_key_id = params.get("AccessKeyId").unwrap_or_default();
    let (code, status) = match &result {
        Ok(_) => ("OK", 200),
        Err(error) => (error.code.as_str(), error.status),
    };
    tracing::info!(action, access_key_id, code, status, %request_id, "kms call");
    match result {
        Ok(body) => success_response(body, &request_id),
        Err(error) => error_response(&error, &request_id, &emulator.config().region),
    }
}

/// Answers paths other than `/` and `/_emulator/...` the way the gateway does.
pub(super) async fn not_found(State(emulator): State<Emulator>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    error_response(&ApiError::action_not_found(), &request_id, &emulator.config().region)
}

/// The checks of section 2.5 in order, then a fault if one is armed, then the action.
fn process(
    shared: &mut Shared,
    method: &Method,
    headers: &HeaderMap,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    if method != Method::GET && method != Method::POST {
        return Err(ApiError::unsupported_http_method());
    }
    reject_v3(headers)?;
    let (account, access_key_id) = authenticate(shared, method.as_str(), params, now)?;
    if let Some(nonce) = params.get_nonempty("SignatureNonce") {
        shared.nonces.check(&access_key_id, nonce, now)?;
    }
    let action = params.get("Action").unwrap_or_default();
    if let Some(fault) = shared.faults.take(action) {
        return Err(fault);
    }
    match params.get_nonempty("Version") {
        None => return Err(ApiError::missing_parameter("Version")),
        Some(API_VERSION) => {}
        Some(_) => return Err(ApiError::invalid_version()),
    }
    let action = params.require("Action")?;
    if !actions::is_known(action) {
        return Err(ApiError::action_not_found());
    }
    let region = region(params, &shared.default_region)?;
    let scope = Scope { account: &account, region: &region };
    actions::execute(&mut shared.kms, scope, action, params, now)
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

/// AccessKey, signature parameters, timestamp and signature; returns the account uid and the
/// AccessKey id.
fn authenticate(
    shared: &Shared,
    method: &str,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<(String, String), ApiError> {
    let access_key_id =
        params.get_nonempty("AccessKeyId").ok_or_else(ApiError::missing_access_key_id)?;
    let (account, secret) =
        shared.kms.find_access_key(access_key_id).ok_or_else(ApiError::access_key_not_found)?;
    let signature = signature_fields(params)?;
    check_timestamp(params, now)?;
    let string_to_sign = sign::string_to_sign(method, params.pairs());
    let expected = sign::sign_string(secret, &string_to_sign);
    if !sign::signatures_match(&expected, signature) {
        return Err(ApiError::signature_mismatch(&string_to_sign));
    }
    Ok((account.to_owned(), access_key_id.to_owned()))
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

fn check_timestamp(params: &Params, now: DateTime<Utc>) -> Result<(), ApiError> {
    let text = params.get_nonempty("Timestamp").ok_or_else(ApiError::illegal_timestamp)?;
    let at = NaiveDateTime::parse_from_str(text, sign::TIMESTAMP_FORMAT)
        .map_err(|_| ApiError::timestamp_format())?
        .and_utc();
    if (now - at).abs() > WINDOW {
        return Err(ApiError::timestamp_expired());
    }
    Ok(())
}

/// `RegionId` if given, else the emulator's region.
fn region(params: &Params, default: &str) -> Result<String, ApiError> {
    match params.get_nonempty("RegionId") {
        None => Ok(default.to_owned()),
        Some(r) if super::valid_region(r) => Ok(r.to_owned()),
        Some(_) => Err(ApiError::invalid_parameter("RegionId")),
    }
}

fn success_response(mut body: Value, request_id: &str) -> Response {
    if let Some(object) = body.as_object_mut() {
        object.insert("RequestId".to_owned(), Value::from(request_id));
    }
    json_response(StatusCode::OK, &body, request_id)
}

/// The error body of section 4.2.
pub(super) fn error_response(error: &ApiError, request_id: &str, region: &str) -> Response {
    let body = serde_json::json!({
        "RequestId": request_id,
        "HostId": format!("kms.{region}.aliyuncs.com"),
        "Code": error.code,
        "Message": error.message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={}&product=Kms&requestId={request_id}",
            error.code
        ),
    });
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &body, request_id)
}

fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content-Type, body, pairs expected besides the query's, reason.
    type BodyCase<'a> = (Option<&'a str>, &'a [u8], &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn query_and_form_body_merge_with_form_decoding() {
        let mut headers = HeaderMap::new();
        let cases: &[BodyCase<'_>] = &[
            (None, b"AliasName=alias%2Fa&KeyId=k", &[("AliasName", "alias/a")], "no content type"),
            (
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                b"KeyId=k",
                &[("Action", "CreateAlias"), ("KeyId", "k")],
                "form body with charset",
            ),
            (Some("application/json"), b"KeyId=k", &[("Action", "CreateAlias")], "not a form"),
        ];
        for (content_type, body, want, reason) in cases {
            headers.remove(header::CONTENT_TYPE);
            if let Some(ct) = content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            let params = Params::from_request(
                Some("Action=CreateAlias&SecurityToken=tok+en%2F%2B%3D"),
                &headers,
                body,
            );
            assert_eq!(params.get("SecurityToken"), Some("tok en/+="), "{reason}: + is a space");
            for (name, value) in *want {
                assert_eq!(params.get(name), Some(*value), "{reason}: {name}");
            }
            if *content_type == Some("application/json") {
                assert_eq!(params.get("KeyId"), None, "{reason}");
            }
        }
    }

    #[test]
    fn nonces_expire_after_the_window() {
        let mut cache = NonceCache::default();
        let t0 = Utc::now();
        cache.check("ak", "n1", t0).expect("first use");
        assert_eq!(cache.check("ak", "n1", t0).unwrap_err().code, "SignatureNonceUsed");
        cache.check("other", "n1", t0).expect("nonces are per AccessKey");
        cache.check("ak", "n1", t0 + WINDOW + TimeDelta::seconds(1)).expect("window passed");
    }

    #[test]
    fn timestamps_must_be_well_formed_and_recent() {
        let now = DateTime::parse_from_rfc3339("2024-05-20T06:34:21Z").unwrap().to_utc();
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (Some("2024-05-20T06:34:21Z"), None, "exact"),
            (Some("2024-05-20T06:49:21Z"), None, "15 minutes ahead is still fine"),
            (Some("2024-05-20T06:19:20Z"), Some("InvalidTimeStamp.Expired"), "too old"),
            (Some("2024-05-20T06:34:21.5Z"), Some("InvalidTimeStamp.Format"), "fraction"),
            (Some("2024-05-20 06:34:21"), Some("InvalidTimeStamp.Format"), "not ISO"),
            (None, Some("IllegalTimestamp"), "missing"),
        ];
        for (value, want, reason) in cases {
            let pairs = value.map(|v| ("Timestamp".to_owned(), v.to_owned()));
            let got = check_timestamp(&Params::from_pairs(pairs), now).err().map(|e| e.code);
            assert_eq!(got.as_deref(), *want, "{reason}");
        }
    }
}
