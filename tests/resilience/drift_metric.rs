//! Report-only drift, counted: with `driftPolicy: Report` an alias re-pointed out of band is
//! reported in the condition, an event and the `drift_detected` metric, and never reverted.
//! (The e2e test covers the condition and the event; the metric needs an operator of its own.)

use crate::stack::{Stack, manifest, metric, wait_for};
use std::time::Duration;

const NS: &str = "default";
const DRIFT: &str = "kms_alias_operator_drift_detected_total";

#[tokio::test]
async fn report_only_drift_counts_in_the_metric_and_is_not_reverted() {
    let stack = Stack::start("drift-metric", false).await;
    let (k1, k2) = (stack.create_key().await, stack.create_key().await);
    let alias = "alias/reported";
    let mut obj = manifest(NS, "app", alias, &k1, &[]);
    obj["spec"]["driftPolicy"] = "Report".into();
    obj["metadata"]["annotations"] =
        serde_json::json!({"kms.aliasoperator.dev/drift-check-interval": "10s"});
    stack.apply(&obj.to_string()).await;
    stack.wait_ready(NS, "app", Duration::from_secs(30)).await;
    let http = stack.operator_http().await;
    assert_eq!(metric(&http, DRIFT).await, 0.0, "no drift yet");

    stack.kms().update_alias(alias, &k2).await.expect("out-of-band UpdateAlias");
    let api = stack.api(NS);
    wait_for("DriftDetected", Duration::from_secs(30), || async {
        let obj = api.get_opt("app").await.ok()??;
        (obj.ready_condition()?.reason == "DriftDetected").then_some(())
    })
    .await;
    assert!(metric(&http, DRIFT).await >= 1.0, "drift counted");
    assert_eq!(stack.kms_target(alias).await.as_deref(), Some(k2.as_str()), "not reverted");
    assert!(stack.calls_for("UpdateAlias", alias).await.is_empty(), "no UpdateAlias");
}
