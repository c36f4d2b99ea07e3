//! One test's stack: a control plane with the CRDs, an emulator started from a config file,
//! and an operator process whose credentials come only from what the test hands it.
//!
//! Everything runs under the harness's watchdog (`testenv::Supervised`), so nothing outlives
//! the test binary; dropping the values stops the processes, and the control plane's
//! temporary directory (which also holds the emulator's and operator's files) goes last.

pub use crate::common::{Call, REGION, wait_for};
use crate::common::{calls_at, install_crds, kubectl_ok, operator_args, spawn_emulator};
use kms_alias_operator::crd::KmsAlias;
use kms_alias_operator::kms::credentials::{
    ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ASSUME_ROLE_ARN, ENV_CREDENTIALS_FILE,
    ENV_ECS_METADATA, ENV_ECS_METADATA_DISABLED, ENV_IMDSV1_DISABLED, ENV_OIDC_PROVIDER_ARN,
    ENV_OIDC_TOKEN_FILE, ENV_PROFILE, ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME, ENV_SECURITY_TOKEN,
    ENV_STS_ENDPOINT, ENV_STS_REGION, ENV_VPC_ENDPOINT_ENABLED,
};
use kms_alias_operator::kms::{self, ClientConfig, Credentials, ErrorKind};
use kms_alias_operator::testenv::{ControlPlane, Supervised};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// The emulator's default account.
pub const ACCOUNT_UID: &str = "1234567890123456";
/// Namespace of the test's `KmsAlias` objects.
pub const NAMESPACE: &str = "default";
/// How long an object may take to reach a condition.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);

/// Replaces `path` the way a careful writer does: a temporary file, then a rename, so a reader
/// never sees half a file.
pub fn write_atomic(path: &Path, contents: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, contents).unwrap_or_else(|e| panic!("write {}: {e}", temp.display()));
    std::fs::rename(&temp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

/// An AccessKey pair with a secret unique to this run, so a log scan means something.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

impl AccessKey {
    pub fn random(id: &str) -> Self {
        Self { id: id.to_owned(), secret: format!("{id}-secret-{}", uuid::Uuid::new_v4().simple()) }
    }

    /// The config-file entry of this key.
    pub fn spec(&self) -> Value {
        json!({"id": self.id, "secret": self.secret})
    }
}

/// A real control plane with the operator's CRDs installed.
pub struct Cluster {
    plane: ControlPlane,
}

impl Cluster {
    pub async fn start() -> Cluster {
        let plane = ControlPlane::start().await.unwrap_or_else(|e| panic!("control plane: {e}"));
        install_crds(&plane).await;
        Cluster { plane }
    }

    /// The control plane's working directory; the test keeps its files there too.
    pub fn dir(&self) -> &Path {
        self.plane.dir()
    }

    pub fn kubeconfig(&self) -> &Path {
        self.plane.kubeconfig()
    }

    /// Runs kubectl, asserts success and returns stdout.
    pub async fn kubectl(&self, args: &[&str]) -> String {
        kubectl_ok(&self.plane, args).await
    }

    /// A service-account token from the TokenRequest API, as the kubelet projects it for RRSA.
    pub async fn token(&self, namespace: &str, service_account: &str) -> String {
        let args =
            ["create", "token", service_account, "-n", namespace, "--audience", "sts.aliyuncs.com"];
        let token = self.kubectl(&[&args[..], &["--duration", "1h"]].concat()).await;
        let token = token.trim().to_owned();
        assert_eq!(token.split('.').count(), 3, "a JWT from TokenRequest");
        token
    }

    /// The `KmsAlias` objects of [`NAMESPACE`].
    pub async fn aliases(&self) -> Aliases {
        let client = self.plane.client().await.expect("kube client");
        Aliases { api: Api::namespaced(client, NAMESPACE) }
    }

    /// Every event of the cluster, as JSON text (for the secret scan).
    pub async fn events(&self) -> String {
        self.kubectl(&["get", "events", "-A", "-o", "json"]).await
    }
}

/// The `KmsAlias` API of one namespace.
pub struct Aliases {
    api: Api<KmsAlias>,
}

impl Aliases {
    pub async fn create(&self, name: &str, alias: &str, key: &str) {
        let object = json!({
            "apiVersion": "kms.aliasoperator.dev/v1alpha1",
            "kind": "KmsAlias",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"aliasName": alias, "keyId": key},
        });
        let object: KmsAlias = serde_json::from_value(object).expect("KmsAlias object");
        self.api.create(&PostParams::default(), &object).await.expect("create KmsAlias");
    }

    /// Points the object at another key; returns the new generation.
    pub async fn set_key(&self, name: &str, key: &str) -> i64 {
        let patch = json!({"spec": {"keyId": key}});
        let object = self
            .api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch spec.keyId");
        object.metadata.generation.expect("generation")
    }

    pub async fn get(&self, name: &str) -> Option<KmsAlias> {
        self.api.get_opt(name).await.expect("get KmsAlias")
    }

    /// Waits until the `Ready` condition of `generation` has `status` and `reason`.
    pub async fn wait_condition(
        &self,
        name: &str,
        generation: i64,
        status: &str,
        reason: &str,
    ) -> KmsAlias {
        let what = format!("{name} generation {generation} to be Ready={status} ({reason})");
        wait_for(&what, CONDITION_TIMEOUT, || async {
            let object = self.get(name).await?;
            let ready = object.ready_condition()?;
            let current = object.metadata.generation == Some(generation)
                && ready.observed_generation == Some(generation);
            (current && ready.status == status && ready.reason == reason).then_some(object)
        })
        .await
    }

    pub async fn wait_ready(&self, name: &str, generation: i64) -> KmsAlias {
        self.wait_condition(name, generation, "True", "AliasReady").await
    }
}

/// A `kms-emulator` process started from a config file.
pub struct Emulator {
    pub url: String,
    pub log: PathBuf,
    http: reqwest::Client,
    _process: Supervised,
}

impl Emulator {
    /// Writes `config` as YAML to `dir/<name>.yaml` and starts the emulator on a free port.
    pub async fn start(dir: &Path, name: &str, config: &Value) -> Emulator {
        let config_file = dir.join(format!("emulator-{name}.yaml"));
        let yaml = serde_yaml::to_string(config).expect("config YAML");
        std::fs::write(&config_file, yaml).expect("write emulator config");
        let log = dir.join(format!("kms-emulator-{name}.log"));
        let args = [format!("--config={}", config_file.display())];
        let env = vec![("RUST_LOG".to_owned(), "info,kms_alias_operator=debug".to_owned())];
        let (process, url) = spawn_emulator(dir, name, &args, env, &log).await;
        Emulator { url, log, http: reqwest::Client::new(), _process: process }
    }

    /// A KMS client past the operator, for the test's own calls.
    pub fn client(&self, key: &AccessKey) -> kms::Client {
        let config = ClientConfig {
            region: REGION.into(),
            endpoint: Some(self.url.clone()),
            timeout: Duration::from_secs(10),
            allow_http: true,
        };
        kms::Client::new(&config, Credentials::new(&key.id, &key.secret)).expect("kms client")
    }

    /// The whole call log.
    pub async fn calls(&self) -> Vec<Call> {
        calls_at(&self.url).await
    }

    /// The calls after sequence number `seq`.
    pub async fn calls_after(&self, seq: u64) -> Vec<Call> {
        self.calls().await.into_iter().filter(|c| c.seq > seq).collect()
    }

    /// The sequence number of the newest call, 0 if none.
    pub async fn last_seq(&self) -> u64 {
        self.calls().await.iter().map(|c| c.seq).max().unwrap_or(0)
    }

    /// POSTs `body` to an admin path, asserts success and returns the JSON answer, if any.
    pub async fn admin(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status();
        let text = response.text().await.expect("admin answer");
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The key `alias` points at, `None` if it does not exist, asked with `key`.
    pub async fn alias_target(&self, key: &AccessKey, alias: &str) -> Option<String> {
        match self.client(key).describe_key(alias).await {
            Ok(meta) => Some(meta.key_id),
            Err(e) if e.kind() == ErrorKind::AliasNotFound => None,
            Err(e) => panic!("DescribeKey {alias}: {e}"),
        }
    }
}

/// Every variable the credential chain reads, and the operator's own settings. They are
/// passed to the operator empty (which the chain treats as unset), so whatever the test
/// runner's environment holds cannot leak into a test.
fn credential_variables() -> Vec<String> {
    let known = [
        ENV_ACCESS_KEY_ID,
        ENV_ACCESS_KEY_SECRET,
        ENV_SECURITY_TOKEN,
        ENV_CREDENTIALS_FILE,
        ENV_PROFILE,
        ENV_ROLE_ARN,
        ENV_OIDC_PROVIDER_ARN,
        ENV_OIDC_TOKEN_FILE,
        ENV_ROLE_SESSION_NAME,
        ENV_STS_ENDPOINT,
        ENV_STS_REGION,
        ENV_VPC_ENDPOINT_ENABLED,
        ENV_ECS_METADATA,
        ENV_ECS_METADATA_DISABLED,
        ENV_IMDSV1_DISABLED,
        ENV_ASSUME_ROLE_ARN,
    ];
    let inherited = std::env::vars().map(|(k, _)| k).filter(|k| k.starts_with("ALIBABA_CLOUD_"));
    let mut all: Vec<String> = known.iter().map(|k| (*k).to_owned()).chain(inherited).collect();
    all.sort();
    all.dedup();
    all
}

/// The operator process.
pub struct Operator {
    pub log: PathBuf,
    /// The empty directory it gets as `HOME`.
    pub home: PathBuf,
    process: Supervised,
}

impl Operator {
    /// Starts `kms-alias-operator run` against `kms_url` with an empty `HOME` under `dir`, no
    /// credential variables except `env`, and `kubeconfig`.
    pub fn start(dir: &Path, kubeconfig: &Path, kms_url: &str, env: &[(&str, String)]) -> Self {
        let home = dir.join("operator-home");
        std::fs::create_dir_all(&home).expect("create HOME");
        let log = dir.join("kms-alias-operator.log");
        let mut vars: BTreeMap<String, String> =
            credential_variables().into_iter().map(|k| (k, String::new())).collect();
        vars.insert("HOME".into(), home.display().to_string());
        vars.insert("KUBECONFIG".into(), kubeconfig.display().to_string());
        vars.insert("RUST_LOG".into(), "info,kms_alias_operator=debug".into());
        for (name, value) in env {
            vars.insert((*name).to_owned(), value.clone());
        }
        let args = operator_args(kms_url, &[]);
        let process = crate::common::spawn_operator(args, vars.into_iter().collect(), &log);
        Operator { log, home, process }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Prints the tail of each log when the test panics, before the directory is removed. Create
/// it after the values owning the directory, so that it drops first.
pub struct DumpOnPanic(pub Vec<PathBuf>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("----- last lines of {} -----\n{tail}", path.display());
        }
    }
}

/// Asserts that no log holds any of `secrets`, a security token (`CAIS…`), a JWT or a
/// `Signature=` parameter. `extra` is more text to check the same way (events, statuses).
pub fn assert_no_leaks(logs: &[&Path], extra: &[(&str, String)], secrets: &[&str]) {
    let mut texts: Vec<(String, String)> = logs
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            assert!(!text.is_empty(), "{} is empty: nothing was scanned", path.display());
            (path.display().to_string(), text)
        })
        .collect();
    texts.extend(extra.iter().map(|(name, text)| ((*name).to_owned(), text.clone())));
    for (name, text) in &texts {
        for secret in secrets {
            assert!(secret.len() >= 8, "too short to scan for");
            assert!(!text.contains(secret), "{name} contains a secret or token used by the test");
        }
        assert!(!text.contains("Signature="), "{name} contains a request signature");
        assert!(!text.contains("eyJhbGci"), "{name} contains a JWT");
        assert!(!has_security_token(text), "{name} contains an STS security token");
    }
}

/// Whether `text` holds `CAIS` followed by 20 or more token characters, the shape of the
/// security tokens STS (and the emulator) issue.
fn has_security_token(text: &str) -> bool {
    text.match_indices("CAIS").any(|(at, _)| {
        let rest = &text[at + 4..];
        rest.bytes().take_while(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(b)).count() >= 20
    })
}

#[test]
fn the_leak_scan_recognises_what_it_looks_for() {
    let token = format!("CAIS{}", "a1B2".repeat(10));
    assert!(has_security_token(&format!("x token={token} y")));
    assert!(!has_security_token("CAISSON is a word"), "a short run is not a token");
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("log");
    std::fs::write(&log, "calm line\n").expect("write log");
    assert_no_leaks(&[&log], &[], &["not-in-there"]);
    for leak in ["s3cr3t-value", "Signature=abc", "eyJhbGciOiJFUzI1NiJ9", token.as_str()] {
        std::fs::write(&log, format!("line with {leak}\n")).expect("write log");
        let caught = std::panic::catch_unwind(|| assert_no_leaks(&[&log], &[], &["s3cr3t-value"]));
        assert!(caught.is_err(), "{leak} was not caught");
    }
}
