//! Table tests of token verification with throw-away ES256 keys.

use super::*;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

const ISSUER: &str = "https://kubernetes.default.svc";

struct Keys {
    private_pem: String,
    public_pem: String,
}

fn keys() -> Keys {
    let pair = rcgen::KeyPair::generate().expect("P-256 key");
    Keys { private_pem: pair.serialize_pem(), public_pem: pair.public_key_pem() }
}

fn provider() -> OidcProviderSpec {
    OidcProviderSpec {
        arn: "acs:ram::1:oidc-provider/test".into(),
        issuer: ISSUER.into(),
        audience: "sts.aliyuncs.com".into(),
        public_key_file: "unused".into(),
    }
}

fn sign(keys: &Keys, alg: Algorithm, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(keys.private_pem.as_bytes()).expect("PKCS#8 EC key");
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("sign")
}

fn claims(now: DateTime<Utc>) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "system:serviceaccount:kms-system:operator",
        "aud": ["sts.aliyuncs.com"],
        "exp": now.timestamp() + 3600,
        "iat": now.timestamp(),
        "kubernetes.io": {"namespace": "kms-system"},
    })
}

fn with(mut value: Value, name: &str, new: Value) -> Value {
    value[name] = new;
    value
}

#[test]
fn es256_service_account_token_verifies() {
    let (keys, now) = (keys(), Utc::now());
    let token = sign(&keys, Algorithm::ES256, &claims(now));
    let info = verify(&token, &provider(), &keys.public_pem, now).expect("valid token");
    assert_eq!(info.subject, "system:serviceaccount:kms-system:operator");
    assert_eq!(info.audiences, ["sts.aliyuncs.com"]);
    assert_eq!(info.issued_at.map(|t| t.timestamp()), Some(now.timestamp()));

    let single =
        sign(&keys, Algorithm::ES256, &with(claims(now), "aud", json!("sts.aliyuncs.com")));
    assert!(verify(&single, &provider(), &keys.public_pem, now).is_ok(), "aud as a string");
    let two_keys = format!("{}\n{}", self::keys().public_pem, keys.public_pem);
    assert!(verify(&token, &provider(), &two_keys, now).is_ok(), "second PEM block matches");
}

#[test]
fn bad_tokens_end_in_their_codes() {
    let (keys, other, now) = (keys(), keys(), Utc::now());
    let good = claims(now);
    let expired = with(good.clone(), "exp", json!(now.timestamp() - 1));
    let cases: Vec<(String, &str, &str)> = vec![
        (String::new(), "AuthenticationFail.OIDCToken.Invalid", "empty"),
        ("a.b".into(), "AuthenticationFail.OIDCToken.Invalid", "two parts"),
        ("!!.??.**".into(), "AuthenticationFail.OIDCToken.Invalid", "not base64"),
        (
            sign(&other, Algorithm::ES256, &good),
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "other key",
        ),
        (
            sign(&keys, Algorithm::ES256, &expired),
            "AuthenticationFail.OIDCToken.Expired",
            "expired",
        ),
        (
            sign(&keys, Algorithm::ES256, &with(good.clone(), "iss", json!("https://evil"))),
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
            "issuer",
        ),
        (
            sign(&keys, Algorithm::ES256, &with(good.clone(), "aud", json!(["other"]))),
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
            "audience",
        ),
        (
            sign(&keys, Algorithm::ES256, &with(good.clone(), "sub", json!(""))),
            "AuthenticationFail.OIDCToken.Invalid",
            "no subject",
        ),
    ];
    for (token, want, reason) in cases {
        let got = verify(&token, &provider(), &keys.public_pem, now).expect_err(reason);
        assert_eq!((got.code.as_str(), got.status), (want, 401), "{reason}");
    }
}

#[test]
fn algorithm_must_match_a_key_of_its_family() {
    let (keys, now) = (keys(), Utc::now());
    let token = sign(&keys, Algorithm::ES256, &claims(now));
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        header.as_bytes(),
    );
    let rest = token.split_once('.').map(|(_, rest)| rest).unwrap_or_default();
    let hs256 = format!("{encoded}.{rest}");
    let err = verify(&hs256, &provider(), &keys.public_pem, now).expect_err("HS256");
    assert_eq!(err.code, "AuthenticationFail.OIDCToken.Invalid");
    assert!(err.message.contains("HS256"), "{}", err.message);

    let rs256_header = r#"{"alg":"RS256","typ":"JWT"}"#;
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        rs256_header.as_bytes(),
    );
    let rs256 = format!("{encoded}.{rest}");
    let err = verify(&rs256, &provider(), &keys.public_pem, now).expect_err("no RSA key");
    assert_eq!(err.code, "AuthenticationFail.OIDCToken.InvalidSignature");
}
