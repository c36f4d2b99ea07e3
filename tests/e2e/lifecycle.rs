//! The main job: create, re-point, delete, adopt, and an unknown key, on the real control plane.

use crate::env::{Scene, wait_for};
use kube::ResourceExt;
use std::time::Duration;

#[tokio::test]
async fn create_becomes_ready_and_points_alias_at_key() {
    let scene = Scene::new("create").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &key).await;

    // What users and CI pipelines wait with.
    let wait = ["wait", "--for=condition=Ready", "kmsalias/app", "--timeout=30s"];
    scene.kubectl(&wait).await;
    let obj = scene.get("app").await.expect("object");
    let status = obj.status.as_ref().expect("status");
    assert_eq!(status.key_id.as_deref(), Some(key.as_str()));
    assert_eq!(status.alias_name.as_deref(), Some(alias.as_str()));
    assert_eq!(status.observed_generation, obj.metadata.generation);
    let arn = status.alias_arn.as_deref().expect("aliasArn");
    assert!(arn.starts_with("acs:kms:cn-hangzhou:") && arn.ends_with(&alias), "{arn}");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(key.as_str()));
    assert!(obj.finalizers().iter().any(|f| f == kms_alias_operator::crd::FINALIZER));
}

#[tokio::test]
async fn changing_key_id_repoints_the_alias() {
    let scene = Scene::new("update").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &k1).await;
    scene.wait_ready("app").await;

    scene.apply("app", &alias, &k2).await;
    let obj = wait_for("status.keyId follows the spec", Duration::from_secs(30), || async {
        let obj = scene.get("app").await?;
        let status = obj.status.as_ref()?;
        (status.key_id.as_deref() == Some(k2.as_str())
            && status.observed_generation == obj.metadata.generation
            && obj.ready_condition()?.status == "True")
            .then_some(obj)
    })
    .await;
    assert_eq!(obj.metadata.generation, Some(2));
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k2.as_str()));
    assert_eq!(scene.count_applied("UpdateAlias", &alias).await, 1);

    // And back: each re-point is an event of its own that says where the alias went.
    scene.apply("app", &alias, &k1).await;
    wait_for("alias back on k1", Duration::from_secs(30), || async {
        (scene.kms_target(&alias).await.as_deref() == Some(k1.as_str())).then_some(())
    })
    .await;
    let expected = [format!("from {k1} to {k2}"), format!("from {k2} to {k1}")];
    wait_for("a Repointed event per re-point", Duration::from_secs(10), || async {
        let events = scene.events("app").await;
        let repointed = |what: &String| {
            events.iter().any(|e| e.reason == "Repointed" && e.message.ends_with(what.as_str()))
        };
        expected.iter().all(repointed).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_the_object_deletes_the_alias() {
    let scene = Scene::new("delete").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &key).await;
    scene.wait_ready("app").await;

    scene.kubectl(&["delete", "kmsalias", "app", "--wait=false"]).await;
    scene.wait_gone("app").await;
    assert_eq!(scene.kms_target(&alias).await, None, "alias deleted in KMS");
    assert_eq!(scene.count_applied("DeleteAlias", &alias).await, 1);
}

#[tokio::test]
async fn unknown_key_reports_key_not_found_and_backs_off() {
    let scene = Scene::new("unknown-key").await;
    let missing = "key-hzz000000000000000000";
    let alias = scene.alias_name("early");
    scene.apply("early", &alias, missing).await;

    let obj = wait_for("Ready=False KeyNotFound", Duration::from_secs(30), || async {
        let obj = scene.get("early").await?;
        (obj.ready_condition()?.reason == "KeyNotFound").then_some(obj)
    })
    .await;
    let ready = obj.ready_condition().expect("Ready");
    assert_eq!(ready.status, "False");
    // kstatus: only a change outside the operator can help, and tools can wait for that.
    scene.kubectl(&["wait", "--for=condition=Stalled", "kmsalias/early", "--timeout=10s"]).await;
    assert!(ready.message.contains(missing), "message names the key: {}", ready.message);

    // Watch the retries for a while: a fixed fast retry would make dozens of calls.
    let before = scene.count_calls_naming(missing).await;
    let window = Duration::from_secs(40);
    tokio::time::sleep(window).await; // measuring a rate over a window, not synchronising
    let during = scene.count_calls_naming(missing).await - before;
    assert!(during <= 4, "{during} KMS calls naming the key in {window:?}: no backoff");
    assert_eq!(scene.count_calls("CreateAlias", &alias).await, 0, "no write for a missing key");
    let codes: Vec<String> = scene
        .calls()
        .await
        .into_iter()
        .filter(|c| c.params.values().any(|v| v == missing))
        .map(|c| c.code)
        .collect();
    assert!(codes.iter().all(|c| c == "Forbidden.KeyNotFound"), "{codes:?}");
    assert_eq!(scene.kms_target(&alias).await, None, "no alias created");
}

#[tokio::test]
async fn alias_created_out_of_band_on_same_key_is_adopted() {
    let scene = Scene::new("adopt").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("legacy");
    scene.kms().create_alias(&alias, &key).await.expect("out-of-band CreateAlias");

    scene.apply("legacy", &alias, &key).await;
    let obj = scene.wait_ready("legacy").await;
    let status = obj.status.as_ref().expect("status");
    assert_eq!(status.alias_name.as_deref(), Some(alias.as_str()), "ownership recorded");
    assert_eq!(status.key_id.as_deref(), Some(key.as_str()));
    assert_eq!(scene.count_calls("CreateAlias", &alias).await, 0, "adopted, not created");
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);

    // Ownership was recorded, so deleting the object now removes the alias.
    scene.kubectl(&["delete", "kmsalias", "legacy", "--wait=false"]).await;
    scene.wait_gone("legacy").await;
    assert_eq!(scene.kms_target(&alias).await, None);
}

#[tokio::test]
async fn alias_on_another_key_is_a_conflict_and_never_touched() {
    let scene = Scene::new("conflict").await;
    let (mine, theirs) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("taken");
    scene.kms().create_alias(&alias, &theirs).await.expect("out-of-band CreateAlias");

    scene.apply("taken", &alias, &mine).await;
    let obj = wait_for("Ready=False AliasOwnedElsewhere", Duration::from_secs(30), || async {
        let obj = scene.get("taken").await?;
        (obj.ready_condition()?.reason == "AliasOwnedElsewhere").then_some(obj)
    })
    .await;
    assert!(obj.ready_condition().expect("Ready").message.contains(&theirs));

    scene.kubectl(&["delete", "kmsalias", "taken", "--wait=false"]).await;
    scene.wait_gone("taken").await;
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(theirs.as_str()));
    for action in ["UpdateAlias", "DeleteAlias"] {
        assert_eq!(scene.count_calls(action, &alias).await, 0, "no {action} by the operator");
    }
}

#[tokio::test]
async fn logs_carry_no_secret_or_signature() {
    let scene = Scene::new("logs").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &key).await;
    scene.wait_ready("app").await;
    scene.kubectl(&["delete", "kmsalias", "app", "--wait=false"]).await;
    scene.wait_gone("app").await;

    for log in [crate::env::env().operator_log(), crate::env::env().emulator_log()] {
        let text = std::fs::read_to_string(log).expect("log file");
        assert!(text.contains("alias"), "{} is empty: the scan would prove nothing", log.display());
        for secret in [crate::env::ACCESS_KEY_SECRET, crate::env::OOB_KEY_SECRET, "Signature="] {
            assert!(!text.contains(secret), "{} contains {secret:?}", log.display());
        }
    }
}
