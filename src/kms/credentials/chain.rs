//! The default chain: the standard sources in the standard order, first one that yields wins.
//!
//! Order: environment AccessKey → OIDC (RRSA) → credentials file → ECS RAM role. The ECS source
//! is only tried when `ALIBABA_CLOUD_ECS_METADATA` names a role; the metadata address is never
//! probed otherwise. Assume-role on top is left to the caller ([`super::AssumeRoleProvider`]).

use super::{
    Attempt, Credentials, CredentialsError, CredentialsProvider, DEFAULT_METADATA_URL,
    EcsRamRoleProvider, EnvProvider, FileProvider, OidcProvider, Vars,
};
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Tries each standard source once, remembers the first that yields, and asks only that one
/// afterwards. When none yields, the error names every source and why it gave nothing.
pub struct DefaultChain {
    vars: Vars,
    metadata_url: String,
    chosen: OnceCell<Arc<dyn CredentialsProvider>>,
}

type Candidate = (&'static str, Result<Arc<dyn CredentialsProvider>, CredentialsError>);

impl DefaultChain {
    /// A chain over the process environment (read when the chain first searches).
    pub fn from_env() -> Self {
        Self::with_vars(Vars::process(), DEFAULT_METADATA_URL)
    }

    pub(crate) fn with_vars(vars: Vars, metadata_url: &str) -> Self {
        Self { vars, metadata_url: metadata_url.to_owned(), chosen: OnceCell::new() }
    }

    /// The name of the source that yielded, once one has.
    pub fn chosen(&self) -> Option<&str> {
        self.chosen.get().map(|p| p.name())
    }

    fn candidates(&self) -> Vec<Candidate> {
        fn boxed<P: CredentialsProvider + 'static>(p: P) -> Arc<dyn CredentialsProvider> {
            Arc::new(p)
        }
        let vars = &self.vars;
        vec![
            ("environment", Ok(boxed(EnvProvider::with_vars(vars.clone())))),
            ("oidc", OidcProvider::from_vars(vars).map(boxed)),
            ("credentials file", FileProvider::from_vars(vars).map(boxed)),
            ("ecs ram role", EcsRamRoleProvider::from_vars(vars, &self.metadata_url).map(boxed)),
        ]
    }

    async fn search(
        &self,
    ) -> Result<(Arc<dyn CredentialsProvider>, Credentials), CredentialsError> {
        let mut attempts = Vec::new();
        for (source, candidate) in self.candidates() {
            let result = match candidate {
                Ok(provider) => provider.credentials().await.map(|c| (provider, c)),
                Err(error) => Err(error),
            };
            match result {
                Ok(found) => {
                    tracing::info!(source, "credentials source chosen");
                    return Ok(found);
                }
                Err(error) => {
                    tracing::debug!(source, error = %error, "credentials source gave nothing");
                    attempts.push(Attempt { source: source.to_owned(), error });
                }
            }
        }
        Err(CredentialsError::NoneFound(attempts))
    }

    async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut first = None;
        let provider = self
            .chosen
            .get_or_try_init(|| async {
                let (provider, credentials) = self.search().await?;
                first = Some(credentials);
                Ok::<_, CredentialsError>(provider)
            })
            .await?;
        match first {
            Some(credentials) => Ok(credentials),
            None => provider.credentials().await,
        }
    }
}

impl Default for DefaultChain {
    fn default() -> Self {
        Self::from_env()
    }
}

impl CredentialsProvider for DefaultChain {
    fn name(&self) -> &str {
        self.chosen().unwrap_or("default chain")
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.get())
    }

    fn discard<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            match self.chosen.get() {
                Some(provider) => provider.discard(access_key_id).await,
                None => false,
            }
        })
    }
}

impl fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultChain")
            .field("vars", &self.vars)
            .field("metadata_url", &self.metadata_url)
            .field("chosen", &self.chosen.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::stub::{ROLE, StubMetadata, StubSts};
    use super::super::{
        ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_CREDENTIALS_FILE, ENV_ECS_METADATA,
        ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE, ENV_ROLE_ARN, ENV_STS_ENDPOINT,
    };
    use super::*;

    /// Nothing is listening here, so a probe would fail loudly rather than leave the machine.
    const DEAD_URL: &str = "http://127.0.0.1:9";

    fn chain(vars: &[(&str, &str)]) -> DefaultChain {
        DefaultChain::with_vars(Vars::from_pairs(vars), DEAD_URL)
    }

    #[tokio::test]
    async fn nothing_configured_names_every_source() {
        let err = chain(&[("HOME", "/nonexistent-home")]).credentials().await.expect_err("none");
        assert_eq!(
            err.to_string(),
            "no credentials found: environment: ALIBABA_CLOUD_ACCESS_KEY_ID not set; \
             oidc: ALIBABA_CLOUD_ROLE_ARN not set; \
             credentials file: /nonexistent-home/.alibabacloud/credentials does not exist; \
             ecs ram role: disabled (set ALIBABA_CLOUD_ECS_METADATA)"
        );
    }

    #[tokio::test]
    async fn environment_wins_and_is_remembered() {
        let chain = chain(&[(ENV_ACCESS_KEY_ID, "id"), (ENV_ACCESS_KEY_SECRET, "secret")]);
        assert_eq!(chain.name(), "default chain");
        let got = chain.credentials().await.expect("env");
        assert_eq!(got, Credentials::new("id", "secret"));
        assert_eq!(chain.chosen(), Some("environment"));
        assert_eq!(chain.credentials().await.expect("again"), got);
    }

    #[tokio::test]
    async fn oidc_before_file_and_failures_fall_through() {
        let stub = StubSts::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "jwt").expect("write");
        let file = dir.path().join("credentials");
        std::fs::write(&file, "[default]\naccess_key_id=f\naccess_key_secret=s\n").expect("w");
        let (token, file) = (token.to_string_lossy(), file.to_string_lossy());
        let vars = [
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, token.as_ref()),
            (ENV_STS_ENDPOINT, stub.url.as_str()),
            (ENV_CREDENTIALS_FILE, file.as_ref()),
        ];
        let rrsa = chain(&vars);
        let got = rrsa.credentials().await.expect("oidc");
        assert!(got.access_key_id.starts_with("STS."));
        assert_eq!(rrsa.chosen(), Some("oidc"));

        stub.fail_with(403, "NoPermission", "not trusted");
        let fallback = chain(&vars);
        let got = fallback.credentials().await.expect("file after a failed oidc");
        assert_eq!(got, Credentials::new("f", "s"));
        assert_eq!(fallback.chosen(), Some("credentials file"));
    }

    #[tokio::test]
    async fn ecs_only_when_asked() {
        let stub = StubMetadata::start().await;
        let vars = Vars::from_pairs(&[("HOME", "/nonexistent-home"), (ENV_ECS_METADATA, ROLE)]);
        let chain = DefaultChain::with_vars(vars, &stub.url);
        let got = chain.credentials().await.expect("ecs");
        assert_eq!(got.security_token.as_deref(), Some("node-t0ken"));
        assert_eq!(chain.chosen(), Some("ecs ram role"));
    }
}
