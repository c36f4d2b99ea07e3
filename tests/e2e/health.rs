//! Health as GitOps tools read it. kstatus (the library behind Flux's health checks, run here
//! as the `kstatus` helper built from cli-utils) and `kubectl wait` must see an object the
//! operator has not acted on as in progress, a Ready one as current, one that needs outside
//! action as failed, and one the operator is still retrying as in progress.

use crate::env::{Scene, wait_for};
use std::time::Duration;

/// Waits until kstatus gives `name` the status `want`; returns its message.
async fn wait_kstatus(scene: &Scene, name: &str, want: &str) -> String {
    wait_for(&format!("kstatus {want} for {name}"), Duration::from_secs(30), || async {
        let (status, message) = scene.kstatus(name).await;
        (status == want).then_some(message)
    })
    .await
}

/// A loopback URL where nothing listens.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn kstatus_reads_each_state_as_gitops_tools_do() {
    let scene = Scene::new("health").await;
    let key = scene.create_key().await;

    // Never acted on: paused from its creation, so the operator writes no verdict. The API
    // server's `observedGeneration: 0` default keeps it from reading as current.
    let mut manifest: serde_json::Value =
        serde_json::from_str(&scene.manifest("held", &scene.alias_name("held"), &key))
            .expect("manifest JSON");
    manifest["metadata"]["annotations"] =
        serde_json::json!({"kms.aliasoperator.dev/paused": "true"});
    assert!(scene.kubectl_apply(&manifest.to_string()).await.status.success());
    wait_for("Paused condition", Duration::from_secs(30), || async {
        (scene.get("held").await?.condition("Paused")?.status == "True").then_some(())
    })
    .await;
    let message = wait_kstatus(&scene, "held", "InProgress").await;
    assert!(message.contains("observed generation is 0"), "{message}");

    // Ready: current. Unpausing the held object brings it there too.
    scene.apply("ok", &scene.alias_name("ok"), &key).await;
    scene.kubectl(&["wait", "--for=condition=Ready", "kmsalias/ok", "--timeout=30s"]).await;
    wait_kstatus(&scene, "ok", "Current").await;
    scene.kubectl(&["annotate", "kmsalias", "held", "kms.aliasoperator.dev/paused-"]).await;
    wait_kstatus(&scene, "held", "Current").await;

    // Needs outside action (the key does not exist): failed, and Stalled names the reason.
    scene.apply("missing", &scene.alias_name("missing"), "key-hzz000000000000000410").await;
    scene.kubectl(&["wait", "--for=condition=Stalled", "kmsalias/missing", "--timeout=30s"]).await;
    let message = wait_kstatus(&scene, "missing", "Failed").await;
    assert!(message.contains("key-hzz000000000000000410"), "{message}");

    // Still being retried (KMS unreachable): in progress, and Reconciling says so.
    let config = format!("{}-down", scene.ns);
    scene.provider_config(&config, &closed_port_url(), None).await;
    scene.apply_with_provider("retrying", &scene.alias_name("retrying"), &key, &config).await;
    let reconciling = "--for=condition=Reconciling";
    scene.kubectl(&["wait", reconciling, "kmsalias/retrying", "--timeout=30s"]).await;
    let obj = scene.get("retrying").await.expect("object");
    let ready = obj.ready_condition().expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "KmsUnavailable"));
    let stalled = obj.condition("Stalled").map(|c| c.status.as_str());
    assert_eq!(stalled, Some("False"), "a transient failure is not a stall");
    wait_kstatus(&scene, "retrying", "InProgress").await;
}
