//! A local Alibaba Cloud KMS (API version 2016-01-20) and STS (2015-04-01) that speak the
//! real RPC wire protocol, so the operator, Terraform and the official SDKs can run against
//! it over plain HTTP, with several accounts and regions in one process.
//!
//! Module map:
//! - [`config`]: accounts, AccessKeys, roles, OIDC providers, quotas (the `--config` format).
//! - [`protocol`]: parameters, the flow of one call and the JSON bodies; [`gateway`] the
//!   checks of `kms-api.md` 2.5 in order; [`identity`] AccessKeys and issued STS keys.
//! - [`actions`]: KMS per-action parameters and answers; [`sts`] AssumeRole and
//!   AssumeRoleWithOIDC.
//! - [`state`]: keys and aliases as plain synchronous state; [`key`] the key resource;
//!   [`rules`] the pure rules behind them; [`error`] the KMS and gateway error codes.
//! - [`quota`]: QPS buckets; [`faults`]: injected errors, latency and hangs.
//! - [`admin`]: the unsigned `/_emulator/` surface; [`calls`] the call log; [`persist`] the
//!   state file; [`server`] serving it.
//!
//! Not emulated: V3 (`ACS3-HMAC-SHA256`) signatures, RAM policies (any key may do anything in
//! its account), cryptographic actions, purging keys when their deletion window ends (use
//! `DELETE /_emulator/keys/{id}`).

pub mod actions;
pub mod admin;
pub mod calls;
pub mod config;
pub mod error;
pub mod faults;
pub mod gateway;
pub mod identity;
pub mod key;
pub mod persist;
pub mod protocol;
pub mod quota;
pub mod rules;
pub mod server;
pub mod state;
pub mod sts;

mod control;

use calls::{CallContext, CallLog};
use faults::FaultSet;
use gateway::{Admitted, Service};
use identity::Identities;
use protocol::{NonceCache, Params};
use quota::{QpsLimiter, Quotas};
use serde_json::Value;
use state::{KmsState, Scope};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

pub use crate::kms::KeyState;
pub use config::{ConfigError, EmulatorConfig};
pub use server::{RunningEmulator, serve, serve_with_shutdown};

/// Everything behind the lock: each phase of a call runs start to finish under it.
#[derive(Debug)]
pub(crate) struct Shared {
    kms: KmsState,
    seed: KmsState,
    identities: Identities,
    calls: CallLog,
    faults: FaultSet,
    nonces: NonceCache,
    quotas: Quotas,
    limiter: QpsLimiter,
}

/// A running emulator's state; cheap to clone, all clones share it.
#[derive(Clone, Debug)]
pub struct Emulator {
    config: Arc<EmulatorConfig>,
    /// Regions each account may use (empty: any), by uid.
    regions: Arc<BTreeMap<String, Vec<String>>>,
    shared: Arc<Mutex<Shared>>,
    /// Turns `true` when the server stops; ends held answers and delays.
    stopping: Arc<watch::Sender<bool>>,
}

impl Emulator {
    /// Checks the configuration, creates accounts, keys and faults, and loads the state file.
    pub fn new(config: EmulatorConfig) -> Result<Self, ConfigError> {
        let accounts = config.validate()?;
        let mut identities = Identities::default();
        let mut seed = KmsState::default();
        seed.set_alias_quota(config.quotas.alias_quota as usize);
        let mut regions = BTreeMap::new();
        for account in &accounts {
            control::add_account(&mut identities, &mut seed, account, &config.region)?;
            regions.insert(account.uid.clone(), account.regions.clone());
        }
        let kms = control::initial_state(&config, &seed)?;
        let mut faults = FaultSet::new(config.seed);
        for fault in &config.faults {
            faults.add(fault.clone()).map_err(ConfigError::Fault)?;
        }
        let shared = Shared {
            kms,
            seed,
            identities,
            calls: CallLog::default(),
            faults,
            nonces: NonceCache::default(),
            quotas: config.quotas,
            limiter: QpsLimiter::default(),
        };
        let (stopping, _) = watch::channel(false);
        Ok(Self {
            config: Arc::new(config),
            regions: Arc::new(regions),
            shared: Arc::new(Mutex::new(shared)),
            stopping: Arc::new(stopping),
        })
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic under the lock leaves plain data behind; keep serving it.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn scope(&self) -> Scope<'_> {
        Scope { account: &self.config.account_uid, region: &self.config.region }
    }

    /// Phase one of a call: the gateway checks, quota and fault selection.
    fn admit(
        &self,
        request: &gateway::Request<'_>,
    ) -> Result<Admitted, (error::ApiError, CallContext)> {
        let mut shared = self.lock();
        gateway::admit(&mut shared, &self.regions, &self.config.region, request)
    }

    /// Phase two: the injected error or the action itself, then persistence. Returns the
    /// answer, the call log context and how long to hold the answer (`Some(None)`: until the
    /// server stops).
    fn run(
        &self,
        admitted: Admitted,
        params: &Params,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (Result<Value, error::ApiError>, CallContext, Option<Option<Duration>>) {
        let mut context = admitted.context();
        let hang = admitted.fault.as_ref().filter(|f| f.hang_after_commit);
        let hang = hang.map(|f| f.hang_ms.map(Duration::from_millis));
        if let Some(error) = admitted.fault.and_then(|f| f.error) {
            return (Err(error), context, None);
        }
        let mut shared = self.lock();
        let result = match admitted.service {
            Service::Kms => {
                let account = admitted.caller.as_deref().unwrap_or_default();
                let scope = Scope { account, region: &admitted.region };
                let result =
                    actions::execute(&mut shared.kms, scope, &admitted.action, params, now);
                if result.is_ok() && admitted.class.is_some_and(|c| c.changes_state()) {
                    self.persist(&shared.kms);
                }
                result
            }
            Service::Sts => {
                let caller = admitted.caller.as_deref();
                let issued =
                    sts::execute(&self.config, &mut shared.identities, caller, params, now);
                issued.map(|issued| {
                    context.account_uid = issued.account;
                    issued.body
                })
            }
        };
        (result, context, hang)
    }

    /// Waits `duration` (`None`: forever), cut short when the server stops.
    async fn pause(&self, duration: Option<Duration>) {
        let mut stopping = self.stopping.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        };
        match duration {
            Some(duration) => tokio::select! {
                () = tokio::time::sleep(duration) => {}
                () = stopped => {}
            },
            None => stopped.await,
        }
    }

    /// Writes the state file, if there is one; failures are logged, not answered.
    fn persist(&self, kms: &KmsState) {
        if let Some(path) = &self.config.state_file
            && let Err(error) = persist::save(path, kms)
        {
            tracing::warn!(%error, path = %path.display(), "cannot write state file");
        }
    }

    /// Ends held answers and writes the state file one last time.
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
        let shared = self.lock();
        self.persist(&shared.kms);
    }
}
