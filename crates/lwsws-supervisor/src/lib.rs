//! The lwsws process model (SPEC §4). The supervisor validates the
//! configuration, binds every socket, opens every log and starts workers —
//! the lwsws binary re-executed — handing them descriptors and the validated
//! configuration over a private socketpair. It reloads on SIGHUP with
//! overlapping generations, stops on SIGTERM, reopens logs on SIGUSR1,
//! restarts crashed workers and talks to systemd. It runs no async runtime.
//!
//! The worker's side of the hand-over (`wire`, `privileges::drop_to`) lives
//! here too, so both ends of the protocol are read in one place.

mod acme;
mod logs;
mod notify;
pub mod privileges;
mod sockets;
mod spawn;
mod supervise;
pub mod wire;

pub use sockets::BindError;
pub use supervise::{Options, exit, run};
