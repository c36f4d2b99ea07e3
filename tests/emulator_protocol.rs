//! The emulator speaks the wire protocol the crate's KMS client speaks: alias lifecycle,
//! paging, documented errors, signature and replay checks, GET requests, admin surface.
//!
//! Each test starts its own emulator in-process on a free loopback port. The submodules cover
//! accounts and regions, STS, quotas and faults, persistence and the command line.

#[path = "emulator_protocol/accounts.rs"]
mod accounts;
#[path = "emulator_protocol/cli.rs"]
mod cli;
#[path = "emulator_protocol/limits.rs"]
mod limits;
#[path = "emulator_protocol/persistence.rs"]
mod persistence;
#[path = "emulator_protocol/sts.rs"]
mod sts;
#[path = "emulator_protocol/wire.rs"]
mod wire;

use chrono::Utc;
use kms_alias_operator::emulator::faults::Fault;
use kms_alias_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use kms_alias_operator::kms::{
    Client, ClientConfig, Credentials, Error, ErrorKind, KeyState, sign,
};
use serde_json::Value;
use std::time::Duration;

const REGION: &str = "cn-hangzhou";
const SECRET: &str = "testsecret";

async fn start() -> RunningEmulator {
    let emulator = Emulator::new(EmulatorConfig::default()).expect("default config is valid");
    RunningEmulator::start(emulator).await.expect("bind loopback")
}

fn client(running: &RunningEmulator, secret: &str) -> Client {
    client_for(running, Credentials::new("testid", secret))
}

/// A client of the emulator with any credentials.
fn client_for(running: &RunningEmulator, credentials: Credentials) -> Client {
    let config = ClientConfig {
        region: REGION.to_owned(),
        endpoint: Some(running.url()),
        timeout: Duration::from_secs(5),
        allow_http: true,
    };
    Client::new(&config, credentials).expect("client builds")
}

/// The error code and the full error text (which carries status and message).
fn api_error(error: &Error) -> (&str, String) {
    (
        error.code().unwrap_or_else(|| panic!("expected an API error, got {error:?}")),
        error.to_string(),
    )
}

/// A hand-signed query string for `method`: the common parameters, overridden or extended by
/// `extra`.
fn signed_query(method: &str, action: &str, extra: &[(&str, &str)], nonce: &str) -> String {
    let timestamp = Utc::now().format(sign::TIMESTAMP_FORMAT).to_string();
    let mut params: Vec<(&str, &str)> = vec![
        ("AccessKeyId", "testid"),
        ("Action", action),
        ("Format", "json"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", nonce),
        ("SignatureVersion", "1.0"),
        ("Timestamp", &timestamp),
        ("Version", "2016-01-20"),
    ];
    for (name, value) in extra {
        match params.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => pair.1 = value,
            None => params.push((name, value)),
        }
    }
    let signature = sign::signature(method, SECRET, params.iter().copied());
    params.push(("Signature", &signature));
    let encoded: Vec<String> = params
        .iter()
        // tea-openapi writes spaces as `+` in the query; the server must form-decode.
        .map(|(k, v)| format!("{}={}", sign::percent_encode(k), sign::percent_encode(v)))
        .map(|pair| pair.replace("%20", "+"))
        .collect();
    encoded.join("&")
}

async fn get(running: &RunningEmulator, query: &str) -> (u16, Value) {
    let response =
        reqwest::get(format!("{}/?{query}", running.url())).await.expect("emulator answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test]
async fn alias_lifecycle_through_the_client() {
    let running = start().await;
    let kms = client(&running, SECRET);
    let first = kms.create_key("first").await.expect("create key");
    let second = kms.create_key("second").await.expect("create key");
    assert_eq!(first.key_state, KeyState::Enabled);
    assert_eq!(first.arn, format!("acs:kms:{REGION}:1234567890123456:key/{}", first.key_id));

    kms.create_alias("alias/app", &first.key_id).await.expect("create alias");
    let described = kms.describe_key("alias/app").await.expect("describe by alias");
    assert_eq!(described.key_id, first.key_id);

    kms.update_alias("alias/app", &second.arn).await.expect("update alias by key ARN");
    assert_eq!(kms.describe_key("alias/app").await.expect("describe").key_id, second.key_id);

    kms.delete_alias("alias/app").await.expect("delete alias");
    let gone = kms.describe_key("alias/app").await.expect_err("alias is gone");
    assert_eq!(gone.kind(), ErrorKind::AliasNotFound);
    let missing = kms.delete_alias("alias/app").await.expect_err("second delete");
    let (code, text) = api_error(&missing);
    assert_eq!(code, "Forbidden.AliasNotFound");
    assert!(text.contains("HTTP 404") && text.contains(missing_message()), "{text}");
    assert_eq!(kms.describe_key(&first.key_id).await.expect("key untouched").key_id, first.key_id);
}

fn missing_message() -> &'static str {
    "The specified Alias is not found."
}

#[tokio::test]
async fn list_aliases_pages_over_25_aliases() {
    let running = start().await;
    let kms = client(&running, SECRET);
    let key = kms.create_key("paged").await.expect("create key");
    for i in 0..25 {
        kms.create_alias(&format!("alias/page-{i:02}"), &key.key_id).await.expect("create alias");
    }
    let mut names = Vec::new();
    for (page, want) in [(1, 10), (2, 10), (3, 5), (4, 0)] {
        let answer = kms.list_aliases_page(page, 10).await.expect("list page");
        assert_eq!((answer.page_number, answer.page_size), (page, 10));
        assert_eq!((answer.total_count, answer.aliases.alias.len()), (25, want), "page {page}");
        names.extend(answer.aliases.alias.into_iter().map(|a| a.alias_name));
    }
    let want: Vec<String> = (0..25).map(|i| format!("alias/page-{i:02}")).collect();
    assert_eq!(names, want, "sorted by name, no gaps or repeats across pages");
    assert_eq!(kms.list_aliases().await.expect("list all").len(), 25);
    let too_big = kms.list_aliases_page(1, 101).await.expect_err("page size above 100");
    assert_eq!(too_big.kind(), ErrorKind::InvalidParameter);
}

#[tokio::test]
async fn documented_error_kinds_reach_the_client() {
    let running = start().await;
    let kms = client(&running, SECRET);
    let key = kms.create_key("errors").await.expect("create key");
    kms.create_alias("alias/taken", &key.key_id).await.expect("create alias");

    let duplicate = kms.create_alias("alias/taken", &key.key_id).await.expect_err("duplicate");
    assert_eq!(duplicate.kind(), ErrorKind::AlreadyExists);
    assert_eq!(duplicate.code(), Some("AliasAlreadyExists"));

    kms.schedule_key_deletion(&key.key_id, 7).await.expect("schedule deletion");
    let pending = kms.describe_key(&key.key_id).await.expect("describe pending key");
    assert_eq!(pending.key_state, KeyState::PendingDeletion);
    assert!(pending.delete_date.is_some(), "DeleteDate is set while pending");
    let dying = kms.create_alias("alias/late", &key.key_id).await.expect_err("dying key");
    assert_eq!(dying.kind(), ErrorKind::KeyNotUsable);
    assert_eq!(api_error(&dying).0, "Rejected.StateModifiedFailed");

    let reserved = kms.create_alias("alias/acs/oss", "whatever").await.expect_err("reserved");
    assert_eq!(reserved.kind(), ErrorKind::InvalidParameter);
    let unknown = kms.describe_key("key-doesnotexist").await.expect_err("unknown key");
    assert_eq!(unknown.kind(), ErrorKind::KeyNotFound);
}

#[tokio::test]
async fn wrong_secret_is_refused_and_the_echoed_string_to_sign_is_not_kept() {
    let running = start().await;
    let error = client(&running, "not-the-secret").create_key("x").await.expect_err("bad secret");
    let (code, text) = api_error(&error);
    assert_eq!(code, "SignatureDoesNotMatch");
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(text.contains("Specified signature is not matched"), "{text}");
    // The echo carries every signed parameter, a security token included: it must not reach
    // logs, events or status through our error.
    assert!(!text.contains("string to sign is:"), "{text}");
    assert_eq!(error.kind(), ErrorKind::Auth);
}

#[tokio::test]
async fn hand_signed_get_works_and_a_replayed_nonce_is_refused() {
    let running = start().await;
    let query = signed_query(
        "GET",
        "CreateKey",
        &[("Description", "made by GET"), ("SecurityToken", "tok en/+=")],
        "nonce-1",
    );
    let (status, body) = get(&running, &query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["KeyMetadata"]["Description"], "made by GET");
    assert!(body["RequestId"].is_string());
    assert!(body.get("Code").is_none() && body.get("Success").is_none(), "{body}");

    let (status, body) = get(&running, &query).await;
    assert_eq!((status, body["Code"].as_str()), (400, Some("SignatureNonceUsed")), "{body}");
    let request_id = body["RequestId"].as_str().expect("errors carry a RequestId");
    assert_eq!(body["HostId"], format!("kms.{REGION}.aliyuncs.com"));
    let recommend = format!(
        "https://api.aliyun.com/troubleshoot?q=SignatureNonceUsed&product=Kms&requestId=\
         {request_id}"
    );
    assert_eq!(body["Recommend"], recommend);

    // Signed for POST but sent as GET: the method is part of the string-to-sign.
    let post_signed = signed_query("POST", "ListKeys", &[], "nonce-2");
    let (status, body) = get(&running, &post_signed).await;
    assert_eq!((status, body["Code"].as_str()), (400, Some("SignatureDoesNotMatch")));
    // The gateway echoes the string it computed, as Alibaba's does, for SDKs to compare.
    let message = body["Message"].as_str().unwrap_or_default();
    assert!(message.contains("server string to sign is:GET&%2F&AccessKeyId%3Dtestid"), "{message}");
}

#[tokio::test]
async fn gateway_checks_answer_with_their_codes() {
    let running = start().await;
    let cases: &[(String, u16, &str, &str)] = &[
        (signed_query("GET", "Nope", &[], "n1"), 404, "InvalidAction.NotFound", "unknown action"),
        (
            signed_query("GET", "ListKeys", &[("Version", "2014-05-26")], "n2"),
            400,
            "InvalidVersion",
            "wrong version",
        ),
        ("Action=ListKeys".to_owned(), 400, "MissingAccessKeyId", "no AccessKeyId"),
        ("AccessKeyId=nobody".to_owned(), 404, "InvalidAccessKeyId.NotFound", "unknown AK"),
        ("AccessKeyId=testid".to_owned(), 400, "IncompleteSignature", "no signature"),
        (signed_query("GET", "DescribeKey", &[], "n3"), 400, "MissingParameter", "no KeyId"),
    ];
    for (query, status, code, reason) in cases {
        let (got_status, body) = get(&running, query).await;
        assert_eq!((got_status, body["Code"].as_str()), (*status, Some(*code)), "{reason}: {body}");
    }
    let http = reqwest::Client::new();
    let put = http.put(format!("{}/", running.url())).send().await.expect("answer");
    assert_eq!(put.status().as_u16(), 403, "PUT is UnsupportedHTTPMethod");
}

#[tokio::test]
async fn admin_surface_logs_calls_and_injects_faults() {
    let running = start().await;
    let kms = client(&running, SECRET);
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{}/_emulator/{path}", running.url());

    let fault = serde_json::json!({"action": "CreateAlias", "code": "Throttling", "times": 1});
    let armed = http.post(admin("faults")).json(&fault).send().await.expect("arm fault");
    assert_eq!(armed.status().as_u16(), 200);
    let key = kms.create_key("faults").await.expect("other actions pass");
    // Hand-signed, so no client retry hides the single injected failure.
    let signer = wire::Signer::new("testid", SECRET);
    let params = [("AliasName", "alias/f"), ("KeyId", key.key_id.as_str())];
    let throttled = wire::call(&running, &signer, wire::KMS, "CreateAlias", &params).await;
    assert_eq!(wire::code(&throttled), (400, "Throttling"), "fault fires once");
    kms.create_alias("alias/f", &key.key_id).await.expect("fault used up");

    let calls: Vec<Value> = http
        .get(admin("calls?action=CreateAlias"))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("JSON");
    let codes: Vec<&str> = calls.iter().filter_map(|c| c["code"].as_str()).collect();
    assert_eq!(codes, ["Throttling", "OK"]);
    assert!(calls[0]["params"].get("Signature").is_none(), "signature never logged");
    assert_eq!(calls[0]["accessKeyId"], "testid");

    let state: Value =
        http.get(admin("state")).send().await.expect("state").json().await.expect("JSON");
    let region = &state["accounts"]["1234567890123456"]["regions"][REGION];
    assert_eq!(region["aliases"]["alias/f"], key.key_id.as_str());

    let removed = http.delete(admin(&format!("keys/{}", key.key_id))).send().await.expect("purge");
    let removed: Value = removed.json().await.expect("JSON");
    assert_eq!(removed["removedAliases"], serde_json::json!(["alias/f"]));

    let seeded =
        running.emulator().insert_key(Some("key-fixed"), KeyState::Disabled).expect("insert");
    assert_eq!(kms.describe_key("key-fixed").await.expect("describe").key_state, seeded.key_state);
    running.emulator().add_fault(Fault::error("*", "Rejected.Throttling")).expect("arm fault");
    assert_eq!(
        kms.describe_key("key-fixed").await.expect_err("throttled").kind(),
        ErrorKind::Throttled
    );
    let reset = http.post(admin("reset?state=true")).send().await.expect("reset");
    assert_eq!(reset.status().as_u16(), 204);
    assert_eq!(
        kms.describe_key("key-fixed").await.expect_err("gone").kind(),
        ErrorKind::KeyNotFound
    );
    running.shutdown().await.expect("clean shutdown");
}
