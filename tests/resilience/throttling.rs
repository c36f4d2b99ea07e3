//! Case 10: a throttling storm. KMS answers every call with `Throttling` while 50 good objects
//! and 5 with a missing key are applied. Each object backs off on its own, the operator's call
//! rate stays under its budget, events are not repeated, and once the storm lifts every good
//! object is Ready within the retry cap. Then, at rest, resyncs are spread out in time.
//!
//! Scaled to CI: the storm lasts 2 minutes instead of 10, the retry cap is 30 s instead of 5
//! minutes (`--retry-cap-secs`), and the resync interval 20 s instead of 5 minutes
//! (`--resync-secs`), watched for three intervals instead of an hour.

use crate::stack::{Options, Stack, manifest, metric, wait_for};
use kms_alias_operator::crd::KmsAlias;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NS: &str = "default";
const HEALTHY: usize = 50;
const MISSING: usize = 5;
const STORM: Duration = Duration::from_secs(120);
const RETRY_CAP_SECS: u64 = 30;
const RESYNC_SECS: u64 = 20;
const QUIET_INTERVALS: u64 = 3;
/// The operator's default budget for one account and region: 50 reads and 30 writes a second.
const BUDGET_QPS: usize = 80;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

const RECONCILES_OK: &str = r#"kms_alias_operator_reconciles_total{result="ok"}"#;
const RECONCILES_THROTTLED: &str = r#"kms_alias_operator_reconciles_total{result="Throttled"}"#;

/// The most calls in any one second, and the mean rate, of calls made in `[from, to)` ms.
fn rate(times: &[u64], from: u64, to: u64) -> (usize, f64) {
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    let inside: Vec<u64> = times.iter().copied().filter(|t| (from..to).contains(t)).collect();
    for t in &inside {
        *per_second.entry(t / 1000).or_default() += 1;
    }
    let peak = per_second.values().copied().max().unwrap_or(0);
    (peak, inside.len() as f64 * 1000.0 / (to - from).max(1) as f64)
}

fn reason(obj: &KmsAlias) -> Option<&str> {
    obj.ready_condition().map(|c| c.reason.as_str())
}

#[tokio::test]
async fn throttling_storm_backs_off_per_object_and_recovers() {
    let args =
        [&format!("--retry-cap-secs={RETRY_CAP_SECS}"), &format!("--resync-secs={RESYNC_SECS}")];
    let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let stack =
        Stack::start_with("throttling", Options { operator_args: &args, ..Options::default() })
            .await;
    let http = stack.operator_http().await;
    let key = stack.create_key().await;
    let missing = "key-hzz0000000000000000kx";

    stack.arm_fault(serde_json::json!({"action": "*", "code": "Throttling"})).await;
    let storm_from = unix_ms();
    let storm = Instant::now();
    let throttled_before = metric(&http, RECONCILES_THROTTLED).await;
    let mut items: Vec<_> = (0..HEALTHY)
        .map(|i| manifest(NS, &format!("t{i}"), &format!("alias/t{i}"), &key, &[]))
        .collect();
    items.extend(
        (0..MISSING).map(|i| manifest(NS, &format!("x{i}"), &format!("alias/x{i}"), missing, &[])),
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    stack.apply(&list.to_string()).await;

    let api = stack.api(NS);
    wait_for("every object to report Throttled", Duration::from_secs(60), || async {
        let objects = api.list(&Default::default()).await.ok()?.items;
        let throttled = objects.iter().filter(|o| reason(o) == Some("Throttled")).count();
        (throttled == HEALTHY + MISSING).then_some(())
    })
    .await;
    println!("all {} objects Throttled {:.1?} into the storm", HEALTHY + MISSING, storm.elapsed());

    // An observation window: for the rest of the storm, no object may show anything but
    // Throttled, and none may be Stalled (a terminal failure).
    let mut samples = 0;
    while storm.elapsed() < STORM {
        let objects = api.list(&Default::default()).await.expect("list").items;
        for obj in &objects {
            assert_eq!(reason(obj), Some("Throttled"), "{:?}", obj.metadata.name);
            let stalled = obj.condition("Stalled").is_some_and(|c| c.status == "True");
            assert!(!stalled, "{:?} Stalled during a throttling storm", obj.metadata.name);
        }
        samples += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let storm_to = unix_ms();
    let attempts = metric(&http, RECONCILES_THROTTLED).await - throttled_before;
    let calls: Vec<u64> = stack.operator_calls().await.iter().map(|c| c.time_ms).collect();
    let (peak, mean) = rate(&calls, storm_from, storm_to);
    let half = storm_from + (storm_to - storm_from) / 2;
    let (late_peak, late_mean) = rate(&calls, half, storm_to);
    let per_object = attempts / (HEALTHY + MISSING) as f64;
    println!(
        "storm of {STORM:?} ({samples} status samples): {attempts} throttled reconciles \
         ({per_object:.1} per object); KMS calls peak {peak}/s, mean {mean:.2}/s; second half \
         peak {late_peak}/s, mean {late_mean:.2}/s"
    );
    assert!(peak <= BUDGET_QPS, "{peak} calls in one second: over the budget");
    // Without per-object backoff, 55 objects retried every second would be 55/s for 2 min.
    assert!(late_mean < 2.0, "{late_mean:.2} calls/s late in the storm: the budget did not adapt");
    // Backoff doubling from 2 s to a 30 s cap allows about 8 attempts in 2 minutes; paced
    // retries (the budget holding a call back) come on top but stay within a few more.
    assert!(per_object <= 20.0, "{per_object:.1} reconciles per object: no backoff");

    // Events: one per object for the failure, not one per retry.
    let events = stack.kubectl_ok(&["-n", NS, "get", "events", "-o", "json"]).await;
    let events: serde_json::Value = serde_json::from_str(&events).expect("events JSON");
    let mut per_object: BTreeMap<String, usize> = BTreeMap::new();
    for event in events["items"].as_array().expect("items") {
        if event["reason"] == "Throttled" {
            let name = event["involvedObject"]["name"].as_str().unwrap_or_default().to_owned();
            let count = event["count"].as_u64().unwrap_or(1) as usize;
            *per_object.entry(name).or_default() += count;
        }
    }
    assert!(!per_object.is_empty(), "no Throttled event at all: the check would prove nothing");
    let repeated: Vec<_> = per_object.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "Throttled events repeated: {repeated:?}");

    stack.disarm_faults().await;
    let lifted = Instant::now();
    let cap = Duration::from_secs(RETRY_CAP_SECS).mul_f64(1.25);
    wait_for(
        "the good objects to be Ready after the storm",
        cap + Duration::from_secs(30),
        || async {
            let objects = api.list(&Default::default()).await.ok()?.items;
            let ready = objects.iter().filter(|o| reason(o) == Some("AliasReady")).count();
            (ready == HEALTHY).then_some(())
        },
    )
    .await;
    let recovered = lifted.elapsed();
    println!("all {HEALTHY} good objects Ready {recovered:.1?} after the storm lifted");
    wait_for(
        "the missing-key objects to say KeyNotFound",
        cap + Duration::from_secs(30),
        || async {
            let objects = api.list(&Default::default()).await.ok()?.items;
            let missing = objects.iter().filter(|o| reason(o) == Some("KeyNotFound")).count();
            (missing == MISSING).then_some(())
        },
    )
    .await;
    for i in 0..HEALTHY {
        let alias = format!("alias/t{i}");
        assert_eq!(stack.kms_target(&alias).await.as_deref(), Some(key.as_str()), "{alias}");
        let creates = stack.calls_for("CreateAlias", &alias).await;
        assert!(creates.iter().filter(|c| c.code == "OK").count() == 1, "{alias}: {creates:?}");
    }

    // At rest: about one reconcile per object per resync interval, spread out in time. An
    // observation window of three intervals, sampled every second.
    let quiet = Duration::from_secs(RESYNC_SECS * QUIET_INTERVALS);
    let quiet_from = unix_ms();
    let started = Instant::now();
    let mut last = metric(&http, RECONCILES_OK).await;
    let (first, mut peak_second) = (last, 0.0f64);
    while started.elapsed() < quiet {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = metric(&http, RECONCILES_OK).await;
        peak_second = peak_second.max(now - last);
        last = now;
    }
    let resyncs = last - first;
    let reads: Vec<u64> = stack
        .operator_calls()
        .await
        .iter()
        .filter(|c| c.time_ms >= quiet_from)
        .map(|c| c.time_ms)
        .collect();
    let expected = (HEALTHY as u64 * QUIET_INTERVALS) as f64;
    println!(
        "at rest for {quiet:?}: {resyncs} resyncs of good objects (about {expected} expected), \
         at most {peak_second} in one second; {} KMS calls",
        reads.len()
    );
    assert!(
        (expected * 0.6..=expected * 1.5).contains(&resyncs),
        "{resyncs} resyncs in {quiet:?}, expected about {expected}"
    );
    assert!(peak_second <= (HEALTHY / 2) as f64, "{peak_second} resyncs in one second: a burst");
    let ceiling = (HEALTHY + MISSING) * QUIET_INTERVALS as usize;
    assert!(
        reads.len() <= ceiling,
        "{} KMS calls at rest, over one per object per interval",
        reads.len()
    );
}
