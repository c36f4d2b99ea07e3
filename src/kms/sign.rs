//! RPC request signing, signature version 1.0 (HMAC-SHA1), as Alibaba Cloud's gateway checks it.
//!
//! Both ends of the wire use this module: the client to sign, the emulator to rebuild the
//! string-to-sign from what arrived. Nothing here performs I/O or knows about KMS actions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Value of the `SignatureMethod` parameter.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// Value of the `SignatureVersion` parameter.
pub const SIGNATURE_VERSION: &str = "1.0";
/// Timestamp layout the gateway accepts: UTC, whole seconds, literal `Z`.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Percent-encodes per RFC 3986: `A-Z a-z 0-9 - _ . ~` stay, every other UTF-8 byte becomes
/// `%XY` with uppercase hex (so a space is `%20`, never `+`).
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len() * 3);
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(char::from_digit(u32::from(byte >> 4), 16).map_or('0', upper));
            out.push(char::from_digit(u32::from(byte & 0xf), 16).map_or('0', upper));
        }
    }
    out
}

fn upper(c: char) -> char {
    c.to_ascii_uppercase()
}

/// Builds the canonicalized query: every pair but `Signature`, names and values encoded, sorted
/// by encoded name, joined with `&`.
pub fn canonical_query<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut pairs: Vec<(String, String)> = params
        .into_iter()
        .filter(|(name, _)| *name != "Signature")
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Builds the string-to-sign: `METHOD&%2F&` + the encoded canonical query.
pub fn string_to_sign<'a, I>(method: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    format!("{method}&%2F&{}", percent_encode(&canonical_query(params)))
}

/// Signs a string-to-sign with an AccessKey secret; the HMAC key is always `secret&`.
pub fn sign_string(secret: &str, string_to_sign: &str) -> String {
    let key = format!("{secret}&");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Computes the `Signature` value for a request with these parameters and this method.
pub fn signature<'a, I>(method: &str, secret: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sign_string(secret, &string_to_sign(method, params))
}

/// Compares two signatures in constant time, so a verifier leaks nothing through timing.
pub fn signatures_match(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    //! The published vectors of `kms-api.md` section 2.4.
    use super::*;

    const NONCE: &str = "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf";

    fn vector_a() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", NONCE),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
    }

    fn vector_d() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AccessKeyId", "testid"),
            ("Action", "CreateAlias"),
            ("AliasName", "alias/test_kms_alias"),
            ("Format", "JSON"),
            ("KeyId", "key-hzz630494463ejqjx1234"),
            ("RegionId", "cn-hangzhou"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", NONCE),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2016-01-20"),
        ]
    }

    fn vector_b() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AccessKeyId", "accessKeyId"),
            ("Action", ""),
            ("Format", "JSON"),
            ("RegionId", "regionId"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "MOCK_UUID"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "mock date"),
            ("Version", ""),
        ]
    }

    #[test]
    fn encoding_follows_rfc3986() {
        let cases = [
            ("a b", "a%20b", "space is %20, never +"),
            ("*", "%2A", "star is encoded"),
            ("~", "~", "tilde stays"),
            ("alias/x:y", "alias%2Fx%3Ay", "slash and colon encoded"),
            ("ключ", "%D0%BA%D0%BB%D1%8E%D1%87", "UTF-8 bytes, uppercase hex"),
        ];
        for (input, want, reason) in cases {
            assert_eq!(percent_encode(input), want, "{reason}");
        }
    }

    #[test]
    fn vector_a_doc_example_get_and_post() {
        let sts = string_to_sign("GET", vector_a());
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26\
             SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D\
             2014-05-26"
        );
        assert_eq!(signature("GET", "testsecret", vector_a()), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert_eq!(signature("POST", "testsecret", vector_a()), "MxbnVAM4w6sft9xjVpe/GCKueuk=");
    }

    #[test]
    fn vector_a_misspelled_timestamp_is_a_different_signature() {
        let mut params = vector_a();
        params[6].0 = "TimeStamp";
        assert_eq!(signature("GET", "testsecret", params), "CT9X0VtwR86fNWSnsc6v8YGOjuE=");
    }

    #[test]
    fn vector_a2_kms_create_key_without_nonce() {
        let params = [
            ("AccessKeyId", "testid"),
            ("Action", "CreateKey"),
            ("Format", "json"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-03-28T03:13:08Z"),
            ("Version", "2016-01-20"),
        ];
        assert_eq!(
            string_to_sign("GET", params),
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DCreateKey%26Format%3Djson%26SignatureMethod\
             %3DHMAC-SHA1%26SignatureVersion%3D1.0%26Timestamp%3D2016-03-28T03%253A13%253A08Z%26\
             Version%3D2016-01-20"
        );
        assert_eq!(signature("GET", "testsecret", params), "41wk2SSX1GJh7fwnc5eqOfiJPFg=");
    }

    #[test]
    fn vector_b_empty_values_and_space() {
        assert!(string_to_sign("GET", vector_b()).contains("mock%2520date"));
        assert_eq!(signature("GET", "accessKeySecret", vector_b()), "7loPmFjvDnzOVnQeQNj85S6nFGY=");
        let mut with_token = vector_b();
        with_token.push(("SecurityToken", "accessKeyStsToken"));
        assert_eq!(signature("GET", "accessKeySecret", with_token), "5Nxdcler+ihqWqv0Hr2On4PsBf4=");
    }

    #[test]
    fn vector_c_empty_method() {
        assert_eq!(string_to_sign("", [("test", "ok")]), "&%2F&test%3Dok");
        assert_eq!(
            signature("", "accessKeySecret", [("test", "ok")]),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
    }

    #[test]
    fn vector_d_create_alias_and_variants() {
        let sts = string_to_sign("POST", vector_d());
        assert!(sts.starts_with("POST&%2F&AccessKeyId%3Dtestid%26Action%3DCreateAlias%26"));
        assert!(sts.contains("AliasName%3Dalias%252Ftest_kms_alias"));
        assert_eq!(signature("POST", "testsecret", vector_d()), "A3IlriXP4fZ1mtcqb1g8XXLe/vU=");

        let mut with_type = vector_d();
        with_type.push(("SignatureType", ""));
        assert_eq!(signature("POST", "testsecret", with_type), "s4TFimwC2W0lnpFlqGQ49frF42E=");

        let mut with_token = vector_d();
        with_token.push(("SecurityToken", "CAIS token/with+chars=*~ sp"));
        assert_eq!(signature("POST", "testsecret", with_token), "kauO7J8H6k+VLosu93NAM3AfGQA=");
    }

    #[test]
    fn vector_e_query_and_form_body_are_one_set() {
        let params = [
            ("Action", "CreateAlias"),
            ("Format", "json"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2016-01-20"),
            ("SignatureNonce", NONCE),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", "testid"),
            ("AliasName", "alias/test_kms_alias"),
            ("KeyId", "key-hzz630494463ejqjx1234"),
        ];
        assert_eq!(signature("POST", "testsecret", params), "X2cxbFjxvAntmoPy/hCNWCCuAZo=");
    }

    #[test]
    fn signature_parameter_is_never_signed() {
        let mut params = vector_d();
        params.push(("Signature", "whatever"));
        assert_eq!(signature("POST", "testsecret", params), "A3IlriXP4fZ1mtcqb1g8XXLe/vU=");
    }

    #[test]
    fn constant_time_compare() {
        assert!(signatures_match("abc=", "abc="));
        assert!(!signatures_match("abc=", "abd="));
        assert!(!signatures_match("abc=", "abc"));
    }
}
