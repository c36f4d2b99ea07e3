//! The controller: watches `KmsAlias` objects, runs the finalizer around the steps in
//! [`crate::steps`], and spaces out retries per object.

use crate::crd::{
    ANNOTATION_DRIFT_INTERVAL, ANNOTATION_PAUSED, ANNOTATION_RECONCILE, DeletionPolicy, FINALIZER,
    KmsAlias,
};
use crate::metrics::Metrics;
use crate::providers::{KmsProviderConfig, Providers};
use crate::status;
use crate::steps::{apply, cleanup};
use crate::{Error, Result};
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use rand::Rng;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, debug, field, info_span, warn};

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often an object is re-checked against KMS when nothing changes (drift detection).
    pub resync: Duration,
    /// Upper bound of the retry delay after a transient failure (throttling, 5xx, network).
    pub transient_backoff_cap: Duration,
    /// Upper bound of the retry delay after a failure that needs outside action.
    pub terminal_backoff_cap: Duration,
    /// How many objects are reconciled at once.
    pub concurrency: u16,
    /// Deletion policy of objects that set none.
    pub default_deletion_policy: DeletionPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            transient_backoff_cap: Duration::from_secs(300),
            terminal_backoff_cap: Duration::from_secs(900),
            concurrency: 16,
            default_deletion_policy: DeletionPolicy::Delete,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: kube::Client,
    pub providers: Providers,
    /// Who the operator's events say they come from.
    reporter: Reporter,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Every `KmsAlias`, as the controller's watch sees them: who else claims an alias.
    pub aliases: reflector::Store<KmsAlias>,
    writer: Mutex<Option<reflector::store::Writer<KmsAlias>>>,
    /// Consecutive failures per object and whether they were transient, for per-object
    /// exponential backoff.
    failures: Mutex<HashMap<ObjectRef<KmsAlias>, Failures>>,
    /// Objects to reconcile soon, out of turn: see [`Context::nudge`].
    nudges: futures::channel::mpsc::UnboundedSender<ObjectRef<KmsAlias>>,
    nudged: Mutex<Option<futures::channel::mpsc::UnboundedReceiver<ObjectRef<KmsAlias>>>>,
}

impl Context {
    /// Creates the context.
    pub fn new(
        client: kube::Client,
        providers: Providers,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter { controller: status::MANAGER.into(), instance: None };
        let (aliases, writer) = reflector::store();
        let (nudges, nudged) = futures::channel::mpsc::unbounded();
        Self {
            client,
            providers,
            reporter,
            settings,
            metrics,
            aliases,
            writer: Mutex::new(Some(writer)),
            failures: Mutex::default(),
            nudges,
            nudged: Mutex::new(Some(nudged)),
        }
    }

    /// Asks for `obj` to be reconciled soon, whatever its requeue time: another object's
    /// change concerns it (it now holds an alias `obj` also claims).
    pub(crate) fn nudge(&self, obj: &KmsAlias) {
        // Only fails once the controller has stopped, when nothing needs waking.
        let _ = self.nudges.unbounded_send(ObjectRef::from_obj(obj));
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<KmsAlias>, Failures>> {
        // A poisoned map only holds counters; keep using it.
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes an event; a failure is logged and never fails the reconcile.
    pub(crate) async fn event(&self, obj: &KmsAlias, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        // A recorder of its own for each event: kube's recorder folds events of one type,
        // reason and action into one series that keeps its first note, so a second re-point
        // (or a second missing key) would show the first one's details. Events are emitted
        // only on transitions, so there is nothing to fold.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(error) = recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(%error, reason, "failed to publish event");
        }
    }
}

/// Runs the controller until shutdown is signalled. `config_changes` yields the name of each
/// `KmsProviderConfig` whose spec changed; the objects that use it are then reconciled at
/// once (and only those: the others' backoff stands). `gone` receives the config of every
/// object the watch sees deleted (see [`crate::config_guard`]).
pub async fn run(
    ctx: Arc<Context>,
    config_changes: impl futures::Stream<Item = String> + Send + 'static,
    gone: futures::channel::mpsc::UnboundedSender<ObjectRef<KmsProviderConfig>>,
) {
    let api: Api<KmsAlias> = Api::all(ctx.client.clone());
    let reader = ctx.aliases.clone();
    let writer = ctx.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let nudged = ctx.nudged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let (Some(writer), Some(nudged)) = (writer, nudged) else {
        warn!("controller::run called twice on one context");
        return;
    };
    let metrics = ctx.metrics.clone();
    // The watcher re-lists after 410 Gone and backs off on connection errors: the stream
    // never ends on an error. Only changes that need a reconcile pass the filter, so the
    // operator's own status writes do not wake it up.
    let stream = watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .inspect(move |event| {
            metrics.observe_watch(event.is_ok());
            if let Ok(watcher::Event::Delete(obj)) = event {
                // Only fails once the guard has stopped, when nobody needs to know.
                let _ = gone.unbounded_send(crate::config_guard::config_of(obj));
            }
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(reconcile_trigger, Default::default());
    let store = ctx.aliases.clone();
    let config_users = config_changes.flat_map(move |config| {
        let users = store.state().into_iter().filter(|o| Providers::config_name(o) == config);
        futures::stream::iter(users.map(|o| ObjectRef::from_obj(&*o)).collect::<Vec<_>>())
    });
    let config = kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency);
    Controller::for_stream(stream, reader)
        .with_config(config)
        // The controller backs off on the stream's errors once more; same short policy.
        .trigger_backoff(WatchBackoff::default())
        .reconcile_on(config_users)
        .reconcile_on(nudged)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// How long a watch waits after an error: 0.8 s doubling to 5 s, ±25 % jitter, reset by the
/// next event that arrives.
///
/// kube's default (client-go's: up to 30 s, which its jitter stretches to 60 s) is too slow
/// after an API server outage: the first attempt after the outage only learns that the old
/// resourceVersion is gone (410) and waits a full delay again before re-listing, so changes
/// made right after the outage waited a minute or more. One watch retrying every 5 s at most
/// costs the API server nothing.
#[derive(Clone, Debug, Default)]
pub struct WatchBackoff {
    failures: u32,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(800);
    const CAP: Duration = Duration::from_secs(5);
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = Self::FIRST.saturating_mul(1u32 << self.failures.min(8)).min(Self::CAP);
        self.failures = self.failures.saturating_add(1);
        Some(delay.mul_f64(rand::rng().random_range(0.75..1.25)))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What must change for a watch event to trigger a reconcile: the spec (generation), the
/// deletion mark, the finalizers, or the operator's annotations. Status and
/// label edits do not.
fn reconcile_trigger(obj: &KmsAlias) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    obj.meta().generation.hash(&mut hasher);
    obj.meta().deletion_timestamp.is_some().hash(&mut hasher);
    obj.finalizers().hash(&mut hasher);
    let annotations = obj.meta().annotations.as_ref();
    for name in [ANNOTATION_PAUSED, ANNOTATION_RECONCILE, ANNOTATION_DRIFT_INTERVAL] {
        annotations.and_then(|a| a.get(name)).hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// Reconciles one object.
pub async fn reconcile(obj: Arc<KmsAlias>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = obj.namespace().unwrap_or_default();
    let span = info_span!("reconcile", namespace = %namespace, name = %obj.name_any(),
        alias = %obj.spec.alias_name, reason = field::Empty);
    let started = std::time::Instant::now();
    let api: Api<KmsAlias> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(&*obj);
    let seen = obj.clone();
    let steps = finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(&obj, &ctx, &api).await,
            Finalizer::Cleanup(obj) => cleanup(&obj, &ctx, &api).await,
        }
    });
    // A bug that panics on one object must not stop the operator for every other object: the
    // panic becomes this object's error and the controller goes on.
    let result = match AssertUnwindSafe(steps).catch_unwind().instrument(span).await {
        Ok(result) => result.map_err(|err| match err {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        }),
        Err(panic) => {
            let error = Error::Panicked(panic_text(&*panic));
            Err(crate::steps::reported(&seen, &ctx, &api, error).await)
        }
    };
    ctx.metrics.observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::reason));
    if result.is_ok() {
        ctx.failures().remove(&key);
    }
    result
}

/// What a caught panic said.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<&str>().map(|s| (*s).to_owned());
    text.or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}

/// Decides when to retry a failed reconcile: exponential per object, with jitter.
pub fn error_policy(obj: Arc<KmsAlias>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(wait) = error.paced() {
        // The account's budget is busy: not this object's failure, so no backoff growth;
        // spread the retries so waiting objects do not all come back at once.
        debug!(reason = error.reason(), wait_s = wait.as_secs_f32(), "waiting for KMS budget");
        // Never later than a failed object would retry: once the pressure is gone, it is the
        // successes that win the budget's rate back.
        let wait = wait.min(ctx.settings.transient_backoff_cap);
        return Action::requeue(wait.mul_f64(rand::rng().random_range(0.8..1.3)));
    }
    let key = ObjectRef::from_obj(&*obj);
    let reason = error.reason();
    let message = error.user_message();
    let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    if error.needs_spec_change() || error.recheck_interval().is_some() {
        // Not failures that grow: whatever comes after them starts a fresh run.
        ctx.failures().remove(&key);
    }
    if error.needs_spec_change() {
        warn!(%namespace, %name, reason, error = %message, "waiting for a spec change");
        return Action::await_change();
    }
    if let Some(every) = error.recheck_interval() {
        // A waiting state, not a failure that grows: look again at a steady pace.
        warn!(%namespace, %name, reason, error = %message, "checking again later");
        return Action::requeue(jittered(every));
    }
    let transient = error.is_transient();
    let generation = obj.metadata.generation.unwrap_or_default();
    let failures = ctx.failures().entry(key).or_default().add(transient, generation);
    let delay = retry_delay(transient, failures, &ctx.settings);
    warn!(%namespace, %name, reason, error = %message, failures, retry_in_s = delay.as_secs_f32(),
        "reconcile failed");
    Action::requeue(delay)
}

/// An object's run of failures of one kind, transient or not, at one generation.
#[derive(Debug, Default)]
struct Failures {
    count: u32,
    transient: bool,
    generation: i64,
}

impl Failures {
    /// Counts one more failure and returns the length of the run. A failure of the other kind
    /// starts a new run: a key found missing after a throttling storm is retried on the
    /// schedule of a missing key, not where the storm's backoff had got to. So does a new
    /// generation: a spec just edited is a new attempt, not the tenth retry of the old one.
    fn add(&mut self, transient: bool, generation: i64) -> u32 {
        if self.transient != transient || self.generation != generation {
            *self = Self { count: 0, transient, generation };
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

/// Delay before retry number `failures` (1-based): doubling from a base, capped, ±25 % jitter
/// so objects that failed together do not retry together.
pub fn retry_delay(transient: bool, failures: u32, settings: &Settings) -> Duration {
    let (base, cap) = if transient {
        (Duration::from_secs(2), settings.transient_backoff_cap)
    } else {
        (Duration::from_secs(30), settings.terminal_backoff_cap)
    };
    let exp = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(cap);
    exp.min(MAX_DELAY).mul_f64(rand::rng().random_range(0.75..1.25))
}

/// `period` ±10 %, so objects do not all resync at the same instant. Periods are bounded
/// where they are set (flags, annotations); the clamp only keeps a multiplication by more
/// than 1 from overflowing whatever comes in.
pub(crate) fn jittered(period: Duration) -> Duration {
    period.min(MAX_DELAY).mul_f64(rand::rng().random_range(0.9..1.1))
}

/// No timer of the controller is set further out than this.
const MAX_DELAY: Duration = Duration::from_secs(7 * 86_400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_of_the_other_kind_or_generation_starts_a_new_run() {
        let mut failures = Failures::default();
        assert_eq!(
            (failures.add(true, 1), failures.add(true, 1), failures.add(true, 1)),
            (1, 2, 3)
        );
        assert_eq!(failures.add(false, 1), 1, "terminal after transient");
        assert_eq!(failures.add(false, 1), 2);
        assert_eq!(failures.add(true, 1), 1, "transient after terminal");
        assert_eq!(failures.add(true, 1), 2);
        assert_eq!(failures.add(true, 2), 1, "a new generation");
    }

    #[test]
    fn retry_delay_doubles_and_caps() {
        let settings = Settings::default();
        for failures in 1..=20 {
            let transient = retry_delay(true, failures, &settings);
            let expected = (2.0 * 2f64.powi(failures as i32 - 1)).min(300.0);
            let secs = transient.as_secs_f64();
            assert!(secs >= expected * 0.75 && secs <= expected * 1.25, "{failures}: {secs}");
        }
        let terminal = retry_delay(false, 1, &settings).as_secs_f64();
        assert!((22.5..=37.5).contains(&terminal), "terminal starts near 30 s: {terminal}");
        let capped = retry_delay(false, 30, &settings).as_secs_f64();
        assert!(capped <= 900.0 * 1.25, "terminal cap: {capped}");
    }

    #[test]
    fn delays_never_overflow() {
        let huge = Settings {
            transient_backoff_cap: Duration::MAX,
            terminal_backoff_cap: Duration::MAX,
            ..Settings::default()
        };
        for _ in 0..100 {
            assert!(jittered(Duration::MAX) <= MAX_DELAY.mul_f64(1.1));
            assert!(retry_delay(true, u32::MAX, &huge) <= MAX_DELAY.mul_f64(1.25));
        }
    }

    #[test]
    fn watch_backoff_doubles_caps_and_resets() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<f64> = backoff.by_ref().take(40).map(|d| d.as_secs_f64()).collect();
        for (i, expected) in [0.8, 1.6, 3.2, 5.0, 5.0].into_iter().enumerate() {
            let secs = delays[i];
            assert!(secs >= expected * 0.75 && secs <= expected * 1.25, "{i}: {secs}");
        }
        assert!(delays.iter().all(|&d| d <= 5.0 * 1.25), "capped: {delays:?}");
        backoff.reset();
        let first = backoff.next().expect("never gives up").as_secs_f64();
        assert!((0.6..=1.0).contains(&first), "reset starts over: {first}");
    }
}
