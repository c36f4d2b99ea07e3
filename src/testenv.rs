//! A real local Kubernetes control plane for tests and the demo: etcd, kube-apiserver and,
//! optionally, kube-controller-manager running only the namespace and garbage-collector
//! controllers. No kubelet runs, so Pods never start.
//!
//! The binaries come from `hack/build-control-plane.sh`; point [`BIN_DIR_ENV`] at the directory
//! it prints. [`ControlPlaneBuilder::start`] makes a working directory, picks free loopback
//! ports, issues certificates from a throw-away CA, starts the servers, waits until they are
//! ready and writes an admin kubeconfig. Each server logs to `<dir>/<name>.log`.
//!
//! Every server runs under a small `bash` watchdog that holds the read end of a pipe whose write
//! end only this process has: when this process ends for any reason, including a panic or a
//! SIGKILL that skips destructors, the pipe closes and the watchdog kills its server.
//! Dropping a [`ControlPlane`] kills the servers at once and removes its temporary directory.
//!
//! Creating CRDs, namespaces and the operator itself is left to the tests.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

use process::{Server, ServerSpec, etcd_healthy, http_ok};
use setup::Ports;

mod pki;
mod process;
mod setup;

/// Environment variable naming the directory with `etcd`, `kube-apiserver`,
/// `kube-controller-manager` and `kubectl`, as printed by `hack/build-control-plane.sh`.
pub const BIN_DIR_ENV: &str = "KMS_TESTENV_BIN_DIR";

const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What can go wrong while starting or stopping the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither [`ControlPlaneBuilder::bin_dir`] nor [`BIN_DIR_ENV`] names the binaries.
    #[error(
        "failed to locate the control-plane binaries: set KMS_TESTENV_BIN_DIR to the directory \
         printed by hack/build-control-plane.sh"
    )]
    MissingBinDir,
    /// A binary is missing from the binary directory.
    #[error(
        "failed to find {}: run hack/build-control-plane.sh and set KMS_TESTENV_BIN_DIR to the \
         directory it prints",
        path.display()
    )]
    MissingBinary {
        /// The expected location.
        path: PathBuf,
    },
    /// The working directory could not be created.
    #[error("failed to create the working directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate, key, kubeconfig or log file could not be written.
    #[error("failed to write {}", path.display())]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No free loopback port could be reserved.
    #[error("failed to pick a free loopback port")]
    PickPort(#[source] std::io::Error),
    /// rcgen refused to issue a certificate or key.
    #[error("failed to issue the control-plane certificates")]
    IssueCertificates(#[source] rcgen::Error),
    /// The HTTP client for readiness probes could not be built from our certificates.
    #[error("failed to build the readiness probe client")]
    BuildProbeClient(#[source] reqwest::Error),
    /// The watchdog process could not be started.
    #[error("failed to spawn {name}")]
    Spawn {
        /// The server.
        name: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A server exited before it became ready.
    #[error("failed to start {name}: it exited with {status}; last log lines:\n{log_tail}")]
    Exited {
        /// The server.
        name: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log file.
        log_tail: String,
    },
    /// A server did not become ready in time.
    #[error("failed to start {name} within {timeout:?}; last log lines:\n{log_tail}")]
    NotReady {
        /// The server.
        name: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The end of its log file.
        log_tail: String,
    },
    /// Waiting for a server to exit failed.
    #[error("failed to stop {name}")]
    Stop {
        /// The server.
        name: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The written kubeconfig could not be loaded.
    #[error("failed to load the kubeconfig")]
    LoadKubeconfig(#[source] kube::config::KubeconfigError),
    /// kube refused to build a client from the kubeconfig.
    #[error("failed to create a kube client")]
    CreateClient(#[source] kube::Error),
}

/// Options for a [`ControlPlane`]; [`ControlPlaneBuilder::start`] brings it up.
#[derive(Debug, Clone)]
pub struct ControlPlaneBuilder {
    dir: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    controller_manager: bool,
    apiserver_args: Vec<String>,
    ready_timeout: Duration,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        Self {
            dir: None,
            bin_dir: None,
            controller_manager: false,
            apiserver_args: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

impl ControlPlaneBuilder {
    /// Defaults: a temporary directory, binaries from [`BIN_DIR_ENV`], no controller manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps all files in `dir` (created if missing, kept afterwards) instead of a temporary
    /// directory. An etcd data directory left there by an earlier run is wiped.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Takes the binaries from `dir` instead of [`BIN_DIR_ENV`].
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Also runs kube-controller-manager with the namespace and garbage-collector controllers,
    /// which namespace deletion and owner-reference cleanup need.
    pub fn controller_manager(mut self, enabled: bool) -> Self {
        self.controller_manager = enabled;
        self
    }

    /// Appends a flag such as `--feature-gates=...` to the kube-apiserver command line.
    pub fn apiserver_arg(mut self, arg: impl Into<String>) -> Self {
        self.apiserver_args.push(arg.into());
        self
    }

    /// How long each server may take to become ready (default 90 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts etcd, kube-apiserver and, if asked, kube-controller-manager, and waits until
    /// each is ready. On error, whatever was started is stopped again.
    pub async fn start(self) -> Result<ControlPlane, Error> {
        let bin_dir = setup::resolve_bin_dir(self.bin_dir, std::env::var_os(BIN_DIR_ENV))?;
        let (temp, dir) = setup::prepare_dir(self.dir)?;
        let ports = Ports::pick()?;
        let pki = pki::Pki::issue().map_err(Error::IssueCertificates)?;
        pki.write(&dir)?;
        let apiserver_url = format!("https://127.0.0.1:{}", ports.apiserver);
        let kubeconfig = dir.join("kubeconfig");
        setup::write_file(&kubeconfig, &pki.kubeconfig(&apiserver_url))?;
        let probe = pki.probe_client().map_err(Error::BuildProbeClient)?;

        let etcd_spec = ServerSpec::new(&bin_dir, "etcd", &dir, setup::etcd_args(&dir, &ports))?;
        let args = setup::apiserver_args(&dir, &ports, self.apiserver_args);
        let apiserver_spec = ServerSpec::new(&bin_dir, "kube-apiserver", &dir, args)?;

        let mut etcd = Server::spawn(&etcd_spec)?;
        let health = format!("http://127.0.0.1:{}/health", ports.etcd_client);
        etcd.wait_ready(self.ready_timeout, async || etcd_healthy(&probe, &health).await).await?;
        let mut plane = ControlPlane {
            controller_manager: None,
            apiserver: None,
            etcd,
            apiserver_spec,
            probe,
            apiserver_url,
            ready_timeout: self.ready_timeout,
            bin_dir,
            kubeconfig,
            dir,
            _temp: temp,
        };
        plane.start_apiserver().await?;
        if self.controller_manager {
            plane.start_controller_manager(ports.controller_manager).await?;
        }
        Ok(plane)
    }
}

/// A running etcd + kube-apiserver (+ kube-controller-manager) on loopback ports, reachable as
/// cluster admin (`CN=admin`, `O=system:masters`) through [`ControlPlane::kubeconfig`].
#[derive(Debug)]
pub struct ControlPlane {
    controller_manager: Option<Server>,
    apiserver: Option<Server>,
    etcd: Server,
    apiserver_spec: ServerSpec,
    probe: reqwest::Client,
    apiserver_url: String,
    ready_timeout: Duration,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
    /// Last field, so the directory goes only after the servers are dead (see `Drop`).
    _temp: Option<TempDir>,
}

impl ControlPlane {
    /// A builder with the defaults of [`ControlPlaneBuilder::new`].
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::new()
    }

    /// Starts a control plane with the default options.
    pub async fn start() -> Result<Self, Error> {
        ControlPlaneBuilder::new().start().await
    }

    /// The directory with certificates, logs, etcd data and the kubeconfig.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory the binaries come from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The admin kubeconfig, with the CA, client certificate and key embedded.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL, `https://127.0.0.1:<port>`; the port survives restarts.
    pub fn server_url(&self) -> &str {
        &self.apiserver_url
    }

    /// A cluster-admin client built from [`ControlPlane::kubeconfig`].
    pub async fn client(&self) -> Result<kube::Client, Error> {
        let file =
            kube::config::Kubeconfig::read_from(&self.kubeconfig).map_err(Error::LoadKubeconfig)?;
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(Error::LoadKubeconfig)?;
        kube::Client::try_from(config).map_err(Error::CreateClient)
    }

    /// A `kubectl` command from the binary directory with `--kubeconfig` already set.
    pub fn kubectl(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin_dir.join("kubectl"));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Stops the API server (SIGTERM, SIGKILL after 30 s); a no-op if it is not running.
    pub async fn stop_apiserver(&mut self) -> Result<(), Error> {
        match self.apiserver.take() {
            Some(mut server) => server.stop(STOP_GRACE).await,
            None => Ok(()),
        }
    }

    /// Starts the API server on its old port with its old flags and waits until `/readyz`
    /// answers 200; a no-op if it is running.
    pub async fn start_apiserver(&mut self) -> Result<(), Error> {
        if self.apiserver.is_some() {
            return Ok(());
        }
        let mut server = Server::spawn(&self.apiserver_spec)?;
        let readyz = format!("{}/readyz", self.apiserver_url);
        server.wait_ready(self.ready_timeout, async || http_ok(&self.probe, &readyz).await).await?;
        self.apiserver = Some(server);
        Ok(())
    }

    /// Stops the API server and starts it again; etcd keeps all objects.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        self.stop_apiserver().await?;
        self.start_apiserver().await
    }

    /// Stops all servers gracefully, newest first. Dropping the value kills them instead.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(mut server) = self.controller_manager.take() {
            server.stop(STOP_GRACE).await?;
        }
        self.stop_apiserver().await?;
        self.etcd.stop(STOP_GRACE).await
    }

    async fn start_controller_manager(&mut self, port: u16) -> Result<(), Error> {
        let args = setup::controller_manager_args(&self.dir, &self.kubeconfig, port);
        let spec = ServerSpec::new(&self.bin_dir, "kube-controller-manager", &self.dir, args)?;
        let mut server = Server::spawn(&spec)?;
        let healthz = format!("https://127.0.0.1:{port}/healthz");
        server
            .wait_ready(self.ready_timeout, async || http_ok(&self.probe, &healthz).await)
            .await?;
        self.controller_manager = Some(server);
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Kill before the fields drop: the temporary directory must outlive its writers.
        let running = [self.controller_manager.as_mut(), self.apiserver.as_mut()];
        running.into_iter().flatten().for_each(Server::kill);
        self.etcd.kill();
    }
}

/// Any long-running program under the same watchdog as the control-plane servers: it dies
/// with the process that started it, even on a panic or SIGKILL. Tests use it for the
/// emulator and the operator.
#[derive(Debug)]
pub struct Supervised {
    server: Server,
}

impl Supervised {
    /// Starts `program` with `args` and extra `env`, appending its output to `log`.
    pub fn spawn(
        name: &'static str,
        program: impl Into<PathBuf>,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: impl Into<PathBuf>,
    ) -> Result<Self, Error> {
        let spec = ServerSpec::program(name, program.into(), args, env, log.into());
        Ok(Self { server: Server::spawn(&spec)? })
    }

    /// The exit status, if the program has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.server.exited()
    }

    /// Stops the program with SIGTERM, killing it after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<(), Error> {
        self.server.stop(grace).await
    }

    /// Kills the program at once (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        self.server.kill();
    }
}

/// Polls `probe` every 200 ms until it yields a value, or gives `None` once `timeout` passed.
/// Tests wait on outcomes with this instead of sleeping.
pub async fn poll<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A binary of this crate, for integration tests: cargo builds them in the directory above
/// the test executable's `deps/`.
pub fn crate_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join(name))
}
