//! Keeps a `KmsProviderConfig` from going away while `KmsAlias` objects still use it.
//!
//! Deleting a config first (a GitOps prune, a chart uninstalled in the wrong order) would leave
//! its objects unable to reach KMS to clean up their aliases: stuck objects, or leaked aliases.
//! So the operator holds a finalizer on every config and lets a deleted config go only once no
//! object needs it; until then it stays usable, and a Warning event names who still does.
//! An object uses the config it names, and the one named `default` when it names none. It
//! needs it unless its alias is recorded in a place the config does not reach (another region,
//! or another account than the config was seen to reach): such an object waits for its
//! provider to be pointed back (`ProviderChanged`), and deleting the config may be just that.
//!
//! It leaves the objects alone: their own finalizers and cleanup are [`crate::steps`]' job.

use crate::controller::Context;
use crate::crd::KmsAlias;
use crate::providers::{KmsProviderConfig, Providers};
use crate::status::reason;
use crate::steps::place::recorded_place;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// Finalizer the operator keeps on each `KmsProviderConfig` while objects use it.
pub const FINALIZER: &str = "kms.aliasoperator.dev/in-use";
/// How often a deleted config that is still in use is looked at again, besides when one of
/// its objects goes.
const RECHECK: Duration = Duration::from_secs(30);
/// At most this many users are named in the event.
const NAMED_USERS: usize = 5;

/// Why a config's finalizer stays.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Objects still use the config.
    #[error(
        "KmsProviderConfig {config} is still used by {count} KmsAlias object(s) ({names}); it \
         is deleted once they are gone"
    )]
    InUse { config: String, count: usize, names: String },
    /// Adding or removing the finalizer failed.
    #[error("failed to update the finalizer of KmsProviderConfig {config}")]
    Finalizer {
        config: String,
        #[source]
        source: Box<finalizer::Error<Error>>,
    },
}

struct Guard {
    ctx: Arc<Context>,
    reporter: Reporter,
    /// The last `InUse` note per config, so an event is emitted only when it changes.
    noted: Mutex<HashMap<String, String>>,
}

/// Runs the guard until shutdown, on the main controller's context (its `KmsAlias` store and
/// what its providers learned). `gone` yields the config of each object that has gone, so that
/// config is looked at again at once.
pub async fn run(
    ctx: Arc<Context>,
    gone: impl futures::Stream<Item = ObjectRef<KmsProviderConfig>> + Send + 'static,
) {
    let aliases = ctx.aliases.clone();
    // Deciding on an empty store would release every deleted config at start-up. The wait is
    // renewed every second: the store's readiness wakes only its latest waiter, and the main
    // controller waits on the same store.
    loop {
        match tokio::time::timeout(Duration::from_secs(1), aliases.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) => continue,
        }
    }
    let reporter = Reporter { controller: crate::status::MANAGER.into(), instance: None };
    let noted = Mutex::default();
    let api: Api<KmsProviderConfig> = Api::all(ctx.client.clone());
    let guard = Arc::new(Guard { ctx, reporter, noted });
    Controller::new(api, watcher::Config::default())
        .reconcile_on(gone)
        .shutdown_on_signal()
        .run(reconcile, error_policy, guard)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// The config an object uses.
pub fn config_of(obj: &KmsAlias) -> ObjectRef<KmsProviderConfig> {
    ObjectRef::new(Providers::config_name(obj))
}

/// The objects that need `config`, as `namespace/name`. `reached` is the `region:account`
/// the config was seen to reach, if known.
fn users(
    aliases: &Store<KmsAlias>,
    config: &KmsProviderConfig,
    reached: Option<&str>,
) -> Vec<String> {
    let name = config.name_any();
    let mut users: Vec<String> = aliases
        .state()
        .iter()
        .filter(|o| Providers::config_name(o) == name && needs(o, config, reached))
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect();
    users.sort();
    users
}

/// Whether `obj`, which uses `config`, needs it to reach its alias.
fn needs(obj: &KmsAlias, config: &KmsProviderConfig, reached: Option<&str>) -> bool {
    if obj.ready_condition().is_some_and(|c| c.reason == reason::PROVIDER_CHANGED) {
        // The object found for itself that its provider reaches elsewhere.
        return false;
    }
    let Some(recorded) = recorded_place(obj) else {
        // Nothing recorded yet, or a create in flight: it may well need this config.
        return true;
    };
    let region = recorded.split(':').next().unwrap_or_default();
    region == config.spec.region && reached.is_none_or(|reached| reached == recorded)
}

async fn reconcile(config: Arc<KmsProviderConfig>, guard: Arc<Guard>) -> Result<Action, Error> {
    let api: Api<KmsProviderConfig> = Api::all(guard.ctx.client.clone());
    let name = config.name_any();
    finalizer::finalizer(&api, FINALIZER, config, |event| async {
        match event {
            Finalizer::Apply(_) => Ok(Action::await_change()),
            Finalizer::Cleanup(config) => {
                let reached = guard.ctx.providers.scope(&config.name_any());
                let users = users(&guard.ctx.aliases, &config, reached.as_deref());
                if users.is_empty() {
                    info!(config = %config.name_any(), "KmsProviderConfig unused; releasing it");
                    guard.noted().remove(&config.name_any());
                    return Ok(Action::await_change());
                }
                let names = users.iter().take(NAMED_USERS).cloned().collect::<Vec<_>>();
                let more = users.len().saturating_sub(NAMED_USERS);
                let names = if more > 0 {
                    format!("{}, and {more} more", names.join(", "))
                } else {
                    names.join(", ")
                };
                Err(Error::InUse { config: config.name_any(), count: users.len(), names })
            }
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::CleanupFailed(e) | finalizer::Error::ApplyFailed(e) => e,
        other => Error::Finalizer { config: name, source: Box::new(other) },
    })
}

impl Guard {
    fn noted(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A poisoned map only holds notes; keep using it.
        self.noted.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn error_policy(config: Arc<KmsProviderConfig>, error: &Error, guard: Arc<Guard>) -> Action {
    let config_name = config.name_any();
    warn!(config = %config_name, error = %crate::error_chain(error), "KmsProviderConfig kept");
    let note = error.to_string();
    let new = guard.noted().insert(config_name, note.clone()).as_ref() != Some(&note);
    if let (Error::InUse { .. }, true) = (error, new) {
        // Once per list of users: a recheck that finds the same users says nothing new.
        let event = Event {
            type_: EventType::Warning,
            reason: "InUse".into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        let reference = config.object_ref(&());
        let recorder = Recorder::new(guard.ctx.client.clone(), guard.reporter.clone());
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                warn!(%error, "failed to publish event");
            }
        });
    }
    Action::requeue(RECHECK)
}
