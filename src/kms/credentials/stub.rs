//! Loopback stand-ins for STS and the instance metadata service, for the provider tests.
//!
//! The STS stub answers `AssumeRoleWithOIDC` and `AssumeRole` with fixed-shape JSON, checks the
//! V1 signature of `AssumeRole` with [`crate::kms::sign`], and records every call.

use crate::kms::sign;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A base AccessKey the STS stub knows.
pub const BASE_ID: &str = "base-id";
/// Its secret.
pub const BASE_SECRET: &str = "base-s3cret";

/// One request as the stub saw it: query and form parameters together.
#[derive(Clone, Debug)]
pub struct Call {
    pub params: Vec<(String, String)>,
}

impl Call {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct StsState {
    calls: Vec<Call>,
    /// AccessKey id → (secret, token) of every key the stub accepts.
    keys: HashMap<String, (String, Option<String>)>,
    expires_in: i64,
    failure: Option<(u16, String, String)>,
    issued: u32,
}

/// The STS stub; `url` is its endpoint.
pub struct StubSts {
    pub url: String,
    state: Arc<Mutex<StsState>>,
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("stub server") });
    format!("http://{addr}")
}

fn json(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "RequestId": "stub-request-id", "HostId": "sts.aliyuncs.com",
        "Code": code, "Message": message,
    });
    json(status, body)
}

impl StubSts {
    pub async fn start() -> Self {
        let mut state = StsState { expires_in: 3600, ..StsState::default() };
        state.keys.insert(BASE_ID.to_owned(), (BASE_SECRET.to_owned(), None));
        let state = Arc::new(Mutex::new(state));
        let app = Router::new().route("/", post(sts_handler)).with_state(state.clone());
        Self { url: serve(app).await, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StsState> {
        self.state.lock().expect("stub state")
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn count(&self, action: &str) -> usize {
        self.lock().calls.iter().filter(|c| c.get("Action") == Some(action)).count()
    }

    /// Sessions issued from now on expire this many seconds after issue.
    pub fn set_expires_in(&self, seconds: i64) {
        self.lock().expires_in = seconds;
    }

    /// Accepts one more AccessKey, with the STS token it must come with.
    pub fn add_key(&self, id: &str, secret: &str, token: Option<&str>) {
        let entry = (secret.to_owned(), token.map(str::to_owned));
        self.lock().keys.insert(id.to_owned(), entry);
    }

    /// Every call from now on gets this error answer.
    pub fn fail_with(&self, status: u16, code: &str, message: &str) {
        self.lock().failure = Some((status, code.to_owned(), message.to_owned()));
    }
}

async fn sts_handler(
    State(state): State<Arc<Mutex<StsState>>>,
    RawQuery(query): RawQuery,
    body: String,
) -> Response {
    let query = query.unwrap_or_default();
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .chain(form_urlencoded::parse(body.as_bytes()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let call = Call { params };
    let mut state = state.lock().expect("stub state");
    state.calls.push(call.clone());
    if let Some((status, code, message)) = state.failure.clone() {
        return error(status, &code, &message);
    }
    let refused = match call.get("Action") {
        Some("AssumeRoleWithOIDC") => refuse_oidc(&call),
        Some("AssumeRole") => refuse_signed(&state, &call),
        _ => Some(error(404, "InvalidAction.NotFound", "Specified api is not found")),
    };
    if let Some(response) = refused {
        return response;
    }
    state.issued += 1;
    let n = state.issued;
    let (id, secret, token) =
        (format!("STS.stub-{n}"), format!("sts-secret-{n}"), format!("sts-token-{n}"));
    state.keys.insert(id.clone(), (secret.clone(), Some(token.clone())));
    let expiration = chrono::Utc::now() + chrono::TimeDelta::seconds(state.expires_in);
    let body = serde_json::json!({
        "RequestId": "stub-request-id",
        "AssumedRoleUser": {"Arn": call.get("RoleArn"), "AssumedRoleId": "stub:role"},
        "Credentials": {
            "AccessKeyId": id, "AccessKeySecret": secret, "SecurityToken": token,
            "Expiration": expiration.format(sign::TIMESTAMP_FORMAT).to_string(),
        },
    });
    json(200, body)
}

/// The error answer for a bad `AssumeRoleWithOIDC`, `None` when it is fine.
fn refuse_oidc(call: &Call) -> Option<Response> {
    for name in ["RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName", "Timestamp"] {
        if call.get(name).is_none() {
            return Some(error(400, &format!("Missing{name}"), "missing parameter"));
        }
    }
    None
}

/// The error answer for a bad `AssumeRole`, `None` when it is fine.
fn refuse_signed(state: &StsState, call: &Call) -> Option<Response> {
    for name in ["RoleArn", "RoleSessionName", "SignatureNonce", "Timestamp"] {
        if call.get(name).is_none() {
            return Some(error(400, &format!("Missing{name}"), "missing parameter"));
        }
    }
    let id = call.get("AccessKeyId").unwrap_or_default();
    let Some((secret, token)) = state.keys.get(id) else {
        return Some(error(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };
    if token.as_deref() != call.get("SecurityToken") {
        return Some(error(400, "InvalidSecurityToken.Mismatch", "token does not match the key"));
    }
    let params = call.params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let expected = sign::signature("POST", secret, params.clone());
    if !sign::signatures_match(&expected, call.get("Signature").unwrap_or_default()) {
        let message = format!(
            "Specified signature is not matched with our calculation. server string to sign is:{}",
            sign::string_to_sign("POST", params)
        );
        return Some(error(400, "SignatureDoesNotMatch", &message));
    }
    None
}

#[derive(Default)]
struct MetadataState {
    hits: Vec<String>,
    token_fails: bool,
    code: String,
}

/// The instance metadata stub: role `node-role`, IMDSv2 token `md-token`.
pub struct StubMetadata {
    pub url: String,
    state: Arc<Mutex<MetadataState>>,
}

pub const ROLE: &str = "node-role";
const MD_TOKEN: &str = "md-token";
const CREDS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

impl StubMetadata {
    pub async fn start() -> Self {
        let state = MetadataState { code: "Success".to_owned(), ..MetadataState::default() };
        let state = Arc::new(Mutex::new(state));
        let app = Router::new()
            .route("/latest/api/token", put(md_token))
            .route(CREDS_PATH, get(md_role))
            .route(&format!("{CREDS_PATH}{{role}}"), get(md_credentials))
            .with_state(state.clone());
        Self { url: serve(app).await, state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetadataState> {
        self.state.lock().expect("stub state")
    }

    /// Paths requested so far, in order.
    pub fn hits(&self) -> Vec<String> {
        self.lock().hits.clone()
    }

    /// Makes the IMDSv2 token request fail (then reads must go without a token).
    pub fn fail_token(&self) {
        self.lock().token_fails = true;
    }

    /// The `Code` the credentials document carries.
    pub fn set_code(&self, code: &str) {
        self.lock().code = code.to_owned();
    }
}

type MdState = State<Arc<Mutex<MetadataState>>>;

async fn md_token(State(state): MdState, headers: HeaderMap) -> Response {
    let mut state = state.lock().expect("stub state");
    state.hits.push("token".to_owned());
    let ttl = headers.get("X-aliyun-ecs-metadata-token-ttl-seconds");
    if state.token_fails || ttl.is_none() {
        return (StatusCode::FORBIDDEN, "no").into_response();
    }
    MD_TOKEN.into_response()
}

/// Without a failing token endpoint, reads must carry the token.
fn token_ok(state: &MetadataState, headers: &HeaderMap) -> bool {
    let sent = headers.get("X-aliyun-ecs-metadata-token").and_then(|v| v.to_str().ok());
    state.token_fails || sent == Some(MD_TOKEN)
}

async fn md_role(State(state): MdState, headers: HeaderMap) -> Response {
    let mut state = state.lock().expect("stub state");
    state.hits.push("role".to_owned());
    if !token_ok(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    format!("{ROLE}\n").into_response()
}

async fn md_credentials(
    State(state): MdState,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().expect("stub state");
    state.hits.push(format!("credentials/{role}"));
    if !token_ok(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if role != ROLE {
        return StatusCode::NOT_FOUND.into_response();
    }
    let n = state.hits.len();
    let expiration = chrono::Utc::now() + chrono::TimeDelta::seconds(3600);
    let body = serde_json::json!({
        "Code": state.code, "AccessKeyId": format!("STS.node-{n}"),
        "AccessKeySecret": "node-s3cret", "SecurityToken": "node-t0ken",
        "Expiration": expiration.format(sign::TIMESTAMP_FORMAT).to_string(),
        "LastUpdated": "2024-01-01T00:00:00Z",
    });
    json(200, body)
}
