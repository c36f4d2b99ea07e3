//! Case 13: the operator's finalizer shares `metadata.finalizers` with other controllers. It
//! adds its own entry exactly once, never loses anyone else's, removes only its own, and
//! leaves an object that is already terminating alone.

use crate::stack::{Stack, manifest, wait_for};
use futures::StreamExt;
use kms_alias_operator::crd::{FINALIZER, KmsAlias};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "default";
const OTHER: &str = "example.com/other";
const OTHER2: &str = "example.com/other2";
/// How long the other controller keeps editing the finalizer list.
const RACE: Duration = Duration::from_secs(15);

/// One version of an object, as a watch saw it.
#[derive(Clone, Debug)]
struct Version {
    name: String,
    resource_version: String,
    deleting: bool,
    finalizers: Vec<String>,
}

/// Every version of the objects in `NS` a watch saw. A watch started before the objects
/// exist sees each write, in order.
#[derive(Clone, Default)]
struct History(Arc<Mutex<Vec<Version>>>);

impl History {
    /// Starts recording; returns once the watch is established.
    async fn record(api: Api<KmsAlias>) -> History {
        let history = History::default();
        let log = history.clone();
        let (ready, established) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let obj = match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => obj,
                    Ok(watcher::Event::Delete(_) | watcher::Event::Init) => continue,
                    Err(error) => panic!("watch for the finalizer history failed: {error}"),
                };
                let entry = Version {
                    name: obj.name_any(),
                    resource_version: obj.resource_version().unwrap_or_default(),
                    deleting: obj.metadata.deletion_timestamp.is_some(),
                    finalizers: obj.finalizers().to_vec(),
                };
                log.0.lock().expect("history lock").push(entry);
            }
        });
        established.await.expect("watch established");
        history
    }

    /// The versions of `name` seen so far, oldest first.
    fn of(&self, name: &str) -> Vec<Version> {
        let all = self.0.lock().expect("history lock");
        all.iter().filter(|v| v.name == name).cloned().collect()
    }
}

fn count(list: &[String], entry: &str) -> usize {
    list.iter().filter(|f| *f == entry).count()
}

#[tokio::test]
async fn finalizer_shared_with_other_controllers() {
    let stack = Stack::start("finalizer-race", false).await;
    let key = stack.create_key().await;
    let alias = "alias/finalizer-race-app";
    let api = stack.api(NS);
    let history = History::record(api.clone()).await;

    // Another controller edits the list while the operator adds its entry: three workers add
    // or remove OTHER2 by JSON patch for ~15 s, starting as soon as the object exists. Every
    // patch tests the list (or the entry's index) first, so it never removes or duplicates
    // anyone's entry; a patch refused because the list moved is simply counted.
    let deadline = Instant::now() + RACE;
    let worker = |_| async {
        let (mut applied, mut refused) = (0usize, 0usize);
        while Instant::now() < deadline && applied + refused < 300 {
            let Some(obj) = api.get_opt("app").await.expect("get app") else {
                // Polling for the object to appear; the apply runs alongside.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let finalizers = obj.finalizers();
            let patch = match finalizers.iter().position(|f| f == OTHER2) {
                Some(i) => serde_json::json!([
                    {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": OTHER2},
                    {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
                ]),
                None => serde_json::json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": OTHER2},
                ]),
            };
            let patch = patch.to_string();
            let args = ["-n", NS, "patch", "kmsalias", "app", "--type=json", "-p", &patch];
            if stack.kubectl(&args).await.status.success() {
                applied += 1;
            } else {
                refused += 1;
            }
        }
        (applied, refused)
    };
    let manifest = manifest(NS, "app", alias, &key, &[OTHER]).to_string();
    let race = Instant::now();
    let ((), results) =
        tokio::join!(stack.apply(&manifest), futures::future::join_all((0..3).map(worker)));
    let patches: usize = results.iter().map(|r| r.0).sum();
    let refused: usize = results.iter().map(|r| r.1).sum();
    println!("race: {patches} patches applied, {refused} refused, in {:.1?}", race.elapsed());
    assert!(patches >= 10, "too few patches for a race: {patches} ({refused} refused)");
    let conflicts = stack.operator_log_lines("reconcile failed");
    println!("operator reconciles that failed during the race: {}", conflicts.len());
    if let Some(first) = conflicts.first() {
        println!("  first: {first}");
    }

    // Once the other controller stops, the operator settles: its entry is there, once.
    let (obj, ready_in) = stack.wait_ready(NS, "app", Duration::from_secs(60)).await;
    println!("Ready {ready_in:.1?} after the race ended");
    assert_eq!(count(obj.finalizers(), FINALIZER), 1, "{:?}", obj.finalizers());
    assert_eq!(stack.kms_target(alias).await.as_deref(), Some(key.as_str()));

    stack.kubectl_ok(&["-n", NS, "delete", "kmsalias", "app", "--wait=false"]).await;
    let obj = wait_for("the operator to remove its finalizer", Duration::from_secs(30), || async {
        let obj = api.get_opt("app").await.ok()??;
        (!obj.finalizers().iter().any(|f| f == FINALIZER)).then_some(obj)
    })
    .await;
    assert!(obj.metadata.deletion_timestamp.is_some());
    let others: Vec<String> =
        obj.finalizers().iter().filter(|f| *f == OTHER || *f == OTHER2).cloned().collect();
    assert_eq!(obj.finalizers(), others.as_slice(), "only foreign finalizers remain");
    assert_eq!(count(obj.finalizers(), OTHER), 1, "{:?}", obj.finalizers());
    assert_eq!(stack.kms_target(alias).await, None, "alias deleted in KMS");
    let deletes = stack.calls_for("DeleteAlias", alias).await;
    assert_eq!(deletes.len(), 1, "DeleteAlias calls: {deletes:?}");
    assert_eq!(deletes[0].code, "OK");

    // Observation window: while the foreign finalizers hold the object, the operator must
    // neither call KMS for it nor keep writing it.
    let calls_before = stack.count_calls_naming(alias).await;
    let version_before = obj.resource_version();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held = api.get_opt("app").await.expect("get app").expect("object held by finalizers");
    assert_eq!(stack.count_calls_naming(alias).await, calls_before, "KMS calls while held");
    assert_eq!(held.resource_version(), version_before, "object written while held");

    let remove = serde_json::json!({"metadata": {"finalizers": null}}).to_string();
    stack.kubectl_ok(&["-n", NS, "patch", "kmsalias", "app", "--type=merge", "-p", &remove]).await;
    stack.wait_gone(NS, "app", Duration::from_secs(30)).await;

    let versions = history.of("app");
    let distinct: std::collections::BTreeSet<_> =
        versions.iter().map(|v| v.resource_version.as_str()).collect();
    println!("watch saw {} versions of app", distinct.len());
    // Each applied patch made a version of its own; the operator's writes come on top.
    assert!(distinct.len() >= patches, "the watch missed versions: {}", distinct.len());
    for v in &versions {
        assert_eq!(count(&v.finalizers, OTHER), 1, "{v:?}");
        assert!(count(&v.finalizers, FINALIZER) <= 1, "{v:?}");
        assert!(count(&v.finalizers, OTHER2) <= 1, "{v:?}");
    }
    let added_at = versions.iter().position(|v| count(&v.finalizers, FINALIZER) == 1);
    let added_at = added_at.expect("the operator's finalizer never appeared");
    let foreign_before =
        versions[..added_at].iter().filter(|v| count(&v.finalizers, OTHER2) == 1).count();
    println!(
        "the operator's finalizer arrived in version {} of {}; {foreign_before} earlier versions \
         carried {OTHER2}",
        added_at + 1,
        versions.len()
    );
    // Once removed on deletion, the operator's entry never came back.
    let removed_at =
        versions.iter().position(|v| v.deleting && count(&v.finalizers, FINALIZER) == 0);
    let removed_at = removed_at.expect("a terminating version without the operator's entry");
    assert!(versions[removed_at..].iter().all(|v| count(&v.finalizers, FINALIZER) == 0));
}

#[tokio::test]
async fn object_deleted_before_the_operator_added_its_finalizer() {
    let stack = Stack::start("finalizer-early-delete", false).await;
    let key = stack.create_key().await;
    let api = stack.api(NS);
    let history = History::record(api.clone()).await;

    // The API server's first write of a KmsAlias is slow (admission warms up); a dry run
    // pays that cost, so the create + delete pairs below are quick.
    let warm_up: KmsAlias =
        serde_json::from_value(manifest(NS, "warm-up", "alias/warm-up", &key, &[])).expect("obj");
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    api.create(&dry_run, &warm_up).await.expect("dry-run create");

    // Create and delete at once, five times each way. Without a foreign finalizer the object
    // goes at once; with one (`held`) it stays terminating, and the operator must leave it
    // alone: no finalizer added to a terminating object, no KMS call.
    let mut cases = Vec::new();
    for i in 0..5 {
        for held in [false, true] {
            let name = format!("{}{i}", if held { "held" } else { "quick" });
            let alias = format!("alias/early-delete-{name}");
            let finalizers: &[&str] = if held { &[OTHER] } else { &[] };
            let obj: KmsAlias =
                serde_json::from_value(manifest(NS, &name, &alias, &key, finalizers))
                    .expect("object");
            let started = Instant::now();
            api.create(&PostParams::default(), &obj).await.expect("create");
            api.delete(&name, &DeleteParams::default()).await.expect("delete");
            println!("{name}: created and deleted within {:.1?}", started.elapsed());
            cases.push((name, alias, held));
        }
    }
    for (name, _, held) in &cases {
        if !held {
            stack.wait_gone(NS, name, Duration::from_secs(30)).await;
        }
    }

    // Observation window: give the operator time to (wrongly) act on what it saw.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut before_operator = 0;
    for (name, alias, held) in &cases {
        let versions = history.of(name);
        // Whether the operator won the race and added its entry before the delete; the
        // timing is not ours to control, so each object is judged by what really happened.
        let first_ours = versions.iter().find(|v| count(&v.finalizers, FINALIZER) > 0);
        if let Some(first) = first_ours {
            assert!(!first.deleting, "{name}: finalizer added to a terminating object: {first:?}");
            println!("{name}: the operator added its finalizer before the delete arrived");
            // Then it owns whatever it created and must have cleaned it up.
            let ours_gone = wait_for("the operator's entry to go", Duration::from_secs(30), || {
                let api = api.clone();
                async move {
                    let obj = api.get_opt(name).await.ok()?;
                    obj.is_none_or(|o| count(o.finalizers(), FINALIZER) == 0).then_some(())
                }
            });
            ours_gone.await;
            assert_eq!(stack.kms_target(alias).await, None, "{name}: {alias} left in KMS");
            continue;
        }
        before_operator += 1;
        assert_eq!(stack.count_calls_naming(alias).await, 0, "{name}: KMS calls for {alias}");
        assert_eq!(stack.kms_target(alias).await, None, "{name}: {alias} exists in KMS");
        if *held {
            let obj = api.get_opt(name).await.expect("get").expect("held object exists");
            assert!(obj.metadata.deletion_timestamp.is_some(), "{name} is terminating");
            assert_eq!(obj.finalizers(), [OTHER.to_owned()], "{name}");
        }
    }
    println!(
        "{before_operator} of {} objects were deleted before the operator's finalizer",
        cases.len()
    );
    assert!(before_operator > 0, "the operator won every race: the variant was not exercised");

    let remove = serde_json::json!({"metadata": {"finalizers": null}}).to_string();
    for (name, _, held) in &cases {
        if *held {
            let args = ["-n", NS, "patch", "kmsalias", name, "--type=merge", "-p", &remove];
            stack.kubectl_ok(&args).await;
            stack.wait_gone(NS, name, Duration::from_secs(30)).await;
        }
    }
    for (name, alias, _) in &cases {
        let creates = stack.calls_for("CreateAlias", alias).await;
        let ours = history.of(name).iter().any(|v| count(&v.finalizers, FINALIZER) > 0);
        assert!(ours || creates.is_empty(), "{name}: CreateAlias without a finalizer: {creates:?}");
    }
}

/// Case 13 in namespace teardown: another controller removes its finalizer (ahead of the
/// operator's in the list) while the operator's DeleteAlias is in flight. The operator's
/// finalizer patch, which tests the entry at its old index, is then refused (422) and the
/// cleanup runs again; it must not send DeleteAlias a second time after a confirmed delete.
#[tokio::test]
async fn cleanup_is_not_repeated_when_the_finalizer_list_moves() {
    let stack = Stack::start("finalizer-list-moves", false).await;
    let key = stack.create_key().await;
    let alias = "alias/finalizer-list-moves";
    stack.apply(&manifest(NS, "app", alias, &key, &[OTHER]).to_string()).await;
    let (obj, _) = stack.wait_ready(NS, "app", Duration::from_secs(30)).await;
    assert_eq!(obj.finalizers(), [OTHER.to_owned(), FINALIZER.to_owned()]);

    // Hold the operator's DeleteAlias for 3 s; the emulator disarms the fault as the call
    // arrives, so an empty fault list means the call is in flight.
    stack
        .arm_fault(serde_json::json!({"action": "DeleteAlias", "latencyMs": 3000, "times": 1}))
        .await;
    stack.kubectl_ok(&["-n", NS, "delete", "kmsalias", "app", "--wait=false"]).await;
    wait_for("the operator's DeleteAlias to arrive", Duration::from_secs(30), || async {
        stack.armed_faults().await.is_empty().then_some(())
    })
    .await;
    // Meanwhile the other controller finishes and removes its entry, at index 0.
    let remove_other = serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": OTHER},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ])
    .to_string();
    let args = ["-n", NS, "patch", "kmsalias", "app", "--type=json", "-p", &remove_other];
    stack.kubectl_ok(&args).await;

    stack.wait_gone(NS, "app", Duration::from_secs(30)).await;
    let refused = stack.operator_log_lines("failed to remove finalizer");
    println!("operator finalizer patches refused: {}", refused.len());
    if let Some(first) = refused.first() {
        println!("  first: {first}");
    }
    assert_eq!(stack.kms_target(alias).await, None, "alias deleted in KMS");
    let deletes = stack.calls_for("DeleteAlias", alias).await;
    let codes: Vec<&str> = deletes.iter().map(|c| c.code.as_str()).collect();
    println!("DeleteAlias calls for {alias}: {codes:?}");
    assert_eq!(codes, ["OK"], "DeleteAlias sent again after a confirmed delete");
}
