//! Conditions and the status write.
//!
//! Status is computed as a whole from what the reconciler confirmed, compared with what is
//! stored, and written by server-side apply only when it differs, so a reconcile that changes
//! nothing writes nothing and the operator never wakes itself up.

use crate::crd::{Condition, KmsAlias, KmsAliasStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

/// Field manager name of every write this operator makes.
pub const MANAGER: &str = "kms-alias-operator";
/// The condition type users wait on.
pub const READY: &str = "Ready";
/// kstatus: the object cannot progress without outside action.
pub const STALLED: &str = "Stalled";
/// kstatus: the operator is still working towards the spec (creating, retrying, waiting for
/// the account's budget).
pub const RECONCILING: &str = "Reconciling";
/// Reconciliation is paused by annotation.
pub const PAUSED: &str = "Paused";

/// Machine-readable reasons of the `Ready` condition, one per situation a user can see.
pub mod reason {
    /// The alias exists and points at `spec.keyId`.
    pub const ALIAS_READY: &str = "AliasReady";
    /// The spec breaks a rule the API server did not enforce.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The key in `spec.keyId` does not exist.
    pub const KEY_NOT_FOUND: &str = "KeyNotFound";
    /// The key is scheduled for deletion.
    pub const KEY_PENDING_DELETION: &str = "KeyPendingDeletion";
    /// The key is disabled (or awaiting key material) and will not be made a target.
    pub const KEY_DISABLED: &str = "KeyDisabled";
    /// The alias exists, points at another key and is not this object's.
    pub const ALIAS_OWNED_ELSEWHERE: &str = "AliasOwnedElsewhere";
    /// KMS rate limited the operator; it backs off and retries.
    pub const THROTTLED: &str = "Throttled";
    /// KMS refused the credentials or the permission.
    pub const ACCESS_DENIED: &str = "AccessDenied";
    /// The account's alias quota is used up.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// KMS refused a parameter the operator sent.
    pub const KMS_REJECTED: &str = "KmsRejectedRequest";
    /// KMS or the network failed; the operator retries.
    pub const KMS_UNAVAILABLE: &str = "KmsUnavailable";
    /// Deleting the alias failed; the finalizer stays until it succeeds.
    pub const DELETE_FAILED: &str = "DeleteFailed";
    /// No credentials could be obtained for the KMS call.
    pub const CREDENTIALS_UNAVAILABLE: &str = "CredentialsUnavailable";
    /// The KmsProviderConfig the object names does not exist or is unusable.
    pub const PROVIDER_CONFIG_INVALID: &str = "ProviderConfigInvalid";
    /// The owned alias was re-pointed or deleted out of band and `driftPolicy` is `Report`.
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    /// The provider now reaches another account or region than the one the alias is owned in.
    pub const PROVIDER_CHANGED: &str = "ProviderChanged";
    /// Another KmsAlias claims the same alias and wins the tie-break.
    pub const ALIAS_CLAIMED: &str = "AliasClaimedByOtherResource";
    /// Cleanup deleted the alias; the object waits for other finalizers.
    pub const ALIAS_DELETED: &str = "AliasDeleted";
    /// CreateAlias is about to be sent (the create marker is set).
    pub const CREATING: &str = "Creating";
    /// The paused annotation is set.
    pub const PAUSED: &str = "PausedByAnnotation";
    /// The Kubernetes API failed while reconciling.
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// The operator hit a bug on this object; it retries with backoff.
    pub const INTERNAL_ERROR: &str = "InternalError";
}

/// What the reconciler confirmed in KMS.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Confirmed {
    pub alias_name: Option<String>,
    pub key_id: Option<String>,
    pub alias_arn: Option<String>,
    pub pending_create: Option<crate::crd::PendingCreate>,
}

impl Confirmed {
    /// Carries over what the stored status already recorded.
    pub fn from_status(obj: &KmsAlias) -> Self {
        let status = obj.status.clone().unwrap_or_default();
        Self {
            alias_name: status.alias_name,
            key_id: status.key_id,
            alias_arn: status.alias_arn,
            pending_create: status.pending_create,
        }
    }
}

/// The `Ready` verdict of one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
    /// Not ready, and only a change outside the operator can fix it.
    pub stalled: bool,
}

impl Verdict {
    /// The alias is where the spec wants it.
    pub fn ready(message: String) -> Self {
        Self { ready: true, reason: reason::ALIAS_READY, message, stalled: false }
    }
}

/// Builds the full desired status, keeping each condition's `lastTransitionTime` while its
/// value holds.
pub fn desired(obj: &KmsAlias, confirmed: Confirmed, verdict: &Verdict) -> KmsAliasStatus {
    let generation = obj.meta().generation;
    let condition = |type_: &str, value: bool, reason: &str, message: String| {
        let value = if value { "True" } else { "False" };
        let since = obj
            .condition(type_)
            .filter(|c| c.status == value)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(now);
        Condition {
            type_: type_.to_owned(),
            status: value.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        }
    };
    // kstatus reads only Stalled and Reconciling (and observedGeneration), so one of them is
    // True whenever Ready is not: a tool that waits sees "failed" or "in progress", never a
    // premature "current". All three carry the verdict's reason.
    let stalled = verdict.stalled && !verdict.ready;
    let reconciling = !verdict.ready && !stalled;
    let message = |on: bool| if on { verdict.message.clone() } else { String::new() };
    let conditions = vec![
        condition(READY, verdict.ready, verdict.reason, verdict.message.clone()),
        condition(STALLED, stalled, verdict.reason, message(stalled)),
        condition(RECONCILING, reconciling, verdict.reason, message(reconciling)),
    ];
    KmsAliasStatus {
        alias_name: confirmed.alias_name,
        key_id: confirmed.key_id,
        alias_arn: confirmed.alias_arn,
        pending_create: confirmed.pending_create,
        observed_generation: generation,
        conditions,
    }
}

/// The stored status with a `Paused` condition added: nothing else is re-evaluated.
pub fn paused(obj: &KmsAlias) -> KmsAliasStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    let since = obj
        .condition(PAUSED)
        .filter(|c| c.status == "True")
        .map_or_else(now, |c| c.last_transition_time.clone());
    status.conditions.retain(|c| c.type_ != PAUSED);
    status.conditions.push(Condition {
        type_: PAUSED.to_owned(),
        status: "True".to_owned(),
        reason: reason::PAUSED.to_owned(),
        message: format!(
            "annotation {} is {:?}; no KMS call is made",
            crate::crd::ANNOTATION_PAUSED,
            obj.annotations().get(crate::crd::ANNOTATION_PAUSED).map_or("", |v| v.as_str()),
        ),
        last_transition_time: since,
        observed_generation: obj.meta().generation,
    });
    status
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes `status` if it differs from the stored one; returns whether it wrote.
pub async fn write(
    api: &Api<KmsAlias>,
    obj: &KmsAlias,
    status: KmsAliasStatus,
) -> Result<bool, kube::Error> {
    if obj.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let patch = json!({
        "apiVersion": KmsAlias::api_version(&()),
        "kind": KmsAlias::kind(&()),
        "status": status,
    });
    // Apply carries no resourceVersion, so a concurrent label edit cannot make it conflict.
    let params = PatchParams::apply(MANAGER).force();
    api.patch_status(&obj.name_any(), &params, &Patch::Apply(&patch)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KmsAliasSpec;

    fn object(ready: Option<(&str, &str)>) -> KmsAlias {
        let mut obj = KmsAlias::new(
            "app",
            KmsAliasSpec {
                alias_name: "alias/app".into(),
                key_id: "key-1".into(),
                provider_config_ref: None,
                deletion_policy: None,
                drift_policy: None,
                take_over_existing: false,
            },
        );
        obj.meta_mut().generation = Some(3);
        obj.status = ready.map(|(value, since)| KmsAliasStatus {
            conditions: vec![Condition {
                type_: READY.into(),
                status: value.into(),
                reason: "Whatever".into(),
                message: String::new(),
                last_transition_time: since.into(),
                observed_generation: Some(2),
            }],
            ..KmsAliasStatus::default()
        });
        obj
    }

    fn verdict(ready: bool) -> Verdict {
        Verdict { ready, stalled: false, ..Verdict::ready("m".into()) }
    }

    #[test]
    fn transition_time_kept_while_value_holds() {
        let obj = object(Some(("True", "2020-01-01T00:00:00Z")));
        let status = desired(&obj, Confirmed::default(), &verdict(true));
        assert_eq!(status.conditions[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.conditions[0].observed_generation, Some(3));
    }

    #[test]
    fn exactly_one_kstatus_state_holds() {
        let obj = object(None);
        let cases = [
            (
                true,
                false,
                [("Ready", "True"), ("Stalled", "False"), ("Reconciling", "False")],
                "ready",
            ),
            (
                false,
                true,
                [("Ready", "False"), ("Stalled", "True"), ("Reconciling", "False")],
                "stalled",
            ),
            (
                false,
                false,
                [("Ready", "False"), ("Stalled", "False"), ("Reconciling", "True")],
                "retrying",
            ),
            (
                true,
                true,
                [("Ready", "True"), ("Stalled", "False"), ("Reconciling", "False")],
                "ready wins",
            ),
        ];
        for (ready, stalled, want, why) in cases {
            let verdict = Verdict { ready, stalled, ..Verdict::ready("m".into()) };
            let status = desired(&obj, Confirmed::default(), &verdict);
            let got: Vec<(&str, &str)> =
                status.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn transition_time_moves_when_value_flips() {
        let obj = object(Some(("False", "2020-01-01T00:00:00Z")));
        let status = desired(&obj, Confirmed::default(), &verdict(true));
        assert_ne!(status.conditions[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(status.conditions[0].status, "True");
    }
}
