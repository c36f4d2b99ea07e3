//! QPS quotas per account and region (`kms-api.md` section 1.3): which bucket each action
//! draws from, and a sliding one-second window that admits or throttles a call.
//!
//! The window counts admitted calls only, so a throttled client that keeps retrying does not
//! push its own recovery further away. The alias-per-region quota is enforced by the state.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Length of the QPS window in milliseconds.
const WINDOW_MS: i64 = 1_000;

/// The configurable limits; `0` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Quotas {
    /// Read calls per second (DescribeKey, ListKeys, ListAliases, ListAliasesByKeyId).
    pub qps_read: u32,
    /// Write calls per second (alias changes, key state changes).
    pub qps_write: u32,
    /// CreateKey calls per second.
    pub qps_create_key: u32,
    /// Aliases per account and region.
    pub alias_quota: u32,
}

impl Default for Quotas {
    /// The documented values: 50 read, 30 write, 10 CreateKey QPS, 300 aliases.
    fn default() -> Self {
        Self { qps_read: 50, qps_write: 30, qps_create_key: 10, alias_quota: 300 }
    }
}

/// A partial update of [`Quotas`], as `POST /_emulator/quotas` takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaUpdate {
    pub qps_read: Option<u32>,
    pub qps_write: Option<u32>,
    pub qps_create_key: Option<u32>,
    pub alias_quota: Option<u32>,
}

impl Quotas {
    /// Applies the fields an update sets.
    pub fn apply(&mut self, update: QuotaUpdate) {
        let fields = [
            (&mut self.qps_read, update.qps_read),
            (&mut self.qps_write, update.qps_write),
            (&mut self.qps_create_key, update.qps_create_key),
            (&mut self.alias_quota, update.alias_quota),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                *field = value;
            }
        }
    }

    /// The QPS limit of a bucket; `None` when unlimited.
    pub fn limit(&self, class: ApiClass) -> Option<u32> {
        let limit = match class {
            ApiClass::Read => self.qps_read,
            ApiClass::Write => self.qps_write,
            ApiClass::CreateKey => self.qps_create_key,
        };
        (limit > 0).then_some(limit)
    }
}

/// The QPS bucket an action draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiClass {
    Read,
    Write,
    CreateKey,
}

impl ApiClass {
    /// The bucket of a KMS action; `None` for actions without a QPS quota.
    pub fn of(action: &str) -> Option<Self> {
        match action {
            "DescribeKey" | "ListKeys" | "ListAliases" | "ListAliasesByKeyId" => Some(Self::Read),
            "CreateAlias"
            | "UpdateAlias"
            | "DeleteAlias"
            | "EnableKey"
            | "DisableKey"
            | "ScheduleKeyDeletion"
            | "CancelKeyDeletion" => Some(Self::Write),
            "CreateKey" => Some(Self::CreateKey),
            _ => None,
        }
    }

    /// Whether a successful call of this class changes the state.
    pub fn changes_state(self) -> bool {
        self != Self::Read
    }
}

/// Admitted calls within the last window, per account, region and bucket.
#[derive(Debug, Default)]
pub struct QpsLimiter {
    windows: HashMap<(String, String, ApiClass), VecDeque<i64>>,
}

impl QpsLimiter {
    /// Admits a call at `now_ms` if fewer than `limit` were admitted in the last second.
    pub fn admit(
        &mut self,
        account: &str,
        region: &str,
        class: ApiClass,
        limit: u32,
        now_ms: i64,
    ) -> bool {
        let key = (account.to_owned(), region.to_owned(), class);
        let window = self.windows.entry(key).or_default();
        while window.front().is_some_and(|&at| at <= now_ms - WINDOW_MS) {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(now_ms);
        true
    }

    /// Forgets every admitted call.
    pub fn clear(&mut self) {
        self.windows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_map_to_their_buckets() {
        let cases = [
            ("DescribeKey", Some(ApiClass::Read)),
            ("ListAliasesByKeyId", Some(ApiClass::Read)),
            ("CreateAlias", Some(ApiClass::Write)),
            ("ScheduleKeyDeletion", Some(ApiClass::Write)),
            ("CancelKeyDeletion", Some(ApiClass::Write)),
            ("CreateKey", Some(ApiClass::CreateKey)),
            ("AssumeRole", None),
        ];
        for (action, want) in cases {
            assert_eq!(ApiClass::of(action), want, "{action}");
        }
    }

    #[test]
    fn window_admits_up_to_the_limit_per_scope() {
        let mut limiter = QpsLimiter::default();
        // (account, region, class, at ms, admitted, reason)
        let cases = [
            ("1", "r", ApiClass::Write, 0, true, "first"),
            ("1", "r", ApiClass::Write, 10, true, "second"),
            ("1", "r", ApiClass::Write, 20, false, "third within the second"),
            ("1", "r", ApiClass::Read, 20, true, "other bucket"),
            ("2", "r", ApiClass::Write, 20, true, "other account"),
            ("1", "s", ApiClass::Write, 20, true, "other region"),
            ("1", "r", ApiClass::Write, 999, false, "still within the window"),
            ("1", "r", ApiClass::Write, 1_000, true, "first call left the window"),
            ("1", "r", ApiClass::Write, 1_005, false, "second is still in"),
        ];
        for (account, region, class, at, want, reason) in cases {
            assert_eq!(limiter.admit(account, region, class, 2, at), want, "{reason}");
        }
    }

    #[test]
    fn zero_is_unlimited_and_updates_are_partial() {
        let mut quotas = Quotas::default();
        assert_eq!(quotas.limit(ApiClass::Read), Some(50));
        quotas.apply(QuotaUpdate { qps_read: Some(0), qps_write: Some(2), ..Default::default() });
        assert_eq!(quotas.limit(ApiClass::Read), None);
        assert_eq!(quotas.limit(ApiClass::Write), Some(2));
        assert_eq!(quotas.limit(ApiClass::CreateKey), Some(10), "untouched");
        assert_eq!(quotas.alias_quota, 300);
    }
}
