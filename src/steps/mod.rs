//! The apply and cleanup steps of a reconcile, against KMS.
//!
//! Apply: pause check → validate → one owner per alias ([`claims`]) → look up the alias →
//! check it is where the object owns it → plan (see [`crate::reconcile`]) → check the key
//! before any write → write, with a marker persisted before CreateAlias → status. Cleanup is
//! in [`cleanup`].

mod claims;
mod cleanup;
pub mod place;

pub use cleanup::cleanup;

use crate::controller::{Context, jittered};
use crate::crd::{ANNOTATION_DRIFT_INTERVAL, DriftPolicy, KmsAlias, PendingCreate};
use crate::kms::{self, ErrorKind, KeyArn, KeyMetadata, KeyState};
use crate::reconcile::{Plan, plan};
use crate::status::{self, Confirmed, Verdict, reason};
use crate::validate::{self, KeyRef, RuleViolation};
use crate::{Error, Result};
use claims::{check_claim, nudge_rivals};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use place::{check_place, check_region, confirm_place};
use std::time::Duration;
use tracing::info;

/// The apply step: converge, then record the outcome.
pub async fn apply(obj: &KmsAlias, ctx: &Context, api: &Api<KmsAlias>) -> Result<Action> {
    if obj.paused() {
        info!("paused by annotation; no KMS call");
        let status = status::paused(obj);
        status::write(api, obj, status).await.map_err(Error::WriteStatus)?;
        return Ok(Action::await_change());
    }
    let resync = match drift_interval(obj) {
        Ok(every) => every.unwrap_or(ctx.settings.resync),
        Err(error) => return Err(reported(obj, ctx, api, error).await),
    };
    match converge(obj, ctx, api, resync).await {
        Ok(confirmed) => {
            let owned_before = obj.status.as_ref().and_then(|s| s.alias_name.as_deref());
            let newly_owned =
                confirmed.alias_name.is_some() && owned_before != confirmed.alias_name.as_deref();
            let key = confirmed.key_id.clone().unwrap_or_default();
            let message = format!("alias {} points at key {key}", obj.spec.alias_name);
            let status = status::desired(obj, confirmed, &Verdict::ready(message));
            status::write(api, obj, status).await.map_err(Error::WriteStatus)?;
            nudge_rivals(obj, ctx, newly_owned);
            Ok(Action::requeue(jittered(resync)))
        }
        Err(error) => Err(reported(obj, ctx, api, error).await),
    }
}

/// The per-object drift-check interval from its annotation, if set.
fn drift_interval(obj: &KmsAlias) -> Result<Option<Duration>> {
    let Some(text) = obj.annotations().get(ANNOTATION_DRIFT_INTERVAL) else {
        return Ok(None);
    };
    parse_interval(text).map(Some).ok_or_else(|| {
        Error::InvalidSpec(RuleViolation(format!(
            "annotation {ANNOTATION_DRIFT_INTERVAL} must be a duration from 10s to 24h such as \
             90s, 10m or 1h, not {text:?}"
        )))
    })
}

/// Bounds of the drift-check interval annotation. Above a day, drift checks would be off in
/// all but name; the bound also keeps every timer derived from it in range.
const DRIFT_INTERVAL: std::ops::RangeInclusive<u64> = 10..=86_400;

fn parse_interval(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    let secs = number.parse::<u64>().ok()?.checked_mul(scale)?;
    DRIFT_INTERVAL.contains(&secs).then(|| Duration::from_secs(secs))
}

/// Shows a failed step in status (held back by the budget, or failed) and hands the error on
/// to the error policy.
pub(crate) async fn reported(
    obj: &KmsAlias,
    ctx: &Context,
    api: &Api<KmsAlias>,
    error: Error,
) -> Error {
    if error.paced().is_some() {
        report_paced(obj, api).await;
    } else {
        report_failure(obj, ctx, api, &error).await;
    }
    error
}

/// Records a failure in status, and in a Warning event when the reason is new. Best effort:
/// neither failing stops the caller.
async fn report_failure(obj: &KmsAlias, ctx: &Context, api: &Api<KmsAlias>, error: &Error) {
    let verdict = Verdict {
        ready: false,
        reason: error.reason(),
        message: error.user_message(),
        stalled: error.is_stalled(),
    };
    let previous = obj.ready_condition().map(|c| c.reason.clone());
    let mut confirmed = Confirmed::from_status(obj);
    if let Error::AliasClaimed { .. } = error {
        // The other object holds the alias: this one must never delete or move it.
        confirmed.alias_name = None;
        confirmed.alias_arn = None;
        confirmed.pending_create = None;
    }
    if let Error::CreateAlias { alias, key, source } = error {
        // A refusal KMS answered (4xx) created nothing; anything else (no answer, 5xx) may
        // have, so the marker written before the call stays.
        let refused = matches!(source, kms::Error::Api(api) if api.status < 500);
        confirmed.pending_create =
            (!refused).then(|| PendingCreate { alias_name: alias.clone(), key_id: key.clone() });
    }
    let status = status::desired(obj, confirmed, &verdict);
    if let Err(error) = status::write(api, obj, status).await {
        tracing::warn!(%error, "failed to write failure status");
    }
    if previous.as_deref() != Some(verdict.reason) {
        ctx.event(obj, EventType::Warning, verdict.reason, verdict.message).await;
    }
}

/// Tells the user of an object that has not converged why nothing happens yet: the account's
/// request budget is spent, so the operator held the call back (case 10). Being held back is
/// not a failure of the object: no event, and a Ready object or one that already says
/// Throttled keeps its status, so waiting never churns status. Best effort.
async fn report_paced(obj: &KmsAlias, api: &Api<KmsAlias>) {
    if obj.ready_condition().is_some_and(|c| c.status == "True" || c.reason == reason::THROTTLED) {
        return;
    }
    let verdict = Verdict {
        ready: false,
        reason: reason::THROTTLED,
        message: "waiting for the account's KMS request budget: calls are paced to stay under \
                  the quota"
            .to_owned(),
        stalled: false,
    };
    let status = status::desired(obj, Confirmed::from_status(obj), &verdict);
    if let Err(error) = status::write(api, obj, status).await {
        tracing::warn!(%error, "failed to write waiting status");
    }
}

/// Brings KMS in line with the spec and returns what was confirmed.
async fn converge(
    obj: &KmsAlias,
    ctx: &Context,
    api: &Api<KmsAlias>,
    resync: Duration,
) -> Result<Confirmed> {
    let alias = obj.spec.alias_name.as_str();
    validate::alias_name(alias).map_err(Error::InvalidSpec)?;
    let key = validate::key_ref(&obj.spec.key_id).map_err(Error::InvalidSpec)?;
    check_claim(obj, ctx)?;
    let kms = &ctx.providers.client_for(obj).await.map_err(|e| Error::Provider(Box::new(e)))?;
    let _slot =
        kms.work_slot().map_err(|source| Error::LookupAlias { alias: alias.into(), source })?;
    check_region(obj, kms)?;
    if let KeyRef::Arn(arn) = &key
        && arn.region != kms.region()
    {
        return Err(Error::InvalidSpec(RuleViolation(format!(
            "keyId is a key in region {}, but its provider is region {}; an alias and its key \
             must be in the same account and region",
            arn.region,
            kms.region()
        ))));
    }
    let status = obj.status.clone().unwrap_or_default();
    let recorded = status.alias_name.as_deref() == Some(alias);
    if steady(obj, alias, key.key_id()) {
        // A drift check with nothing changed here: the account's shared sweep answers it. Only
        // what the sweep does not clear is read again per object below.
        let swept = kms.swept_target(alias, resync / 2).await;
        if swept.as_ref().is_ok_and(|k| k.as_deref() == Some(key.key_id())) {
            return Ok(Confirmed::from_status(obj));
        }
    }
    let current = lookup_alias(kms, alias).await?;
    match &current {
        Some(meta) => {
            check_place(ctx, obj, &meta.arn)?;
            // Now the account is known: look again for a claimant reached through another
            // config.
            check_claim(obj, ctx)?;
        }
        // Our alias is missing: deleted out of band, or looked for in the wrong account.
        None if recorded => confirm_place(ctx, obj, kms).await?,
        None => {}
    }
    let current_key = current.as_ref().map(|m| m.key_id.as_str());
    // A lost CreateAlias answer: the marker proves an alias on the marked key is ours.
    let marked = status
        .pending_create
        .as_ref()
        .is_some_and(|p| p.alias_name == alias && Some(p.key_id.as_str()) == current_key);
    // Drift: the alias left the key this object last confirmed and still asks for.
    let confirmed_key = status.key_id.as_deref().filter(|k| *k == key.key_id());
    let drift = recorded && confirmed_key.is_some() && current_key != confirmed_key;
    let report_only = obj.spec.drift_policy == Some(DriftPolicy::Report);
    if drift && report_only {
        ctx.metrics.observe_drift();
        let found = current_key.map_or("deleted".to_owned(), |k| format!("re-pointed to {k}"));
        return Err(Error::Drift { alias: alias.into(), found, every: resync });
    }

    let step = plan(current_key, key.key_id(), recorded || marked);
    let target = match (step, current) {
        (Plan::InSync { adopt }, Some(meta)) => {
            check_same_key(&key, &meta)?;
            if marked && !recorded {
                // The CreateAlias whose answer was lost did create it.
                let note = format!("created alias {alias} pointing at {}", meta.key_id);
                ctx.event(obj, EventType::Normal, "Created", note).await;
            } else if adopt {
                let note =
                    format!("took over alias {alias}, which already points at {}", meta.key_id);
                ctx.event(obj, EventType::Normal, "Adopted", note).await;
            }
            meta
        }
        (Plan::Conflict { foreign_key }, _) if !obj.spec.take_over_existing => {
            return Err(Error::AliasOwnedElsewhere { alias: alias.into(), foreign_key });
        }
        (Plan::Conflict { foreign_key: from } | Plan::Repoint { from }, _) => {
            repoint(obj, ctx, kms, &key, &from, drift).await?
        }
        (Plan::Create | Plan::InSync { .. }, _) => {
            create(obj, ctx, api, kms, &key, drift || recorded).await?
        }
    };
    let alias_arn = KeyArn::parse(&target.arn).map(|arn| arn.alias_arn(alias));
    Ok(Confirmed {
        alias_name: Some(alias.into()),
        key_id: Some(target.key_id),
        alias_arn,
        pending_create: None,
    })
}

/// Re-points the alias from `from` to the spec's key, once that key passed the pre-flight.
/// `drift`: the alias had left the key this object put it on, out of band.
async fn repoint(
    obj: &KmsAlias,
    ctx: &Context,
    kms: &kms::Client,
    key: &KeyRef,
    from: &str,
    drift: bool,
) -> Result<KeyMetadata> {
    let alias = obj.spec.alias_name.as_str();
    let meta = usable_key(ctx, obj, kms, key).await?;
    kms.update_alias(alias, &meta.key_id).await.map_err(|source| Error::UpdateAlias {
        alias: alias.into(),
        key: meta.key_id.clone(),
        source,
    })?;
    let to = &meta.key_id;
    let (event, note) = if drift {
        ctx.metrics.observe_drift();
        let note =
            format!("put alias {alias} back on {to}: it had been re-pointed to {from} out of band");
        ("DriftCorrected", note)
    } else {
        ("Repointed", format!("re-pointed alias {alias} from {from} to {to}"))
    };
    info!(%from, %to, event, "re-pointed alias");
    ctx.event(obj, EventType::Normal, event, note).await;
    Ok(meta)
}

/// Creates the alias on the spec's key, once that key passed the pre-flight and the create
/// marker is persisted. `drift`: this object's alias had been deleted out of band.
async fn create(
    obj: &KmsAlias,
    ctx: &Context,
    api: &Api<KmsAlias>,
    kms: &kms::Client,
    key: &KeyRef,
    drift: bool,
) -> Result<KeyMetadata> {
    let alias = obj.spec.alias_name.as_str();
    let meta = usable_key(ctx, obj, kms, key).await?;
    check_claim(obj, ctx)?;
    mark_pending_create(obj, api, alias, &meta.key_id).await?;
    kms.create_alias(alias, &meta.key_id).await.map_err(|source| Error::CreateAlias {
        alias: alias.into(),
        key: meta.key_id.clone(),
        source,
    })?;
    let to = &meta.key_id;
    let (event, note) = if drift {
        ctx.metrics.observe_drift();
        (
            "DriftCorrected",
            format!("recreated alias {alias} on {to}: it had been deleted out of band"),
        )
    } else {
        ("Created", format!("created alias {alias} pointing at {to}"))
    };
    info!(key = %to, event, "created alias");
    ctx.event(obj, EventType::Normal, event, note).await;
    Ok(meta)
}

/// Whether the object is as it was at its last successful apply, so a reconcile now is only a
/// drift check.
fn steady(obj: &KmsAlias, alias: &str, key: &str) -> bool {
    let Some(status) = obj.status.as_ref() else {
        return false;
    };
    status.observed_generation == obj.metadata.generation
        && status.alias_name.as_deref() == Some(alias)
        && status.key_id.as_deref() == Some(key)
        && status.pending_create.is_none()
        && obj.ready_condition().is_some_and(|c| c.status == "True")
}

/// Persists the create marker before CreateAlias; without it, nothing is sent.
async fn mark_pending_create(
    obj: &KmsAlias,
    api: &Api<KmsAlias>,
    alias: &str,
    key: &str,
) -> Result<()> {
    let marker = PendingCreate { alias_name: alias.into(), key_id: key.into() };
    if obj.status.as_ref().and_then(|s| s.pending_create.as_ref()) == Some(&marker) {
        // Persisted by an earlier attempt; rewriting it would only flap `Ready`'s reason
        // between `Creating` and the failure that ended that attempt.
        return Ok(());
    }
    let mut confirmed = Confirmed::from_status(obj);
    confirmed.pending_create = Some(marker);
    let verdict = Verdict {
        ready: false,
        reason: reason::CREATING,
        message: format!("creating alias {alias} on key {key}"),
        stalled: false,
    };
    let status = status::desired(obj, confirmed, &verdict);
    status::write(api, obj, status).await.map_err(Error::WriteStatus)?;
    Ok(())
}

/// The key the alias points at now, or `None` when the alias does not exist.
async fn lookup_alias(kms: &kms::Client, alias: &str) -> Result<Option<KeyMetadata>> {
    // DescribeKey resolves an alias in one call, wherever it sits in ListAliases' pages.
    match kms.describe_key(alias).await {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == ErrorKind::AliasNotFound => Ok(None),
        Err(source) => Err(Error::LookupAlias { alias: alias.into(), source }),
    }
}

/// The pre-flight of every write: describes the desired key and checks it may become the
/// alias's target. It must exist, be Enabled, sit in the account and region the spec names,
/// and be where the object owns its alias (see [`place`]).
async fn usable_key(
    ctx: &Context,
    obj: &KmsAlias,
    kms: &kms::Client,
    key: &KeyRef,
) -> Result<KeyMetadata> {
    let meta = kms
        .describe_key(key.key_id())
        .await
        .map_err(|source| Error::DescribeKey { key: key.key_id().into(), source })?;
    check_same_key(key, &meta)?;
    check_place(ctx, obj, &meta.arn)?;
    match meta.key_state {
        KeyState::Enabled => Ok(meta),
        state => {
            let alias = obj.spec.alias_name.clone();
            Err(Error::KeyNotUsable { key: meta.key_id, alias, state })
        }
    }
}

/// For a spec given as an ARN: the described key must be that very ARN.
fn check_same_key(key: &KeyRef, meta: &KeyMetadata) -> Result<()> {
    match key {
        KeyRef::Arn(arn) if KeyArn::parse(&meta.arn).as_ref() != Some(arn) => {
            Err(Error::InvalidSpec(RuleViolation(format!(
                "keyId names {arn}, but the provider's account holds that key as {}; an alias \
                 and its key must be in the same account and region",
                meta.arn
            ))))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let cases = [
            ("90s", Some(90), "seconds"),
            ("10m", Some(600), "minutes"),
            ("1h", Some(3600), "hours"),
            ("5s", None, "below the 10 s floor"),
            ("24h", Some(86_400), "a day, the ceiling"),
            ("25h", None, "above a day"),
            ("5124095576030431h", None, "overflows a Duration's seconds once jittered"),
            ("18446744073709551615s", None, "u64::MAX"),
            ("99999999999999999999s", None, "beyond u64"),
            ("10", None, "no unit"),
            ("m", None, "no number"),
            ("1.5m", None, "no fractions"),
            ("-1m", None, "negative"),
        ];
        for (text, want, why) in cases {
            assert_eq!(parse_interval(text).map(|d| d.as_secs()), want, "{why}: {text}");
        }
    }
}
