//! The unsigned inspection and control surface under `/_emulator/`, for tests on loopback.
//! Nothing it answers contains an AccessKey secret or a security token.
//!
//! | Method and path | Body / query | Answer |
//! |---|---|---|
//! | `GET /_emulator/state` | | accounts → AccessKeys, STS keys, regions → keys and aliases |
//! | `GET /_emulator/calls` | `?since=<seq>&action=<Action>` | array of [`CallRecord`] |
//! | `POST /_emulator/reset` | `?state=true` | 204; clears calls, faults, QPS windows (and state) |
//! | `GET/POST/DELETE /_emulator/faults` | [`Fault`] JSON for POST | armed faults / 204 |
//! | `GET/POST /_emulator/quotas` | partial [`Quotas`] JSON for POST | quotas in force |
//! | `POST /_emulator/sts/expire` | | `{"expired": n}`; every issued STS key expires now |
//! | `POST /_emulator/access-keys` | `{"accountUid"?, "id", "secret", "enabled"?, "securityToken"?}` | 204 |
//! | `POST /_emulator/access-keys/{id}/enable`, `.../disable` | | 204, 404 if unknown |
//! | `DELETE /_emulator/access-keys/{id}` | | 204, 404 if unknown |
//! | `POST /_emulator/keys` | `{"keyId"?, "state"?, "accountUid"?, "region"?}` | `KeyMetadata` |
//! | `DELETE /_emulator/keys/{id}` | `?accountUid=&region=` | `{"keyId", "removedAliases"}` |

use super::Emulator;
use super::calls::CallRecord;
use super::config::{AccessKeySpec, EmulatorConfig};
use super::faults::Fault;
use super::identity::Identities;
use super::quota::{QuotaUpdate, Quotas};
use super::state::{KmsState, Scope};
use crate::kms::KeyState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// The admin routes, to be merged into the emulator's router.
pub(super) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/_emulator/state", get(state))
        .route("/_emulator/calls", get(calls))
        .route("/_emulator/reset", post(reset))
        .route("/_emulator/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/_emulator/quotas", get(quotas).post(update_quotas))
        .route("/_emulator/sts/expire", post(expire_sts))
        .route("/_emulator/access-keys", post(upsert_access_key))
        .route("/_emulator/access-keys/{id}", delete(remove_access_key))
        .route("/_emulator/access-keys/{id}/{switch}", post(switch_access_key))
        .route("/_emulator/keys", post(create_key))
        .route("/_emulator/keys/{id}", delete(remove_key))
}

/// The whole state as admin JSON: AccessKey ids and flags, never secrets or tokens.
pub fn snapshot(
    kms: &KmsState,
    identities: &Identities,
    config: &EmulatorConfig,
    quotas: &Quotas,
) -> Value {
    let keys = identities.by_account();
    let issued = identities.issued_by_account();
    let uids = kms.accounts().keys().chain(keys.keys()).chain(issued.keys());
    let mut accounts = Map::new();
    for uid in uids {
        if accounts.contains_key(uid) {
            continue;
        }
        let own_keys = keys.get(uid).map(Vec::as_slice).unwrap_or_default();
        let ids: Vec<&str> = own_keys.iter().map(|k| k.id.as_str()).collect();
        let account = json!({
            "accessKeyIds": ids,
            "accessKeys": own_keys,
            "stsCredentials": issued.get(uid).map(Vec::as_slice).unwrap_or_default(),
            "regions": regions(kms, uid),
        });
        accounts.insert(uid.clone(), account);
    }
    json!({
        "defaultRegion": config.region,
        "defaultAccount": config.account_uid,
        "quotas": quotas,
        "roles": config.roles.iter().map(|r| &r.arn).collect::<Vec<_>>(),
        "oidcProviders": config.oidc_providers.iter().map(|p| &p.arn).collect::<Vec<_>>(),
        "accounts": accounts,
    })
}

fn regions(kms: &KmsState, uid: &str) -> Map<String, Value> {
    let Some(account) = kms.accounts().get(uid) else {
        return Map::new();
    };
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
    regions
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
    let calls: Vec<CallRecord> = emulator.calls(q.since, q.action.as_deref());
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
    let fault: Fault = match parse(&body, "fault") {
        Ok(fault) => fault,
        Err(message) => return admin_error(StatusCode::BAD_REQUEST, &message),
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

async fn quotas(State(emulator): State<Emulator>) -> Json<Quotas> {
    Json(emulator.quotas())
}

async fn update_quotas(State(emulator): State<Emulator>, body: Bytes) -> Response {
    match parse::<QuotaUpdate>(&body, "quotas") {
        Ok(update) => Json(emulator.update_quotas(update)).into_response(),
        Err(message) => admin_error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn expire_sts(State(emulator): State<Emulator>) -> Json<Value> {
    Json(json!({ "expired": emulator.expire_sts_credentials() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccessKeyRequest {
    account_uid: Option<String>,
    id: String,
    secret: String,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    security_token: Option<String>,
}

async fn upsert_access_key(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let request: AccessKeyRequest = match parse(&body, "access key") {
        Ok(request) => request,
        Err(message) => return admin_error(StatusCode::BAD_REQUEST, &message),
    };
    let key = AccessKeySpec {
        enabled: request.enabled.unwrap_or(true),
        security_token: request.security_token,
        ..AccessKeySpec::new(request.id, request.secret)
    };
    match emulator.upsert_access_key(request.account_uid.as_deref(), key) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => admin_error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn switch_access_key(
    State(emulator): State<Emulator>,
    Path((id, switch)): Path<(String, String)>,
) -> Response {
    let enabled = match switch.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return admin_error(StatusCode::NOT_FOUND, "use .../enable or .../disable"),
    };
    if emulator.set_access_key_enabled(&id, enabled) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, "no such long-lived AccessKey")
    }
}

async fn remove_access_key(State(emulator): State<Emulator>, Path(id): Path<String>) -> Response {
    if emulator.remove_access_key(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        admin_error(StatusCode::NOT_FOUND, "no such long-lived AccessKey")
    }
}

/// Where an admin key operation acts; defaults to the default account and region.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Where {
    account_uid: Option<String>,
    region: Option<String>,
}

impl Where {
    fn scope<'a>(&'a self, config: &'a EmulatorConfig) -> Scope<'a> {
        Scope {
            account: self.account_uid.as_deref().unwrap_or(&config.account_uid),
            region: self.region.as_deref().unwrap_or(&config.region),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewKeyRequest {
    key_id: Option<String>,
    state: Option<KeyState>,
    #[serde(flatten)]
    place: Where,
}

async fn create_key(State(emulator): State<Emulator>, body: Bytes) -> Response {
    let request: NewKeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        NewKeyRequest::default()
    } else {
        match parse(&body, "key") {
            Ok(request) => request,
            Err(message) => return admin_error(StatusCode::BAD_REQUEST, &message),
        }
    };
    let state = request.state.unwrap_or(KeyState::Enabled);
    let scope = request.place.scope(emulator.config());
    match emulator.insert_key_at(scope, request.key_id.as_deref(), state) {
        Ok(key) => Json(key).into_response(),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            admin_error(status, &e.message)
        }
    }
}

async fn remove_key(
    State(emulator): State<Emulator>,
    Path(id): Path<String>,
    Query(place): Query<Where>,
) -> Response {
    match emulator.remove_key_at(place.scope(emulator.config()), &id) {
        Some(aliases) => Json(json!({ "keyId": id, "removedAliases": aliases })).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, "no such key in that account and region"),
    }
}

/// Parses a JSON body; a failure is the message of the 400 answer.
fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid {what}: {e}"))
}

fn admin_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
