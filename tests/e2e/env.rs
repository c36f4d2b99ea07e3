//! The shared test environment: one real control plane, one KMS emulator process and one
//! operator process per test binary, and a fresh namespace ("scene") per test.
//!
//! Everything runs as real processes under the harness's watchdog, so nothing outlives the
//! test binary. Each test builds its own kube and KMS clients: clients are tied to the tokio
//! runtime that made them, and every `#[tokio::test]` has its own.

pub use crate::common::{Call, REGION, calls_at, wait_for};
use crate::common::{install_crds, kubectl, kubectl_ok, operator_args};
use kms_alias_operator::crd::KmsAlias;
use kms_alias_operator::kms::{self, ClientConfig, Credentials, ErrorKind};
use kms_alias_operator::testenv::{ControlPlane, Supervised};
use kube::api::{Api, PostParams};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

pub const ACCESS_KEY_ID: &str = "e2e-operator";
pub const ACCESS_KEY_SECRET: &str = "e2e-operator-secret";
/// The AccessKey tests use for out-of-band changes, so the call log tells them apart.
pub const OOB_KEY_ID: &str = "e2e-out-of-band";
pub const OOB_KEY_SECRET: &str = "e2e-out-of-band-secret";
/// A second account in the shared emulator.
pub const ACCOUNT_B: &str = "2222222222222222";
pub const ACCOUNT_B_KEY_ID: &str = "e2e-account-b";
pub const ACCOUNT_B_SECRET: &str = "e2e-account-b-secret";
/// A third account, which no test gives a key: an account that cannot be told apart by its keys.
pub const ACCOUNT_EMPTY: &str = "3333333333333333";
pub const ACCOUNT_EMPTY_KEY_ID: &str = "e2e-account-empty";
pub const ACCOUNT_EMPTY_SECRET: &str = "e2e-account-empty-secret";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The processes of one test binary; kept in a static and never dropped.
pub struct Env {
    plane: ControlPlane,
    kms_url: String,
    operator_log: PathBuf,
    emulator_log: PathBuf,
    _emulator: Supervised,
    _operator: Supervised,
}

/// A runtime that outlives every test, for the harness's own async work.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("test runtime")
});
static ENV: OnceLock<Env> = OnceLock::new();

/// The environment, started on first use.
pub fn env() -> &'static Env {
    ENV.get_or_init(|| {
        std::thread::spawn(|| RUNTIME.block_on(Env::start()))
            .join()
            .expect("environment start-up panicked")
    })
}

/// Starts a `kms-emulator` process logging to `dir/kms-emulator-<name>.log`; returns it and
/// its URL once it listens.
pub async fn spawn_emulator(dir: &Path, name: &str, args: &[&str]) -> (Supervised, String) {
    let mut all = vec![format!("--region={REGION}")];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let log = dir.join(format!("kms-emulator-{name}.log"));
    crate::common::spawn_emulator(dir, name, &all, vec![], &log).await
}

impl Env {
    async fn start() -> Env {
        let plane = ControlPlane::start().await.unwrap_or_else(|e| panic!("control plane: {e}"));
        let dir = plane.dir().to_path_buf();
        install_crds(&plane).await;

        let (emulator, kms_url) = spawn_emulator(
            &dir,
            "shared",
            &[
                &format!("--access-key={ACCESS_KEY_ID}:{ACCESS_KEY_SECRET}"),
                &format!("--access-key={OOB_KEY_ID}:{OOB_KEY_SECRET}"),
                &format!("--account={ACCOUNT_B}={ACCOUNT_B_KEY_ID}:{ACCOUNT_B_SECRET}"),
                &format!("--account={ACCOUNT_EMPTY}={ACCOUNT_EMPTY_KEY_ID}:{ACCOUNT_EMPTY_SECRET}"),
            ],
        )
        .await;
        let emulator_log = dir.join("kms-emulator-shared.log");

        let operator_log = dir.join("kms-alias-operator.log");
        let operator = crate::common::spawn_operator(
            operator_args(&kms_url, &[]),
            vec![
                ("KUBECONFIG".into(), plane.kubeconfig().display().to_string()),
                ("ALIBABA_CLOUD_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
                ("ALIBABA_CLOUD_ACCESS_KEY_SECRET".into(), ACCESS_KEY_SECRET.into()),
                ("RUST_LOG".into(), "info,kms_alias_operator=debug".into()),
            ],
            &operator_log,
        );
        Env { plane, kms_url, operator_log, emulator_log, _emulator: emulator, _operator: operator }
    }

    /// Path of the emulator's log file.
    pub fn emulator_log(&self) -> &Path {
        &self.emulator_log
    }

    /// Path of the operator's log file.
    pub fn operator_log(&self) -> &Path {
        &self.operator_log
    }
}

/// A fresh namespace with clients for one test.
pub struct Scene {
    pub ns: String,
    api: Api<KmsAlias>,
    kms: kms::Client,
}

impl Scene {
    /// Creates namespace `<prefix>-<random>`.
    pub async fn new(prefix: &str) -> Scene {
        let env = env();
        let client = env.plane.client().await.expect("kube client");
        let ns = format!("{prefix}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .expect("namespace object");
        namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
        let config = ClientConfig {
            region: REGION.into(),
            endpoint: Some(env.kms_url.clone()),
            timeout: Duration::from_secs(10),
            allow_http: true,
        };
        let credentials = Credentials::new(OOB_KEY_ID, OOB_KEY_SECRET);
        let kms = kms::Client::new(&config, credentials).expect("kms client");
        Scene { api: Api::namespaced(client, &ns), ns, kms }
    }

    /// A KMS client past the operator, for out-of-band changes ("aliyun kms ...").
    pub fn kms(&self) -> &kms::Client {
        &self.kms
    }

    /// An alias name unique to this scene.
    pub fn alias_name(&self, base: &str) -> String {
        format!("alias/{}/{base}", self.ns)
    }

    /// Creates an Enabled key through the KMS API.
    pub async fn create_key(&self) -> String {
        self.kms.create_key("e2e").await.expect("CreateKey").key_id
    }

    /// The manifest of a `KmsAlias` in this scene.
    pub fn manifest(&self, name: &str, alias: &str, key: &str) -> String {
        let value = serde_json::json!({
            "apiVersion": "kms.aliasoperator.dev/v1alpha1",
            "kind": "KmsAlias",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"aliasName": alias, "keyId": key},
        });
        value.to_string()
    }

    /// `kubectl apply -f -` with `manifest` on stdin; returns the output, success or not.
    pub async fn kubectl_apply(&self, manifest: &str) -> Output {
        kubectl(&env().plane, &["apply", "-f", "-"], Some(manifest)).await
    }

    /// Applies a `KmsAlias` and asserts kubectl accepted it.
    pub async fn apply(&self, name: &str, alias: &str, key: &str) {
        let output = self.kubectl_apply(&self.manifest(name, alias, key)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl apply {name}: {stderr}");
    }

    /// Runs kubectl in this namespace, asserts success and returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        kubectl_ok(&env().plane, &[&["-n", self.ns.as_str()][..], args].concat()).await
    }

    /// Runs kubectl in this namespace and returns its output, success or not.
    pub async fn kubectl_output(&self, args: &[&str]) -> Output {
        kubectl(&env().plane, &[&["-n", self.ns.as_str()][..], args].concat(), None).await
    }

    /// Waits until `name`'s `Ready` condition has `reason`, for up to 30 s; returns its
    /// message.
    pub async fn wait_reason(&self, name: &str, reason: &str) -> String {
        self.wait_reason_within(name, reason, READY_TIMEOUT).await
    }

    /// [`Scene::wait_reason`] with another deadline.
    pub async fn wait_reason_within(&self, name: &str, reason: &str, timeout: Duration) -> String {
        wait_for(&format!("{name} reason {reason}"), timeout, || async {
            let ready = self.get(name).await?.ready_condition()?.clone();
            (ready.reason == reason).then_some(ready.message)
        })
        .await
    }

    /// How kstatus (Flux's health checks) and Argo CD, with the project's health script,
    /// read `KmsAlias` `name`: `((kstatus verdict, message), (Argo CD verdict, message))`.
    pub async fn health(&self, name: &str) -> ((String, String), (String, String)) {
        let json = self.kubectl(&["get", "kmsalias", name, "-o", "json"]).await;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/argocd/health.lua");
        let plane = &env().plane;
        let kstatus = crate::common::gitops_health(plane, &["kstatus"], &json).await;
        (kstatus, crate::common::gitops_health(plane, &["argocd", script], &json).await)
    }

    /// The Events about object `name`.
    pub async fn events(&self, name: &str) -> Vec<SeenEvent> {
        let selector = format!("involvedObject.name={name}");
        let json =
            self.kubectl(&["get", "events", "--field-selector", &selector, "-o", "json"]).await;
        let list: serde_json::Value = serde_json::from_str(&json).expect("events JSON");
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|e| {
                let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
                SeenEvent {
                    type_: text("type"),
                    reason: text("reason"),
                    message: text("message"),
                    count: e["count"].as_u64().unwrap_or(1),
                }
            })
            .collect()
    }

    /// Removes a key and every alias on it from KMS, as only the emulator can (a key deleted
    /// at the end of its pending window).
    pub async fn remove_key(&self, key: &str) {
        let url = format!("{}/_emulator/keys/{key}", env().kms_url);
        let response = reqwest::Client::new().delete(url).send().await.expect("remove key");
        assert!(response.status().is_success(), "removing {key}: {}", response.status());
    }

    /// The `KmsAlias` API of this namespace.
    pub fn api(&self) -> &Api<KmsAlias> {
        &self.api
    }

    /// The object, if it exists.
    pub async fn get(&self, name: &str) -> Option<KmsAlias> {
        self.api.get_opt(name).await.expect("get KmsAlias")
    }

    /// Waits until the object is Ready for its current generation.
    pub async fn wait_ready(&self, name: &str) -> KmsAlias {
        wait_for(&format!("{name} to be Ready"), READY_TIMEOUT, || async {
            let obj = self.get(name).await?;
            let ready = obj.ready_condition()?;
            let current = obj.status.as_ref()?.observed_generation == obj.metadata.generation;
            (ready.status == "True" && current).then_some(obj)
        })
        .await
    }

    /// Waits until the object no longer exists.
    pub async fn wait_gone(&self, name: &str) {
        wait_for(&format!("{name} to be deleted"), READY_TIMEOUT, || async {
            self.get(name).await.is_none().then_some(())
        })
        .await;
    }

    /// The key `alias` points at in KMS, `None` if the alias does not exist.
    pub async fn kms_target(&self, alias: &str) -> Option<String> {
        match self.kms.describe_key(alias).await {
            Ok(meta) => Some(meta.key_id),
            Err(e) if e.kind() == ErrorKind::AliasNotFound => None,
            Err(e) => panic!("DescribeKey {alias}: {e}"),
        }
    }

    /// The calls the operator made, from the emulator's call log.
    pub async fn calls(&self) -> Vec<Call> {
        let calls = calls_at(&env().kms_url).await;
        calls.into_iter().filter(|c| c.access_key_id == ACCESS_KEY_ID).collect()
    }

    /// URL of the shared emulator.
    pub fn kms_url(&self) -> String {
        env().kms_url.clone()
    }

    /// All objects in this scene.
    pub async fn list(&self) -> Vec<KmsAlias> {
        self.api.list(&Default::default()).await.expect("list KmsAliases").items
    }

    /// Creates a credentials Secret in this namespace, with the keys the operator reads.
    pub async fn secret(&self, name: &str, id: &str, secret: &str) {
        self.kubectl(&[
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=ALIBABA_CLOUD_ACCESS_KEY_ID={id}"),
            &format!("--from-literal=ALIBABA_CLOUD_ACCESS_KEY_SECRET={secret}"),
        ])
        .await;
    }

    /// Applies a KmsProviderConfig for the KMS at `url`: with the Secret `secret` of this
    /// namespace, or the operator's own identity when `None`.
    pub async fn provider_config(&self, name: &str, url: &str, secret: Option<&str>) {
        let credentials = match secret {
            Some(secret) => serde_json::json!({
                "source": "Secret",
                "secretRef": {"namespace": self.ns, "name": secret},
            }),
            None => serde_json::json!({"source": "OperatorIdentity"}),
        };
        let manifest = serde_json::json!({
            "apiVersion": "kms.aliasoperator.dev/v1alpha1",
            "kind": "KmsProviderConfig",
            "metadata": {"name": name},
            "spec": {
                "region": REGION,
                "endpoint": {"network": "Custom", "url": url, "allowInsecureHttp": true},
                "credentials": credentials,
            },
        });
        let output = self.kubectl_apply(&manifest.to_string()).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    /// A `KmsAlias` manifest naming a provider config.
    pub fn manifest_with_provider(
        &self,
        name: &str,
        alias: &str,
        key: &str,
        config: &str,
    ) -> String {
        let mut value: serde_json::Value =
            serde_json::from_str(&self.manifest(name, alias, key)).expect("manifest JSON");
        value["spec"]["providerConfigRef"] = serde_json::json!({"name": config});
        value.to_string()
    }

    /// Applies a `KmsAlias` naming a provider config.
    pub async fn apply_with_provider(&self, name: &str, alias: &str, key: &str, config: &str) {
        let output =
            self.kubectl_apply(&self.manifest_with_provider(name, alias, key, config)).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    /// How many `action` calls named `alias`, made by the operator.
    pub async fn count_calls(&self, action: &str, alias: &str) -> usize {
        self.calls()
            .await
            .iter()
            .filter(|c| {
                c.action == action && c.params.get("AliasName").map(String::as_str) == Some(alias)
            })
            .count()
    }

    /// How many `action` calls named `alias`, made by the operator, that KMS did not turn away
    /// as throttled: the calls that could have changed something. The shared emulator's
    /// account quota is also spent by the tests' own calls, so a throttled retry is normal.
    pub async fn count_applied(&self, action: &str, alias: &str) -> usize {
        self.calls()
            .await
            .iter()
            .filter(|c| {
                c.action == action
                    && c.params.get("AliasName").map(String::as_str) == Some(alias)
                    && !c.code.contains("Throttling")
            })
            .count()
    }

    /// How many operator calls of any action carried `value` as a parameter.
    pub async fn count_calls_naming(&self, value: &str) -> usize {
        self.calls().await.iter().filter(|c| c.names(value)).count()
    }
}

/// One Event as `kubectl get events` shows it.
#[derive(Debug)]
pub struct SeenEvent {
    pub type_: String,
    pub reason: String,
    pub message: String,
    /// How many times the recorder folded it into this one series.
    pub count: u64,
}
