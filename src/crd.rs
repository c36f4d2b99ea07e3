//! The `KmsAlias` custom resource: what users write, what the operator reports back, and the
//! admission rules the API server enforces before anything reaches the controller.
//!
//! The field docs below are what `kubectl explain kmsalias.spec` shows, so they are user docs.

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of every kind this operator serves.
pub const GROUP: &str = "kms.aliasoperator.dev";
/// Finalizer that guards the KMS alias behind a `KmsAlias`.
pub const FINALIZER: &str = "kms.aliasoperator.dev/alias-cleanup";
/// Annotation that pauses reconciliation of one object while it is `"true"`.
pub const ANNOTATION_PAUSED: &str = "kms.aliasoperator.dev/paused";
/// Annotation whose every new value asks for an immediate reconcile (e.g. a timestamp).
pub const ANNOTATION_RECONCILE: &str = "kms.aliasoperator.dev/reconcile-requested-at";
/// Annotation overriding the drift-check interval of one object, e.g. `90s`, `10m`, `1h`.
pub const ANNOTATION_DRIFT_INTERVAL: &str = "kms.aliasoperator.dev/drift-check-interval";

/// Desired state of a KMS alias: the alias `aliasName` exists in KMS and points at `keyId`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kms.aliasoperator.dev",
    version = "v1alpha1",
    kind = "KmsAlias",
    doc = "A KMS alias kept in line by kms-alias-operator: the alias `spec.aliasName` exists in KMS and points at `spec.keyId`.",
    plural = "kmsaliases",
    shortname = "kmsa",
    namespaced,
    status = "KmsAliasStatus",
    printcolumn = r#"{"name":"Alias","type":"string","jsonPath":".spec.aliasName"}"#,
    printcolumn = r#"{"name":"Key","type":"string","jsonPath":".spec.keyId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(
    "has(self.providerConfigRef) == has(oldSelf.providerConfigRef) && \
     (!has(self.providerConfigRef) || self.providerConfigRef == oldSelf.providerConfigRef)")
    .message("providerConfigRef is immutable; create a new KmsAlias to use another account"))]
#[serde(rename_all = "camelCase")]
pub struct KmsAliasSpec {
    /// Full name of the KMS alias, for example `alias/app-secrets`. It must start with `alias/`,
    /// followed by 1 to 255 letters, digits, `_`, `/` or `-`, and must not start with the
    /// reserved `alias/acs`. Alias names are unique per account and region. Immutable: to use
    /// another name, create a new KmsAlias.
    #[schemars(length(max = 512))]
    #[x_kube(
        validation = Rule::new("self.startsWith('alias/')")
            .message("aliasName must start with the prefix 'alias/'"),
        validation = Rule::new("size(self) >= 7 && size(self) <= 261")
            .message("aliasName must have 1 to 255 characters after 'alias/'"),
        validation = Rule::new("self.matches('^alias/[A-Za-z0-9_/-]*$')")
            .message("aliasName may contain only letters, digits, '_', '/' and '-' after 'alias/'"),
        validation = Rule::new("!self.startsWith('alias/acs')")
            .message("aliasName must not start with 'alias/acs', a prefix reserved for cloud services"),
        validation = Rule::new("self == oldSelf")
            .message("aliasName is immutable; create a new KmsAlias for another alias name")
    )]
    pub alias_name: String,

    /// The KMS key the alias points at: a key id such as `key-hzz62f1cb66fa42qo****` or a key
    /// ARN `acs:kms:<region>:<account>:key/<key id>` of the same account and region. Alias
    /// names are not accepted here. Changing it re-points the alias.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(
        validation = Rule::new("!self.startsWith('alias/')")
            .message("keyId must be a key id or key ARN, not an alias name"),
        validation = Rule::new("!self.matches('^acs:kms:[^:]*:[^:]*:alias/')")
            .message("keyId must be a key id or key ARN, not an alias ARN"),
        validation = Rule::new("!self.matches('\\\\s')")
            .message("keyId must not contain whitespace")
    )]
    pub key_id: String,

    /// The KmsProviderConfig (account and region) the alias lives in. Default: the config
    /// named `default`, or the operator's own region and identity if there is none.
    /// Immutable, because the operator could not clean up the alias in the old account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_config_ref: Option<ProviderConfigRef>,

    /// What happens to the KMS alias when this object is deleted: `Delete` it (only if this
    /// object owns it) or `Retain` it. Default: the operator's `--default-deletion-policy`,
    /// itself `Delete` unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// What to do when the owned alias was re-pointed or deleted out of band: `Correct` it
    /// (default) or only `Report` it in status, an event and a metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_policy: Option<DriftPolicy>,

    /// Take over an existing alias that points at another key and re-point it to `keyId`.
    /// Off by default: such an alias is reported as a conflict and never touched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub take_over_existing: bool,
}

/// What deleting the object does to the alias.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the alias, if this object owns it.
    Delete,
    /// Leave the alias in KMS.
    Retain,
}

/// What to do about drift.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum DriftPolicy {
    /// Put the alias back on `spec.keyId`.
    Correct,
    /// Only report the drift.
    Report,
}

/// A reference to a cluster-scoped KmsProviderConfig.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct ProviderConfigRef {
    /// Name of the KmsProviderConfig.
    pub name: String,
}

/// What the operator last observed and did. `observedGeneration` is 0 until the operator first
/// acts on the object.
// The default makes the API server show `observedGeneration: 0` before the first status write,
// so kstatus (Flux's health checks) reads a new object as in progress, not as current, in the
// moment before the operator has acted.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": 0}))]
pub struct KmsAliasStatus {
    /// The alias this object owns in KMS. Set once the operator created the alias or took over
    /// one that already pointed at the desired key; only an owned alias is ever re-pointed or
    /// deleted by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_name: Option<String>,
    /// The bare key id the alias was last confirmed to point at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// ARN of the alias, `acs:kms:<region>:<account>:alias/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_arn: Option<String>,
    /// The `metadata.generation` this status describes; 0 until the operator first acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Set just before the operator creates the alias, cleared once the result is recorded:
    /// if the answer is lost, an alias found on this key is known to be the operator's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_create: Option<PendingCreate>,
    /// kstatus-compatible conditions. `Ready`: the alias exists and points at `spec.keyId`.
    /// `Stalled`: the last failure needs a change outside the operator (spec, key, account).
    /// `Reconciling`: not Ready yet, and the operator is still working on it (creating,
    /// retrying a transient failure, waiting for the account's request budget).
    /// `Paused`: reconciliation is paused by annotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The marker written before CreateAlias.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCreate {
    /// The alias being created.
    pub alias_name: String,
    /// The key it is being created on.
    pub key_id: String,
}

/// One observation of the object's state, in the shape of `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, for example `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable PascalCase reason for the last transition.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl KmsAlias {
    /// The `Ready` condition, if any.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.condition("Ready")
    }

    /// A condition by type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the paused annotation is set to `"true"`, in any case (`True` from YAML habits
    /// pauses too; pausing by mistake is safer than not pausing when asked).
    pub fn paused(&self) -> bool {
        let value = self.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_PAUSED));
        value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

/// The CustomResourceDefinitions, each as YAML, with the file name they are committed under
/// in `crds/` and in the chart.
pub fn crds() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    use crate::providers::KmsProviderConfig;
    [KmsAlias::crd(), KmsProviderConfig::crd()]
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            serde_yaml::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}

/// All CRDs as one multi-document YAML stream.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    Ok(crds()?.into_iter().map(|(_, yaml)| yaml).collect::<Vec<_>>().join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crds_match_the_rust_types() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for (file, generated) in crds().expect("CRDs serialise") {
            for dir in ["crds", "charts/kms-alias-operator/crds"] {
                let path = root.join(dir).join(&file);
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(committed == generated, "{} is stale: run `make crds`", path.display());
            }
        }
    }

    #[test]
    fn schema_carries_the_admission_rules() {
        let yaml = crd_yaml().expect("CRD serialises");
        for needle in [
            "aliasName must start with the prefix 'alias/'",
            "aliasName is immutable",
            "self == oldSelf",
            "keyId must be a key id or key ARN",
        ] {
            assert!(yaml.contains(needle), "missing rule: {needle}");
        }
    }
}
