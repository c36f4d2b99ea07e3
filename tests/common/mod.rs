//! What the three end-to-end test binaries (`e2e`, `identity`, `resilience`) share: polling,
//! the crate's binaries as processes (the emulator, the operator), kubectl on a control plane,
//! and the emulator's call log. Each binary includes this file with
//! `#[path = "../common/mod.rs"] mod common;` and uses the part it needs.
#![allow(dead_code)]

use kms_alias_operator::testenv::{ControlPlane, Supervised};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The region the emulators and operators of the tests use.
pub const REGION: &str = "cn-hangzhou";

/// Polls `probe` every 200 ms until it yields a value; panics naming `what` at the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let found = kms_alias_operator::testenv::poll(timeout, probe).await;
    found.unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// A binary of this crate; integration tests are built next to them.
pub fn target_bin(name: &str) -> PathBuf {
    kms_alias_operator::testenv::crate_binary(name).expect("test executable path")
}

/// Starts a `kms-emulator` process on a free port with `args`, logging to `log`; returns it
/// and its URL once it listens. `name` tells the port files of several emulators apart.
pub async fn spawn_emulator(
    dir: &Path,
    name: &str,
    args: &[String],
    env: Vec<(String, String)>,
    log: &Path,
) -> (Supervised, String) {
    let port_file = dir.join(format!("emulator-{name}.port"));
    let mut all =
        vec!["--listen=127.0.0.1:0".to_owned(), format!("--port-file={}", port_file.display())];
    all.extend(args.iter().cloned());
    let emulator = Supervised::spawn("kms-emulator", target_bin("kms-emulator"), all, env, log)
        .expect("emulator starts");
    let port = wait_for("emulator port file", Duration::from_secs(30), || async {
        std::fs::read_to_string(&port_file).ok().filter(|p| !p.trim().is_empty())
    })
    .await;
    (emulator, format!("http://127.0.0.1:{}", port.trim()))
}

/// The `kms-alias-operator run` flags the tests use against the emulator at `kms_url`, with
/// `extra` added; an extra `--flag=value` replaces the default of the same flag.
pub fn operator_args(kms_url: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        &format!("--region={REGION}"),
        &format!("--kms-endpoint={kms_url}"),
        "--allow-insecure-http",
        "--http-addr=127.0.0.1:0",
        "--resync-secs=120",
    ]
    .map(String::from)
    .to_vec();
    for extra in extra {
        let flag = extra.split('=').next().unwrap_or(extra);
        args.retain(|a| a.split('=').next() != Some(flag));
        args.push((*extra).to_owned());
    }
    args
}

/// Starts a `kms-alias-operator` process with `args` and exactly the variables `env` (on top
/// of what the harness passes), logging to `log`.
pub fn spawn_operator(args: Vec<String>, env: Vec<(String, String)>, log: &Path) -> Supervised {
    Supervised::spawn("kms-alias-operator", target_bin("kms-alias-operator"), args, env, log)
        .expect("operator starts")
}

/// Runs kubectl against `plane` with `stdin` piped in if given; the output, success or not.
pub async fn kubectl(plane: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = plane.kubectl();
    command.args(args);
    run(command, stdin).await
}

/// A GitOps tool's health verdict on the object `json` (as `kubectl get -o json` prints it):
/// `["kstatus"]` gives kstatus's (Flux's) `Current`, `InProgress`, `Failed`...; `["argocd",
/// script]` an Argo CD Lua health check's `Healthy`, `Progressing`, `Degraded`... Returns the
/// verdict and its message.
pub async fn gitops_health(plane: &ControlPlane, tool: &[&str], json: &str) -> (String, String) {
    let mut command = tokio::process::Command::new(plane.bin_dir().join("gitops-health"));
    command.args(tool);
    let output = run(command, Some(json)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gitops-health {tool:?} failed: {stderr}");
    // One line: `<name> <verdict> <message>`.
    let mut words = stdout.trim().splitn(3, ' ').skip(1);
    let verdict = words.next().unwrap_or_default().to_owned();
    (verdict, words.next().unwrap_or_default().to_owned())
}

/// Runs `command` with `stdin` (or none) and collects its output.
async fn run(mut command: tokio::process::Command, stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let input =
        if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() };
    command.stdin(input).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("spawn the command");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
    }
    child.wait_with_output().await.expect("command output")
}

/// Runs kubectl against `plane`, asserts success and returns stdout.
pub async fn kubectl_ok(plane: &ControlPlane, args: &[&str]) -> String {
    let output = kubectl(plane, args, None).await;
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Installs the operator's CRDs from `crds/` and waits until the API server serves them.
pub async fn install_crds(plane: &ControlPlane) {
    kubectl_ok(plane, &["apply", "-f", concat!(env!("CARGO_MANIFEST_DIR"), "/crds")]).await;
    let established = "--for=condition=Established";
    let crds =
        ["crd/kmsaliases.kms.aliasoperator.dev", "crd/kmsproviderconfigs.kms.aliasoperator.dev"];
    kubectl_ok(plane, &[&["wait", established][..], &crds].concat()).await;
}

/// One entry of the emulator's call log.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub seq: u64,
    /// Milliseconds since the Unix epoch when the emulator received the call.
    pub time_ms: u64,
    pub action: String,
    pub access_key_id: String,
    pub params: BTreeMap<String, String>,
    pub code: String,
}

impl Call {
    /// A parameter of the call.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Whether the call carried `value` as any parameter (an alias name, a key id).
    pub fn names(&self, value: &str) -> bool {
        self.params.values().any(|v| v == value)
    }
}

/// The call log of the emulator at `url`.
pub async fn calls_at(url: &str) -> Vec<Call> {
    let response = reqwest::get(format!("{url}/_emulator/calls")).await.expect("call log");
    response.json().await.expect("call log JSON")
}
