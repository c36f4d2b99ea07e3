//! KMS semantics as plain synchronous state: accounts, keys, aliases and the rules between them.
//!
//! Nothing here does I/O or reads the clock; callers pass `now`. The protocol layer decides who
//! the caller is and which action runs; this module decides what the action does and which
//! documented error it ends in (`kms-api.md` sections 5 and 7, the state matrix of 5.12).

use super::error::ApiError;
use super::rules::{self, KeyOp};
use crate::kms::{AliasEntry, KeyArn, KeyState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::key::{Key, KeyEntry, NewKey, format_time};

/// Aliases one account may hold in one region (the documented default quota).
pub const ALIAS_QUOTA: usize = 300;

/// Where a call acts: one account in one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a> {
    /// The numeric account uid.
    pub account: &'a str,
    /// The region id, for example `cn-hangzhou`.
    pub region: &'a str,
}

impl Scope<'_> {
    /// `acs:kms:{region}:{uid}:key/{id}`.
    pub fn key_arn(&self, key_id: &str) -> String {
        format!("acs:kms:{}:{}:key/{key_id}", self.region, self.account)
    }

    /// `acs:kms:{region}:{uid}:alias/...` for a full alias name.
    pub fn alias_arn(&self, alias_name: &str) -> String {
        format!("acs:kms:{}:{}:{alias_name}", self.region, self.account)
    }
}

/// Which page of a list the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    /// 1-based page number.
    pub number: u32,
    /// Items per page.
    pub size: u32,
}

/// One page of a list and the total over all pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The page asked for, echoed in the answer.
    pub paging: Paging,
    /// Items over all pages (`TotalCount`).
    pub total: usize,
    /// This page's items; empty past the end.
    pub items: Vec<T>,
}

fn paginate<T>(all: Vec<T>, paging: Paging) -> Page<T> {
    let total = all.len();
    let skip = (paging.number.saturating_sub(1) as usize).saturating_mul(paging.size as usize);
    let items = all.into_iter().skip(skip).take(paging.size as usize).collect();
    Page { paging, total, items }
}

/// Keys and aliases of one account in one region.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Region {
    keys: BTreeMap<String, Key>,
    aliases: BTreeMap<String, String>,
}

impl Region {
    /// Keys by id.
    pub fn keys(&self) -> &BTreeMap<String, Key> {
        &self.keys
    }

    /// Alias name to key id.
    pub fn aliases(&self) -> &BTreeMap<String, String> {
        &self.aliases
    }

    fn key_mut(&mut self, key_id: &str) -> Result<&mut Key, ApiError> {
        self.keys.get_mut(key_id).ok_or_else(ApiError::key_not_found)
    }

    fn key_state(&self, key_id: &str) -> Result<KeyState, ApiError> {
        self.keys.get(key_id).map(|k| k.key_state).ok_or_else(ApiError::key_not_found)
    }
}

/// One account's resources, per region. Its AccessKeys live in
/// [`super::identity::Identities`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Account {
    regions: BTreeMap<String, Region>,
}

impl Account {
    /// Regions this account has touched or declared.
    pub fn regions(&self) -> &BTreeMap<String, Region> {
        &self.regions
    }
}

/// Everything KMS knows: accounts by uid, and the alias quota they all share.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KmsState {
    accounts: BTreeMap<String, Account>,
    /// Aliases per account and region; 0 is unlimited. Configuration, not state.
    #[serde(skip, default = "default_alias_quota")]
    alias_quota: usize,
}

fn default_alias_quota() -> usize {
    ALIAS_QUOTA
}

impl Default for KmsState {
    fn default() -> Self {
        Self { accounts: BTreeMap::new(), alias_quota: ALIAS_QUOTA }
    }
}

impl KmsState {
    /// Makes an account and region exist (empty), so they show in the admin state.
    pub fn ensure_region(&mut self, scope: Scope<'_>) {
        self.region_mut(scope);
    }

    /// Sets the alias quota; 0 is unlimited.
    pub fn set_alias_quota(&mut self, quota: usize) {
        self.alias_quota = quota;
    }

    /// Adds the accounts, regions and keys of `other` that this state lacks (seed keys a
    /// loaded state file does not know yet); existing keys and aliases are left alone.
    pub fn merge_missing(&mut self, other: &KmsState) {
        for (uid, account) in &other.accounts {
            for (name, region) in &account.regions {
                let into = self.region_mut(Scope { account: uid, region: name });
                for (id, key) in &region.keys {
                    into.keys.entry(id.clone()).or_insert_with(|| key.clone());
                }
            }
        }
    }

    /// Accounts by uid.
    pub fn accounts(&self) -> &BTreeMap<String, Account> {
        &self.accounts
    }

    /// The resources of one account in one region, if it has any.
    pub fn region(&self, scope: Scope<'_>) -> Option<&Region> {
        self.accounts.get(scope.account)?.regions.get(scope.region)
    }

    fn region_mut(&mut self, scope: Scope<'_>) -> &mut Region {
        let account = self.accounts.entry(scope.account.to_owned()).or_default();
        account.regions.entry(scope.region.to_owned()).or_default()
    }

    /// Turns a key id, key ARN or (when `aliases_ok`) alias name or alias ARN into the id of an
    /// existing key of this scope.
    fn resolve(&self, scope: Scope<'_>, text: &str, aliases_ok: bool) -> Result<String, ApiError> {
        let region = self.region(scope);
        if text.starts_with(rules::ALIAS_PREFIX) || rules::is_alias_arn(text) {
            if !aliases_ok {
                return Err(ApiError::unsupported_alias());
            }
            let own_prefix = scope.alias_arn("");
            let name = text.strip_prefix(own_prefix.as_str()).unwrap_or(text);
            let target = region.and_then(|r| r.aliases.get(name));
            return target.cloned().ok_or_else(ApiError::alias_not_found);
        }
        let key_id = match KeyArn::parse(text) {
            Some(arn) if arn.region == scope.region && arn.account == scope.account => arn.key_id,
            Some(_) => return Err(ApiError::key_not_found()),
            None => text.to_owned(),
        };
        match region {
            Some(r) if r.keys.contains_key(&key_id) => Ok(key_id),
            _ => Err(ApiError::key_not_found()),
        }
    }

    /// CreateKey: a new key with a generated id.
    pub fn create_key(
        &mut self,
        scope: Scope<'_>,
        spec: &NewKey,
        now: DateTime<Utc>,
    ) -> Result<Key, ApiError> {
        let mut key = Key::new(scope, "", now);
        rules::apply_new_key(&mut key, spec, now)?;
        let region = self.region_mut(scope);
        let key_id = loop {
            let candidate = rules::generate_key_id(scope.region);
            if !region.keys.contains_key(&candidate) {
                break candidate;
            }
        };
        key.arn = scope.key_arn(&key_id);
        key.key_id.clone_from(&key_id);
        region.keys.insert(key_id, key.clone());
        Ok(key)
    }

    /// Puts a key with a chosen (or generated) id and state in place, for seeding and tests.
    pub fn insert_key(
        &mut self,
        scope: Scope<'_>,
        key_id: Option<&str>,
        state: KeyState,
        now: DateTime<Utc>,
    ) -> Result<Key, ApiError> {
        let key_id = match key_id {
            Some(id) if !rules::valid_key_id(id) => {
                return Err(ApiError::invalid_parameter("KeyId"));
            }
            Some(id) => id.to_owned(),
            None => rules::generate_key_id(scope.region),
        };
        let region = self.region_mut(scope);
        if region.keys.contains_key(&key_id) {
            return Err(ApiError::new("Rejected.ResourceExist", 409, "The key already exists."));
        }
        let mut key = Key::new(scope, &key_id, now);
        match state {
            KeyState::PendingDeletion => key.schedule_deletion(rules::MIN_PENDING_DAYS, now),
            KeyState::PendingImport => "EXTERNAL".clone_into(&mut key.origin),
            KeyState::Enabled | KeyState::Disabled => {}
        }
        key.key_state = state;
        region.keys.insert(key_id, key.clone());
        Ok(key)
    }

    /// Removes a key and every alias pointing at it, as a purge after the pending window
    /// would. Returns the removed alias names, or `None` if there was no such key.
    pub fn remove_key(&mut self, scope: Scope<'_>, key_id: &str) -> Option<Vec<String>> {
        let region = self.region_mut(scope);
        region.keys.remove(key_id)?;
        let names: Vec<String> =
            region.aliases.iter().filter(|(_, k)| *k == key_id).map(|(n, _)| n.clone()).collect();
        for name in &names {
            region.aliases.remove(name);
        }
        Some(names)
    }

    /// DescribeKey: by key id, key ARN, alias name or alias ARN.
    pub fn describe_key(&self, scope: Scope<'_>, key: &str) -> Result<Key, ApiError> {
        let key_id = self.resolve(scope, key, true)?;
        let found = self.region(scope).and_then(|r| r.keys.get(&key_id));
        found.cloned().ok_or_else(ApiError::key_not_found)
    }

    /// ListKeys: the keys of the scope that `keep` accepts, in any state, by key id.
    pub fn list_keys(
        &self,
        scope: Scope<'_>,
        paging: Paging,
        keep: impl Fn(&Key) -> bool,
    ) -> Page<KeyEntry> {
        let keys = self.region(scope).map(|r| r.keys.values()).into_iter().flatten();
        let all = keys
            .filter(|k| keep(k))
            .map(|k| KeyEntry { key_id: k.key_id.clone(), key_arn: k.arn.clone() });
        paginate(all.collect(), paging)
    }

    /// EnableKey and DisableKey.
    pub fn set_enabled(&mut self, scope: Scope<'_>, key: &str, on: bool) -> Result<(), ApiError> {
        let key_id = self.resolve(scope, key, false)?;
        let key = self.region_mut(scope).key_mut(&key_id)?;
        rules::check_state(if on { KeyOp::Enable } else { KeyOp::Disable }, key.key_state)?;
        key.key_state = if on { KeyState::Enabled } else { KeyState::Disabled };
        Ok(())
    }

    /// ScheduleKeyDeletion with a window of 7 to 366 days.
    pub fn schedule_key_deletion(
        &mut self,
        scope: Scope<'_>,
        key: &str,
        days: u32,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if !(rules::MIN_PENDING_DAYS..=rules::MAX_PENDING_DAYS).contains(&days) {
            return Err(ApiError::invalid_parameter("PendingWindowInDays"));
        }
        let key_id = self.resolve(scope, key, false)?;
        let key = self.region_mut(scope).key_mut(&key_id)?;
        rules::check_state(KeyOp::ScheduleDeletion, key.key_state)?;
        key.schedule_deletion(days, now);
        Ok(())
    }

    /// CancelKeyDeletion: back to `Enabled`, whatever the state before scheduling was.
    pub fn cancel_key_deletion(&mut self, scope: Scope<'_>, key: &str) -> Result<(), ApiError> {
        let key_id = self.resolve(scope, key, false)?;
        let key = self.region_mut(scope).key_mut(&key_id)?;
        rules::check_state(KeyOp::CancelDeletion, key.key_state)?;
        key.key_state = KeyState::Enabled;
        key.delete_date = None;
        Ok(())
    }

    /// CreateAlias. Checks run name, key, duplicate, key state, quota.
    pub fn create_alias(
        &mut self,
        scope: Scope<'_>,
        name: &str,
        key: &str,
    ) -> Result<(), ApiError> {
        rules::check_alias_name(name, true)?;
        let key_id = self.resolve(scope, key, false)?;
        let quota = self.alias_quota;
        let region = self.region_mut(scope);
        if region.aliases.contains_key(name) {
            return Err(ApiError::alias_already_exists());
        }
        rules::check_state(KeyOp::CreateAlias, region.key_state(&key_id)?)?;
        if quota > 0 && region.aliases.len() >= quota {
            return Err(ApiError::limit_exceeded("alias"));
        }
        region.aliases.insert(name.to_owned(), key_id);
        Ok(())
    }

    /// UpdateAlias: only the target key's state matters.
    pub fn update_alias(
        &mut self,
        scope: Scope<'_>,
        name: &str,
        key: &str,
    ) -> Result<(), ApiError> {
        rules::check_alias_name(name, true)?;
        if !self.region(scope).is_some_and(|r| r.aliases.contains_key(name)) {
            return Err(ApiError::alias_not_found());
        }
        let key_id = self.resolve(scope, key, false)?;
        let region = self.region_mut(scope);
        rules::check_state(KeyOp::UpdateAliasTarget, region.key_state(&key_id)?)?;
        region.aliases.insert(name.to_owned(), key_id);
        Ok(())
    }

    /// DeleteAlias: works whatever the key's state; never touches the key.
    pub fn delete_alias(&mut self, scope: Scope<'_>, name: &str) -> Result<(), ApiError> {
        rules::check_alias_name(name, false)?;
        let region = self.region_mut(scope);
        region.aliases.remove(name).map(|_| ()).ok_or_else(ApiError::alias_not_found)
    }

    /// ListAliases: every alias of the scope, sorted by name.
    pub fn list_aliases(&self, scope: Scope<'_>, paging: Paging) -> Page<AliasEntry> {
        paginate(self.alias_entries(scope, |_| true), paging)
    }

    /// ListAliasesByKeyId: the aliases of one key (id or key ARN), sorted by name.
    pub fn list_aliases_by_key_id(
        &self,
        scope: Scope<'_>,
        key: &str,
        paging: Paging,
    ) -> Result<Page<AliasEntry>, ApiError> {
        let key_id = self.resolve(scope, key, false)?;
        Ok(paginate(self.alias_entries(scope, |k| k == key_id), paging))
    }

    fn alias_entries(&self, scope: Scope<'_>, keep: impl Fn(&str) -> bool) -> Vec<AliasEntry> {
        let aliases = self.region(scope).map(|r| r.aliases.iter()).into_iter().flatten();
        aliases
            .filter(|(_, key_id)| keep(key_id))
            .map(|(name, key_id)| AliasEntry {
                alias_name: name.clone(),
                alias_arn: scope.alias_arn(name),
                key_id: key_id.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
