//! Undoing a provider change by deleting the config. Objects that name no config run on the
//! operator's flags (account A). A `KmsProviderConfig` named `default` pointed at account B
//! takes them over: they own their aliases in A, so they stop with `ProviderChanged`. Deleting
//! that `default` is the natural undo, and the in-use finalizer must not hold it: those objects
//! do not need it (it reaches B), and once it is gone they are back on A and Ready again.

use crate::stack::{Options, REGION, Stack, manifest, wait_for};
use std::time::Duration;

const NS: &str = "default";
const ACCOUNT_B: &str = "2222222222222222";
const B_KEY_ID: &str = "resilience-account-b";
const B_SECRET: &str = "resilience-account-b-secret";

#[tokio::test]
async fn deleting_a_default_config_that_moved_objects_away_brings_them_back() {
    let account = format!("--account={ACCOUNT_B}={B_KEY_ID}:{B_SECRET}");
    let options = Options { emulator_args: &[&account], ..Options::default() };
    let stack = Stack::start_with("default-config-undo", options).await;
    let key = stack.create_key().await;
    let alias = "alias/undo";
    stack.apply(&manifest(NS, "app", alias, &key, &[]).to_string()).await;
    stack.wait_ready(NS, "app", Duration::from_secs(30)).await;

    let secret = [
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "account-b",
        &format!("--from-literal=ALIBABA_CLOUD_ACCESS_KEY_ID={B_KEY_ID}"),
        &format!("--from-literal=ALIBABA_CLOUD_ACCESS_KEY_SECRET={B_SECRET}"),
    ];
    stack.kubectl_ok(&secret).await;
    let config = serde_json::json!({
        "apiVersion": "kms.aliasoperator.dev/v1alpha1",
        "kind": "KmsProviderConfig",
        "metadata": {"name": "default"},
        "spec": {
            "region": REGION,
            "endpoint": {"network": "Custom", "url": stack.kms_url(), "allowInsecureHttp": true},
            "credentials": {"source": "Secret", "secretRef": {"namespace": NS, "name": "account-b"}},
        },
    });
    stack.apply(&config.to_string()).await;
    let api = stack.api(NS);
    let reason = |want: &'static str| {
        let api = api.clone();
        async move {
            let obj = api.get_opt("app").await.ok()??;
            (obj.ready_condition()?.reason == want).then_some(())
        }
    };
    wait_for("ProviderChanged", Duration::from_secs(30), || reason("ProviderChanged")).await;

    // The undo: the config goes at once, and the object is back on its flags' account.
    stack.kubectl_ok(&["delete", "kmsproviderconfig", "default", "--wait=false"]).await;
    wait_for("the default config gone", Duration::from_secs(30), || async {
        let out = stack.kubectl(&["get", "kmsproviderconfig", "default"]).await;
        (!out.status.success()).then_some(())
    })
    .await;
    // The config's going reconciles its objects at once, though they are in backoff.
    stack.wait_ready(NS, "app", Duration::from_secs(10)).await;
    assert_eq!(stack.kms_target(alias).await.as_deref(), Some(key.as_str()), "alias kept in A");

    stack.kubectl_ok(&["-n", NS, "delete", "kmsalias", "app", "--wait=false"]).await;
    stack.wait_gone(NS, "app", Duration::from_secs(30)).await;
    assert_eq!(stack.kms_target(alias).await, None, "deleted in A");
}
