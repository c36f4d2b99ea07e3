//! Accounts and regions: the cluster-scoped `KmsProviderConfig` kind, and the registry that
//! turns the config a `KmsAlias` names into a KMS client.
//!
//! One operator serves many accounts and regions. A `KmsAlias` names a config through
//! `spec.providerConfigRef`; without one it uses the config named `default`, and if there is
//! none, the operator's own region and identity from its flags. Clients are cached per config
//! and rebuilt when the config changes or its Secret is re-read (at most every
//! [`SECRET_TTL`]). Budgets are shared per account and region, whichever config uses them.

use crate::crd::KmsAlias;
use crate::kms::credentials::{AssumeRoleProvider, CredentialsProvider};
use crate::kms::{self, Budgets, CallObserver, ClientConfig, Credentials, Quotas, Sweeps};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::{CustomResource, KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Name of the config used when a `KmsAlias` names none.
pub const DEFAULT_CONFIG: &str = "default";
/// Budget scope name of the operator's own identity.
const OPERATOR_SCOPE: &str = "operator-identity";
/// How long a Secret's credentials are used before the Secret is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(30);

/// Where KMS is and who the operator is there, for one account and region.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kms.aliasoperator.dev",
    version = "v1alpha1",
    kind = "KmsProviderConfig",
    plural = "kmsproviderconfigs",
    shortname = "kmspc",
    doc = "An Alibaba Cloud account and region that KmsAlias objects can select by name.",
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Network","type":"string","jsonPath":".spec.endpoint.network"}"#,
    printcolumn = r#"{"name":"Credentials","type":"string","jsonPath":".spec.credentials.source"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KmsProviderConfigSpec {
    /// Region id, for example `cn-hangzhou`.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]+$')")
        .message("region must be a region id such as cn-hangzhou"))]
    pub region: String,
    /// Which KMS endpoint to call. Default: the public endpoint of the region.
    #[serde(default)]
    pub endpoint: EndpointSpec,
    /// Where the credentials come from.
    pub credentials: CredentialsSpec,
    /// Request budgets for this account and region. Default: the documented quotas, 50 reads
    /// and 30 writes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimitsSpec>,
}

/// The KMS endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.network != 'Custom' || has(self.url)")
        .message("endpoint.url is required when endpoint.network is Custom"),
    validation = Rule::new("!has(self.url) || self.network == 'Custom'")
        .message("endpoint.url is only used with endpoint.network Custom"),
    validation = Rule::new(
        "!has(self.url) || self.url.startsWith('https://') || \
         (self.allowInsecureHttp && self.url.startsWith('http://'))")
        .message("endpoint.url must be https://, or http:// with allowInsecureHttp: true")
)]
pub struct EndpointSpec {
    /// `Public` (`kms.<region>.aliyuncs.com`), `VPC` (`kms-vpc.<region>.aliyuncs.com`) or
    /// `Custom` (`url`).
    #[serde(default)]
    pub network: Network,
    /// Endpoint URL, with `network: Custom` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Allow a plain `http://` URL (for the local KMS emulator). Never for real KMS.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Endpoint families of the shared KMS gateway.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Network {
    #[default]
    Public,
    #[serde(rename = "VPC")]
    Vpc,
    Custom,
}

/// Where a config's credentials come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.source != 'Secret' || has(self.secretRef)")
    .message("credentials.secretRef is required when credentials.source is Secret"))]
pub struct CredentialsSpec {
    /// `Secret`: an AccessKey in a Secret (keys `ALIBABA_CLOUD_ACCESS_KEY_ID`,
    /// `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional `ALIBABA_CLOUD_SECURITY_TOKEN`).
    /// `OperatorIdentity`: the operator's own identity (environment, RRSA, credentials file).
    pub source: CredentialsSource,
    /// The Secret, with `source: Secret`. Keep it in the operator's namespace, not in tenant
    /// namespaces, so deleting a tenant namespace never removes the credentials its aliases
    /// need for cleanup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// A RAM role to assume on top of the base identity, for example to reach another
    /// account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role: Option<AssumeRoleSpec>,
}

/// Base identity kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum CredentialsSource {
    Secret,
    OperatorIdentity,
}

/// A namespaced Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

/// STS AssumeRole parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssumeRoleSpec {
    /// `acs:ram::<account>:role/<name>`.
    pub role_arn: String,
    /// Session name; default `kms-alias-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// External id the role's trust policy may require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// STS endpoint URL; default from `ALIBABA_CLOUD_STS_ENDPOINT`, else `https://sts.aliyuncs.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
}

/// Budgets in requests per second.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsSpec {
    #[schemars(range(min = 0.1))]
    pub read_qps: f64,
    #[schemars(range(min = 0.1))]
    pub write_qps: f64,
}

/// Why no client could be had for an object.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The named config does not exist.
    #[error("KmsProviderConfig {0} does not exist")]
    NotFound(String),
    /// The config's Secret could not be read.
    #[error("failed to read Secret {secret} of KmsProviderConfig {config}")]
    ReadSecret {
        config: String,
        secret: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The Secret lacks a key.
    #[error("Secret {secret} of KmsProviderConfig {config} has no key {key}")]
    SecretKey { config: String, secret: String, key: &'static str },
    /// The config is inconsistent (the API server should have refused it).
    #[error("KmsProviderConfig {config} is invalid: {reason}")]
    Invalid { config: String, reason: String },
    /// The client could not be built.
    #[error("failed to build the KMS client of KmsProviderConfig {config}")]
    Build {
        config: String,
        #[source]
        source: kms::BuildError,
    },
}

/// The operator's own region and identity, from its flags: the fallback `default`.
pub struct Builtin {
    pub config: ClientConfig,
}

struct Cached {
    fingerprint: String,
    built: Instant,
    client: kms::Client,
}

/// Turns configs into clients.
pub struct Providers {
    kube: kube::Client,
    configs: Store<KmsProviderConfig>,
    builtin: Option<Builtin>,
    identity: Arc<dyn CredentialsProvider>,
    budgets: Budgets,
    sweeps: Sweeps,
    observer: Arc<dyn CallObserver>,
    timeout: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    /// `region:account` each config was seen to reach, learned from ARNs KMS returned.
    scopes: Mutex<HashMap<String, String>>,
}

/// The `region:account` part of a KMS ARN (`acs:kms:<region>:<account>:...`).
pub fn arn_scope(arn: &str) -> Option<String> {
    let mut parts = arn.strip_prefix("acs:kms:")?.splitn(3, ':');
    let (region, account) = (parts.next()?, parts.next()?);
    (!region.is_empty() && !account.is_empty() && parts.next().is_some())
        .then(|| format!("{region}:{account}"))
}

impl Providers {
    /// A registry reading configs from `configs`, with the operator's `identity`.
    pub fn new(
        kube: kube::Client,
        configs: Store<KmsProviderConfig>,
        builtin: Option<Builtin>,
        identity: Arc<dyn CredentialsProvider>,
        observer: Arc<dyn CallObserver>,
        timeout: Duration,
    ) -> Self {
        Self {
            kube,
            configs,
            builtin,
            identity,
            budgets: Budgets::default(),
            sweeps: Sweeps::default(),
            observer,
            timeout,
            cache: Mutex::default(),
            scopes: Mutex::default(),
        }
    }

    /// Records the account and region config `config` reaches, from an ARN KMS returned to
    /// one of its clients. Two configs may reach one account: objects are told apart by this,
    /// not by config name, when they claim an alias.
    pub fn learn_scope(&self, config: &str, arn: &str) {
        if let Some(scope) = arn_scope(arn) {
            let mut scopes = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
            scopes.insert(config.to_owned(), scope);
        }
    }

    /// The `region:account` config `config` reaches, once learned.
    pub fn scope(&self, config: &str) -> Option<String> {
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner).get(config).cloned()
    }

    /// The config name an object uses.
    pub fn config_name(obj: &KmsAlias) -> &str {
        obj.spec.provider_config_ref.as_ref().map_or(DEFAULT_CONFIG, |r| r.name.as_str())
    }

    /// The client for an object's account and region.
    pub async fn client_for(&self, obj: &KmsAlias) -> Result<kms::Client, ProviderError> {
        let name = Self::config_name(obj);
        let key = kube::runtime::reflector::ObjectRef::new(name);
        match self.configs.get(&key) {
            Some(config) => self.for_config(&config).await,
            None if obj.spec.provider_config_ref.is_none() => match &self.builtin {
                Some(builtin) => self.cached("<flags>", "flags".into(), || {
                    let identity = (self.identity.clone(), OPERATOR_SCOPE.to_owned());
                    self.build(&builtin.config, identity, Quotas::default(), "<flags>")
                }),
                None => Err(ProviderError::NotFound(name.to_owned())),
            },
            None => Err(ProviderError::NotFound(name.to_owned())),
        }
    }

    fn cached(
        &self,
        name: &str,
        fingerprint: String,
        build: impl FnOnce() -> Result<kms::Client, ProviderError>,
    ) -> Result<kms::Client, ProviderError> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = cache.get(name).filter(|c| c.fingerprint == fingerprint) {
            return Ok(hit.client.clone());
        }
        let client = build()?;
        let entry = Cached { fingerprint, built: Instant::now(), client: client.clone() };
        cache.insert(name.to_owned(), entry);
        Ok(client)
    }

    fn fresh(&self, name: &str, generation: &str) -> Option<kms::Client> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(name)
            .filter(|c| c.fingerprint.starts_with(generation) && c.built.elapsed() < SECRET_TTL)
            .map(|c| c.client.clone())
    }

    async fn for_config(&self, config: &KmsProviderConfig) -> Result<kms::Client, ProviderError> {
        let name = config.name_any();
        let generation = format!(
            "{}/{}",
            config.uid().unwrap_or_default(),
            config.metadata.generation.unwrap_or_default()
        );
        if let Some(client) = self.fresh(&name, &generation) {
            return Ok(client);
        }
        let spec = &config.spec;
        let client_config = client_config(&name, spec, self.timeout)?;
        let quotas = spec
            .rate_limits
            .map(|r| Quotas { read_qps: r.read_qps, write_qps: r.write_qps })
            .unwrap_or_default();
        let (base, scope, secret_version): (Arc<dyn CredentialsProvider>, String, String) =
            match spec.credentials.source {
                CredentialsSource::OperatorIdentity => {
                    (self.identity.clone(), OPERATOR_SCOPE.to_owned(), String::new())
                }
                CredentialsSource::Secret => {
                    let (creds, version) = self.read_secret(&name, &spec.credentials).await?;
                    let scope = creds.access_key_id.clone();
                    (Arc::new(creds), scope, version)
                }
            };
        let identity = match &spec.credentials.assume_role {
            None => (base, scope),
            Some(role) => (assume_role(base, role, self.timeout), role.role_arn.clone()),
        };
        let fingerprint = format!("{generation}/{secret_version}");
        self.cached(&name, fingerprint, || self.build(&client_config, identity, quotas, &name))
    }

    /// Builds a client; `identity` is the provider and a stable name of who it signs as (an
    /// AccessKey id or role ARN), which with endpoint and region picks the shared budget.
    fn build(
        &self,
        config: &ClientConfig,
        identity: (Arc<dyn CredentialsProvider>, String),
        quotas: Quotas,
        name: &str,
    ) -> Result<kms::Client, ProviderError> {
        let (provider, who) = identity;
        let scope = format!("{}|{}|{who}", config.endpoint_url(), config.region);
        let client = kms::Client::with_provider(config, provider)
            .map_err(|source| ProviderError::Build { config: name.to_owned(), source })?;
        Ok(client
            .with_budget(self.budgets.get(&scope, quotas))
            .with_sweep(self.sweeps.get(&scope))
            .with_observer(self.observer.clone()))
    }

    async fn read_secret(
        &self,
        config: &str,
        spec: &CredentialsSpec,
    ) -> Result<(Credentials, String), ProviderError> {
        let Some(secret_ref) = &spec.secret_ref else {
            return Err(ProviderError::Invalid {
                config: config.to_owned(),
                reason: "credentials.source is Secret but secretRef is missing".into(),
            });
        };
        let full_name = format!("{}/{}", secret_ref.namespace, secret_ref.name);
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), &secret_ref.namespace);
        let secret =
            api.get(&secret_ref.name).await.map_err(|source| ProviderError::ReadSecret {
                config: config.to_owned(),
                secret: full_name.clone(),
                source: Box::new(source),
            })?;
        let data = secret.data.unwrap_or_default();
        let value = |key: &'static str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let missing = |key| ProviderError::SecretKey {
            config: config.to_owned(),
            secret: full_name.clone(),
            key,
        };
        use crate::kms::credentials::{
            ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN,
        };
        let id = value(ENV_ACCESS_KEY_ID).ok_or_else(|| missing(ENV_ACCESS_KEY_ID))?;
        let secret_key =
            value(ENV_ACCESS_KEY_SECRET).ok_or_else(|| missing(ENV_ACCESS_KEY_SECRET))?;
        let mut creds = Credentials::new(id, secret_key);
        if let Some(token) = value(ENV_SECURITY_TOKEN) {
            creds = creds.with_token(token);
        }
        Ok((creds, secret.metadata.resource_version.unwrap_or_default()))
    }
}

fn client_config(
    name: &str,
    spec: &KmsProviderConfigSpec,
    timeout: Duration,
) -> Result<ClientConfig, ProviderError> {
    let endpoint = match (spec.endpoint.network, &spec.endpoint.url) {
        (Network::Public, _) => None,
        (Network::Vpc, _) => Some(format!("https://kms-vpc.{}.aliyuncs.com", spec.region)),
        (Network::Custom, Some(url)) => Some(url.clone()),
        (Network::Custom, None) => {
            return Err(ProviderError::Invalid {
                config: name.to_owned(),
                reason: "endpoint.network is Custom but endpoint.url is missing".into(),
            });
        }
    };
    Ok(ClientConfig {
        region: spec.region.clone(),
        endpoint,
        timeout,
        allow_http: spec.endpoint.allow_insecure_http,
    })
}

fn assume_role(
    base: Arc<dyn CredentialsProvider>,
    role: &AssumeRoleSpec,
    timeout: Duration,
) -> Arc<dyn CredentialsProvider> {
    let endpoint = role
        .sts_endpoint
        .clone()
        .or_else(|| std::env::var("ALIBABA_CLOUD_STS_ENDPOINT").ok())
        .unwrap_or_else(|| "https://sts.aliyuncs.com".to_owned());
    let session = role.session_name.clone().unwrap_or_else(|| "kms-alias-operator".into());
    let role_arn = role.role_arn.clone();
    let provider =
        AssumeRoleProvider::new(base, role_arn, session, role.external_id.clone(), endpoint);
    Arc::new(provider.with_timeout(timeout))
}
