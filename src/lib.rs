//! kms-alias-operator: keeps Alibaba Cloud KMS aliases in line with `KmsAlias` objects.
//!
//! Module map:
//! - [`crd`]: the `KmsAlias` API type and its admission rules.
//! - [`validate`]: the KMS identifier rules as pure functions.
//! - [`controller`]: the kube-runtime wiring, finalizer, error policy and events.
//! - [`steps`]: the apply and cleanup steps against KMS.
//! - [`reconcile`]: what to do with an alias, as pure functions.
//! - [`status`]: conditions and the status write.
//! - [`metrics`]: Prometheus metrics and the health endpoints.
//! - [`providers`]: the `KmsProviderConfig` kind: accounts, regions, credentials.
//! - [`config_guard`]: keeps a `KmsProviderConfig` while `KmsAlias` objects use it.
//! - [`kms`]: the signed KMS client.
//! - [`emulator`]: the local KMS emulator served by the `kms-emulator` binary.
//! - [`testenv`]: a local etcd + kube-apiserver control plane for tests and the demo.

pub mod config_guard;
pub mod controller;
pub mod crd;
pub mod emulator;
pub mod kms;
pub mod metrics;
pub mod providers;
pub mod reconcile;
pub mod status;
pub mod steps;
pub mod testenv;
pub mod validate;

use crate::kms::{ErrorKind, KeyState};
use crate::status::reason;
use crate::validate::RuleViolation;
use std::error::Error as _;

/// Everything a reconcile can fail with. Messages name the failed step; causes are sources.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec breaks a rule; only a spec change can fix it.
    #[error("invalid spec: {0}")]
    InvalidSpec(RuleViolation),
    /// Reading the alias's current target failed.
    #[error("failed to look up alias {alias}")]
    LookupAlias {
        alias: String,
        #[source]
        source: kms::Error,
    },
    /// Reading the desired key failed.
    #[error("failed to describe key {key}")]
    DescribeKey {
        key: String,
        #[source]
        source: kms::Error,
    },
    /// The desired key exists but its state rules it out as a target.
    #[error("key {key} is {state} and cannot become the target of alias {alias}")]
    KeyNotUsable { key: String, alias: String, state: KeyState },
    /// CreateAlias failed.
    #[error("failed to create alias {alias} on key {key}")]
    CreateAlias {
        alias: String,
        key: String,
        #[source]
        source: kms::Error,
    },
    /// UpdateAlias failed.
    #[error("failed to re-point alias {alias} to key {key}")]
    UpdateAlias {
        alias: String,
        key: String,
        #[source]
        source: kms::Error,
    },
    /// DeleteAlias failed.
    #[error("failed to delete alias {alias}")]
    DeleteAlias {
        alias: String,
        #[source]
        source: kms::Error,
    },
    /// Listing the account's keys (to learn which account the provider reaches) failed.
    #[error("failed to list keys")]
    ListKeys {
        #[source]
        source: kms::Error,
    },
    /// The object owns its alias in one account and region, but its provider now reaches
    /// another: the alias of that name there is not this object's.
    #[error(
        "alias {alias} is owned in {recorded} (region:account), but this object's provider now \
         reaches {reached}; the operator neither writes nor deletes there. Point the provider \
         back at {recorded}, or set deletionPolicy: Retain and delete this object to leave the \
         alias behind"
    )]
    ProviderChanged { alias: String, recorded: String, reached: String },
    /// The alias exists on another key and this object does not own it.
    #[error(
        "alias {alias} already exists and points at key {foreign_key}; it is not owned by this \
         object, so the operator will not change or delete it"
    )]
    AliasOwnedElsewhere { alias: String, foreign_key: String },
    /// The owned alias drifted and `driftPolicy: Report` forbids correcting it.
    #[error("alias {alias} drifted ({found}); driftPolicy is Report, so it is left as is")]
    Drift {
        alias: String,
        found: String,
        /// The object's drift-check interval: when to look again.
        every: std::time::Duration,
    },
    /// Another object claims the same alias and wins the tie-break.
    #[error(
        "alias {alias} is claimed by KmsAlias {winner}, which owns it or is older; this object \
         makes no KMS write until that one is gone{}",
        if *leaving { " (it is being deleted)" } else { "" }
    )]
    AliasClaimed {
        alias: String,
        winner: String,
        /// The winner is being deleted: look again soon.
        leaving: bool,
    },
    /// No KMS client could be had for the object's account and region.
    #[error("failed to resolve the KMS provider")]
    Provider(#[source] Box<providers::ProviderError>),
    /// Writing status failed.
    #[error("failed to write status")]
    WriteStatus(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("failed to update the finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The reconcile panicked: a bug in the operator, confined to this object.
    #[error("internal error while reconciling (a bug in the operator, please report it): {0}")]
    Panicked(String),
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn kms(&self) -> Option<&kms::Error> {
        match self {
            Self::LookupAlias { source, .. }
            | Self::DescribeKey { source, .. }
            | Self::CreateAlias { source, .. }
            | Self::UpdateAlias { source, .. }
            | Self::DeleteAlias { source, .. }
            | Self::ListKeys { source } => Some(source),
            _ => None,
        }
    }

    /// The `Ready` reason this failure shows users, also used for events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => reason::INVALID_SPEC,
            Self::AliasOwnedElsewhere { .. } => reason::ALIAS_OWNED_ELSEWHERE,
            Self::KeyNotUsable { state: KeyState::PendingDeletion, .. } => {
                reason::KEY_PENDING_DELETION
            }
            Self::KeyNotUsable { .. } => reason::KEY_DISABLED,
            Self::DeleteAlias { .. } => reason::DELETE_FAILED,
            Self::Provider(_) => reason::PROVIDER_CONFIG_INVALID,
            Self::Drift { .. } => reason::DRIFT_DETECTED,
            Self::AliasClaimed { .. } => reason::ALIAS_CLAIMED,
            Self::ProviderChanged { .. } => reason::PROVIDER_CHANGED,
            Self::WriteStatus(_) | Self::Finalizer(_) => reason::KUBERNETES_ERROR,
            Self::Panicked(_) => reason::INTERNAL_ERROR,
            _ => match self.kms().map(kms::Error::kind) {
                Some(ErrorKind::KeyNotFound) => reason::KEY_NOT_FOUND,
                Some(ErrorKind::KeyNotUsable) => reason::KEY_PENDING_DELETION,
                Some(ErrorKind::LimitExceeded) => reason::QUOTA_EXCEEDED,
                Some(ErrorKind::Throttled) => reason::THROTTLED,
                Some(ErrorKind::Auth) => reason::ACCESS_DENIED,
                Some(ErrorKind::InvalidParameter) => reason::KMS_REJECTED,
                Some(ErrorKind::CredentialsUnavailable) => reason::CREDENTIALS_UNAVAILABLE,
                _ => reason::KMS_UNAVAILABLE,
            },
        }
    }

    /// Whether the same reconcile may succeed soon without a spec or config change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::WriteStatus(_) | Self::Finalizer(_) => true,
            _ => self.kms().is_some_and(|e| {
                // A lost race (alias created or deleted meanwhile) settles on the next pass.
                let kind = e.kind();
                kind.is_transient()
                    || matches!(kind, ErrorKind::AliasNotFound | ErrorKind::AlreadyExists)
            }),
        }
    }

    /// When the operator held the call back itself to stay within the account's budget:
    /// how long until the budget frees up. Pacing is not a failure of the object.
    pub fn paced(&self) -> Option<std::time::Duration> {
        self.kms().and_then(kms::Error::retry_after)
    }

    /// kstatus `Stalled`: progress needs a change outside the operator (spec, key, account,
    /// another object, or, for drift under `driftPolicy: Report`, a human putting the alias
    /// back). Everything else is `Reconciling`.
    pub fn is_stalled(&self) -> bool {
        // A bug is retried like any failure; it is not the user's to fix.
        !self.is_transient() && !matches!(self, Self::Panicked(_))
    }

    /// For waiting states that are not failures: how often to look again, without backoff.
    pub fn recheck_interval(&self) -> Option<std::time::Duration> {
        match self {
            Self::Drift { every, .. } => Some(*every),
            // A winner on its way out is usually gone within seconds; else it may hold on for
            // good, and a claim is re-checked at a steady pace (its deletion wakes this one).
            Self::AliasClaimed { leaving: true, .. } => Some(std::time::Duration::from_secs(3)),
            Self::AliasClaimed { .. } => Some(std::time::Duration::from_secs(30)),
            // A missing config costs no call to look for again (it is in the watch cache), and
            // one created just now may not be there yet. A missing or bad Secret is read from
            // the API server, so that waits on the backoff instead.
            Self::Provider(e) if matches!(**e, providers::ProviderError::NotFound(_)) => {
                Some(std::time::Duration::from_secs(10))
            }
            _ => None,
        }
    }

    /// Whether only a change to the object can fix this; such failures are not retried.
    pub fn needs_spec_change(&self) -> bool {
        matches!(self, Self::InvalidSpec(_))
    }

    /// The message for status and events: the whole cause chain, without request ids, so
    /// it stays equal from one retry to the next.
    pub fn user_message(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(err) = cause {
            if let Some(kms::Error::Api(api)) = err.downcast_ref::<kms::Error>() {
                text.push_str(&format!(": {}: {}", api.code, api.message));
                break;
            }
            let (own, last) = own_text(err);
            push_cause(&mut text, &without_request_ids(&own));
            if last {
                break;
            }
            cause = err.source();
        }
        text
    }
}

/// An error and its whole source chain on one line, `outer: cause: root cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let (mut text, mut last) = own_text(error);
    let mut source = error.source();
    while let (false, Some(cause)) = (last, source) {
        let own;
        (own, last) = own_text(cause);
        push_cause(&mut text, &own);
        source = cause.source();
    }
    text
}

fn push_cause(text: &mut String, cause: &str) {
    if !cause.is_empty() {
        text.push_str(": ");
        text.push_str(cause);
    }
}

/// What one error of a chain says itself, and whether the chain should end with it. Many
/// errors repeat their source's text after their own; that part is dropped, since the source
/// follows. A Kubernetes API error reads as its message and reason, not as kube's dump of the
/// whole `Status`, and ends the chain (the `Status` under it says the same).
fn own_text(err: &(dyn std::error::Error + 'static)) -> (String, bool) {
    let kube_error = err
        .downcast_ref::<kube::Error>()
        .or_else(|| err.downcast_ref::<Box<kube::Error>>().map(|boxed| &**boxed));
    if let Some(kube::Error::Api(status)) = kube_error {
        return (format!("{} ({})", status.message, status.reason), true);
    }
    let text = err.to_string();
    let inner = err.source().map(|source| source.to_string()).unwrap_or_default();
    match text.strip_suffix(inner.as_str()) {
        Some(head) if !inner.is_empty() => (head.trim_end_matches([':', ' ']).to_owned(), false),
        _ => (text, false),
    }
}

/// Drops ` (request id …)` parts, which change on every retry and would make status churn.
fn without_request_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(" (request id ") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{Error, without_request_ids};
    use crate::providers::ProviderError;

    #[test]
    fn a_source_repeated_in_its_parent_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to remove finalizer: {0}")]
        struct Outer(#[source] kube::Error);
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "code": 422, "reason": "Invalid", "message": "the list moved",
        }))
        .expect("status");
        let error = Outer(kube::Error::Api(Box::new(status)));
        let text = super::error_chain(&error);
        assert_eq!(text, "failed to remove finalizer: the list moved (Invalid)");
    }

    #[test]
    fn kubernetes_api_errors_read_as_their_message() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 404, "reason": "NotFound",
            "message": "secrets \"tenant-ak\" not found",
        }))
        .expect("status");
        let error = Error::Provider(Box::new(ProviderError::ReadSecret {
            config: "tenant".into(),
            secret: "team-y/tenant-ak".into(),
            source: Box::new(kube::Error::Api(Box::new(status))),
        }));
        let message = error.user_message();
        assert!(message.ends_with(": secrets \"tenant-ak\" not found (NotFound)"), "{message}");
        assert!(message.contains("team-y/tenant-ak"), "{message}");
        assert!(!message.contains("Status {"), "{message}");
    }

    #[test]
    fn request_ids_are_dropped() {
        let cases = [
            ("a failed (request id 123) then", "a failed then", "middle"),
            ("x (request id r-1)", "x", "end"),
            ("no id here", "no id here", "nothing to drop"),
            ("a (request id 1) b (request id 2)", "a b", "two"),
        ];
        for (input, want, why) in cases {
            assert_eq!(without_request_ids(input), want, "{why}");
        }
    }
}
