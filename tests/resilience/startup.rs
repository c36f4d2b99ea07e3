//! Start-up with many `KmsProviderConfig`s. The operator reads them all before its controller
//! starts. Once, 17 or more deadlocked it: the initial list filled a bounded channel that only
//! the controller drained, so it never started and never answered its probes.

use crate::stack::{REGION, Stack, manifest};
use std::time::Duration;

const CONFIGS: usize = 40;

#[tokio::test]
async fn many_provider_configs_do_not_stall_start_up() {
    let mut stack = Stack::start("many-configs", false).await;
    let configs: Vec<serde_json::Value> = (0..CONFIGS)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "kms.aliasoperator.dev/v1alpha1",
                "kind": "KmsProviderConfig",
                "metadata": {"name": format!("account-{i}")},
                "spec": {
                    "region": REGION,
                    "endpoint": {"network": "Custom", "url": stack.kms_url(), "allowInsecureHttp": true},
                    "credentials": {"source": "OperatorIdentity"},
                },
            })
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": configs});
    stack.apply(&list.to_string()).await;

    // A restart lists all of them at once before the controller runs.
    stack.crash_operator();
    stack.restart_operator();
    let key = stack.create_key().await;
    let mut obj = manifest("default", "after", "alias/after-restart", &key, &[]);
    obj["spec"]["providerConfigRef"] =
        serde_json::json!({"name": format!("account-{}", CONFIGS - 1)});
    stack.apply(&obj.to_string()).await;
    let (_, took) = stack.wait_ready("default", "after", Duration::from_secs(30)).await;
    println!("ready {took:.1?} after a restart with {CONFIGS} configs");
    let health = reqwest::get(format!("{}/healthz", stack.operator_http().await)).await;
    assert!(health.is_ok_and(|r| r.status().is_success()), "/healthz answers");
    stack.assert_operator_running();
}
