//! `kms-alias-operator`: runs the controller (`run`) or prints the CRD (`crd`).

use clap::{Parser, Subcommand};
use kms_alias_operator::controller::{self, Context, Settings};
use kms_alias_operator::crd;
use kms_alias_operator::kms::{self, ClientConfig, Credentials};
use kms_alias_operator::metrics::{self, Metrics};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Manages Alibaba Cloud KMS aliases from KmsAlias objects")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig or service account.
    Run(RunArgs),
    /// Print the KmsAlias CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// KMS region id, for example cn-hangzhou.
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID")]
    region: String,
    /// KMS endpoint URL; default https://kms.<region>.aliyuncs.com.
    #[arg(long, env = "KMS_ENDPOINT")]
    kms_endpoint: Option<String>,
    /// Timeout of one KMS call, in seconds.
    #[arg(long, default_value_t = 10)]
    kms_timeout_secs: u64,
    /// Seconds between drift checks of an object that did not change.
    #[arg(long, default_value_t = 300)]
    resync_secs: u64,
    /// Objects reconciled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("failed to render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            init_tracing(args.log_json);
            match run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = %error, "operator failed to start");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let credentials = Credentials::from_env()?;
    let config = ClientConfig {
        region: args.region.clone(),
        endpoint: args.kms_endpoint.clone(),
        timeout: Duration::from_secs(args.kms_timeout_secs),
    };
    let kms = kms::Client::new(&config, credentials)?;
    let client = kube::Client::try_default().await?;
    let settings = Settings {
        resync: Duration::from_secs(args.resync_secs),
        concurrency: args.concurrency,
        ..Settings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.http_addr).await?;
    tracing::info!(
        region = %args.region, endpoint = %config.endpoint_url(), http = %listener.local_addr()?,
        "starting kms-alias-operator"
    );
    let http = axum::serve(listener, metrics::router(metrics.clone()));
    let ctx = Arc::new(Context::new(client, kms, settings, metrics));
    tokio::select! {
        () = controller::run(ctx) => {}
        result = http => result?,
    }
    tracing::info!("kms-alias-operator stopped");
    Ok(())
}
