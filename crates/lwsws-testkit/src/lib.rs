//! Support for process-level tests that run the real `lwsws` binary: a
//! temporary configuration directory ([`ConfigDir`]), TCP ports nobody else in
//! this test process has been given ([`free_port`]), a running server that is
//! started in its own process group, waited for until it listens, and killed
//! with its whole group when the test ends, even by a panic ([`Lwsws`]), and a
//! one-shot run of the binary for `--check`-style tests ([`run`]).
//!
//! The tests that use it live in `crates/lwsws/tests/`; they find the binary
//! with `env!("CARGO_BIN_EXE_lwsws")`. This crate knows nothing about lwsws's
//! configuration types: tests write the configuration text the operator would.
//!
//! Setup failures panic with the server's captured output: this is test
//! support, and a failed setup is a failed test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_dir;
mod corpus;
mod port;
mod procfs;
mod run;
mod server;

pub use config_dir::ConfigDir;
pub use port::free_port;
pub use procfs::group_members;
pub use run::{run, run_with_env};
pub use server::{Launch, Lwsws, Ready};

use std::time::Duration;

/// How often every wait in this crate looks again (readiness, logs, exits).
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long [`Lwsws::start`] waits for the server to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`Lwsws::stop`] waits after SIGTERM before it sends SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`run`] lets the binary run before it kills it and panics.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);
