//! Crash safety: the operator is killed after KMS committed a CreateAlias but before the answer
//! came back, so nothing but the marker (`status.pendingCreate`, written before the call)
//! records what it did. While it is down, one object is deleted and the other is pointed at
//! another key; a third is left alone. After a restart the deleted object's alias is deleted
//! (no leak), the second alias is re-pointed as the operator's own (no false conflict, no
//! second CreateAlias), and the third is recorded as created.

use crate::stack::{Stack, manifest, wait_for};
use std::time::Duration;

const NS: &str = "default";

#[tokio::test]
async fn a_crash_between_create_and_its_answer_leaks_nothing() {
    let mut stack = Stack::start("crash-mid-create", false).await;
    let (k1, k2) = (stack.create_key().await, stack.create_key().await);
    // KMS commits each CreateAlias, then holds the answer far longer than the operator waits.
    let hang = serde_json::json!({
        "action": "CreateAlias", "hangAfterCommit": true, "hangMs": 600_000, "times": 3,
    });
    stack.arm_fault(hang).await;
    let (deleted, repointed) = ("alias/crash-deleted", "alias/crash-repointed");
    let settled = "alias/crash-settled";
    let items = [
        manifest(NS, "deleted", deleted, &k1, &[]),
        manifest(NS, "repointed", repointed, &k1, &[]),
        manifest(NS, "settled", settled, &k1, &[]),
    ];
    stack
        .apply(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string())
        .await;

    wait_for("the aliases committed in KMS", Duration::from_secs(30), || async {
        for alias in [deleted, repointed, settled] {
            stack.kms_target(alias).await?;
        }
        Some(())
    })
    .await;
    stack.crash_operator();
    let api = stack.api(NS);
    for name in ["deleted", "repointed", "settled"] {
        let obj = api.get(name).await.expect("object");
        let status = obj.status.expect("status");
        let marker = status.pending_create.expect("the marker was written before CreateAlias");
        assert_eq!(marker.key_id, k1);
        assert_eq!(status.alias_name, None, "ownership not recorded: the answer never came");
    }

    // While the operator is down: one object deleted, the other pointed at another key.
    stack.kubectl_ok(&["-n", NS, "delete", "kmsalias", "deleted", "--wait=false"]).await;
    let patch = serde_json::json!({"spec": {"keyId": k2}}).to_string();
    stack
        .kubectl_ok(&["-n", NS, "patch", "kmsalias", "repointed", "--type=merge", "-p", &patch])
        .await;
    stack.disarm_faults().await;
    stack.restart_operator();

    stack.wait_gone(NS, "deleted", Duration::from_secs(30)).await;
    assert_eq!(stack.kms_target(deleted).await, None, "{deleted} leaked");
    let (obj, _) = stack.wait_ready(NS, "repointed", Duration::from_secs(30)).await;
    let status = obj.status.expect("status");
    assert_eq!(status.alias_name.as_deref(), Some(repointed), "ownership recorded");
    assert_eq!(status.key_id.as_deref(), Some(k2.as_str()));
    assert!(status.pending_create.is_none(), "marker cleared");
    assert_eq!(stack.kms_target(repointed).await.as_deref(), Some(k2.as_str()));
    let (obj, _) = stack.wait_ready(NS, "settled", Duration::from_secs(30)).await;
    let status = obj.status.expect("status");
    assert_eq!(status.alias_name.as_deref(), Some(settled), "ownership recorded");
    assert!(status.pending_create.is_none(), "marker cleared");
    let events = stack
        .kubectl_ok(&[
            "-n",
            NS,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=settled",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .await;
    assert!(events.contains("Created") && !events.contains("Adopted"), "events: {events}");
    for alias in [deleted, repointed, settled] {
        let creates = stack.calls_for("CreateAlias", alias).await;
        assert_eq!(creates.len(), 1, "CreateAlias sent again for {alias}: {creates:?}");
    }
    let updates = stack.calls_for("UpdateAlias", repointed).await;
    assert_eq!(updates.iter().filter(|c| c.code == "OK").count(), 1, "{updates:?}");
    let deletes = stack.calls_for("DeleteAlias", deleted).await;
    assert_eq!(deletes.iter().filter(|c| c.code == "OK").count(), 1, "{deletes:?}");
}
