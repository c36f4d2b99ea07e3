//! Admission (case 1's refusals): the API server itself rejects bad alias names with a
//! message naming the rule, before any KMS call. The valid names are in `cases.rs`.

use crate::env::Scene;

/// Applies one manifest with kubectl and returns (success, stderr).
async fn try_apply(scene: &Scene, name: &str, alias: &str) -> (bool, String) {
    let output =
        scene.kubectl_apply(&scene.manifest(name, alias, "key-hzz000000000000000001")).await;
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn bad_alias_names_are_rejected_with_the_rule_named() {
    let scene = Scene::new("admission").await;
    let too_long = format!("alias/{}", "a".repeat(256));
    let cases = [
        ("n1", "app", "must start with the prefix 'alias/'"),
        ("n2", "alias/", "1 to 255 characters after 'alias/'"),
        ("n3", "alias/a.b", "only letters, digits, '_', '/' and '-'"),
        ("n4", "alias/acs/x", "must not start with 'alias/acs'"),
        ("n5", too_long.as_str(), "1 to 255 characters after 'alias/'"),
        ("n6", "alias/svc:test", "only letters, digits"),
        ("n7", "alias/ключ", "only letters, digits"),
        ("n8", "alias/app ", "only letters, digits"),
    ];
    for (name, alias, rule) in cases {
        let (ok, stderr) = try_apply(&scene, name, alias).await;
        assert!(!ok, "{alias:?} was accepted");
        assert!(stderr.contains(rule), "{alias:?}: error does not name the rule: {stderr}");
    }
    let names = scene.kubectl(&["get", "kmsaliases", "-o", "name"]).await;
    assert_eq!(names.trim(), "", "no rejected object was stored");
    for (_, alias, _) in cases {
        assert_eq!(scene.count_calls_naming(alias).await, 0, "a KMS call named {alias:?}");
    }
}

#[tokio::test]
async fn alias_name_as_key_id_is_rejected() {
    let scene = Scene::new("admission-key").await;
    let cases = [
        ("alias/other", "not an alias name"),
        ("acs:kms:cn-hangzhou:1234567890123456:alias/other", "not an alias ARN"),
    ];
    for (key, rule) in cases {
        let output = scene.kubectl_apply(&scene.manifest("k", "alias/k", key)).await;
        assert!(!output.status.success(), "{key} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("keyId must be a key id or key ARN, {rule}")), "{stderr}");
    }
}
