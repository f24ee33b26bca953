//! Routing: which vhost serves a request (by SNI, then Host) and which of its
//! mounts (longest mountpoint on a path-segment boundary).
//!
//! Pure data and functions, no I/O: the server asks, the router answers.
//! Vhosts are grouped into the listeners they share (same `interface:port`
//! or Unix socket), in configuration order; the first vhost of a listener is
//! its fallback for unknown hosts unless `strict-host` forbids it.

use lwsws_config::{Config, Listen, Vhost, same_listener};

/// The vhosts sharing one listening socket.
#[derive(Debug, Clone)]
pub struct ListenerRoutes {
    pub listen: Listen,
    /// Indices into `Config::vhosts`, in configuration order.
    pub vhosts: Vec<usize>,
    pub tls: bool,
}

/// Why no vhost serves a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoVhost {
    /// 421: the Host names another vhost than the connection's, or no vhost
    /// under `strict-host`.
    Misdirected,
}

/// Routing tables built once per configuration.
#[derive(Debug, Clone)]
pub struct Router {
    listeners: Vec<ListenerRoutes>,
    /// Per vhost: (trimmed mountpoint, mount index), longest first.
    mounts: Vec<Vec<(String, usize)>>,
    strict_global: bool,
    /// Per vhost: `strict-host-check`.
    strict_vhost: Vec<bool>,
    names: Vec<String>,
}

impl Router {
    pub fn new(config: &Config) -> Router {
        let mut listeners: Vec<ListenerRoutes> = Vec::new();
        for (i, v) in config.vhosts.iter().enumerate() {
            let tls = v.tls.is_some() || v.acme.is_some();
            match listeners
                .iter_mut()
                .find(|l| same_listener(&l.listen, &v.listen))
            {
                Some(l) => l.vhosts.push(i),
                None => listeners.push(ListenerRoutes {
                    listen: v.listen.clone(),
                    vhosts: vec![i],
                    tls,
                }),
            }
        }
        Router {
            listeners,
            mounts: config.vhosts.iter().map(mount_table).collect(),
            strict_global: config.global.strict_host,
            strict_vhost: config.vhosts.iter().map(|v| v.strict_host_check).collect(),
            names: config.vhosts.iter().map(|v| v.name.clone()).collect(),
        }
    }

    /// Every listening socket the configuration needs, in configuration order.
    pub fn listeners(&self) -> &[ListenerRoutes] {
        &self.listeners
    }

    /// Index of the listener whose address is `listen`.
    pub fn listener_index(&self, listen: &Listen) -> Option<usize> {
        self.listeners
            .iter()
            .position(|l| same_listener(&l.listen, listen))
    }

    /// The vhost for a request on `listener` with `Host` header `host`.
    /// `sni_vhost` is the vhost the TLS handshake chose, if any.
    pub fn select_vhost(
        &self,
        listener: usize,
        host: Option<&str>,
        sni_vhost: Option<usize>,
    ) -> Result<usize, NoVhost> {
        let Some(l) = self.listeners.get(listener) else {
            return Err(NoVhost::Misdirected);
        };
        let named = host.map(host_only).and_then(|h| self.find(&l.vhosts, &h));
        if let Some(sni) = sni_vhost {
            return match named {
                Some(v) if v != sni => Err(NoVhost::Misdirected),
                Some(v) => Ok(v),
                None if self.strict(sni) => Err(NoVhost::Misdirected),
                None => Ok(sni),
            };
        }
        match named {
            Some(v) => Ok(v),
            None => {
                let first = *l.vhosts.first().ok_or(NoVhost::Misdirected)?;
                if self.strict(first) {
                    Err(NoVhost::Misdirected)
                } else {
                    Ok(first)
                }
            }
        }
    }

    /// The vhost a TLS ClientHello's SNI names on `listener`; no SNI or an
    /// unknown name gives the first vhost.
    pub fn select_sni(&self, listener: usize, sni: Option<&str>) -> Option<usize> {
        let l = self.listeners.get(listener)?;
        sni.and_then(|s| self.find(&l.vhosts, &host_only(s)))
            .or_else(|| l.vhosts.first().copied())
    }

    fn strict(&self, vhost: usize) -> bool {
        self.strict_global || self.strict_vhost.get(vhost).copied().unwrap_or(false)
    }

    fn find(&self, candidates: &[usize], host: &str) -> Option<usize> {
        candidates
            .iter()
            .copied()
            .find(|&i| self.names[i] == host)
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|&i| wildcard_match(&self.names[i], host))
            })
    }

    /// The mount of `vhost` that serves `path`, and the remainder past its
    /// mountpoint (`""` or starting with `/`).
    pub fn select_mount<'p>(&self, vhost: usize, path: &'p str) -> Option<(usize, &'p str)> {
        self.mounts.get(vhost)?.iter().find_map(|(mp, idx)| {
            let rest = path.strip_prefix(mp.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((*idx, rest))
        })
    }
}

/// Mountpoints without a trailing `/` (so `/foo/` also matches `/foo`),
/// `/` becoming the empty prefix that matches everything; longest first.
fn mount_table(v: &Vhost) -> Vec<(String, usize)> {
    let mut t: Vec<(String, usize)> = v
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| (m.mountpoint.trim_end_matches('/').to_string(), i))
        .collect();
    t.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    t
}

/// A Host header or SNI value reduced to the lower-case host name:
/// port removed (also from `[v6]:port`), trailing dot removed.
pub fn host_only(h: &str) -> String {
    lwsws_config::normalise_host(lwsws_config::split_host_port(h).0)
}

/// `*.example.com` matches exactly one label before `example.com`.
fn wildcard_match(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    match host.strip_suffix(suffix).and_then(|l| l.strip_suffix('.')) {
        Some(label) => !label.is_empty() && !label.contains('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests;
