//! Action dispatch: reads each action's parameters, runs it on the state and shapes the JSON
//! answer of section 5. `RequestId` is added by the protocol layer.

use super::error::ApiError;
use super::protocol::Params;
use super::state::{Key, KmsState, NewKey, Page, Paging, Scope};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Every action the emulator implements.
pub const ACTIONS: &[&str] = &[
    "CreateKey",
    "DescribeKey",
    "ListKeys",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "ListAliases",
    "ListAliasesByKeyId",
];

/// Largest `PageSize` the list actions accept.
const MAX_PAGE_SIZE: u32 = 100;
/// `PageSize` when none is given.
const DEFAULT_PAGE_SIZE: u32 = 10;

/// Whether the emulator implements `action`.
pub fn is_known(action: &str) -> bool {
    ACTIONS.contains(&action)
}

/// Runs one action and returns its success body without `RequestId`.
pub fn execute(
    kms: &mut KmsState,
    scope: Scope<'_>,
    action: &str,
    params: &Params,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    match action {
        "CreateKey" => Ok(metadata(kms.create_key(scope, &new_key(params), now)?)),
        "DescribeKey" => Ok(metadata(kms.describe_key(scope, params.require("KeyId")?)?)),
        "ListKeys" => list_keys(kms, scope, params),
        "EnableKey" => unit(kms.set_enabled(scope, params.require("KeyId")?, true)),
        "DisableKey" => unit(kms.set_enabled(scope, params.require("KeyId")?, false)),
        "ScheduleKeyDeletion" => {
            let key = params.require("KeyId")?;
            let days = number(params.require("PendingWindowInDays")?, "PendingWindowInDays")?;
            unit(kms.schedule_key_deletion(scope, key, days, now))
        }
        "CancelKeyDeletion" => unit(kms.cancel_key_deletion(scope, params.require("KeyId")?)),
        "CreateAlias" => {
            let (name, key) = (params.require("AliasName")?, params.require("KeyId")?);
            unit(kms.create_alias(scope, name, key))
        }
        "UpdateAlias" => {
            let (name, key) = (params.require("AliasName")?, params.require("KeyId")?);
            unit(kms.update_alias(scope, name, key))
        }
        "DeleteAlias" => unit(kms.delete_alias(scope, params.require("AliasName")?)),
        "ListAliases" => {
            Ok(list_body(kms.list_aliases(scope, paging(params)?), "Aliases", "Alias"))
        }
        "ListAliasesByKeyId" => {
            let key = params.require("KeyId")?;
            let page = kms.list_aliases_by_key_id(scope, key, paging(params)?)?;
            Ok(list_body(page, "Aliases", "Alias"))
        }
        _ => Err(ApiError::action_not_found()),
    }
}

fn unit(result: Result<(), ApiError>) -> Result<Value, ApiError> {
    result.map(|()| json!({}))
}

fn metadata(key: Key) -> Value {
    json!({ "KeyMetadata": key })
}

fn new_key(params: &Params) -> NewKey {
    let get = |name| params.get_nonempty(name).map(str::to_owned);
    NewKey {
        description: get("Description"),
        key_usage: get("KeyUsage"),
        key_spec: get("KeySpec"),
        origin: get("Origin"),
        protection_level: get("ProtectionLevel"),
        enable_automatic_rotation: get("EnableAutomaticRotation"),
        rotation_interval: get("RotationInterval"),
    }
}

/// The documented list shape: paging echo, total, and a wrapper object holding the array
/// (always present, even when empty).
fn list_body<T: Serialize>(page: Page<T>, outer: &str, inner: &str) -> Value {
    json!({
        "PageNumber": page.paging.number,
        "PageSize": page.paging.size,
        "TotalCount": page.total,
        outer: { inner: page.items },
    })
}

fn number(text: &str, name: &str) -> Result<u32, ApiError> {
    text.trim().parse().map_err(|_| ApiError::invalid_parameter(name))
}

fn paging(params: &Params) -> Result<Paging, ApiError> {
    let number = match params.get_nonempty("PageNumber") {
        Some(text) => self::number(text, "PageNumber").and_then(|n| {
            if n > 0 { Ok(n) } else { Err(ApiError::invalid_parameter("PageNumber")) }
        })?,
        None => 1,
    };
    let size = match params.get_nonempty("PageSize") {
        Some(text) => self::number(text, "PageSize").and_then(|n| {
            if (1..=MAX_PAGE_SIZE).contains(&n) {
                Ok(n)
            } else {
                Err(ApiError::invalid_parameter("PageSize"))
            }
        })?,
        None => DEFAULT_PAGE_SIZE,
    };
    Ok(Paging { number, size })
}

/// One entry of the ListKeys `Filters` JSON.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    key: String,
    values: Vec<String>,
}

fn list_keys(kms: &KmsState, scope: Scope<'_>, params: &Params) -> Result<Value, ApiError> {
    let paging = paging(params)?;
    let filters: Vec<Filter> = match params.get_nonempty("Filters") {
        Some(text) => {
            serde_json::from_str(text).map_err(|_| ApiError::invalid_parameter("Filters"))?
        }
        None => Vec::new(),
    };
    if filters.len() > 10 {
        return Err(ApiError::invalid_parameter("Filters"));
    }
    let keep = |key: &Key| filters.iter().all(|f| filter_matches(f, key));
    Ok(list_body(kms.list_keys(scope, paging, keep), "Keys", "Key"))
}

/// AND across filters, OR within one filter's values; unknown filter keys match everything.
fn filter_matches(filter: &Filter, key: &Key) -> bool {
    let state = key.key_state.to_string();
    let field = match filter.key.as_str() {
        "KeyState" => state.as_str(),
        "KeySpec" => key.key_spec.as_str(),
        "KeyUsage" => key.key_usage.as_str(),
        "ProtectionLevel" => key.protection_level.as_str(),
        "CreatorType" => "User",
        _ => return true,
    };
    filter.values.iter().any(|v| v == field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    /// Parameters, expected `(number, size)` or the named bad parameter, reason.
    type PagingCase<'a> = (&'a [(&'a str, &'a str)], Result<(u32, u32), &'a str>, &'a str);

    #[test]
    fn paging_defaults_and_limits() {
        let cases: &[PagingCase<'_>] = &[
            (&[], Ok((1, 10)), "documented defaults"),
            (&[("PageNumber", "3"), ("PageSize", "100")], Ok((3, 100)), "maximum size"),
            (&[("PageSize", "")], Ok((1, 10)), "empty value is the default"),
            (&[("PageNumber", "0")], Err("PageNumber"), "page numbers start at 1"),
            (&[("PageSize", "0")], Err("PageSize"), "size 0 is refused"),
            (&[("PageSize", "101")], Err("PageSize"), "size above 100"),
            (&[("PageSize", "ten")], Err("PageSize"), "not a number"),
        ];
        for (pairs, want, reason) in cases {
            let got = paging(&params(pairs));
            match (got, want) {
                (Ok(p), Ok((n, s))) => assert_eq!((p.number, p.size), (*n, *s), "{reason}"),
                (Err(e), Err(name)) => {
                    assert_eq!(e.code, "InvalidParameter", "{reason}");
                    assert!(e.message.contains(name), "{reason}: {}", e.message);
                }
                (got, _) => panic!("{reason}: got {got:?}"),
            }
        }
    }

    #[test]
    fn list_body_always_has_the_array() {
        let page: Page<u8> =
            Page { paging: Paging { number: 2, size: 5 }, total: 0, items: vec![] };
        let body = list_body(page, "Aliases", "Alias");
        assert_eq!(
            body,
            json!({"PageNumber": 2, "PageSize": 5, "TotalCount": 0, "Aliases": {"Alias": []}})
        );
    }

    #[test]
    fn missing_required_parameter_is_named() {
        let mut kms = KmsState::default();
        let scope = Scope { account: "1", region: "cn-hangzhou" };
        let now = Utc::now();
        let err = execute(&mut kms, scope, "CreateAlias", &params(&[("KeyId", "k")]), now)
            .expect_err("AliasName is required");
        assert_eq!(err.code, "MissingParameter");
        assert_eq!(err.message, "The parameter \"AliasName\" is needed but not provided.");
        let err = execute(&mut kms, scope, "ScheduleKeyDeletion", &params(&[("KeyId", "k")]), now)
            .expect_err("window is required");
        assert!(err.message.contains("PendingWindowInDays"), "{}", err.message);
    }

    #[test]
    fn list_keys_filters_by_state() {
        let mut kms = KmsState::default();
        let scope = Scope { account: "1", region: "cn-hangzhou" };
        let now = Utc::now();
        kms.insert_key(scope, Some("a"), crate::kms::KeyState::Enabled, now).unwrap();
        kms.insert_key(scope, Some("b"), crate::kms::KeyState::Disabled, now).unwrap();
        let filter = r#"[{"Key":"KeyState","Values":["Disabled"]}]"#;
        let body = execute(&mut kms, scope, "ListKeys", &params(&[("Filters", filter)]), now)
            .expect("valid filter");
        assert_eq!(body["TotalCount"], 1);
        assert_eq!(body["Keys"]["Key"][0]["KeyId"], "b");
        assert_eq!(body["Keys"]["Key"][0]["KeyArn"], "acs:kms:cn-hangzhou:1:key/b");
    }
}
