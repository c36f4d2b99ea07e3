//! STS `AssumeRole` on top of any base identity, signed V1 with the base credentials.
//!
//! The base is asked for its credentials at every refresh, so a base that rotates (a file, an
//! OIDC session) keeps working; the assumed session is cached until 180 s before it expires.

use super::oidc::{ENV_ROLE_SESSION_NAME, default_session_name};
use super::sts::{self, Session, SessionCache, Sts};
use super::{Credentials, CredentialsError, CredentialsProvider, Vars};
use crate::kms::sign;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Our own variable (not an Alibaba SDK one): the ARN of a role to assume on top of the
/// identity the default chain finds. Read by [`AssumeRoleProvider::from_env`].
pub const ENV_ASSUME_ROLE_ARN: &str = "ALIBABA_CLOUD_ASSUME_ROLE_ARN";

const ACTION: &str = "AssumeRole";

/// Session credentials for a RAM role, assumed with the credentials of a base provider.
pub struct AssumeRoleProvider {
    base: Arc<dyn CredentialsProvider>,
    role_arn: String,
    session_name: String,
    external_id: Option<String>,
    duration_seconds: u32,
    sts: Sts,
    cache: SessionCache,
}

impl AssumeRoleProvider {
    /// Assumes `role_arn` as `base` at `sts_endpoint` (full URL, or a host meaning HTTPS), with
    /// `external_id` when the role's trust policy asks for one.
    pub fn new(
        base: Arc<dyn CredentialsProvider>,
        role_arn: impl Into<String>,
        session_name: impl Into<String>,
        external_id: Option<String>,
        sts_endpoint: impl AsRef<str>,
    ) -> Self {
        Self {
            base,
            role_arn: role_arn.into(),
            session_name: session_name.into(),
            external_id,
            duration_seconds: sts::DEFAULT_DURATION_SECONDS,
            sts: Sts::new(sts_endpoint.as_ref()),
            cache: SessionCache::default(),
        }
    }

    /// When `ALIBABA_CLOUD_ASSUME_ROLE_ARN` is set, wraps `base` to assume that role, with the
    /// session name from `ALIBABA_CLOUD_ROLE_SESSION_NAME` (or a generated one) and the STS
    /// endpoint from the STS variables. `None` when the variable is unset.
    pub fn from_env(base: Arc<dyn CredentialsProvider>) -> Option<Self> {
        Self::from_vars(base, &Vars::process())
    }

    pub(crate) fn from_vars(base: Arc<dyn CredentialsProvider>, vars: &Vars) -> Option<Self> {
        let role_arn = vars.get(ENV_ASSUME_ROLE_ARN)?;
        let session = vars.get(ENV_ROLE_SESSION_NAME).unwrap_or_else(default_session_name);
        Some(Self::new(base, role_arn, session, None, sts::resolve_endpoint(vars)))
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

    async fn fetch(&self) -> Result<Session, CredentialsError> {
        let base = self.base.credentials().await?;
        let duration = self.duration_seconds.to_string();
        let mut form = vec![
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        if let Some(external_id) = &self.external_id {
            form.push(("ExternalId", external_id.as_str()));
        }
        let query = signed_query(&base, &form);
        let secrets: Vec<&str> = base.secrets().collect();
        self.sts.call(ACTION, &query, &form, &secrets).await
    }
}

/// The query of a signed call: common and signature parameters, the signature over them and
/// the form body together (the gateway signs the union).
fn signed_query(base: &Credentials, form: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut query = sts::common_query(ACTION);
    query.extend([
        ("AccessKeyId", base.access_key_id.clone()),
        ("SignatureMethod", sign::SIGNATURE_METHOD.to_owned()),
        ("SignatureNonce", uuid::Uuid::new_v4().to_string()),
        ("SignatureVersion", sign::SIGNATURE_VERSION.to_owned()),
    ]);
    if let Some(token) = &base.security_token {
        query.push(("SecurityToken", token.clone()));
    }
    let signed = query.iter().map(|(k, v)| (*k, v.as_str())).chain(form.iter().copied());
    let signature = sign::signature("POST", &base.access_key_secret, signed);
    query.push(("Signature", signature));
    query
}

impl CredentialsProvider for AssumeRoleProvider {
    fn name(&self) -> &str {
        "assume role"
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.cache.get("assume role", || self.fetch()))
    }

    fn discard<'a>(&'a self, access_key_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.cache.discard("assume role", access_key_id))
    }
}

impl fmt::Debug for AssumeRoleProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRoleProvider")
            .field("base", &self.base)
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("external_id", &self.external_id)
            .field("duration_seconds", &self.duration_seconds)
            .field("sts_endpoint", &self.sts.endpoint())
            .field("expiration", &self.cache.expiration())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::OidcProvider;
    use super::super::stub::{BASE_ID, BASE_SECRET, StubSts};
    use super::*;

    const ROLE: &str = "acs:ram::1234:role/cross";

    fn base() -> Arc<dyn CredentialsProvider> {
        Arc::new(Credentials::new(BASE_ID, BASE_SECRET))
    }

    #[tokio::test]
    async fn signed_call_verified_cached_and_refreshed() {
        let stub = StubSts::start().await;
        let provider =
            AssumeRoleProvider::new(base(), ROLE, "sess", Some("ext-1".into()), &stub.url)
                .with_duration_seconds(900);

        let first = provider.credentials().await.expect("stub verified the signature");
        assert!(first.access_key_id.starts_with("STS.") && first.security_token.is_some());
        assert_eq!(provider.credentials().await.expect("cached"), first);
        assert_eq!(stub.count(ACTION), 1, "two calls, one STS call");
        let call = &stub.calls()[0];
        let want = [
            ("AccessKeyId", BASE_ID),
            ("RoleArn", ROLE),
            ("RoleSessionName", "sess"),
            ("DurationSeconds", "900"),
            ("ExternalId", "ext-1"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("Version", "2015-04-01"),
        ];
        for (name, value) in want {
            assert_eq!(call.get(name), Some(value), "{name}");
        }
        assert!(call.get("SecurityToken").is_none(), "plain base key has no token");

        stub.set_expires_in(100);
        provider.cache.expire().await;
        let refreshed = provider.credentials().await.expect("refreshed");
        assert_ne!(refreshed, first);
        provider.credentials().await.expect("inside the window again");
        assert_eq!(stub.count(ACTION), 3, "100 s left means refresh at every call");
    }

    #[tokio::test]
    async fn on_top_of_an_sts_base_sends_its_token() {
        let stub = StubSts::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt").expect("write token");
        let oidc = OidcProvider::new(ROLE, "acs:ram::1:oidc-provider/p", &token_file, &stub.url);
        let provider = AssumeRoleProvider::new(Arc::new(oidc), ROLE, "sess", None, &stub.url);
        provider.credentials().await.expect("stub checked signature and token pairing");
        let call = stub.calls().into_iter().find(|c| c.get("Action") == Some(ACTION));
        let call = call.expect("AssumeRole call");
        assert_eq!(call.get("SecurityToken"), Some("sts-token-1"));
        assert_eq!(call.get("AccessKeyId"), Some("STS.stub-1"));
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_without_leaking_the_string_to_sign() {
        let stub = StubSts::start().await;
        let cases = [
            ("base-id", "InvalidSecurityToken.Mismatch", "token sent for a plain key"),
            ("tok-id", "SignatureDoesNotMatch", "echoed string-to-sign holds the token"),
        ];
        stub.add_key("tok-id", "right-s3cret", Some("tok-s3cret"));
        for (id, code, reason) in cases {
            let base = Credentials::new(id, "wrong-s3cret").with_token("tok-s3cret");
            let provider = AssumeRoleProvider::new(Arc::new(base), ROLE, "sess", None, &stub.url);
            let err = provider.credentials().await.expect_err(reason);
            assert_eq!(err.code(), Some(code), "{reason}");
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains("tok-s3cret") && !text.contains("wrong-s3cret"),
                "{reason}: {text}"
            );
        }
    }

    #[tokio::test]
    async fn base_failure_is_passed_through() {
        let stub = StubSts::start().await;
        let base = Arc::new(super::super::EnvProvider::with_vars(Vars::from_pairs(&[])));
        let provider = AssumeRoleProvider::new(base, ROLE, "sess", None, &stub.url);
        let err = provider.credentials().await.expect_err("no base");
        assert!(matches!(err, CredentialsError::EnvNotSet(_)), "{err}");
        assert_eq!(stub.calls().len(), 0);
    }

    #[test]
    fn from_vars_only_when_asked() {
        assert!(AssumeRoleProvider::from_vars(base(), &Vars::from_pairs(&[])).is_none());
        let vars = Vars::from_pairs(&[(ENV_ASSUME_ROLE_ARN, ROLE), (ENV_ROLE_SESSION_NAME, "s")]);
        let some = AssumeRoleProvider::from_vars(base(), &vars).expect("asked");
        assert_eq!((some.role_arn.as_str(), some.session_name.as_str()), (ROLE, "s"));
        assert_eq!(some.sts.endpoint(), sts::DEFAULT_STS_ENDPOINT);
    }
}
