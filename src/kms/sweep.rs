//! Shared drift sweeps: one paged `ListAliases` per account and region serves the periodic
//! drift check of every object there, instead of one `DescribeKey` per object.
//!
//! A snapshot is reused while it is younger than the age the caller accepts; one caller
//! refreshes it while the others wait for that result. A snapshot only ever clears objects:
//! anything it shows as drifted is confirmed with a fresh per-object read before acting.

use super::Client;
use super::error::Error;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Alias name → key id, as one sweep saw them.
#[derive(Debug)]
struct Snapshot {
    taken: Instant,
    targets: HashMap<String, String>,
}

/// The sweep state of one account and region.
#[derive(Debug, Default)]
pub struct Sweep {
    snapshot: Mutex<Option<Arc<Snapshot>>>,
}

/// Sweeps by account and region.
#[derive(Debug, Default)]
pub struct Sweeps {
    by_scope: std::sync::Mutex<HashMap<String, Arc<Sweep>>>,
}

impl Sweeps {
    /// The sweep of `scope`, created on first use.
    pub fn get(&self, scope: &str) -> Arc<Sweep> {
        let mut map = self.by_scope.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(scope.to_owned()).or_default().clone()
    }
}

impl Sweep {
    /// Where `alias` points according to a snapshot no older than `max_age`, taking a new one
    /// with `client` if needed. `None`: the alias was not in the snapshot.
    pub async fn target(
        &self,
        client: &Client,
        alias: &str,
        max_age: Duration,
    ) -> Result<Option<String>, Error> {
        let mut slot = self.snapshot.lock().await;
        let fresh = slot.as_ref().filter(|s| s.taken.elapsed() <= max_age).cloned();
        let snapshot = match fresh {
            Some(snapshot) => snapshot,
            None => {
                let taken = Instant::now();
                let entries = client.list_aliases().await?;
                let targets = entries.into_iter().map(|e| (e.alias_name, e.key_id)).collect();
                let snapshot = Arc::new(Snapshot { taken, targets });
                *slot = Some(snapshot.clone());
                tracing::debug!(aliases = snapshot.targets.len(), "took a drift sweep");
                snapshot
            }
        };
        Ok(snapshot.targets.get(alias).cloned())
    }
}
