//! Checks that look beyond one value: files the configuration names, and
//! rules across vhosts (one listener cannot mix TLS and plaintext vhosts, a
//! name cannot appear twice on one listener, …).

use crate::error::Diags;
use crate::source::Loc;
use crate::types::{Listen, Origin, Vhost};
use std::path::Path;

/// What a named file must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A regular file we can read.
    Readable,
    /// A directory.
    Dir,
    /// A regular file we may execute.
    Executable,
    /// Its directory exists (a file lwsws creates, like a log).
    ParentDir,
}

/// Reports `path` unless it is what `need` says. Returns whether it is.
pub(crate) fn check_path(d: &mut Diags, loc: Loc, key: &str, path: &Path, need: Need) -> bool {
    let shown = path.display();
    let problem = match need {
        Need::ParentDir => match path.parent() {
            Some(parent) if parent.is_dir() => None,
            Some(parent) => Some((
                format!("the directory {} does not exist", parent.display()),
                format!(
                    "create it (e.g. mkdir -p {}) or choose another path",
                    parent.display()
                ),
            )),
            None => None,
        },
        _ => match std::fs::metadata(path) {
            Err(e) => Some((
                format!("{shown}: {}", io_reason(&e)),
                match need {
                    Need::Dir => "create the directory or correct the path".to_string(),
                    _ => "correct the path or create the file".to_string(),
                },
            )),
            Ok(m) if need == Need::Dir && !m.is_dir() => Some((
                format!("{shown} is not a directory"),
                "name the directory to serve".to_string(),
            )),
            Ok(m) if need != Need::Dir && !m.is_file() => Some((
                format!("{shown} is not a regular file"),
                "name a file".to_string(),
            )),
            Ok(_) if need == Need::Readable => match std::fs::File::open(path) {
                Ok(_) => None,
                Err(e) => Some((
                    format!("{shown}: {}", io_reason(&e)),
                    "make it readable by the user lwsws starts as".to_string(),
                )),
            },
            Ok(_) if need == Need::Executable => {
                match nix::unistd::access(path, nix::unistd::AccessFlags::X_OK) {
                    Ok(()) => None,
                    Err(_) => Some((
                        format!("{shown} is not executable"),
                        format!("chmod +x {shown}"),
                    )),
                }
            }
            Ok(_) => None,
        },
    };
    match problem {
        Some((message, hint)) => {
            d.error(loc, key, message, Some(hint));
            false
        }
        None => true,
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// File-system checks of one mount (origin directory, CGI program, auth file).
pub(crate) fn mount_files(d: &mut Diags, origin_loc: Loc, origin: &Origin) {
    match origin {
        Origin::File(dir) => {
            check_path(d, origin_loc, "origin", dir, Need::Dir);
        }
        Origin::Cgi(program) => {
            check_path(d, origin_loc, "origin", program, Need::Executable);
        }
        _ => {}
    }
}

/// Rules across vhosts. `locs[i]` is where `vhosts[i]` is defined.
pub(crate) fn across_vhosts(d: &mut Diags, vhosts: &[Vhost], locs: &[Loc]) {
    for (i, v) in vhosts.iter().enumerate() {
        for (j, w) in vhosts[..i].iter().enumerate() {
            if !same_listener(&v.listen, &w.listen) {
                continue;
            }
            let first = d.sources.describe(locs[j]);
            if v.name == w.name {
                d.error(
                    locs[i],
                    "name",
                    format!(
                        "vhost \"{}\" is defined twice on {}; first at {first}",
                        v.name,
                        describe_listen(&v.listen)
                    ),
                    Some("remove one of them, or give them different names or ports".into()),
                );
            }
            let tls_v = v.tls.is_some() || v.acme.is_some();
            let tls_w = w.tls.is_some() || w.acme.is_some();
            if tls_v != tls_w {
                d.error(
                    locs[i],
                    "host-ssl-cert",
                    format!(
                        "vhost \"{}\" is {} but shares {} with vhost \"{}\" ({first}), which is {}",
                        v.name,
                        if tls_v { "TLS" } else { "plaintext" },
                        describe_listen(&v.listen),
                        w.name,
                        if tls_w { "TLS" } else { "plaintext" }
                    ),
                    Some("put TLS and plaintext vhosts on different ports (use allow-non-tls for plaintext on a TLS port)".into()),
                );
            }
            if v.proxy_protocol != w.proxy_protocol {
                d.error(
                    locs[i],
                    "proxy-protocol",
                    format!("vhosts \"{}\" and \"{}\" ({first}) share {} but disagree on \"proxy-protocol\"", v.name, w.name, describe_listen(&v.listen)),
                    Some("set the same \"proxy-protocol\" on every vhost of one port".into()),
                );
            }
            break;
        }
    }
}

/// Whether two vhosts share a listening socket.
pub fn same_listener(a: &Listen, b: &Listen) -> bool {
    match (a, b) {
        (
            Listen::Tcp {
                port: p,
                interface: i,
                family: f,
            },
            Listen::Tcp {
                port: q,
                interface: j,
                family: g,
            },
        ) => p == q && i == j && f == g,
        (Listen::Unix { path: p, .. }, Listen::Unix { path: q, .. }) => p == q,
        _ => false,
    }
}

/// `port 80`, `port 80 on eth0`, `unix socket /run/x.sock`.
pub fn describe_listen(l: &Listen) -> String {
    match l {
        Listen::Tcp {
            port,
            interface: None,
            ..
        } => format!("port {port}"),
        Listen::Tcp {
            port,
            interface: Some(crate::types::Interface::Addr(a)),
            ..
        } => format!("port {port} on {a}"),
        Listen::Tcp {
            port,
            interface: Some(crate::types::Interface::Name(n)),
            ..
        } => format!("port {port} on {n}"),
        Listen::Unix { path, .. } => format!("unix socket {}", path.display()),
    }
}
