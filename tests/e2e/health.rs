//! Health as GitOps tools read it. kstatus (the library behind Flux's health checks) and Argo
//! CD, running the project's health script `docs/argocd/health.lua`, must see an object the
//! operator has not acted on as in progress, a Ready one as healthy, one that needs outside
//! action as failed, and one the operator is still retrying as in progress. Both verdicts come
//! from the `gitops-health` helper that `hack/build-control-plane.sh` builds from their libraries.

use crate::env::{Scene, wait_for};
use std::time::Duration;

/// Waits until kstatus and Argo CD give `name` the verdicts `want`; returns their messages.
async fn wait_health(scene: &Scene, name: &str, want: (&str, &str)) -> (String, String) {
    let what = format!("kstatus {} and Argo CD {} for {name}", want.0, want.1);
    wait_for(&what, Duration::from_secs(30), || async {
        let ((kstatus, flux_message), (argocd, argo_message)) = scene.health(name).await;
        (kstatus == want.0 && argocd == want.1).then_some((flux_message, argo_message))
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
async fn gitops_tools_read_each_state_right() {
    let scene = Scene::new("health").await;
    let key = scene.create_key().await;

    // Never acted on: paused from its creation, so the operator writes no verdict. The API
    // server's `observedGeneration: 0` default keeps kstatus from reading it as current.
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
    let (flux, _) = wait_health(&scene, "held", ("InProgress", "Suspended")).await;
    assert!(flux.contains("observed generation is 0"), "{flux}");

    // Ready: current and healthy. Unpausing the held object brings it there too.
    scene.apply("ok", &scene.alias_name("ok"), &key).await;
    scene.kubectl(&["wait", "--for=condition=Ready", "kmsalias/ok", "--timeout=30s"]).await;
    wait_health(&scene, "ok", ("Current", "Healthy")).await;
    scene.kubectl(&["annotate", "kmsalias", "held", "kms.aliasoperator.dev/paused-"]).await;
    wait_health(&scene, "held", ("Current", "Healthy")).await;

    // Needs outside action (the key does not exist): failed, and Stalled names the reason.
    let missing = "key-hzz000000000000000410";
    scene.apply("missing", &scene.alias_name("missing"), missing).await;
    scene.kubectl(&["wait", "--for=condition=Stalled", "kmsalias/missing", "--timeout=30s"]).await;
    let (flux, argo) = wait_health(&scene, "missing", ("Failed", "Degraded")).await;
    assert!(flux.contains(missing) && argo.contains(missing), "{flux} / {argo}");
    assert!(argo.starts_with("KeyNotFound: "), "{argo}");

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
    let (_, argo) = wait_health(&scene, "retrying", ("InProgress", "Progressing")).await;
    assert!(argo.starts_with("KmsUnavailable: "), "{argo}");
}
