//! Smoke test of the local control plane: the kube client and the real kubectl reach it, and
//! the client works again after the API server restarts on the same port.
//!
//! Needs `KMS_TESTENV_BIN_DIR` (see `hack/build-control-plane.sh`).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kms_alias_operator::testenv::ControlPlane;
use kube::api::{Api, ListParams};

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

async fn namespace_names(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces.list(&ListParams::default()).await?;
    Ok(list.items.into_iter().filter_map(|ns| ns.metadata.name).collect())
}

/// Polls until the namespace list succeeds, failing after [`DEADLINE`] with the last error.
async fn eventually_list(client: &kube::Client) -> Vec<String> {
    let started = Instant::now();
    loop {
        match namespace_names(client).await {
            Ok(names) => return names,
            Err(error) if started.elapsed() > DEADLINE => panic!("listing never worked: {error}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

#[tokio::test]
async fn control_plane_serves_client_and_kubectl_and_survives_restart() {
    let mut plane = ControlPlane::start().await.unwrap_or_else(|error| panic!("start: {error}"));
    let client = plane.client().await.expect("client from kubeconfig");

    let names = eventually_list(&client).await;
    assert!(names.iter().any(|name| name == "default"), "namespaces: {names:?}");

    let output = plane
        .kubectl()
        .args(["get", "ns", "default", "-o", "name"])
        .output()
        .await
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "namespace/default");

    plane.stop_apiserver().await.expect("apiserver stops");
    assert!(namespace_names(&client).await.is_err(), "the API server should be down");
    plane.start_apiserver().await.expect("apiserver starts again");

    let names = eventually_list(&client).await;
    assert!(names.iter().any(|name| name == "kube-system"), "namespaces: {names:?}");

    plane.restart_apiserver().await.expect("apiserver restarts");
    assert!(!eventually_list(&client).await.is_empty());
    plane.stop().await.expect("control plane stops");
}
