//! Alibaba Cloud KMS over its RPC wire protocol: signing, the typed client, credentials, errors.
//!
//! The reconciler talks to KMS only through [`Client`]; the emulator reuses [`sign`] to verify
//! what clients send and [`types`] for the JSON it answers with.

pub mod budget;
pub mod client;
pub mod credentials;
pub mod error;
pub mod sign;
pub mod sweep;
pub mod types;

pub use budget::{Budget, Budgets, CallClass, Quotas};
pub use client::{BuildError, CallObserver, Client, ClientConfig};
pub use credentials::Credentials;
pub use error::{ApiError, Error, ErrorKind};
pub use sweep::{Sweep, Sweeps};
pub use types::{AliasEntry, KeyArn, KeyEntry, KeyMetadata, KeyState};

/// The KMS API version this crate speaks.
pub const API_VERSION: &str = "2016-01-20";
