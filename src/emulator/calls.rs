//! The call log: every call to `/` (KMS and STS), with its parameters minus secrets, who made
//! it, where, and how it ended. Read through `GET /_emulator/calls`.

use super::error::ApiError;
use super::protocol::Params;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// Calls kept in the log; older ones are dropped.
const CALL_LOG_CAPACITY: usize = 10_000;
/// Parameters never written to the call log.
const DROPPED_PARAMS: &[&str] = &["Signature"];
/// Parameters whose value the call log replaces with [`REDACTED`].
const REDACTED_PARAMS: &[&str] = &["SecurityToken", "AccessKeySecret", "OIDCToken"];
/// What a redacted value reads.
pub const REDACTED: &str = "<redacted>";

/// One call as the call log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// 1-based sequence number, increasing for the emulator's lifetime (resets keep counting).
    pub seq: u64,
    /// Unix time of the call's arrival in milliseconds.
    pub time_ms: i64,
    /// The `Action` parameter, empty if absent.
    pub action: String,
    /// The `AccessKeyId` parameter, empty if absent.
    pub access_key_id: String,
    /// The account the call acted in; empty when it was refused before that was known.
    #[serde(default)]
    pub account_uid: String,
    /// The region the call acted in; empty for STS and for calls refused early.
    #[serde(default)]
    pub region: String,
    /// Every parameter except `Signature`; secrets read `<redacted>`.
    pub params: BTreeMap<String, String>,
    /// `OK` on success, else the error code.
    pub code: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The `RequestId` answered.
    pub request_id: String,
    /// The kind of injected fault that hit the call (`error`, `latency`, `hangAfterCommit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Where a call acted and what was injected, as far as it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallContext {
    pub account_uid: String,
    pub region: String,
    pub fault: Option<&'static str>,
}

impl CallRecord {
    /// A record of one call; the log assigns `seq`.
    pub fn new(
        params: &Params,
        result: &Result<Value, ApiError>,
        context: &CallContext,
        request_id: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let (code, status) = match result {
            Ok(_) => ("OK".to_owned(), 200),
            Err(e) => (e.code.clone(), e.status),
        };
        Self {
            seq: 0,
            time_ms: now.timestamp_millis(),
            action: params.get("Action").unwrap_or_default().to_owned(),
            access_key_id: params.get("AccessKeyId").unwrap_or_default().to_owned(),
            account_uid: context.account_uid.clone(),
            region: context.region.clone(),
            params: loggable(params),
            code,
            status,
            request_id: request_id.to_owned(),
            fault: context.fault.map(str::to_owned),
        }
    }
}

/// The parameters as the log may show them: first value of each name, secrets hidden.
pub fn loggable(params: &Params) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for (name, value) in params.pairs().filter(|(n, _)| !DROPPED_PARAMS.contains(n)) {
        let value = if REDACTED_PARAMS.contains(&name) { REDACTED } else { value };
        kept.entry(name.to_owned()).or_insert_with(|| value.to_owned());
    }
    kept
}

/// The bounded call log.
#[derive(Debug, Default)]
pub struct CallLog {
    records: VecDeque<CallRecord>,
    last_seq: u64,
}

impl CallLog {
    /// Appends a record and numbers it.
    pub fn record(&mut self, mut record: CallRecord) {
        self.last_seq += 1;
        record.seq = self.last_seq;
        if self.records.len() >= CALL_LOG_CAPACITY {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Records after `since`, optionally of one action.
    pub fn since(&self, since: u64, action: Option<&str>) -> Vec<CallRecord> {
        let wanted = |r: &&CallRecord| r.seq > since && action.is_none_or(|a| r.action == a);
        self.records.iter().filter(wanted).cloned().collect()
    }

    /// Drops every record; numbering continues.
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_dropped_or_redacted() {
        let params = Params::from_pairs(
            [
                ("Action", "AssumeRoleWithOIDC"),
                ("Signature", "sig"),
                ("SecurityToken", "tok"),
                ("OIDCToken", "jwt"),
                ("AccessKeySecret", "s3"),
                ("RoleArn", "acs:ram::1:role/r"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let kept = loggable(&params);
        let cases = [
            ("Signature", None, "dropped"),
            ("SecurityToken", Some(REDACTED), "redacted"),
            ("OIDCToken", Some(REDACTED), "redacted"),
            ("AccessKeySecret", Some(REDACTED), "redacted"),
            ("RoleArn", Some("acs:ram::1:role/r"), "kept"),
        ];
        for (name, want, reason) in cases {
            assert_eq!(kept.get(name).map(String::as_str), want, "{name} {reason}");
        }
    }

    #[test]
    fn log_numbers_filters_and_carries_context() {
        let params = Params::from_pairs([("Action".to_owned(), "ListAliases".to_owned())]);
        let context = CallContext {
            account_uid: "1".into(),
            region: "cn-hangzhou".into(),
            fault: Some("error"),
        };
        let mut log = CallLog::default();
        let err = Err(ApiError::nonce_used());
        log.record(CallRecord::new(&params, &Ok(json!({})), &context, "r1", Utc::now()));
        log.record(CallRecord::new(&params, &err, &CallContext::default(), "r2", Utc::now()));
        let all = log.since(0, Some("ListAliases"));
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].code.as_str(), all[1].code.as_str()), ("OK", "SignatureNonceUsed"));
        assert_eq!((all[0].account_uid.as_str(), all[0].region.as_str()), ("1", "cn-hangzhou"));
        assert_eq!(all[0].fault.as_deref(), Some("error"));
        assert_eq!(log.since(1, None).len(), 1);
        assert!(log.since(0, Some("CreateKey")).is_empty());
    }
}
