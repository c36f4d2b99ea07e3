//! End-to-end tests: a real kube-apiserver and etcd, the KMS emulator and the operator, all
//! as processes; kubectl as the client where users use it. See `env.rs` for the set-up.

mod admission;
mod cases;
#[path = "../common/mod.rs"]
mod common;
mod env;
mod health;
mod lifecycle;
mod providers;
mod reconcile;
