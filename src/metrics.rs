//! Prometheus metrics and the health endpoints (`/metrics`, `/healthz`, `/readyz`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    action: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

/// The operator's metrics and health state.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    reconcile_duration: Histogram,
    watch_errors: Counter,
    drift: Counter,
    kms_calls: Family<CallLabels, Counter>,
    kms_latency: Family<ActionLabel, Histogram>,
    /// Unix seconds of the last successful watch event; 0 before the first.
    last_watch_ok: AtomicU64,
    /// Unix seconds of the first watch error since the last success; 0 when healthy.
    failing_since: AtomicU64,
    /// How long the watch may keep failing before `/healthz` reports the operator unhealthy.
    grace: Duration,
}

/// The default of [`Metrics::new`]'s `grace`: longer than kube-apiserver usually takes to
/// restart, shorter than users tolerate an operator that silently stopped reconciling.
pub const WATCH_FAILURE_GRACE: Duration = Duration::from_secs(300);

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(WATCH_FAILURE_GRACE)
    }
}

impl Metrics {
    /// Metrics whose `/healthz` fails once the watch has failed for longer than `grace`.
    pub fn new(grace: Duration) -> Self {
        let mut registry = Registry::with_prefix("kms_alias_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result: ok, or the failure reason",
            reconciles.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_duration.clone(),
        );
        let watch_errors = Counter::default();
        registry.register("watch_errors", "Errors from the KmsAlias watch", watch_errors.clone());
        let drift = Counter::default();
        registry.register(
            "drift_detected",
            "Aliases found re-pointed or deleted out of band",
            drift.clone(),
        );
        let kms_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "kms_requests",
            "KMS calls by action and result code (OK or the error code)",
            kms_calls.clone(),
        );
        let kms_latency = Family::<ActionLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register(
            "kms_request_duration_seconds",
            "Latency of one KMS call",
            kms_latency.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            watch_errors,
            drift,
            kms_calls,
            kms_latency,
            last_watch_ok: AtomicU64::new(0),
            failing_since: AtomicU64::new(0),
            grace,
        }
    }

    /// Counts one reconcile; `failure` is the reason when it failed.
    pub fn observe_reconcile(&self, took: Duration, failure: Option<&str>) {
        let result = failure.unwrap_or("ok").to_owned();
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Counts one alias found drifted.
    pub fn observe_drift(&self) {
        self.drift.inc();
    }

    /// Records one item of the watch stream.
    pub fn observe_watch(&self, ok: bool) {
        if ok {
            self.last_watch_ok.store(unix_now(), Ordering::Relaxed);
            self.failing_since.store(0, Ordering::Relaxed);
        } else {
            self.watch_errors.inc();
            let _ = self.failing_since.compare_exchange(
                0,
                unix_now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Whether the watch has been failing for longer than the grace period.
    pub fn watch_stuck(&self) -> bool {
        let since = self.failing_since.load(Ordering::Relaxed);
        since != 0 && unix_now().saturating_sub(since) >= self.grace.as_secs()
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            Ok(()) => text,
            Err(_) => String::from("# encoding failed\n"),
        }
    }
}

impl crate::kms::CallObserver for Metrics {
    fn observe(&self, action: &'static str, code: &str, elapsed: Duration) {
        let labels = CallLabels { action: action.to_owned(), code: code.to_owned() };
        self.kms_calls.get_or_create(&labels).inc();
        let action = ActionLabel { action: action.to_owned() };
        self.kms_latency.get_or_create(&action).observe(elapsed.as_secs_f64());
    }
}

/// The HTTP routes for probes and scraping.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(|State(m): State<Arc<Metrics>>| async move { m.encode() }))
        .route(
            "/healthz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.watch_stuck() {
                    (StatusCode::SERVICE_UNAVAILABLE, "watch failing")
                } else {
                    (StatusCode::OK, "ok")
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                let synced = m.last_watch_ok.load(Ordering::Relaxed) != 0;
                if synced && !m.watch_stuck() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "watch not synced")
                }
            }),
        )
        .with_state(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_watch_is_stuck_only_past_the_grace_and_until_it_recovers() {
        let patient = Metrics::new(WATCH_FAILURE_GRACE);
        patient.observe_watch(false);
        assert!(!patient.watch_stuck(), "one error is within the grace");

        let strict = Metrics::new(Duration::ZERO);
        assert!(!strict.watch_stuck(), "no error yet");
        strict.observe_watch(false);
        strict.observe_watch(false);
        assert!(strict.watch_stuck());
        strict.observe_watch(true);
        assert!(!strict.watch_stuck(), "an event clears it");
    }
}
