//! What the STS-backed sources share: the endpoint choice, one STS round trip, and the session
//! cache that refreshes credentials before they expire.

use super::error::scrub;
use super::{Credentials, CredentialsError, StsError, Vars};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;

/// The STS API version both actions use.
pub const STS_API_VERSION: &str = "2015-04-01";
/// The global STS endpoint, used when nothing else is configured.
pub const DEFAULT_STS_ENDPOINT: &str = "https://sts.aliyuncs.com";
/// Full STS URL or bare host (then HTTPS); injected by ACK's pod identity webhook.
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
/// Region whose STS endpoint to use, `sts.<region>.aliyuncs.com`.
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
/// `true` selects the VPC endpoint `sts-vpc.<region>.aliyuncs.com` (with a region only).
pub const ENV_VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
/// Session length asked for, in seconds (STS default; the minimum is 900).
pub const DEFAULT_DURATION_SECONDS: u32 = 3600;

/// Default bound for one STS call, connection included.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Session credentials are refreshed when this much or less remains.
const REFRESH_BEFORE: chrono::TimeDelta = chrono::TimeDelta::seconds(180);
/// After a failed refresh, current credentials are still handed out if this much remains.
const STALE_FLOOR: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// The STS endpoint the process environment selects (see [`ENV_STS_ENDPOINT`]).
pub fn sts_endpoint_from_env() -> String {
    resolve_endpoint(&Vars::process())
}

pub(crate) fn resolve_endpoint(vars: &Vars) -> String {
    if let Some(endpoint) = vars.get(ENV_STS_ENDPOINT) {
        return normalize_url(&endpoint);
    }
    match vars.get(ENV_STS_REGION) {
        Some(region) if vars.flag(ENV_VPC_ENDPOINT_ENABLED) => {
            format!("https://sts-vpc.{}.aliyuncs.com", region.trim())
        }
        Some(region) => format!("https://sts.{}.aliyuncs.com", region.trim()),
        None => DEFAULT_STS_ENDPOINT.to_owned(),
    }
}

/// A full URL stays as it is (minus trailing slashes); a bare host means HTTPS.
pub(crate) fn normalize_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.contains("://") { endpoint.to_owned() } else { format!("https://{endpoint}") }
}

/// Whether a request to `endpoint` keeps its tokens private: HTTPS anywhere, or plain HTTP to
/// a loopback address (a local emulator). The check is on the URL as written.
pub(crate) fn transport_is_safe(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return true;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    matches!(host, "localhost" | "[::1]")
        || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The query parameters every STS call carries.
pub(crate) fn common_query(action: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("Action", action.to_owned()),
        ("Format", "JSON".to_owned()),
        ("Timestamp", Utc::now().format(crate::kms::sign::TIMESTAMP_FORMAT).to_string()),
        ("Version", STS_API_VERSION.to_owned()),
    ]
}

/// Credentials that expire.
pub(crate) struct Session {
    pub credentials: Credentials,
    pub expiration: DateTime<Utc>,
}

/// One STS endpoint and the HTTP client to reach it.
pub(crate) struct Sts {
    /// Built at the first call, so constructors cannot fail.
    http: tokio::sync::OnceCell<reqwest::Client>,
    endpoint: String,
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    credentials: SessionBody,
}

/// The `Credentials` object of STS and the credentials object of the metadata service.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SessionBody {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expiration: String,
}

impl SessionBody {
    /// Checks the expiration and makes the session.
    pub(crate) fn into_session(self, action: &'static str) -> Result<Session, CredentialsError> {
        let expiration =
            parse_expiration(&self.expiration).ok_or_else(|| CredentialsError::Decode {
                action,
                status: 200,
                detail: "Expiration is not a yyyy-MM-ddTHH:mm:ssZ time".to_owned(),
            })?;
        let credentials = Credentials::new(self.access_key_id, self.access_key_secret)
            .with_token(self.security_token);
        Ok(Session { credentials, expiration })
    }
}

/// Parses `2021-10-20T04:27:09Z`, and any RFC 3339 time as well.
pub(crate) fn parse_expiration(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        NaiveDateTime::parse_from_str(text, crate::kms::sign::TIMESTAMP_FORMAT)
            .ok()
            .map(|t| t.and_utc())
    })
}

impl Sts {
    /// A client for `endpoint` (full URL, or a host meaning HTTPS).
    pub(crate) fn new(endpoint: &str) -> Self {
        let http = tokio::sync::OnceCell::new();
        Self { http, endpoint: normalize_url(endpoint), timeout: DEFAULT_TIMEOUT }
    }

    async fn http(&self) -> Result<&reqwest::Client, CredentialsError> {
        let build = || async {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("kms-alias-operator/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        self.http.get_or_try_init(build).await.map_err(CredentialsError::HttpClient)
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Posts one action and decodes the `Credentials` of its answer. `secrets` are scrubbed
    /// out of any error message STS sends back.
    pub(crate) async fn call(
        &self,
        action: &'static str,
        query: &[(&'static str, String)],
        form: &[(&str, &str)],
        secrets: &[&str],
    ) -> Result<Session, CredentialsError> {
        if !transport_is_safe(&self.endpoint) {
            return Err(CredentialsError::InsecureEndpoint(self.endpoint.clone()));
        }
        let started = std::time::Instant::now();
        let response = self
            .http()
            .await?
            .post(format!("{}/", self.endpoint))
            .timeout(self.timeout)
            .query(query)
            .form(form)
            .send()
            .await
            .map_err(|e| CredentialsError::transport(action, &self.endpoint, e))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| CredentialsError::transport(action, &self.endpoint, e))?;
        let elapsed_ms = started.elapsed().as_millis() as u64;

        if (200..300).contains(&status) {
            let answer: Answer = serde_json::from_slice(&body)
                .map_err(|e| CredentialsError::decode(action, status, &e))?;
            tracing::debug!(action, status, elapsed_ms, "sts call succeeded");
            return answer.credentials.into_session(action);
        }
        let parsed: crate::kms::types::ErrorBody = serde_json::from_slice(&body)
            .map_err(|e| CredentialsError::decode(action, status, &e))?;
        let error = StsError {
            action,
            code: scrub(&parsed.code, secrets.iter().copied()),
            message: scrub(&parsed.message, secrets.iter().copied()),
            status,
            request_id: scrub(&parsed.request_id, secrets.iter().copied()),
        };
        tracing::debug!(
            action, status, code = %error.code, request_id = %error.request_id, elapsed_ms,
            "sts call failed"
        );
        Err(CredentialsError::Sts(Box::new(error)))
    }
}

/// The current session of one source. Holding the lock while refreshing makes concurrent
/// callers wait for one refresh instead of each starting their own.
#[derive(Default)]
pub(crate) struct SessionCache {
    slot: tokio::sync::Mutex<Option<Session>>,
}

impl SessionCache {
    /// Returns the cached credentials while more than 180 s remain, else runs `fetch`. When
    /// `fetch` fails but the cached credentials are still good for a while, those are returned.
    pub(crate) async fn get<F, Fut>(
        &self,
        source: &str,
        fetch: F,
    ) -> Result<Credentials, CredentialsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Session, CredentialsError>>,
    {
        let mut slot = self.slot.lock().await;
        let now = Utc::now();
        if let Some(session) = slot.as_ref()
            && session.expiration - now > REFRESH_BEFORE
        {
            return Ok(session.credentials.clone());
        }
        match fetch().await {
            Ok(session) => {
                tracing::debug!(source, expiration = %session.expiration, "credentials refreshed");
                let credentials = session.credentials.clone();
                *slot = Some(session);
                Ok(credentials)
            }
            Err(error) => match slot.as_ref() {
                Some(old) if old.expiration - now > STALE_FLOOR => {
                    tracing::warn!(
                        source, error = %error, expiration = %old.expiration,
                        "credentials refresh failed; using the current ones until they expire"
                    );
                    Ok(old.credentials.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Drops the cached session if it is `access_key_id`, so the next call fetches a new one.
    /// Always `true`: the next call never returns that session.
    pub(crate) async fn discard(&self, source: &str, access_key_id: &str) -> bool {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_some_and(|s| s.credentials.access_key_id == access_key_id) {
            tracing::info!(source, "session refused as expired; fetching a new one");
            *slot = None;
        }
        true
    }

    /// Marks the cached session as expired, so the next call refreshes.
    #[cfg(test)]
    pub(crate) async fn expire(&self) {
        if let Some(session) = self.slot.lock().await.as_mut() {
            session.expiration = Utc::now();
        }
    }

    /// When the cached session expires, if there is one (without waiting for the lock).
    pub(crate) fn expiration(&self) -> Option<DateTime<Utc>> {
        self.slot.try_lock().ok().and_then(|slot| slot.as_ref().map(|s| s.expiration))
    }
}

#[cfg(test)]
mod transport_tests {
    use super::transport_is_safe;

    #[test]
    fn plain_http_only_to_loopback() {
        let cases = [
            ("https://sts.aliyuncs.com", true, "https anywhere"),
            ("http://127.0.0.1:8080", true, "loopback v4"),
            ("http://localhost:9", true, "localhost"),
            ("http://[::1]:9", true, "loopback v6"),
            ("http://sts.aliyuncs.com", false, "plain http to the internet"),
            ("http://10.0.0.1:80", false, "plain http to a private address"),
            ("http://127.0.0.1.evil.com", false, "look-alike host"),
        ];
        for (url, want, why) in cases {
            assert_eq!(transport_is_safe(url), want, "{why}: {url}");
        }
    }
}

#[cfg(test)]
mod tests {
    type Pairs = &'static [(&'static str, &'static str)];
    use super::*;

    #[test]
    fn endpoint_resolution() {
        let cases: [(Pairs, &str, &str); 7] = [
            (&[], "https://sts.aliyuncs.com", "global default"),
            (&[(ENV_STS_REGION, "cn-beijing")], "https://sts.cn-beijing.aliyuncs.com", "region"),
            (
                &[(ENV_STS_REGION, "cn-beijing"), (ENV_VPC_ENDPOINT_ENABLED, "true")],
                "https://sts-vpc.cn-beijing.aliyuncs.com",
                "vpc",
            ),
            (&[(ENV_VPC_ENDPOINT_ENABLED, "true")], "https://sts.aliyuncs.com", "vpc needs region"),
            (
                &[(ENV_STS_ENDPOINT, "sts-vpc.cn-x.aliyuncs.com"), (ENV_STS_REGION, "cn-beijing")],
                "https://sts-vpc.cn-x.aliyuncs.com",
                "explicit host wins and means https",
            ),
            (&[(ENV_STS_ENDPOINT, "http://127.0.0.1:9/")], "http://127.0.0.1:9", "full url kept"),
            (&[(ENV_STS_ENDPOINT, "")], "https://sts.aliyuncs.com", "empty is unset"),
        ];
        for (vars, want, reason) in cases {
            assert_eq!(resolve_endpoint(&Vars::from_pairs(vars)), want, "{reason}");
        }
    }

    #[test]
    fn expiration_formats() {
        let want = DateTime::parse_from_rfc3339("2021-10-20T04:27:09Z").expect("valid").to_utc();
        let cases = [
            ("2021-10-20T04:27:09Z", Some(want), "documented format"),
            (" 2021-10-20T04:27:09Z\n", Some(want), "surrounding space"),
            ("2021-10-20T12:27:09+08:00", Some(want), "offset"),
            ("tomorrow", None, "garbage"),
        ];
        for (text, want, reason) in cases {
            assert_eq!(parse_expiration(text), want, "{reason}");
        }
    }

    fn session(id: &str, seconds: i64) -> Session {
        Session {
            credentials: Credentials::new(id, "secret"),
            expiration: Utc::now() + chrono::TimeDelta::seconds(seconds),
        }
    }

    #[tokio::test]
    async fn cache_refreshes_inside_the_window_and_falls_back_on_failure() {
        let cache = SessionCache::default();
        let got = cache.get("t", || async { Ok(session("a", 3600)) }).await.expect("first");
        assert_eq!(got.access_key_id, "a");
        let got = cache.get("t", || async { Ok(session("b", 3600)) }).await.expect("cached");
        assert_eq!(got.access_key_id, "a", "fresh session is reused");

        let cache = SessionCache::default();
        cache.get("t", || async { Ok(session("a", 170)) }).await.expect("first");
        let got = cache.get("t", || async { Ok(session("b", 170)) }).await.expect("refresh");
        assert_eq!(got.access_key_id, "b", "170 s left is inside the refresh window");
        let failed = || async { Err(CredentialsError::EnvNotSet("X")) };
        let got = cache.get("t", failed).await.expect("stale but valid");
        assert_eq!(got.access_key_id, "b", "failed refresh keeps valid credentials");

        let cache = SessionCache::default();
        cache.get("t", || async { Ok(session("a", 10)) }).await.expect("first");
        assert!(cache.get("t", failed).await.is_err(), "nearly expired is not handed out");
        assert!(cache.expiration().is_some());
    }

    #[tokio::test]
    async fn discard_drops_only_the_refused_session() {
        let cache = SessionCache::default();
        cache.get("t", || async { Ok(session("a", 3600)) }).await.expect("first");
        assert!(cache.discard("t", "other").await);
        let got = cache.get("t", || async { Ok(session("b", 3600)) }).await.expect("kept");
        assert_eq!(got.access_key_id, "a", "another id leaves the session alone");
        assert!(cache.discard("t", "a").await);
        let failed = || async { Err(CredentialsError::EnvNotSet("X")) };
        assert!(cache.get("t", failed).await.is_err(), "a discarded session is not a fallback");
        let got = cache.get("t", || async { Ok(session("b", 3600)) }).await.expect("new");
        assert_eq!(got.access_key_id, "b");
    }
}
