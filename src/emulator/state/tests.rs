//! Table tests of the KMS semantics: the state matrix, alias rules, paging and quotas.

use super::*;
use chrono::TimeZone as _;

const SCOPE: Scope<'static> = Scope { account: "1234567890123456", region: "cn-hangzhou" };
const OTHER_REGION: Scope<'static> = Scope { account: "1234567890123456", region: "cn-shanghai" };

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 20, 6, 34, 21).unwrap()
}

/// Keys `key-enabled`, `key-disabled`, `key-import`, `key-pending` (with alias `alias/pending`)
/// and alias `alias/enabled` on `key-enabled`.
fn fixture() -> KmsState {
    let mut state = KmsState::default();
    for (id, key_state) in [
        ("key-enabled", KeyState::Enabled),
        ("key-disabled", KeyState::Disabled),
        ("key-import", KeyState::PendingImport),
        ("key-pending", KeyState::Enabled),
    ] {
        state.insert_key(SCOPE, Some(id), key_state, now()).unwrap();
    }
    state.create_alias(SCOPE, "alias/enabled", "key-enabled").unwrap();
    state.create_alias(SCOPE, "alias/pending", "key-pending").unwrap();
    state.schedule_key_deletion(SCOPE, "key-pending", 7, now()).unwrap();
    state
}

fn code<T>(result: Result<T, ApiError>) -> Option<String> {
    result.err().map(|e| e.code)
}

#[test]
fn state_matrix_follows_section_5_12() {
    use KeyState::{Disabled, Enabled, PendingDeletion, PendingImport};
    const SMF: Option<&str> = Some("Rejected.StateModifiedFailed");
    let cases: &[(KeyOp, [Option<&str>; 4], &str)] = &[
        (KeyOp::Enable, [None, None, SMF, SMF], "enable only from enabled/disabled"),
        (KeyOp::Disable, [None, None, SMF, SMF], "disable only from enabled/disabled"),
        (KeyOp::ScheduleDeletion, [None, None, SMF, None], "schedule unless already pending"),
        (KeyOp::CancelDeletion, [SMF, SMF, None, SMF], "cancel only when pending deletion"),
        (KeyOp::CreateAlias, [None, None, SMF, None], "no new alias on a dying key"),
        (
            KeyOp::UpdateAliasTarget,
            [None, None, Some("Rejected.PendingDeletion"), None],
            "retarget refuses a dying target with its own code",
        ),
        (KeyOp::DeleteAlias, [None, None, None, None], "delete alias always works"),
    ];
    for (op, wants, reason) in cases {
        for (state, want) in [Enabled, Disabled, PendingDeletion, PendingImport].iter().zip(wants) {
            let got = code(rules::check_state(*op, *state));
            assert_eq!(got.as_deref(), *want, "{op:?} on {state}: {reason}");
        }
    }
}

#[test]
fn alias_name_rules_follow_section_7() {
    let long_ok = format!("alias/{}", "a".repeat(255));
    let too_long = format!("alias/{}", "a".repeat(256));
    let cases: &[(&str, bool, bool, &str)] = &[
        ("alias/demo", true, true, "plain name"),
        ("alias/a", true, true, "one character after the prefix"),
        (&long_ok, true, true, "255 characters after the prefix"),
        (&too_long, true, false, "256 characters after the prefix"),
        ("alias/", true, false, "nothing after the prefix"),
        ("demo", true, false, "prefix missing"),
        ("Alias/demo", true, false, "prefix is case-sensitive"),
        ("alias/team/app_key-1", true, true, "slash, underscore, hyphen allowed"),
        ("alias/has space", true, false, "space not allowed"),
        ("alias/dot.name", true, false, "dot not allowed"),
        ("alias/ключ", true, false, "non-ASCII letters not allowed"),
        ("alias/acs/oss", true, false, "reserved service prefix"),
        ("alias/acsfoo", true, false, "reserved prefix is a plain prefix match"),
        ("alias/acs/oss", false, true, "reserved names pass the format-only check"),
        ("alias/ACS", true, true, "reserved prefix is case-sensitive"),
    ];
    for (name, reserved, ok, reason) in cases {
        let got = rules::check_alias_name(name, *reserved);
        assert_eq!(got.is_ok(), *ok, "{name}: {reason}");
        if let Err(e) = got {
            assert_eq!((e.code.as_str(), e.status), ("InvalidParameter", 400), "{reason}");
        }
    }
}

type Op = fn(&mut KmsState) -> Result<(), ApiError>;

#[test]
fn actions_end_in_documented_codes() {
    let cases: &[(Op, Option<&str>, &str)] = &[
        (|s| s.create_alias(SCOPE, "alias/n", "key-enabled"), None, "create on enabled"),
        (|s| s.create_alias(SCOPE, "alias/n", "key-disabled"), None, "create on disabled"),
        (|s| s.create_alias(SCOPE, "alias/n", "key-import"), None, "create on pending import"),
        (
            |s| s.create_alias(SCOPE, "alias/n", "key-pending"),
            Some("Rejected.StateModifiedFailed"),
            "create on pending deletion",
        ),
        (
            |s| s.create_alias(SCOPE, "alias/enabled", "key-disabled"),
            Some("AliasAlreadyExists"),
            "duplicate name",
        ),
        (
            |s| s.create_alias(SCOPE, "alias/n", "key-missing"),
            Some("Forbidden.KeyNotFound"),
            "unknown key",
        ),
        (
            |s| {
                s.create_alias(
                    SCOPE,
                    "alias/n",
                    "acs:kms:cn-hangzhou:1234567890123456:key/key-enabled",
                )
            },
            None,
            "key ARN of the same scope",
        ),
        (
            |s| {
                s.create_alias(
                    SCOPE,
                    "alias/n",
                    "acs:kms:cn-beijing:1234567890123456:key/key-enabled",
                )
            },
            Some("Forbidden.KeyNotFound"),
            "key ARN of another region",
        ),
        (
            |s| s.create_alias(SCOPE, "alias/n", "alias/enabled"),
            Some("Unsupported.Alias"),
            "alias where a key is needed",
        ),
        (
            |s| s.create_alias(SCOPE, "alias/acs/kms", "key-enabled"),
            Some("InvalidParameter"),
            "reserved name",
        ),
        (
            |s| s.create_alias(OTHER_REGION, "alias/n", "key-enabled"),
            Some("Forbidden.KeyNotFound"),
            "keys are per region",
        ),
        (|s| s.update_alias(SCOPE, "alias/enabled", "key-import"), None, "retarget to import"),
        (|s| s.update_alias(SCOPE, "alias/pending", "key-enabled"), None, "old key state ignored"),
        (
            |s| s.update_alias(SCOPE, "alias/enabled", "key-pending"),
            Some("Rejected.PendingDeletion"),
            "retarget to pending deletion",
        ),
        (
            |s| s.update_alias(SCOPE, "alias/nope", "key-enabled"),
            Some("Forbidden.AliasNotFound"),
            "update missing alias",
        ),
        (
            |s| s.update_alias(SCOPE, "alias/enabled", "key-missing"),
            Some("Forbidden.KeyNotFound"),
            "update to unknown key",
        ),
        (|s| s.delete_alias(SCOPE, "alias/pending"), None, "delete alias of a dying key"),
        (
            |s| s.delete_alias(SCOPE, "alias/nope"),
            Some("Forbidden.AliasNotFound"),
            "delete missing alias",
        ),
        (|s| s.delete_alias(SCOPE, "nope"), Some("InvalidParameter"), "delete bad name"),
        (|s| s.set_enabled(SCOPE, "key-disabled", true), None, "enable disabled"),
        (|s| s.set_enabled(SCOPE, "key-enabled", true), None, "enable is idempotent"),
        (
            |s| s.set_enabled(SCOPE, "key-pending", false),
            Some("Rejected.StateModifiedFailed"),
            "disable pending deletion",
        ),
        (
            |s| s.set_enabled(SCOPE, "alias/enabled", false),
            Some("Unsupported.Alias"),
            "management calls take no alias",
        ),
        (
            |s| s.schedule_key_deletion(SCOPE, "key-enabled", 6, now()),
            Some("InvalidParameter"),
            "window below 7 days",
        ),
        (|s| s.schedule_key_deletion(SCOPE, "key-import", 366, now()), None, "366-day window"),
        (
            |s| s.schedule_key_deletion(SCOPE, "key-enabled", 367, now()),
            Some("InvalidParameter"),
            "window above 366 days",
        ),
        (
            |s| s.schedule_key_deletion(SCOPE, "key-pending", 7, now()),
            Some("Rejected.StateModifiedFailed"),
            "schedule twice",
        ),
        (
            |s| s.cancel_key_deletion(SCOPE, "key-enabled"),
            Some("Rejected.StateModifiedFailed"),
            "cancel a live key",
        ),
        (|s| s.cancel_key_deletion(SCOPE, "key-pending"), None, "cancel pending deletion"),
    ];
    for (op, want, reason) in cases {
        let mut state = fixture();
        assert_eq!(code(op(&mut state)).as_deref(), *want, "{reason}");
    }
}

#[test]
fn describe_key_accepts_id_arn_and_alias() {
    let state = fixture();
    let arn = "acs:kms:cn-hangzhou:1234567890123456:key/key-enabled";
    let alias_arn = "acs:kms:cn-hangzhou:1234567890123456:alias/enabled";
    let cases: &[(&str, Result<&str, &str>, &str)] = &[
        ("key-enabled", Ok("key-enabled"), "bare key id"),
        (arn, Ok("key-enabled"), "key ARN"),
        ("alias/enabled", Ok("key-enabled"), "alias name"),
        (alias_arn, Ok("key-enabled"), "alias ARN"),
        ("alias/pending", Ok("key-pending"), "works in any state"),
        ("alias/nope", Err("Forbidden.AliasNotFound"), "unknown alias"),
        ("key-nope", Err("Forbidden.KeyNotFound"), "unknown key"),
        ("acs:kms:cn-hangzhou:999:key/key-enabled", Err("Forbidden.KeyNotFound"), "other account"),
    ];
    for (input, want, reason) in cases {
        let got = state.describe_key(SCOPE, input).map(|k| k.key_id).map_err(|e| e.code);
        assert_eq!(got.as_ref().map(String::as_str).map_err(String::as_str), *want, "{reason}");
    }
    let pending = state.describe_key(SCOPE, "key-pending").unwrap();
    assert_eq!(pending.delete_date.as_deref(), Some("2024-05-27T06:34:21Z"));
    assert_eq!(pending.arn, "acs:kms:cn-hangzhou:1234567890123456:key/key-pending");
}

#[test]
fn cancel_deletion_restores_enabled_and_clears_date() {
    let mut state = fixture();
    state.set_enabled(SCOPE, "key-disabled", false).unwrap();
    state.schedule_key_deletion(SCOPE, "key-disabled", 30, now()).unwrap();
    state.cancel_key_deletion(SCOPE, "key-disabled").unwrap();
    let key = state.describe_key(SCOPE, "key-disabled").unwrap();
    assert_eq!((key.key_state, key.delete_date), (KeyState::Enabled, None));
}

#[test]
fn lists_page_sorted_with_totals() {
    let mut state = fixture();
    for i in 0..25 {
        state.create_alias(SCOPE, &format!("alias/p{i:02}"), "key-disabled").unwrap();
    }
    let cases = [
        (1, 10, 10, "alias/enabled", "first page is full"),
        (3, 10, 7, "alias/p19", "last page holds the rest (27 aliases)"),
        (4, 10, 0, "", "past the end is empty, not an error"),
        (1, 100, 27, "alias/enabled", "one big page"),
    ];
    for (number, size, len, first, reason) in cases {
        let page = state.list_aliases(SCOPE, Paging { number, size });
        assert_eq!((page.items.len(), page.total), (len, 27), "{reason}");
        let got_first = page.items.first().map_or("", |a| a.alias_name.as_str());
        assert_eq!(got_first, first, "{reason}");
    }
    let by_key = state
        .list_aliases_by_key_id(SCOPE, "key-disabled", Paging { number: 1, size: 100 })
        .unwrap();
    assert_eq!(by_key.total, 25);
    assert!(by_key.items.iter().all(|a| a.key_id == "key-disabled"));
    let first = &by_key.items[0];
    assert_eq!(first.alias_arn, "acs:kms:cn-hangzhou:1234567890123456:alias/p00");
    let keys = state.list_keys(SCOPE, Paging { number: 1, size: 2 }, |_| true);
    assert_eq!((keys.total, keys.items.len()), (4, 2));
    assert!(state.list_aliases(OTHER_REGION, Paging { number: 1, size: 10 }).items.is_empty());
}

#[test]
fn alias_quota_is_300_per_region() {
    let mut state = fixture();
    for i in 2..ALIAS_QUOTA {
        state.create_alias(SCOPE, &format!("alias/q{i}"), "key-enabled").unwrap();
    }
    let over = state.create_alias(SCOPE, "alias/one-too-many", "key-enabled");
    assert_eq!(code(over).as_deref(), Some("Rejected.LimitExceeded"));
    state.insert_key(OTHER_REGION, Some("key-sh"), KeyState::Enabled, now()).unwrap();
    state.create_alias(OTHER_REGION, "alias/one-too-many", "key-sh").unwrap();
}

#[test]
fn remove_key_drops_its_aliases() {
    let mut state = fixture();
    state.create_alias(SCOPE, "alias/second", "key-enabled").unwrap();
    let removed = state.remove_key(SCOPE, "key-enabled").unwrap();
    assert_eq!(removed, ["alias/enabled", "alias/second"]);
    assert!(state.remove_key(SCOPE, "key-enabled").is_none());
    let left: Vec<&String> = state.region(SCOPE).unwrap().aliases().keys().collect();
    assert_eq!(left, ["alias/pending"]);
}

#[test]
fn create_key_applies_parameters() {
    let mut state = fixture();
    let key = state.create_key(SCOPE, &NewKey::default(), now()).unwrap();
    assert_eq!(key.key_id.len(), 25, "key- plus 21 characters: {}", key.key_id);
    assert!(key.key_id.starts_with("key-hzz"), "{}", key.key_id);
    assert!(key.key_id[4..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_eq!(key.arn, SCOPE.key_arn(&key.key_id));
    assert_eq!(
        (key.key_state, key.creation_date.as_str()),
        (KeyState::Enabled, "2024-05-20T06:34:21Z")
    );

    let external = NewKey { origin: Some("EXTERNAL".into()), ..NewKey::default() };
    let key = state.create_key(SCOPE, &external, now()).unwrap();
    assert_eq!(key.key_state, KeyState::PendingImport);

    let rotating = NewKey {
        enable_automatic_rotation: Some("true".into()),
        rotation_interval: Some("30d".into()),
        ..NewKey::default()
    };
    let key = state.create_key(SCOPE, &rotating, now()).unwrap();
    assert_eq!(key.rotation_interval.as_deref(), Some("2592000s"));

    let bad: &[(NewKey, &str)] = &[
        (NewKey { key_spec: Some("AES".into()), ..NewKey::default() }, "unknown spec"),
        (
            NewKey { origin: Some("external".into()), ..NewKey::default() },
            "origin is case-sensitive",
        ),
        (
            NewKey { enable_automatic_rotation: Some("true".into()), ..NewKey::default() },
            "rotation without interval",
        ),
        (
            NewKey {
                enable_automatic_rotation: Some("true".into()),
                rotation_interval: Some("1d".into()),
                ..NewKey::default()
            },
            "interval below 7 days",
        ),
    ];
    for (spec, reason) in bad {
        assert!(state.create_key(SCOPE, spec, now()).is_err(), "{reason}");
    }
}

#[test]
fn insert_key_rejects_bad_or_duplicate_ids() {
    let mut state = fixture();
    let dup = state.insert_key(SCOPE, Some("key-enabled"), KeyState::Enabled, now());
    assert_eq!(code(dup).as_deref(), Some("Rejected.ResourceExist"));
    let bad = state.insert_key(SCOPE, Some("key/with/slash"), KeyState::Enabled, now());
    assert_eq!(code(bad).as_deref(), Some("InvalidParameter"));
    let import = state.insert_key(SCOPE, None, KeyState::PendingImport, now()).unwrap();
    assert_eq!(import.origin, "EXTERNAL");
}

#[test]
fn alias_quota_is_configurable_and_zero_is_unlimited() {
    // (quota, aliases that fit besides the fixture's two, reason)
    let cases = [(3, 1, "small quota"), (0, 400, "unlimited")];
    for (quota, fit, reason) in cases {
        let mut state = fixture();
        state.set_alias_quota(quota);
        for i in 0..fit {
            state.create_alias(SCOPE, &format!("alias/q{i}"), "key-enabled").expect(reason);
        }
        let next = state.create_alias(SCOPE, "alias/next", "key-enabled");
        let want = (quota > 0).then_some("Rejected.LimitExceeded");
        assert_eq!(code(next).as_deref(), want, "{reason}");
    }
}

#[test]
fn state_round_trips_through_json() {
    let state = fixture();
    let text = serde_json::to_string(&state).unwrap();
    let back: KmsState = serde_json::from_str(&text).unwrap();
    let region = back.region(SCOPE).expect("region kept");
    assert_eq!(region.aliases(), state.region(SCOPE).unwrap().aliases());
    assert_eq!(region.keys(), state.region(SCOPE).unwrap().keys());
    assert_eq!(back.alias_quota, ALIAS_QUOTA, "quota is configuration, not state");
}
