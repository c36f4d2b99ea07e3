//! Accounts and regions through `KmsProviderConfig`, and budgets under throttling.

use crate::env::{
    ACCOUNT_B, ACCOUNT_B_KEY_ID, ACCOUNT_B_SECRET, ACCOUNT_EMPTY_KEY_ID, ACCOUNT_EMPTY_SECRET,
    REGION, Scene, calls_at, spawn_emulator, wait_for,
};
use kms_alias_operator::kms::{self, ClientConfig, Credentials, ErrorKind};
use std::time::Duration;

fn client(url: &str, id: &str, secret: &str) -> kms::Client {
    let config = ClientConfig {
        region: REGION.into(),
        endpoint: Some(url.into()),
        timeout: Duration::from_secs(10),
        allow_http: true,
    };
    kms::Client::new(&config, Credentials::new(id, secret)).expect("kms client")
}

async fn target(client: &kms::Client, alias: &str) -> Option<String> {
    match client.describe_key(alias).await {
        Ok(meta) => Some(meta.key_id),
        Err(e) if e.kind() == ErrorKind::AliasNotFound => None,
        Err(e) => panic!("DescribeKey {alias}: {e}"),
    }
}

#[tokio::test]
async fn two_provider_configs_put_aliases_in_the_right_account() {
    let scene = Scene::new("accounts").await;
    let url = scene.kms_url();
    let account_b = client(&url, ACCOUNT_B_KEY_ID, ACCOUNT_B_SECRET);
    let key_a = scene.create_key().await;
    let key_b = account_b.create_key("e2e account b").await.expect("CreateKey in B").key_id;

    scene.secret("account-b", ACCOUNT_B_KEY_ID, ACCOUNT_B_SECRET).await;
    let (config_a, config_b) = (format!("{}-a", scene.ns), format!("{}-b", scene.ns));
    scene.provider_config(&config_a, &url, None).await;
    scene.provider_config(&config_b, &url, Some("account-b")).await;

    // The same alias name in both accounts: each lands in its own.
    let alias = scene.alias_name("shared-name");
    scene.apply_with_provider("in-a", &alias, &key_a, &config_a).await;
    scene.apply_with_provider("in-b", &alias, &key_b, &config_b).await;
    let missing = format!("{}-missing", scene.ns);
    scene.apply_with_provider("lost", &scene.alias_name("lost"), &key_a, &missing).await;

    scene.wait_ready("in-a").await;
    let in_b = scene.wait_ready("in-b").await;
    let arn = in_b.status.and_then(|s| s.alias_arn).unwrap_or_default();
    assert!(arn.contains(&format!(":{ACCOUNT_B}:alias/")), "ARN of account B: {arn}");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(key_a.as_str()), "account A");
    assert_eq!(target(&account_b, &alias).await.as_deref(), Some(key_b.as_str()), "account B");
    let obj = wait_for("missing config reported", Duration::from_secs(30), || async {
        let obj = scene.get("lost").await?;
        (obj.ready_condition()?.reason == "ProviderConfigInvalid").then_some(obj)
    })
    .await;
    assert!(obj.ready_condition().expect("Ready").message.contains(&missing));

    scene.kubectl(&["delete", "kmsalias", "in-b", "--wait=false"]).await;
    scene.wait_gone("in-b").await;
    assert_eq!(target(&account_b, &alias).await, None, "deleted in account B");
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(key_a.as_str()), "A untouched");
}

#[tokio::test]
async fn fifty_aliases_become_ready_under_a_two_qps_quota() {
    let scene = Scene::new("throttle").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (id, secret) = ("e2e-throttled", "e2e-throttled-secret");
    let (_emulator, url) = spawn_emulator(
        dir.path(),
        "throttle",
        &[&format!("--access-key={id}:{secret}"), "--qps-read=2", "--qps-write=2"],
    )
    .await;
    let oob = client(&url, id, secret);
    let key = oob.create_key("e2e throttling").await.expect("CreateKey").key_id;
    scene.secret("throttled", id, secret).await;
    let config = format!("{}-slow", scene.ns);
    scene.provider_config(&config, &url, Some("throttled")).await;

    let manifests: Vec<String> = (0..50)
        .map(|i| {
            let alias = scene.alias_name(&format!("t{i:02}"));
            scene.manifest_with_provider(&format!("t{i:02}"), &alias, &key, &config)
        })
        .collect();
    let output = scene.kubectl_apply(&manifests.join("\n---\n")).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let started = std::time::Instant::now();
    wait_for("50 aliases Ready", Duration::from_secs(240), || async {
        let list = scene.list().await;
        let ready = list.iter().filter(|o| o.ready_condition().is_some_and(|c| c.status == "True"));
        (ready.count() == 50).then_some(())
    })
    .await;
    let calls = crate::env::calls_at(&url).await;
    let throttled_writes = calls
        .iter()
        .filter(|c| c.code == "Rejected.Throttling")
        .filter(|c| matches!(c.action.as_str(), "CreateAlias" | "UpdateAlias" | "DeleteAlias"))
        .count();
    let throttled = calls.iter().filter(|c| c.code == "Rejected.Throttling").count();
    let creates = calls.iter().filter(|c| c.action == "CreateAlias" && c.code == "OK").count();
    println!(
        "50 aliases Ready in {:.1}s; {} calls, {throttled} throttled ({throttled_writes} writes)",
        started.elapsed().as_secs_f64(),
        calls.len()
    );
    assert_eq!(creates, 50, "every alias created exactly once");
    assert!(throttled_writes <= 15, "{throttled_writes} throttled writes: budgets do not adapt");
}

#[tokio::test]
async fn create_alias_with_lost_answer_is_settled_by_a_read() {
    let scene = Scene::new("lost-answer").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (id, secret) = ("e2e-hang", "e2e-hang-secret");
    // The first CreateAlias is applied, then its answer is held past the operator's timeout.
    let fault = r#"{"action":"CreateAlias","hangAfterCommit":true,"hangMs":30000,"times":1}"#;
    let (_emulator, url) = spawn_emulator(
        dir.path(),
        "hang",
        &[&format!("--access-key={id}:{secret}"), &format!("--fault={fault}")],
    )
    .await;
    let key = client(&url, id, secret).create_key("e2e").await.expect("CreateKey").key_id;
    scene.secret("hang", id, secret).await;
    let config = format!("{}-hang", scene.ns);
    scene.provider_config(&config, &url, Some("hang")).await;

    let alias = scene.alias_name("app");
    scene.apply_with_provider("app", &alias, &key, &config).await;
    let obj = wait_for("Ready after a lost answer", Duration::from_secs(60), || async {
        let obj = scene.get("app").await?;
        (obj.ready_condition()?.status == "True").then_some(obj)
    })
    .await;
    assert_eq!(obj.status.and_then(|s| s.alias_name).as_deref(), Some(alias.as_str()));
    let calls = crate::env::calls_at(&url).await;
    let creates: Vec<_> = calls.iter().filter(|c| c.action == "CreateAlias").collect();
    assert_eq!(creates.len(), 1, "the lost CreateAlias is never repeated: {creates:?}");
    assert!(!calls.iter().any(|c| c.action == "UpdateAlias"), "no UpdateAlias either");
    // Settled inside the one reconcile: the object never showed a failure.
    let warnings = scene
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=app,type=Warning",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(warnings.trim(), "", "no Warning event: the lost answer was settled by a read");
}

/// Rule 4 across configs: the built-in default and a config using the operator's own identity
/// reach one account, so objects naming one alias through them still get one owner, also when
/// applied together; deleting the other object leaves the alias alone.
#[tokio::test]
async fn two_configs_of_one_account_give_an_alias_one_owner() {
    let scene = Scene::new("one-account").await;
    let key = scene.create_key().await;
    let (same, same2) = (format!("{}-same", scene.ns), format!("{}-same2", scene.ns));
    scene.provider_config(&same, &scene.kms_url(), None).await;
    scene.provider_config(&same2, &scene.kms_url(), None).await;
    let alias = scene.alias_name("shared");
    let all = [
        scene.manifest("sh-x", &alias, &key),
        scene.manifest_with_provider("sh-y", &alias, &key, &same),
        scene.manifest_with_provider("sh-z", &alias, &key, &same2),
    ]
    .join("\n---\n");
    assert!(scene.kubectl_apply(&all).await.status.success());

    let names = ["sh-x", "sh-y", "sh-z"];
    let winner = wait_for("one owner of three", Duration::from_secs(30), || async {
        let mut ready = Vec::new();
        for name in names {
            let obj = scene.get(name).await?;
            let owns = obj.status.as_ref()?.alias_name.is_some();
            match obj.ready_condition()?.reason.as_str() {
                "AliasReady" => ready.push(name),
                "AliasClaimedByOtherResource" if !owns => {}
                _ => return None,
            }
        }
        (ready.len() == 1).then(|| ready[0])
    })
    .await;
    for loser in names.iter().filter(|n| **n != winner) {
        scene.kubectl(&["delete", "kmsalias", loser, "--wait=false"]).await;
        scene.wait_gone(loser).await;
    }
    assert_eq!(scene.kms_target(&alias).await.as_deref(), Some(key.as_str()), "alias kept");
    assert_eq!(scene.count_calls("DeleteAlias", &alias).await, 0);
    let obj = scene.wait_ready(winner).await;
    assert_eq!(obj.status.and_then(|s| s.alias_name).as_deref(), Some(alias.as_str()));
}

/// Ownership is of an alias in one account and region. When the provider behind objects starts
/// reaching another account (here their config is pointed at another account's Secret), the
/// aliases of the same names there are not theirs: no write and no delete there, and deletion
/// waits, with the reason in status, until the provider is pointed back; then it completes
/// where the aliases really are.
#[tokio::test]
async fn a_provider_moved_to_another_account_touches_nothing_there() {
    let scene = Scene::new("moved").await;
    let url = scene.kms_url();
    let account_b = client(&url, ACCOUNT_B_KEY_ID, ACCOUNT_B_SECRET);
    let key_a = scene.create_key().await;
    let key_b = account_b.create_key("another team").await.expect("CreateKey in B").key_id;
    scene.secret("account-b", ACCOUNT_B_KEY_ID, ACCOUNT_B_SECRET).await;
    let config = format!("{}-moving", scene.ns);
    scene.provider_config(&config, &url, None).await;

    // `taken` names an alias another team holds in B; `only-a` one that exists only in A.
    let (taken, only_a) = (scene.alias_name("taken"), scene.alias_name("only-a"));
    scene.apply_with_provider("taken", &taken, &key_a, &config).await;
    scene.apply_with_provider("only-a", &only_a, &key_a, &config).await;
    scene.wait_ready("taken").await;
    scene.wait_ready("only-a").await;
    account_b.create_alias(&taken, &key_b).await.expect("CreateAlias in B");

    let switched = calls_at(&url).await.last().map_or(0, |c| c.seq);
    scene.provider_config(&config, &url, Some("account-b")).await;
    let message = scene.wait_reason("taken", "ProviderChanged").await;
    assert!(message.contains(ACCOUNT_B), "{message}");

    // Deleting both waits: neither alias of A can be reached, and B's is not theirs.
    for name in ["taken", "only-a"] {
        scene.kubectl(&["delete", "kmsalias", name, "--wait=false"]).await;
        scene.wait_reason(name, "ProviderChanged").await;
    }
    let b_writes = calls_at(&url).await.into_iter().filter(|c| {
        c.seq > switched
            && c.access_key_id == ACCOUNT_B_KEY_ID
            && ["CreateAlias", "UpdateAlias", "DeleteAlias"].contains(&c.action.as_str())
            && (c.names(&taken) || c.names(&only_a))
    });
    assert_eq!(b_writes.count(), 0, "the operator wrote in account B");
    assert_eq!(target(&account_b, &taken).await.as_deref(), Some(key_b.as_str()), "B's alias");
    for alias in [&taken, &only_a] {
        assert_eq!(scene.kms_target(alias).await.as_deref(), Some(key_a.as_str()), "{alias}");
    }

    // Pointed back at A: both deletions complete there, and B's alias stays.
    scene.provider_config(&config, &url, None).await;
    for (name, alias) in [("taken", &taken), ("only-a", &only_a)] {
        scene.wait_gone(name).await;
        assert_eq!(scene.kms_target(alias).await, None, "{alias} deleted in A");
    }
    assert_eq!(target(&account_b, &taken).await.as_deref(), Some(key_b.as_str()), "B's alias");
}

/// The same when the provider moves to a place where the alias is simply absent: another
/// region, or an account with no keys at all. "Not found" there must not count as deleted:
/// the object waits with `ProviderChanged`, its alias stays, and pointing back completes it.
#[tokio::test]
async fn a_provider_moved_where_the_alias_is_absent_keeps_the_finalizer() {
    let scene = Scene::new("moved-away").await;
    let url = scene.kms_url();
    let key = scene.create_key().await;
    scene.secret("empty", ACCOUNT_EMPTY_KEY_ID, ACCOUNT_EMPTY_SECRET).await;
    let (regional, keyless) = (format!("{}-regional", scene.ns), format!("{}-keyless", scene.ns));
    scene.provider_config(&regional, &url, None).await;
    scene.provider_config(&keyless, &url, None).await;
    let (in_region, in_account) = (scene.alias_name("region"), scene.alias_name("account"));
    scene.apply_with_provider("region", &in_region, &key, &regional).await;
    scene.apply_with_provider("account", &in_account, &key, &keyless).await;
    scene.wait_ready("region").await;
    scene.wait_ready("account").await;

    // One config moves to another region, the other to an account that holds no key.
    let to_beijing = r#"{"spec":{"region":"cn-beijing"}}"#;
    scene
        .kubectl(&["patch", "kmsproviderconfig", &regional, "--type=merge", "-p", to_beijing])
        .await;
    scene.provider_config(&keyless, &url, Some("empty")).await;
    let expected = [("region", "region cn-beijing"), ("account", "an account with no keys")];
    for (name, reached) in expected {
        let message = scene.wait_reason(name, "ProviderChanged").await;
        assert!(message.contains(reached), "{name}: {message}");
        scene.kubectl(&["delete", "kmsalias", name, "--wait=false"]).await;
    }
    for (name, alias) in [("region", &in_region), ("account", &in_account)] {
        scene.wait_reason(name, "ProviderChanged").await;
        let obj = scene.get(name).await.expect("still there: the finalizer waits");
        assert!(obj.metadata.deletion_timestamp.is_some(), "{name} is being deleted");
        assert_eq!(scene.kms_target(alias).await.as_deref(), Some(key.as_str()), "{alias}");
    }

    // Pointed back, both deletions complete where the aliases are.
    let to_hangzhou = format!(r#"{{"spec":{{"region":"{REGION}"}}}}"#);
    scene
        .kubectl(&["patch", "kmsproviderconfig", &regional, "--type=merge", "-p", &to_hangzhou])
        .await;
    scene.provider_config(&keyless, &url, None).await;
    for (name, alias) in [("region", &in_region), ("account", &in_account)] {
        scene.wait_gone(name).await;
        assert_eq!(scene.kms_target(alias).await, None, "{alias} deleted");
    }
}

/// A config its objects still use cannot go first (a prune or an uninstall in the wrong
/// order): it stays, and stays usable, with a Warning naming its users, until they are gone.
#[tokio::test]
async fn a_config_in_use_outlives_its_objects() {
    let scene = Scene::new("in-use").await;
    let key = scene.create_key().await;
    let config = format!("{}-used", scene.ns);
    scene.provider_config(&config, &scene.kms_url(), None).await;
    let alias = scene.alias_name("app");
    scene.apply_with_provider("app", &alias, &key, &config).await;
    scene.apply_with_provider("app2", &scene.alias_name("app2"), &key, &config).await;
    scene.wait_ready("app").await;
    scene.wait_ready("app2").await;

    scene.kubectl(&["delete", "kmsproviderconfig", &config, "--wait=false"]).await;
    let selector = format!("involvedObject.name={config},reason=InUse");
    let in_use = |needle: String| {
        let selector = selector.clone();
        let scene = &scene;
        async move {
            let args = ["get", "events", "-n", "default", "--field-selector", &selector];
            let jsonpath = r#"jsonpath={range .items[*]}{.message}{"\n"}{end}"#;
            let out = scene.kubectl(&[&args[..], &["-o", jsonpath]].concat()).await;
            out.lines().find(|l| l.contains(&needle)).map(str::to_owned)
        }
    };
    let note = wait_for("InUse event on the config", Duration::from_secs(30), || {
        in_use("used by 2".to_owned())
    })
    .await;
    for user in ["app", "app2"] {
        assert!(note.contains(&format!("{}/{user}", scene.ns)), "names {user}: {note}");
    }
    // One user goes: a new event says who is left.
    scene.kubectl(&["delete", "kmsalias", "app2", "--wait=false"]).await;
    let note = wait_for("InUse event after one user went", Duration::from_secs(30), || {
        in_use("used by 1".to_owned())
    })
    .await;
    assert!(!note.contains("app2"), "app2 is gone: {note}");
    let finalizers = scene
        .kubectl(&["get", "kmsproviderconfig", &config, "-o", "jsonpath={.metadata.finalizers}"])
        .await;
    assert!(finalizers.contains("kms.aliasoperator.dev/in-use"), "{finalizers}");

    // Its object can still clean up through it; then the config goes at once.
    scene.kubectl(&["delete", "kmsalias", "app", "--wait=false"]).await;
    scene.wait_gone("app").await;
    assert_eq!(scene.kms_target(&alias).await, None, "alias deleted through the config");
    wait_for("the config is gone", Duration::from_secs(10), || async {
        let out = scene.kubectl_output(&["get", "kmsproviderconfig", &config]).await;
        (!out.status.success()).then_some(())
    })
    .await;
}
