//! AccessKey credentials and where they come from.
//!
//! Only the environment source exists so far.
//! TODO(#3): the full chain (credentials file, RRSA, assume-role, ECS RAM role) with refresh.

use std::fmt;

/// Environment variable holding the AccessKey id.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Environment variable holding an optional STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// An AccessKey pair with an optional STS token. `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
}

/// Why no credentials could be found.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A required environment variable is unset or empty.
    #[error("environment variable {0} is not set (needed with {1})")]
    MissingEnv(&'static str, &'static str),
    /// Neither variable of the pair is set.
    #[error(
        "no credentials found: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} \
         (optionally {ENV_SECURITY_TOKEN})"
    )]
    NotConfigured,
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
}
