//! A local Alibaba Cloud KMS (API version 2016-01-20) that speaks the real RPC wire protocol,
//! so the operator, Terraform and the official SDKs can run against it over plain HTTP.
//!
//! Module map:
//! - [`protocol`]: parameters, gateway checks (AccessKey, V1 signature, timestamp, nonce,
//!   version, action) and the JSON bodies.
//! - [`actions`]: per-action parameters and answer shapes.
//! - [`state`]: accounts, keys and aliases as plain synchronous state; [`key`] the key
//!   resource; [`rules`] the pure rules behind them; [`error`] every error code answered.
//! - [`admin`]: the unsigned `/_emulator/` surface for tests (state, call log, faults, keys).
//!
//! Not emulated yet: V3 (`ACS3-HMAC-SHA256`) signatures, STS token checks, cryptographic
//! actions, purging keys when their deletion window ends (use `DELETE /_emulator/keys/{id}`).

pub mod actions;
pub mod admin;
pub mod error;
pub mod key;
pub mod protocol;
pub mod rules;
pub mod state;

use admin::{CallLog, CallRecord, Fault, FaultSet};
use axum::Router;
use axum::routing::any;
use chrono::Utc;
use error::ApiError;
use protocol::NonceCache;
use state::{Key, KmsState, Scope};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::kms::KeyState;

/// Who the emulator serves and what exists at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatorConfig {
    /// Region used when a request has no `RegionId`, and for admin key operations.
    pub region: String,
    /// Account uid that owns the AccessKeys; appears in every ARN.
    pub account_uid: String,
    /// AccessKey pairs `(id, secret)` of the account.
    pub access_keys: Vec<(String, String)>,
    /// Ids of `Enabled` keys that exist from the start (and after a state reset).
    pub seed_keys: Vec<String>,
}

impl Default for EmulatorConfig {
    /// `cn-hangzhou`, account `1234567890123456`, AccessKey `testid`/`testsecret`, no keys.
    fn default() -> Self {
        Self {
            region: "cn-hangzhou".to_owned(),
            account_uid: "1234567890123456".to_owned(),
            access_keys: vec![("testid".to_owned(), "testsecret".to_owned())],
            seed_keys: Vec::new(),
        }
    }
}

/// Why a configuration cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The region id is empty or has characters other than `[a-z0-9-]`.
    #[error("invalid region id {0:?}")]
    Region(String),
    /// The account uid is empty or not all digits.
    #[error("invalid account uid {0:?}")]
    AccountUid(String),
    /// No AccessKey, or one with an empty id or secret.
    #[error("at least one AccessKey with a non-empty id and secret is needed")]
    AccessKey,
    /// A seed key id is malformed or given twice.
    #[error("invalid or duplicate seed key id {0:?}")]
    SeedKey(String),
}

/// Everything behind the lock: one call runs start to finish under it.
#[derive(Debug)]
pub(crate) struct Shared {
    kms: KmsState,
    seed: KmsState,
    default_region: String,
    calls: CallLog,
    faults: FaultSet,
    nonces: NonceCache,
}

/// A running emulator's state; cheap to clone, all clones share it.
#[derive(Clone, Debug)]
pub struct Emulator {
    config: Arc<EmulatorConfig>,
    shared: Arc<Mutex<Shared>>,
}

impl Emulator {
    /// Checks the configuration and creates the account and seed keys.
    pub fn new(config: EmulatorConfig) -> Result<Self, ConfigError> {
        if !valid_region(&config.region) {
            return Err(ConfigError::Region(config.region));
        }
        let uid_ok = !config.account_uid.is_empty()
            && config.account_uid.bytes().all(|b| b.is_ascii_digit());
        if !uid_ok {
            return Err(ConfigError::AccountUid(config.account_uid));
        }
        let keys_ok = !config.access_keys.is_empty()
            && config.access_keys.iter().all(|(id, secret)| !id.is_empty() && !secret.is_empty());
        if !keys_ok {
            return Err(ConfigError::AccessKey);
        }
        let mut kms = KmsState::default();
        kms.add_account(&config.account_uid, &config.access_keys);
        let scope = Scope { account: &config.account_uid, region: &config.region };
        for id in &config.seed_keys {
            kms.insert_key(scope, Some(id), KeyState::Enabled, Utc::now())
                .map_err(|_| ConfigError::SeedKey(id.clone()))?;
        }
        let shared = Shared {
            seed: kms.clone(),
            kms,
            default_region: config.region.clone(),
            calls: CallLog::default(),
            faults: FaultSet::default(),
            nonces: NonceCache::default(),
        };
        Ok(Self { config: Arc::new(config), shared: Arc::new(Mutex::new(shared)) })
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// The HTTP surface: KMS on `/`, admin on `/_emulator/`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", any(protocol::handle))
            .merge(admin::routes())
            .fallback(protocol::not_found)
            .with_state(self.clone())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic under the lock leaves plain data behind; keep serving it.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn scope(&self) -> Scope<'_> {
        Scope { account: &self.config.account_uid, region: &self.config.region }
    }

    /// The state as `GET /_emulator/state` shows it.
    pub fn snapshot(&self) -> serde_json::Value {
        let shared = self.lock();
        admin::snapshot(&shared.kms, &self.config.region, &self.config.account_uid)
    }

    /// The call log after sequence number `since` (0 for all), optionally of one action.
    pub fn calls(&self, since: u64, action: Option<&str>) -> Vec<CallRecord> {
        self.lock().calls.since(since, action)
    }

    /// Clears the call log and the faults; with `state`, also puts keys and aliases back to
    /// the seed.
    pub fn reset(&self, state: bool) {
        let mut shared = self.lock();
        shared.calls.clear();
        shared.faults.clear();
        if state {
            shared.kms = shared.seed.clone();
        }
    }

    /// Arms a fault; fails with a reason if it makes no sense.
    pub fn add_fault(&self, fault: Fault) -> Result<(), String> {
        self.lock().faults.add(fault)
    }

    /// The armed faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.list().to_vec()
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Creates a key in the default account and region with a chosen id and state.
    pub fn insert_key(&self, key_id: Option<&str>, state: KeyState) -> Result<Key, ApiError> {
        self.lock().kms.insert_key(self.scope(), key_id, state, Utc::now())
    }

    /// Removes a key of the default account and region with its aliases, as a purge would;
    /// returns the removed alias names, `None` if the key does not exist.
    pub fn remove_key(&self, key_id: &str) -> Option<Vec<String>> {
        self.lock().kms.remove_key(self.scope(), key_id)
    }
}

/// Whether `region` looks like a region id: non-empty `[a-z0-9-]`, at most 64 characters.
pub(crate) fn valid_region(region: &str) -> bool {
    (1..=64).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Serves the emulator on `listener` until the process ends.
pub async fn serve(listener: TcpListener, emulator: Emulator) -> io::Result<()> {
    serve_with_shutdown(listener, emulator, std::future::pending()).await
}

/// Serves the emulator on `listener` until `shutdown` completes, then finishes open requests.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    emulator: Emulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, emulator.router()).with_graceful_shutdown(shutdown).await
}

/// An emulator serving in a background task, for in-process tests. Dropping it stops the
/// server too.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    emulator: Emulator,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl RunningEmulator {
    /// Binds `127.0.0.1` on a free port and serves `emulator` there.
    pub async fn start(emulator: Emulator) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        Self::serve_on(listener, emulator)
    }

    /// Serves `emulator` on an already bound listener in a background task.
    pub fn serve_on(listener: TcpListener, emulator: Emulator) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // Either an explicit stop or the sender being dropped ends the server.
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve_with_shutdown(listener, emulator.clone(), shutdown));
        Ok(Self { addr, emulator, stop: Some(stop), task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, the endpoint to give a client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state, for inspection and control without HTTP.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, waits for open requests and returns the server's result.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(io::Error::other)?
    }
}
