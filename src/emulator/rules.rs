//! The pure rules behind the state: alias name format (section 7), the key state matrix
//! (section 5.12), CreateKey parameter values (section 5.7) and the emulator's key id format.

use super::error::ApiError;
use super::key::{Key, NewKey, format_time};
use crate::kms::KeyState;
use crate::validate;
use chrono::{DateTime, Duration, Utc};
use rand::Rng as _;

pub use crate::validate::ALIAS_PREFIX;
/// Shortest deletion window ScheduleKeyDeletion accepts, in days.
pub const MIN_PENDING_DAYS: u32 = 7;
/// Longest deletion window ScheduleKeyDeletion accepts, in days.
pub const MAX_PENDING_DAYS: u32 = 366;
/// Longest key id the emulator accepts for seeded keys.
const KEY_ID_MAX_LEN: usize = 128;

const KEY_SPECS: &[&str] = &[
    "Aliyun_AES_256",
    "Aliyun_AES_128",
    "Aliyun_AES_192",
    "Aliyun_SM4",
    "RSA_2048",
    "RSA_3072",
    "EC_P256",
    "EC_P256K",
    "EC_SM2",
];
const KEY_USAGES: &[&str] = &["ENCRYPT/DECRYPT", "SIGN/VERIFY"];
const ORIGINS: &[&str] = &["Aliyun_KMS", "EXTERNAL"];
const PROTECTION_LEVELS: &[&str] = &["SOFTWARE", "HSM"];

/// A key operation whose permission depends on the key's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOp {
    Enable,
    Disable,
    ScheduleDeletion,
    CancelDeletion,
    CreateAlias,
    /// UpdateAlias, judged on the new target key.
    UpdateAliasTarget,
    DeleteAlias,
}

/// The state matrix of section 5.12: may `op` run on a key in `state`?
pub fn check_state(op: KeyOp, state: KeyState) -> Result<(), ApiError> {
    use KeyState::{Disabled, Enabled, PendingDeletion};
    let allowed = match op {
        KeyOp::Enable | KeyOp::Disable => matches!(state, Enabled | Disabled),
        KeyOp::ScheduleDeletion | KeyOp::CreateAlias => state != PendingDeletion,
        KeyOp::CancelDeletion => state == PendingDeletion,
        KeyOp::UpdateAliasTarget if state == PendingDeletion => {
            return Err(ApiError::pending_deletion());
        }
        KeyOp::UpdateAliasTarget | KeyOp::DeleteAlias => true,
    };
    if allowed { Ok(()) } else { Err(ApiError::state_modified_failed()) }
}

/// Whether `text` looks like an alias ARN, `acs:kms:{region}:{uid}:alias/...`.
pub fn is_alias_arn(text: &str) -> bool {
    text.starts_with("acs:kms:") && text.contains(":alias/")
}

/// Section 7, shared with the operator's own checks: `alias/` then 1–255 of
/// `[A-Za-z0-9_/-]`; with `reject_reserved`, not `alias/acs...` either.
pub fn check_alias_name(name: &str, reject_reserved: bool) -> Result<(), ApiError> {
    let checked = if reject_reserved {
        validate::alias_name(name)
    } else {
        validate::alias_name_syntax(name)
    };
    checked.map_err(|_| ApiError::invalid_parameter("AliasName"))
}

/// Whether a caller-chosen key id is acceptable: 1–128 of `[A-Za-z0-9_-]`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=KEY_ID_MAX_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// A fresh key id: `key-`, a three-letter region code, 18 lowercase alphanumerics.
pub fn generate_key_id(region: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String =
        (0..18).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
    format!("key-{}{tail}", region_code(region))
}

/// Three letters standing for a region, as in real ids (`hzz` for Hangzhou).
fn region_code(region: &str) -> String {
    let known = [
        ("cn-hangzhou", "hzz"),
        ("cn-shanghai", "shh"),
        ("cn-beijing", "bjj"),
        ("cn-shenzhen", "szz"),
        ("cn-qingdao", "qdd"),
        ("cn-zhangjiakou", "zjk"),
        ("cn-hongkong", "hkk"),
        ("ap-southeast-1", "sgp"),
    ];
    if let Some((_, code)) = known.iter().find(|(name, _)| *name == region) {
        return (*code).to_owned();
    }
    let city = region.split_once('-').map_or(region, |(_, rest)| rest);
    let mut code: String =
        city.chars().filter(char::is_ascii_lowercase).take(3).collect::<String>();
    while code.len() < 3 {
        code.push('x');
    }
    code
}

/// Checks the optional CreateKey parameters and applies them to a default key.
pub fn apply_new_key(key: &mut Key, spec: &NewKey, now: DateTime<Utc>) -> Result<(), ApiError> {
    if let Some(description) = &spec.description {
        if description.chars().count() > 8192 {
            return Err(ApiError::invalid_parameter("Description"));
        }
        description.clone_into(&mut key.description);
    }
    if let Some(key_spec) = one_of(spec.key_spec.as_deref(), KEY_SPECS, "KeySpec")? {
        if key_spec.starts_with("EC_P256") {
            "SIGN/VERIFY".clone_into(&mut key.key_usage);
        }
        key_spec.clone_into(&mut key.key_spec);
    }
    if let Some(usage) = one_of(spec.key_usage.as_deref(), KEY_USAGES, "KeyUsage")? {
        usage.clone_into(&mut key.key_usage);
    }
    if let Some(level) =
        one_of(spec.protection_level.as_deref(), PROTECTION_LEVELS, "ProtectionLevel")?
    {
        level.clone_into(&mut key.protection_level);
    }
    if let Some(origin) = one_of(spec.origin.as_deref(), ORIGINS, "Origin")? {
        if origin == "EXTERNAL" {
            key.key_state = KeyState::PendingImport;
        }
        origin.clone_into(&mut key.origin);
    }
    apply_rotation(key, spec, now)
}

fn one_of<'a>(
    value: Option<&'a str>,
    allowed: &[&str],
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(ApiError::invalid_parameter(name)),
        other => Ok(other),
    }
}

fn apply_rotation(key: &mut Key, spec: &NewKey, now: DateTime<Utc>) -> Result<(), ApiError> {
    let enabled = match spec.enable_automatic_rotation.as_deref() {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(ApiError::invalid_parameter("EnableAutomaticRotation")),
    };
    if !enabled {
        return Ok(());
    }
    let interval = spec
        .rotation_interval
        .as_deref()
        .ok_or_else(|| ApiError::missing_parameter("RotationInterval"))?;
    let seconds = parse_interval(interval)
        .filter(|s| (7 * 86_400..=365 * 86_400).contains(s))
        .ok_or_else(|| ApiError::invalid_parameter("RotationInterval"))?;
    "Enabled".clone_into(&mut key.automatic_rotation);
    key.rotation_interval = Some(format!("{seconds}s"));
    key.next_rotation_date = Some(format_time(now + Duration::seconds(seconds)));
    Ok(())
}

/// `<int><unit>` with unit `d`, `h`, `m` or `s`, in seconds.
fn parse_interval(text: &str) -> Option<i64> {
    let unit = match text.chars().last()? {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    let number: i64 = text[..text.len() - 1].parse().ok()?;
    number.checked_mul(unit)
}
