//! `kms-emulator`: serves a local Alibaba Cloud KMS over plain HTTP (see
//! [`kms_alias_operator::emulator`]).
//!
//! Prints exactly one line to stdout, `kms-emulator listening on http://ADDR`, once the port is
//! bound; everything else goes to stderr through `tracing` (`RUST_LOG`, default `info`). Stops
//! cleanly on SIGINT or SIGTERM.

use clap::Parser;
use kms_alias_operator::emulator::{self, Emulator, EmulatorConfig};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Command line. Not `Debug`: it holds AccessKey secrets.
#[derive(Parser)]
#[command(name = "kms-emulator", version, about = "Local Alibaba Cloud KMS emulator")]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Region used when a request carries no RegionId.
    #[arg(long, env = "KMS_EMULATOR_REGION", default_value = "cn-hangzhou")]
    region: String,
    /// Account uid that appears in ARNs.
    #[arg(long, default_value = "1234567890123456")]
    account_uid: String,
    /// An AccessKey pair accepted by the emulator; repeatable. Default `testid:testsecret`.
    #[arg(long = "access-key", value_name = "ID:SECRET", value_parser = parse_access_key)]
    access_keys: Vec<AccessKey>,
    /// Id of an Enabled key that exists from the start; repeatable.
    #[arg(long = "seed-key", value_name = "KEYID")]
    seed_keys: Vec<String>,
    /// File to write the bound port to (atomically) once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

/// One `--access-key ID:SECRET`.
#[derive(Clone)]
struct AccessKey {
    id: String,
    secret: String,
}

fn parse_access_key(text: &str) -> Result<AccessKey, String> {
    match text.split_once(':') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok(AccessKey { id: id.to_owned(), secret: secret.to_owned() })
        }
        _ => Err("expected ID:SECRET with both parts non-empty".to_owned()),
    }
}

impl Cli {
    fn config(&self) -> EmulatorConfig {
        let defaults = EmulatorConfig::default();
        let access_keys = if self.access_keys.is_empty() {
            defaults.access_keys
        } else {
            self.access_keys.iter().map(|k| (k.id.clone(), k.secret.clone())).collect()
        };
        EmulatorConfig {
            region: self.region.clone(),
            account_uid: self.account_uid.clone(),
            access_keys,
            seed_keys: self.seed_keys.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "kms-emulator failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = cli.config();
    let emulator = Emulator::new(config.clone())?;
    let listener = TcpListener::bind(&cli.listen).await?;
    let addr = listener.local_addr()?;
    if let Some(path) = &cli.port_file {
        write_port_file(path, addr.port())?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "kms-emulator listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    let access_key_ids: Vec<&str> = config.access_keys.iter().map(|(id, _)| id.as_str()).collect();
    tracing::info!(
        %addr, region = %config.region, account_uid = %config.account_uid,
        access_key_ids = ?access_key_ids, seed_keys = ?config.seed_keys,
        "kms emulator serving"
    );
    emulator::serve_with_shutdown(listener, emulator, shutdown_signal()).await?;
    tracing::info!("kms emulator stopped");
    Ok(())
}

/// Writes the port to a temporary file beside `path`, then renames it into place, so a reader
/// never sees a partial file.
fn write_port_file(path: &Path, port: u16) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, port.to_string())?;
    std::fs::rename(&temp, path)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
