//! `kms-emulator`: serves a local Alibaba Cloud KMS and STS over plain HTTP (see
//! [`kms_alias_operator::emulator`]).
//!
//! Prints exactly one line to stdout, `kms-emulator listening on http://ADDR`, once the port is
//! bound; everything else goes to stderr through `tracing` (`RUST_LOG`, default `info`). Stops
//! cleanly on SIGINT or SIGTERM, writing the state file one last time.
//!
//! Flags describe the default account and are layered over `--config` (JSON or YAML in the
//! format of [`EmulatorConfig`]): scalar flags replace the file's values, repeatable flags add
//! to its lists.

use clap::Parser;
use kms_alias_operator::emulator::config::{AccessKeySpec, AccountSpec};
use kms_alias_operator::emulator::faults::Fault;
use kms_alias_operator::emulator::{self, Emulator, EmulatorConfig};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Command line. Not `Debug`: it holds AccessKey secrets.
#[derive(Parser)]
#[command(name = "kms-emulator", version, about = "Local Alibaba Cloud KMS and STS emulator")]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Configuration file (JSON or YAML): accounts, roles, OIDC providers, quotas, faults.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Region used when a request names none [default: cn-hangzhou].
    #[arg(long, env = "KMS_EMULATOR_REGION")]
    region: Option<String>,
    /// Uid of the default account, which appears in ARNs [default: 1234567890123456].
    #[arg(long)]
    account_uid: Option<String>,
    /// An AccessKey of the default account; repeatable. A third field makes it an STS-style
    /// key whose calls must carry that SecurityToken. Default `testid:testsecret` when no
    /// AccessKey is configured anywhere.
    #[arg(long = "access-key", value_name = "ID:SECRET[:TOKEN]", value_parser = AccessKeySpec::parse)]
    access_keys: Vec<AccessKeySpec>,
    /// An AccessKey of another account (created if new); repeatable.
    #[arg(long = "account", value_name = "UID=ID:SECRET[:TOKEN]", value_parser = AccountSpec::parse)]
    accounts: Vec<AccountSpec>,
    /// Id of an Enabled key of the default account that exists from the start; repeatable.
    #[arg(long = "seed-key", value_name = "KEYID")]
    seed_keys: Vec<String>,
    /// Read calls per account and region per second; 0 is unlimited [default: 50].
    #[arg(long, value_name = "N")]
    qps_read: Option<u32>,
    /// Write calls per account and region per second; 0 is unlimited [default: 30].
    #[arg(long, value_name = "N")]
    qps_write: Option<u32>,
    /// CreateKey calls per account and region per second; 0 is unlimited [default: 10].
    #[arg(long, value_name = "N")]
    qps_create_key: Option<u32>,
    /// Aliases per account and region; 0 is unlimited [default: 300].
    #[arg(long, value_name = "N")]
    alias_quota: Option<u32>,
    /// A fault armed from the start, as the JSON `/_emulator/faults` takes; repeatable.
    #[arg(long = "fault", value_name = "JSON", value_parser = parse_fault)]
    faults: Vec<Fault>,
    /// Seed of the random numbers behind fault rates.
    #[arg(long)]
    seed: Option<u64>,
    /// File to load keys and aliases from at start and to save them to after each change.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// File to write the bound port to (atomically) once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

fn parse_fault(text: &str) -> Result<Fault, String> {
    let fault: Fault = serde_json::from_str(text).map_err(|e| e.to_string())?;
    fault.validate()?;
    Ok(fault)
}

impl Cli {
    /// The file's configuration (or the default) with the flags laid over it.
    fn config(&self) -> Result<EmulatorConfig, emulator::ConfigError> {
        let mut config = match &self.config {
            Some(path) => EmulatorConfig::from_file(path)?,
            None => EmulatorConfig::default(),
        };
        let replace =
            [(&mut config.region, &self.region), (&mut config.account_uid, &self.account_uid)];
        for (field, flag) in replace {
            if let Some(value) = flag {
                value.clone_into(field);
            }
        }
        config.access_keys.extend(self.access_keys.iter().cloned());
        config.accounts.extend(self.accounts.iter().cloned());
        config.seed_keys.extend(self.seed_keys.iter().cloned());
        config.faults.extend(self.faults.iter().cloned());
        let quotas = &mut config.quotas;
        let limits = [
            (&mut quotas.qps_read, self.qps_read),
            (&mut quotas.qps_write, self.qps_write),
            (&mut quotas.qps_create_key, self.qps_create_key),
            (&mut quotas.alias_quota, self.alias_quota),
        ];
        for (field, flag) in limits {
            if let Some(value) = flag {
                *field = value;
            }
        }
        config.seed = self.seed.or(config.seed);
        config.state_file = self.state_file.clone().or(config.state_file);
        Ok(config)
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
    let config = cli.config()?;
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

    // Ids only: secrets and tokens never reach a log line.
    let accounts: Vec<String> = config
        .merged_accounts()
        .iter()
        .map(|a| {
            let ids: Vec<&str> = a.access_keys.iter().map(|k| k.id.as_str()).collect();
            format!("{}:[{}]", a.uid, ids.join(","))
        })
        .collect();
    tracing::info!(
        %addr, region = %config.region, default_account = %config.account_uid,
        accounts = ?accounts, roles = config.roles.len(),
        oidc_providers = config.oidc_providers.len(), quotas = ?config.quotas,
        faults = config.faults.len(), state_file = ?config.state_file,
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
