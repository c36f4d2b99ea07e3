//! The Helm chart: installed with the real `helm` into the local control plane, its RBAC is
//! enough for the operator running as the chart's service account, and uninstalling the
//! release leaves the CRDs (and so the objects) alone.

use crate::stack::{AccessKey, Cluster, DumpOnPanic, Emulator, Operator, REGION};
use kms_alias_operator::kms::credentials::{ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET};
use serde_json::json;
use std::path::{Path, PathBuf};

fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("KMS_TESTENV_BIN_DIR").expect("KMS_TESTENV_BIN_DIR is set");
    Path::new(&dir).join(name)
}

async fn helm(cluster: &Cluster, args: &[&str]) -> String {
    let output = tokio::process::Command::new(bin("helm"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(args)
        .output()
        .await
        .expect("run helm");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "helm {args:?}: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A kubeconfig that authenticates as the chart's service account, not as the admin.
async fn service_account_kubeconfig(cluster: &Cluster, namespace: &str, name: &str) -> PathBuf {
    let server = cluster
        .kubectl(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"])
        .await;
    let token = cluster.kubectl(&["create", "token", name, "-n", namespace]).await;
    let path = cluster.dir().join("service-account.kubeconfig");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server.trim(),
            "certificate-authority": cluster.dir().join("ca.crt"),
        }}],
        "users": [{"name": name, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": name}}],
        "current-context": "sa",
    });
    std::fs::write(&path, config.to_string()).expect("write kubeconfig");
    path
}

#[tokio::test]
async fn operator_runs_with_the_charts_rbac_and_uninstall_keeps_the_crds() {
    let cluster = Cluster::start().await;
    let dir = cluster.dir().to_path_buf();
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/kms-alias-operator");
    let install = ["install", "kms", chart, "-n", "kms-system", "--create-namespace"];
    helm(&cluster, &install).await;

    let operator_key = AccessKey::random("chart-operator");
    let config = json!({"region": REGION, "accessKeys": [operator_key.spec()]});
    let emulator = Emulator::start(&dir, "chart", &config).await;
    let key = emulator.client(&operator_key).create_key("chart").await.expect("CreateKey").key_id;

    let kubeconfig = service_account_kubeconfig(&cluster, "kms-system", "kms").await;
    let env = [
        (ENV_ACCESS_KEY_ID, operator_key.id.clone()),
        (ENV_ACCESS_KEY_SECRET, operator_key.secret.clone()),
    ];
    let mut operator = Operator::start(&dir, &kubeconfig, &emulator.url, &env);
    let _dump = DumpOnPanic(vec![operator.log.clone(), emulator.log.clone()]);

    let aliases = cluster.aliases().await;
    let alias = "alias/chart/app";
    aliases.create("app", alias, &key).await;
    aliases.wait_ready("app", 1).await;
    assert_eq!(emulator.alias_target(&operator_key, alias).await.as_deref(), Some(key.as_str()));
    let events = cluster.events().await;
    assert!(events.contains("Created"), "the service account may publish events: {events}");
    assert!(operator.exited().is_none(), "the operator is still running");

    helm(&cluster, &["uninstall", "kms", "-n", "kms-system"]).await;
    let crds = cluster.kubectl(&["get", "crd", "-o", "name"]).await;
    assert!(crds.contains("kmsaliases.kms.aliasoperator.dev"), "CRDs survive uninstall: {crds}");
    let still_there = cluster.kubectl(&["get", "kmsalias", "app", "-o", "name"]).await;
    assert_eq!(still_there.trim(), "kmsalias.kms.aliasoperator.dev/app");
}
