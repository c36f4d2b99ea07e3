//! The RPC wire protocol: parameters from query and form body, nonce replay, the request
//! flow of one call (gateway checks, injected delays, the action, the call log) and the JSON
//! success and error bodies of section 4.
//!
//! Signatures are rebuilt with [`crate::kms::sign`], the same code the client signs with, so a
//! mismatch between the two is a bug in one shared place. The checks live in
//! [`super::gateway`], KMS semantics in [`super::actions`] and [`super::state`], STS in
//! [`super::sts`].

use super::Emulator;
use super::calls::{CallContext, CallRecord};
use super::error::ApiError;
use super::gateway::{self, Service, WINDOW};
use crate::kms::sign;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

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
    pub(super) fn check(
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

/// Compares two secrets in constant time.
pub(super) fn constant_time_eq(a: &str, b: &str) -> bool {
    sign::signatures_match(a, b)
}

/// Serves `/`: every KMS and STS call, signed or not, ends here and in the call log.
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
    let request = gateway::Request { method: &method, headers: &headers, params: &params, now };
    let admitted = emulator.admit(&request);
    let (result, context, hang) = match admitted {
        Err((error, context)) => (Err(error), context, None),
        Ok(admitted) => {
            if let Some(latency) = admitted.fault.as_ref().map(|f| f.latency_ms) {
                emulator.pause(Some(Duration::from_millis(latency))).await;
            }
            emulator.run(admitted, &params, now)
        }
    };
    log_call(&emulator, &params, &result, &context, &request_id, now);
    if let Some(hang) = hang {
        emulator.pause(hang).await;
    }
    match result {
        Ok(body) => success_response(body, &request_id),
        Err(error) => {
            let region = if context.region.is_empty() {
                emulator.config().region.as_str()
            } else {
                context.region.as_str()
            };
            error_response(&error, &request_id, &host_id(&params, region))
        }
    }
}

/// Appends the call to the call log and writes one log line (no secrets: the line carries
/// the code, never the error message, which may hold a string-to-sign).
fn log_call(
    emulator: &Emulator,
    params: &Params,
    result: &Result<Value, ApiError>,
    context: &CallContext,
    request_id: &str,
    now: DateTime<Utc>,
) {
    let record = CallRecord::new(params, result, context, request_id, now);
    tracing::info!(
        action = %record.action, access_key_id = %record.access_key_id,
        account = %record.account_uid, region = %record.region, code = %record.code,
        status = record.status, fault = record.fault.as_deref().unwrap_or(""),
        request_id, "api call"
    );
    emulator.lock().calls.record(record);
}

/// The `HostId` of an answer: the STS or KMS endpoint of the region.
fn host_id(params: &Params, region: &str) -> String {
    match Service::of(params) {
        Service::Sts => "sts.aliyuncs.com".to_owned(),
        Service::Kms => format!("kms.{region}.aliyuncs.com"),
    }
}

/// Answers paths other than `/` and `/_emulator/...` the way the gateway does.
pub(super) async fn not_found(State(emulator): State<Emulator>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let host = format!("kms.{}.aliyuncs.com", emulator.config().region);
    error_response(&ApiError::action_not_found(), &request_id, &host)
}

fn success_response(mut body: Value, request_id: &str) -> Response {
    if let Some(object) = body.as_object_mut() {
        object.insert("RequestId".to_owned(), Value::from(request_id));
    }
    json_response(StatusCode::OK, &body, request_id)
}

/// The error body of section 4.2.
pub(super) fn error_response(error: &ApiError, request_id: &str, host: &str) -> Response {
    let product = if host.starts_with("sts") { "Sts" } else { "Kms" };
    let body = serde_json::json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": error.code,
        "Message": error.message,
        "Recommend": format!(
            "https://api.aliyun.com/troubleshoot?q={}&product={product}&requestId={request_id}",
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
    use chrono::TimeDelta;

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
}
