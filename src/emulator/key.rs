//! The key resource: `KeyMetadata` as DescribeKey and CreateKey answer it, the CreateKey
//! parameters, and the ListKeys item.

use super::state::Scope;
use crate::kms::KeyState;
use crate::kms::sign::TIMESTAMP_FORMAT;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// A customer master key; serializes as the documented `KeyMetadata` object. Field names and
/// values follow the table in `kms-api.md` section 5.6; times are `yyyy-MM-ddTHH:mm:ssZ`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Key {
    pub key_id: String,
    pub arn: String,
    pub key_state: KeyState,
    pub key_spec: String,
    pub key_usage: String,
    pub origin: String,
    pub protection_level: String,
    pub description: String,
    pub creator: String,
    pub creation_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_date: Option<String>,
    pub automatic_rotation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<String>,
    pub primary_key_version: String,
    pub deletion_protection: String,
    pub deletion_protection_description: String,
}

impl Key {
    /// An `Enabled` software AES-256 key with the documented defaults.
    pub(super) fn new(scope: Scope<'_>, key_id: &str, now: DateTime<Utc>) -> Self {
        Self {
            key_id: key_id.to_owned(),
            arn: scope.key_arn(key_id),
            key_state: KeyState::Enabled,
            key_spec: "Aliyun_AES_256".to_owned(),
            key_usage: "ENCRYPT/DECRYPT".to_owned(),
            origin: "Aliyun_KMS".to_owned(),
            protection_level: "SOFTWARE".to_owned(),
            description: String::new(),
            creator: scope.account.to_owned(),
            creation_date: format_time(now),
            delete_date: None,
            automatic_rotation: "Disabled".to_owned(),
            rotation_interval: None,
            next_rotation_date: None,
            primary_key_version: uuid::Uuid::new_v4().to_string(),
            deletion_protection: "Disabled".to_owned(),
            deletion_protection_description: String::new(),
        }
    }

    pub(super) fn schedule_deletion(&mut self, days: u32, now: DateTime<Utc>) {
        self.key_state = KeyState::PendingDeletion;
        self.delete_date = Some(format_time(now + Duration::days(i64::from(days))));
    }
}

/// The optional CreateKey parameters as they arrived (empty values already dropped); each field
/// is the parameter of the same name in section 5.7.
#[derive(Clone, Debug, Default)]
pub struct NewKey {
    pub description: Option<String>,
    pub key_usage: Option<String>,
    pub key_spec: Option<String>,
    pub origin: Option<String>,
    pub protection_level: Option<String>,
    pub enable_automatic_rotation: Option<String>,
    pub rotation_interval: Option<String>,
}

/// One item of `Keys.Key` in ListKeys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyEntry {
    /// The bare key id.
    pub key_id: String,
    /// `acs:kms:{region}:{uid}:key/{id}`.
    pub key_arn: String,
}

/// Formats a time the way KMS does: UTC, whole seconds, literal `Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.format(TIMESTAMP_FORMAT).to_string()
}
