//! Case 12: the operator survives API server restarts and outages in-process. After each
//! disruption, an object deleted and an object created as soon as the API is back are both
//! handled within 30 s, and the operator process never exits. And when the watch cannot be
//! re-established, the liveness probe says so instead of the operator idling as healthy.

use crate::stack::{Options, Stack, manifest, wait_for};
use std::time::{Duration, Instant};

const NS: &str = "default";
/// Restarts in a row, as case 12 asks; outages (each at least 20 s of API down) take longer,
/// so fewer of them.
const RESTART_ROUNDS: usize = 5;
const OUTAGE_ROUNDS: usize = 3;
/// The limit case 12 sets for the new object after each disruption.
const READY_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Disruption {
    /// `restart_apiserver()`: stop (SIGTERM) and start at once.
    Restart,
    /// `stop_apiserver()`, the API down for this long, then `start_apiserver()`.
    Outage(Duration),
}

#[tokio::test]
async fn operator_recovers_from_api_server_restarts() {
    survives("apiserver-restart", Disruption::Restart).await;
}

#[tokio::test]
async fn operator_recovers_from_api_server_outages() {
    survives("apiserver-outage", Disruption::Outage(Duration::from_secs(20))).await;
}

async fn survives(name: &str, disruption: Disruption) {
    let mut stack = Stack::start(name, false).await;
    let key = stack.create_key().await;
    let alias = |round: usize| format!("alias/{name}-r{round}");
    stack.apply(&manifest(NS, "r0", &alias(0), &key, &[]).to_string()).await;
    stack.wait_ready(NS, "r0", READY_LIMIT).await;
    let http = stack.operator_http().await;

    let rounds = match disruption {
        Disruption::Restart => RESTART_ROUNDS,
        Disruption::Outage(_) => OUTAGE_ROUNDS,
    };
    for round in 1..=rounds {
        let (old, new) = (format!("r{}", round - 1), format!("r{round}"));
        let down = Instant::now();
        match disruption {
            Disruption::Restart => {
                stack.plane.restart_apiserver().await.expect("restart kube-apiserver");
            }
            Disruption::Outage(window) => {
                stack.plane.stop_apiserver().await.expect("stop kube-apiserver");
                // Observation window: the API stays down this long on purpose; the operator
                // must ride it out without exiting.
                tokio::time::sleep(window).await;
                stack.assert_operator_running();
                stack.plane.start_apiserver().await.expect("start kube-apiserver");
            }
        }
        let back = Instant::now();
        let outage = back - down;
        stack.reconnect().await;

        // As soon as the API answers again: delete the old object, create a new one.
        stack.kubectl_ok(&["-n", NS, "delete", "kmsalias", &old, "--wait=false"]).await;
        stack.apply(&manifest(NS, &new, &alias(round), &key, &[]).to_string()).await;
        let (obj, ready_in) = stack.wait_ready(NS, &new, READY_LIMIT).await;
        let ready_after_back = back.elapsed();
        let gone_after_back = {
            stack.wait_gone(NS, &old, READY_LIMIT).await;
            back.elapsed()
        };
        println!(
            "{name} round {round}: API down for {outage:.1?}; new object Ready {ready_in:.1?} \
             after its apply (API back + {ready_after_back:.1?}), old object gone at API back + \
             {gone_after_back:.1?}"
        );

        let status = obj.status.as_ref().expect("status");
        assert_eq!(status.key_id.as_deref(), Some(key.as_str()));
        assert_eq!(stack.kms_target(&alias(round)).await.as_deref(), Some(key.as_str()));
        assert_eq!(stack.kms_target(&alias(round - 1)).await, None, "old alias left in KMS");
        let deletes = stack.calls_for("DeleteAlias", &alias(round - 1)).await;
        assert_eq!(
            deletes.iter().filter(|c| c.code == "OK").count(),
            1,
            "successful DeleteAlias calls for {}: {deletes:?}",
            alias(round - 1)
        );
        let creates = stack.calls_for("CreateAlias", &alias(round)).await;
        assert_eq!(creates.len(), 1, "CreateAlias calls for {}: {creates:?}", alias(round));
        stack.assert_operator_running();
    }

    for probe in ["healthz", "readyz"] {
        let response = reqwest::get(format!("{http}/{probe}")).await.expect(probe);
        assert!(response.status().is_success(), "/{probe} after recovery: {}", response.status());
    }
    let backoffs = stack.operator_log_lines("Error received, backing off");
    println!("{name}: {} watch back-offs logged by the operator", backoffs.len());
    if let Some(longest) = backoffs.iter().max_by_key(|l| backoff_ms(l)) {
        println!("  longest: {longest}");
    }
}

/// The grace given to the operator's watch in the liveness test, instead of 5 minutes.
const GRACE_SECS: u64 = 5;

/// Case 12, last point: while the API server is down for good, `/healthz` (the liveness
/// probe) and `/readyz` fail once the watch has failed for longer than the grace; once the API
/// is back, both pass again and the operator reconciles, without a restart.
#[tokio::test]
async fn liveness_fails_while_the_watch_cannot_recover() {
    let grace = format!("--watch-failure-grace-secs={GRACE_SECS}");
    let options = Options { operator_args: &[&grace], ..Options::default() };
    let mut stack = Stack::start_with("liveness", options).await;
    let http = stack.operator_http().await;
    let probe = |path: &'static str| {
        let url = format!("{http}/{path}");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    wait_for("/readyz 200 once the watch has synced", Duration::from_secs(30), || async {
        (probe("readyz").await == 200).then_some(())
    })
    .await;
    assert_eq!(probe("healthz").await, 200);

    stack.plane.stop_apiserver().await.expect("stop kube-apiserver");
    let down = Instant::now();
    wait_for("/healthz 503 while the API is gone", Duration::from_secs(60), || async {
        (probe("healthz").await == 503).then_some(())
    })
    .await;
    let failed_after = down.elapsed();
    assert_eq!(probe("readyz").await, 503, "not ready either");
    stack.assert_operator_running();
    println!("liveness: /healthz failed {failed_after:.1?} after the API server stopped");

    stack.plane.start_apiserver().await.expect("start kube-apiserver");
    let back = Instant::now();
    stack.reconnect().await;
    wait_for("/healthz 200 once the watch is back", Duration::from_secs(30), || async {
        (probe("healthz").await == 200).then_some(())
    })
    .await;
    println!(
        "liveness: /healthz passed again {:.1?} after the API server was back",
        back.elapsed()
    );
    let key = stack.create_key().await;
    stack.apply(&manifest(NS, "after", "alias/after-outage", &key, &[]).to_string()).await;
    stack.wait_ready(NS, "after", READY_LIMIT).await;
    assert_eq!(probe("readyz").await, 200);
}

/// The `duration=…` of a kube-runtime back-off log line, in milliseconds, for ranking.
fn backoff_ms(line: &str) -> u128 {
    let Some(rest) = line.split("duration=").nth(1) else { return 0 };
    let text: String =
        rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || c.is_alphabetic()).collect();
    let number: String = text.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let value: f64 = number.parse().unwrap_or(0.0);
    let unit = &text[number.len()..];
    let ms = match unit {
        "s" => value * 1000.0,
        "ms" => value,
        "µs" | "us" => value / 1000.0,
        _ => 0.0,
    };
    ms as u128
}
