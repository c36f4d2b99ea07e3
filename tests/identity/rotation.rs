//! Credential rotation: the operator reads its AccessKey from a credentials file. While it
//! runs, a new key is added to the account, the file is replaced with it and the old key is
//! disabled. The next write goes out with the new key, and the operator never stops.

use crate::stack::{
    ACCOUNT_UID, AccessKey, Cluster, DumpOnPanic, Emulator, Operator, assert_no_leaks, write_atomic,
};
use kms_alias_operator::kms::credentials::ENV_CREDENTIALS_FILE;
use serde_json::json;
use std::time::Instant;

/// The credentials file as `aliyun configure` and the SDKs write it.
fn credentials_file(key: &AccessKey) -> String {
    format!(
        "[default]\ntype = access_key\naccess_key_id = {}\naccess_key_secret = {}\n",
        key.id, key.secret
    )
}

#[tokio::test]
async fn rotated_credentials_file_is_used_and_the_old_key_refused() {
    let started = Instant::now();
    let cluster = Cluster::start().await;
    let dir = cluster.dir().to_path_buf();
    let admin = AccessKey::random("rotation-admin");
    let old = AccessKey::random("rotation-old");
    let new = AccessKey::random("rotation-new");
    let config = json!({
        "region": crate::stack::REGION,
        "accountUid": ACCOUNT_UID,
        "accessKeys": [admin.spec(), old.spec()],
    });
    let emulator = Emulator::start(&dir, "rotation", &config).await;
    let kms = emulator.client(&admin);
    let key1 = kms.create_key("rotation one").await.expect("CreateKey").key_id;
    let key2 = kms.create_key("rotation two").await.expect("CreateKey").key_id;

    let file = dir.join("alibabacloud-credentials");
    write_atomic(&file, &credentials_file(&old));
    let mut operator = Operator::start(
        &dir,
        cluster.kubeconfig(),
        &emulator.url,
        &[(ENV_CREDENTIALS_FILE, file.display().to_string())],
    );
    let _dump = DumpOnPanic(vec![operator.log.clone(), emulator.log.clone()]);
    let aliases = cluster.aliases().await;

    let alias = "alias/identity/rotation";
    aliases.create("rotation", alias, &key1).await;
    aliases.wait_ready("rotation", 1).await;
    let calls = emulator.calls().await;
    let create = calls
        .iter()
        .find(|c| c.action == "CreateAlias" && c.param("AliasName") == Some(alias))
        .unwrap_or_else(|| panic!("no CreateAlias: {calls:#?}"));
    assert_eq!((create.access_key_id.as_str(), create.code.as_str()), (old.id.as_str(), "OK"));

    // Rotate the way an administrator does: new key, new file, old key off.
    let rotating = Instant::now();
    emulator.admin("/_emulator/access-keys", &json!({"id": new.id, "secret": new.secret})).await;
    write_atomic(&file, &credentials_file(&new));
    emulator.admin(&format!("/_emulator/access-keys/{}/disable", old.id), &json!({})).await;
    let disabled = emulator.last_seq().await;
    let generation = aliases.set_key("rotation", &key2).await;
    aliases.wait_ready("rotation", generation).await;
    let rotated_in = rotating.elapsed();
    assert_eq!(emulator.alias_target(&admin, alias).await.as_deref(), Some(key2.as_str()));

    let after: Vec<_> = emulator
        .calls_after(disabled)
        .await
        .into_iter()
        .filter(|c| c.access_key_id != admin.id)
        .collect();
    assert!(!after.is_empty(), "no operator call after the rotation");
    for call in after.iter().filter(|c| c.access_key_id == old.id) {
        assert_eq!(call.code, "Forbidden.AccessKey", "old key after disabling: {call:?}");
    }
    let update = after
        .iter()
        .find(|c| c.action == "UpdateAlias" && c.code == "OK")
        .unwrap_or_else(|| panic!("no UpdateAlias after the rotation: {after:#?}"));
    assert_eq!(update.access_key_id, new.id, "the write uses the new key");
    let last = after.last().expect("a call");
    assert_eq!((last.access_key_id.as_str(), last.code.as_str()), (new.id.as_str(), "OK"));
    let old_refused = after.iter().filter(|c| c.access_key_id == old.id).count();

    // The emulator really refuses the old key now.
    let refused = emulator.client(&old).describe_key(&key1).await.expect_err("old key disabled");
    assert_eq!(refused.code(), Some("Forbidden.AccessKey"), "{refused}");
    assert!(operator.exited().is_none(), "the operator exited:\n{}", operator.log_text());
    assert!(
        operator.log_text().contains("credentials changed on disk"),
        "the operator did not notice the new file"
    );

    let events = cluster.events().await;
    let object = serde_json::to_string(&aliases.get("rotation").await).expect("object JSON");
    assert_no_leaks(
        &[&operator.log, &emulator.log],
        &[("events", events), ("object", object)],
        &[&admin.secret, &old.secret, &new.secret],
    );
    println!(
        "rotation: Ready with the new key {:.1}s after the rotation ({old_refused} calls with \
         the disabled key), whole test {:.1}s",
        rotated_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
