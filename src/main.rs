//! `kms-alias-operator`: runs the controller (`run`) or prints the CRD (`crd`).

use clap::{Parser, Subcommand};
use kms_alias_operator::config_guard;
use kms_alias_operator::controller::{self, Context, Settings};
use kms_alias_operator::crd::{self, DeletionPolicy};
use kms_alias_operator::kms::credentials::{CredentialsProvider, DefaultChain};
use kms_alias_operator::kms::{self, ClientConfig};
use kms_alias_operator::metrics::{self, Metrics};
use kms_alias_operator::providers::{Builtin, KmsProviderConfig, Providers};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
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
    /// Print the CustomResourceDefinitions as YAML, or write one file each into a directory.
    Crd {
        /// Write `<crd name>.yaml` files here instead of printing.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Region of the built-in `default` provider (used when no KmsProviderConfig named
    /// `default` exists), for example cn-hangzhou.
    #[arg(long, env = "ALIBABA_CLOUD_REGION_ID")]
    region: Option<String>,
    /// KMS endpoint URL of the built-in provider; default https://kms.<region>.aliyuncs.com.
    #[arg(long, env = "KMS_ENDPOINT")]
    kms_endpoint: Option<String>,
    /// Allow a plain http:// --kms-endpoint (the local emulator). Never for real KMS.
    #[arg(long)]
    allow_insecure_http: bool,
    /// Timeout of one KMS call, in seconds (1 to 300).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    kms_timeout_secs: u64,
    /// Seconds between drift checks of an object that did not change (10 to 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    resync_secs: u64,
    /// What deleting a KmsAlias does to its alias when the object sets no deletionPolicy:
    /// Delete or Retain (any case).
    #[arg(long, value_enum, ignore_case = true, default_value_t = DeletionPolicyArg::Delete)]
    default_deletion_policy: DeletionPolicyArg,
    /// Longest wait, in seconds, before retrying an object after a transient failure
    /// (throttling, 5xx, network); retries double from 2 s up to this, ±25 % jitter (2 to
    /// 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(2..=86_400))]
    retry_cap_secs: u64,
    /// Seconds the KmsAlias watch may keep failing before /healthz answers 503, so the
    /// kubelet restarts an operator that can no longer see its objects (1 to 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    watch_failure_grace_secs: u64,
    /// Objects reconciled at once.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "LOG_JSON")]
    log_json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DeletionPolicyArg {
    Delete,
    Retain,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd { dir } => match write_crds(dir.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("failed to write the CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            init_tracing(args.log_json);
            match run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    let error = kms_alias_operator::error_chain(&*error);
                    tracing::error!(%error, "operator failed to start");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn write_crds(dir: Option<&std::path::Path>) -> Result<(), Box<dyn std::error::Error>> {
    match dir {
        None => print!("{}", crd::crd_yaml()?),
        Some(dir) => {
            for (file, yaml) in crd::crds()? {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let identity = operator_identity().await?;
    let client = kube::Client::try_default().await?;
    let timeout = Duration::from_secs(args.kms_timeout_secs);
    let builtin = args.region.clone().map(|region| Builtin {
        config: ClientConfig {
            region,
            endpoint: args.kms_endpoint.clone(),
            timeout,
            allow_http: args.allow_insecure_http,
        },
    });
    if let Some(builtin) = &builtin {
        // Fail at start-up, not at the first reconcile, on an endpoint that will never work.
        kms::Client::with_provider(&builtin.config, identity.clone())?;
    }
    let metrics = Arc::new(Metrics::new(Duration::from_secs(args.watch_failure_grace_secs)));

    let configs: Api<KmsProviderConfig> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    // Unbounded: nothing reads the changes until the controller runs, which is after the
    // initial list of configs, and that list sends one name per config.
    let (changed, changes) = futures::channel::mpsc::unbounded();
    tokio::spawn(watch_configs(configs, writer, changed));
    reader.wait_until_ready().await?;

    let providers =
        Providers::new(client.clone(), reader, builtin, identity, metrics.clone(), timeout);
    let settings = Settings {
        resync: Duration::from_secs(args.resync_secs),
        transient_backoff_cap: Duration::from_secs(args.retry_cap_secs),
        concurrency: args.concurrency,
        default_deletion_policy: match args.default_deletion_policy {
            DeletionPolicyArg::Delete => DeletionPolicy::Delete,
            DeletionPolicyArg::Retain => DeletionPolicy::Retain,
        },
        ..Settings::default()
    };
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| format!("failed to listen on {} (--http-addr): {e}", args.http_addr))?;
    tracing::info!(
        region = args.region.as_deref().unwrap_or("<none>"), http = %listener.local_addr()?,
        "starting kms-alias-operator"
    );
    let http = axum::serve(listener, metrics::router(metrics.clone()));
    let ctx = Arc::new(Context::new(client, providers, settings, metrics));
    let (gone, gone_configs) = futures::channel::mpsc::unbounded();
    tokio::spawn(config_guard::run(ctx.clone(), gone_configs));
    tokio::select! {
        () = controller::run(ctx, changes, gone) => {}
        result = http => result?,
    }
    tracing::info!("kms-alias-operator stopped");
    Ok(())
}

/// The operator's own identity from the default chain; start-up fails naming every source.
async fn operator_identity() -> Result<Arc<dyn CredentialsProvider>, Box<dyn std::error::Error>> {
    let chain = DefaultChain::from_env();
    chain.credentials().await?;
    Ok(Arc::new(chain))
}

/// Keeps the KmsProviderConfig cache current and sends the name of each config whose spec
/// changed, or that went away (its objects fall back to another provider, or to none).
async fn watch_configs(
    api: Api<KmsProviderConfig>,
    writer: reflector::store::Writer<KmsProviderConfig>,
    changed: futures::channel::mpsc::UnboundedSender<String>,
) {
    use futures::StreamExt;
    use std::collections::HashMap;
    let stream = watcher(api, watcher::Config::default())
        .backoff(controller::WatchBackoff::default())
        .reflect(writer);
    futures::pin_mut!(stream);
    // The generation each config was last seen at: finalizer and status edits change nothing.
    let mut seen: HashMap<String, Option<i64>> = HashMap::new();
    while let Some(event) = stream.next().await {
        let name = match event {
            Ok(watcher::Event::Apply(config) | watcher::Event::InitApply(config)) => {
                let generation = config.metadata.generation;
                let name = config.name_any();
                if seen.insert(name.clone(), generation) == Some(generation) {
                    continue;
                }
                name
            }
            Ok(watcher::Event::Delete(config)) => {
                let name = config.name_any();
                seen.remove(&name);
                name
            }
            _ => continue,
        };
        if changed.unbounded_send(name).is_err() {
            return;
        }
    }
}
