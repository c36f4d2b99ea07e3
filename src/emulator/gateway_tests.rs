//! Table tests of the pure gateway rules: timestamps, regions, service dispatch.

use super::*;
use axum::http::HeaderValue;

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

#[test]
fn timestamps_must_be_well_formed_and_recent() {
    let now = DateTime::parse_from_rfc3339("2024-05-20T06:34:21Z").unwrap().to_utc();
    let cases: &[(Option<&str>, Option<&str>, &str)] = &[
        (Some("2024-05-20T06:34:21Z"), None, "exact"),
        (Some("2024-05-20T06:49:21Z"), None, "15 minutes ahead is still fine"),
        (Some("2024-05-20T06:19:20Z"), Some("InvalidTimeStamp.Expired"), "too old"),
        (Some("2024-05-20T06:34:21.5Z"), Some("InvalidTimeStamp.Format"), "fraction"),
        (Some("2024-05-20 06:34:21"), Some("InvalidTimeStamp.Format"), "not ISO"),
        (None, Some("IllegalTimestamp"), "missing"),
    ];
    for (value, want, reason) in cases {
        let pairs: Vec<(&str, &str)> = value.map(|v| ("Timestamp", v)).into_iter().collect();
        let got = check_timestamp(&params(&pairs), now).err().map(|e| e.code);
        assert_eq!(got.as_deref(), *want, "{reason}");
    }
}

/// RegionId, Host, account regions, wanted region or error code, reason.
type RegionCase<'a> =
    (Option<&'a str>, Option<&'a str>, &'a [String], Result<&'a str, &'a str>, &'a str);

#[test]
fn region_comes_from_param_host_account_or_default() {
    let shanghai: &[String] = &["cn-shanghai".to_owned()];
    let none: &[String] = &[];
    let cases: &[RegionCase<'_>] = &[
        (None, None, none, Ok("cn-hangzhou"), "emulator default"),
        (Some("cn-beijing"), None, none, Ok("cn-beijing"), "RegionId wins"),
        (None, Some("kms.cn-shenzhen.aliyuncs.com"), none, Ok("cn-shenzhen"), "public host"),
        (None, Some("kms-vpc.cn-qingdao.aliyuncs.com:443"), none, Ok("cn-qingdao"), "VPC host"),
        (None, Some("127.0.0.1:8080"), none, Ok("cn-hangzhou"), "loopback host"),
        (None, None, shanghai, Ok("cn-shanghai"), "account's first region"),
        (Some("cn-beijing"), None, shanghai, Err("InvalidRegionId"), "region not allowed"),
        (Some("CN_HZ"), None, none, Err("InvalidParameter"), "malformed"),
    ];
    for (region, host, allowed, want, reason) in cases {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        let pairs: Vec<(&str, &str)> = region.map(|r| ("RegionId", r)).into_iter().collect();
        let got = resolve_region(&params(&pairs), &headers, allowed, "cn-hangzhou");
        let got = got.as_deref().map_err(|e| e.code.as_str());
        assert_eq!(got, *want, "{reason}");
    }
}

/// Parameters, service, wanted action or error code, reason.
type VersionCase<'a> = (&'a [(&'a str, &'a str)], Service, Result<&'a str, &'a str>, &'a str);

#[test]
fn version_picks_the_service_and_is_checked() {
    let cases: &[VersionCase<'_>] = &[
        (&[("Version", "2016-01-20"), ("Action", "ListKeys")], Service::Kms, Ok("ListKeys"), "KMS"),
        (
            &[("Version", "2015-04-01"), ("Action", "AssumeRole")],
            Service::Sts,
            Ok("AssumeRole"),
            "STS",
        ),
        (
            &[("Version", "2015-04-01"), ("Action", "CreateKey")],
            Service::Sts,
            Err("InvalidAction.NotFound"),
            "KMS action on STS",
        ),
        (&[("Action", "ListKeys")], Service::Kms, Err("MissingParameter"), "no version"),
        (&[("Version", "2014-05-26"), ("Action", "X")], Service::Kms, Err("InvalidVersion"), "old"),
    ];
    for (pairs, service, want, reason) in cases {
        let params = params(pairs);
        assert_eq!(Service::of(&params), *service, "{reason}");
        let got = check_action(*service, &params).map_err(|e| e.code);
        assert_eq!(got.as_ref().map_err(String::as_str).copied(), *want, "{reason}");
    }
}
