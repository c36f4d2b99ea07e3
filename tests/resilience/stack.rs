//! One test's own stack: a real control plane (etcd, kube-apiserver and, if asked,
//! kube-controller-manager), a KMS emulator process and an operator process.
//!
//! Unlike the e2e binary, which shares one stack between all tests, every test here starts its
//! own, so a test may stop or restart its API server without disturbing the others. Everything
//! runs under the harness's watchdog, so nothing outlives the test binary; dropping a [`Stack`]
//! kills its processes.

pub use crate::common::{Call, REGION, wait_for};
use crate::common::{calls_at, install_crds, kubectl, kubectl_ok, operator_args, spawn_emulator};
use kms_alias_operator::crd::KmsAlias;
use kms_alias_operator::kms::{self, ClientConfig, Credentials, ErrorKind};
use kms_alias_operator::testenv::{ControlPlane, Supervised};
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

pub const ACCESS_KEY_ID: &str = "resilience-operator";
pub const ACCESS_KEY_SECRET: &str = "resilience-operator-secret";
/// The AccessKey the tests use themselves, so the call log tells them apart from the operator.
const OOB_KEY_ID: &str = "resilience-out-of-band";
const OOB_KEY_SECRET: &str = "resilience-out-of-band-secret";

/// How many stacks may run at once. Each is several processes, and starting an API server is
/// CPU-heavy; on a small machine, too many at once would eat into the time limits under test.
static STACKS: Semaphore = Semaphore::const_new(3);

/// How a test's stack differs from the default one.
#[derive(Default)]
pub struct Options<'a> {
    /// Also run kube-controller-manager (namespace deletion, garbage collection).
    pub controller_manager: bool,
    /// Extra `kms-alias-operator run` flags; `--flag=value` replaces a default of the same flag.
    pub operator_args: &'a [&'a str],
    /// Extra `kms-emulator` flags.
    pub emulator_args: &'a [&'a str],
}

/// The processes of one test, and clients for them.
pub struct Stack {
    // Fields drop in order: the operator and the emulator die first, then the control plane,
    // and the permit for the next stack goes last.
    operator: Supervised,
    /// How the operator was started, to start it again.
    operator_command: (Vec<String>, Vec<(String, String)>),
    _emulator: Supervised,
    client: kube::Client,
    kms: kms::Client,
    kms_url: String,
    operator_log: PathBuf,
    /// The control plane; `&mut` access restarts its API server.
    pub plane: ControlPlane,
    _permit: SemaphorePermit<'static>,
}

impl Stack {
    /// Starts a control plane (with kube-controller-manager if `controller_manager`), installs
    /// the CRDs, and starts the emulator and the operator. All files, logs included, go to
    /// `<target>/tmp/resilience/<name>/`, emptied first and kept afterwards for inspection.
    pub async fn start(name: &str, controller_manager: bool) -> Stack {
        Self::start_with(name, Options { controller_manager, ..Options::default() }).await
    }

    /// [`Stack::start`] with more choices.
    pub async fn start_with(name: &str, options: Options<'_>) -> Stack {
        let controller_manager = options.controller_manager;
        let permit = STACKS.acquire().await.expect("stack semaphore is never closed");
        let started = Instant::now();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("resilience").join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("failed to empty {}: {e}", dir.display()),
        }
        let plane = ControlPlane::builder()
            .dir(&dir)
            .controller_manager(controller_manager)
            .start()
            .await
            .unwrap_or_else(|e| panic!("control plane: {e}"));
        let dir = plane.dir().to_path_buf();
        install_crds(&plane).await;

        let mut emulator_args = vec![
            format!("--region={REGION}"),
            format!("--access-key={ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}"),
            format!("--access-key={OOB_KEY_ID}:{OOB_KEY_SECRET}"),
        ];
        emulator_args.extend(options.emulator_args.iter().map(|a| (*a).to_owned()));
        let emulator_log = dir.join("kms-emulator.log");
        let (emulator, kms_url) =
            spawn_emulator(&dir, "stack", &emulator_args, vec![], &emulator_log).await;
        let operator_log = dir.join("kms-alias-operator.log");
        let kubeconfig = plane.kubeconfig().display().to_string();
        let operator_command = (
            operator_args(&kms_url, options.operator_args),
            vec![
                ("KUBECONFIG".into(), kubeconfig),
                ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), ACCESS_KEY_SECRET.into()),
                // The watcher's backoff lines show when and how long the watch waited.
                (
                    "RUST_LOG".into(),
                    "info,kms_alias_operator=debug,kube_runtime::utils::stream_backoff=debug,kube_runtime::watcher=debug"
                        .into(),
                ),
            ],
        );
        let (args, env) = operator_command.clone();
        let operator = crate::common::spawn_operator(args, env, &operator_log);

        let client = plane.client().await.expect("kube client");
        let config = ClientConfig {
            region: REGION.into(),
            endpoint: Some(kms_url.clone()),
            timeout: Duration::from_secs(10),
            allow_http: true,
        };
        let kms = kms::Client::new(&config, Credentials::new(OOB_KEY_ID, OOB_KEY_SECRET))
            .expect("kms client");
        println!("stack up in {:.1?} (dir {})", started.elapsed(), dir.display());
        Stack {
            operator,
            operator_command,
            _emulator: emulator,
            client,
            kms,
            kms_url,
            operator_log,
            plane,
            _permit: permit,
        }
    }

    /// The emulator's URL.
    pub fn kms_url(&self) -> &str {
        &self.kms_url
    }

    /// A kube client; rebuilt by [`Stack::reconnect`] after an API server restart.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Drops the pooled connections of the test's own kube client (not the operator's).
    pub async fn reconnect(&mut self) {
        self.client = self.plane.client().await.expect("kube client");
    }

    /// `KmsAlias` objects in `ns`.
    pub fn api(&self, ns: &str) -> Api<KmsAlias> {
        Api::namespaced(self.client(), ns)
    }

    /// Path of the operator's log.
    pub fn operator_log(&self) -> &Path {
        &self.operator_log
    }

    /// Kills the operator at once (SIGKILL), as a crash or an OOM kill would.
    pub fn crash_operator(&mut self) {
        self.operator.kill();
    }

    /// Starts the operator again as it was first started; its log goes on in the same file.
    pub fn restart_operator(&mut self) {
        let (args, env) = self.operator_command.clone();
        self.operator = crate::common::spawn_operator(args, env, &self.operator_log);
    }

    /// Asserts the operator process is still running.
    pub fn assert_operator_running(&mut self) {
        if let Some(status) = self.operator.exited() {
            panic!(
                "the operator exited with {status}; log tail:\n{}",
                tail(&self.operator_log, 40)
            );
        }
    }

    /// A KMS client past the operator, for out-of-band changes.
    pub fn kms(&self) -> &kms::Client {
        &self.kms
    }

    /// Creates an Enabled key through the KMS API.
    pub async fn create_key(&self) -> String {
        self.kms.create_key("resilience").await.expect("CreateKey").key_id
    }

    /// The key `alias` points at in KMS, `None` if the alias does not exist.
    pub async fn kms_target(&self, alias: &str) -> Option<String> {
        match self.kms.describe_key(alias).await {
            Ok(meta) => Some(meta.key_id),
            Err(e) if e.kind() == ErrorKind::AliasNotFound => None,
            Err(e) => panic!("DescribeKey {alias}: {e}"),
        }
    }

    /// Every alias name in the emulator's account and region.
    pub async fn kms_aliases(&self) -> Vec<String> {
        let aliases = self.kms.list_aliases().await.expect("ListAliases");
        aliases.into_iter().map(|a| a.alias_name).collect()
    }

    /// The calls the operator made, from the emulator's call log.
    pub async fn operator_calls(&self) -> Vec<Call> {
        let calls = calls_at(&self.kms_url).await;
        calls.into_iter().filter(|c| c.access_key_id == ACCESS_KEY_ID).collect()
    }

    /// The operator's calls of `action` naming `alias`.
    pub async fn calls_for(&self, action: &str, alias: &str) -> Vec<Call> {
        let calls = self.operator_calls().await;
        calls
            .into_iter()
            .filter(|c| {
                c.action == action && c.params.get("AliasName").map(String::as_str) == Some(alias)
            })
            .collect()
    }

    /// How many of the operator's calls, of any action, carried `value` as a parameter.
    pub async fn count_calls_naming(&self, value: &str) -> usize {
        self.operator_calls().await.iter().filter(|c| c.names(value)).count()
    }

    /// Arms an emulator fault (`POST /_emulator/faults`).
    pub async fn arm_fault(&self, fault: serde_json::Value) {
        let url = format!("{}/_emulator/faults", self.kms_url);
        let response = reqwest::Client::new().post(url).json(&fault).send().await.expect("faults");
        assert!(response.status().is_success(), "arming {fault}: {}", response.status());
    }

    /// Disarms every emulator fault (`DELETE /_emulator/faults`).
    pub async fn disarm_faults(&self) {
        let url = format!("{}/_emulator/faults", self.kms_url);
        let response = reqwest::Client::new().delete(url).send().await.expect("faults");
        assert!(response.status().is_success(), "disarming faults: {}", response.status());
    }

    /// The emulator's armed faults; one armed with `times` goes once its last shot is taken.
    pub async fn armed_faults(&self) -> Vec<serde_json::Value> {
        let url = format!("{}/_emulator/faults", self.kms_url);
        reqwest::get(url).await.expect("faults").json().await.expect("faults JSON")
    }

    /// `kubectl` with `args`; the output, success or not.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.plane, args, None).await
    }

    /// `kubectl` with `args`; asserts success and returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        kubectl_ok(&self.plane, args).await
    }

    /// `kubectl apply -f -` with `manifest`; asserts success.
    pub async fn apply(&self, manifest: &str) {
        let output = kubectl(&self.plane, &["apply", "-f", "-"], Some(manifest)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl apply: {stderr}");
    }

    /// The object, `Err` when the API could not answer.
    pub async fn try_get(&self, ns: &str, name: &str) -> Result<Option<KmsAlias>, kube::Error> {
        self.api(ns).get_opt(name).await
    }

    /// The object, treating an API error as "not known yet" (logged), for polling.
    async fn poll_get(&self, ns: &str, name: &str) -> Option<Option<KmsAlias>> {
        match self.try_get(ns, name).await {
            Ok(obj) => Some(obj),
            Err(error) => {
                println!("  (get {ns}/{name} failed, polling on: {error})");
                None
            }
        }
    }

    /// Waits until the object is Ready for its current generation; returns it and the time.
    pub async fn wait_ready(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
    ) -> (KmsAlias, Duration) {
        let started = Instant::now();
        let obj = wait_for(&format!("{ns}/{name} to be Ready"), timeout, || async {
            let obj = self.poll_get(ns, name).await??;
            is_ready(&obj).then_some(obj)
        })
        .await;
        (obj, started.elapsed())
    }

    /// Waits until the object no longer exists; returns the time it took.
    pub async fn wait_gone(&self, ns: &str, name: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        wait_for(&format!("{ns}/{name} to be deleted"), timeout, || async {
            self.poll_get(ns, name).await?.is_none().then_some(())
        })
        .await;
        started.elapsed()
    }

    /// The address of the operator's `/healthz` and `/readyz`, from its start-up log line.
    pub async fn operator_http(&self) -> String {
        wait_for("the operator's start-up log line", Duration::from_secs(30), || async {
            let log = std::fs::read_to_string(&self.operator_log).ok()?;
            // The latest start: after a restart the log goes on in the same file.
            let line = log.lines().rev().find(|l| l.contains("starting kms-alias-operator"))?;
            let addr = line.split_whitespace().find_map(|w| w.strip_prefix("http="))?;
            Some(format!("http://{addr}"))
        })
        .await
    }

    /// Log lines of the operator containing `needle`.
    pub fn operator_log_lines(&self, needle: &str) -> Vec<String> {
        let log = std::fs::read_to_string(&self.operator_log).unwrap_or_default();
        log.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

/// Whether the object is Ready for its current generation.
pub fn is_ready(obj: &KmsAlias) -> bool {
    let current =
        obj.status.as_ref().and_then(|s| s.observed_generation) == obj.metadata.generation;
    current && obj.ready_condition().is_some_and(|c| c.status == "True")
}

/// The manifest of a `KmsAlias`, with `finalizers` preset if not empty.
pub fn manifest(
    ns: &str,
    name: &str,
    alias: &str,
    key: &str,
    finalizers: &[&str],
) -> serde_json::Value {
    let mut value = serde_json::json!({
        "apiVersion": "kms.aliasoperator.dev/v1alpha1",
        "kind": "KmsAlias",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"aliasName": alias, "keyId": key},
    });
    if !finalizers.is_empty() {
        value["metadata"]["finalizers"] = serde_json::json!(finalizers);
    }
    value
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The value of one sample of the `/metrics` of the operator at `http`, 0 if absent.
pub async fn metric(http: &str, sample: &str) -> f64 {
    let text = reqwest::get(format!("{http}/metrics")).await.expect("metrics").text().await;
    let text = text.expect("metrics body");
    text.lines().find_map(|line| line.strip_prefix(sample)?.trim().parse().ok()).unwrap_or(0.0)
}
