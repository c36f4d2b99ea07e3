//! STS on the emulator's port: AssumeRole and AssumeRoleWithOIDC hand out temporary keys that
//! work for KMS calls in the role's account, need their token, and expire.

use super::wire::{self, KMS, STS, Signer, call, code};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kms_alias_operator::emulator::EmulatorConfig;
use kms_alias_operator::emulator::config::{AccountSpec, OidcProviderSpec, RoleSpec};
use kms_alias_operator::kms::Credentials;
use serde_json::{Value, json};
use std::path::Path;

const ROLE_ACCOUNT: &str = "2222222222222222";
const ROLE: &str = "acs:ram::2222222222222222:role/kms-operator";
const OIDC_ROLE: &str = "acs:ram::2222222222222222:role/rrsa-operator";
const PROVIDER: &str = "acs:ram::2222222222222222:oidc-provider/ack-rrsa-test";
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const SUBJECT: &str = "system:serviceaccount:kms-system:kms-alias-operator";

fn config(public_key_file: &Path) -> EmulatorConfig {
    let role = |arn: &str| RoleSpec {
        arn: arn.into(),
        max_session_duration: Some(7200),
        trusted_accounts: Some(vec!["1234567890123456".into()]),
        trusted_oidc_provider: Some(PROVIDER.into()),
        allowed_subjects: vec![SUBJECT.into()],
    };
    EmulatorConfig {
        accounts: vec![AccountSpec::parse(&format!("{ROLE_ACCOUNT}=owner:ownersecret")).unwrap()],
        roles: vec![role(ROLE), role(OIDC_ROLE)],
        oidc_providers: vec![OidcProviderSpec {
            arn: PROVIDER.into(),
            issuer: ISSUER.into(),
            audience: "sts.aliyuncs.com".into(),
            public_key_file: public_key_file.to_owned(),
        }],
        ..EmulatorConfig::default()
    }
}

fn caller() -> Signer {
    Signer::new("testid", "testsecret")
}

fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap_or_default();
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ");
    assert!(parsed.is_ok(), "yyyy-MM-ddTHH:mm:ssZ expected, got {value}");
}

#[tokio::test]
async fn assume_role_credentials_work_need_their_token_and_expire() {
    let running = wire::start_with(config(Path::new("unused"))).await;
    let params =
        [("RoleArn", ROLE), ("RoleSessionName", "e2e-session"), ("DurationSeconds", "900")];
    let answer = call(&running, &caller(), STS, "AssumeRole", &params).await;
    assert_eq!(code(&answer), (200, "OK"), "{}", answer.1);
    let body = &answer.1;
    assert!(body.get("Success").is_none() && body["RequestId"].is_string(), "{body}");
    assert_eq!(body["AssumedRoleUser"]["Arn"], format!("{ROLE}/e2e-session"));
    assert_timestamp(&body["Credentials"]["Expiration"]);
    let sts = Signer::from_sts(body);
    assert!(sts.id.starts_with("STS."), "{}", sts.id);

    // The temporary key acts in the role's account, through our own client too.
    let creds = Credentials::new(&sts.id, &sts.secret).with_token(sts.token.clone().unwrap());
    let key = super::client_for(&running, creds).create_key("by role").await.expect("STS works");
    assert!(key.arn.contains(&format!(":{ROLE_ACCOUNT}:key/")), "{}", key.arn);

    let cases = [
        (
            Signer { token: Some("forged".into()), ..sts.clone() },
            (400, "InvalidSecurityToken.MismatchWithAccessKey"),
        ),
        (Signer { token: None, ..sts.clone() }, (400, "MissingSecurityToken")),
        (
            Signer::new("STS.NotIssuedByUs", "x").with_token("t"),
            (404, "InvalidAccessKeyId.NotFound"),
        ),
    ];
    for (signer, want) in cases {
        assert_eq!(code(&call(&running, &signer, KMS, "ListKeys", &[]).await), want, "{signer:?}");
    }

    let expired = wire::admin_post(&running, "sts/expire", &json!({})).await;
    assert_eq!(expired, 200);
    let late = call(&running, &sts, KMS, "ListKeys", &[]).await;
    assert_eq!(code(&late), (400, "InvalidSecurityToken.Expired"));
    let state = wire::admin_get(&running, "state").await;
    let issued = &state["accounts"][ROLE_ACCOUNT]["stsCredentials"][0];
    assert_eq!(issued["roleArn"], ROLE);
    assert!(!state.to_string().contains(&sts.secret), "admin state hides secrets");
}

#[tokio::test]
async fn assume_role_errors_carry_sts_codes() {
    let running = wire::start_with(config(Path::new("unused"))).await;
    let owner = Signer::new("owner", "ownersecret");
    let cases = [
        (caller(), "acs:ram::2222222222222222:role/none", "s1", (404, "EntityNotExist.Role")),
        (caller(), "role/none", "s1", (400, "InvalidParameter.RoleArn")),
        (caller(), ROLE, "x", (400, "InvalidParameter.RoleSessionName")),
        (owner, ROLE, "s1", (403, "NoPermission")),
    ];
    for (signer, role, session, want) in cases {
        let params = [("RoleArn", role), ("RoleSessionName", session)];
        let answer = call(&running, &signer, STS, "AssumeRole", &params).await;
        assert_eq!(code(&answer), want, "{role} {session}: {}", answer.1);
        assert_eq!(answer.1["HostId"], "sts.aliyuncs.com");
    }
    let long = [("RoleArn", ROLE), ("RoleSessionName", "s1"), ("DurationSeconds", "7201")];
    let answer = call(&running, &caller(), STS, "AssumeRole", &long).await;
    assert_eq!(code(&answer), (400, "InvalidParameter.DurationSeconds"));
}

struct Issuer {
    private_pem: String,
    _dir: tempfile::TempDir,
    public_key_file: std::path::PathBuf,
}

/// An ES256 key like kube-apiserver's service-account signing key, its public half on disk.
fn issuer() -> Issuer {
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    let public_key_file = dir.path().join("sa.pub");
    std::fs::write(&public_key_file, pair.public_key_pem()).expect("write key");
    Issuer { private_pem: pair.serialize_pem(), _dir: dir, public_key_file }
}

fn service_account_token(issuer: &Issuer, subject: &str, expires_in: i64) -> String {
    let now = Utc::now().timestamp();
    let claims = json!({
        "iss": ISSUER, "sub": subject, "aud": ["sts.aliyuncs.com"],
        "exp": now + expires_in, "iat": now, "nbf": now,
        "kubernetes.io": {"namespace": "kms-system", "serviceaccount": {"name": "kms-alias-operator"}},
    });
    let key = EncodingKey::from_ec_pem(issuer.private_pem.as_bytes()).expect("EC key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-key".into());
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test]
async fn assume_role_with_oidc_exchanges_a_service_account_token() {
    let issuer = issuer();
    let running = wire::start_with(config(&issuer.public_key_file)).await;
    let token = service_account_token(&issuer, SUBJECT, 3600);
    let answer = wire::assume_role_with_oidc(&running, &oidc_form(&token)).await;
    assert_eq!(code(&answer), (200, "OK"), "{}", answer.1);
    let info = &answer.1["OIDCTokenInfo"];
    assert_eq!((info["Subject"].as_str(), info["Issuer"].as_str()), (Some(SUBJECT), Some(ISSUER)));
    assert_timestamp(&info["ExpirationTime"]);
    assert_eq!(answer.1["AssumedRoleUser"]["Arn"], format!("{OIDC_ROLE}/rrsa"));

    let sts = Signer::from_sts(&answer.1);
    let listed = call(&running, &sts, KMS, "ListAliases", &[]).await;
    assert_eq!(code(&listed), (200, "OK"), "{}", listed.1);

    let cases = [
        (
            service_account_token(&issuer, SUBJECT, -60),
            (401, "AuthenticationFail.OIDCToken.Expired"),
        ),
        (
            service_account_token(&issuer, "system:serviceaccount:x:y", 600),
            (401, "AuthenticationFail.NoPermission"),
        ),
        ("not-a-jwt".to_owned(), (401, "AuthenticationFail.OIDCToken.Invalid")),
    ];
    for (jwt, want) in cases {
        assert_eq!(code(&wire::assume_role_with_oidc(&running, &oidc_form(&jwt)).await), want);
    }

    let calls = wire::admin_get(&running, "calls?action=AssumeRoleWithOIDC").await;
    let first = &calls[0];
    assert_eq!(first["params"]["OIDCToken"], "<redacted>");
    assert_eq!(first["accountUid"], ROLE_ACCOUNT);
    assert!(!calls.to_string().contains(&token), "the token never reaches the call log");
}

fn oidc_form(token: &str) -> [(&'static str, &str); 4] {
    [
        ("RoleArn", OIDC_ROLE),
        ("OIDCProviderArn", PROVIDER),
        ("OIDCToken", token),
        ("RoleSessionName", "rrsa"),
    ]
}
