//! Every error variant and every provider, formatted every way, shows no secret.

use super::stub::{BASE_ID, BASE_SECRET, ROLE, StubMetadata, StubSts};
use super::*;
use std::error::Error as _;
use std::path::PathBuf;

const SECRET: &str = "LEAK-secret-9f2";
const TOKEN: &str = "LEAK-token-7c1";

/// Display, alternate Debug and the whole source chain.
fn all_text(error: &CredentialsError) -> String {
    let mut text = format!("{error} {error:#?}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    text
}

fn assert_clean(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked in: {text}");
    }
}

/// A real transport error for a URL carrying the secrets, as a signed request would.
async fn transport_error() -> reqwest::Error {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/?Signature={SECRET}&SecurityToken={TOKEN}");
    reqwest::Client::new().post(url).send().await.expect_err("nothing listens")
}

#[tokio::test]
async fn no_error_variant_shows_a_secret() {
    let json_error = serde_json::from_str::<u32>(&format!("\"{SECRET}\"")).unwrap_err();
    let sts_message = format!("bad token {TOKEN}; server string to sign is:POST&%2F&{SECRET}");
    let sts = super::error::scrub(&sts_message, [SECRET, TOKEN]);
    let variants = vec![
        CredentialsError::EnvNotSet(ENV_ACCESS_KEY_ID),
        CredentialsError::MissingEnv(ENV_ACCESS_KEY_SECRET, ENV_ACCESS_KEY_ID),
        CredentialsError::NotConfigured,
        CredentialsError::Disabled("set ALIBABA_CLOUD_ECS_METADATA"),
        CredentialsError::NotFound(PathBuf::from("/etc/kms")),
        CredentialsError::ReadFile {
            path: PathBuf::from("/etc/kms"),
            source: std::io::Error::other("permission denied"),
        },
        CredentialsError::InvalidFile { path: PathBuf::from("/etc/kms"), reason: "x".into() },
        CredentialsError::HttpClient(transport_error().await.without_url()),
        CredentialsError::transport("AssumeRole", "http://sts", transport_error().await),
        CredentialsError::Sts(Box::new(StsError {
            action: "AssumeRole",
            code: "SignatureDoesNotMatch".into(),
            message: sts,
            status: 400,
            request_id: "r-1".into(),
        })),
        CredentialsError::decode("AssumeRole", 200, &json_error),
        CredentialsError::Metadata { action: "GetRoleCredentials", detail: "HTTP 404".into() },
    ];
    let attempts = variants
        .iter()
        .map(|v| Attempt {
            source: "s".into(),
            error: CredentialsError::Metadata { action: "x", detail: v.to_string() },
        })
        .collect();
    for error in variants.iter().chain([&CredentialsError::NoneFound(attempts)]) {
        assert_clean(&all_text(error), &[SECRET, TOKEN]);
    }
}

#[tokio::test]
async fn no_provider_debug_shows_a_secret() {
    let sts = StubSts::start().await;
    let metadata = StubMetadata::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("write");
    let ini = dir.path().join("credentials");
    std::fs::write(&ini, format!("[default]\naccess_key_id=id\naccess_key_secret={SECRET}\n"))
        .expect("write");

    let base: Arc<dyn CredentialsProvider> = Arc::new(Credentials::new(BASE_ID, BASE_SECRET));
    let oidc =
        OidcProvider::new("acs:ram::1:role/r", "acs:ram::1:oidc-provider/p", &token_file, &sts.url);
    let providers: Vec<Arc<dyn CredentialsProvider>> = vec![
        Arc::new(Credentials::new("id", SECRET).with_token(TOKEN)),
        Arc::new(StaticProvider::new("id", SECRET).with_token(TOKEN)),
        Arc::new(EnvProvider::with_vars(Vars::from_pairs(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, SECRET),
            (ENV_SECURITY_TOKEN, TOKEN),
        ]))),
        Arc::new(FileProvider::new(&ini)),
        Arc::new(oidc),
        Arc::new(AssumeRoleProvider::new(base, "acs:ram::1:role/x", "s", None, &sts.url)),
        Arc::new(EcsRamRoleProvider::new(Some(ROLE.into()), &metadata.url)),
        Arc::new(DefaultChain::with_vars(
            Vars::from_pairs(&[(ENV_ACCESS_KEY_ID, "id"), (ENV_ACCESS_KEY_SECRET, SECRET)]),
            &metadata.url,
        )),
    ];
    for provider in providers {
        let result = provider.credentials().await;
        let credentials = result.unwrap_or_else(|e| panic!("{}: {e}", provider.name()));
        let issued: Vec<&str> = credentials.secrets().collect();
        let text = format!("{provider:?} {provider:#?} {credentials:?}");
        assert_clean(&text, &[SECRET, TOKEN, BASE_SECRET]);
        assert_clean(&text, &issued);
    }
}
