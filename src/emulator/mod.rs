//! Local KMS emulator (work in progress).
