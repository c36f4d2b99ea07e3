//! Local control plane harness (work in progress).
