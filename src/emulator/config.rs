//! What the emulator serves: accounts with their AccessKeys, regions and seed keys, RAM roles
//! and OIDC providers for the STS side, quotas, start-up faults and persistence.
//!
//! [`EmulatorConfig`] is also the format of the `--config` file (JSON or YAML, camelCase
//! names); the `kms-emulator` flags are layered over it. Checking happens in
//! [`EmulatorConfig::validate`]; nothing here touches the network.

use super::faults::Fault;
use super::quota::Quotas;
use super::sts;
use crate::kms::KeyState;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The emulator's whole configuration; `Default` is account `1234567890123456` in
/// `cn-hangzhou` with AccessKey `testid`/`testsecret` and the documented quotas.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Region used when neither `RegionId` nor the `Host` header names one.
    pub region: String,
    /// The default account: uid that owns [`Self::access_keys`] and [`Self::seed_keys`].
    #[serde(deserialize_with = "uid")]
    pub account_uid: String,
    /// AccessKeys of the default account. When the default account ends up with none (and
    /// no account uses the id `testid`), `testid`/`testsecret` is added here.
    pub access_keys: Vec<AccessKeySpec>,
    /// Ids of `Enabled` keys of the default account in [`Self::region`].
    pub seed_keys: Vec<String>,
    /// More accounts; an entry with the default account's uid adds to it.
    pub accounts: Vec<AccountSpec>,
    /// RAM roles that `AssumeRole` and `AssumeRoleWithOIDC` may assume.
    pub roles: Vec<RoleSpec>,
    /// OIDC providers that `AssumeRoleWithOIDC` trusts.
    pub oidc_providers: Vec<OidcProviderSpec>,
    /// QPS and alias quotas.
    pub quotas: Quotas,
    /// Faults armed from the start.
    pub faults: Vec<Fault>,
    /// Seed of the random numbers behind fault rates; `None` draws one.
    pub seed: Option<u64>,
    /// File the keys and aliases are loaded from and saved to.
    pub state_file: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            region: "cn-hangzhou".to_owned(),
            account_uid: "1234567890123456".to_owned(),
            access_keys: Vec::new(),
            seed_keys: Vec::new(),
            accounts: Vec::new(),
            roles: Vec::new(),
            oidc_providers: Vec::new(),
            quotas: Quotas::default(),
            faults: Vec::new(),
            seed: None,
            state_file: None,
        }
    }
}

/// One AccessKey. `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessKeySpec {
    /// The AccessKey id.
    pub id: String,
    /// The AccessKey secret.
    pub secret: String,
    /// A disabled key is refused with `Forbidden.AccessKey`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// With a token the key behaves like an STS key: every call must carry this
    /// `SecurityToken`. It never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_token: Option<String>,
}

fn yes() -> bool {
    true
}

impl AccessKeySpec {
    /// An enabled key without a token.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { id: id.into(), secret: secret.into(), enabled: true, security_token: None }
    }

    /// Parses `ID:SECRET` or `ID:SECRET:TOKEN` (the token may itself contain `:`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ':');
        let (id, secret) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if id.is_empty() || secret.is_empty() {
            return Err("expected ID:SECRET or ID:SECRET:TOKEN with non-empty parts".to_owned());
        }
        let mut spec = Self::new(id, secret);
        match parts.next() {
            Some("") => return Err("the TOKEN after the second ':' is empty".to_owned()),
            Some(token) => spec.security_token = Some(token.to_owned()),
            None => {}
        }
        Ok(spec)
    }
}

impl fmt::Debug for AccessKeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeySpec")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One account: uid, AccessKeys, the regions it may use and keys that exist from the start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AccountSpec {
    /// Numeric account uid (a YAML number is accepted too).
    #[serde(deserialize_with = "uid")]
    pub uid: String,
    /// The account's AccessKeys.
    pub access_keys: Vec<AccessKeySpec>,
    /// Regions the account may call; empty means any. The first is its default region.
    pub regions: Vec<String>,
    /// Keys that exist from the start.
    pub keys: Vec<SeedKey>,
}

impl AccountSpec {
    /// Parses the `--account UID=ID:SECRET[:TOKEN]` flag.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (uid, key) = text.split_once('=').ok_or("expected UID=ID:SECRET[:TOKEN]")?;
        Ok(Self {
            uid: uid.to_owned(),
            access_keys: vec![AccessKeySpec::parse(key)?],
            ..Self::default()
        })
    }
}

/// A key that exists from the start.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedKey {
    /// Key id, 1–128 of `[A-Za-z0-9_-]`.
    pub id: String,
    /// Region; defaults to the account's default region.
    #[serde(default)]
    pub region: Option<String>,
    /// State; defaults to `Enabled`.
    #[serde(default)]
    pub state: Option<KeyState>,
}

/// A RAM role that STS may hand out credentials for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// `acs:ram::{uid}:role/{name}`; issued credentials belong to `{uid}`.
    pub arn: String,
    /// Longest `DurationSeconds` accepted; default 3600.
    #[serde(default)]
    pub max_session_duration: Option<u32>,
    /// Accounts whose AccessKeys may `AssumeRole` this role; default only the role's own.
    #[serde(default)]
    pub trusted_accounts: Option<Vec<String>>,
    /// The OIDC provider ARN whose tokens may `AssumeRoleWithOIDC` this role.
    #[serde(default)]
    pub trusted_oidc_provider: Option<String>,
    /// Token subjects allowed to assume the role via OIDC; empty means any.
    #[serde(default)]
    pub allowed_subjects: Vec<String>,
}

/// An OIDC identity provider registered in RAM.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProviderSpec {
    /// `acs:ram::{uid}:oidc-provider/{name}`.
    pub arn: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// An `aud` tokens must carry; default `sts.aliyuncs.com`.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// PEM file of the public key(s) (EC P-256 or RSA) tokens are signed with; read at every
    /// call, so a rotated file is picked up.
    pub public_key_file: PathBuf,
}

fn default_audience() -> String {
    "sts.aliyuncs.com".to_owned()
}

/// Why a configuration cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("failed to read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is neither valid JSON nor valid YAML for this format.
    #[error("failed to parse config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A region id is empty or has characters other than `[a-z0-9-]`.
    #[error("invalid region id {0:?}")]
    Region(String),
    /// An account uid is empty or not all digits.
    #[error("invalid account uid {0:?}")]
    AccountUid(String),
    /// An AccessKey has an empty id or secret.
    #[error("AccessKey ids and secrets must not be empty")]
    AccessKey,
    /// Two AccessKeys share an id.
    #[error("AccessKey id {0:?} is declared twice")]
    DuplicateAccessKey(String),
    /// A seed key id is malformed or given twice.
    #[error("invalid or duplicate seed key id {0:?}")]
    SeedKey(String),
    /// A role or OIDC provider ARN is malformed or declared twice.
    #[error("invalid or duplicate ARN {0:?}")]
    Arn(String),
    /// A role trusts an OIDC provider that is not declared.
    #[error("role {role} trusts undeclared OIDC provider {provider}")]
    UnknownProvider { role: String, provider: String },
    /// A fault makes no sense.
    #[error("invalid fault: {0}")]
    Fault(String),
}

impl EmulatorConfig {
    /// Reads a JSON or YAML config file (YAML is a superset, so one parser does both).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        serde_yaml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// The default account merged with [`Self::accounts`], by uid, default account first.
    /// Gives the default account `testid`/`testsecret` when it has no AccessKey.
    pub fn merged_accounts(&self) -> Vec<AccountSpec> {
        let mut merged = vec![AccountSpec {
            uid: self.account_uid.clone(),
            access_keys: self.access_keys.clone(),
            regions: Vec::new(),
            keys: self.seed_keys.iter().map(|id| SeedKey::enabled(id)).collect(),
        }];
        for account in &self.accounts {
            match merged.iter_mut().find(|a| a.uid == account.uid) {
                Some(into) => {
                    into.access_keys.extend(account.access_keys.iter().cloned());
                    into.regions.extend(account.regions.iter().cloned());
                    into.keys.extend(account.keys.iter().cloned());
                }
                None => merged.push(account.clone()),
            }
        }
        let testid_taken = merged.iter().flat_map(|a| &a.access_keys).any(|k| k.id == "testid");
        if merged[0].access_keys.is_empty() && !testid_taken {
            merged[0].access_keys.push(AccessKeySpec::new("testid", "testsecret"));
        }
        merged
    }
}

impl EmulatorConfig {
    /// Checks every part and returns the merged accounts (see [`Self::merged_accounts`]).
    pub fn validate(&self) -> Result<Vec<AccountSpec>, ConfigError> {
        if !valid_region(&self.region) {
            return Err(ConfigError::Region(self.region.clone()));
        }
        let accounts = self.merged_accounts();
        for account in &accounts {
            validate_account(account)?;
        }
        self.validate_sts()?;
        for fault in &self.faults {
            fault.validate().map_err(ConfigError::Fault)?;
        }
        Ok(accounts)
    }

    fn validate_sts(&self) -> Result<(), ConfigError> {
        let mut seen = Vec::new();
        for provider in &self.oidc_providers {
            let arn = provider.arn.to_ascii_lowercase();
            if sts::parse_arn(&provider.arn, "oidc-provider/").is_none() || seen.contains(&arn) {
                return Err(ConfigError::Arn(provider.arn.clone()));
            }
            seen.push(arn);
        }
        let providers = seen;
        let mut seen = Vec::new();
        for role in &self.roles {
            let arn = role.arn.to_ascii_lowercase();
            if sts::parse_arn(&role.arn, "role/").is_none() || seen.contains(&arn) {
                return Err(ConfigError::Arn(role.arn.clone()));
            }
            seen.push(arn);
            if let Some(provider) = &role.trusted_oidc_provider
                && !providers.contains(&provider.to_ascii_lowercase())
            {
                let (role, provider) = (role.arn.clone(), provider.clone());
                return Err(ConfigError::UnknownProvider { role, provider });
            }
            let trusted = role.trusted_accounts.iter().flatten();
            if let Some(bad) = trusted.into_iter().find(|uid| !valid_uid(uid)) {
                return Err(ConfigError::AccountUid(bad.clone()));
            }
        }
        Ok(())
    }
}

fn validate_account(account: &AccountSpec) -> Result<(), ConfigError> {
    if !valid_uid(&account.uid) {
        return Err(ConfigError::AccountUid(account.uid.clone()));
    }
    if let Some(bad) = account.regions.iter().find(|r| !valid_region(r)) {
        return Err(ConfigError::Region(bad.clone()));
    }
    if account.access_keys.iter().any(|k| k.id.is_empty() || k.secret.is_empty()) {
        return Err(ConfigError::AccessKey);
    }
    for key in &account.keys {
        if let Some(region) = key.region.as_deref().filter(|r| !valid_region(r)) {
            return Err(ConfigError::Region(region.to_owned()));
        }
    }
    Ok(())
}

impl SeedKey {
    fn enabled(id: &str) -> Self {
        Self { id: id.to_owned(), region: None, state: None }
    }
}

/// Accepts a uid written as a string or as a (YAML or JSON) number.
fn uid<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Uid {
        Text(String),
        Number(u64),
    }
    Ok(match Uid::deserialize(deserializer)? {
        Uid::Text(text) => text,
        Uid::Number(n) => n.to_string(),
    })
}

/// Whether `uid` looks like an account uid: non-empty, all digits.
pub(crate) fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `region` looks like a region id: non-empty `[a-z0-9-]`, at most 64 characters.
pub(crate) fn valid_region(region: &str) -> bool {
    (1..=64).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
