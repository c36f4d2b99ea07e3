//! AccessKey credentials and the sources they come from.
//!
//! Every source implements [`CredentialsProvider`]; the KMS client holds one as
//! `Arc<dyn CredentialsProvider>` and asks it before every call, so rotation and refresh are the
//! provider's business:
//!
//! - [`StaticProvider`] (or a bare [`Credentials`]): a fixed AccessKey pair, optional STS token.
//! - [`EnvProvider`]: `ALIBABA_CLOUD_ACCESS_KEY_ID`, `_SECRET`, optional `_SECURITY_TOKEN`.
//! - [`FileProvider`]: the shared credentials file (INI) or a directory of files as a mounted
//!   Kubernetes Secret produces it; re-read when it changes.
//! - [`OidcProvider`]: RRSA, STS `AssumeRoleWithOIDC` with the projected token file.
//! - [`AssumeRoleProvider`]: STS `AssumeRole` signed with any base provider.
//! - [`EcsRamRoleProvider`]: the node's RAM role from the instance metadata service; never
//!   probed unless asked for.
//! - [`DefaultChain`]: environment → OIDC → credentials file → ECS RAM role, first one wins.
//!
//! Session credentials are cached and refreshed when 180 s or less remain, or at once when
//! KMS refuses them as expired ([`CredentialsProvider::discard`]). No secret, token or
//! signature is ever part of a `Debug` output, an error message or a log line.
//!
//! Environment variables read, all prefixed `ALIBABA_CLOUD_` (empty counts as unset):
//!
//! - [`EnvProvider`]: `ACCESS_KEY_ID`, `ACCESS_KEY_SECRET`, `SECURITY_TOKEN`.
//! - [`FileProvider::from_env`]: `CREDENTIALS_FILE` (a file or a Secret directory; default
//!   `$HOME/.alibabacloud/credentials`), `PROFILE`.
//! - [`OidcProvider::from_env`]: `ROLE_ARN`, `OIDC_PROVIDER_ARN`, `OIDC_TOKEN_FILE`,
//!   `ROLE_SESSION_NAME`.
//! - STS endpoint ([`sts_endpoint_from_env`]): `STS_ENDPOINT`, else `STS_REGION` with
//!   `VPC_ENDPOINT_ENABLED`, else the global endpoint.
//! - [`EcsRamRoleProvider::from_env`]: `ECS_METADATA` (the role name; nothing else enables
//!   it), `ECS_METADATA_DISABLED`, `IMDSV1_DISABLED`.
//! - [`AssumeRoleProvider::from_env`]: `ASSUME_ROLE_ARN` (our own name, not an Alibaba SDK
//!   variable) and `ROLE_SESSION_NAME`.

mod assume_role;
mod chain;
mod ecs;
mod error;
mod file;
mod oidc;
mod simple;
mod sts;

#[cfg(test)]
mod leak_tests;
#[cfg(test)]
mod stub;

pub use assume_role::{AssumeRoleProvider, ENV_ASSUME_ROLE_ARN};
pub use chain::DefaultChain;
pub use ecs::{
    DEFAULT_METADATA_URL, ENV_ECS_METADATA, ENV_ECS_METADATA_DISABLED, ENV_IMDSV1_DISABLED,
    EcsRamRoleProvider,
};
pub(crate) use error::scrub;
pub use error::{Attempt, CredentialsError, StsError};
pub use file::{DEFAULT_PROFILE, ENV_CREDENTIALS_FILE, ENV_PROFILE, FileProvider};
pub use oidc::{
    ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE, ENV_ROLE_ARN, ENV_ROLE_SESSION_NAME, OidcProvider,
};
pub use simple::{EnvProvider, StaticProvider};
pub use sts::{
    DEFAULT_DURATION_SECONDS, DEFAULT_STS_ENDPOINT, ENV_STS_ENDPOINT, ENV_STS_REGION,
    ENV_VPC_ENDPOINT_ENABLED, STS_API_VERSION, sts_endpoint_from_env,
};

use futures::future::BoxFuture;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Environment variable holding the AccessKey id.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding an optional STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// A source of credentials. Dyn-compatible: the client holds `Arc<dyn CredentialsProvider>`.
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// Short lowercase name of the source for messages, for example `environment` or `oidc`.
    fn name(&self) -> &str;

    /// Credentials valid for the next call: cached while fresh, re-read or refreshed when due.
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>>;

    /// The service refused the session `access_key_id` (from this source) as expired, though
    /// its stated expiration had not come (clock skew, or the session was cut short). Makes
    /// sure the next [`Self::credentials`] does not hand it out again, and says whether that
    /// call can yield anything else. Sources of fixed credentials answer `false`.
    fn discard<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, bool> {
        let _ = access_key_id;
        Box::pin(std::future::ready(false))
    }
}

/// An AccessKey pair with an optional STS token. `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
}

impl Credentials {
    /// Creates a plain AccessKey pair.
    pub fn new(id: impl Into<String>, secret: impl Into<String>) -> Self {
        Self { access_key_id: id.into(), access_key_secret: secret.into(), security_token: None }
    }

    /// Adds an STS security token.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// Reads the standard environment variables.
    pub fn from_env() -> Result<Self, CredentialsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CredentialsError> {
        let get = |name| get(name).filter(|v| !v.is_empty());
        match (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
            (Some(id), Some(secret)) => {
                let creds = Self::new(id, secret);
                Ok(match get(ENV_SECURITY_TOKEN) {
                    Some(token) => creds.with_token(token),
                    None => creds,
                })
            }
            (Some(_), None) => {
                Err(CredentialsError::MissingEnv(ENV_ACCESS_KEY_SECRET, ENV_ACCESS_KEY_ID))
            }
            (None, Some(_)) => {
                Err(CredentialsError::MissingEnv(ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET))
            }
            (None, None) => Err(CredentialsError::NotConfigured),
        }
    }

    /// The secret values, for scrubbing them out of text that came from a server.
    fn secrets(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.access_key_secret.as_str()).chain(self.security_token.as_deref())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Fixed credentials are a provider too, so `Arc::new(credentials)` fits where one is wanted.
impl CredentialsProvider for Credentials {
    fn name(&self) -> &str {
        "static"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(std::future::ready(Ok(self.clone())))
    }
}

/// Where the sources read their environment variables: the process, or a fixed map in tests.
/// Empty values count as unset. `Debug` shows no values, since some of them are secrets.
#[derive(Clone, Default)]
pub(crate) struct Vars {
    map: Option<Arc<HashMap<String, String>>>,
}

impl Vars {
    /// The process environment, read at each lookup.
    pub(crate) fn process() -> Self {
        Self::default()
    }

    /// A fixed set of variables; nothing else is visible.
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let map = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self { map: Some(Arc::new(map)) }
    }

    /// The value of `name`, `None` when unset or empty.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        let value = match &self.map {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// Whether `name` is set to `true` (any case).
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The value of `name`, or the error a source reports when it is missing.
    pub(crate) fn require(&self, name: &'static str) -> Result<String, CredentialsError> {
        self.get(name).ok_or(CredentialsError::EnvNotSet(name))
    }
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.map {
            Some(_) => f.write_str("Vars(fixed)"),
            None => f.write_str("Vars(process)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_pair_and_optional_token() {
        let creds = Credentials::from_lookup(lookup(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, "secret"),
            (ENV_SECURITY_TOKEN, "tok"),
        ]))
        .expect("complete pair");
        assert_eq!(creds, Credentials::new("id", "secret").with_token("tok"));
    }

    #[test]
    fn half_a_pair_names_the_missing_variable() {
        let err = Credentials::from_lookup(lookup(&[(ENV_ACCESS_KEY_ID, "id")])).unwrap_err();
        assert!(err.to_string().contains(ENV_ACCESS_KEY_SECRET), "{err}");
        let err = Credentials::from_lookup(lookup(&[])).unwrap_err();
        assert!(matches!(err, CredentialsError::NotConfigured));
    }

    #[test]
    fn debug_hides_secret_and_token() {
        let text = format!("{:?}", Credentials::new("id", "s3cr3t").with_token("t0k3n"));
        assert!(!text.contains("s3cr3t") && !text.contains("t0k3n"), "{text}");
        assert!(text.contains("id"));
    }

    #[tokio::test]
    async fn bare_credentials_are_a_dyn_provider() {
        let provider: Arc<dyn CredentialsProvider> = Arc::new(Credentials::new("id", "secret"));
        assert_eq!(provider.name(), "static");
        let got = provider.credentials().await.expect("static credentials");
        assert_eq!(got, Credentials::new("id", "secret"));
    }

    #[test]
    fn vars_treat_blank_as_unset_and_read_flags() {
        let vars = Vars::from_pairs(&[("A", " "), ("B", "TRUE"), ("C", "yes")]);
        let cases = [("A", false, "blank is unset"), ("B", true, "any case"), ("C", false, "yes")];
        for (name, want, reason) in cases {
            assert_eq!(vars.flag(name), want, "{reason}");
        }
        assert_eq!(vars.get("A"), None);
        assert!(matches!(vars.require("Z"), Err(CredentialsError::EnvNotSet("Z"))));
        assert_eq!(format!("{vars:?}"), "Vars(fixed)");
    }
}
