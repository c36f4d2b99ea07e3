//! RRSA: the pod's projected service-account token exchanged at STS `AssumeRoleWithOIDC`.
//!
//! The action is anonymous (not signed). The kubelet rotates the token file, so it is read
//! again for every STS call; the session is cached until 180 s before it expires.

use super::sts::{self, Session, SessionCache, Sts};
use super::{Credentials, CredentialsError, CredentialsProvider, Vars};
use futures::future::BoxFuture;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// ARN of the RAM role to assume.
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
/// ARN of the cluster's OIDC provider in RAM.
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
/// Path of the projected service-account token.
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
/// Optional session name for the assumed role (also used by [`super::AssumeRoleProvider`]).
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";

const ACTION: &str = "AssumeRoleWithOIDC";

/// Session credentials for a RAM role, obtained with the pod's OIDC token.
pub struct OidcProvider {
    role_arn: String,
    oidc_provider_arn: String,
    token_file: PathBuf,
    session_name: String,
    duration_seconds: u32,
    sts: Sts,
    cache: SessionCache,
}

/// A session name STS accepts: 2–64 of letters, digits and `.@-_`.
pub(crate) fn default_session_name() -> String {
    format!("kms-alias-operator-{}", chrono::Utc::now().timestamp_millis())
}

impl OidcProvider {
    /// Assumes `role_arn` at `sts_endpoint` (full URL, or a host meaning HTTPS).
    pub fn new(
        role_arn: impl Into<String>,
        oidc_provider_arn: impl Into<String>,
        token_file: impl Into<PathBuf>,
        sts_endpoint: &str,
    ) -> Self {
        Self {
            role_arn: role_arn.into(),
            oidc_provider_arn: oidc_provider_arn.into(),
            token_file: token_file.into(),
            session_name: default_session_name(),
            duration_seconds: sts::DEFAULT_DURATION_SECONDS,
            sts: Sts::new(sts_endpoint),
            cache: SessionCache::default(),
        }
    }

    /// Reads `ALIBABA_CLOUD_ROLE_ARN`, `ALIBABA_CLOUD_OIDC_PROVIDER_ARN`,
    /// `ALIBABA_CLOUD_OIDC_TOKEN_FILE`, optional `ALIBABA_CLOUD_ROLE_SESSION_NAME` and the STS
    /// endpoint variables; fails naming the first required variable that is missing.
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_vars(&Vars::process())
    }

    pub(crate) fn from_vars(vars: &Vars) -> Result<Self, CredentialsError> {
        let role_arn = vars.require(ENV_ROLE_ARN)?;
        let provider_arn = vars.require(ENV_OIDC_PROVIDER_ARN)?;
        let token_file = vars.require(ENV_OIDC_TOKEN_FILE)?;
        let provider = Self::new(role_arn, provider_arn, token_file, &sts::resolve_endpoint(vars));
        Ok(match vars.get(ENV_ROLE_SESSION_NAME) {
            Some(name) => provider.with_session_name(name),
            None => provider,
        })
    }

    /// Sets the session name (default `kms-alias-operator-<unix ms>`).
    #[must_use]
    pub fn with_session_name(mut self, name: impl Into<String>) -> Self {
        self.session_name = name.into();
        self
    }

    /// Sets the session length asked for (default 3600 s; STS allows 900 up to the role's max).
    #[must_use]
    pub fn with_duration_seconds(mut self, seconds: u32) -> Self {
        self.duration_seconds = seconds;
        self
    }

    /// Sets the bound for one STS call (default 10 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.sts.timeout = timeout;
        self
    }

    /// The token file read at every STS call.
    pub fn token_file(&self) -> &Path {
        &self.token_file
    }

    async fn fetch(&self) -> Result<Session, CredentialsError> {
        let token = read_token(&self.token_file).await?;
        let duration = self.duration_seconds.to_string();
        let form = [
            ("RoleArn", self.role_arn.as_str()),
            ("OIDCProviderArn", self.oidc_provider_arn.as_str()),
            ("OIDCToken", token.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        self.sts.call(ACTION, &sts::common_query(ACTION), &form, &[&token]).await
    }
}

/// Reads the token fresh; the kubelet replaces it while the pod runs.
async fn read_token(path: &Path) -> Result<String, CredentialsError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CredentialsError::NotFound(path.to_owned())
        } else {
            CredentialsError::ReadFile { path: path.to_owned(), source }
        }
    })?;
    let token = text.trim();
    if token.is_empty() {
        let reason = "the OIDC token file is empty".to_owned();
        return Err(CredentialsError::InvalidFile { path: path.to_owned(), reason });
    }
    Ok(token.to_owned())
}

impl CredentialsProvider for OidcProvider {
    fn name(&self) -> &str {
        "oidc"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get("oidc", || self.fetch()))
    }

    fn discard<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.cache.discard("oidc", access_key_id))
    }
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("role_arn", &self.role_arn)
            .field("oidc_provider_arn", &self.oidc_provider_arn)
            .field("token_file", &self.token_file)
            .field("session_name", &self.session_name)
            .field("duration_seconds", &self.duration_seconds)
            .field("sts_endpoint", &self.sts.endpoint())
            .field("expiration", &self.cache.expiration())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::stub::StubSts;
    use super::*;

    const ROLE: &str = "acs:ram::1234:role/kms";
    const OIDC: &str = "acs:ram::1234:oidc-provider/ack-rrsa-c1";

    fn provider(stub: &StubSts, token_file: &Path) -> OidcProvider {
        OidcProvider::new(ROLE, OIDC, token_file, &stub.url)
    }

    #[tokio::test]
    async fn caches_then_refreshes_near_expiry_with_the_new_token() {
        let stub = StubSts::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt-one\n").expect("write token");
        let provider = provider(&stub, &token_file).with_session_name("sess");

        let first = provider.credentials().await.expect("first");
        let second = provider.credentials().await.expect("second");
        assert_eq!(first, second);
        assert_eq!(stub.count(ACTION), 1, "two calls, one STS call");

        let call = &stub.calls()[0];
        let want = [
            ("RoleArn", ROLE),
            ("OIDCProviderArn", OIDC),
            ("OIDCToken", "jwt-one"),
            ("RoleSessionName", "sess"),
            ("DurationSeconds", "3600"),
            ("Version", "2015-04-01"),
            ("Format", "JSON"),
        ];
        for (name, value) in want {
            assert_eq!(call.get(name), Some(value), "{name}");
        }
        assert!(call.get("Timestamp").is_some());
        assert!(call.get("Signature").is_none() && call.get("AccessKeyId").is_none());

        // Near expiry: the next call refreshes, and the rotated token file is read again.
        stub.set_expires_in(120);
        provider.cache.expire().await;
        std::fs::write(&token_file, "jwt-two").expect("rotate token");
        let third = provider.credentials().await.expect("refreshed");
        assert_ne!(third, first);
        assert_eq!(stub.calls().last().and_then(|c| c.get("OIDCToken")), Some("jwt-two"));
        // 120 s left is inside the refresh window: every call goes to STS.
        provider.credentials().await.expect("refreshed again");
        assert_eq!(stub.count(ACTION), 3);
        stub.set_expires_in(3600);
        provider.credentials().await.expect("long session");
        provider.credentials().await.expect("cached");
        assert_eq!(stub.count(ACTION), 4);
    }

    #[tokio::test]
    async fn sts_error_carries_code_and_request_id_without_the_token() {
        let stub = StubSts::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt-s3cr3t").expect("write token");
        stub.fail_with(400, "InvalidParameter.OIDCToken", "token jwt-s3cr3t is expired");
        let err = provider(&stub, &token_file).credentials().await.expect_err("refused");
        assert_eq!(err.code(), Some("InvalidParameter.OIDCToken"));
        let text = err.to_string();
        assert!(text.contains("stub-request-id") && !text.contains("jwt-s3cr3t"), "{text}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn missing_or_empty_token_file() {
        let stub = StubSts::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = provider(&stub, &missing).credentials().await.expect_err("missing");
        assert!(matches!(err, CredentialsError::NotFound(_)), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").expect("write");
        let err = provider(&stub, &empty).credentials().await.expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        assert_eq!(stub.count(ACTION), 0);
    }

    #[test]
    fn from_vars_names_the_first_missing_variable() {
        let cases: [(&[(&str, &str)], &str); 3] = [
            (&[], ENV_ROLE_ARN),
            (&[(ENV_ROLE_ARN, ROLE)], ENV_OIDC_PROVIDER_ARN),
            (&[(ENV_ROLE_ARN, ROLE), (ENV_OIDC_PROVIDER_ARN, OIDC)], ENV_OIDC_TOKEN_FILE),
        ];
        for (vars, want) in cases {
            let err = OidcProvider::from_vars(&Vars::from_pairs(vars)).expect_err(want);
            assert_eq!(err.to_string(), format!("{want} not set"));
        }
        let vars = Vars::from_pairs(&[
            (ENV_ROLE_ARN, ROLE),
            (ENV_OIDC_PROVIDER_ARN, OIDC),
            (ENV_OIDC_TOKEN_FILE, "/t"),
            (ENV_ROLE_SESSION_NAME, "mine"),
            (sts::ENV_STS_REGION, "cn-shanghai"),
        ]);
        let provider = OidcProvider::from_vars(&vars).expect("complete");
        assert_eq!(provider.session_name, "mine");
        assert_eq!(provider.sts.endpoint(), "https://sts.cn-shanghai.aliyuncs.com");
    }
}
