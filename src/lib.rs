//! kms-alias-operator: keeps Alibaba Cloud KMS aliases in line with `KmsAlias` objects.
//!
//! Module map:
//! - [`crd`]: the `KmsAlias` API type and its admission rules.
//! - [`controller`]: the kube-runtime wiring, finalizer, error policy and events.
//! - [`reconcile`]: the decision what to do with an alias, as pure functions.
//! - [`status`]: conditions and the status patch.
//! - [`kms`]: the signed KMS client.
//! - [`emulator`]: the local KMS emulator served by the `kms-emulator` binary.
//! - [`testenv`]: a local etcd + kube-apiserver control plane for tests and the demo.

pub mod emulator;
pub mod kms;
pub mod testenv;
