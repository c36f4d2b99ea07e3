//! The node's RAM role from the ECS instance metadata service.
//!
//! Only ever used when asked for: [`EcsRamRoleProvider::from_env`] needs
//! `ALIBABA_CLOUD_ECS_METADATA`, and the default chain never probes the metadata address on its
//! own. Requests bypass any proxy and give up after 1 s to connect or to read.

use super::error::scrub;
use super::sts::{Session, SessionBody, SessionCache};
use super::{Credentials, CredentialsError, CredentialsProvider, Vars};
use crate::kms::sign::percent_encode;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Names the node's RAM role and switches this source on.
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
/// `true` switches this source off even when [`ENV_ECS_METADATA`] is set.
pub const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
/// `true` requires an IMDSv2 token (no fallback to token-less reads).
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
/// The instance metadata service.
pub const DEFAULT_METADATA_URL: &str = "http://100.100.100.200";

const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";
const STEP_TIMEOUT: Duration = Duration::from_secs(1);

/// Session credentials of the RAM role attached to the node.
pub struct EcsRamRoleProvider {
    base_url: String,
    role_name: Option<String>,
    imdsv1_disabled: bool,
    /// Built at the first call, so constructors cannot fail.
    http: tokio::sync::OnceCell<reqwest::Client>,
    cache: SessionCache,
}

/// The credentials document; absent fields are empty, and then refused.
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Document {
    code: String,
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

impl EcsRamRoleProvider {
    /// Reads role `role_name` (discovered when `None`) from the metadata service at
    /// `metadata_url`, normally [`DEFAULT_METADATA_URL`].
    pub fn new(role_name: Option<String>, metadata_url: &str) -> Self {
        Self {
            base_url: metadata_url.trim().trim_end_matches('/').to_owned(),
            role_name: role_name.filter(|r| !r.trim().is_empty()),
            imdsv1_disabled: false,
            http: tokio::sync::OnceCell::new(),
            cache: SessionCache::default(),
        }
    }

    async fn http(&self) -> Result<&reqwest::Client, CredentialsError> {
        let build = || async {
            reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(STEP_TIMEOUT)
                .read_timeout(STEP_TIMEOUT)
                .timeout(STEP_TIMEOUT * 2)
                .build()
        };
        self.http.get_or_try_init(build).await.map_err(CredentialsError::HttpClient)
    }

    /// Enabled only by `ALIBABA_CLOUD_ECS_METADATA` (the role name), unless
    /// `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`; honours `ALIBABA_CLOUD_IMDSV1_DISABLED`.
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_vars(&Vars::process(), DEFAULT_METADATA_URL)
    }

    pub(crate) fn from_vars(vars: &Vars, metadata_url: &str) -> Result<Self, CredentialsError> {
        if vars.flag(ENV_ECS_METADATA_DISABLED) {
            return Err(CredentialsError::Disabled("ALIBABA_CLOUD_ECS_METADATA_DISABLED=true"));
        }
        let Some(role) = vars.get(ENV_ECS_METADATA) else {
            return Err(CredentialsError::Disabled("set ALIBABA_CLOUD_ECS_METADATA"));
        };
        let provider = Self::new(Some(role.trim().to_owned()), metadata_url);
        Ok(provider.with_imdsv1_disabled(vars.flag(ENV_IMDSV1_DISABLED)))
    }

    /// Requires the IMDSv2 token instead of falling back to reads without one.
    #[must_use]
    pub fn with_imdsv1_disabled(mut self, disabled: bool) -> Self {
        self.imdsv1_disabled = disabled;
        self
    }

    async fn fetch(&self) -> Result<Session, CredentialsError> {
        let token = self.token().await?;
        let role = match &self.role_name {
            Some(role) => role.clone(),
            None => self.role_name_from_service(token.as_deref()).await?,
        };
        let path = format!("{CREDENTIALS_PATH}{}", percent_encode(&role));
        let (status, body) = self.get("GetRoleCredentials", &path, token.as_deref()).await?;
        let document: Document = serde_json::from_slice(&body)
            .map_err(|e| CredentialsError::decode("GetRoleCredentials", status, &e))?;
        let refused = |detail: String| CredentialsError::Metadata {
            action: "GetRoleCredentials",
            detail: format!("role {role}: {detail}"),
        };
        if document.code != "Success" {
            return Err(refused(format!("Code is {}, not Success", scrub(&document.code, []))));
        }
        let Document { access_key_id, access_key_secret, security_token, expiration, .. } =
            document;
        if [&access_key_id, &access_key_secret, &security_token].iter().any(|v| v.is_empty()) {
            return Err(refused("the answer lacks a credentials field".to_owned()));
        }
        SessionBody { access_key_id, access_key_secret, security_token, expiration }
            .into_session("GetRoleCredentials")
    }

    /// The IMDSv2 token, or `None` when the service gives none and IMDSv1 is allowed.
    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let url = format!("{}/latest/api/token", self.base_url);
        let response = self.http().await?.put(url).header(TOKEN_TTL_HEADER, "21600").send().await;
        let failure = match response {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(token) if !token.trim().is_empty() => return Ok(Some(token.trim().to_owned())),
                Ok(_) => "empty token".to_owned(),
                Err(e) => {
                    CredentialsError::transport("GetMetadataToken", &self.base_url, e).to_string()
                }
            },
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) if self.imdsv1_disabled => {
                return Err(CredentialsError::transport("GetMetadataToken", &self.base_url, e));
            }
            Err(_) => "unreachable".to_owned(),
        };
        if self.imdsv1_disabled {
            let detail = format!("{failure}, and IMDSv1 is disabled");
            return Err(CredentialsError::Metadata { action: "GetMetadataToken", detail });
        }
        tracing::debug!(reason = %failure, "no IMDSv2 token; reading metadata without one");
        Ok(None)
    }

    async fn role_name_from_service(
        &self,
        token: Option<&str>,
    ) -> Result<String, CredentialsError> {
        let (_, body) = self.get("GetRoleName", CREDENTIALS_PATH, token).await?;
        let text = String::from_utf8_lossy(&body);
        match text.lines().map(str::trim).find(|line| !line.is_empty()) {
            Some(role) => Ok(role.to_owned()),
            None => Err(CredentialsError::Metadata {
                action: "GetRoleName",
                detail: "no RAM role is attached to this instance".to_owned(),
            }),
        }
    }

    /// One GET; anything but 2xx is a refusal.
    async fn get(
        &self,
        action: &'static str,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), CredentialsError> {
        let mut request = self.http().await?.get(format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let transport = |e| CredentialsError::transport(action, &self.base_url, e);
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if !response.status().is_success() {
            let detail = format!("HTTP {status}");
            return Err(CredentialsError::Metadata { action, detail });
        }
        let body = response.bytes().await.map_err(transport)?;
        Ok((status, body.to_vec()))
    }
}

impl CredentialsProvider for EcsRamRoleProvider {
    fn name(&self) -> &str {
        "ecs ram role"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get("ecs ram role", || self.fetch()))
    }

    fn discard<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.cache.discard("ecs ram role", access_key_id))
    }
}

impl fmt::Debug for EcsRamRoleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsRamRoleProvider")
            .field("metadata_url", &self.base_url)
            .field("role_name", &self.role_name)
            .field("imdsv1_disabled", &self.imdsv1_disabled)
            .field("expiration", &self.cache.expiration())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::stub::{ROLE, StubMetadata};
    use super::*;

    #[tokio::test]
    async fn token_then_discovered_role_then_credentials_cached() {
        let stub = StubMetadata::start().await;
        let provider = EcsRamRoleProvider::new(None, &stub.url);
        let creds = provider.credentials().await.expect("credentials");
        assert_eq!(creds.security_token.as_deref(), Some("node-t0ken"));
        assert_eq!(provider.credentials().await.expect("cached"), creds);
        let want = ["token", "role", &format!("credentials/{ROLE}")].map(str::to_owned);
        assert_eq!(stub.hits(), want, "one round of three requests");
    }

    #[tokio::test]
    async fn configured_role_skips_discovery_and_imdsv1_fallback() {
        let stub = StubMetadata::start().await;
        stub.fail_token();
        let provider = EcsRamRoleProvider::new(Some(ROLE.into()), &stub.url);
        provider.credentials().await.expect("IMDSv1 read");
        assert_eq!(stub.hits(), ["token".to_owned(), format!("credentials/{ROLE}")]);

        let strict =
            EcsRamRoleProvider::new(Some(ROLE.into()), &stub.url).with_imdsv1_disabled(true);
        let err = strict.credentials().await.expect_err("token required");
        assert!(err.to_string().contains("IMDSv1 is disabled"), "{err}");
    }

    #[tokio::test]
    async fn refusals() {
        let stub = StubMetadata::start().await;
        stub.set_code("Failed");
        let provider = EcsRamRoleProvider::new(None, &stub.url);
        let err = provider.credentials().await.expect_err("code is not Success");
        assert!(err.to_string().contains("Code is Failed, not Success"), "{err}");

        let provider = EcsRamRoleProvider::new(Some("other".into()), &stub.url);
        let err = provider.credentials().await.expect_err("unknown role");
        assert!(err.to_string().contains("HTTP 404"), "{err}");
    }

    #[test]
    fn from_vars_is_off_unless_asked() {
        let url = "http://127.0.0.1:9";
        let cases: [(&[(&str, &str)], &str); 2] = [
            (&[], "disabled (set ALIBABA_CLOUD_ECS_METADATA)"),
            (
                &[(ENV_ECS_METADATA, ROLE), (ENV_ECS_METADATA_DISABLED, "true")],
                "disabled (ALIBABA_CLOUD_ECS_METADATA_DISABLED=true)",
            ),
        ];
        for (vars, want) in cases {
            let err = EcsRamRoleProvider::from_vars(&Vars::from_pairs(vars), url).expect_err(want);
            assert_eq!(err.to_string(), want);
        }
        let vars = Vars::from_pairs(&[(ENV_ECS_METADATA, ROLE), (ENV_IMDSV1_DISABLED, "true")]);
        let provider = EcsRamRoleProvider::from_vars(&vars, url).expect("enabled");
        assert_eq!(provider.role_name.as_deref(), Some(ROLE));
        assert!(provider.imdsv1_disabled);
    }
}
