//! The two sources that need no I/O: fixed credentials and the environment AccessKey.

use super::{Credentials, CredentialsError, CredentialsProvider, ENV_ACCESS_KEY_ID, Vars};
use futures::future::BoxFuture;

/// A fixed AccessKey pair with an optional STS token, as given by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticProvider {
    credentials: Credentials,
}

impl StaticProvider {
    /// A plain AccessKey pair.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { credentials: Credentials::new(id, secret) }
    }

    /// Adds an STS security token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.credentials.security_token = Some(token.into());
        self
    }
}

impl From<Credentials> for StaticProvider {
    fn from(credentials: Credentials) -> Self {
        Self { credentials }
    }
}

impl CredentialsProvider for StaticProvider {
    fn name(&self) -> &str {
        "static"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(std::future::ready(Ok(self.credentials.clone())))
    }
}

/// `ALIBABA_CLOUD_ACCESS_KEY_ID` + `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional
/// `ALIBABA_CLOUD_SECURITY_TOKEN`, read at every call.
#[derive(Clone, Debug, Default)]
pub struct EnvProvider {
    vars: Vars,
}

impl EnvProvider {
    /// Reads the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_vars(vars: Vars) -> Self {
        Self { vars }
    }
}

impl CredentialsProvider for EnvProvider {
    fn name(&self) -> &str {
        "environment"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        let result = Credentials::from_lookup(|name| self.vars.get(name)).map_err(|e| match e {
            CredentialsError::NotConfigured => CredentialsError::EnvNotSet(ENV_ACCESS_KEY_ID),
            other => other,
        });
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    type Pairs = &'static [(&'static str, &'static str)];
    use super::super::{ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN};
    use super::*;

    #[tokio::test]
    async fn static_provider_returns_what_it_was_given() {
        let provider = StaticProvider::new("id", "secret").with_token("tok");
        let got = provider.credentials().await.expect("static");
        assert_eq!(got, Credentials::new("id", "secret").with_token("tok"));
        let from: StaticProvider = Credentials::new("a", "b").into();
        assert_eq!(from.credentials().await.expect("static"), Credentials::new("a", "b"));
    }

    #[tokio::test]
    async fn env_provider_cases() {
        let full =
            [(ENV_ACCESS_KEY_ID, "id"), (ENV_ACCESS_KEY_SECRET, "s"), (ENV_SECURITY_TOKEN, "t")];
        let got = EnvProvider::with_vars(Vars::from_pairs(&full)).credentials().await;
        assert_eq!(got.expect("full set"), Credentials::new("id", "s").with_token("t"));

        let cases: [(Pairs, &str, &str); 3] = [
            (&[], "ALIBABA_CLOUD_ACCESS_KEY_ID not set", "nothing set"),
            (&[(ENV_ACCESS_KEY_ID, "id")], ENV_ACCESS_KEY_SECRET, "secret missing"),
            (
                &[(ENV_ACCESS_KEY_ID, ""), (ENV_ACCESS_KEY_SECRET, "s")],
                ENV_ACCESS_KEY_ID,
                "empty id",
            ),
        ];
        for (vars, want, reason) in cases {
            let err = EnvProvider::with_vars(Vars::from_pairs(vars)).credentials().await;
            let text = err.expect_err(reason).to_string();
            assert!(text.contains(want), "{reason}: {text}");
        }
    }
}
