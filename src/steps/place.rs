//! Where an object owns its alias. Ownership is of an alias in one account and region, the ones
//! in `status.aliasArn`. The provider behind an object can come to reach another account or
//! region without the object changing: a `default` config created under objects that used the
//! operator's flags, a config's Secret or region changed. An alias of the same name over there
//! is not the object's, and "not found" over there does not mean its own alias is gone. These
//! checks stop every write and delete with `ProviderChanged` until the provider reaches the
//! recorded place again.

use crate::controller::Context;
use crate::crd::KmsAlias;
use crate::kms::{self, ErrorKind};
use crate::providers::{Providers, arn_scope};
use crate::{Error, Result};

/// The `region:account` the object owns its alias in, once recorded.
pub fn recorded_place(obj: &KmsAlias) -> Option<String> {
    let status = obj.status.as_ref()?;
    status.alias_name.as_ref()?;
    status.alias_arn.as_deref().and_then(arn_scope)
}

fn changed(obj: &KmsAlias, recorded: String, reached: String) -> Error {
    Error::ProviderChanged { alias: obj.spec.alias_name.clone(), recorded, reached }
}

/// Fails when the client's region is not the one the object owns its alias in. Costs no call.
pub(super) fn check_region(obj: &KmsAlias, kms: &kms::Client) -> Result<()> {
    match recorded_place(obj) {
        Some(recorded) if recorded.split(':').next() != Some(kms.region()) => {
            Err(changed(obj, recorded, format!("region {}", kms.region())))
        }
        _ => Ok(()),
    }
}

/// Fails when KMS answered `arn` from another account or region than the one the object owns
/// its alias in. Either way the object's config is known to reach that place now (see
/// [`crate::providers::Providers::learn_scope`]).
pub(super) fn check_place(ctx: &Context, obj: &KmsAlias, arn: &str) -> Result<()> {
    ctx.providers.learn_scope(Providers::config_name(obj), arn);
    match (recorded_place(obj), arn_scope(arn)) {
        (Some(recorded), Some(reached)) if recorded != reached => {
            Err(changed(obj, recorded, reached))
        }
        _ => Ok(()),
    }
}

/// After the owned alias was not found: proves the provider still reaches the place the alias
/// is owned in, so "not found" means gone. The place is read from the key the alias was last
/// on, else from any key of the account. An account with no key at all cannot be placed, and
/// is taken for another: waiting with a reason beats deleting nothing and dropping the
/// finalizer over an alias that lives on elsewhere.
pub(super) async fn confirm_place(ctx: &Context, obj: &KmsAlias, kms: &kms::Client) -> Result<()> {
    let Some(recorded) = recorded_place(obj) else {
        return Ok(());
    };
    check_region(obj, kms)?;
    let last_key = obj.status.as_ref().and_then(|s| s.key_id.as_deref());
    if let Some(key) = last_key {
        match kms.describe_key(key).await {
            Ok(meta) => return check_place(ctx, obj, &meta.arn),
            Err(e) if e.kind() == ErrorKind::KeyNotFound => {}
            Err(source) => return Err(Error::DescribeKey { key: key.into(), source }),
        }
    }
    let keys = kms.list_keys_page(1, 1).await.map_err(|source| Error::ListKeys { source })?;
    match keys.first() {
        Some(key) => check_place(ctx, obj, &key.key_arn),
        None => {
            let reached = format!("an account with no keys in {}", kms.region());
            Err(changed(obj, recorded, reached))
        }
    }
}
