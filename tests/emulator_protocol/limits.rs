//! Quotas and injected faults: throttling leaves the state alone, rates are seeded, latency
//! delays, and a hang after commit leaves the outcome to be discovered by a read.

use super::wire::{self, KMS, Signer, call, code};
use kms_alias_operator::emulator::faults::Fault;
use kms_alias_operator::emulator::quota::Quotas;
use kms_alias_operator::emulator::{EmulatorConfig, KeyState};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn me() -> Signer {
    Signer::new("testid", "testsecret")
}

fn config(quotas: Quotas, faults: Vec<Fault>) -> EmulatorConfig {
    EmulatorConfig { quotas, faults, seed: Some(42), ..EmulatorConfig::default() }
}

fn aliases(state: &Value) -> usize {
    let region = &state["accounts"]["1234567890123456"]["regions"]["cn-hangzhou"];
    region["aliases"].as_object().map_or(0, serde_json::Map::len)
}

#[tokio::test]
async fn qps_limit_answers_429_and_leaves_state_alone() {
    let quotas = Quotas { qps_write: 2, ..Quotas::default() };
    let running = wire::start_with(config(quotas, vec![])).await;
    running.emulator().insert_key(Some("key-q"), KeyState::Enabled).expect("seed key");

    let started = Instant::now();
    let mut results = Vec::new();
    for i in 0..6 {
        let name = format!("alias/q{i}");
        let answer =
            call(&running, &me(), KMS, "CreateAlias", &[("AliasName", &name), ("KeyId", "key-q")])
                .await;
        results.push((answer.0, answer.1["Code"].as_str().unwrap_or("OK").to_owned(), answer.1));
    }
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let throttled: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok + throttled.len(), 6, "{results:?}");
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(ok, 2, "two writes per second: {results:?}");
    }
    assert!(!throttled.is_empty(), "{results:?}");
    assert_eq!(throttled[0].1, "Rejected.Throttling");
    assert_eq!(throttled[0].2["Message"], "QPS Limit Exceeded");

    let state = wire::admin_get(&running, "state").await;
    assert_eq!(aliases(&state), ok, "throttled calls changed nothing");
    let calls = wire::admin_get(&running, "calls?action=CreateAlias").await;
    let logged = calls.as_array().unwrap().iter().filter(|c| c["status"] == 429).count();
    assert_eq!(logged, throttled.len(), "throttled calls are in the call log");

    // Reads have their own bucket; quotas change at run time, 0 is unlimited.
    assert_eq!(code(&call(&running, &me(), KMS, "ListAliases", &[]).await), (200, "OK"));
    assert_eq!(wire::admin_post(&running, "quotas", &json!({"qpsWrite": 0})).await, 200);
    for i in 0..5 {
        let name = format!("alias/free{i}");
        let answer =
            call(&running, &me(), KMS, "CreateAlias", &[("AliasName", &name), ("KeyId", "key-q")])
                .await;
        assert_eq!(code(&answer), (200, "OK"));
    }
    assert_eq!(wire::admin_get(&running, "quotas").await["qpsWrite"], 0);
}

#[tokio::test]
async fn alias_quota_is_configurable() {
    let quotas = Quotas { alias_quota: 2, ..Quotas::default() };
    let running = wire::start_with(config(quotas, vec![])).await;
    running.emulator().insert_key(Some("key-a"), KeyState::Enabled).expect("seed key");
    let want = [(200, "OK"), (200, "OK"), (400, "Rejected.LimitExceeded")];
    for (i, want) in want.into_iter().enumerate() {
        let name = format!("alias/a{i}");
        let answer =
            call(&running, &me(), KMS, "CreateAlias", &[("AliasName", &name), ("KeyId", "key-a")])
                .await;
        assert_eq!(code(&answer), want, "alias {i}");
    }
}

/// Which of 40 ListKeys calls failed, with a 50 % error fault armed at start.
async fn rate_pattern(seed: u64) -> Vec<bool> {
    let fault =
        Fault { rate: Some(0.5), ..Fault::error("ListKeys", "ServiceUnavailableTemporary") };
    let config = EmulatorConfig {
        seed: Some(seed),
        ..config(Quotas { qps_read: 0, ..Quotas::default() }, vec![fault])
    };
    let running = wire::start_with(config).await;
    let mut failed = Vec::new();
    for _ in 0..40 {
        let answer = call(&running, &me(), KMS, "ListKeys", &[]).await;
        assert!(matches!(code(&answer), (200, "OK") | (503, "ServiceUnavailableTemporary")));
        failed.push(answer.0 == 503);
    }
    let calls = wire::admin_get(&running, "calls?action=ListKeys").await;
    let faulted = calls.as_array().unwrap().iter().filter(|c| c["fault"] == "error").count();
    assert_eq!(faulted, failed.iter().filter(|f| **f).count(), "faults are logged as such");
    failed
}

#[tokio::test]
async fn error_rate_is_seeded_and_partial() {
    let first = rate_pattern(7).await;
    let hits = first.iter().filter(|f| **f).count();
    assert!((5..=35).contains(&hits), "about half of 40 fail, got {hits}");
    assert_eq!(first, rate_pattern(7).await, "same seed, same failures");
}

#[tokio::test]
async fn latency_delays_the_call() {
    let running = wire::start_with(config(Quotas::default(), vec![])).await;
    let fault = json!({"action": "ListKeys", "latencyMs": 300, "times": 1});
    assert_eq!(wire::admin_post(&running, "faults", &fault).await, 200);
    let started = Instant::now();
    assert_eq!(code(&call(&running, &me(), KMS, "ListKeys", &[]).await), (200, "OK"));
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    let calls = wire::admin_get(&running, "calls?action=ListKeys").await;
    assert_eq!(calls[0]["fault"], "latency");
}

#[tokio::test]
async fn hang_after_commit_applies_the_change_but_holds_the_answer() {
    let running = wire::start_with(config(Quotas::default(), vec![])).await;
    running.emulator().insert_key(Some("key-h"), KeyState::Enabled).expect("seed key");
    let fault = json!({"action": "CreateAlias", "hangAfterCommit": true, "times": 1});
    assert_eq!(wire::admin_post(&running, "faults", &fault).await, 200);

    let params = [("AliasName", "alias/unknown-outcome"), ("KeyId", "key-h")];
    let signer = me();
    let held = call(&running, &signer, KMS, "CreateAlias", &params);
    let held = tokio::time::timeout(Duration::from_millis(500), held).await;
    assert!(held.is_err(), "the answer is held, the client gives up");
    let state = wire::admin_get(&running, "state").await;
    assert_eq!(aliases(&state), 1, "the alias was committed anyway");
    let calls = wire::admin_get(&running, "calls?action=CreateAlias").await;
    assert_eq!(
        (calls[0]["code"].as_str(), calls[0]["fault"].as_str()),
        (Some("OK"), Some("hangAfterCommit"))
    );

    // A hang without hangMs lasts until the server stops; stopping releases it.
    let fault = json!({"action": "DeleteAlias", "hangAfterCommit": true});
    assert_eq!(wire::admin_post(&running, "faults", &fault).await, 200);
    let url = running.url();
    let pending = tokio::spawn(async move {
        let params = [("AliasName", "alias/unknown-outcome")];
        wire::call_url(&url, &me(), KMS, "DeleteAlias", &params).await.0
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "still held");
    tokio::time::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .expect("stops")
        .expect("clean");
    let status = pending.await.expect("task");
    assert_eq!(status, 200, "the held answer is sent when the server stops");
}
