//! The KMS client: builds, signs and sends RPC requests, and turns answers into typed results.
//!
//! Requests take the shape Terraform's provider sends (tea-rpc): POST, common parameters in the
//! query string, the action's own parameters in a form body, all of them signed. Nothing here
//! retries; the reconciler owns retry and backoff so it can spread them per object.

use super::error::{ApiError, Error};
use super::sign;
use super::types::{AliasEntry, KeyMetadata};
use super::{API_VERSION, Credentials};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// Page size used when walking every alias (the documented maximum).
const LIST_PAGE_SIZE: u32 = 100;

/// Where and how to reach KMS.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Region id, for example `cn-hangzhou`.
    pub region: String,
    /// Full endpoint URL; `None` means the public endpoint `https://kms.<region>.aliyuncs.com`.
    pub endpoint: Option<String>,
    /// Upper bound for one call, connection included.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A configuration for the public endpoint of a region.
    pub fn for_region(region: impl Into<String>) -> Self {
        Self { region: region.into(), endpoint: None, timeout: Duration::from_secs(10) }
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
    credentials: Credentials,
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
struct KeyMetadataBody {
    key_metadata: KeyMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(alias = "code")]
    code: String,
    #[serde(default, alias = "message")]
    message: String,
    #[serde(default)]
    request_id: String,
}

impl Client {
    /// Builds a client; fails only if the TLS stack cannot be set up.
    pub fn new(config: &ClientConfig, credentials: Credentials) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("kms-alias-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            endpoint: config.endpoint_url(),
            region: config.region.clone(),
            credentials,
        })
    }

    /// The region this client is bound to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Points `alias_name` at `key_id`; fails with `AlreadyExists` if the name is taken.
    pub async fn create_alias(&self, alias_name: &str, key_id: &str) -> Result<(), Error> {
        self.call_unit("CreateAlias", &[("AliasName", alias_name), ("KeyId", key_id)]).await
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

    /// Sends one signed action and decodes its success body.
    pub async fn call<T: DeserializeOwned>(
        &self,
        action: &'static str,
        params: &[(&str, &str)],
    ) -> Result<T, Error> {
        let started = Instant::now();
        let query = self.common_params(action);
        let signature = sign::signature(
            "POST",
            &self.credentials.access_key_secret,
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
        let elapsed_ms = started.elapsed().as_millis() as u64;

        if (200..300).contains(&status) {
            tracing::debug!(action, status, elapsed_ms, "kms call succeeded");
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
            action, status, code = %parsed.code, request_id = %parsed.request_id, elapsed_ms,
            "kms call failed"
        );
        Err(Error::Api(Box::new(ApiError {
            action,
            code: parsed.code,
            message: parsed.message,
            status,
            request_id: parsed.request_id,
        })))
    }

    fn common_params(&self, action: &'static str) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("AccessKeyId", self.credentials.access_key_id.clone()),
            ("Action", action.to_owned()),
            ("Format", "JSON".to_owned()),
            ("RegionId", self.region.clone()),
            ("SignatureMethod", sign::SIGNATURE_METHOD.to_owned()),
            ("SignatureNonce", uuid::Uuid::new_v4().to_string()),
            ("SignatureVersion", sign::SIGNATURE_VERSION.to_owned()),
            ("Timestamp", chrono::Utc::now().format(sign::TIMESTAMP_FORMAT).to_string()),
            ("Version", API_VERSION.to_owned()),
        ];
        if let Some(token) = &self.credentials.security_token {
            params.push(("SecurityToken", token.clone()));
        }
        params
    }

    fn transport(&self, action: &'static str, source: reqwest::Error) -> Error {
        // reqwest's error text may carry the full URL, signature included; drop it.
        Error::Transport { action, endpoint: self.endpoint.clone(), source: source.without_url() }
    }
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
}
