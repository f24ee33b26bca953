//! The listening sockets the configuration needs: TCP (IPv4, IPv6,
//! dual-stack, on an address or an interface's addresses) and Unix sockets
//! (mode 0600, owned by `unix-socket-perms`). Only the supervisor binds;
//! on reload a socket for the same address is kept — the same kernel
//! socket, so connections waiting in its accept queue are not lost.

use crate::wire::SocketKind;
use lwsws_config::{Config, Interface, IpFamily, Listen, describe_listen};
use lwsws_router::Router;
use socket2::{Domain, Protocol, Type};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A listener on a named interface that had no address when it was bound.
#[derive(Debug, Clone)]
pub struct Pending {
    pub name: String,
    pub family: IpFamily,
}

/// What identifies a listening socket across reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Tcp { addr: SocketAddr, v6only: bool },
    Unix(PathBuf),
}

/// One bound listening socket and the listener of the configuration it serves.
#[derive(Debug, Clone)]
pub struct Held {
    pub listen: Listen,
    pub key: Key,
    pub kind: SocketKind,
    /// Shared with the previous set while both are alive.
    pub socket: Arc<OwnedFd>,
}

/// Every listening socket of one configuration.
#[derive(Debug, Default)]
pub struct Sockets {
    pub held: Vec<Held>,
    /// Named interfaces still without an address.
    pub pending: Vec<Pending>,
}

impl Sockets {
    /// Binds a socket for every listener of `config`, reusing those of
    /// `previous` that have the same address. An interface given by name
    /// that has no address yet is logged and kept as pending.
    pub fn open(config: &Config, previous: Option<&Sockets>) -> Result<Sockets, BindError> {
        let router = Router::new(config);
        let mut out = Sockets::default();
        let reuse = |key: &Key| {
            previous.and_then(|p| {
                p.held
                    .iter()
                    .find(|h| h.key == *key)
                    .map(|h| h.socket.clone())
            })
        };
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
                                out.pending.push(Pending {
                                    name: name.clone(),
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
                        let key = Key::Tcp { addr, v6only };
                        if let Some(socket) = reuse(&key) {
                            out.held.push(Held {
                                listen: l.listen.clone(),
                                key,
                                kind: SocketKind::Tcp,
                                socket,
                            });
                            continue;
                        }
                        let (sock, key) = match tcp(addr, v6only) {
                            // No IPv6 on this host: dual-stack falls back to IPv4.
                            Err(e)
                                if interface.is_none()
                                    && *family == IpFamily::Both
                                    && e.raw_os_error() == Some(libc_eafnosupport()) =>
                            {
                                let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port);
                                let key = Key::Tcp {
                                    addr: v4,
                                    v6only: false,
                                };
                                if let Some(socket) = reuse(&key) {
                                    out.held.push(Held {
                                        listen: l.listen.clone(),
                                        key,
                                        kind: SocketKind::Tcp,
                                        socket,
                                    });
                                    continue;
                                }
                                (tcp(v4, false), key)
                            }
                            r => (r, key),
                        };
                        let sock = sock.map_err(|source| BindError::Io {
                            what: format!("{what} ({addr})"),
                            source,
                        })?;
                        tracing::info!(%addr, "listening");
                        out.held.push(Held {
                            listen: l.listen.clone(),
                            key,
                            kind: SocketKind::Tcp,
                            socket: Arc::new(sock),
                        });
                    }
                }
                Listen::Unix { path, owner } => {
                    let key = Key::Unix(path.clone());
                    let socket = match reuse(&key) {
                        Some(s) => {
                            set_owner(path, owner.as_ref()).map_err(|reason| BindError::Owner {
                                path: path.display().to_string(),
                                reason,
                            })?;
                            s
                        }
                        None => {
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
                            Arc::new(sock)
                        }
                    };
                    out.held.push(Held {
                        listen: l.listen.clone(),
                        key,
                        kind: SocketKind::Unix,
                        socket,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Whether a pending interface has an address now.
    pub fn interface_appeared(&self) -> bool {
        self.pending
            .iter()
            .any(|p| !interface_addrs(&p.name, p.family).is_empty())
    }

    /// Removes the socket files of Unix listeners that `next` no longer has.
    pub fn unlink_dropped(&self, next: &Sockets) {
        for h in &self.held {
            if let Key::Unix(path) = &h.key
                && !next.held.iter().any(|n| n.key == h.key)
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn libc_eafnosupport() -> i32 {
    nix::errno::Errno::EAFNOSUPPORT as i32
}

fn tcp(addr: SocketAddr, v6only: bool) -> std::io::Result<OwnedFd> {
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

fn unix(path: &Path, owner: Option<&(String, String)>) -> Result<OwnedFd, UnixError> {
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
    set_owner(path, owner).map_err(UnixError::Owner)?;
    Ok(l.into())
}

/// `unix-socket-perms`: the socket file's owner.
fn set_owner(path: &Path, owner: Option<&(String, String)>) -> Result<(), String> {
    let Some((user, group)) = owner else {
        return Ok(());
    };
    let uid = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no user \"{user}\""))?
        .uid;
    let gid = nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no group \"{group}\""))?
        .gid;
    nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())
}
