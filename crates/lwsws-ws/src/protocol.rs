//! The protocol registry: what a WebSocket protocol is to the server.
//!
//! A [`Protocol`] is built once per vhost that enables it (receiving its
//! pvos) into a [`VhostProtocol`]; each accepted connection then gets a
//! [`Session`] from it. Sessions are driven by `conn.rs`: they see messages
//! and timer ticks, and answer through the connection's [`ConnHandle`].
//! Builtin protocols live in `builtin/`; plugins (a later issue) are just
//! more entries of the [`Registry`].

use crate::conn::ConnHandle;
use crate::stats::Stats;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A message as a session receives it.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// Valid UTF-8, guaranteed by the codec.
    Text(Bytes),
    Binary(Bytes),
}

impl Incoming {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Incoming::Text(b) | Incoming::Binary(b) => b,
        }
    }
}

/// What a protocol learns about its vhost when the vhost starts.
pub struct VhostContext<'a> {
    pub vhost: &'a str,
    /// The protocol's pvos from `ws-protocols`, in file order.
    pub pvos: &'a [(String, String)],
    /// Server-wide figures, for protocols that report them.
    pub stats: Arc<Stats>,
    /// The worker's broadcast rooms (SPEC §6.6), shared with other
    /// instances when `ws-broadcast` is set.
    pub broadcast: Arc<crate::room::Hub>,
}

/// What a protocol learns about a connection when it opens.
#[derive(Debug, Default)]
pub struct ConnectInfo {
    /// The request's query string, if any (`mirror=NAME` lives there).
    pub query: Option<String>,
    /// The user authenticated before the upgrade, if any.
    pub user: Option<String>,
    /// The handshake request's headers.
    pub headers: http::HeaderMap,
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in order.
    pub offered: Vec<String>,
    /// The subprotocol the server chose among them (echoed in the 101), if any.
    pub chosen: Option<String>,
    /// Headers `connect` adds to (or replaces in) the 101 answer.
    pub response_headers: std::sync::Mutex<http::HeaderMap>,
}

/// A protocol known to the server.
pub trait Protocol: Send + Sync + 'static {
    /// Its name in `ws-protocols` and `Sec-WebSocket-Protocol`.
    fn name(&self) -> &'static str;
    /// The pvos it understands (besides those every protocol knows).
    fn pvos(&self) -> &'static [&'static str] {
        &[]
    }
    /// Its state for one vhost.
    fn for_vhost(&self, ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol>;
}

/// A protocol as enabled on one vhost.
pub trait VhostProtocol: Send + Sync {
    /// A session for a new connection; `None` refuses it.
    fn connect(&self, conn: &Arc<ConnHandle>, info: &ConnectInfo) -> Option<Box<dyn Session>>;

    /// Whether `connect` may block (it runs foreign code, e.g. a plugin's
    /// `on_connect`): the server then calls it on a blocking thread, off the
    /// async reactor.
    fn connect_blocks(&self) -> bool {
        false
    }

    /// How often its sessions' `on_tick` runs, if at all, known before any
    /// session exists: a session created later than the connection's start
    /// (first-message authentication, SPEC §6.5) ticks at this period.
    fn session_tick(&self) -> Option<Duration> {
        None
    }

    /// Answers an HTTP request on a `callback://NAME` mount, given the
    /// mount's `pmo`; `None` if this protocol serves no HTTP (404).
    fn http(
        &self,
        _req: &http::request::Parts,
        _pmo: &[(String, String)],
    ) -> Option<http::Response<Bytes>> {
        None
    }
}

/// One connection's protocol state.
pub trait Session: Send {
    fn on_message(&mut self, conn: &Arc<ConnHandle>, msg: Incoming);
    /// How often `on_tick` runs, if at all.
    fn tick(&self) -> Option<Duration> {
        None
    }
    fn on_tick(&mut self, _conn: &Arc<ConnHandle>) {}
    fn on_close(&mut self, _conn: &Arc<ConnHandle>) {}
}

/// Every protocol this server can offer, by name.
#[derive(Clone, Default)]
pub struct Registry {
    protocols: BTreeMap<&'static str, Arc<dyn Protocol>>,
    /// Other names a protocol answers to (`lws-status` for `lws-server-status`).
    aliases: BTreeMap<&'static str, &'static str>,
}

impl Registry {
    /// The builtin protocols.
    pub fn builtin() -> Registry {
        let mut r = Registry::default();
        r.add(Arc::new(crate::builtin::echo::Echo));
        r.add(Arc::new(crate::builtin::dumb_increment::DumbIncrement));
        r.add(Arc::new(crate::builtin::mirror::Mirror));
        r.add(Arc::new(crate::builtin::server_status::ServerStatus));
        r.add(Arc::new(crate::builtin::raw_proxy::RawProxy));
        r.add(Arc::new(crate::builtin::openmetrics::OpenMetrics));
        r.aliases.insert("lws-status", "lws-server-status");
        r
    }

    pub fn add(&mut self, p: Arc<dyn Protocol>) {
        self.protocols.insert(p.name(), p);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Protocol>> {
        let name = self.aliases.get(name).copied().unwrap_or(name);
        self.protocols.get(name)
    }

    /// Names and pvos, for validating `ws-protocols` in the configuration.
    pub fn specs(&self) -> Vec<lwsws_config::ProtocolSpec> {
        let mut out: Vec<lwsws_config::ProtocolSpec> = self
            .protocols
            .values()
            .map(|p| lwsws_config::ProtocolSpec {
                name: p.name().to_string(),
                pvos: p.pvos().iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        for (alias, target) in &self.aliases {
            if let Some(p) = self.protocols.get(target) {
                out.push(lwsws_config::ProtocolSpec {
                    name: alias.to_string(),
                    pvos: p.pvos().iter().map(|s| s.to_string()).collect(),
                });
            }
        }
        out
    }
}
