//! Who may call: the accounts' AccessKeys (plain, disabled, or STS-style with a fixed token)
//! and the temporary keys STS issued, with the gateway rules for each (`kms-api.md` 2.5).
//!
//! Keys and tokens live only in memory; nothing here is persisted or logged.

use super::config::AccessKeySpec;
use super::error::ApiError;
use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Issued keys are forgotten this long after they expired.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A long-lived AccessKey declared in the configuration or through the admin surface.
#[derive(Clone, Debug)]
struct StaticKey {
    account: String,
    spec: AccessKeySpec,
}

/// A temporary AccessKey issued by AssumeRole or AssumeRoleWithOIDC.
#[derive(Clone, Debug)]
pub struct TempKey {
    /// Account of the assumed role; the key acts there.
    pub account: String,
    /// `STS.` followed by random characters.
    pub access_key_id: String,
    pub secret: String,
    pub security_token: String,
    pub expiration: DateTime<Utc>,
    /// The role and session it was issued for (shown by the admin state).
    pub role_arn: String,
    pub session_name: String,
}

/// An authenticated caller's key, before its signature is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerKey {
    /// The account the key acts in.
    pub account: String,
    /// The secret to verify the signature with.
    pub secret: String,
    /// The `SecurityToken` every call must carry, for STS keys.
    pub security_token: Option<String>,
    /// When the key stops working, for issued keys.
    pub expiration: Option<DateTime<Utc>>,
}

/// One AccessKey as the admin state shows it: never the secret or the token.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeySummary {
    pub id: String,
    pub enabled: bool,
    pub sts_style: bool,
}

/// An issued key as the admin state shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TempKeySummary {
    pub access_key_id: String,
    pub role_arn: String,
    pub session_name: String,
    pub expiration: String,
}

/// Every AccessKey the emulator knows.
#[derive(Debug, Default)]
pub struct Identities {
    keys: BTreeMap<String, StaticKey>,
    issued: BTreeMap<String, TempKey>,
}

impl Identities {
    /// Adds or replaces an AccessKey of `account`; fails if the id belongs to another account.
    pub fn upsert(&mut self, account: &str, spec: AccessKeySpec) -> Result<(), String> {
        if spec.id.is_empty() || spec.secret.is_empty() {
            return Err("AccessKey ids and secrets must not be empty".to_owned());
        }
        if self.issued.contains_key(&spec.id) {
            return Err(format!("{} is an issued STS key", spec.id));
        }
        if let Some(existing) = self.keys.get(&spec.id)
            && existing.account != account
        {
            return Err(format!("{} belongs to account {}", spec.id, existing.account));
        }
        let key = StaticKey { account: account.to_owned(), spec };
        self.keys.insert(key.spec.id.clone(), key);
        Ok(())
    }

    /// Whether a long-lived key with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Enables or disables a long-lived key; `false` if there is none.
    pub fn set_enabled(&mut self, id: &str, enabled: bool) -> bool {
        self.keys.get_mut(id).map(|k| k.spec.enabled = enabled).is_some()
    }

    /// Removes a long-lived key; `false` if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        self.keys.remove(id).is_some()
    }

    /// The key of an `AccessKeyId`: unknown is `InvalidAccessKeyId.NotFound` (404), disabled is
    /// `Forbidden.AccessKey` (403).
    pub fn lookup(&self, id: &str) -> Result<CallerKey, ApiError> {
        if let Some(key) = self.keys.get(id) {
            if !key.spec.enabled {
                return Err(ApiError::access_key_disabled());
            }
            return Ok(CallerKey {
                account: key.account.clone(),
                secret: key.spec.secret.clone(),
                security_token: key.spec.security_token.clone(),
                expiration: None,
            });
        }
        let temp = self.issued.get(id).ok_or_else(ApiError::access_key_not_found)?;
        Ok(CallerKey {
            account: temp.account.clone(),
            secret: temp.secret.clone(),
            security_token: Some(temp.security_token.clone()),
            expiration: Some(temp.expiration),
        })
    }

    /// Issues a temporary key for a role session in `account`, valid until `expiration`.
    pub fn issue(
        &mut self,
        account: &str,
        role_arn: &str,
        session_name: &str,
        expiration: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> TempKey {
        let horizon = now - FORGET_AFTER;
        self.issued.retain(|_, k| k.expiration > horizon);
        let key = TempKey {
            account: account.to_owned(),
            access_key_id: format!("STS.{}", random_text(25)),
            secret: random_text(44),
            security_token: format!("CAIS{}", random_text(380)),
            expiration,
            role_arn: role_arn.to_owned(),
            session_name: session_name.to_owned(),
        };
        self.issued.insert(key.access_key_id.clone(), key.clone());
        key
    }

    /// Makes every issued key expired as of `now`; returns how many were still valid.
    pub fn expire_all(&mut self, now: DateTime<Utc>) -> usize {
        let mut count = 0;
        for key in self.issued.values_mut().filter(|k| k.expiration > now) {
            key.expiration = now;
            count += 1;
        }
        count
    }

    /// Long-lived keys of each account, by account uid.
    pub fn by_account(&self) -> BTreeMap<String, Vec<KeySummary>> {
        let mut out: BTreeMap<String, Vec<KeySummary>> = BTreeMap::new();
        for (id, key) in &self.keys {
            out.entry(key.account.clone()).or_default().push(KeySummary {
                id: id.clone(),
                enabled: key.spec.enabled,
                sts_style: key.spec.security_token.is_some(),
            });
        }
        out
    }

    /// Issued keys of each account, by account uid.
    pub fn issued_by_account(&self) -> BTreeMap<String, Vec<TempKeySummary>> {
        let mut out: BTreeMap<String, Vec<TempKeySummary>> = BTreeMap::new();
        for key in self.issued.values() {
            out.entry(key.account.clone()).or_default().push(TempKeySummary {
                access_key_id: key.access_key_id.clone(),
                role_arn: key.role_arn.clone(),
                session_name: key.session_name.clone(),
                expiration: super::state::format_time(key.expiration),
            });
        }
        out
    }
}

impl CallerKey {
    /// The STS rules, checked after the signature: a key with a token needs that exact
    /// `SecurityToken` and must not be expired. Plain keys ignore a token.
    pub fn check_token(&self, sent: Option<&str>, now: DateTime<Utc>) -> Result<(), ApiError> {
        let Some(expected) = &self.security_token else {
            return Ok(());
        };
        let sent = sent.filter(|t| !t.is_empty()).ok_or_else(ApiError::missing_security_token)?;
        if !super::protocol::constant_time_eq(sent, expected) {
            return Err(ApiError::security_token_mismatch());
        }
        if self.expiration.is_some_and(|at| at <= now) {
            return Err(ApiError::security_token_expired());
        }
        Ok(())
    }
}

/// Random letters and digits.
fn random_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn code<T: std::fmt::Debug>(result: Result<T, ApiError>) -> Option<String> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn lookup_follows_the_gateway_rules() {
        let mut ids = Identities::default();
        ids.upsert("1", AccessKeySpec::new("plain", "s")).unwrap();
        ids.upsert("1", AccessKeySpec { enabled: false, ..AccessKeySpec::new("off", "s") })
            .unwrap();
        let cases = [
            ("plain", None, "plain key"),
            ("off", Some("Forbidden.AccessKey"), "disabled key"),
            ("nobody", Some("InvalidAccessKeyId.NotFound"), "unknown key"),
            ("STS.unknown", Some("InvalidAccessKeyId.NotFound"), "unknown STS key"),
        ];
        for (id, want, reason) in cases {
            assert_eq!(code(ids.lookup(id)).as_deref(), want, "{reason}");
        }
        assert!(ids.upsert("2", AccessKeySpec::new("plain", "x")).is_err(), "other account");
        assert!(ids.set_enabled("off", true));
        assert!(ids.lookup("off").is_ok(), "re-enabled");
    }

    #[test]
    fn tokens_must_match_and_not_expire() {
        let now = Utc::now();
        let mut ids = Identities::default();
        let temp = ids.issue("9", "acs:ram::9:role/r", "s", now + TimeDelta::hours(1), now);
        assert!(temp.access_key_id.starts_with("STS."));
        let key = ids.lookup(&temp.access_key_id).expect("issued key is known");
        assert_eq!(key.account, "9");
        let token = temp.security_token.as_str();
        let cases = [
            (Some(token), now, None, "matching token"),
            (None, now, Some("MissingSecurityToken"), "no token"),
            (Some(""), now, Some("MissingSecurityToken"), "empty token"),
            (Some("other"), now, Some("InvalidSecurityToken.MismatchWithAccessKey"), "wrong"),
            (Some(token), now + TimeDelta::hours(2), Some("InvalidSecurityToken.Expired"), "late"),
        ];
        for (sent, at, want, reason) in cases {
            assert_eq!(code(key.check_token(sent, at)).as_deref(), want, "{reason}");
        }
        assert_eq!(ids.expire_all(now), 1);
        let expired = ids.lookup(&temp.access_key_id).unwrap();
        assert_eq!(
            code(expired.check_token(Some(token), now)).as_deref(),
            Some("InvalidSecurityToken.Expired")
        );
    }

    #[test]
    fn static_sts_style_keys_need_their_token_and_plain_keys_ignore_one() {
        let mut ids = Identities::default();
        let spec = AccessKeySpec::parse("STS.fixed:secret:tok:with:colons").unwrap();
        ids.upsert("1", spec).unwrap();
        ids.upsert("1", AccessKeySpec::new("plain", "s")).unwrap();
        let sts = ids.lookup("STS.fixed").unwrap();
        assert!(sts.check_token(Some("tok:with:colons"), Utc::now()).is_ok());
        assert!(sts.check_token(None, Utc::now()).is_err());
        let plain = ids.lookup("plain").unwrap();
        assert!(plain.check_token(Some("anything"), Utc::now()).is_ok());
    }
}
