//! Table tests of the STS parameter rules, trust checks and answer shapes.

use super::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::Path;

const ROLE: &str = "acs:ram::2222:role/kms-operator";
const OIDC_ROLE: &str = "acs:ram::2222:role/rrsa";
const PROVIDER: &str = "acs:ram::2222:oidc-provider/ack-rrsa-c1";
const ISSUER: &str = "https://kubernetes.default.svc";
const SUBJECT: &str = "system:serviceaccount:kms-system:operator";

fn config(key_file: &Path) -> EmulatorConfig {
    EmulatorConfig {
        roles: vec![
            RoleSpec {
                arn: ROLE.into(),
                max_session_duration: Some(7200),
                trusted_accounts: Some(vec!["1111".into()]),
                trusted_oidc_provider: None,
                allowed_subjects: vec![],
            },
            RoleSpec {
                arn: OIDC_ROLE.into(),
                max_session_duration: None,
                trusted_accounts: None,
                trusted_oidc_provider: Some(PROVIDER.into()),
                allowed_subjects: vec![SUBJECT.into()],
            },
        ],
        oidc_providers: vec![OidcProviderSpec {
            arn: PROVIDER.into(),
            issuer: ISSUER.into(),
            audience: "sts.aliyuncs.com".into(),
            public_key_file: key_file.to_owned(),
        }],
        ..EmulatorConfig::default()
    }
}

fn params(action: &str, pairs: &[(&str, &str)]) -> Params {
    let all = [("Action", action)].into_iter().chain(pairs.iter().copied());
    Params::from_pairs(all.map(|(k, v)| (k.to_owned(), v.to_owned())))
}

fn code(result: Result<Issued, ApiError>) -> Result<Value, (String, u16)> {
    result.map(|i| i.body).map_err(|e| (e.code, e.status))
}

/// Parameters, calling account, wanted error code and status (`None`: success), reason.
type RoleCase<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<(&'a str, u16)>, &'a str);

#[test]
fn assume_role_checks_parameters_and_trust() {
    let config = config(Path::new("unused"));
    let mut ids = Identities::default();
    let now = Utc::now();
    let base = [("RoleArn", ROLE), ("RoleSessionName", "op-1")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all: Vec<(&str, &str)> = base.to_vec();
        for (name, value) in extra {
            all.retain(|(n, _)| n != name);
            all.push((name, value));
        }
        all
    };
    let cases: Vec<RoleCase<'_>> = vec![
        (with(&[]), "1111", None, "trusted account"),
        (with(&[("DurationSeconds", "7200")]), "1111", None, "role maximum"),
        (with(&[("RoleArn", "")]), "1111", Some(("MissingRoleArn", 400)), "no role"),
        (
            with(&[("RoleArn", "role/x")]),
            "1111",
            Some(("InvalidParameter.RoleArn", 400)),
            "bad ARN",
        ),
        (
            with(&[("RoleArn", "acs:ram::2222:role/nope")]),
            "1111",
            Some(("EntityNotExist.Role", 404)),
            "unknown role",
        ),
        (
            with(&[("RoleSessionName", "a")]),
            "1111",
            Some(("InvalidParameter.RoleSessionName", 400)),
            "short",
        ),
        (
            with(&[("RoleSessionName", "a b")]),
            "1111",
            Some(("InvalidParameter.RoleSessionName", 400)),
            "space",
        ),
        (
            with(&[("DurationSeconds", "899")]),
            "1111",
            Some(("InvalidParameter.DurationSeconds", 400)),
            "short",
        ),
        (
            with(&[("DurationSeconds", "7201")]),
            "1111",
            Some(("InvalidParameter.DurationSeconds", 400)),
            "long",
        ),
        (
            with(&[("DurationSeconds", "1h")]),
            "1111",
            Some(("InvalidParameter.DurationSeconds", 400)),
            "text",
        ),
        (
            with(&[("Policy", "[1]")]),
            "1111",
            Some(("InvalidParameter.PolicyGrammar", 400)),
            "policy",
        ),
        (with(&[]), "3333", Some(("NoPermission", 403)), "untrusted account"),
    ];
    for (pairs, caller, want, reason) in cases {
        let got =
            code(execute(&config, &mut ids, Some(caller), &params("AssumeRole", &pairs), now));
        match (got, want) {
            (Ok(_), None) => {}
            (Err((c, s)), Some((wc, ws))) => assert_eq!((c.as_str(), s), (wc, ws), "{reason}"),
            (got, _) => panic!("{reason}: {got:?}"),
        }
    }
}

#[test]
fn assume_role_answers_the_documented_shape() {
    let config = config(Path::new("unused"));
    let mut ids = Identities::default();
    let now = DateTime::parse_from_rfc3339("2024-05-20T06:34:21.750Z").unwrap().to_utc();
    let call = params("AssumeRole", &[("RoleArn", ROLE), ("RoleSessionName", "op-1")]);
    let issued = execute(&config, &mut ids, Some("1111"), &call, now).expect("trusted");
    let body = issued.body;
    assert_eq!(issued.account, "2222", "keys act in the role's account");
    assert_eq!(body["Credentials"]["Expiration"], "2024-05-20T07:34:21Z");
    assert_eq!(body["AssumedRoleUser"]["Arn"], format!("{ROLE}/op-1"));
    let role_id = body["AssumedRoleUser"]["AssumedRoleId"].as_str().unwrap();
    assert!(role_id.ends_with(":op-1") && role_id.len() == 18 + 5, "{role_id}");
    let id = body["Credentials"]["AccessKeyId"].as_str().unwrap();
    assert!(id.starts_with("STS."), "{id}");
    assert!(body.get("Code").is_none() && body.get("Success").is_none());
    let key = ids.lookup(id).expect("issued key is known");
    let token = body["Credentials"]["SecurityToken"].as_str();
    assert!(key.check_token(token, now).is_ok());
    assert_eq!(key.secret, body["Credentials"]["AccessKeySecret"].as_str().unwrap());
}

fn token(private_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

#[test]
fn assume_role_with_oidc_checks_provider_role_and_subject() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate().unwrap();
    let key_file = dir.path().join("sa.pub");
    std::fs::write(&key_file, pair.public_key_pem()).unwrap();
    let config = config(&key_file);
    let now = Utc::now();
    let claims = |sub: &str| {
        json!({"iss": ISSUER, "sub": sub, "aud": ["sts.aliyuncs.com"],
               "exp": now.timestamp() + 600, "iat": now.timestamp()})
    };
    let good = token(&pair.serialize_pem(), &claims(SUBJECT));
    let stranger = token(&pair.serialize_pem(), &claims("system:serviceaccount:x:y"));
    let cases: Vec<(&str, &str, &str, Option<&str>, &str)> = vec![
        (OIDC_ROLE, PROVIDER, &good, None, "trusted provider and subject"),
        (OIDC_ROLE, PROVIDER, "", Some("AuthenticationFail.OIDCToken.Invalid"), "no token"),
        (OIDC_ROLE, "nope", &good, Some("InvalidParameter.OIDCProviderArn"), "bad provider ARN"),
        (
            OIDC_ROLE,
            "acs:ram::2222:oidc-provider/other",
            &good,
            Some("AuthenticationFail.NoPermission"),
            "unregistered provider",
        ),
        (ROLE, PROVIDER, &good, Some("AuthenticationFail.NoPermission"), "role trusts no provider"),
        (OIDC_ROLE, PROVIDER, &stranger, Some("AuthenticationFail.NoPermission"), "subject"),
    ];
    for (role, provider, jwt, want, reason) in cases {
        let pairs = [
            ("RoleArn", role),
            ("OIDCProviderArn", provider),
            ("OIDCToken", jwt),
            ("RoleSessionName", "rrsa-session"),
        ];
        let mut ids = Identities::default();
        let got = execute(&config, &mut ids, None, &params("AssumeRoleWithOIDC", &pairs), now);
        match (got, want) {
            (Ok(issued), None) => {
                let info = &issued.body["OIDCTokenInfo"];
                assert_eq!(info["Subject"], SUBJECT, "{reason}");
                assert_eq!(info["ClientIds"], "sts.aliyuncs.com");
                assert_eq!(info["VerificationInfo"], "Success");
                assert!(issued.body["Credentials"]["SecurityToken"].is_string());
            }
            (Err(e), Some(code)) => assert_eq!(e.code, code, "{reason}"),
            (got, _) => panic!("{reason}: {got:?}"),
        }
    }
}

#[test]
fn names_and_arns_follow_ram_rules() {
    let cases = [
        ("acs:ram::123:role/app", "role/", Some(("123", "app"))),
        ("acs:ram::123:oidc-provider/ack-rrsa-c1", "oidc-provider/", Some(("123", "ack-rrsa-c1"))),
        ("acs:ram::abc:role/app", "role/", None),
        ("acs:ram::123:role/", "role/", None),
        ("acs:ram::123:user/app", "role/", None),
        ("acs:kms::123:role/app", "role/", None),
    ];
    for (arn, kind, want) in cases {
        assert_eq!(parse_arn(arn, kind), want, "{arn}");
    }
    for (name, ok) in [("ab", true), ("a", false), ("x@y.z-_1", true), ("a/b", false)] {
        assert_eq!(valid_session_name(name), ok, "{name}");
    }
    assert!(valid_session_name(&"a".repeat(64)));
    assert!(!valid_session_name(&"a".repeat(65)));
}
