//! The `kms-emulator` binary: a YAML config plus flags, an STS-style `--access-key` with a
//! token, start-up faults and quotas; and no secret in its log output.

use super::wire::{KMS, Signer, call_url, code};
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

const CONFIG: &str = r#"
accounts:
  - uid: 2222222222222222
    accessKeys:
      - {id: other, secret: other-secret-value}
quotas: {qpsCreateKey: 3}
"#;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_takes_config_flags_and_keeps_secrets_out_of_its_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("emulator.yaml");
    std::fs::write(&config, CONFIG).expect("write config");
    let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_kms-emulator"))
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .args(["--access-key", "STS.python:py-secret-value:py-token-value"])
            .args(["--account", "3333333333333333=third:third-secret-value"])
            .args(["--qps-write", "7", "--seed", "1"])
            .args(["--fault", r#"{"action":"DeleteAlias","code":"InternalFailure","rate":0.5}"#])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn kms-emulator"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("listening line");
    let url = line.trim().strip_prefix("kms-emulator listening on ").expect(&line).to_owned();

    let sts = Signer::new("STS.python", "py-secret-value").with_token("py-token-value");
    assert_eq!(code(&call_url(&url, &sts, KMS, "CreateKey", &[]).await), (200, "OK"));
    let no_token = Signer { token: None, ..sts.clone() };
    assert_eq!(
        code(&call_url(&url, &no_token, KMS, "ListKeys", &[]).await),
        (400, "MissingSecurityToken")
    );
    let other = Signer::new("other", "other-secret-value");
    assert_eq!(code(&call_url(&url, &other, KMS, "ListKeys", &[]).await), (200, "OK"));
    let third = Signer::new("third", "wrong");
    assert_eq!(
        code(&call_url(&url, &third, KMS, "ListKeys", &[]).await),
        (400, "SignatureDoesNotMatch")
    );

    let quotas: Value =
        reqwest::get(format!("{url}/_emulator/quotas")).await.unwrap().json().await.unwrap();
    assert_eq!((quotas["qpsWrite"].as_u64(), quotas["qpsCreateKey"].as_u64()), (Some(7), Some(3)));
    let faults: Value =
        reqwest::get(format!("{url}/_emulator/faults")).await.unwrap().json().await.unwrap();
    assert_eq!(faults[0]["rate"], 0.5);
    let state: Value =
        reqwest::get(format!("{url}/_emulator/state")).await.unwrap().json().await.unwrap();
    for uid in ["1234567890123456", "2222222222222222", "3333333333333333"] {
        assert!(state["accounts"][uid].is_object(), "{uid} in {state}");
    }

    drop(child);
    let text = std::fs::read_to_string(dir.path().join("stderr.log")).expect("log");
    assert!(text.contains("api call"), "the log has the calls: {text}");
    for secret in ["py-secret-value", "py-token-value", "other-secret-value", "third-secret-value"]
    {
        assert!(!text.contains(secret), "{secret} leaked into the log");
    }
    let signature_noise = ["server string to sign", "Signature="];
    for noise in signature_noise {
        assert!(!text.contains(noise), "{noise} in the log");
    }
}
