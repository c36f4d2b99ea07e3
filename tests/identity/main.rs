//! The operator's own identity, end to end (issue #3, "Proof of fidelity" items 3 and 6).
//!
//! Each test starts its own stack, because each gives the operator a different environment:
//! a real etcd + kube-apiserver, a `kms-emulator` process configured for the test, and the
//! `kms-alias-operator` process with nothing but the credentials the test means it to have.
//! See `stack.rs` for the set-up.
//!
//! - `rrsa`: a projected service-account token minted by the API server, exchanged at the
//!   emulator's STS with `AssumeRoleWithOIDC`; the token file changing is picked up.
//! - `rotation`: the credentials file is replaced and the old AccessKey disabled while the
//!   operator runs.
//! - `startup`: no credentials at all; the operator refuses to start and says where it looked.
//!
//! After each test the operator's and the emulator's logs are scanned for the secrets and
//! tokens the test used, for security-token and JWT shapes, and for `Signature=`.

mod chart;
#[path = "../common/mod.rs"]
mod common;
mod rotation;
mod rrsa;
mod stack;
mod startup;
