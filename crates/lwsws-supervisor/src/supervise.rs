//! The supervisor's loop: one thread in `poll(2)` on a signalfd, the
//! workers' control sockets and a one-second tick. No async runtime.
//!
//! Generations: every worker started gets the next generation number. A
//! reload starts a new one beside the serving one and tells the old one to
//! drain only once the new one reports ready; a crash starts a new one with
//! the same configuration after a back-off.

use crate::acme::AcmeLink;
use crate::logs::Logs;
use crate::notify;
use crate::sockets::Sockets;
use crate::spawn::{self, Recipe};
use crate::wire::{self, Credentials, FromAcme, ToSupervisor, ToWorker};
use lwsws_config::{Config, LoadOptions};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most this many generations run at once (SPEC §4).
const MAX_GENERATIONS: usize = 8;
/// A new worker that is not ready by then is killed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after its drain deadline a worker may take before it is killed.
const DRAIN_SLACK: Duration = Duration::from_secs(10);
/// After this long serving, a crash restarts at once again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Pending interfaces are looked at this often.
const INTERFACE_POLL: Duration = Duration::from_secs(2);
/// Messages from a worker are small; a worker is not trusted with more.
const MAX_FROM_WORKER: usize = 64 * 1024;

/// What the supervisor needs from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_dir: PathBuf,
    pub load: LoadOptions,
    /// The lwsws binary on disk, re-executed for every worker.
    pub binary: PathBuf,
    /// `-d` level name handed to workers.
    pub log_level: String,
    /// `-D`: detach from the terminal once the sockets are bound.
    pub daemon: bool,
}

/// Exit statuses (SPEC §1).
pub mod exit {
    pub const OK: u8 = 0;
    pub const STARTUP: u8 = 3;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Started, not ready yet.
    Starting,
    /// The generation that serves.
    Serving,
    /// Told to drain after a newer generation became ready.
    Draining,
    /// Told to stop or close; exits soon.
    Closing,
}

struct Worker {
    generation: u64,
    pid: Pid,
    control: OwnedFd,
    rx: wire::Receiver,
    /// Control socket hit end of file; only the exit remains to be seen.
    hung_up: bool,
    phase: Phase,
    ready_at: Option<Instant>,
    /// Killed if still alive then.
    kill_at: Option<Instant>,
    /// Its configuration's `drain-timeout-secs`.
    drain_timeout: Duration,
    http: u64,
    websocket: u64,
}

/// The configuration in service, with its sockets, logs and key material.
struct Active {
    config: Arc<Config>,
    sockets: Sockets,
    logs: Logs,
    /// Per vhost: certificates and keys as read when the configuration was
    /// loaded (a reload reads them again, so renewed certificates apply).
    tls: Vec<Option<lwsws_tls::Material>>,
}

/// A configuration waiting for its first worker to become ready.
struct Staged {
    generation: u64,
    active: Active,
}

struct Supervisor {
    opts: Options,
    credentials: Option<Credentials>,
    signals: SignalFd,
    active: Active,
    staged: Option<Staged>,
    workers: Vec<Worker>,
    next_generation: u64,
    /// Stop requested; workers are killed if still alive at the deadline.
    stopping: Option<Instant>,
    restart_at: Option<Instant>,
    backoff: Duration,
    /// A SIGHUP arrived while a generation was starting.
    reload_queued: bool,
    /// A SIGHUP or an interface is being acted on: systemd was told RELOADING.
    reloading: bool,
    /// No worker has been ready yet: a failure is a failed start.
    first_start: bool,
    last_status: String,
    next_interface_poll: Instant,
    /// The ACME process, while some vhost has `acme` (SPEC §5.1).
    acme: AcmeLink,
    /// Generations started by a reload (SIGHUP, ACME, an interface).
    reloads: u64,
}

/// Runs the supervisor with an already validated `config` until it is
/// stopped; returns the exit status.
pub fn run(opts: Options, config: Config) -> u8 {
    wire::close_on_exec_all(&[]);
    let config = Arc::new(config);
    let credentials = match crate::privileges::resolve(&config.global) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot prepare the workers' user: {e}");
            return exit::STARTUP;
        }
    };
    let sockets = match Sockets::open(&config, None) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };
    let logs = match Logs::open(&config, None) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };
    let tls = match read_tls(&config) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("{e}");
            return exit::STARTUP;
        }
    };
    if opts.daemon
        && let Err(e) = daemonize()
    {
        tracing::error!("cannot detach from the terminal: {e}");
        return exit::STARTUP;
    }
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        tracing::error!("cannot block signals: {e}");
        return exit::STARTUP;
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot create the signalfd: {e}");
            return exit::STARTUP;
        }
    };
    if let Some(c) = &credentials {
        tracing::info!(user = %c.name, "workers will drop privileges");
    }
    let mut s = Supervisor {
        opts,
        credentials,
        signals,
        active: Active {
            config,
            sockets,
            logs,
            tls,
        },
        staged: None,
        workers: Vec::new(),
        next_generation: 1,
        stopping: None,
        restart_at: None,
        backoff: Duration::ZERO,
        reload_queued: false,
        reloading: false,
        first_start: true,
        last_status: String::new(),
        next_interface_poll: Instant::now() + INTERFACE_POLL,
        acme: AcmeLink::default(),
        reloads: 0,
    };
    if let Err(e) = s.start_generation(None) {
        tracing::error!("cannot start a worker: {e}");
        return exit::STARTUP;
    }
    s.acme
        .sync(&s.opts.binary, &s.opts.log_level, &s.active.config);
    s.run()
}

impl Supervisor {
    fn run(&mut self) -> u8 {
        loop {
            if let Some(code) = self.wait_once() {
                return code;
            }
        }
    }

    /// One round of the loop; `Some(status)` when the supervisor is done.
    fn wait_once(&mut self) -> Option<u8> {
        let timeout = self.next_timeout();
        let mut readable_workers = Vec::new();
        let signal_ready;
        let acme_ready;
        {
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let acme_fd = self.acme.fd();
            if let Some(fd) = acme_fd {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
            }
            let first_worker = fds.len();
            let watched: Vec<usize> = (0..self.workers.len())
                .filter(|&i| !self.workers[i].hung_up)
                .collect();
            for &i in &watched {
                fds.push(PollFd::new(
                    self.workers[i].control.as_fd(),
                    PollFlags::POLLIN,
                ));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return None,
                Err(e) => {
                    tracing::error!("poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    return None;
                }
            }
            let any = |f: &PollFd| {
                f.revents().is_some_and(|r| {
                    !(r & (PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)).is_empty()
                })
            };
            signal_ready = any(&fds[0]);
            acme_ready = acme_fd.is_some() && any(&fds[1]);
            for (k, &i) in watched.iter().enumerate() {
                if any(&fds[k + first_worker]) {
                    readable_workers.push(self.workers[i].pid);
                }
            }
        }
        for pid in readable_workers {
            self.read_worker(pid);
        }
        if acme_ready {
            self.read_acme();
        }
        if signal_ready && let Some(code) = self.read_signals() {
            return Some(code);
        }
        self.tick()
    }

    /// Until the next deadline, at most one second.
    fn next_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        let deadlines = self
            .workers
            .iter()
            .filter_map(|w| w.kill_at)
            .chain(self.restart_at)
            .chain(self.stopping);
        for d in deadlines {
            next = next.min(d);
        }
        let ms = next.saturating_duration_since(now).as_millis();
        PollTimeout::try_from(ms.min(1000) as u32 + 1).unwrap_or(PollTimeout::MAX)
    }

    fn read_signals(&mut self) -> Option<u8> {
        loop {
            let info = match self.signals.read_signal() {
                Ok(Some(i)) => i,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!("cannot read signals: {e}");
                    return None;
                }
            };
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {
                    if let Some(code) = self.reap() {
                        return Some(code);
                    }
                }
                Signal::SIGHUP => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    self.reload(true);
                }
                Signal::SIGUSR1 => self.reopen_logs(),
                Signal::SIGTERM | Signal::SIGINT => {
                    if self.stopping.is_some() {
                        tracing::warn!(signal = %sig, "second stop signal: exiting now");
                        self.kill_now();
                        return Some(exit::OK);
                    }
                    self.stop(sig);
                }
                _ => {}
            }
        }
    }

    /// SIGTERM/SIGINT: every worker stops accepting, closes WebSockets with
    /// 1001 and finishes its requests within the grace period.
    fn stop(&mut self, sig: Signal) {
        let grace = self
            .active
            .config
            .global
            .drain_timeout
            .min(Duration::from_secs(10));
        tracing::info!(signal = %sig, seconds = grace.as_secs(), "stopping: finishing requests in flight");
        notify::stopping();
        self.acme.stop();
        self.stopping = Some(Instant::now() + grace + Duration::from_secs(2));
        self.restart_at = None;
        let msg = ToWorker::Stop {
            grace_ms: grace.as_millis() as u64,
        };
        for w in &mut self.workers {
            w.phase = Phase::Closing;
            send(w, &msg, &[]);
        }
    }

    /// Second stop signal: workers are told to abort (kill their CGI
    /// programs and exit); whoever is still there a moment later gets SIGKILL.
    fn kill_now(&mut self) {
        self.acme.stop();
        for w in &mut self.workers {
            send(w, &ToWorker::Abort, &[]);
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.workers.is_empty() && Instant::now() < deadline {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
                Ok(s) => {
                    if let Some(pid) = s.pid() {
                        self.workers.retain(|w| w.pid != pid);
                    }
                }
                Err(_) => break,
            }
        }
        for w in &self.workers {
            let _ = nix::sys::signal::kill(w.pid, Signal::SIGKILL);
        }
    }

    /// Collects every exited worker.
    fn reap(&mut self) -> Option<u8> {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return None,
                Ok(s) => s,
            };
            let (pid, how, code) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exit status {code}"), Some(code)),
                WaitStatus::Signaled(pid, sig, _) => (pid, format!("signal {sig}"), None),
                _ => continue,
            };
            if self.acme.exited(pid, &how, self.stopping.is_some()) {
                continue;
            }
            if let Some(code) = self.worker_exited(pid, &how, code) {
                return Some(code);
            }
        }
    }

    fn worker_exited(&mut self, pid: Pid, how: &str, code: Option<i32>) -> Option<u8> {
        let i = self.workers.iter().position(|w| w.pid == pid)?;
        let w = self.workers.remove(i);
        let generation = w.generation;
        match w.phase {
            _ if self.stopping.is_some() => {
                tracing::info!(generation, pid = pid.as_raw(), how, "worker stopped");
                if self.workers.is_empty() {
                    tracing::info!("lwsws stopped");
                    return Some(exit::OK);
                }
            }
            Phase::Starting => {
                let restart = self
                    .staged
                    .as_ref()
                    .is_none_or(|s| s.generation != generation);
                if self
                    .staged
                    .as_ref()
                    .is_some_and(|s| s.generation == generation)
                {
                    self.staged = None;
                }
                if self.first_start {
                    tracing::error!(
                        generation,
                        how,
                        "the worker exited before it was ready; stopping"
                    );
                    let status = code
                        .and_then(|c| u8::try_from(c).ok())
                        .filter(|&c| c != 0)
                        .unwrap_or(exit::STARTUP);
                    return Some(status);
                }
                if restart {
                    tracing::error!(
                        generation,
                        how,
                        "restarted worker exited before it was ready"
                    );
                    self.schedule_restart();
                } else {
                    tracing::error!(
                        generation,
                        how,
                        "reload failed: the new worker exited before it was ready; the previous configuration stays in service"
                    );
                    self.end_reload();
                    if !self.workers.iter().any(|w| w.phase == Phase::Serving) {
                        self.schedule_restart();
                    }
                }
            }
            Phase::Serving => {
                tracing::error!(
                    generation,
                    pid = pid.as_raw(),
                    how,
                    "worker died unexpectedly"
                );
                if !self.workers.iter().any(|w| w.phase == Phase::Starting) {
                    self.schedule_restart();
                }
            }
            Phase::Draining | Phase::Closing => {
                tracing::info!(
                    generation,
                    pid = pid.as_raw(),
                    how,
                    "old generation finished"
                );
            }
        }
        if self.reload_queued && !self.workers.iter().any(|w| w.phase == Phase::Starting) {
            self.reload_queued = false;
            self.reload(true);
        }
        self.update_status();
        None
    }

    fn schedule_restart(&mut self) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), BACKOFF_MAX);
        tracing::warn!(
            seconds = delay.as_secs_f32(),
            "starting a new worker after back-off"
        );
        self.restart_at = Some(Instant::now() + delay);
    }

    fn read_worker(&mut self, pid: Pid) {
        loop {
            let Some(w) = self.workers.iter_mut().find(|w| w.pid == pid) else {
                return;
            };
            let msg = match w.rx.recv::<ToSupervisor>(w.control.as_fd()) {
                Ok(Some((m, _fds))) => m,
                Ok(None) => return,
                Err(wire::WireError::Closed) => {
                    w.hung_up = true;
                    return;
                }
                Err(e) => {
                    tracing::warn!(generation = w.generation, "bad message from worker: {e}");
                    w.hung_up = true;
                    let _ = nix::sys::signal::kill(w.pid, Signal::SIGKILL);
                    return;
                }
            };
            match msg {
                ToSupervisor::Status { http, websocket } => {
                    w.http = http;
                    w.websocket = websocket;
                    self.update_status();
                }
                ToSupervisor::Ready { version, binary } => {
                    let generation = w.generation;
                    if w.phase != Phase::Starting {
                        continue;
                    }
                    w.phase = Phase::Serving;
                    w.ready_at = Some(Instant::now());
                    w.kill_at = None;
                    tracing::info!(
                        generation,
                        pid = pid.as_raw(),
                        version,
                        binary,
                        "worker ready"
                    );
                    self.ready(generation);
                }
            }
        }
    }

    /// Generation `generation` serves: older serving ones drain, a staged
    /// configuration becomes the active one.
    fn ready(&mut self, generation: u64) {
        let now = Instant::now();
        for w in &mut self.workers {
            if w.generation < generation && w.phase == Phase::Serving {
                w.phase = Phase::Draining;
                w.kill_at = Some(now + w.drain_timeout + DRAIN_SLACK);
                tracing::info!(generation = w.generation, "old generation draining");
                send(w, &ToWorker::Drain, &[]);
            }
        }
        if let Some(st) = self.staged.take_if(|s| s.generation == generation) {
            self.active.sockets.unlink_dropped(&st.active.sockets);
            self.active = st.active;
            self.acme
                .sync(&self.opts.binary, &self.opts.log_level, &self.active.config);
        }
        self.first_start = false;
        // Beyond the cap, the oldest generations close at once.
        let mut live: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].phase != Phase::Closing)
            .collect();
        live.sort_by_key(|&i| self.workers[i].generation);
        while live.len() > MAX_GENERATIONS {
            let i = live.remove(0);
            let w = &mut self.workers[i];
            tracing::warn!(
                generation = w.generation,
                "more than {MAX_GENERATIONS} generations: closing the oldest"
            );
            w.phase = Phase::Closing;
            w.kill_at = Some(now + DRAIN_SLACK);
            send(w, &ToWorker::Close, &[]);
        }
        self.end_reload();
        self.update_status();
        if self.reload_queued {
            self.reload_queued = false;
            self.reload(true);
        }
    }

    /// What the ACME process says: challenges and statuses go to every
    /// worker; a new certificate is taken into service by a reload.
    fn read_acme(&mut self) {
        for m in self.acme.read() {
            match m {
                FromAcme::Challenges(_) | FromAcme::Status(_) => {
                    let msg = self.acme.message();
                    for w in &mut self.workers {
                        if w.phase != Phase::Closing {
                            send(w, &msg, &[]);
                        }
                    }
                    if matches!(m, FromAcme::Challenges(_)) {
                        self.acme.deployed();
                    }
                }
                FromAcme::Issued { vhost } => {
                    tracing::info!(vhost, "ACME: new certificate; reloading to serve it");
                    self.reload(true);
                }
            }
        }
    }

    /// Tells systemd the reload (or start) is over.
    fn end_reload(&mut self) {
        if self.reloading {
            self.reloading = false;
        }
        notify::ready();
    }

    /// Re-reads the configuration (`from_disk`) or re-binds the current one
    /// (an interface appeared), then starts a generation with it.
    fn reload(&mut self, from_disk: bool) {
        if self.stopping.is_some() {
            return;
        }
        if self.workers.iter().any(|w| w.phase == Phase::Starting) {
            tracing::info!("a generation is still starting; reloading once it is ready");
            self.reload_queued = true;
            return;
        }
        self.reloading = true;
        notify::reloading();
        let config = if from_disk {
            match lwsws_config::load(&self.opts.config_dir, &self.opts.load) {
                Ok(l) => {
                    for w in &l.warnings {
                        tracing::warn!("{w}");
                    }
                    Arc::new(l.config)
                }
                Err(lwsws_config::ConfigError::Invalid { errors, warnings }) => {
                    for w in &warnings {
                        tracing::warn!("{w}");
                    }
                    for e in &errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!(
                        errors = errors.len(),
                        "reload refused: the configuration has errors; still serving the previous one"
                    );
                    self.end_reload();
                    return;
                }
            }
        } else {
            self.active.config.clone()
        };
        self.reloads += 1;
        match self.start_generation(Some(config)) {
            // The new generation also replaces a pending crash restart.
            Ok(()) => self.restart_at = None,
            Err(e) => {
                self.reloads -= 1;
                tracing::error!("reload failed: {e}; still serving the previous configuration");
                self.end_reload();
            }
        }
    }

    /// Starts a worker: with the active configuration (`None`: first start
    /// or restart) or a new one, staged until the worker is ready.
    fn start_generation(&mut self, config: Option<Arc<Config>>) -> Result<(), String> {
        let generation = self.next_generation;
        let staged = match config {
            None => None,
            Some(config) => {
                let sockets = Sockets::open(&config, Some(&self.active.sockets))
                    .map_err(|e| e.to_string())?;
                let logs =
                    Logs::open(&config, Some(&self.active.logs)).map_err(|e| e.to_string())?;
                let tls = read_tls(&config)?;
                Some(Staged {
                    generation,
                    active: Active {
                        config,
                        sockets,
                        logs,
                        tls,
                    },
                })
            }
        };
        let set = staged.as_ref().map_or(&self.active, |s| &s.active);
        let spawned = spawn::spawn(&Recipe {
            binary: &self.opts.binary,
            log_level: &self.opts.log_level,
            generation,
            config: &set.config,
            sockets: &set.sockets,
            logs: &set.logs,
            tls: &set.tls,
            credentials: self.credentials.as_ref(),
            reloads: self.reloads,
        })
        .map_err(|e| e.to_string())?;
        if let Err(e) = nix::fcntl::fcntl(
            &spawned.control,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        ) {
            tracing::warn!("cannot make the control socket non-blocking: {e}");
        }
        let now = Instant::now();
        self.workers.push(Worker {
            generation,
            pid: spawned.pid,
            control: spawned.control,
            rx: wire::Receiver::new(MAX_FROM_WORKER),
            hung_up: false,
            phase: Phase::Starting,
            ready_at: None,
            kill_at: Some(now + READY_TIMEOUT),
            drain_timeout: set.config.global.drain_timeout,
            http: 0,
            websocket: 0,
        });
        if staged.is_some() {
            self.staged = staged;
        }
        if let Some(msg) = self.acme.for_new_worker()
            && let Some(w) = self.workers.last_mut()
        {
            send(w, &msg, &[]);
        }
        self.next_generation += 1;
        tracing::info!(generation, pid = spawned.pid.as_raw(), "worker starting");
        Ok(())
    }

    /// SIGUSR1: reopen every access log and hand the new files to workers.
    fn reopen_logs(&mut self) {
        let fresh = self.active.logs.reopen();
        if let Some(st) = &mut self.staged {
            st.active.logs.reopen();
        }
        tracing::info!(files = fresh.len(), "SIGUSR1: access logs reopened");
        if fresh.is_empty() {
            return;
        }
        let paths: Vec<PathBuf> = fresh.iter().map(|(p, _)| p.clone()).collect();
        let fds: Vec<i32> = fresh.iter().map(|(_, f)| f.as_raw_fd()).collect();
        let msg = ToWorker::ReopenLogs { paths };
        for w in &mut self.workers {
            send(w, &msg, &fds);
        }
    }

    /// Deadlines: restarts, workers that hang, pending interfaces.
    fn tick(&mut self) -> Option<u8> {
        let now = Instant::now();
        if self.stopping.is_some() && self.workers.is_empty() {
            tracing::info!("lwsws stopped");
            return Some(exit::OK);
        }
        if let Some(d) = self.stopping
            && now >= d
        {
            for w in &self.workers {
                tracing::warn!(
                    generation = w.generation,
                    "worker did not stop in time; killing it"
                );
                let _ = nix::sys::signal::kill(w.pid, Signal::SIGKILL);
            }
            // SIGCHLD ends the loop once they are reaped; do not kill twice.
            self.stopping = Some(now + Duration::from_secs(3600));
            if self.workers.is_empty() {
                return Some(exit::OK);
            }
        }
        for w in &mut self.workers {
            if let Some(k) = w.kill_at
                && now >= k
            {
                tracing::warn!(generation = w.generation, phase = ?w.phase, "worker overran its deadline; killing it");
                let _ = nix::sys::signal::kill(w.pid, Signal::SIGKILL);
                w.kill_at = None;
            }
            if w.phase == Phase::Serving
                && w.ready_at
                    .is_some_and(|r| now.duration_since(r) >= HEALTHY_AFTER)
            {
                self.backoff = Duration::ZERO;
            }
        }
        if let Some(r) = self.restart_at
            && now >= r
            && !self.workers.iter().any(|w| w.phase == Phase::Starting)
        {
            self.restart_at = None;
            if let Err(e) = self.start_generation(None) {
                tracing::error!("cannot restart the worker: {e}");
                self.schedule_restart();
            }
        }
        if self.stopping.is_none() {
            self.acme
                .tick(&self.opts.binary, &self.opts.log_level, &self.active.config);
        }
        if now >= self.next_interface_poll {
            self.next_interface_poll = now + INTERFACE_POLL;
            if self.stopping.is_none() && self.active.sockets.interface_appeared() {
                tracing::info!(
                    "a configured interface has an address now; starting a generation that listens on it"
                );
                self.reload(false);
            }
        }
        None
    }

    /// Sends `STATUS=` to systemd when the counts changed.
    fn update_status(&mut self) {
        let serving = self
            .workers
            .iter()
            .filter(|w| w.phase == Phase::Serving)
            .map(|w| w.generation)
            .max();
        let old = self
            .workers
            .iter()
            .filter(|w| matches!(w.phase, Phase::Draining | Phase::Closing))
            .count();
        let http: u64 = self.workers.iter().map(|w| w.http).sum();
        let ws: u64 = self.workers.iter().map(|w| w.websocket).sum();
        let status = match serving {
            Some(g) => format!(
                "generation {g}: {http} HTTP and {ws} WebSocket connections; {old} older generation(s) draining"
            ),
            None => "starting".to_string(),
        };
        if status != self.last_status {
            notify::status(&status);
            self.last_status = status;
        }
    }
}

/// Reads the certificate, key and CA of every TLS vhost. With
/// `ignore-missing-cert`, a missing file gives a temporary self-signed
/// certificate until a reload finds the files.
fn read_tls(config: &Config) -> Result<Vec<Option<lwsws_tls::Material>>, String> {
    config
        .vhosts
        .iter()
        .map(|v| match &v.tls {
            None => Ok(None),
            Some(t) => match lwsws_tls::read_material(&t.cert, &t.key, t.ca.as_deref()) {
                Ok(m) => Ok(Some(m)),
                Err(lwsws_tls::MaterialError::Io { path, source, .. })
                    if (v.ignore_missing_cert || v.acme.is_some())
                        && source.kind() == std::io::ErrorKind::NotFound =>
                {
                    if v.acme.is_some() {
                        tracing::info!(
                            vhost = %v.name,
                            "no ACME certificate yet: serving a temporary self-signed certificate until one is issued"
                        );
                    } else {
                        tracing::warn!(
                            vhost = %v.name,
                            missing = %path.display(),
                            "certificate file missing (ignore-missing-cert): serving a temporary self-signed certificate until a reload finds it"
                        );
                    }
                    lwsws_tls::self_signed(&v.name)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("vhost {}: {e}", v.name)),
            },
        })
        .collect()
}

/// Sends to a worker; a worker that cannot take a message is logged, not waited for.
fn send(w: &mut Worker, msg: &ToWorker, fds: &[i32]) {
    if w.hung_up {
        return;
    }
    if let Err(e) = wire::send(w.control.as_fd(), msg, fds) {
        tracing::warn!(generation = w.generation, "cannot reach the worker: {e}");
    }
}

/// `-D`: fork into the background, new session, stdin and stdout on
/// /dev/null. Stderr is kept, so the caller decides where the log goes.
fn daemonize() -> nix::Result<()> {
    nix::unistd::daemon(true, true)?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|_| nix::errno::Errno::ENOENT)?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    Ok(())
}
