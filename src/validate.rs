//! The KMS identifier rules (`kms-api.md` section 7) as pure, table-tested functions.
//!
//! The CRD carries the same rules as CEL so the API server rejects bad input first; the
//! controller checks again because a CRD can be installed without its schema.

use crate::kms::KeyArn;
use std::fmt;

/// Prefix every alias name carries.
pub const ALIAS_PREFIX: &str = "alias/";
/// Prefix KMS reserves for aliases of cloud services.
pub const RESERVED_PREFIX: &str = "alias/acs";
/// Longest name after [`ALIAS_PREFIX`].
pub const MAX_ALIAS_SUFFIX: usize = 255;

/// A rule a user-supplied value broke. The text names the rule so a user can fix the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleViolation(pub String);

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn violation(text: impl Into<String>) -> RuleViolation {
    RuleViolation(text.into())
}

/// Checks an alias name against the KMS rules, reserved prefix included; never rewrites it.
pub fn alias_name(name: &str) -> Result<(), RuleViolation> {
    alias_name_syntax(name)?;
    if name.starts_with(RESERVED_PREFIX) {
        return Err(violation(
            "aliasName must not start with 'alias/acs', a prefix reserved for cloud services",
        ));
    }
    Ok(())
}

/// Checks prefix, length and characters only: the shape of any alias, reserved ones too.
pub fn alias_name_syntax(name: &str) -> Result<(), RuleViolation> {
    let Some(rest) = name.strip_prefix(ALIAS_PREFIX) else {
        return Err(violation("aliasName must start with the prefix 'alias/'"));
    };
    if rest.is_empty() || rest.chars().count() > MAX_ALIAS_SUFFIX {
        return Err(violation("aliasName must have 1 to 255 characters after 'alias/'"));
    }
    if !rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '-')) {
        return Err(violation(
            "aliasName may contain only letters, digits, '_', '/' and '-' after 'alias/'",
        ));
    }
    Ok(())
}

/// How `spec.keyId` names its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A bare key id.
    Id(String),
    /// A key ARN; region and account must match the operator's.
    Arn(KeyArn),
}

impl KeyRef {
    /// The bare key id, whichever form was given.
    pub fn key_id(&self) -> &str {
        match self {
            Self::Id(id) => id,
            Self::Arn(arn) => &arn.key_id,
        }
    }
}

/// Parses `spec.keyId`: a key id or a key ARN. Alias names are refused, by decision: an alias
/// resolved once would silently stop following its alias later.
pub fn key_ref(value: &str) -> Result<KeyRef, RuleViolation> {
    if value.is_empty() {
        return Err(violation("keyId must not be empty"));
    }
    if value.contains(char::is_whitespace) {
        return Err(violation("keyId must not contain whitespace"));
    }
    if value.starts_with(ALIAS_PREFIX) {
        return Err(violation("keyId must be a key id or key ARN, not an alias name"));
    }
    if value.starts_with("acs:") {
        return KeyArn::parse(value).map(KeyRef::Arn).ok_or_else(|| {
            violation("keyId looks like an ARN but is not 'acs:kms:<region>:<account>:key/<id>'")
        });
    }
    if value.contains(['/', ':']) {
        return Err(violation("keyId must be a key id or key ARN"));
    }
    Ok(KeyRef::Id(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_name_rules() {
        let long_ok = format!("alias/{}", "a".repeat(255));
        let too_long = format!("alias/{}", "a".repeat(256));
        let cases: [(&str, Option<&str>, &str); 12] = [
            ("app", Some("prefix"), "no prefix"),
            ("alias/", Some("1 to 255"), "empty remainder"),
            ("alias/Service.Test", Some("only letters"), "dot"),
            ("alias/svc:test", Some("only letters"), "colon"),
            ("alias/ключ", Some("only letters"), "non-ASCII"),
            ("alias/app ", Some("only letters"), "trailing space"),
            (&long_ok, None, "longest allowed"),
            (&too_long, Some("1 to 255"), "too long"),
            ("alias/team_a/app-1", None, "underscore, slash and dash"),
            ("alias/acs/x", Some("reserved"), "reserved prefix"),
            ("alias/acsx", Some("reserved"), "reserved prefix without slash"),
            ("Alias/app", Some("prefix"), "prefix is case-sensitive"),
        ];
        for (input, want, reason) in cases {
            match (alias_name(input), want) {
                (Ok(()), None) => {}
                (Err(e), Some(part)) => assert!(e.0.contains(part), "{reason}: {e}"),
                (got, _) => panic!("{reason}: {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn key_ref_forms() {
        assert_eq!(key_ref("key-abc"), Ok(KeyRef::Id("key-abc".into())));
        let arn = key_ref("acs:kms:cn-hangzhou:123:key/key-abc").expect("ARN");
        assert_eq!(arn.key_id(), "key-abc");
        let cases = [
            ("", "empty", "empty"),
            ("alias/app", "not an alias", "alias names are refused"),
            ("key abc", "whitespace", "space"),
            ("acs:kms:cn-hangzhou:123:alias/a", "looks like an ARN", "alias ARN"),
            ("foo/bar", "key id or key ARN", "slash in a bare id"),
        ];
        for (input, part, reason) in cases {
            let err = key_ref(input).expect_err(reason);
            assert!(err.0.contains(part), "{reason}: {err}");
        }
    }
}
