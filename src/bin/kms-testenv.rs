//! `kms-testenv`: runs the local control plane of [`kms_alias_operator::testenv`] until
//! interrupted, for `make demo` and for poking at it by hand.
//!
//! `kms-testenv up --dir DIR` prints `kms-testenv ready kubeconfig=DIR/kubeconfig` once the API
//! server is ready, then stops everything on SIGINT or SIGTERM and exits 0.

use std::error::Error;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kms_alias_operator::testenv::ControlPlane;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Local etcd + kube-apiserver for the demo and manual tests.
///
/// The binaries come from the directory in KMS_TESTENV_BIN_DIR, which
/// `hack/build-control-plane.sh` builds and prints:
/// `KMS_TESTENV_BIN_DIR=$(hack/build-control-plane.sh) kms-testenv up --dir /tmp/kms-dev`.
/// hack/demo.sh shows the rest of a stack (emulator, CRDs, operator) step by step.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start the control plane and keep it running until SIGINT or SIGTERM.
    Up {
        /// Directory for certificates, logs, etcd data and the kubeconfig (kept afterwards).
        #[arg(long)]
        dir: PathBuf,
        /// Also run kube-controller-manager (namespace and garbage-collector controllers).
        #[arg(long)]
        with_controller_manager: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Up { dir, with_controller_manager } = Cli::parse().command;
    match up(dir, with_controller_manager).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kms-testenv: {}", kms_alias_operator::error_chain(&*error));
            ExitCode::FAILURE
        }
    }
}

async fn up(dir: PathBuf, with_controller_manager: bool) -> Result<(), Box<dyn Error>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let builder = ControlPlane::builder().dir(dir).controller_manager(with_controller_manager);
    // A signal during start-up drops the half-started control plane, which kills its servers.
    let plane = tokio::select! {
        started = builder.start() => started?,
        stopped = shutdown(&mut terminate) => return Ok(stopped?),
    };
    println!("kms-testenv ready kubeconfig={}", plane.kubeconfig().display());

    shutdown(&mut terminate).await?;
    Ok(plane.stop().await?)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown(terminate: &mut Signal) -> std::io::Result<()> {
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}
