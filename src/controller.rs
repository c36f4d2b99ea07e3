//! The controller: watches `KmsAlias` objects, runs the finalizer, carries out the plan from
//! [`crate::reconcile`] against KMS, writes status and events, and spaces out retries.
//!
//! Steps of one apply: validate → look up the alias → plan → check the key before any write →
//! write to KMS → status. Cleanup deletes only an alias the object owns.

use crate::crd::{FINALIZER, KmsAlias};
use crate::kms::{self, ErrorKind, KeyArn, KeyMetadata, KeyState};
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::reconcile::{Plan, must_delete, plan};
use crate::status::{self, Confirmed, Verdict, reason};
use crate::validate::{self, KeyRef, RuleViolation};
use crate::{Error, Result};
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use rand::Rng;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, debug, field, info, info_span, warn};

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            transient_backoff_cap: Duration::from_secs(300),
            terminal_backoff_cap: Duration::from_secs(900),
            concurrency: 16,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: kube::Client,
    pub providers: Providers,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per object, for per-object exponential backoff.
    failures: Mutex<HashMap<ObjectRef<KmsAlias>, u32>>,
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
        let recorder = Recorder::new(client.clone(), reporter);
        Self { client, providers, recorder, settings, metrics, failures: Mutex::default() }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<KmsAlias>, u32>> {
        // A poisoned map only holds counters; keep using it.
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes an event; a failure is logged and never fails the reconcile.
    async fn event(&self, obj: &KmsAlias, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(%error, reason, "failed to publish event");
        }
    }
}

/// Runs the controller until shutdown is signalled. `config_changes` yields whenever a
/// `KmsProviderConfig` changes; every object is then reconciled again.
pub async fn run(
    ctx: Arc<Context>,
    config_changes: impl futures::Stream<Item = ()> + Send + 'static,
) {
    let api: Api<KmsAlias> = Api::all(ctx.client.clone());
    let (reader, writer) = reflector::store();
    let metrics = ctx.metrics.clone();
    // The watcher re-lists after 410 Gone and backs off on connection errors: the stream
    // never ends on an error. Only changes that need a reconcile pass the filter, so the
    // operator's own status writes do not wake it up.
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .inspect(move |event| metrics.observe_watch(event.is_ok()))
        .reflect(writer)
        .applied_objects()
        .predicate_filter(reconcile_trigger, Default::default());
    let config = kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency);
    Controller::for_stream(stream, reader)
        .with_config(config)
        .reconcile_all_on(config_changes)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// What must change for a watch event to trigger a reconcile: the spec (generation), the
/// deletion mark, or the finalizers. Status and label edits do not.
fn reconcile_trigger(obj: &KmsAlias) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    obj.meta().generation.hash(&mut hasher);
    obj.meta().deletion_timestamp.is_some().hash(&mut hasher);
    obj.finalizers().hash(&mut hasher);
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
    let result = finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(&obj, &ctx, &api).await,
            Finalizer::Cleanup(obj) => cleanup(&obj, &ctx, &api).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|err| match err {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    ctx.metrics.observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::reason));
    if result.is_ok() {
        ctx.failures().remove(&key);
    }
    result
}

/// Decides when to retry a failed reconcile: exponential per object, with jitter.
pub fn error_policy(obj: Arc<KmsAlias>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Some(wait) = error.paced() {
        // The account's budget is busy: not this object's failure, so no backoff growth;
        // spread the retries so waiting objects do not all come back at once.
        debug!(reason = error.reason(), wait_s = wait.as_secs_f32(), "waiting for KMS budget");
        return Action::requeue(wait.mul_f64(rand::rng().random_range(0.8..1.3)));
    }
    let failures = {
        let mut map = ctx.failures();
        let count = map.entry(ObjectRef::from_obj(&*obj)).or_default();
        *count = count.saturating_add(1);
        *count
    };
    let reason = error.reason();
    let message = error.user_message();
    let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    if error.needs_spec_change() {
        warn!(%namespace, %name, reason, error = %message, "waiting for a spec change");
        return Action::await_change();
    }
    let delay = retry_delay(error.is_transient(), failures, &ctx.settings);
    warn!(%namespace, %name, reason, error = %message, failures, retry_in_s = delay.as_secs_f32(),
        "reconcile failed");
    Action::requeue(delay)
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
    exp.mul_f64(rand::rng().random_range(0.75..1.25))
}

fn jittered(period: Duration) -> Duration {
    period.mul_f64(rand::rng().random_range(0.9..1.1))
}

async fn apply(obj: &KmsAlias, ctx: &Context, api: &Api<KmsAlias>) -> Result<Action> {
    match converge(obj, ctx).await {
        Ok(confirmed) => {
            let key = confirmed.key_id.clone().unwrap_or_default();
            let verdict = Verdict {
                ready: true,
                reason: reason::ALIAS_READY,
                message: format!("alias {} points at key {key}", obj.spec.alias_name),
            };
            status::write(api, obj, status::desired(obj, confirmed, &verdict))
                .await
                .map_err(Error::WriteStatus)?;
            Ok(Action::requeue(jittered(ctx.settings.resync)))
        }
        Err(error) if error.paced().is_some() => Err(error),
        Err(error) => {
            report_failure(obj, ctx, api, &error).await;
            Err(error)
        }
    }
}

/// Records a failure in status, and in a Warning event when the reason is new.
async fn report_failure(obj: &KmsAlias, ctx: &Context, api: &Api<KmsAlias>, error: &Error) {
    let verdict = Verdict { ready: false, reason: error.reason(), message: error.user_message() };
    let previous = obj.ready_condition().map(|c| c.reason.clone());
    let status = status::desired(obj, Confirmed::from_status(obj), &verdict);
    if let Err(error) = status::write(api, obj, status).await {
        warn!(%error, "failed to write failure status");
    }
    if previous.as_deref() != Some(verdict.reason) {
        ctx.event(obj, EventType::Warning, verdict.reason, verdict.message).await;
    }
}

/// Brings KMS in line with the spec and returns what was confirmed.
async fn converge(obj: &KmsAlias, ctx: &Context) -> Result<Confirmed> {
    let alias = obj.spec.alias_name.as_str();
    validate::alias_name(alias).map_err(Error::InvalidSpec)?;
    let key = validate::key_ref(&obj.spec.key_id).map_err(Error::InvalidSpec)?;
    let kms = &ctx.providers.client_for(obj).await.map_err(|e| Error::Provider(Box::new(e)))?;
    if let KeyRef::Arn(arn) = &key
        && arn.region != kms.region()
    {
        return Err(Error::InvalidSpec(RuleViolation(format!(
            "keyId is a key in region {}, but this operator manages region {}; an alias and \
             its key must be in the same account and region",
            arn.region,
            kms.region()
        ))));
    }
    let owned = obj.status.as_ref().and_then(|s| s.alias_name.as_deref()) == Some(alias);
    let current = lookup_alias(kms, alias).await?;
    let target =
        match (plan(current.as_ref().map(|m| m.key_id.as_str()), key.key_id(), owned), current) {
            (Plan::InSync { adopt }, Some(meta)) => {
                check_same_key(&key, &meta)?;
                if adopt {
                    info!(key = %meta.key_id, "adopted existing alias");
                    let note =
                        format!("took over alias {alias}, which already points at {}", meta.key_id);
                    ctx.event(obj, EventType::Normal, "Adopted", note).await;
                }
                meta
            }
            (Plan::Conflict { foreign_key }, _) => {
                return Err(Error::AliasOwnedElsewhere { alias: alias.into(), foreign_key });
            }
            (Plan::Repoint { from }, _) => {
                let meta = usable_key(kms, &key, alias).await?;
                kms.update_alias(alias, &meta.key_id).await.map_err(|source| {
                    Error::UpdateAlias { alias: alias.into(), key: meta.key_id.clone(), source }
                })?;
                info!(from = %from, to = %meta.key_id, "re-pointed alias");
                let note = format!("re-pointed alias {alias} from {from} to {}", meta.key_id);
                ctx.event(obj, EventType::Normal, "Repointed", note).await;
                meta
            }
            (Plan::Create | Plan::InSync { .. }, _) => {
                let meta = usable_key(kms, &key, alias).await?;
                kms.create_alias(alias, &meta.key_id).await.map_err(|source| {
                    Error::CreateAlias { alias: alias.into(), key: meta.key_id.clone(), source }
                })?;
                info!(key = %meta.key_id, "created alias");
                let note = format!("created alias {alias} pointing at {}", meta.key_id);
                ctx.event(obj, EventType::Normal, "Created", note).await;
                meta
            }
        };
    let alias_arn = KeyArn::parse(&target.arn).map(|arn| arn.alias_arn(alias));
    Ok(Confirmed { alias_name: Some(alias.into()), key_id: Some(target.key_id), alias_arn })
}

/// The key the alias points at now, or `None` when the alias does not exist.
async fn lookup_alias(kms: &kms::Client, alias: &str) -> Result<Option<KeyMetadata>> {
    // DescribeKey resolves an alias in one call, wherever it sits in ListAliases' pages.
    match kms.describe_key(alias).await {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::AliasNotFound => Ok(None),
        Err(source) => Err(Error::LookupAlias { alias: alias.into(), source }),
    }
}

/// Describes the desired key and checks it may become the alias's target: it must exist, be
/// Enabled, and sit in the account and region the spec names.
async fn usable_key(kms: &kms::Client, key: &KeyRef, alias: &str) -> Result<KeyMetadata> {
    let meta = kms
        .describe_key(key.key_id())
        .await
        .map_err(|source| Error::DescribeKey { key: key.key_id().into(), source })?;
    check_same_key(key, &meta)?;
    match meta.key_state {
        KeyState::Enabled => Ok(meta),
        state => Err(Error::KeyNotUsable { key: meta.key_id, alias: alias.into(), state }),
    }
}

/// For a spec given as an ARN: the described key must be that very ARN.
fn check_same_key(key: &KeyRef, meta: &KeyMetadata) -> Result<()> {
    match key {
        KeyRef::Arn(arn) if KeyArn::parse(&meta.arn).as_ref() != Some(arn) => {
            Err(Error::InvalidSpec(RuleViolation(format!(
                "keyId names {arn}, but the operator's account holds that key as {}; an alias \
                 and its key must be in the same account and region",
                meta.arn
            ))))
        }
        _ => Ok(()),
    }
}

async fn cleanup(obj: &KmsAlias, ctx: &Context, api: &Api<KmsAlias>) -> Result<Action> {
    let alias = obj.spec.alias_name.as_str();
    let owned = obj.status.as_ref().and_then(|s| s.alias_name.as_deref());
    if !must_delete(owned, alias) {
        info!("alias not owned by this object; removing the finalizer without a KMS call");
        return Ok(Action::await_change());
    }
    let deleted = match ctx.providers.client_for(obj).await {
        Ok(kms) => kms
            .delete_alias(alias)
            .await
            .map_err(|source| Error::DeleteAlias { alias: alias.into(), source }),
        // Without a client the alias cannot be deleted; keep the finalizer and say why.
        Err(error) => Err(Error::Provider(Box::new(error))),
    };
    match deleted {
        Ok(()) => {
            info!("deleted alias");
            ctx.event(obj, EventType::Normal, "Deleted", format!("deleted alias {alias}")).await;
        }
        Err(Error::DeleteAlias { source, .. }) if source.kind() == ErrorKind::AliasNotFound => {
            info!("alias already gone");
        }
        Err(error) => {
            // Best effort: during namespace teardown the status write may fail too.
            report_failure(obj, ctx, api, &error).await;
            return Err(error);
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
