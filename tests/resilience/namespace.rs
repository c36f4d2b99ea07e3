//! Case 9: deleting a whole namespace, with kube-controller-manager's namespace controller
//! doing the deleting, cleans up every alias and lets the namespace go; and one whose
//! credentials Secret was inside leaks nothing.

use crate::stack::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, Stack, is_ready, manifest, wait_for};
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

/// Case 9, variant 3: the credentials Secret lives in the namespace being deleted. The README
/// tells users to keep such Secrets in the operator's namespace; when one is not, losing it
/// must not leak aliases. The objects stay, Terminating, with a reason naming the Secret, and
/// once the config points at credentials that work, the cleanup runs and the namespace goes.
#[tokio::test]
async fn namespace_deletion_without_its_credentials_leaks_nothing() {
    const NS: &str = "team-y";
    const CONFIG: &str = "tenant";
    const SECRET: &str = "tenant-ak";
    let stack = Stack::start("namespace-credentials", true).await;
    let key = stack.create_key().await;
    stack.kubectl_ok(&["create", "namespace", NS]).await;
    let id = format!("--from-literal=ALIBABA_CLOUD_ACCESS_KEY_ID={ACCESS_KEY_ID}");
    let secret = format!("--from-literal=ALIBABA_CLOUD_ACCESS_KEY_SECRET={ACCESS_KEY_SECRET}");
    stack.kubectl_ok(&["-n", NS, "create", "secret", "generic", SECRET, &id, &secret]).await;
    let config = |credentials: serde_json::Value| {
        serde_json::json!({
            "apiVersion": "kms.aliasoperator.dev/v1alpha1",
            "kind": "KmsProviderConfig",
            "metadata": {"name": CONFIG},
            "spec": {
                "region": REGION,
                "endpoint": {"network": "Custom", "url": stack.kms_url(), "allowInsecureHttp": true},
                "credentials": credentials,
            },
        })
        .to_string()
    };
    let in_namespace =
        serde_json::json!({"source": "Secret", "secretRef": {"namespace": NS, "name": SECRET}});
    stack.apply(&config(in_namespace)).await;

    let names: Vec<String> = (1..=3).map(|i| format!("b{i}")).collect();
    let alias = |name: &str| format!("alias/team-y-{name}");
    let items: Vec<_> = names
        .iter()
        .map(|name| {
            let mut obj = manifest(NS, name, &alias(name), &key, &[]);
            obj["spec"]["providerConfigRef"] = serde_json::json!({"name": CONFIG});
            obj
        })
        .collect();
    stack
        .apply(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string())
        .await;
    for name in &names {
        stack.wait_ready(NS, name, Duration::from_secs(60)).await;
    }

    // The Secret goes first, as the namespace controller may well do. Wait until the operator
    // has noticed (its cached client expires), asking for a reconcile on each poll.
    stack.kubectl_ok(&["-n", NS, "delete", "secret", SECRET]).await;
    let api = stack.api(NS);
    let mut nudge = 0;
    wait_for("the operator to notice the Secret is gone", Duration::from_secs(90), || {
        nudge += 1;
        let stamp = format!("kms.aliasoperator.dev/reconcile-requested-at=n{nudge}");
        let (stack, api) = (&stack, &api);
        async move {
            stack
                .kubectl_ok(&["-n", NS, "annotate", "--overwrite", "kmsalias", "b1", &stamp])
                .await;
            let obj = api.get_opt("b1").await.ok()??;
            (obj.ready_condition()?.reason == "ProviderConfigInvalid").then_some(())
        }
    })
    .await;

    stack.kubectl_ok(&["delete", "namespace", NS, "--wait=false"]).await;
    let stuck = wait_for(
        "every object to say why it cannot be deleted",
        Duration::from_secs(60),
        || async {
            let objects = api.list(&Default::default()).await.ok()?.items;
            let waiting = objects.iter().filter(|o| {
                o.metadata.deletion_timestamp.is_some()
                    && o.ready_condition().is_some_and(|c| {
                        c.reason == "ProviderConfigInvalid" && c.message.contains(SECRET)
                    })
            });
            (waiting.count() == names.len()).then_some(objects)
        },
    )
    .await;
    println!(
        "while its Secret is gone: {}",
        stuck[0].ready_condition().map(|c| c.message.as_str()).unwrap_or("")
    );
    for name in &names {
        assert_eq!(stack.kms_target(&alias(name)).await.as_deref(), Some(key.as_str()), "{name}");
        assert!(stack.calls_for("DeleteAlias", &alias(name)).await.is_empty());
    }
    let namespaces: Api<Namespace> = Api::all(stack.client());
    assert!(namespaces.get_opt(NS).await.expect("namespace").is_some(), "namespace still there");

    let fixed = Instant::now();
    stack.apply(&config(serde_json::json!({"source": "OperatorIdentity"}))).await;
    wait_for("the namespace to go once credentials work", NAMESPACE_GONE_LIMIT, || async {
        namespaces.get_opt(NS).await.ok()?.is_none().then_some(())
    })
    .await;
    println!("namespace gone {:.1?} after the config was fixed", fixed.elapsed());
    for name in &names {
        assert_eq!(stack.kms_target(&alias(name)).await, None, "{name} left in KMS");
    }
}
