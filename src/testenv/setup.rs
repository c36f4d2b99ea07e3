//! Where things go: the binary and working directories, free ports and each server's flags.

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::Error;

/// Free loopback ports, all reserved at once so that they differ.
pub(super) struct Ports {
    pub(super) etcd_client: u16,
    pub(super) etcd_peer: u16,
    pub(super) apiserver: u16,
    pub(super) controller_manager: u16,
}

impl Ports {
    /// Binds port 0 four times and releases the ports for the servers to take.
    pub(super) fn pick() -> Result<Self, Error> {
        let mut held = Vec::new();
        let mut next = || -> std::io::Result<u16> {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            let port = listener.local_addr()?.port();
            held.push(listener);
            Ok(port)
        };
        Ok(Self {
            etcd_client: next().map_err(Error::PickPort)?,
            etcd_peer: next().map_err(Error::PickPort)?,
            apiserver: next().map_err(Error::PickPort)?,
            controller_manager: next().map_err(Error::PickPort)?,
        })
    }
}

/// The explicit directory if given, else the non-empty environment value.
pub(super) fn resolve_bin_dir(
    explicit: Option<PathBuf>,
    env: Option<OsString>,
) -> Result<PathBuf, Error> {
    let from_env = env.filter(|value| !value.is_empty()).map(PathBuf::from);
    explicit.or(from_env).ok_or(Error::MissingBinDir)
}

/// Creates the working directory: the given one (made absolute, stale etcd data removed) or a
/// temporary one, returned with its guard.
pub(super) fn prepare_dir(dir: Option<PathBuf>) -> Result<(Option<TempDir>, PathBuf), Error> {
    let Some(dir) = dir else {
        let temp = tempfile::Builder::new().prefix("kms-testenv-").tempdir();
        let temp =
            temp.map_err(|source| Error::CreateDir { path: std::env::temp_dir(), source })?;
        let path = temp.path().to_path_buf();
        return Ok((Some(temp), path));
    };
    let create_err = |source| Error::CreateDir { path: dir.clone(), source };
    std::fs::create_dir_all(&dir).map_err(create_err)?;
    let dir = std::fs::canonicalize(&dir).map_err(create_err)?;
    let etcd_data = dir.join("etcd-data");
    match std::fs::remove_dir_all(&etcd_data) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::CreateDir { path: etcd_data, source })
        }
        _ => Ok((None, dir)),
    }
}

/// Writes `contents` to `path`, naming the path on failure.
pub(super) fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::WriteFile { path: path.into(), source })
}

/// A single-member etcd with its data under `dir/etcd-data`.
pub(super) fn etcd_args(dir: &Path, ports: &Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        format!("--data-dir={}", dir.join("etcd-data").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--unsafe-no-fsync".to_owned(),
    ]
}

/// kube-apiserver with the files written by `Pki::write`, then `extra`.
pub(super) fn apiserver_args(dir: &Path, ports: &Ports, extra: Vec<String>) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        // These machines have no default route; without an address start-up can fail.
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={}", ports.apiserver),
        format!("--tls-cert-file={}", file("apiserver.crt")),
        format!("--tls-private-key-file={}", file("apiserver.key")),
        format!("--client-ca-file={}", file("ca.crt")),
        "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
        format!("--service-account-key-file={}", file("service-account.pub")),
        format!("--service-account-signing-key-file={}", file("service-account.key")),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        "--authorization-mode=RBAC".to_owned(),
        "--disable-admission-plugins=ServiceAccount".to_owned(),
    ];
    args.extend(extra);
    args
}

/// kube-controller-manager with only the namespace and garbage-collector controllers, serving
/// `/healthz` on `port` with the API server's certificate.
pub(super) fn controller_manager_args(dir: &Path, kubeconfig: &Path, port: u16) -> Vec<String> {
    let kubeconfig = kubeconfig.display();
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--controllers=namespace,garbagecollector".to_owned(),
        "--use-service-account-credentials=false".to_owned(),
        "--leader-elect=false".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", dir.join("apiserver.crt").display()),
        format!("--tls-private-key-file={}", dir.join("apiserver.key").display()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_dir_prefers_explicit_then_env() {
        let explicit = Some(PathBuf::from("/a"));
        let env = Some(OsString::from("/b"));
        assert_eq!(resolve_bin_dir(explicit, env.clone()).expect("explicit"), Path::new("/a"));
        assert_eq!(resolve_bin_dir(None, env).expect("env"), Path::new("/b"));
    }

    #[test]
    fn missing_bin_dir_names_the_variable_and_the_script() {
        for env in [None, Some(OsString::new())] {
            let message = resolve_bin_dir(None, env).expect_err("no bin dir").to_string();
            assert!(message.contains(super::super::BIN_DIR_ENV), "{message}");
            assert!(message.contains("hack/build-control-plane.sh"), "{message}");
        }
    }

    #[test]
    fn ports_differ() {
        let ports = Ports::pick().expect("ports");
        let mut all =
            [ports.etcd_client, ports.etcd_peer, ports.apiserver, ports.controller_manager];
        all.sort_unstable();
        assert!(all.windows(2).all(|pair| pair[0] != pair[1]), "{all:?}");
    }

    #[test]
    fn given_dir_loses_stale_etcd_data_only() {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("etcd-data/member")).expect("stale data");
        std::fs::write(root.path().join("keep.log"), "x").expect("other file");

        let (guard, dir) = prepare_dir(Some(root.path().to_path_buf())).expect("prepared");
        assert!(guard.is_none() && dir.is_absolute());
        assert!(!dir.join("etcd-data").exists() && dir.join("keep.log").exists());
    }
}
