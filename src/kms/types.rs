//! KMS resource shapes as they travel in JSON, and the identifier formats of section 7.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The lifecycle state of a customer master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
            Self::PendingImport => "PendingImport",
        };
        f.write_str(s)
    }
}

/// `KeyMetadata` as DescribeKey and CreateKey return it. Only the fields this project reads
/// are typed; the emulator fills the rest of the documented object itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    pub key_id: String,
    pub arn: String,
    pub key_state: KeyState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_date: Option<String>,
}

/// One item of `Aliases.Alias` in ListAliases and ListAliasesByKeyId.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub key_id: String,
}

/// One item of `Keys.Key` in ListKeys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyEntry {
    pub key_id: String,
    pub key_arn: String,
}

/// The error body Alibaba's gateways (KMS and STS alike) answer with.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorBody {
    #[serde(alias = "code")]
    pub code: String,
    #[serde(default, alias = "message")]
    pub message: String,
    #[serde(default)]
    pub request_id: String,
}

/// A parsed key ARN: `acs:kms:{region}:{uid}:key/{keyid}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyArn {
    pub region: String,
    pub account: String,
    pub key_id: String,
}

impl KeyArn {
    /// Parses a key ARN; `None` when the text is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("acs:kms:")?;
        let mut parts = rest.splitn(3, ':');
        let region = parts.next()?;
        let account = parts.next()?;
        let key_id = parts.next()?.strip_prefix("key/")?;
        let valid = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        (valid(region) && valid(account) && valid(key_id) && !key_id.contains('/')).then(|| Self {
            region: region.to_owned(),
            account: account.to_owned(),
            key_id: key_id.to_owned(),
        })
    }

    /// The ARN of an alias in the same account and region as this key.
    pub fn alias_arn(&self, alias_name: &str) -> String {
        format!("acs:kms:{}:{}:{alias_name}", self.region, self.account)
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acs:kms:{}:{}:key/{}", self.region, self.account, self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arn_parsing() {
        let arn = KeyArn::parse("acs:kms:cn-hangzhou:123456:key/key-hzz1").expect("valid ARN");
        assert_eq!(arn.region, "cn-hangzhou");
        assert_eq!(arn.account, "123456");
        assert_eq!(arn.key_id, "key-hzz1");
        assert_eq!(arn.to_string(), "acs:kms:cn-hangzhou:123456:key/key-hzz1");
        assert_eq!(arn.alias_arn("alias/a"), "acs:kms:cn-hangzhou:123456:alias/a");
        for bad in [
            "key-hzz1",
            "acs:kms:cn-hangzhou:123456:alias/a",
            "acs:kms::123456:key/k",
            "acs:kms:r:1:key/",
            "acs:kms:r:1:key/a/b",
            "acs:ecs:r:1:key/k",
        ] {
            assert_eq!(KeyArn::parse(bad), None, "{bad} is not a key ARN");
        }
    }
}
