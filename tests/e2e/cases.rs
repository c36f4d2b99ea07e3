//! Cases 1 (the valid names), 2, 3, 4, 5, 6, 7, 8 and 11 of `../shared/cases.md`, one test
//! each. The rest: case 1's refusals in `admission.rs`; cases 9, 10, 12, 13 and case 1 past
//! admission in `tests/resilience`, which give each test its own control plane.

use crate::env::{REGION, Scene, wait_for};
use kube::ResourceExt;
use std::time::Duration;

/// The shared emulator's default account.
const ACCOUNT: &str = "1234567890123456";

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
    assert_eq!(scene.count_applied("CreateAlias", &alias).await, 1, "adopted, not re-created");
    orphan(&scene).await;

    scene.apply("app", &alias, &k2).await;
    let message = scene.wait_reason("app", "AliasOwnedElsewhere").await;
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
    assert_eq!(scene.count_applied("CreateAlias", &alias).await, 1);

    let foreign = format!("acs:kms:{REGION}:999999999999:key/{k1}");
    let xacct = scene.alias_name("xacct");
    scene.apply("xacct", &xacct, &foreign).await;
    let message = scene.wait_reason("xacct", "InvalidSpec").await;
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
    scene.wait_reason("early", "KeyNotFound").await;

    scene.apply("early", &alias, &k1).await;
    let started = std::time::Instant::now();
    let obj = scene.wait_ready("early").await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(obj.status.and_then(|s| s.observed_generation), Some(2));
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k1.as_str()));

    // Another missing key later: its own Warning, naming that key (not a stale repeat).
    let other = "key-hzz999999999999999998";
    scene.apply("early", &alias, other).await;
    scene.wait_reason("early", "KeyNotFound").await;
    wait_for("a KeyNotFound event naming the second key", Duration::from_secs(10), || async {
        let events = scene.events("early").await;
        events.iter().any(|e| e.reason == "KeyNotFound" && e.message.contains(other)).then_some(())
    })
    .await;
}

/// Deletes the object and returns how long it took to go.
async fn delete_timed(scene: &Scene, name: &str) -> Duration {
    let started = std::time::Instant::now();
    scene.kubectl(&["delete", "kmsalias", name, "--wait=false"]).await;
    scene.wait_gone(name).await;
    started.elapsed()
}

/// Warning events about `name`, counting repeats.
async fn warnings(scene: &Scene, name: &str) -> u64 {
    let events = scene.events(name).await;
    events.iter().filter(|e| e.type_ == "Warning").map(|e| e.count).sum()
}

#[tokio::test]
async fn case1_valid_names_become_aliases_on_the_key() {
    let scene = Scene::new("case1").await;
    let k1 = scene.create_key().await;
    // The literal values of the case; no other test uses them.
    let longest = format!("alias/{}", "a".repeat(255));
    let nested = "alias/team_a/app-1".to_owned();
    scene.apply("n7", &longest, &k1).await;
    scene.apply("n9", &nested, &k1).await;
    for (name, alias) in [("n7", &longest), ("n9", &nested)] {
        let obj = scene.wait_ready(name).await;
        assert_eq!(obj.status.and_then(|s| s.alias_name).as_ref(), Some(alias));
        assert_eq!(scene.kms_target(alias).await.as_deref(), Some(k1.as_str()), "{alias}");
    }

    // Not silently rewritten, and not renamed later either (case 4).
    let patch = r#"{"spec":{"aliasName":"alias/team_a/app-2"}}"#;
    let output =
        scene.kubectl_output(&["patch", "kmsalias", "n9", "--type=merge", "-p", patch]).await;
    assert!(!output.status.success(), "aliasName changed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("aliasName is immutable"), "{stderr}");

    for (name, alias) in [("n7", &longest), ("n9", &nested)] {
        delete_timed(&scene, name).await;
        assert_eq!(scene.kms_target(alias).await, None, "{alias} left in KMS");
    }
}

#[tokio::test]
async fn case4_alias_name_is_immutable_and_delete_removes_the_original() {
    let scene = Scene::new("case4").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let [v1, v2, v3] = ["app-v1", "app-v2", "app-v3"].map(|base| scene.alias_name(base));
    scene.apply("app", &v1, &k1).await;
    scene.wait_ready("app").await;

    let patches = [
        serde_json::json!({"spec": {"aliasName": v2}}),
        serde_json::json!({"spec": {"aliasName": v3, "keyId": k2}}),
    ];
    for patch in patches.map(|p| p.to_string()) {
        let args = ["patch", "kmsalias", "app", "--type=merge", "-p", &patch];
        let output = scene.kubectl_output(&args).await;
        assert!(!output.status.success(), "{patch} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("aliasName is immutable"), "{patch}: {stderr}");
    }
    let obj = scene.get("app").await.expect("object");
    assert_eq!(
        (obj.spec.alias_name.as_str(), obj.spec.key_id.as_str()),
        (v1.as_str(), k1.as_str())
    );
    assert_eq!(obj.metadata.generation, Some(1), "nothing of the refused patches was stored");
    assert_eq!(scene.kms_target(&v1).await.as_deref(), Some(k1.as_str()));
    for alias in [&v2, &v3] {
        assert_eq!(scene.kms_target(alias).await, None, "{alias}");
        assert_eq!(scene.count_calls_naming(alias).await, 0, "the operator acted on {alias}");
    }

    delete_timed(&scene, "app").await;
    assert_eq!(scene.kms_target(&v1).await, None, "{v1} left behind");
}

#[tokio::test]
async fn case5_delete_with_the_key_pending_deletion_is_quick_and_cheap() {
    let scene = Scene::new("case5").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &k1).await;
    scene.wait_ready("app").await;
    scene.kms().schedule_key_deletion(&k1, 7).await.expect("ScheduleKeyDeletion");

    let before = scene.count_calls_naming(&alias).await + scene.count_calls_naming(&k1).await;
    let took = delete_timed(&scene, "app").await;
    let after = scene.count_calls_naming(&alias).await + scene.count_calls_naming(&k1).await;
    println!("case 5: delete took {took:.1?} with {} KMS calls", after - before);
    assert!(took < Duration::from_secs(15), "delete took {took:?}");
    assert!(after - before <= 3, "{} KMS calls on the delete path", after - before);
    let deletes = scene.count_applied("DeleteAlias", &alias).await;
    assert!((1..=2).contains(&deletes), "{deletes} DeleteAlias calls");
    assert_eq!(scene.kms_target(&alias).await, None);

    scene.apply("app", &alias, &k2).await;
    scene.wait_ready("app").await;
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k2.as_str()));
    let refused: Vec<_> = scene
        .calls()
        .await
        .into_iter()
        .filter(|c| c.action == "CreateAlias" && c.params.get("AliasName") == Some(&alias))
        .filter(|c| ["AliasAlreadyExists", "Rejected.ResourceExist"].contains(&c.code.as_str()))
        .collect();
    assert!(refused.is_empty(), "CreateAlias found the alias still there: {refused:?}");
}

#[tokio::test]
async fn case6_delete_completes_whatever_is_already_gone() {
    let scene = Scene::new("case6").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let limit = Duration::from_secs(10);

    // The alias deleted out of band, then the object at once, before any resync.
    let gone = scene.alias_name("alias-gone");
    scene.apply("alias-gone", &gone, &k1).await;
    scene.wait_ready("alias-gone").await;
    scene.kms().delete_alias(&gone).await.expect("out-of-band DeleteAlias");
    let took = delete_timed(&scene, "alias-gone").await;
    assert!(took < limit, "alias already gone: delete took {took:?}");

    // The key removed from KMS together with its aliases.
    let keyless = scene.alias_name("key-gone");
    scene.apply("key-gone", &keyless, &k2).await;
    scene.wait_ready("key-gone").await;
    scene.remove_key(&k2).await;
    assert_eq!(scene.kms_target(&keyless).await, None);
    let took = delete_timed(&scene, "key-gone").await;
    assert!(took < limit, "key already gone: delete took {took:?}");

    // Never Ready, never created: nothing to delete, so no DeleteAlias at all.
    let bad = scene.alias_name("bad");
    scene.apply("bad", &bad, "key-hzz0000000000000000x6").await;
    scene.wait_reason("bad", "KeyNotFound").await;
    let took = delete_timed(&scene, "bad").await;
    assert!(took < limit, "never created: delete took {took:?}");
    assert_eq!(scene.count_calls("DeleteAlias", &bad).await, 0);

    for name in ["alias-gone", "key-gone", "bad"] {
        let warned = warnings(&scene, name).await;
        let allowed = u64::from(name == "bad"); // its KeyNotFound, once
        assert!(warned <= allowed, "{name}: {warned} warning events");
    }
}

#[tokio::test]
async fn case11_label_edits_during_a_spec_change_cause_no_flap() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let scene = Scene::new("case11").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &k1).await;
    scene.wait_ready("app").await;

    // Every version of the object the API server hands out while the edits run.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = watcher::Config::default().fields("metadata.name=app");
    let stream = watcher(scene.api().clone(), config).applied_objects();
    let record = seen.clone();
    let watching = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(Ok(obj)) = stream.next().await {
            let ready = obj.ready_condition().map(|c| (c.status.clone(), c.reason.clone()));
            record.lock().expect("lock").push(ready);
        }
    });

    scene.apply("app", &alias, &k2).await;
    for i in 1..=30 {
        scene.kubectl(&["label", "kmsalias", "app", &format!("n={i}"), "--overwrite"]).await;
    }
    let obj = wait_for("the re-point to settle", Duration::from_secs(30), || async {
        let obj = scene.get("app").await?;
        let status = obj.status.as_ref()?;
        (status.key_id.as_deref() == Some(k2.as_str())
            && status.observed_generation == obj.metadata.generation
            && obj.ready_condition()?.status == "True")
            .then_some(obj)
    })
    .await;
    watching.abort();
    assert_eq!(obj.metadata.generation, Some(2), "labels do not bump the generation");
    assert_eq!(obj.labels().get("n").map(String::as_str), Some("30"));
    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() > 30, "the watch saw {} versions: it would prove nothing", seen.len());
    let flaps: Vec<_> = seen.iter().flatten().filter(|(status, _)| status != "True").collect();
    assert!(flaps.is_empty(), "Ready flapped: {flaps:?}");
    assert_eq!(warnings(&scene, "app").await, 0, "error events");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k2.as_str()));
    assert_eq!(scene.count_applied("UpdateAlias", &alias).await, 1);
}
