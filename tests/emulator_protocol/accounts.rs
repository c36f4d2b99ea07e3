//! Several accounts and regions in one emulator, disabled AccessKeys and STS-style keys.

use super::wire::{self, KMS, Signer, call, code};
use kms_alias_operator::emulator::EmulatorConfig;
use kms_alias_operator::emulator::config::{AccessKeySpec, AccountSpec};
use kms_alias_operator::kms::{Credentials, ErrorKind};
use serde_json::json;

const OTHER: &str = "2222222222222222";

fn two_accounts() -> EmulatorConfig {
    let mut other = AccountSpec::parse(&format!("{OTHER}=other:othersecret")).expect("flag form");
    other.regions = vec!["cn-hangzhou".into(), "cn-shanghai".into()];
    let disabled = AccessKeySpec { enabled: false, ..AccessKeySpec::new("retired", "old") };
    EmulatorConfig {
        access_keys: vec![AccessKeySpec::new("testid", "testsecret"), disabled],
        accounts: vec![other],
        ..EmulatorConfig::default()
    }
}

#[tokio::test]
async fn accounts_are_isolated_even_with_the_same_alias_name() {
    let running = wire::start_with(two_accounts()).await;
    let mine = super::client_for(&running, Credentials::new("testid", "testsecret"));
    let theirs = super::client_for(&running, Credentials::new("other", "othersecret"));
    let my_key = mine.create_key("mine").await.expect("create key");
    let their_key = theirs.create_key("theirs").await.expect("create key");
    assert!(their_key.arn.contains(&format!(":{OTHER}:key/")), "{}", their_key.arn);

    mine.create_alias("alias/shared", &my_key.key_id).await.expect("same name, account one");
    theirs.create_alias("alias/shared", &their_key.key_id).await.expect("same name, account two");
    assert_eq!(mine.describe_key("alias/shared").await.expect("mine").key_id, my_key.key_id);
    assert_eq!(theirs.describe_key("alias/shared").await.expect("theirs").key_id, their_key.key_id);
    let cross = mine.describe_key(&their_key.key_id).await.expect_err("other account's key");
    assert_eq!(cross.kind(), ErrorKind::KeyNotFound);

    // Regions are separate too, and an account may be limited to some regions.
    let other = Signer::new("other", "othersecret");
    let shanghai = call(&running, &other, KMS, "ListAliases", &[("RegionId", "cn-shanghai")]).await;
    assert_eq!(shanghai.1["TotalCount"], 0, "{}", shanghai.1);
    let beijing = call(&running, &other, KMS, "ListAliases", &[("RegionId", "cn-beijing")]).await;
    assert_eq!(code(&beijing), (400, "InvalidRegionId"));

    let state = wire::admin_get(&running, "state").await;
    for (uid, key) in [("1234567890123456", &my_key), (OTHER, &their_key)] {
        let region = &state["accounts"][uid]["regions"]["cn-hangzhou"];
        assert_eq!(region["aliases"]["alias/shared"], key.key_id.as_str(), "{uid}");
    }
    assert!(state["accounts"][OTHER]["regions"]["cn-shanghai"].is_object(), "declared region");
    let calls = wire::admin_get(&running, "calls?action=CreateAlias").await;
    let accounts: Vec<&str> =
        calls.as_array().unwrap().iter().map(|c| c["accountUid"].as_str().unwrap()).collect();
    assert_eq!(accounts, ["1234567890123456", OTHER]);
    assert_eq!(calls[0]["region"], "cn-hangzhou");
}

#[tokio::test]
async fn disabled_access_keys_are_forbidden() {
    let running = wire::start_with(two_accounts()).await;
    let retired = Signer::new("retired", "old");
    let answer = call(&running, &retired, KMS, "ListKeys", &[]).await;
    assert_eq!(code(&answer), (403, "Forbidden.AccessKey"));
    assert_eq!(answer.1["Message"], "This AccessKey is not enabled.");

    // Rotation at run time: disable the current key, the next call is refused.
    let current = Signer::new("testid", "testsecret");
    assert_eq!(wire::admin_post(&running, "access-keys/testid/disable", &json!({})).await, 204);
    assert_eq!(
        code(&call(&running, &current, KMS, "ListKeys", &[]).await),
        (403, "Forbidden.AccessKey")
    );
    assert_eq!(wire::admin_post(&running, "access-keys/testid/enable", &json!({})).await, 204);
    assert_eq!(code(&call(&running, &current, KMS, "ListKeys", &[]).await), (200, "OK"));
    let added = json!({"id": "rotated", "secret": "new"});
    assert_eq!(wire::admin_post(&running, "access-keys", &added).await, 204);
    let rotated = Signer::new("rotated", "new");
    assert_eq!(code(&call(&running, &rotated, KMS, "ListKeys", &[]).await), (200, "OK"));
}

#[tokio::test]
async fn static_sts_style_keys_need_their_token() {
    let key = AccessKeySpec::parse("STS.static:stssecret:tok en/+=").expect("ID:SECRET:TOKEN");
    let config = EmulatorConfig { access_keys: vec![key], ..EmulatorConfig::default() };
    let running = wire::start_with(config).await;
    let bare = Signer::new("STS.static", "stssecret");
    let cases = [
        (bare.clone().with_token("tok en/+="), (200, "OK"), "the fixed token"),
        (bare.clone(), (400, "MissingSecurityToken"), "no token"),
        (
            bare.with_token("tok"),
            (400, "InvalidSecurityToken.MismatchWithAccessKey"),
            "wrong token",
        ),
    ];
    for (signer, want, reason) in cases {
        assert_eq!(code(&call(&running, &signer, KMS, "ListKeys", &[]).await), want, "{reason}");
    }
    // Our own client sends the token too.
    let client = super::client_for(
        &running,
        Credentials::new("STS.static", "stssecret").with_token("tok en/+="),
    );
    client.create_key("with token").await.expect("STS-style key works through the client");

    let calls = wire::admin_get(&running, "calls").await;
    for record in calls.as_array().unwrap() {
        let params = &record["params"];
        assert!(params.get("Signature").is_none(), "{record}");
        if let Some(token) = params.get("SecurityToken") {
            assert_eq!(token, "<redacted>", "{record}");
        }
    }
}
