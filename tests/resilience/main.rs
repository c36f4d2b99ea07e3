//! Resilience tests (cases 1 in part, 9, 10, 12 and 13 of `../shared/cases.md`, and crash
//! safety): a CRD without its rules, an operator killed between a CreateAlias and its answer,
//! namespace teardown with the namespace controller, a throttling storm, API server restarts
//! and outages with the liveness probe, and finalizer races.
//!
//! Each test starts its own control plane, emulator and operator (see `stack.rs`), so a test
//! may stop or restart its API server without disturbing the others. Run with
//! `KMS_TESTENV_BIN_DIR=$(hack/build-control-plane.sh) cargo test --test resilience`; add
//! `-- --nocapture` to see the measured timings.

#[path = "../common/mod.rs"]
mod common;
mod crash;
mod default_config;
mod drift_metric;
mod finalizers;
mod namespace;
mod restart;
mod schema;
mod stack;
mod startup;
mod throttling;
