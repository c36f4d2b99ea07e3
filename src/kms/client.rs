//! The KMS client: builds, signs and sends RPC requests, and turns answers into typed results.
//!
//! Requests take the shape Terraform's provider sends (tea-rpc): POST, common parameters in the
//! query string, the action's own parameters in a form body, all of them signed.
//!
//! Every call waits for its account's budget ([`super::budget`]), has a timeout, and is retried
//! a few times with exponential backoff and jitter when throttled, on 5xx and on network
//! errors, but only when repeating it is safe: a write whose outcome is unknown is never sent
//! again blindly. A session KMS refuses as expired is dropped by its credentials provider and
//! the call repeated once at once with a new one (it was refused at authentication, so
//! nothing was applied). Longer waits are the reconciler's job, per object.

use super::API_VERSION;
use super::budget::{Budget, CallClass, Quotas};
use super::credentials::{Credentials, CredentialsProvider, scrub};
use super::error::{ApiError, Error, ErrorKind};
use super::sign;
use super::types::{AliasEntry, ErrorBody, KeyEntry, KeyMetadata};
use rand::Rng as _;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Page size used when walking every alias (the documented maximum).
const LIST_PAGE_SIZE: u32 = 100;

/// Attempts per call, the first included, for failures that are safe to repeat.
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay inside one call; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest a call waits for its budget before giving up with [`Error::OverBudget`].
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(30);
/// The code KMS refuses an expired STS session with.
const SESSION_EXPIRED: &str = "InvalidSecurityToken.Expired";

/// Where and how to reach KMS.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Region id, for example `cn-hangzhou`.
    pub region: String,
    /// Full endpoint URL; `None` means the public endpoint `https://kms.<region>.aliyuncs.com`.
    pub endpoint: Option<String>,
    /// Upper bound for one call, connection included.
    pub timeout: Duration,
    /// Whether a plain `http://` endpoint is allowed (the emulator); HTTPS otherwise.
    pub allow_http: bool,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The endpoint is plain HTTP and that was not asked for.
    #[error("endpoint {0} is not HTTPS; plain HTTP must be allowed explicitly")]
    InsecureEndpoint(String),
    /// The HTTP stack could not be set up.
    #[error("failed to set up the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// Receives one observation per KMS call, for metrics.
pub trait CallObserver: Send + Sync {
    /// `code` is `OK`, the KMS error code, or `Transport`/`Decode`.
    fn observe(&self, action: &'static str, code: &str, elapsed: Duration);
}

impl ClientConfig {
    /// A configuration for the public endpoint of a region.
    pub fn for_region(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            endpoint: None,
            timeout: Duration::from_secs(10),
            allow_http: false,
        }
    }

    /// The endpoint URL calls go to.
    pub fn endpoint_url(&self) -> String {
        match &self.endpoint {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://kms.{}.aliyuncs.com", self.region),
        }
    }
}

/// A signed-request KMS client for one account and region.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: Arc<dyn CredentialsProvider>,
    budget: Arc<Budget>,
    sweep: Arc<super::Sweep>,
    observer: Option<Arc<dyn CallObserver>>,
}

/// One page of ListAliases or ListAliasesByKeyId.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasPage {
    pub total_count: u32,
    pub page_number: u32,
    pub page_size: u32,
    pub aliases: AliasList,
}

/// The `Aliases` wrapper object of a list answer.
#[derive(Debug, Deserialize)]
pub struct AliasList {
    #[serde(rename = "Alias", default)]
    pub alias: Vec<AliasEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPage {
    keys: KeyList,
}

#[derive(Deserialize)]
struct KeyList {
    #[serde(rename = "Key", default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadataBody {
    key_metadata: KeyMetadata,
}

impl Client {
    /// Builds a client with fixed credentials and its own budget at the documented quotas.
    pub fn new(config: &ClientConfig, credentials: Credentials) -> Result<Self, BuildError> {
        Self::with_provider(config, Arc::new(credentials))
    }

    /// Builds a client whose credentials come from `provider` at every call.
    pub fn with_provider(
        config: &ClientConfig,
        provider: Arc<dyn CredentialsProvider>,
    ) -> Result<Self, BuildError> {
        let endpoint = config.endpoint_url();
        if !endpoint.starts_with("https://") && !config.allow_http {
            return Err(BuildError::InsecureEndpoint(endpoint));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("kms-alias-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        Ok(Self {
            http,
            endpoint,
            region: config.region.clone(),
            credentials: provider,
            budget: Arc::new(Budget::new(Quotas::default())),
            sweep: Arc::default(),
            observer: None,
        })
    }

    /// Shares `budget` with other clients of the same account and region.
    #[must_use]
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = budget;
        self
    }

    /// Shares drift sweeps with other clients of the same account and region.
    #[must_use]
    pub fn with_sweep(mut self, sweep: Arc<super::Sweep>) -> Self {
        self.sweep = sweep;
        self
    }

    /// Where `alias` points per a shared sweep no older than `max_age`; see [`super::sweep`].
    pub async fn swept_target(
        &self,
        alias: &str,
        max_age: Duration,
    ) -> Result<Option<String>, Error> {
        self.sweep.target(self, alias, max_age).await
    }

    /// Reports every call to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Takes one of the account's work slots for a unit of work (one reconcile), or fails at
    /// once with [`Error::OverBudget`] when all are taken, instead of holding a worker that
    /// other accounts could use. The caller comes back when the budget is likely to have
    /// room: in a second, or later while throttling has slowed the account down.
    pub fn work_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        self.budget.work_slot().ok_or_else(|| Error::OverBudget {
            action: "Reconcile",
            retry_after: self.budget.busy_for().max(Duration::from_secs(1)),
        })
    }

    /// The endpoint URL calls go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The region this client is bound to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Points `alias_name` at `key_id`; fails with `AlreadyExists` if the name is taken.
    ///
    /// When the answer is lost (timeout, 5xx), the outcome is settled by reading the alias:
    /// if it now points at `key_id` the create counts as done; otherwise the original error
    /// is returned and nothing is sent again.
    pub async fn create_alias(&self, alias_name: &str, key_id: &str) -> Result<(), Error> {
        let params = [("AliasName", alias_name), ("KeyId", key_id)];
        match self.call_unit("CreateAlias", &params).await {
            Err(error) if error.outcome_unknown() => match self.describe_key(alias_name).await {
                Ok(meta) if meta.key_id == key_id => {
                    tracing::info!(alias = alias_name, "lost CreateAlias answer: alias is there");
                    Ok(())
                }
                _ => Err(error),
            },
            other => other,
        }
    }

    /// Re-points an existing alias at `key_id`.
    pub async fn update_alias(&self, alias_name: &str, key_id: &str) -> Result<(), Error> {
        self.call_unit("UpdateAlias", &[("AliasName", alias_name), ("KeyId", key_id)]).await
    }

    /// Deletes an alias; the key is untouched.
    pub async fn delete_alias(&self, alias_name: &str) -> Result<(), Error> {
        self.call_unit("DeleteAlias", &[("AliasName", alias_name)]).await
    }

    /// Describes a key, named by id, ARN or alias name.
    pub async fn describe_key(&self, key: &str) -> Result<KeyMetadata, Error> {
        let body: KeyMetadataBody = self.call("DescribeKey", &[("KeyId", key)]).await?;
        Ok(body.key_metadata)
    }

    /// Creates a symmetric key (used by tests and the demo to set the scene).
    pub async fn create_key(&self, description: &str) -> Result<KeyMetadata, Error> {
        let body: KeyMetadataBody = self.call("CreateKey", &[("Description", description)]).await?;
        Ok(body.key_metadata)
    }

    /// Schedules a key for deletion after `days` days.
    pub async fn schedule_key_deletion(&self, key_id: &str, days: u32) -> Result<(), Error> {
        let days = days.to_string();
        let params = [("KeyId", key_id), ("PendingWindowInDays", days.as_str())];
        self.call_unit("ScheduleKeyDeletion", &params).await
    }

    /// Reads one page of the account's keys in this region, in every state.
    pub async fn list_keys_page(&self, page: u32, size: u32) -> Result<Vec<KeyEntry>, Error> {
        let (page, size) = (page.to_string(), size.to_string());
        let body: KeyPage =
            self.call("ListKeys", &[("PageNumber", &page), ("PageSize", &size)]).await?;
        Ok(body.keys.key)
    }

    /// Reads one page of the account's aliases in this region.
    pub async fn list_aliases_page(&self, page: u32, size: u32) -> Result<AliasPage, Error> {
        let (page, size) = (page.to_string(), size.to_string());
        self.call("ListAliases", &[("PageNumber", &page), ("PageSize", &size)]).await
    }

    /// Reads every alias of the account in this region, page by page.
    pub async fn list_aliases(&self) -> Result<Vec<AliasEntry>, Error> {
        let mut all = Vec::new();
        for page in 1.. {
            let answer = self.list_aliases_page(page, LIST_PAGE_SIZE).await?;
            let got = answer.aliases.alias.len();
            all.extend(answer.aliases.alias);
            if got == 0 || all.len() >= answer.total_count as usize {
                break;
            }
        }
        Ok(all)
    }

    async fn call_unit(&self, action: &'static str, params: &[(&str, &str)]) -> Result<(), Error> {
        let _: serde_json::Value = self.call(action, params).await?;
        Ok(())
    }

    /// Sends one signed action, with budget and safe retries, and decodes its success body.
    pub async fn call<T: DeserializeOwned>(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
    ) -> Result<T, Error> {
        let class = CallClass::of(action);
        let mut attempt = 1;
        let mut renewed = false;
        loop {
            if let Err(retry_after) = self.budget.acquire_within(class, MAX_BUDGET_WAIT).await {
                return Err(Error::OverBudget { action, retry_after });
            }
            let mut renewable = false;
            let result = self.send_once(action, params, &mut renewable).await;
            match &result {
                Err(e) if e.kind() == ErrorKind::Throttled => self.budget.throttled(class),
                _ => self.budget.succeeded(class),
            }
            match result {
                // Refused at authentication, so nothing was applied: once, at once, with the
                // new session (or the reason there is none).
                Err(_) if renewable && !renewed => {
                    tracing::debug!(action, "retrying kms call with renewed credentials");
                    renewed = true;
                }
                Err(error) if attempt < MAX_ATTEMPTS && safe_to_repeat(&error, class) => {
                    let delay = RETRY_BASE * 2u32.pow(attempt - 1);
                    let delay = delay.mul_f64(rand::rng().random_range(0.5..1.5));
                    tracing::debug!(action, attempt, code = error.code(), "retrying kms call");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One request. `renewable` is set when KMS refused the session as expired and the
    /// credentials provider can hand out another one.
    async fn send_once<T: DeserializeOwned>(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
        renewable: &mut bool,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = self.exchange(action, params, renewable).await;
        if let Some(observer) = &self.observer {
            let code = match &result {
                Ok(_) => "OK",
                Err(Error::Api(api)) => api.code.as_str(),
                Err(Error::Transport { .. }) => "Transport",
                Err(Error::Decode { .. }) => "Decode",
                Err(Error::Credentials { .. }) => "Credentials",
                Err(Error::OverBudget { .. }) => "OverBudget",
            };
            observer.observe(action, code, started.elapsed());
        }
        result
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
        renewable: &mut bool,
    ) -> Result<T, Error> {
        let credentials = self
            .credentials
            .credentials()
            .await
            .map_err(|source| Error::Credentials { action, source })?;
        let query = common_params(action, &self.region, &credentials);
        let signature = sign::signature(
            "POST",
            &credentials.access_key_secret,
            query.iter().map(|(k, v)| (*k, v.as_str())).chain(params.iter().copied()),
        );
        let response = self
            .http
            .post(format!("{}/", self.endpoint))
            .query(&query)
            .query(&[("Signature", signature)])
            .form(params)
            .send()
            .await
            .map_err(|source| self.transport(action, source))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|source| self.transport(action, source))?;

        if (200..300).contains(&status) {
            tracing::debug!(action, status, "kms call succeeded");
            return serde_json::from_slice(&body).map_err(|source| Error::Decode {
                action,
                status,
                source,
            });
        }
        let parsed: ErrorBody = serde_json::from_slice(&body).map_err(|source| Error::Decode {
            action,
            status,
            source,
        })?;
        tracing::debug!(
            action, status, code = %parsed.code, request_id = %parsed.request_id,
            "kms call failed"
        );
        if parsed.code == SESSION_EXPIRED {
            *renewable = self.credentials.discard(&credentials.access_key_id).await;
        }
        // The message may echo the string-to-sign, which carries the security token: the
        // error ends up in logs, events and status, so keep only the safe part.
        let secrets = std::iter::once(credentials.access_key_secret.as_str())
            .chain(credentials.security_token.as_deref());
        Err(Error::Api(Box::new(ApiError {
            action,
            code: parsed.code,
            message: scrub(&parsed.message, secrets),
            status,
            request_id: parsed.request_id,
        })))
    }

    fn transport(&self, action: &'static str, source: reqwest::Error) -> Error {
        // reqwest's error text may carry the full URL, signature included; drop it.
        Error::Transport { action, endpoint: self.endpoint.clone(), source: source.without_url() }
    }
}

/// Whether sending the same call again cannot apply it twice: throttled and pre-send failures
/// always qualify; other transient failures only for reads.
fn safe_to_repeat(error: &Error, class: CallClass) -> bool {
    match error.kind() {
        ErrorKind::Throttled => true,
        ErrorKind::Transient => class == CallClass::Read || !error.outcome_unknown(),
        _ => false,
    }
}

fn common_params(
    action: &'static str,
    region: &str,
    credentials: &Credentials,
) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("AccessKeyId", credentials.access_key_id.clone()),
        ("Action", action.to_owned()),
        ("Format", "JSON".to_owned()),
        ("RegionId", region.to_owned()),
        ("SignatureMethod", sign::SIGNATURE_METHOD.to_owned()),
        ("SignatureNonce", uuid::Uuid::new_v4().to_string()),
        ("SignatureVersion", sign::SIGNATURE_VERSION.to_owned()),
        ("Timestamp", chrono::Utc::now().format(sign::TIMESTAMP_FORMAT).to_string()),
        ("Version", API_VERSION.to_owned()),
    ];
    if let Some(token) = &credentials.security_token {
        params.push(("SecurityToken", token.clone()));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoint_is_public_gateway_of_region() {
        let config = ClientConfig::for_region("cn-shanghai");
        assert_eq!(config.endpoint_url(), "https://kms.cn-shanghai.aliyuncs.com");
        let custom = ClientConfig { endpoint: Some("http://127.0.0.1:9/".into()), ..config };
        assert_eq!(custom.endpoint_url(), "http://127.0.0.1:9");
        let refused = Client::new(&custom, Credentials::new("id", "secret"));
        assert!(matches!(refused, Err(BuildError::InsecureEndpoint(_))), "HTTP needs opting in");
        let allowed = ClientConfig { allow_http: true, ..custom };
        assert!(Client::new(&allowed, Credentials::new("id", "secret")).is_ok());
    }

    #[test]
    fn list_page_decodes_documented_shape() {
        let page: AliasPage = serde_json::from_str(
            r#"{"RequestId":"r","PageNumber":1,"PageSize":10,"TotalCount":1,
                "Aliases":{"Alias":[{"AliasName":"alias/a","AliasArn":"acs:kms:r:1:alias/a",
                "KeyId":"k"}]}}"#,
        )
        .expect("documented shape");
        assert_eq!(page.aliases.alias[0].key_id, "k");
        assert_eq!(page.total_count, 1);
    }

    #[tokio::test]
    async fn session_refused_as_expired_is_renewed_once_at_once() {
        use crate::emulator::config::{AccessKeySpec, RoleSpec};
        use crate::emulator::{Emulator, EmulatorConfig, RunningEmulator};
        use crate::kms::credentials::AssumeRoleProvider;

        let role = "acs:ram::1234567890123456:role/kms";
        let config = EmulatorConfig {
            access_keys: vec![AccessKeySpec::new("base", "base-secret")],
            roles: vec![RoleSpec {
                arn: role.into(),
                max_session_duration: None,
                trusted_accounts: None,
                trusted_oidc_provider: None,
                allowed_subjects: Vec::new(),
            }],
            ..EmulatorConfig::default()
        };
        let running =
            RunningEmulator::start(Emulator::new(config).expect("config")).await.expect("emulator");
        let emulator = running.emulator();
        let kms = ClientConfig {
            endpoint: Some(running.url()),
            allow_http: true,
            ..ClientConfig::for_region("cn-hangzhou")
        };
        let base = Arc::new(Credentials::new("base", "base-secret"));
        let provider = Arc::new(AssumeRoleProvider::new(base, role, "unit", None, running.url()));
        let client = Client::with_provider(&kms, provider.clone()).expect("client");
        client.create_key("first").await.expect("first session");

        // The server ends the session before its stated expiration: one refusal, one new
        // session, one successful repeat.
        assert_eq!(emulator.expire_sts_credentials(), 1);
        let seq = emulator.calls(0, None).last().map_or(0, |c| c.seq);
        client.create_key("second").await.expect("renewed");
        let codes: Vec<_> = emulator
            .calls(seq, None)
            .into_iter()
            .map(|c| format!("{} {}", c.action, c.code))
            .collect();
        let want = ["CreateKey InvalidSecurityToken.Expired", "AssumeRole OK", "CreateKey OK"];
        assert_eq!(codes, want);

        // Fixed session credentials cannot be renewed: refused once, not repeated.
        let session = provider.credentials().await.expect("current session");
        let fixed = Client::new(&kms, session).expect("client");
        emulator.expire_sts_credentials();
        let seq = emulator.calls(0, None).last().map_or(0, |c| c.seq);
        let err = fixed.create_key("third").await.expect_err("expired");
        assert_eq!(err.code(), Some(SESSION_EXPIRED));
        assert_eq!(emulator.calls(seq, None).len(), 1, "no repeat without renewal");
    }
}
