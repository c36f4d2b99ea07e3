//! Table tests of the config format, the flag forms and validation.

use super::*;

const YAML: &str = r#"
region: cn-shanghai
accountUid: 1111111111111111
accessKeys:
  - {id: base, secret: s0}
accounts:
  - uid: 2222222222222222
    accessKeys:
      - {id: other, secret: s1}
      - {id: off, secret: s2, enabled: false}
      - {id: STS.fixed, secret: s3, securityToken: "tok en/+="}
    regions: [cn-beijing, cn-hangzhou]
    keys:
      - {id: key-a}
      - {id: key-b, region: cn-hangzhou, state: Disabled}
roles:
  - arn: acs:ram::2222222222222222:role/operator
    maxSessionDuration: 7200
    trustedAccounts: ["1111111111111111"]
    trustedOidcProvider: acs:ram::2222222222222222:oidc-provider/ack
    allowedSubjects: ["system:serviceaccount:kms-system:operator"]
oidcProviders:
  - arn: acs:ram::2222222222222222:oidc-provider/ack
    issuer: https://kubernetes.default.svc
    publicKeyFile: /tmp/sa.pub
quotas: {qpsWrite: 2, aliasQuota: 0}
faults:
  - {action: CreateAlias, code: Throttling, rate: 0.5}
seed: 7
"#;

#[test]
fn yaml_file_parses_with_defaults() {
    let config: EmulatorConfig = serde_yaml::from_str(YAML).expect("valid YAML");
    assert_eq!(config.account_uid, "1111111111111111", "a YAML number becomes a uid");
    assert_eq!(config.quotas, Quotas { qps_write: 2, alias_quota: 0, ..Quotas::default() });
    assert_eq!(config.oidc_providers[0].audience, "sts.aliyuncs.com", "default audience");
    let other = &config.accounts[0];
    assert!(!other.access_keys[1].enabled);
    assert_eq!(other.access_keys[2].security_token.as_deref(), Some("tok en/+="));
    assert_eq!(other.keys[1].state, Some(KeyState::Disabled));
    let accounts = config.validate().expect("valid config");
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].access_keys.len(), 1, "no testid when keys are declared");
}

#[test]
fn json_is_accepted_too_and_unknown_fields_are_not() {
    let json = r#"{"accountUid": "42", "accessKeys": [{"id": "a", "secret": "b"}]}"#;
    let config: EmulatorConfig = serde_yaml::from_str(json).expect("JSON is YAML");
    assert_eq!(config.account_uid, "42");
    assert_eq!(config.region, "cn-hangzhou", "default region");
    let typo = r#"{"acountUid": "42"}"#;
    assert!(serde_yaml::from_str::<EmulatorConfig>(typo).is_err(), "typos are caught");
}

#[test]
fn default_account_gets_testid_only_without_keys_of_its_own() {
    let accounts = EmulatorConfig::default().merged_accounts();
    assert_eq!(accounts[0].access_keys, [AccessKeySpec::new("testid", "testsecret")]);

    let config = EmulatorConfig {
        accounts: vec![
            AccountSpec::parse("1234567890123456=extra:s").unwrap(),
            AccountSpec::parse("77=seven:s7").unwrap(),
        ],
        seed_keys: vec!["key-seed".into()],
        ..EmulatorConfig::default()
    };
    let accounts = config.merged_accounts();
    assert_eq!(accounts.len(), 2, "same uid merges into the default account");
    assert_eq!(accounts[0].access_keys.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0].access_keys[0].id, "extra");
    assert_eq!(accounts[0].keys[0].id, "key-seed");

    let other_only = EmulatorConfig {
        accounts: vec![AccountSpec::parse("77=seven:s7").unwrap()],
        ..EmulatorConfig::default()
    };
    assert_eq!(other_only.merged_accounts()[0].access_keys[0].id, "testid", "still testid");
    let taken = EmulatorConfig {
        accounts: vec![AccountSpec::parse("77=testid:s7").unwrap()],
        ..EmulatorConfig::default()
    };
    assert!(taken.merged_accounts()[0].access_keys.is_empty(), "testid is another's");
}

#[test]
fn flag_forms_parse() {
    let cases = [
        ("id:secret", Some(("id", "secret", None)), "plain pair"),
        ("STS.x:secret:tok", Some(("STS.x", "secret", Some("tok"))), "with token"),
        ("id:secret:a:b", Some(("id", "secret", Some("a:b"))), "token keeps colons"),
        ("id:", None, "empty secret"),
        ("id", None, "no secret"),
        ("id:secret:", None, "empty token"),
    ];
    for (text, want, reason) in cases {
        let got = AccessKeySpec::parse(text).ok();
        let got =
            got.as_ref().map(|k| (k.id.as_str(), k.secret.as_str(), k.security_token.as_deref()));
        assert_eq!(got, want, "{reason}");
    }
    let account = AccountSpec::parse("99=ak:sk").unwrap();
    assert_eq!((account.uid.as_str(), account.access_keys[0].id.as_str()), ("99", "ak"));
    assert!(AccountSpec::parse("ak:sk").is_err(), "uid required");
}

#[test]
fn validation_names_the_problem() {
    let role = |arn: &str, provider: Option<&str>| RoleSpec {
        arn: arn.into(),
        max_session_duration: None,
        trusted_accounts: None,
        trusted_oidc_provider: provider.map(str::to_owned),
        allowed_subjects: vec![],
    };
    let base = EmulatorConfig::default;
    let cases: Vec<(EmulatorConfig, &str)> = vec![
        (EmulatorConfig { region: "CN".into(), ..base() }, "invalid region id"),
        (EmulatorConfig { account_uid: "abc".into(), ..base() }, "invalid account uid"),
        (
            EmulatorConfig { access_keys: vec![AccessKeySpec::new("", "s")], ..base() },
            "must not be empty",
        ),
        (
            EmulatorConfig { roles: vec![role("acs:ram::1:user/x", None)], ..base() },
            "invalid or duplicate ARN",
        ),
        (
            EmulatorConfig {
                roles: vec![role("acs:ram::1:role/a", None), role("acs:ram::1:role/A", None)],
                ..base()
            },
            "invalid or duplicate ARN",
        ),
        (
            EmulatorConfig {
                roles: vec![role("acs:ram::1:role/a", Some("acs:ram::1:oidc-provider/p"))],
                ..base()
            },
            "undeclared OIDC provider",
        ),
        (
            EmulatorConfig {
                faults: vec![Fault { action: "*".into(), ..Fault::default() }],
                ..base()
            },
            "invalid fault",
        ),
    ];
    for (config, want) in cases {
        let err = config.validate().expect_err(want);
        assert!(err.to_string().contains(want), "{err} should mention {want}");
    }
}

#[test]
fn debug_never_shows_secrets() {
    let key = AccessKeySpec::parse("id:s3cr3t:t0k3n").unwrap();
    let text =
        format!("{:?}", EmulatorConfig { access_keys: vec![key], ..EmulatorConfig::default() });
    assert!(!text.contains("s3cr3t") && !text.contains("t0k3n"), "{text}");
}
