//! `lwsws acme`: the ACME process (SPEC §5.1, see
//! `crates/lwsws-acme/LIFECYCLE.md`). Started by the supervisor with its
//! control socket at descriptor 3 and the configuration as first message;
//! runs a [`lwsws_acme::Manager`] per configuration and relays its events.

use crate::cli::exit;
use lwsws_acme::{Event, Manager};
use lwsws_config::Config;
use lwsws_supervisor::wire::{self, FromAcme, ToAcme};
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use tokio::sync::{mpsc, oneshot};

const MAX_MESSAGE: usize = 64 << 20;

pub fn run() -> ExitCode {
    let control = match wire::inherited(wire::CONTROL_FD) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("lwsws: the acme mode is started by the lwsws supervisor, not by hand ({e})");
            return ExitCode::from(exit::USAGE);
        }
    };
    // Gone with the supervisor, like the workers.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!("acme: cannot ask to die with the supervisor: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("acme: cannot start the runtime: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    runtime.block_on(serve(control))
}

async fn serve(control: OwnedFd) -> ExitCode {
    let channel = match nix::fcntl::fcntl(
        &control,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(std::io::Error::from)
    .and_then(|_| {
        tokio::net::UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(control))
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("acme: control socket: {e}");
            return ExitCode::from(exit::STARTUP);
        }
    };
    let mut rx = wire::Receiver::new(MAX_MESSAGE);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    // Acknowledgements owed to the manager, oldest first.
    let mut waiting: VecDeque<oneshot::Sender<()>> = VecDeque::new();
    // What the running managers were started for.
    let mut current: Option<String> = None;
    loop {
        tokio::select! {
            m = crate::worker::recv::<ToAcme<Config>>(&channel, &mut rx) => match m {
                Ok((ToAcme::Config(config), _)) => {
                    // Every reload brings the configuration; only a change
                    // to what ACME does starts over (abandoning orders in
                    // flight, which the CA lets expire).
                    let wanted = serde_json::to_string(&(
                        &config.global.acme_dir,
                        config.vhosts.iter().filter_map(|v| Some((&v.name, v.acme.as_ref()?))).collect::<Vec<_>>(),
                    ))
                    .unwrap_or_default();
                    if current.as_deref() == Some(wanted.as_str()) {
                        continue;
                    }
                    current = Some(wanted);
                    tasks.abort_all();
                    waiting.clear();
                    let manager = Manager::new(config.global.acme_dir.clone(), events_tx.clone());
                    let mut n = 0;
                    for v in &config.vhosts {
                        if let Some(acme) = &v.acme {
                            tasks.spawn(manager.clone().run(v.name.clone(), acme.clone()));
                            n += 1;
                        }
                    }
                    tracing::info!(vhosts = n, dir = %config.global.acme_dir.display(), "acme: managing certificates");
                }
                Ok((ToAcme::Deployed, _)) => {
                    if let Some(w) = waiting.pop_front() {
                        let _ = w.send(());
                    }
                }
                Err(wire::WireError::Closed) => return ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("acme: control message: {e}");
                    return ExitCode::from(exit::STARTUP);
                }
            },
            Some(e) = events.recv() => {
                let msg = match e {
                    Event::Challenges { set, deployed } => {
                        waiting.push_back(deployed);
                        FromAcme::Challenges(serde_json::to_value(set).unwrap_or_default())
                    }
                    Event::Issued { vhost } => FromAcme::Issued { vhost },
                    Event::Status(s) => FromAcme::Status(serde_json::to_value(s).unwrap_or_default()),
                };
                if let Err(e) = wire::send(channel.as_fd(), &msg, &[]) {
                    tracing::error!("acme: cannot reach the supervisor: {e}");
                    return ExitCode::from(exit::STARTUP);
                }
            }
        }
    }
}
