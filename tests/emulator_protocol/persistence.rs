//! `--state-file`: keys and aliases survive a restart; a reset is persisted too.

use super::wire::{self, KMS, Signer, call, code};
use kms_alias_operator::emulator::EmulatorConfig;
use kms_alias_operator::kms::Credentials;
use std::path::Path;

fn config(state_file: &Path) -> EmulatorConfig {
    EmulatorConfig { state_file: Some(state_file.to_owned()), ..EmulatorConfig::default() }
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_file = dir.path().join("kms-state.json");

    let first = wire::start_with(config(&state_file)).await;
    let kms = super::client_for(&first, Credentials::new("testid", "testsecret"));
    let key = kms.create_key("persisted").await.expect("create key");
    kms.create_alias("alias/persisted", &key.key_id).await.expect("create alias");
    assert!(state_file.exists(), "written after the change, before shutdown");
    first.shutdown().await.expect("clean shutdown");

    let second = wire::start_with(config(&state_file)).await;
    let kms = super::client_for(&second, Credentials::new("testid", "testsecret"));
    let found = kms.describe_key("alias/persisted").await.expect("alias survived");
    assert_eq!(
        (found.key_id.as_str(), found.arn.as_str()),
        (key.key_id.as_str(), key.arn.as_str())
    );

    let reset = reqwest::Client::new().post(wire::admin(&second, "reset?state=true")).send();
    assert_eq!(reset.await.expect("reset").status().as_u16(), 204);
    second.shutdown().await.expect("clean shutdown");

    let third = wire::start_with(config(&state_file)).await;
    let answer = call(&third, &Signer::new("testid", "testsecret"), KMS, "ListAliases", &[]).await;
    assert_eq!(code(&answer), (200, "OK"));
    assert_eq!(answer.1["TotalCount"], 0, "the reset was persisted");
}
