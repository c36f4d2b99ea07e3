//! Case 9: deleting a whole namespace, with kube-controller-manager's namespace controller
//! doing the deleting, cleans up every alias and lets the namespace go.

use crate::stack::{Stack, is_ready, manifest, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use std::time::{Duration, Instant};

const NS: &str = "team-z";
const OBJECTS: usize = 20;
/// The limit case 9 sets for the namespace to disappear.
const NAMESPACE_GONE_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn namespace_deletion_removes_every_alias_and_finishes() {
    let stack = Stack::start("namespace-deletion", true).await;
    let key = stack.create_key().await;
    stack.kubectl_ok(&["create", "namespace", NS]).await;

    let names: Vec<(String, String)> =
        (1..=OBJECTS).map(|i| (format!("a{i}"), format!("alias/team-z-a{i}"))).collect();
    let items: Vec<_> =
        names.iter().map(|(name, alias)| manifest(NS, name, alias, &key, &[])).collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    stack.apply(&list.to_string()).await; // all 20 in one `kubectl apply`

    let started = Instant::now();
    let api = stack.api(NS);
    wait_for("all 20 objects to be Ready", Duration::from_secs(90), || async {
        let objects = api.list(&Default::default()).await.ok()?.items;
        (objects.len() == OBJECTS && objects.iter().all(is_ready)).then_some(())
    })
    .await;
    println!("all {OBJECTS} objects Ready in {:.1?}", started.elapsed());
    for (_, alias) in &names {
        assert_eq!(stack.kms_target(alias).await.as_deref(), Some(key.as_str()), "{alias}");
    }

    stack.kubectl_ok(&["delete", "namespace", NS, "--wait=false"]).await;
    let deleting = Instant::now();
    let namespaces: Api<Namespace> = Api::all(stack.client());
    wait_for(
        &format!("namespace {NS} to disappear (log: {})", stack.operator_log().display()),
        NAMESPACE_GONE_LIMIT,
        || async { namespaces.get_opt(NS).await.ok()?.is_none().then_some(()) },
    )
    .await;
    let took = deleting.elapsed();
    println!("namespace {NS} with {OBJECTS} KmsAlias objects disappeared in {took:.1?}");
    assert!(took < NAMESPACE_GONE_LIMIT, "namespace deletion took {took:?}");

    let left: Vec<String> =
        stack.kms_aliases().await.into_iter().filter(|a| a.starts_with("alias/team-z-")).collect();
    assert!(left.is_empty(), "aliases left in KMS after the namespace went: {left:?}");
    for (_, alias) in &names {
        assert_eq!(stack.kms_target(alias).await, None, "{alias} still resolves in KMS");
        let deletes = stack.calls_for("DeleteAlias", alias).await;
        let ok = deletes.iter().filter(|c| c.code == "OK").count();
        assert_eq!(ok, 1, "successful DeleteAlias calls for {alias}: {deletes:?}");
        assert_eq!(deletes.len(), 1, "DeleteAlias attempts for {alias}: {deletes:?}");
    }

    // Not failures, but worth knowing: what the operator could not write while the
    // namespace was terminating (events are refused in a terminating namespace).
    for needle in ["failed to publish event", "failed to write failure status", "reconcile failed"]
    {
        let lines = stack.operator_log_lines(needle);
        println!("operator log lines with {needle:?}: {}", lines.len());
        if let Some(first) = lines.first() {
            println!("  first: {first}");
        }
    }
}
