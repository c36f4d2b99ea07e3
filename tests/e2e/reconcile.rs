//! Reconcile guarantees: deletion policy, drift, pause, reconcile-now, one owner per alias,
//! take-over, key pre-flight, and quiet steady state.

use crate::env::{Scene, wait_for};
use std::time::Duration;

const FAST_DRIFT: &str =
    r#"{"metadata":{"annotations":{"kms.aliasoperator.dev/drift-check-interval":"10s"}}}"#;

/// The reasons of the Events about `name`, one line each.
async fn events(scene: &Scene, name: &str) -> String {
    let events = scene.events(name).await;
    events.into_iter().map(|e| e.reason + "\n").collect()
}

#[tokio::test]
async fn retain_leaves_the_alias_in_kms() {
    let scene = Scene::new("retain").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("kept");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&scene.manifest("kept", &alias, &key)).expect("json");
    manifest["spec"]["deletionPolicy"] = "Retain".into();
    assert!(scene.kubectl_apply(&manifest.to_string()).await.status.success());
    scene.wait_ready("kept").await;

    scene.kubectl(&["delete", "kmsalias", "kept", "--wait=false"]).await;
    scene.wait_gone("kept").await;
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(key.as_str()));
    assert_eq!(scene.count_calls("DeleteAlias", &alias).await, 0);
}

#[tokio::test]
async fn drift_is_corrected_with_an_event() {
    let scene = Scene::new("drift").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let (moved, gone) = (scene.alias_name("moved"), scene.alias_name("gone"));
    for (name, alias) in [("moved", &moved), ("gone", &gone)] {
        scene.apply(name, alias, &k1).await;
        scene.kubectl(&["patch", "kmsalias", name, "--type=merge", "-p", FAST_DRIFT]).await;
        scene.wait_ready(name).await;
    }

    // One alias re-pointed, the other deleted, out of band.
    scene.kms().update_alias(&moved, &k2).await.expect("out-of-band UpdateAlias");
    scene.kms().delete_alias(&gone).await.expect("out-of-band DeleteAlias");
    for alias in [&moved, &gone] {
        wait_for(&format!("{alias} put back"), Duration::from_secs(40), || async {
            (scene.kms_target(alias).await.as_deref() == Some(k1.as_str())).then_some(())
        })
        .await;
    }
    // Each correction is reported with what had happened out of band.
    let expected = [
        ("moved", format!("re-pointed to {k2} out of band")),
        ("gone", "deleted out of band".to_owned()),
    ];
    for (name, needle) in expected {
        wait_for(&format!("DriftCorrected event on {name}"), Duration::from_secs(10), || async {
            let events = scene.events(name).await;
            let seen =
                events.iter().any(|e| e.reason == "DriftCorrected" && e.message.contains(&needle));
            seen.then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn report_only_drift_never_reverts() {
    let scene = Scene::new("drift-report").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&scene.manifest("app", &alias, &k1)).expect("json");
    manifest["spec"]["driftPolicy"] = "Report".into();
    assert!(scene.kubectl_apply(&manifest.to_string()).await.status.success());
    scene.kubectl(&["patch", "kmsalias", "app", "--type=merge", "-p", FAST_DRIFT]).await;
    scene.wait_ready("app").await;

    scene.kms().update_alias(&alias, &k2).await.expect("out-of-band UpdateAlias");
    let message = scene.wait_reason_within("app", "DriftDetected", Duration::from_secs(40)).await;
    assert!(message.contains(&k2), "{message}");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k2.as_str()), "not reverted");
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);
    wait_for("DriftDetected event", Duration::from_secs(10), || async {
        events(&scene, "app").await.contains("DriftDetected").then_some(())
    })
    .await;

    // Put back by hand: the next check (10 s here) clears the report.
    scene.kms().update_alias(&alias, &k1).await.expect("out-of-band UpdateAlias back");
    scene.wait_reason_within("app", "AliasReady", Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_bad_drift_interval_is_invalid_spec_and_harms_nothing_else() {
    let scene = Scene::new("interval").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &key).await;
    scene.wait_ready("app").await;

    // A day is the ceiling; this value once overflowed a timer and took the operator down.
    let annotation = "kms.aliasoperator.dev/drift-check-interval";
    let huge = format!("{annotation}=5124095576030431h");
    scene.kubectl(&["annotate", "--overwrite", "kmsalias", "app", &huge]).await;
    let message = scene.wait_reason_within("app", "InvalidSpec", Duration::from_secs(30)).await;
    assert!(message.contains("from 10s to 24h"), "{message}");

    // The operator is still serving: another object becomes Ready, and a fixed value heals.
    scene.apply("other", &scene.alias_name("other"), &key).await;
    scene.wait_ready("other").await;
    scene
        .kubectl(&["annotate", "--overwrite", "kmsalias", "app", &format!("{annotation}=24h")])
        .await;
    scene.wait_reason_within("app", "AliasReady", Duration::from_secs(30)).await;
}

#[tokio::test]
async fn pause_holds_writes_and_reconcile_now_acts_at_once() {
    let scene = Scene::new("pause").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &k1).await;
    scene.wait_ready("app").await;

    scene.kubectl(&["annotate", "kmsalias", "app", "kms.aliasoperator.dev/paused=true"]).await;
    wait_for("Paused condition", Duration::from_secs(20), || async {
        let obj = scene.get("app").await?;
        (obj.condition("Paused")?.status == "True").then_some(())
    })
    .await;
    scene.apply("app", &alias, &k2).await;
    // Give a paused operator every chance to misbehave: a later reconcile-now must still act.
    let calls_before = scene.calls().await.len();
    scene.kubectl(&["annotate", "kmsalias", "app", "kms.aliasoperator.dev/paused-"]).await;
    let obj = scene.wait_ready("app").await;
    assert_eq!(obj.status.and_then(|s| s.key_id).as_deref(), Some(k2.as_str()));
    assert!(obj_lacks_paused(&scene, "app").await, "Paused condition removed");
    assert!(scene.calls().await.len() > calls_before);

    // Reconcile now: an out-of-band change is corrected without waiting for the resync.
    scene.kms().update_alias(&alias, &k1).await.expect("out-of-band UpdateAlias");
    scene
        .kubectl(&[
            "annotate",
            "--overwrite",
            "kmsalias",
            "app",
            "kms.aliasoperator.dev/reconcile-requested-at=now-1",
        ])
        .await;
    wait_for("drift fixed by reconcile-now", Duration::from_secs(15), || async {
        (scene.kms_target(&alias).await.as_deref() == Some(k2.as_str())).then_some(())
    })
    .await;
}

async fn obj_lacks_paused(scene: &Scene, name: &str) -> bool {
    scene.get(name).await.is_some_and(|o| o.condition("Paused").is_none())
}

#[tokio::test]
async fn two_objects_for_one_alias_have_one_owner() {
    let scene = Scene::new("claims").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("shared");
    let both = format!(
        "{}\n---\n{}",
        scene.manifest("first", &alias, &k1),
        scene.manifest("second", &alias, &k2)
    );
    assert!(scene.kubectl_apply(&both).await.status.success());

    let (winner, loser, winner_key, loser_key) =
        wait_for("one owner", Duration::from_secs(30), || async {
            let first = scene.get("first").await?;
            let second = scene.get("second").await?;
            let (f, s) =
                (first.ready_condition()?.reason.clone(), second.ready_condition()?.reason.clone());
            match (f.as_str(), s.as_str()) {
                ("AliasReady", "AliasClaimedByOtherResource") => {
                    Some(("first", "second", &k1, &k2))
                }
                ("AliasClaimedByOtherResource", "AliasReady") => {
                    Some(("second", "first", &k2, &k1))
                }
                _ => None,
            }
        })
        .await;
    let loser_message =
        scene.get(loser).await.and_then(|o| o.ready_condition().map(|c| c.message.clone()));
    assert!(loser_message.unwrap_or_default().contains(winner), "loser names the winner");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(winner_key.as_str()));
    assert_eq!(scene.count_applied("CreateAlias", &alias).await, 1);
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);

    // When the winner goes, its alias goes with it, and the other object takes the name at
    // once: the winner's deletion wakes it (its steady re-check is 30 s).
    scene.kubectl(&["delete", "kmsalias", winner, "--wait=false"]).await;
    scene.wait_gone(winner).await;
    wait_for("the other object owns the alias", Duration::from_secs(15), || async {
        let obj = scene.get(loser).await?;
        (obj.ready_condition()?.status == "True").then_some(())
    })
    .await;
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(loser_key.as_str()));
}

#[tokio::test]
async fn a_retained_alias_is_not_handed_to_the_other_claimant() {
    let scene = Scene::new("claims-retain").await;
    let (k1, k2) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("shared");
    let mut first: serde_json::Value =
        serde_json::from_str(&scene.manifest("first", &alias, &k1)).expect("json");
    first["spec"]["deletionPolicy"] = "Retain".into();
    assert!(scene.kubectl_apply(&first.to_string()).await.status.success());
    scene.wait_ready("first").await;
    scene.apply("second", &alias, &k2).await;
    scene
        .wait_reason_within("second", "AliasClaimedByOtherResource", Duration::from_secs(30))
        .await;

    // The winner goes but leaves its alias on k1: to the other object it is now an alias it
    // does not own on another key, a conflict (rule 3), and nothing is written.
    scene.kubectl(&["delete", "kmsalias", "first", "--wait=false"]).await;
    scene.wait_gone("first").await;
    let message =
        scene.wait_reason_within("second", "AliasOwnedElsewhere", Duration::from_secs(15)).await;
    assert!(message.contains(&k1), "{message}");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k1.as_str()));
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);
    assert_eq!(scene.count_calls("DeleteAlias", &alias).await, 0);
}

#[tokio::test]
async fn take_over_is_opt_in() {
    let scene = Scene::new("takeover").await;
    let (mine, theirs) = (scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("legacy");
    scene.kms().create_alias(&alias, &theirs).await.expect("out-of-band CreateAlias");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&scene.manifest("legacy", &alias, &mine)).expect("json");
    manifest["spec"]["takeOverExisting"] = true.into();
    assert!(scene.kubectl_apply(&manifest.to_string()).await.status.success());
    scene.wait_ready("legacy").await;
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(mine.as_str()));
}

#[tokio::test]
async fn retarget_to_an_unusable_key_keeps_the_old_key() {
    let scene = Scene::new("preflight").await;
    let (k1, pending, disabled) =
        (scene.create_key().await, scene.create_key().await, scene.create_key().await);
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &k1).await;
    scene.wait_ready("app").await;
    scene.kms().schedule_key_deletion(&pending, 7).await.expect("ScheduleKeyDeletion");
    let _: serde_json::Value =
        scene.kms().call("DisableKey", &[("KeyId", &disabled)]).await.expect("DisableKey");
    let missing = "key-hzz000000000000000404";

    // Each unusable target in turn: the alias stays on k1 and Ready says why.
    for (target, reason) in [
        (pending.as_str(), "KeyPendingDeletion"),
        (disabled.as_str(), "KeyDisabled"),
        (missing, "KeyNotFound"),
    ] {
        scene.apply("app", &alias, target).await;
        let message = scene.wait_reason_within("app", reason, Duration::from_secs(30)).await;
        assert!(message.contains(target), "{reason}: {message}");
        assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(k1.as_str()), "{reason}");
        let obj = scene.get("app").await.expect("object");
        let status = obj.status.expect("status");
        assert_eq!(status.key_id.as_deref(), Some(k1.as_str()), "{reason}: status keeps k1");
        assert_eq!(status.alias_name.as_deref(), Some(alias.as_str()), "{reason}: still owned");
    }
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);

    // Deleting never waits on the key's state either (case 5).
    scene.kms().schedule_key_deletion(&k1, 7).await.expect("ScheduleKeyDeletion");
    scene.kubectl(&["delete", "kmsalias", "app", "--wait=false"]).await;
    scene.wait_gone("app").await;
    assert_eq!(scene.kms_target(&alias).await, None);
}

#[tokio::test]
async fn steady_state_makes_no_writes() {
    let scene = Scene::new("quiet").await;
    let key = scene.create_key().await;
    let alias = scene.alias_name("app");
    scene.apply("app", &alias, &key).await;
    scene.kubectl(&["patch", "kmsalias", "app", "--type=merge", "-p", FAST_DRIFT]).await;
    let before = scene.wait_ready("app").await;
    let version = before.metadata.resource_version.clone();
    let calls_before = scene.count_calls_naming(&alias).await;
    let sweeps_before = scene.calls().await.iter().filter(|c| c.action == "ListAliases").count();

    // A measurement window over two drift checks, not a synchronisation.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let after = scene.get("app").await.expect("object");
    assert_eq!(after.metadata.resource_version, version, "no status write at rest");
    // Drift checks ride on the account's shared ListAliases sweep: no per-object call.
    let own = scene.count_calls_naming(&alias).await - calls_before;
    assert_eq!(own, 0, "{own} calls naming the alias during steady state");
    let sweeps = scene.calls().await.iter().filter(|c| c.action == "ListAliases").count();
    assert!(sweeps > sweeps_before, "the drift checks did sweep");
    assert_eq!(scene.count_applied("CreateAlias", &alias).await, 1);
    assert_eq!(scene.count_calls("UpdateAlias", &alias).await, 0);
}
