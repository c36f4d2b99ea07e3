//! Why a source gave no credentials. No variant ever holds a secret, a token or a signature:
//! server text is scrubbed on the way in, and JSON decoding errors keep only their position.

use super::{ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_SECURITY_TOKEN};
use std::fmt;
use std::path::PathBuf;

/// Upper bound for server-provided text kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// Why no credentials could be had from a source.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A variable the source needs is unset or empty.
    #[error("{0} not set")]
    EnvNotSet(&'static str),
    /// One variable of a pair is set, the other (the first field) is not.
    #[error("environment variable {0} is not set (needed with {1})")]
    MissingEnv(&'static str, &'static str),
    /// Neither variable of the AccessKey pair is set ([`super::Credentials::from_env`]).
    #[error(
        "no credentials found: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} \
         (optionally {ENV_SECURITY_TOKEN})"
    )]
    NotConfigured,
    /// The source is switched off; the text says how to switch it on, or what switched it off.
    #[error("disabled ({0})")]
    Disabled(&'static str),
    /// A file or directory the source reads does not exist.
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    /// Reading a file failed.
    #[error("failed to read {}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A credentials file, Secret directory or token file holds nothing usable.
    #[error("invalid credentials in {}: {reason}", .path.display())]
    InvalidFile { path: PathBuf, reason: String },
    /// A plain-HTTP endpoint that is not on this machine: tokens would cross the network in
    /// clear, so no request is sent.
    #[error("refusing plain HTTP to {0}: use https:// (plain HTTP is allowed to loopback only)")]
    InsecureEndpoint(String),
    /// The HTTP stack could not be set up.
    #[error("failed to set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// STS or the metadata service did not answer: connection, TLS or timeout.
    #[error("{action} failed to reach {endpoint}")]
    Transport {
        action: &'static str,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// STS answered with an error body.
    #[error(
        "{} failed with {} (HTTP {}): {} (request id {})",
        .0.action, .0.code, .0.status, .0.message, .0.request_id
    )]
    Sts(Box<StsError>),
    /// The answer was not the documented shape; `detail` gives the position, never the text.
    #[error("{action} returned a body that is not the documented shape (HTTP {status}): {detail}")]
    Decode { action: &'static str, status: u16, detail: String },
    /// The instance metadata service refused the request.
    #[error("{action} was refused by the instance metadata service: {detail}")]
    Metadata { action: &'static str, detail: String },
    /// Every source of a chain was tried and none yielded.
    #[error("no credentials found: {}", render_attempts(.0))]
    NoneFound(Vec<Attempt>),
}

/// An error answer from STS, with its message scrubbed of anything secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsError {
    pub action: &'static str,
    pub code: String,
    pub message: String,
    pub status: u16,
    pub request_id: String,
}

/// One source a chain tried, and why it gave nothing.
#[derive(Debug)]
pub struct Attempt {
    /// The source's [`super::CredentialsProvider::name`].
    pub source: String,
    pub error: CredentialsError,
}

impl CredentialsError {
    /// Whether asking again later can succeed without a configuration change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Metadata { .. } | Self::ReadFile { .. } => true,
            Self::Sts(sts) => {
                sts.status >= 500 || sts.status == 429 || sts.code.starts_with("Throttling")
            }
            Self::Decode { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The STS error code, when STS gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Sts(sts) => Some(&sts.code),
            _ => None,
        }
    }

    /// A decoding failure that keeps only what serde_json says about where and what kind:
    /// its own message may quote the offending value, which can be a secret.
    pub(crate) fn decode(action: &'static str, status: u16, error: &serde_json::Error) -> Self {
        let detail = format!(
            "{:?} error at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        );
        Self::Decode { action, status, detail: detail.to_lowercase() }
    }

    /// A transport failure, with the URL (query string, signature included) dropped.
    pub(crate) fn transport(action: &'static str, endpoint: &str, error: reqwest::Error) -> Self {
        Self::Transport { action, endpoint: endpoint.to_owned(), source: error.without_url() }
    }
}

fn render_attempts(attempts: &[Attempt]) -> String {
    attempts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// `source: error: cause: ...`, one attempt as the chain's error lists it.
impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, crate::error_chain(&self.error))
    }
}

/// Makes server text safe to keep: drops an echoed string-to-sign (it holds the request's
/// parameters, the security token among them), replaces any known secret, and caps the length.
pub(crate) fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let lower = text.to_ascii_lowercase();
    let cut = lower.find("string to sign").unwrap_or(text.len());
    let mut out = text[..cut].trim_end().to_owned();
    for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
        for form in [secret.to_owned(), crate::kms::sign::percent_encode(secret)] {
            out = out.replace(&form, "<redacted>");
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_cuts_string_to_sign_and_secrets() {
        let cases = [
            (
                "Specified signature is not matched with our calculation. server string to \
                 sign is:POST&%2F&SecurityToken%3Dtok",
                "Specified signature is not matched with our calculation. server",
                "echoed string-to-sign dropped",
            ),
            ("token tok-1234 is expired", "token <redacted> is expired", "raw secret replaced"),
            ("bad tok%2B5678 value", "bad <redacted> value", "encoded secret replaced"),
            ("abc", "abc", "short secrets are not searched for"),
        ];
        for (input, want, reason) in cases {
            assert_eq!(scrub(input, ["tok-1234", "tok+5678", "ab"]), want, "{reason}");
        }
        let long = "x".repeat(1000);
        assert_eq!(scrub(&long, []).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn decode_keeps_position_not_value() {
        let err = serde_json::from_str::<u32>("\"sup3rs3cret\"").unwrap_err();
        let mapped = CredentialsError::decode("AssumeRole", 200, &err);
        let text = mapped.to_string();
        assert!(!text.contains("sup3rs3cret"), "{text}");
        assert!(text.contains("line 1"), "{text}");
    }

    #[test]
    fn transient_classes() {
        let sts = |code: &str, status| {
            CredentialsError::Sts(Box::new(StsError {
                action: "AssumeRole",
                code: code.into(),
                message: String::new(),
                status,
                request_id: "r".into(),
            }))
        };
        let cases = [
            (sts("InternalError", 500), true, "5xx"),
            (sts("Throttling.User", 400), true, "throttled"),
            (sts("NoPermission", 403), false, "permission"),
            (CredentialsError::EnvNotSet("X"), false, "configuration"),
            (CredentialsError::NotFound("/x".into()), false, "missing file"),
        ];
        for (error, want, reason) in cases {
            assert_eq!(error.is_transient(), want, "{reason}");
        }
        assert_eq!(sts("NoPermission", 403).code(), Some("NoPermission"));
    }
}
