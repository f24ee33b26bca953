//! `lwsws worker`: the serving process the supervisor starts (hidden from
//! `--help`). It takes its descriptors and configuration from the control
//! socket at descriptor 3, drops privileges, then serves until the
//! supervisor says drain, stop or close — or disappears.

use crate::cli::exit;
use lwsws_config::Config;
use lwsws_server::{AccessLogs, BoundListener, Control, Resources, Server, Socket};
use lwsws_supervisor::wire::{self, SocketKind, Start, ToSupervisor, ToWorker};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Once WebSockets are told to close, how long the worker waits for the
/// closing handshakes and last responses before it exits anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The start message is as large as the configuration; allow a big one.
const MAX_START: usize = 256 << 20;

/// Messages after the start are small.
const MAX_MESSAGE: usize = 1 << 20;

/// Runs a worker; never returns while serving.
pub fn run() -> ExitCode {
    let control = match wire::inherited(wire::CONTROL_FD) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!(
                "lwsws: the worker mode is started by the lwsws supervisor, not by hand ({e})"
            );
            return ExitCode::from(exit::USAGE);
        }
    };
    let mut rx = wire::Receiver::new(MAX_START);
    let start: Start<Config> = match rx.recv(control.as_fd()) {
        Ok(Some((s, _))) => s,
        Ok(None) => {
            tracing::error!("worker: no start message");
            return ExitCode::from(exit::STARTUP);
        }
        Err(e) => {
            tracing::error!("worker: cannot read the start message: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let generation = start.generation;
    match prepare(start, control) {
        Ok(p) => serve(p),
        Err(e) => {
            tracing::error!(generation, "worker cannot start: {e}");
            ExitCode::from(exit::STARTUP)
        }
    }
}

/// Everything taken over from the supervisor, privileges already dropped.
struct Prepared {
    generation: u64,
    reloads: u64,
    config: Arc<Config>,
    listeners: Vec<BoundListener>,
    resources: Resources,
    control: OwnedFd,
    /// What [`binary_identity`] said, read while /proc/self is still ours.
    binary: String,
}

#[derive(Debug, thiserror::Error)]
enum PrepareError {
    #[error("inherited descriptor {fd}: {source}")]
    Fd {
        fd: i32,
        #[source]
        source: nix::errno::Errno,
    },
    #[error(transparent)]
    Server(#[from] lwsws_server::ServerError),
    #[error(transparent)]
    Privileges(#[from] lwsws_supervisor::privileges::PrivilegeError),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(#[source] nix::errno::Errno),
    #[error("the supervisor (pid {0}) is gone")]
    Orphaned(u32),
    #[error("cannot ask to die with the supervisor: {0}")]
    DeathSignal(#[source] nix::errno::Errno),
    #[error("TLS of vhost {vhost}: {source}")]
    Tls {
        vhost: String,
        #[source]
        source: lwsws_tls::TlsError,
    },
    #[error("vhost {0} has TLS settings but no key material was handed over")]
    NoMaterial(String),
}

/// Builds each TLS vhost's rustls configuration from its key material.
fn tls_configs(
    config: &Config,
    material: &[Option<lwsws_tls::Material>],
) -> Result<Vec<Option<Arc<rustls::ServerConfig>>>, PrepareError> {
    let default_alpn = config.global.default_alpn.clone();
    config
        .vhosts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let Some(t) = &v.tls else {
                return Ok(None);
            };
            let Some(Some(m)) = material.get(i) else {
                return Err(PrepareError::NoMaterial(v.name.clone()));
            };
            let alpn: Vec<Vec<u8>> = v
                .alpn
                .clone()
                .or_else(|| default_alpn.clone())
                .unwrap_or_else(|| vec![lwsws_config::Alpn::H2, lwsws_config::Alpn::Http11])
                .iter()
                .map(|a| a.as_str().as_bytes().to_vec())
                .collect();
            let params = lwsws_tls::Params {
                material: m,
                client_cert_required: t.client_cert_required,
                ciphers: t.ciphers.as_deref(),
                tls13_ciphers: t.tls13_ciphers.as_deref(),
                ecdh_curve: t.ecdh_curve.as_deref(),
                ssl_option_set: t.ssl_option_set,
                ssl_option_clear: t.ssl_option_clear,
                alpn: &alpn,
            };
            lwsws_tls::server_config(&params)
                .map(Some)
                .map_err(|source| PrepareError::Tls {
                    vhost: v.name.clone(),
                    source,
                })
        })
        .collect()
}

fn prepare(start: Start<Config>, control: OwnedFd) -> Result<Prepared, PrepareError> {
    // Anything else that came across exec (the supervisor marks its own
    // close-on-exec; this is the second lock) stays out of CGI programs.
    let named: Vec<i32> = start
        .listeners
        .iter()
        .map(|l| l.fd)
        .chain(start.logs.iter().map(|l| l.fd))
        .collect();
    wire::close_on_exec_all(&named);
    let take = |fd: i32| wire::inherited(fd).map_err(|source| PrepareError::Fd { fd, source });
    let mut listeners = Vec::new();
    for l in &start.listeners {
        let fd = take(l.fd)?;
        let socket = match l.kind {
            SocketKind::Tcp => Socket::Tcp(std::net::TcpListener::from(fd)),
            SocketKind::Unix => Socket::Unix(std::os::unix::net::UnixListener::from(fd)),
        };
        listeners.push(BoundListener {
            listen: l.listen.clone(),
            socket,
        });
    }
    let mut logs = Vec::new();
    for l in &start.logs {
        logs.push((l.path.clone(), std::fs::File::from(take(l.fd)?)));
    }
    let config = Arc::new(start.config);
    let access_logs = AccessLogs::new(&config, logs).map_err(lwsws_server::ServerError::from)?;
    // Credentials files may be root-only: read them before the drop.
    let mut resources = Resources::load(&config, access_logs)?;
    resources.tls = tls_configs(&config, &start.tls)?;
    let binary = binary_identity();
    if let Some(c) = &start.credentials {
        lwsws_supervisor::privileges::drop_to(c)?;
        tracing::debug!(user = %c.name, "privileges dropped");
    }
    // Changing credentials clears the parent-death signal, so it is set after.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(PrepareError::DeathSignal)?;
    // Nothing the worker runs (CGI programs) gains privileges through
    // setuid binaries or file capabilities, with or without the unit's
    // NoNewPrivileges= (SPEC §8).
    nix::sys::prctl::set_no_new_privs().map_err(PrepareError::NoNewPrivs)?;
    if nix::unistd::getppid().as_raw() as u32 != start.supervisor {
        return Err(PrepareError::Orphaned(start.supervisor));
    }
    Ok(Prepared {
        generation: start.generation,
        reloads: start.reloads,
        config,
        listeners,
        resources,
        control,
        binary,
    })
}

fn serve(p: Prepared) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(p.config.global.count_threads)
        .thread_name("lwsws-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("worker: cannot start the runtime: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let code = runtime.block_on(serve_async(p));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Tasks dropped by the shutdown never stop their programs.
    lwsws_server::kill_cgi_programs();
    code
}

async fn serve_async(p: Prepared) -> ExitCode {
    let generation = p.generation;
    let control = Control::default();
    let server = match Server::new(p.config.clone(), p.resources, generation, control.clone()) {
        Ok(s) => {
            // Before the first request can see the counters.
            s.stats()
                .reloads
                .store(p.reloads, std::sync::atomic::Ordering::Relaxed);
            Arc::new(s)
        }
        Err(e) => {
            tracing::error!(generation, "worker cannot start: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let channel = match nix::fcntl::fcntl(
        &p.control,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(std::io::Error::from)
    // A SOCK_SEQPACKET socket; tokio only needs its readiness, which a
    // datagram socket registration gives without unsafe code.
    .and_then(|_| {
        tokio::net::UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(p.control))
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("worker: control socket: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let running = {
        let server = server.clone();
        tokio::spawn(async move { server.run(p.listeners).await })
    };
    tokio::pin!(running);
    let binary = p.binary;
    let ready = ToSupervisor::Ready {
        version: env!("CARGO_PKG_VERSION").to_string(),
        binary: binary.clone(),
    };
    if let Err(e) = wire::send(channel.as_fd(), &ready, &[]) {
        tracing::error!("worker: cannot report ready: {e}");
        return ExitCode::from(exit::STARTUP);
    }
    tracing::info!(
        generation,
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        binary,
        vhosts = p.config.vhosts.len(),
        "lwsws serving"
    );

    let signals = Signals::new();
    let mut rx = wire::Receiver::new(MAX_MESSAGE);
    let stats = server.stats();
    let mut last = (u64::MAX, u64::MAX);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let far = || tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    // When WebSockets get 1001 (drain deadline), and when the worker exits regardless.
    let close_at = tokio::time::sleep_until(far());
    let exit_at = tokio::time::sleep_until(far());
    tokio::pin!(close_at, exit_at);
    let mut term = signals.term;
    let mut terms = 0u32;
    let stop_grace = p.config.global.drain_timeout.min(Duration::from_secs(10));
    loop {
        tokio::select! {
            r = &mut running => {
                match r {
                    Ok(Ok(())) => {
                        tracing::info!(generation, "worker finished");
                        return ExitCode::SUCCESS;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(generation, "worker cannot serve: {e}");
                        return ExitCode::from(exit::STARTUP);
                    }
                    Err(e) => {
                        tracing::error!(generation, "worker's server task failed: {e}");
                        return ExitCode::from(exit::STARTUP);
                    }
                }
            }
            m = recv(&channel, &mut rx) => match m {
                Ok((ToWorker::Drain, _)) => {
                    tracing::info!(generation, seconds = p.config.global.drain_timeout.as_secs(), "draining: a newer generation serves");
                    control.drain.cancel();
                    close_at.as_mut().reset(tokio::time::Instant::now() + p.config.global.drain_timeout);
                }
                Ok((ToWorker::Stop { grace_ms }, _)) => {
                    tracing::info!(generation, "stopping");
                    control.drain.cancel();
                    control.close.cancel();
                    exit_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(grace_ms));
                }
                Ok((ToWorker::Close, _)) => {
                    tracing::info!(generation, "closing: too many generations");
                    control.drain.cancel();
                    control.close.cancel();
                    exit_at.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                Ok((ToWorker::Abort, _)) => {
                    tracing::warn!(generation, "aborting: requests in flight are cut");
                    lwsws_server::kill_cgi_programs();
                    return ExitCode::SUCCESS;
                }
                Ok((ToWorker::Acme { challenges, status }, _)) => {
                    let set: Vec<lwsws_server::acme::Response> = serde_json::from_value(challenges).unwrap_or_default();
                    tracing::debug!(generation, responses = set.len(), "ACME challenge responses updated");
                    server.acme(set, status);
                }
                Ok((ToWorker::ReopenLogs { paths }, fds)) => {
                    let files: Vec<_> = paths.into_iter().zip(fds.into_iter().map(std::fs::File::from)).collect();
                    tracing::debug!(generation, files = files.len(), "access logs reopened");
                    server.reopen_logs(files);
                }
                Err(wire::WireError::Closed) => {
                    tracing::error!(generation, "the supervisor is gone; exiting");
                    return ExitCode::from(exit::STARTUP);
                }
                Err(e) => tracing::warn!(generation, "control message: {e}"),
            },
            _ = &mut close_at => {
                tracing::info!(generation, "drain deadline: closing the remaining connections");
                control.close.cancel();
                close_at.as_mut().reset(far());
                exit_at.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = &mut exit_at => {
                tracing::warn!(generation, "connections still open at the deadline; exiting");
                return ExitCode::SUCCESS;
            }
            _ = term.recv() => {
                terms += 1;
                if terms > 1 {
                    tracing::warn!(generation, "second SIGTERM: exiting now");
                    lwsws_server::kill_cgi_programs();
                    return ExitCode::SUCCESS;
                }
                // Sent to the worker itself: behave as the supervisor's stop.
                control.drain.cancel();
                control.close.cancel();
                exit_at.as_mut().reset(tokio::time::Instant::now() + stop_grace);
            }
            _ = tick.tick() => {
                use std::sync::atomic::Ordering::Relaxed;
                let now = (
                    stats.http_connections.load(Relaxed) as u64,
                    stats.ws_connections.load(Relaxed) as u64,
                );
                if now != last {
                    last = now;
                    let msg = ToSupervisor::Status { http: now.0, websocket: now.1 };
                    if let Err(e) = wire::send(channel.as_fd(), &msg, &[]) {
                        tracing::debug!("cannot send status: {e}");
                    }
                }
            }
        }
    }
}

/// The next message from the supervisor.
/// The next control message (the ACME process uses it too).
pub(crate) async fn recv<T: serde::de::DeserializeOwned>(
    channel: &tokio::net::UnixDatagram,
    rx: &mut wire::Receiver,
) -> Result<(T, Vec<OwnedFd>), wire::WireError> {
    use tokio::io::Interest;
    loop {
        if let Err(e) = channel.readable().await {
            return Err(wire::WireError::Io(nix::errno::Errno::from_raw(
                e.raw_os_error().unwrap_or(0),
            )));
        }
        // `try_io` clears the readiness when the socket has nothing more.
        let r = channel.try_io(Interest::READABLE, || match rx.recv(channel.as_fd()) {
            Ok(Some(m)) => Ok(Ok(m)),
            Ok(None) => Err(std::io::ErrorKind::WouldBlock.into()),
            Err(e) => Ok(Err(e)),
        });
        match r {
            Ok(done) => return done,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                return Err(wire::WireError::Io(nix::errno::Errno::from_raw(
                    e.raw_os_error().unwrap_or(0),
                )));
            }
        }
    }
}

/// Signal streams the worker holds: SIGTERM stops it; SIGINT, SIGHUP and
/// SIGUSR1 (a terminal's or an operator's signal to the whole process
/// group) are the supervisor's business and are ignored here.
struct Signals {
    term: Stream,
    _ignored: Vec<tokio::signal::unix::Signal>,
}

/// SIGTERM, or nothing when it cannot be installed.
struct Stream(Option<tokio::signal::unix::Signal>);

impl Stream {
    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let ignored = [
            SignalKind::interrupt(),
            SignalKind::hangup(),
            SignalKind::user_defined1(),
        ]
        .into_iter()
        .filter_map(|k| signal(k).ok())
        .collect();
        Signals {
            term: Stream(signal(SignalKind::terminate()).ok()),
            _ignored: ignored,
        }
    }
}

/// Which binary this worker runs: size and modification time of the file
/// that was executed, so a log shows when an upgraded binary took effect.
fn binary_identity() -> String {
    match std::fs::metadata("/proc/self/exe") {
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            format!("{} bytes, mtime {}, inode {}", m.size(), m.mtime(), m.ino())
        }
        Err(_) => "unknown".to_string(),
    }
}
