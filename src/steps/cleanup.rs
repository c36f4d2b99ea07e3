//! The cleanup step: what deleting a `KmsAlias` does in KMS.
//!
//! It deletes only an alias the object owns (or one the create marker proves its own), only
//! where it owns it, and only under `deletionPolicy: Delete`. It never waits on the key's
//! state, never needs `spec.keyId`, and never depends on a status write or an event: the
//! finalizer goes once KMS confirmed, or at once when there is nothing of the object's there.

use super::claims::{nudge_rivals, other_claimant};
use super::place::{check_place, check_region, confirm_place};
use super::{lookup_alias, reported};
use crate::controller::Context;
use crate::crd::{DeletionPolicy, KmsAlias, PendingCreate};
use crate::kms::ErrorKind;
use crate::status::{self, Confirmed, Verdict, reason};
use crate::{Error, Result};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

/// The cleanup step. Deletes the alias only when the object owns it (or the create marker
/// proves it) and `deletionPolicy` is `Delete`; returns once KMS confirmed.
pub async fn cleanup(obj: &KmsAlias, ctx: &Context, api: &Api<KmsAlias>) -> Result<Action> {
    let alias = obj.spec.alias_name.as_str();
    if let Some((winner, _)) = other_claimant(obj, ctx) {
        info!(%winner, "alias held by another KmsAlias; removing the finalizer without a KMS call");
        return Ok(Action::await_change());
    }
    // Whatever happens to the alias now, objects waiting for this one to let go of it should
    // look again soon rather than at their next steady check.
    nudge_rivals(obj, ctx, true);
    let policy = obj.spec.deletion_policy.unwrap_or(ctx.settings.default_deletion_policy);
    if policy == DeletionPolicy::Retain {
        info!("deletionPolicy Retain: leaving the alias in KMS");
        return Ok(Action::await_change());
    }
    let status = obj.status.clone().unwrap_or_default();
    let recorded = status.alias_name.as_deref() == Some(alias);
    let marker = status.pending_create.filter(|p| p.alias_name == alias);
    if !recorded && marker.is_none() {
        info!("alias not owned by this object; removing the finalizer without a KMS call");
        return Ok(Action::await_change());
    }
    match delete_owned(obj, ctx, alias, recorded, marker).await {
        Ok(deleted) => {
            if deleted {
                info!("deleted alias");
                ctx.event(obj, EventType::Normal, "Deleted", format!("deleted alias {alias}"))
                    .await;
            }
            forget_ownership(obj, api, alias).await;
            Ok(Action::await_change())
        }
        // Best effort: during namespace teardown the status write may fail too.
        Err(error) => Err(reported(obj, ctx, api, error).await),
    }
}

/// Records that the alias is no longer this object's, so a cleanup that runs again (the
/// finalizer patch refused because the list moved) sends no second DeleteAlias: by then the
/// name may belong to someone else. Best effort: the finalizer goes either way.
async fn forget_ownership(obj: &KmsAlias, api: &Api<KmsAlias>, alias: &str) {
    let mut confirmed = Confirmed::from_status(obj);
    if confirmed.alias_name.is_none() && confirmed.pending_create.is_none() {
        return;
    }
    confirmed.alias_name = None;
    confirmed.pending_create = None;
    confirmed.key_id = None;
    confirmed.alias_arn = None;
    let verdict = Verdict {
        ready: false,
        reason: reason::ALIAS_DELETED,
        message: format!("alias {alias} deleted; waiting for the remaining finalizers"),
        stalled: false,
    };
    if let Err(error) = status::write(api, obj, status::desired(obj, confirmed, &verdict)).await {
        tracing::warn!(%error, "failed to record the deletion in status");
    }
}

/// Deletes the alias; `Ok(false)` when there was nothing of ours to delete.
async fn delete_owned(
    obj: &KmsAlias,
    ctx: &Context,
    alias: &str,
    recorded: bool,
    marker: Option<PendingCreate>,
) -> Result<bool> {
    let kms = ctx.providers.client_for(obj).await.map_err(|e| Error::Provider(Box::new(e)))?;
    let _slot =
        kms.work_slot().map_err(|source| Error::DeleteAlias { alias: alias.into(), source })?;
    check_region(obj, &kms)?;
    let current = lookup_alias(&kms, alias).await?;
    if recorded {
        // Delete only in the account and region the alias is owned in.
        match &current {
            Some(meta) => check_place(ctx, obj, &meta.arn)?,
            None => {
                confirm_place(ctx, obj, &kms).await?;
                return Ok(false);
            }
        }
    } else {
        // Only the marker speaks for us: delete only if the alias sits on the marked key (key
        // ids are unique across accounts, so this also pins the place).
        let marked_key = marker.map(|p| p.key_id);
        if current.map(|m| m.key_id) != marked_key {
            return Ok(false);
        }
    }
    match kms.delete_alias(alias).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AliasNotFound => Ok(false),
        Err(source) => Err(Error::DeleteAlias { alias: alias.into(), source }),
    }
}
