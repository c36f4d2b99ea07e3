//! RRSA: the operator has no AccessKey, only a service-account token file and the role and
//! provider ARNs. It assumes the role at the emulator's STS with `AssumeRoleWithOIDC`, which
//! verifies the token against the control plane's service-account public key, and manages an
//! alias with the temporary key. Replacing the token file changes what STS gets next time.

use crate::stack::{
    ACCOUNT_UID, AccessKey, Cluster, DumpOnPanic, Emulator, Operator, assert_no_leaks, write_atomic,
};
use kms_alias_operator::kms::credentials::{
    ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE, ENV_ROLE_ARN, ENV_STS_ENDPOINT,
};
use serde_json::json;
use std::time::Instant;

/// What the control plane's `--service-account-issuer` is (`src/testenv/setup.rs`).
const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "sts.aliyuncs.com";
const SERVICE_ACCOUNT_NS: &str = "kms-system";
const ALLOWED: &str = "operator";
const NOT_ALLOWED: &str = "other";

#[tokio::test]
async fn rrsa_assumes_the_role_and_rereads_the_token_file() {
    let started = Instant::now();
    let cluster = Cluster::start().await;
    let dir = cluster.dir().to_path_buf();
    let role = format!("acs:ram::{ACCOUNT_UID}:role/kms-operator");
    let provider = format!("acs:ram::{ACCOUNT_UID}:oidc-provider/ack-rrsa-test");

    // Two service accounts; the role trusts only the first.
    cluster.kubectl(&["create", "namespace", SERVICE_ACCOUNT_NS]).await;
    for name in [ALLOWED, NOT_ALLOWED] {
        cluster.kubectl(&["-n", SERVICE_ACCOUNT_NS, "create", "serviceaccount", name]).await;
    }
    let allowed_token = cluster.token(SERVICE_ACCOUNT_NS, ALLOWED).await;
    let other_token = cluster.token(SERVICE_ACCOUNT_NS, NOT_ALLOWED).await;
    let token_dir = dir.join("rrsa-tokens");
    std::fs::create_dir_all(&token_dir).expect("token dir");
    let token_file = token_dir.join("token");
    write_atomic(&token_file, &allowed_token);

    let admin = AccessKey::random("rrsa-admin");
    let config = json!({
        "region": crate::stack::REGION,
        "accountUid": ACCOUNT_UID,
        "accessKeys": [admin.spec()],
        "oidcProviders": [{
            "arn": provider,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "publicKeyFile": dir.join("service-account.pub"),
        }],
        "roles": [{
            "arn": role,
            "trustedOidcProvider": provider,
            "allowedSubjects": [format!("system:serviceaccount:{SERVICE_ACCOUNT_NS}:{ALLOWED}")],
        }],
    });
    let emulator = Emulator::start(&dir, "rrsa", &config).await;
    let kms = emulator.client(&admin);
    let key1 = kms.create_key("rrsa one").await.expect("CreateKey").key_id;
    let key2 = kms.create_key("rrsa two").await.expect("CreateKey").key_id;

    let mut operator = Operator::start(
        &dir,
        cluster.kubeconfig(),
        &emulator.url,
        &[
            (ENV_ROLE_ARN, role.clone()),
            (ENV_OIDC_PROVIDER_ARN, provider.clone()),
            (ENV_OIDC_TOKEN_FILE, token_file.display().to_string()),
            (ENV_STS_ENDPOINT, emulator.url.clone()),
        ],
    );
    let _dump = DumpOnPanic(vec![operator.log.clone(), emulator.log.clone()]);
    let aliases = cluster.aliases().await;

    // 1. The operator assumes the role and manages the alias with the temporary key.
    let alias = "alias/identity/rrsa";
    aliases.create("rrsa", alias, &key1).await;
    aliases.wait_ready("rrsa", 1).await;
    let became_ready = started.elapsed();
    assert_eq!(emulator.alias_target(&admin, alias).await.as_deref(), Some(key1.as_str()));

    let calls = emulator.calls().await;
    let assumed: Vec<_> = calls.iter().filter(|c| c.action == "AssumeRoleWithOIDC").collect();
    assert!(!assumed.is_empty(), "no AssumeRoleWithOIDC call: {calls:#?}");
    for call in &assumed {
        assert_eq!(call.code, "OK", "{call:?}");
        assert_eq!(call.param("RoleArn"), Some(role.as_str()));
        assert_eq!(call.param("OIDCProviderArn"), Some(provider.as_str()));
        assert_eq!(call.param("OIDCToken"), Some("<redacted>"), "token sent, not logged");
        assert_eq!(call.access_key_id, "", "AssumeRoleWithOIDC is not signed");
    }
    let operator_calls: Vec<_> = calls
        .iter()
        .filter(|c| c.action != "AssumeRoleWithOIDC" && c.access_key_id != admin.id)
        .collect();
    assert!(!operator_calls.is_empty(), "the operator made no KMS call: {calls:#?}");
    for call in &operator_calls {
        assert!(call.access_key_id.starts_with("STS."), "operator call without STS key: {call:?}");
    }
    let create = operator_calls
        .iter()
        .find(|c| c.action == "CreateAlias" && c.param("AliasName") == Some(alias))
        .unwrap_or_else(|| panic!("no CreateAlias by the operator: {calls:#?}"));
    assert_eq!(create.code, "OK");
    assert_eq!(create.param("SecurityToken"), Some("<redacted>"), "STS key sends its token");
    let first_session = create.access_key_id.clone();

    // 2. A token for a service account the role does not trust, and the session over: the
    // next reconcile must read the file again and be refused.
    let mark = emulator.last_seq().await;
    write_atomic(&token_file, &other_token);
    let expired = emulator.admin("/_emulator/sts/expire", &json!({})).await;
    assert!(expired["expired"].as_u64() >= Some(1), "no STS key to expire: {expired}");
    let generation = aliases.set_key("rrsa", &key2).await;
    let refused =
        aliases.wait_condition("rrsa", generation, "False", "CredentialsUnavailable").await;
    let message = refused.ready_condition().map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("AuthenticationFail.NoPermission"), "status message: {message}");
    let after = emulator.calls_after(mark).await;
    assert!(
        after
            .iter()
            .any(|c| c.access_key_id == first_session && c.code == "InvalidSecurityToken.Expired"),
        "the expired session was not refused by KMS: {after:#?}"
    );
    let refusals: Vec<_> = after
        .iter()
        .filter(|c| c.action == "AssumeRoleWithOIDC" && c.code == "AuthenticationFail.NoPermission")
        .collect();
    assert!(!refusals.is_empty(), "no refused AssumeRoleWithOIDC: {after:#?}");
    assert!(
        !after.iter().any(|c| c.action == "AssumeRoleWithOIDC" && c.code == "OK"),
        "a token the role does not trust was accepted: {after:#?}"
    );
    assert!(!after.iter().any(|c| c.action == "UpdateAlias"), "no write without credentials");
    assert_eq!(emulator.alias_target(&admin, alias).await.as_deref(), Some(key1.as_str()));

    // 3. The trusted token again: the operator recovers on its own and re-points the alias.
    let mark = emulator.last_seq().await;
    write_atomic(&token_file, &allowed_token);
    aliases.wait_ready("rrsa", generation).await;
    assert_eq!(emulator.alias_target(&admin, alias).await.as_deref(), Some(key2.as_str()));
    let after = emulator.calls_after(mark).await;
    assert!(
        after.iter().any(|c| c.action == "AssumeRoleWithOIDC" && c.code == "OK"),
        "no new session: {after:#?}"
    );
    let update = after
        .iter()
        .find(|c| c.action == "UpdateAlias" && c.code == "OK")
        .unwrap_or_else(|| panic!("no UpdateAlias after recovery: {after:#?}"));
    assert!(update.access_key_id.starts_with("STS."), "{update:?}");
    assert_ne!(update.access_key_id, first_session, "a new session, not the expired one");
    assert!(operator.exited().is_none(), "the operator exited:\n{}", operator.log_text());

    let events = cluster.events().await;
    let object = serde_json::to_string(&aliases.get("rrsa").await).expect("object JSON");
    assert_no_leaks(
        &[&operator.log, &emulator.log],
        &[("events", events), ("object", object)],
        &[&admin.secret, &allowed_token, &other_token],
    );
    println!(
        "rrsa: Ready after {:.1}s from a cold start, whole test {:.1}s",
        became_ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
