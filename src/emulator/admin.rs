//! The unsigned inspection and control surface under `/_emulator/`, for tests on loopback:
//! the state, the call log, fault injection and direct key manipulation.
//!
//! | Method and path | Body / query | Answer |
//! |---|---|---|
//! | `GET /_emulator/state` | | accounts → regions → keys and aliases |
//! | `GET /_emulator/calls` | `?since=<seq>&action=<Action>` | array of [`CallRecord`] |
//! | `POST /_emulator/reset` | `?state=true` | 204; clears calls and faults (and state) |
//! | `GET/POST/DELETE /_emulator/faults` | [`Fault`] JSON for POST | armed faults / 204 |
//! | `POST /_emulator/keys` | `{"keyId"?, "state"?}` | the key's `KeyMetadata` |
//! | `DELETE /_emulator/keys/{id}` | | `{"keyId", "removedAliases"}` |

use super::Emulator;
use super::error::{self, ApiError};
use super::protocol::Params;
use super::state::KmsState;
use crate::kms::KeyState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};

/// Calls kept in the log; older ones are dropped.
const CALL_LOG_CAPACITY: usize = 10_000;
/// Parameters never written to the call log.
const SECRET_PARAMS: &[&str] = &["Signature", "SecurityToken"];

/// One call to `/` as the call log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// 1-based sequence number, increasing for the emulator's lifetime (resets keep counting).
    pub seq: u64,
    /// Unix time of the call in milliseconds.
    pub time_ms: i64,
    /// The `Action` parameter, empty if absent.
    pub action: String,
    /// The `AccessKeyId` parameter, empty if absent.
    pub access_key_id: String,
    /// Every parameter except `Signature` and `SecurityToken`.
    pub params: BTreeMap<String, String>,
    /// `OK` on success, else the error code.
    pub code: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The `RequestId` answered.
    pub request_id: String,
}

impl CallRecord {
    /// A record of one call; the log assigns `seq`.
    pub(super) fn new(
        params: &Params,
        result: &Result<Value, ApiError>,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let mut kept = BTreeMap::new();
        for (name, value) in params.pairs().filter(|(n, _)| !SECRET_PARAMS.contains(n)) {
            kept.entry(name.to_owned()).or_insert_with(|| value.to_owned());
        }
        let (code, status) = match result {
            Ok(_) => ("OK".to_owned(), 200),
            Err(e) => (e.code.clone(), e.status),
        };
        Self {
            seq: 0,
            time_ms: now.timestamp_millis(),
            action: params.get("Action").unwrap_or_default().to_owned(),
            access_key_id: params.get("AccessKeyId").unwrap_or_default().to_owned(),
            params: kept,
            code,
            status,
            request_id: request_id.to_owned(),
        }
    }
}

/// The bounded call log.
#[derive(Debug, Default)]
pub struct CallLog {
    records: VecDeque<CallRecord>,
    last_seq: u64,
}

impl CallLog {
    pub(super) fn record(&mut self, mut record: CallRecord) {
        self.last_seq += 1;
        record.seq = self.last_seq;
        if self.records.len() >= CALL_LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Records after `since`, optionally of one action.
    pub fn since(&self, since: u64, action: Option<&str>) -> Vec<CallRecord> {
        let wanted = |r: &&CallRecord| r.seq > since && action.is_none_or(|a| r.action == a);
        self.records.iter().filter(wanted).cloned().collect()
    }

    pub(super) fn clear(&mut self) {
        self.records.clear();
    }
}

/// An injected failure: signed calls of `action` (or `*` for all) fail with `code`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// An action name, or `*` for every action.
    pub action: String,
    /// The error code to answer with, for example `Throttling`.
    pub code: String,
    /// HTTP status; defaults by code (429 `Rejected.Throttling`, 500 `InternalFailure`,
    /// 503 `*Unavailable*`, else 400).
    #[serde(default)]
    pub status: Option<u16>,
    /// Message; defaults to the documented one for known codes.
    #[serde(default)]
    pub message: Option<String>,
    /// How many calls to fail; `None` until the faults are cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// The armed faults, first match wins.
#[derive(Debug, Default)]
pub struct FaultSet {
    faults: Vec<Fault>,
}

impl FaultSet {
    /// Arms a fault after checking it makes sense.
    pub fn add(&mut self, fault: Fault) -> Result<(), String> {
        if fault.action.is_empty() || fault.code.is_empty() {
            return Err("action and code must not be empty".to_owned());
        }
        if fault.status.is_some_and(|s| !(400..=599).contains(&s)) {
            return Err("status must be between 400 and 599".to_owned());
        }
        if fault.times == Some(0) {
            return Err("times must be at least 1 (or null for unlimited)".to_owned());
        }
        self.faults.push(fault);
        Ok(())
    }

    /// The armed faults.
    pub fn list(&self) -> &[Fault] {
        &self.faults
    }

    pub(super) fn clear(&mut self) {
        self.faults.clear();
    }

    /// Uses up one shot of the first fault matching `action`.
    pub(super) fn take(&mut self, action: &str) -> Option<ApiError> {
        let index = self.faults.iter().position(|f| f.action == "*" || f.action == action)?;
        let fault = &mut self.faults[index];
        let status = fault.status.unwrap_or_else(|| error::default_fault_status(&fault.code));
        let message = fault.message.clone();
        let error = ApiError::new(
            fault.code.clone(),
            status,
            message.unwrap_or_else(|| error::default_fault_message(&fault.code).to_owned()),
        );
        match &mut fault.times {
            Some(1) => {
                self.faults.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(error)
    }
}

/// The admin routes, to be merged into the emulator's router.
pub(super) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/_emulator/state", get(state))
        .route("/_emulator/calls", get(calls))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_emulator/keys", post(create_key))
        .route("/_emulator/keys/{id}", delete(remove_key))
}

/// The whole state as admin JSON (AccessKey ids only, never secrets).
pub fn snapshot(kms: &KmsState, default_region: &str, default_account: &str) -> Value {
    let mut accounts = Map::new();
    for (uid, account) in kms.accounts() {
        let mut regions = Map::new();
        for (name, region) in account.regions() {
            let keys: Map<String, Value> = region
                .keys()
                .iter()
                .map(|(id, k)| {
                    let key = json!({
                        "state": k.key_state,
                        "arn": k.arn,
                        "creationDate": k.creation_date,
                        "deleteDate": k.delete_date,
                        "description": k.description,
                    });
                    (id.clone(), key)
                })
                .collect();
            regions.insert(name.clone(), json!({ "keys": keys, "aliases": region.aliases() }));
        }
        let ids: Vec<&str> = account.access_key_ids().collect();
        accounts.insert(uid.clone(), json!({ "accessKeyIds": ids, "regions": regions }));
    }
    json!({
        "defaultRegion": default_region,
        "defaultAccount": default_account,
        "accounts": accounts,
    })
}

async fn state(State(emulator): State<Emulator>) -> Json<Value> {
    Json(emulator.snapshot())
}

#[derive(Deserialize)]
struct CallsQuery {
    #[serde(default)]
    since: u64,
    action: Option<String>,
}

async fn calls(State(emulator): State<Emulator>, Query(q): Query<CallsQuery>) -> Response {
    let calls = emulator.lock().calls.since(q.since, q.action.as_deref());
    Json(calls).into_response()
}

#[derive(Deserialize)]
struct ResetQuery {
    #[serde(default)]
    state: bool,
}

async fn reset(State(emulator): State<Emulator>, Query(q): Query<ResetQuery>) -> StatusCode {
    emulator.reset(q.state);
    StatusCode::NO_CONTENT
}

async fn list_faults(State(emulator): State<Emulator>) -> Json<Vec<Fault>> {
    Json(emulator.faults())
}

async fn add_fault(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(fault) => fault,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, &format!("invalid fault: {e}")),
    };
    match emulator.add_fault(fault) {
        Ok(()) => Json(emulator.faults()).into_response(),
        Err(message) => admin_error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn clear_faults(State(emulator): State<Emulator>) -> StatusCode {
    emulator.clear_faults();
    StatusCode::NO_CONTENT
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewKeyRequest {
    key_id: Option<String>,
    state: Option<KeyState>,
}

async fn create_key(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let request: NewKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NewKeyRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return admin_error(StatusCode::BAD_REQUEST, &format!("invalid key: {e}")),
        }
    };
    let state = request.state.unwrap_or(KeyState::Enabled);
    match emulator.insert_key(request.key_id.as_deref(), state) {
        Ok(key) => Json(key).into_response(),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            admin_error(status, &e.message)
        }
    }
}

async fn remove_key(State(emulator): State<Emulator>, Path(id): Path<String>) -> Response {
    match emulator.remove_key(&id) {
        Some(aliases) => Json(json!({ "keyId": id, "removedAliases": aliases })).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, "no such key in the default account and region"),
    }
}

fn admin_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(action: &str, times: Option<u32>) -> Fault {
        Fault {
            action: action.into(),
            code: "Throttling".into(),
            status: None,
            message: None,
            times,
        }
    }

    #[test]
    fn faults_count_down_and_match_by_action() {
        let mut set = FaultSet::default();
        set.add(fault("CreateAlias", Some(2))).unwrap();
        assert!(set.take("DeleteAlias").is_none(), "other actions pass");
        let first = set.take("CreateAlias").expect("armed");
        assert_eq!((first.code.as_str(), first.status), ("Throttling", 400));
        assert!(set.take("CreateAlias").is_some(), "second shot");
        assert!(set.take("CreateAlias").is_none(), "used up");

        set.add(fault("*", None)).unwrap();
        for action in ["ListAliases", "CreateKey", "ListAliases"] {
            assert!(set.take(action).is_some(), "unlimited wildcard hits {action}");
        }
        set.clear();
        assert!(set.take("ListAliases").is_none());
    }

    #[test]
    fn fault_defaults_and_validation() {
        let mut set = FaultSet::default();
        let cases = [
            ("Rejected.Throttling", 429, "QPS Limit Exceeded"),
            ("ServiceUnavailableTemporary", 503, "Service Unavailable Temporary."),
            ("InternalFailure", 500, "Internal Failure."),
        ];
        for (code, status, message) in cases {
            set.add(Fault { code: code.into(), ..fault("*", Some(1)) }).unwrap();
            let got = set.take("X").expect("armed");
            assert_eq!((got.status, got.message.as_str()), (status, message), "{code}");
        }
        assert!(set.add(fault("*", Some(0))).is_err(), "zero times");
        assert!(set.add(Fault { status: Some(200), ..fault("*", None) }).is_err(), "2xx status");
        assert!(set.add(Fault { code: String::new(), ..fault("*", None) }).is_err(), "no code");
    }

    #[test]
    fn call_records_hide_secrets_and_filter() {
        let params = Params::from_pairs(
            [("Action", "ListAliases"), ("Signature", "sig"), ("SecurityToken", "tok")]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let mut log = CallLog::default();
        let err = Err(ApiError::nonce_used());
        log.record(CallRecord::new(&params, &Ok(json!({})), "r1", Utc::now()));
        log.record(CallRecord::new(&params, &err, "r2", Utc::now()));
        let all = log.since(0, Some("ListAliases"));
        assert_eq!(all.len(), 2);
        assert!(!all[0].params.contains_key("Signature"));
        assert!(!all[0].params.contains_key("SecurityToken"));
        assert_eq!((all[0].code.as_str(), all[1].code.as_str()), ("OK", "SignatureNonceUsed"));
        assert_eq!(log.since(1, None).len(), 1);
        assert!(log.since(0, Some("CreateKey")).is_empty());
    }
}
