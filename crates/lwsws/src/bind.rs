//! Opening the listening sockets the configuration needs: TCP (IPv4, IPv6,
//! dual-stack, on an address or an interface's addresses) and Unix sockets
//! (mode 0600, owned by `unix-socket-perms`). The server only ever receives
//! sockets that are already bound.

use lwsws_config::{Config, Interface, IpFamily, Listen, describe_listen};
use lwsws_router::Router;
use lwsws_server::{BoundListener, Socket};
use socket2::{Domain, Protocol, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Backlog of every listening socket (the kernel caps it at somaxconn).
const BACKLOG: i32 = 4096;

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set the owner of {path}: {reason}")]
    Owner { path: String, reason: String },
}

/// A listener on a named interface that had no address when we started.
#[derive(Debug, Clone)]
pub struct Pending {
    pub listen: Listen,
    pub name: String,
    pub port: u16,
    pub family: IpFamily,
}

/// Binds a socket for every listener of the configuration. An interface
/// given by name that has no address yet is logged and returned as pending,
/// to be bound by [`watch_interfaces`] when it appears.
pub fn bind_all(config: &Config) -> Result<(Vec<BoundListener>, Vec<Pending>), BindError> {
    let router = Router::new(config);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for l in router.listeners() {
        let what = describe_listen(&l.listen);
        match &l.listen {
            Listen::Tcp {
                port,
                interface,
                family,
            } => {
                let addrs = match interface {
                    None => match family {
                        IpFamily::V4Only => {
                            vec![(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port), false)]
                        }
                        IpFamily::V6Only => {
                            vec![(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port), true)]
                        }
                        IpFamily::Both => {
                            vec![(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port), false)]
                        }
                    },
                    Some(Interface::Addr(a)) => vec![(SocketAddr::new(*a, *port), a.is_ipv6())],
                    Some(Interface::Name(name)) => {
                        let addrs = interface_addrs(name, *family);
                        if addrs.is_empty() {
                            tracing::warn!(interface = %name, port, "interface has no usable address yet; it will be bound when it appears");
                            pending.push(Pending {
                                listen: l.listen.clone(),
                                name: name.clone(),
                                port: *port,
                                family: *family,
                            });
                        }
                        addrs
                            .into_iter()
                            .map(|a| (SocketAddr::new(a, *port), a.is_ipv6()))
                            .collect()
                    }
                };
                for (addr, v6only) in addrs {
                    let sock = match tcp(addr, v6only) {
                        // No IPv6 on this host: dual-stack falls back to IPv4.
                        Err(e)
                            if interface.is_none()
                                && *family == IpFamily::Both
                                && e.raw_os_error() == Some(libc_eafnosupport()) =>
                        {
                            tcp(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port), false)
                        }
                        r => r,
                    }
                    .map_err(|source| BindError::Io {
                        what: format!("{what} ({addr})"),
                        source,
                    })?;
                    tracing::info!(%addr, "listening");
                    out.push(BoundListener {
                        listen: l.listen.clone(),
                        socket: Socket::Tcp(sock),
                    });
                }
            }
            Listen::Unix { path, owner } => {
                let sock = unix(path, owner.as_ref()).map_err(|e| match e {
                    UnixError::Io(source) => BindError::Io {
                        what: what.clone(),
                        source,
                    },
                    UnixError::Owner(reason) => BindError::Owner {
                        path: path.display().to_string(),
                        reason,
                    },
                })?;
                tracing::info!(path = %path.display(), "listening");
                out.push(BoundListener {
                    listen: l.listen.clone(),
                    socket: Socket::Unix(sock),
                });
            }
        }
    }
    Ok((out, pending))
}

/// How often named interfaces that had no address are looked at again.
const INTERFACE_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Binds each pending interface once it has an address, and hands the new
/// sockets to the running server through `to_server`.
pub async fn watch_interfaces(
    mut pending: Vec<Pending>,
    to_server: tokio::sync::mpsc::Sender<BoundListener>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    while !pending.is_empty() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERFACE_POLL) => {}
        }
        let mut still = Vec::new();
        for p in pending {
            let addrs = interface_addrs(&p.name, p.family);
            if addrs.is_empty() {
                still.push(p);
                continue;
            }
            for a in addrs {
                let addr = SocketAddr::new(a, p.port);
                match tcp(addr, a.is_ipv6()) {
                    Ok(sock) => {
                        tracing::info!(interface = %p.name, %addr, "interface appeared; listening");
                        let bound = BoundListener {
                            listen: p.listen.clone(),
                            socket: Socket::Tcp(sock),
                        };
                        if to_server.send(bound).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(interface = %p.name, %addr, error = %e, "cannot listen on the interface that appeared")
                    }
                }
            }
        }
        pending = still;
    }
}

fn libc_eafnosupport() -> i32 {
    nix::errno::Errno::EAFNOSUPPORT as i32
}

fn tcp(addr: SocketAddr, v6only: bool) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(v6only)?;
    }
    s.set_cloexec(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// The addresses of a network interface, filtered by family.
fn interface_addrs(name: &str, family: IpFamily) -> Vec<IpAddr> {
    let Ok(list) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    list.filter(|i| i.interface_name == name)
        .filter_map(|i| {
            let a = i.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .filter(|a| match family {
            IpFamily::Both => true,
            IpFamily::V4Only => a.is_ipv4(),
            IpFamily::V6Only => a.is_ipv6(),
        })
        // Link-local IPv6 addresses need a scope id; skip them.
        .filter(|a| !matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .collect()
}

enum UnixError {
    Io(std::io::Error),
    Owner(String),
}

fn unix(
    path: &Path,
    owner: Option<&(String, String)>,
) -> Result<std::os::unix::net::UnixListener, UnixError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    // A socket file left by an earlier run would make bind fail.
    if let Ok(m) = std::fs::symlink_metadata(path)
        && m.file_type().is_socket()
    {
        let _ = std::fs::remove_file(path);
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(UnixError::Io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(UnixError::Io)?;
    if let Some((user, group)) = owner {
        let uid = nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .ok_or_else(|| UnixError::Owner(format!("no user \"{user}\"")))?
            .uid;
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| UnixError::Owner(format!("no group \"{group}\"")))?
            .gid;
        nix::unistd::chown(path, Some(uid), Some(gid))
            .map_err(|e| UnixError::Owner(e.to_string()))?;
    }
    Ok(l)
}
