//! Hand-signed KMS and STS requests, for calls our client does not make (STS) or whose raw
//! status and body a test must see (no client retries or budgets in between).

use chrono::Utc;
use kms_alias_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use kms_alias_operator::kms::sign;
use serde_json::Value;

/// The KMS API version.
pub const KMS: &str = "2016-01-20";
/// The STS API version.
pub const STS: &str = "2015-04-01";

/// An AccessKey to sign with, and the token to send.
#[derive(Clone, Debug)]
pub struct Signer {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl Signer {
    pub fn new(id: &str, secret: &str) -> Self {
        Self { id: id.to_owned(), secret: secret.to_owned(), token: None }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// The `Credentials` of an STS answer.
    pub fn from_sts(body: &Value) -> Self {
        let creds = &body["Credentials"];
        let text = |name: &str| creds[name].as_str().unwrap_or_else(|| panic!("{name} in {body}"));
        Self::new(text("AccessKeyId"), text("AccessKeySecret")).with_token(text("SecurityToken"))
    }
}

/// Starts an emulator with `config` on a free loopback port.
pub async fn start_with(config: EmulatorConfig) -> RunningEmulator {
    let emulator = Emulator::new(config).expect("valid config");
    RunningEmulator::start(emulator).await.expect("bind loopback")
}

/// POSTs a V1-signed call with every parameter in the query, as the Go SDK does.
pub async fn call(
    running: &RunningEmulator,
    signer: &Signer,
    version: &str,
    action: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    call_url(&running.url(), signer, version, action, extra).await
}

/// [`call`] to an emulator known by its URL.
pub async fn call_url(
    url: &str,
    signer: &Signer,
    version: &str,
    action: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let timestamp = Utc::now().format(sign::TIMESTAMP_FORMAT).to_string();
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut params: Vec<(&str, &str)> = vec![
        ("AccessKeyId", &signer.id),
        ("Action", action),
        ("Format", "JSON"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", &nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", &timestamp),
        ("Version", version),
    ];
    if let Some(token) = &signer.token {
        params.push(("SecurityToken", token));
    }
    params.extend_from_slice(extra);
    let signature = sign::signature("POST", &signer.secret, params.iter().copied());
    params.push(("Signature", &signature));
    let response = reqwest::Client::new()
        .post(format!("{url}/"))
        .query(&params)
        .send()
        .await
        .expect("emulator answers");
    decode(response).await
}

/// POSTs an unsigned `AssumeRoleWithOIDC` with its parameters in a form body, as the
/// credentials libraries do.
pub async fn assume_role_with_oidc(
    running: &RunningEmulator,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let timestamp = Utc::now().format(sign::TIMESTAMP_FORMAT).to_string();
    let query = [
        ("Action", "AssumeRoleWithOIDC"),
        ("Format", "JSON"),
        ("Timestamp", timestamp.as_str()),
        ("Version", STS),
    ];
    let response = reqwest::Client::new()
        .post(format!("{}/", running.url()))
        .query(&query)
        .form(form)
        .send()
        .await
        .expect("emulator answers");
    decode(response).await
}

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// The admin URL of `path`.
pub fn admin(running: &RunningEmulator, path: &str) -> String {
    format!("{}/_emulator/{path}", running.url())
}

/// `GET` an admin path as JSON.
pub async fn admin_get(running: &RunningEmulator, path: &str) -> Value {
    let response = reqwest::get(admin(running, path)).await.expect("admin answers");
    response.json().await.expect("JSON")
}

/// `POST` JSON to an admin path; returns the status.
pub async fn admin_post(running: &RunningEmulator, path: &str, body: &Value) -> u16 {
    let client = reqwest::Client::new();
    let response =
        client.post(admin(running, path)).json(body).send().await.expect("admin answers");
    response.status().as_u16()
}

/// The code of an error answer, `OK` for a success.
pub fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["Code"].as_str().unwrap_or("OK"))
}
