//! One owner per alias (rule 4): of all objects that name one alias in one account and region,
//! a deterministic winner, and waking the others when that changes.
//!
//! Places are told apart by provider config, or by the account and region learned from the
//! ARNs KMS returns, so two configs that reach one account count as one place.

use crate::controller::Context;
use crate::crd::KmsAlias;
use crate::providers::{Providers, arn_scope};
use crate::{Error, Result};
use kube::ResourceExt;

/// Where objects claim aliases: same provider config, or configs seen to reach the same
/// account and region (two configs may hold different credentials of one account).
struct Places<'a> {
    ctx: &'a Context,
    config: &'a str,
    scope: Option<String>,
}

impl<'a> Places<'a> {
    fn of(obj: &'a KmsAlias, ctx: &'a Context) -> Self {
        let mut places = Self { ctx, config: Providers::config_name(obj), scope: None };
        places.scope = places.scope_of(obj);
        places
    }

    /// `region:account` of an object: from the alias ARN it recorded, else its config's.
    fn scope_of(&self, o: &KmsAlias) -> Option<String> {
        let recorded = o.status.as_ref().and_then(|s| s.alias_arn.as_deref());
        recorded.and_then(arn_scope).or_else(|| self.ctx.providers.scope(Providers::config_name(o)))
    }

    /// Whether `o` is known to be in the same account and region.
    fn same(&self, o: &KmsAlias) -> bool {
        Providers::config_name(o) == self.config
            || (self.scope.is_some() && self.scope_of(o) == self.scope)
    }

    /// Whether `o` may be: the same, or not yet known.
    fn maybe_same(&self, o: &KmsAlias) -> bool {
        self.same(o) || self.scope.is_none() || self.scope_of(o).is_none()
    }
}

fn records(o: &KmsAlias, alias: &str) -> bool {
    o.status.as_ref().and_then(|s| s.alias_name.as_deref()) == Some(alias)
}

/// The winner among objects claiming the same alias in the same account and region, if it is
/// not `obj`: the one that recorded ownership, else the oldest, else the first by
/// namespace/name. Returns its `namespace/name` and whether it is being deleted.
pub(super) fn other_claimant(obj: &KmsAlias, ctx: &Context) -> Option<(String, bool)> {
    let alias = &obj.spec.alias_name;
    let places = Places::of(obj, ctx);
    let rank = |o: &KmsAlias| {
        (!records(o, alias), o.creation_timestamp().map(|t| t.0), o.namespace(), o.name_any())
    };
    let winner = ctx
        .aliases
        .state()
        .into_iter()
        .filter(|o| &o.spec.alias_name == alias && places.same(o))
        .min_by_key(|o| rank(o))?;
    let same = winner.uid() == obj.uid() && obj.uid().is_some();
    let name = format!("{}/{}", winner.namespace().unwrap_or_default(), winner.name_any());
    (!same).then(|| (name, winner.metadata.deletion_timestamp.is_some()))
}

/// Wakes other objects claiming this object's alias, which holds it now: when it has just
/// recorded ownership, every one that may be in the same account (one reached through another
/// config may learn only now that it is); else those known to be there that still record it.
/// Each must stand back at once, and drop its record, rather than at its next resync.
pub(super) fn nudge_rivals(obj: &KmsAlias, ctx: &Context, newly_owned: bool) {
    let alias = &obj.spec.alias_name;
    let places = Places::of(obj, ctx);
    for other in ctx.aliases.state() {
        let rival = if newly_owned {
            places.maybe_same(&other)
        } else {
            places.same(&other) && records(&other, alias)
        };
        if &other.spec.alias_name == alias && other.uid() != obj.uid() && rival {
            ctx.nudge(&other);
        }
    }
}

/// Fails with `AliasClaimed` when another object wins the claim on this alias.
pub(super) fn check_claim(obj: &KmsAlias, ctx: &Context) -> Result<()> {
    match other_claimant(obj, ctx) {
        Some((winner, leaving)) => {
            Err(Error::AliasClaimed { alias: obj.spec.alias_name.clone(), winner, leaving })
        }
        None => Ok(()),
    }
}
