//! The ACME process as the supervisor sees it (SPEC §5.1): started while
//! some vhost has `acme`, told the configuration after every reload,
//! restarted with back-off if it dies. Its messages are challenge responses
//! and statuses, which the supervisor hands to every worker as they are, and
//! "issued", which the supervisor answers with an ordinary reload.

use crate::spawn;
use crate::wire::{self, FromAcme, ToAcme, ToWorker};
use lwsws_config::Config;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

const MAX_FROM_ACME: usize = 1 << 20;
const BACKOFF_MAX: Duration = Duration::from_secs(60);

struct Running {
    pid: Pid,
    control: OwnedFd,
    rx: wire::Receiver,
    hung_up: bool,
}

/// The ACME process, if one is wanted, and what it last said.
pub(crate) struct AcmeLink {
    running: Option<Running>,
    restart_at: Option<Instant>,
    backoff: Duration,
    /// Challenge responses and statuses, for workers started later.
    challenges: serde_json::Value,
    status: serde_json::Value,
}

impl Default for AcmeLink {
    fn default() -> Self {
        AcmeLink {
            running: None,
            restart_at: None,
            backoff: Duration::ZERO,
            challenges: serde_json::Value::Array(Vec::new()),
            status: serde_json::Value::Array(Vec::new()),
        }
    }
}

fn wanted(config: &Config) -> bool {
    config.vhosts.iter().any(|v| v.acme.is_some())
}

impl AcmeLink {
    /// Brings the process in line with `config`: started if some vhost has
    /// `acme`, told the new configuration if running, stopped otherwise.
    pub fn sync(&mut self, binary: &Path, log_level: &str, config: &Config) {
        if !wanted(config) {
            self.stop();
            self.restart_at = None;
            return;
        }
        match &self.running {
            Some(r) if !r.hung_up => {
                if let Err(e) = wire::send(r.control.as_fd(), &ToAcme::Config(config), &[]) {
                    tracing::warn!("cannot reach the ACME process: {e}");
                }
            }
            _ => self.start(binary, log_level, config),
        }
    }

    fn start(&mut self, binary: &Path, log_level: &str, config: &Config) {
        match spawn::spawn_acme(binary, log_level, config) {
            Ok(s) => {
                if let Err(e) = nix::fcntl::fcntl(
                    &s.control,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                ) {
                    tracing::warn!("cannot make the ACME control socket non-blocking: {e}");
                }
                tracing::info!(pid = s.pid.as_raw(), "ACME process starting");
                self.running = Some(Running {
                    pid: s.pid,
                    control: s.control,
                    rx: wire::Receiver::new(MAX_FROM_ACME),
                    hung_up: false,
                });
            }
            Err(e) => {
                tracing::error!("cannot start the ACME process: {e}");
                self.schedule_restart();
            }
        }
    }

    fn schedule_restart(&mut self) {
        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), BACKOFF_MAX);
        self.restart_at = Some(Instant::now() + self.backoff);
    }

    /// SIGTERM to the process; it holds no state that a kill could corrupt
    /// (files are replaced by rename).
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = nix::sys::signal::kill(r.pid, Signal::SIGTERM);
        }
    }

    /// The descriptor to poll, while the process runs.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.running
            .as_ref()
            .filter(|r| !r.hung_up)
            .map(|r| r.control.as_fd())
    }

    /// Whether `pid` was the ACME process; if so it is restarted later.
    pub fn exited(&mut self, pid: Pid, how: &str, stopping: bool) -> bool {
        if self.running.as_ref().is_none_or(|r| r.pid != pid) {
            return false;
        }
        self.running = None;
        if !stopping {
            tracing::error!(how, "the ACME process exited; restarting it");
            self.schedule_restart();
        }
        true
    }

    /// Restarts the process when its back-off is over.
    pub fn tick(&mut self, binary: &Path, log_level: &str, config: &Config) {
        if let Some(at) = self.restart_at
            && Instant::now() >= at
        {
            self.restart_at = None;
            if wanted(config) && self.running.is_none() {
                self.start(binary, log_level, config);
            }
        }
    }

    /// The messages waiting on the control socket.
    pub fn read(&mut self) -> Vec<FromAcme> {
        let mut out = Vec::new();
        let Some(r) = self.running.as_mut() else {
            return out;
        };
        loop {
            match r.rx.recv::<FromAcme>(r.control.as_fd()) {
                Ok(Some((m, _))) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    if !matches!(e, wire::WireError::Closed) {
                        tracing::warn!("bad message from the ACME process: {e}");
                        let _ = nix::sys::signal::kill(r.pid, Signal::SIGKILL);
                    }
                    r.hung_up = true;
                    break;
                }
            }
        }
        for m in &out {
            match m {
                FromAcme::Challenges(v) => self.challenges = v.clone(),
                FromAcme::Status(v) => self.status = v.clone(),
                FromAcme::Issued { .. } => {}
            }
        }
        out
    }

    /// Tells the process its challenges reached the workers.
    pub fn deployed(&mut self) {
        if let Some(r) = self.running.as_ref().filter(|r| !r.hung_up)
            && let Err(e) = wire::send(r.control.as_fd(), &ToAcme::<()>::Deployed, &[])
        {
            tracing::warn!("cannot reach the ACME process: {e}");
        }
    }

    /// The message that gives a worker the current challenges and statuses.
    pub fn message(&self) -> ToWorker {
        ToWorker::Acme {
            challenges: self.challenges.clone(),
            status: self.status.clone(),
        }
    }

    /// The same for a new worker; `None` when there is nothing to tell.
    pub fn for_new_worker(&self) -> Option<ToWorker> {
        let empty = |v: &serde_json::Value| v.as_array().is_some_and(|a| a.is_empty());
        if empty(&self.challenges) && empty(&self.status) {
            return None;
        }
        Some(self.message())
    }
}
