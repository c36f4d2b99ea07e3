//! Start-up without credentials: the operator exits non-zero and its log names every source
//! of the default chain and why it gave nothing.
//!
//! The credential check comes before the operator talks to Kubernetes or KMS, so this test
//! needs neither: the kubeconfig and the KMS endpoint point nowhere.

use crate::stack::{DumpOnPanic, Operator, assert_no_leaks, wait_for};
use std::time::{Duration, Instant};

#[tokio::test]
async fn no_credentials_fails_start_up_naming_every_source() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("no-such-kubeconfig");
    let mut operator = Operator::start(dir.path(), &kubeconfig, "http://127.0.0.1:9", &[]);
    let _dump = DumpOnPanic(vec![operator.log.clone()]);

    let status = wait_for("the operator to exit", Duration::from_secs(30), || {
        std::future::ready(operator.exited())
    })
    .await;
    assert!(!status.success(), "exited with {status}");
    assert_eq!(status.code(), Some(1), "exit status {status}");

    let log = operator.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("operator failed to start"))
        .unwrap_or_else(|| panic!("no start-up failure line in:\n{log}"));
    let missing_file = operator.home.join(".alibabacloud").join("credentials");
    let expected = [
        "no credentials found".to_owned(),
        "environment: ALIBABA_CLOUD_ACCESS_KEY_ID not set".to_owned(),
        "oidc: ALIBABA_CLOUD_ROLE_ARN not set".to_owned(),
        format!("credentials file: {} does not exist", missing_file.display()),
        "ecs ram role: disabled".to_owned(),
    ];
    for part in &expected {
        assert!(failure.contains(part.as_str()), "{part:?} missing from: {failure}");
    }
    assert!(!log.contains("starting kms-alias-operator"), "it got past the credential check");
    assert_no_leaks(&[&operator.log], &[], &[]);
    println!("startup: exited with {status} after {:.1}s", started.elapsed().as_secs_f64());
}
