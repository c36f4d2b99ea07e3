//! Cases 2, 3, 7 and 8 of `../shared/cases.md`.

use crate::env::{REGION, Scene, wait_for};
use std::time::Duration;

/// The shared emulator's default account.
const ACCOUNT: &str = "1234567890123456";

async fn wait_reason(scene: &Scene, name: &str, reason: &str) -> String {
    wait_for(&format!("{name}: {reason}"), Duration::from_secs(30), || async {
        let ready = scene.get(name).await?.ready_condition()?.clone();
        (ready.reason == reason).then_some(ready.message)
    })
    .await
}

#[tokio::test]
async fn case2_adopts_an_alias_past_the_first_page() {
    let scene = Scene::new("case2").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    for i in 0..120 {
        let filler = scene.alias_name(&format!("filler-{i:03}"));
        scene.kms().create_alias(&filler, &k2).await.expect("filler CreateAlias");
    }
    let alias = scene.alias_name("legacy");
    scene.kms().create_alias(&alias, &k1).await.expect("legacy CreateAlias");

    scene.apply("legacy", &alias, &k1).await;
    let obj = scene.wait_ready("legacy").await;
    assert_eq!(obj.status.as_ref().and_then(|s| s.alias_name.as_deref()), Some(alias.as_str()));
    assert_eq!(scene.count_calls("CreateAlias", &alias).await, 0);
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);

    scene.kubectl(&["delete", "kmsalias", "legacy", "--wait=false"]).await;
    scene.wait_gone("legacy").await;
    assert_eq!(scene.kms_target(&alias).await, None, "owned, so deleted");
    let filler = scene.alias_name("filler-000");
    assert_eq!(scene.kms_target(&filler).await.as_deref(), Some(k2.as_str()), "fillers kept");
    assert_eq!(scene.count_calls("DeleteAlias", &filler).await, 0);
}

/// Removes the object and leaves its alias, as the user in case 3 did: `Retain`, then delete.
/// (Dropping the finalizer by hand races with the operator, which puts it back.)
async fn orphan(scene: &Scene) {
    scene.wait_ready("app").await;
    let patch = r#"{"spec":{"deletionPolicy":"Retain"}}"#;
    scene.kubectl(&["patch", "kmsalias", "app", "--type=merge", "-p", patch]).await;
    scene.kubectl(&["delete", "kmsalias", "app"]).await;
}

#[tokio::test]
async fn case3_reapply_after_orphaning_adopts_or_reports_the_other_key() {
    let scene = Scene::new("case3").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &k1).await;
    orphan(&scene).await;

    scene.apply("app", &alias, &k1).await;
    scene.wait_ready("app").await;
    assert_eq!(scene.count_calls("CreateAlias", &alias).await, 1, "adopted, not re-created");
    orphan(&scene).await;

    scene.apply("app", &alias, &k2).await;
    let message = wait_reason(&scene, "app", "AliasOwnedElsewhere").await;
    assert!(message.contains(&k1), "{message}");
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k1.as_str()));
}

#[tokio::test]
async fn case7_key_arn_is_stored_bare_and_causes_no_writes() {
    let scene = Scene::new("case7").await;
    let k1 = scene.create_key().await;
    let alias = scene.alias_name("arn");
    let arn = format!("acs:kms:{REGION}:{ACCOUNT}:key/{k1}");
    scene.apply("arn", &alias, &arn).await;
    let obj = scene.wait_ready("arn").await;
    assert_eq!(obj.status.as_ref().and_then(|s| s.key_id.as_deref()), Some(k1.as_str()));

    // Same key in the other form: a spec change, but nothing to do in KMS.
    scene.apply("arn", &alias, &k1).await;
    let obj = wait_for("generation 2 observed", Duration::from_secs(30), || async {
        let obj = scene.get("arn").await?;
        (obj.status.as_ref()?.observed_generation == Some(2)).then_some(obj)
    })
    .await;
    assert_eq!(obj.ready_condition().map(|c| c.status.as_str()), Some("True"));
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);
    assert_eq!(scene.count_calls("CreateAlias", &alias).await, 1);

    let foreign = format!("acs:kms:{REGION}:999999999999:key/{k1}");
    let xacct = scene.alias_name("xacct");
    scene.apply("xacct", &xacct, &foreign).await;
    let message = wait_reason(&scene, "xacct", "InvalidSpec").await;
    assert!(message.contains("same account and region"), "{message}");
    assert_eq!(scene.count_calls("CreateAlias", &xacct).await, 0);
    assert_eq!(scene.kms_target(&xacct).await, None);
}

#[tokio::test]
async fn case8_fixing_a_missing_key_acts_at_once_despite_backoff() {
    let scene = Scene::new("case8").await;
    let k1 = scene.create_key().await;
    let alias = scene.alias_name("early");
    scene.apply("early", &alias, "key-hzz999999999999999999").await;
    wait_reason(&scene, "early", "KeyNotFound").await;

    scene.apply("early", &alias, &k1).await;
    let started = std::time::Instant::now();
    let obj = scene.wait_ready("early").await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(obj.status.and_then(|s| s.observed_generation), Some(2));
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k1.as_str()));
}
