//! Starting one worker: the lwsws binary from its path on disk, re-executed
//! in its hidden `worker` mode with the control socket at descriptor 3, the
//! listening sockets and log files after it, and nothing else inherited.

use crate::logs::Logs;
use crate::sockets::Sockets;
use crate::wire::{self, Credentials, InheritedListener, InheritedLog, Start};
use command_fds::{CommandFdExt, FdMapping};
use lwsws_config::Config;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, setsockopt, socketpair, sockopt};
use nix::sys::time::TimeVal;
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create the control socket: {0}")]
    Socket(#[source] nix::errno::Errno),
    #[error("cannot duplicate a descriptor for the worker: {0}")]
    Dup(#[source] std::io::Error),
    #[error("descriptor numbers for the worker collide")]
    Collision,
    #[error("cannot start {binary}: {source}")]
    Exec {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hand the configuration to the worker: {0}")]
    Handover(#[source] wire::WireError),
}

/// A started worker process and our end of its control socket.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub control: OwnedFd,
}

/// What a new generation is made of.
pub struct Recipe<'a> {
    pub binary: &'a Path,
    /// `-d` for the worker, so it logs like the supervisor.
    pub log_level: &'a str,
    pub generation: u64,
    pub config: &'a Config,
    pub sockets: &'a Sockets,
    pub logs: &'a Logs,
    pub tls: &'a [Option<lwsws_tls::Material>],
    pub credentials: Option<&'a Credentials>,
    pub reloads: u64,
}

/// Raises this process's open-file limit, which the worker inherits:
/// to `rlimit-nofile` when set (SPEC §2.4), else the soft limit to the hard
/// one, so that a server on a default 1024 does not refuse connections
/// (Go's runtime does the same). Failing to raise it is logged, not fatal.
fn raise_nofile(wanted: Option<u64>) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let Some(n) = wanted else {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
        return;
    };
    if soft == n && hard >= n {
        return;
    }
    // Raising the hard limit needs root (CAP_SYS_RESOURCE); short of it,
    // the soft limit goes as far as the hard one allows.
    if setrlimit(Resource::RLIMIT_NOFILE, n, n.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, n.min(hard), hard);
        tracing::warn!(
            wanted = n,
            hard,
            "rlimit-nofile: cannot raise the hard limit (not root?); open-file limit set to {}",
            n.min(hard)
        );
    }
}

/// Starts a worker and sends it its `Start` message.
pub fn spawn(r: &Recipe<'_>) -> Result<Spawned, SpawnError> {
    raise_nofile(r.config.global.rlimit_nofile);
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SpawnError::Socket)?;
    // A worker that stops reading must not hang the supervisor.
    let limit = TimeVal::new(10, 0);
    setsockopt(&ours, sockopt::SendTimeout, &limit).map_err(SpawnError::Socket)?;

    let mut mappings = vec![FdMapping {
        parent_fd: theirs,
        child_fd: wire::CONTROL_FD,
    }];
    let mut next = wire::CONTROL_FD + 1;
    let mut listeners = Vec::new();
    for h in &r.sockets.held {
        mappings.push(FdMapping {
            parent_fd: h
                .socket
                .as_fd()
                .try_clone_to_owned()
                .map_err(SpawnError::Dup)?,
            child_fd: next,
        });
        listeners.push(InheritedListener {
            fd: next,
            listen: h.listen.clone(),
            kind: h.kind,
        });
        next += 1;
    }
    let mut logs = Vec::new();
    for (path, f) in &r.logs.files {
        mappings.push(FdMapping {
            parent_fd: f.as_fd().try_clone_to_owned().map_err(SpawnError::Dup)?,
            child_fd: next,
        });
        logs.push(InheritedLog {
            fd: next,
            path: path.clone(),
        });
        next += 1;
    }

    let mut cmd = Command::new(r.binary);
    cmd.arg("-d")
        .arg(r.log_level)
        .arg("worker")
        .stdin(Stdio::null())
        // Only the supervisor talks to systemd.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    cmd.fd_mappings(mappings)
        .map_err(|_| SpawnError::Collision)?;
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        binary: r.binary.display().to_string(),
        source,
    })?;
    // Our copies of the inherited descriptors close with `cmd`.
    drop(cmd);
    let pid = Pid::from_raw(child.id() as i32);
    // The supervisor reaps workers itself (SIGCHLD); `Child` is not waited on.
    drop(child);

    let start = Start {
        generation: r.generation,
        supervisor: std::process::id(),
        config: r.config,
        listeners,
        logs,
        credentials: r.credentials.cloned(),
        tls: r.tls.to_vec(),
        reloads: r.reloads,
    };
    if let Err(e) = wire::send(ours.as_fd(), &start, &[]) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        return Err(SpawnError::Handover(e));
    }
    tracing::debug!(
        pid = pid.as_raw(),
        generation = r.generation,
        fd = ours.as_raw_fd(),
        "worker started"
    );
    Ok(Spawned { pid, control: ours })
}

/// Starts the ACME process (`lwsws acme`, SPEC §5.1): like a worker it is
/// the binary re-executed with its control socket at descriptor 3, but it
/// keeps the supervisor's user (it alone may read `acme-dir`) and gets no
/// listeners or logs; its first message is the configuration.
pub fn spawn_acme(binary: &Path, log_level: &str, config: &Config) -> Result<Spawned, SpawnError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SpawnError::Socket)?;
    let limit = TimeVal::new(10, 0);
    setsockopt(&ours, sockopt::SendTimeout, &limit).map_err(SpawnError::Socket)?;
    let mut cmd = Command::new(binary);
    cmd.arg("-d")
        .arg(log_level)
        .arg("acme")
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: theirs,
        child_fd: wire::CONTROL_FD,
    }])
    .map_err(|_| SpawnError::Collision)?;
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        binary: binary.display().to_string(),
        source,
    })?;
    drop(cmd);
    let pid = Pid::from_raw(child.id() as i32);
    drop(child);
    if let Err(e) = wire::send(ours.as_fd(), &wire::ToAcme::Config(config), &[]) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        return Err(SpawnError::Handover(e));
    }
    tracing::debug!(pid = pid.as_raw(), "ACME process started");
    Ok(Spawned { pid, control: ours })
}
