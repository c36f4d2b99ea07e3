//! Case 1, second half: a bad alias name that reaches the controller because the CRD was
//! installed without its validation rules. The controller refuses it itself: `InvalidSpec`,
//! one Warning event, no KMS call, no retry loop, and deletion completes at once.

use crate::stack::{Stack, manifest, wait_for};
use std::time::Duration;

const NS: &str = "default";

/// Drops every `x-kubernetes-validations` list, as a hand-edited CRD might.
fn strip_rules(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(strip_rules);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_rules),
        _ => {}
    }
}

#[tokio::test]
async fn invalid_name_past_admission_is_refused_by_the_controller() {
    let stack = Stack::start("no-schema", false).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/kmsaliases.kms.aliasoperator.dev.yaml");
    let yaml = std::fs::read_to_string(path).expect("CRD file");
    let mut crd: serde_json::Value = serde_yaml::from_str(&yaml).expect("CRD YAML");
    strip_rules(&mut crd);
    stack.apply(&crd.to_string()).await;

    let key = stack.create_key().await;
    let alias = "alias/Service.Test";
    stack.apply(&manifest(NS, "bad", alias, &key, &[]).to_string()).await;
    let api = stack.api(NS);
    let message = wait_for("InvalidSpec", Duration::from_secs(30), || async {
        let ready = api.get_opt("bad").await.ok()??.ready_condition()?.clone();
        (ready.reason == "InvalidSpec").then_some(ready.message)
    })
    .await;
    assert!(message.contains("only letters, digits"), "names the rule: {message}");

    // An observation window: a retry loop would show up as more events or KMS calls.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let events = stack
        .kubectl_ok(&[
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            "involvedObject.name=bad,type=Warning",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .await;
    assert_eq!(events.trim(), "InvalidSpec", "exactly one Warning event");
    assert_eq!(stack.count_calls_naming(alias).await, 0, "no KMS call for the alias");

    let started = std::time::Instant::now();
    stack.kubectl_ok(&["delete", "kmsalias", "bad", "-n", NS, "--wait=false"]).await;
    wait_for("bad deleted", Duration::from_secs(10), || async {
        api.get_opt("bad").await.ok()?.is_none().then_some(())
    })
    .await;
    println!("deleted in {:?}", started.elapsed());
}
