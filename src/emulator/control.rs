//! Setting the emulator up from its configuration, and the inspection and control methods
//! that tests and the admin surface call without going through the wire protocol.

use super::calls::CallRecord;
use super::config::{AccessKeySpec, AccountSpec, ConfigError, EmulatorConfig};
use super::error::ApiError;
use super::faults::Fault;
use super::identity::Identities;
use super::quota::{QuotaUpdate, Quotas};
use super::state::{Key, KmsState, Scope};
use super::{Emulator, KeyState, admin, persist};
use chrono::Utc;
use serde_json::Value;

/// Registers an account's AccessKeys and creates its regions and seed keys in `seed`.
pub(super) fn add_account(
    identities: &mut Identities,
    seed: &mut KmsState,
    account: &AccountSpec,
    default_region: &str,
) -> Result<(), ConfigError> {
    for key in &account.access_keys {
        if identities.contains(&key.id) {
            return Err(ConfigError::DuplicateAccessKey(key.id.clone()));
        }
        identities.upsert(&account.uid, key.clone()).map_err(|_| ConfigError::AccessKey)?;
    }
    let home = account.regions.first().map_or(default_region, String::as_str);
    for region in account.regions.iter().map(String::as_str).chain([home]) {
        seed.ensure_region(Scope { account: &account.uid, region });
    }
    for key in &account.keys {
        let region = key.region.as_deref().unwrap_or(home);
        let scope = Scope { account: &account.uid, region };
        let state = key.state.unwrap_or(KeyState::Enabled);
        seed.insert_key(scope, Some(&key.id), state, Utc::now())
            .map_err(|_| ConfigError::SeedKey(key.id.clone()))?;
    }
    Ok(())
}

/// The state file's content if there is one (with seed keys it lacks added), else the seed.
pub(super) fn initial_state(
    config: &EmulatorConfig,
    seed: &KmsState,
) -> Result<KmsState, ConfigError> {
    let Some(path) = &config.state_file else {
        return Ok(seed.clone());
    };
    let loaded =
        persist::load(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    let Some(mut kms) = loaded else {
        return Ok(seed.clone());
    };
    kms.set_alias_quota(config.quotas.alias_quota as usize);
    kms.merge_missing(seed);
    Ok(kms)
}

impl Emulator {
    /// The state as `GET /_emulator/state` shows it.
    pub fn snapshot(&self) -> Value {
        let shared = self.lock();
        admin::snapshot(&shared.kms, &shared.identities, &self.config, &shared.quotas)
    }

    /// The call log after sequence number `since` (0 for all), optionally of one action.
    pub fn calls(&self, since: u64, action: Option<&str>) -> Vec<CallRecord> {
        self.lock().calls.since(since, action)
    }

    /// Clears the call log, the faults and the QPS windows; with `state`, also puts keys and
    /// aliases back to the seed (and writes the state file).
    pub fn reset(&self, state: bool) {
        let mut shared = self.lock();
        shared.calls.clear();
        shared.faults.clear();
        shared.limiter.clear();
        if state {
            let mut kms = shared.seed.clone();
            kms.set_alias_quota(shared.quotas.alias_quota as usize);
            shared.kms = kms;
            self.persist(&shared.kms);
        }
    }

    /// Arms a fault; fails with a reason if it makes no sense.
    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        self.lock().faults.add(fault)
    }

    /// The armed faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.list().to_vec()
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        self.lock().quotas
    }

    /// Changes some quotas at run time; returns the quotas now in force.
    pub fn update_quotas(&self, update: QuotaUpdate) -> Quotas {
        let mut shared = self.lock();
        shared.quotas.apply(update);
        let alias_quota = shared.quotas.alias_quota as usize;
        shared.kms.set_alias_quota(alias_quota);
        shared.seed.set_alias_quota(alias_quota);
        shared.quotas
    }

    /// Makes every issued STS key expired now; returns how many were still valid.
    pub fn expire_sts_credentials(&self) -> usize {
        self.lock().identities.expire_all(Utc::now())
    }

    /// Adds or replaces an AccessKey of `account` (default: the default account).
    pub fn upsert_access_key(
        &self,
        account: Option<&str>,
        key: AccessKeySpec,
    ) -> Result<(), String> {
        let account = account.unwrap_or(&self.config.account_uid);
        if !super::config::valid_uid(account) {
            return Err(format!("invalid account uid {account:?}"));
        }
        self.lock().identities.upsert(account, key)
    }

    /// Enables or disables an AccessKey; `false` if there is no such long-lived key.
    pub fn set_access_key_enabled(&self, id: &str, enabled: bool) -> bool {
        self.lock().identities.set_enabled(id, enabled)
    }

    /// Removes an AccessKey; `false` if there is no such long-lived key.
    pub fn remove_access_key(&self, id: &str) -> bool {
        self.lock().identities.remove(id)
    }

    /// Creates a key in the default account and region with a chosen id and state.
    pub fn insert_key(&self, key_id: Option<&str>, state: KeyState) -> Result<Key, ApiError> {
        self.insert_key_at(self.scope(), key_id, state)
    }

    /// Creates a key in any account and region with a chosen id and state.
    pub fn insert_key_at(
        &self,
        scope: Scope<'_>,
        key_id: Option<&str>,
        state: KeyState,
    ) -> Result<Key, ApiError> {
        let mut shared = self.lock();
        let key = shared.kms.insert_key(scope, key_id, state, Utc::now())?;
        self.persist(&shared.kms);
        Ok(key)
    }

    /// Removes a key with its aliases, as a purge would; returns the removed alias names,
    /// `None` if the key does not exist.
    pub fn remove_key_at(&self, scope: Scope<'_>, key_id: &str) -> Option<Vec<String>> {
        let mut shared = self.lock();
        let removed = shared.kms.remove_key(scope, key_id)?;
        self.persist(&shared.kms);
        Some(removed)
    }

    /// [`Self::remove_key_at`] in the default account and region.
    pub fn remove_key(&self, key_id: &str) -> Option<Vec<String>> {
        self.remove_key_at(self.scope(), key_id)
    }
}
