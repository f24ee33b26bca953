//! The worker's serving side: accept connections on the listening sockets it
//! is given, speak HTTP on them, and answer each request through the one-way
//! pipeline of `pipeline.rs` (vhost → mount → handler → response).
//!
//! A [`Server`] is built from (config, resources) and [`Server::run`] serves
//! on sockets it is given until its [`Control`] says drain or close; it never
//! binds a socket, opens a log or installs a signal handler: the supervisor
//! and the worker's control loop own those.

mod access_log;
pub mod acme;
mod client;
mod conn;
mod error_page;
mod guard;
mod pipeline;
mod raw;
mod websocket;

pub use access_log::{AccessLogs, MissingLog};
/// Kills every CGI program still running, for a worker that exits with
/// requests cut short (its tasks, which would stop them, are dropped).
pub use lwsws_mounts::cgi::kill_all_groups as kill_cgi_programs;

use lwsws_config::{Config, Listen};
use lwsws_mounts::auth::BasicAuth;
use lwsws_router::Router;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listening socket already bound, and the address the config gave it.
#[derive(Debug)]
pub struct BoundListener {
    pub listen: Listen,
    pub socket: Socket,
}

/// The kinds of listening socket a vhost can have.
#[derive(Debug)]
pub enum Socket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening socket for {listen} cannot be used: {source}")]
    Listener {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no vhost uses the listening socket for {0}")]
    UnusedListener(String),
    #[error(transparent)]
    AccessLog(#[from] MissingLog),
    #[error("unknown WebSocket protocol {0}")]
    UnknownProtocol(String),
    #[error("WebSocket plugin: {0}")]
    Plugin(String),
    #[error("proxy TLS settings: {0}")]
    ProxyTls(String),
    #[error("basic-auth file of mount {mountpoint} of vhost {vhost}: {source}")]
    BasicAuth {
        vhost: String,
        mountpoint: String,
        #[source]
        source: lwsws_mounts::auth::AuthFileError,
    },
    #[error("auth-hmac-key-file {path} of ws-protocols {protocol} of vhost {vhost}: {source}")]
    TokenKey {
        vhost: String,
        protocol: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Files the worker needs besides sockets, opened or read before it drops
/// privileges: access logs (opened by the supervisor) and basic-auth credentials.
pub struct Resources {
    pub access_logs: AccessLogs,
    /// Per vhost, per mount: the credentials protecting it.
    pub basic_auth: Vec<Vec<Option<Arc<BasicAuth>>>>,
    /// Trust roots of `https://` proxy upstreams (system store, `proxy-ca`).
    pub proxy_tls: lwsws_mounts::proxy::TlsConfigs,
    /// Per vhost, per `ws-protocols` entry: its `basic-auth` pvo's credentials.
    pub ws_basic_auth: Vec<Vec<Option<Arc<BasicAuth>>>>,
    /// Per vhost, per `ws-protocols` entry: its `auth-hmac-key-file` pvo's key.
    pub ws_token_key: Vec<Vec<Option<Arc<lwsws_ws::token::TokenKey>>>>,
    /// Per vhost: its TLS server configuration (certificate, client
    /// verification, ALPN), built from key material the supervisor read.
    pub tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// ACME challenge responses (SPEC §5.1), replaced by the supervisor.
    pub acme: Arc<acme::AcmeResponses>,
}

impl Resources {
    /// Reads every basic-auth file and proxy trust root of `config`; the
    /// access logs come already open.
    pub fn load(config: &Config, access_logs: AccessLogs) -> Result<Resources, ServerError> {
        let mut basic_auth = Vec::new();
        for v in &config.vhosts {
            let mut per_mount = Vec::new();
            for m in &v.mounts {
                per_mount.push(match &m.basic_auth {
                    None => None,
                    Some(p) => Some(Arc::new(BasicAuth::load(p).map_err(|source| {
                        ServerError::BasicAuth {
                            vhost: v.name.clone(),
                            mountpoint: m.mountpoint.clone(),
                            source,
                        }
                    })?)),
                });
            }
            basic_auth.push(per_mount);
        }
        let proxy_tls = lwsws_mounts::proxy::tls_configs(config).map_err(ServerError::ProxyTls)?;
        let mut ws_basic_auth = Vec::new();
        for v in &config.vhosts {
            let mut per_entry = Vec::new();
            for e in &v.ws_protocols {
                per_entry.push(match e.pvo("basic-auth") {
                    None => None,
                    Some(p) => Some(Arc::new(BasicAuth::load(std::path::Path::new(p)).map_err(
                        |source| ServerError::BasicAuth {
                            vhost: v.name.clone(),
                            mountpoint: format!("(ws-protocols {})", e.name),
                            source,
                        },
                    )?)),
                });
            }
            ws_basic_auth.push(per_entry);
        }
        let mut ws_token_key = Vec::new();
        for v in &config.vhosts {
            let mut per_entry = Vec::new();
            for e in &v.ws_protocols {
                per_entry.push(match e.pvo("auth-hmac-key-file") {
                    None => None,
                    Some(p) => Some(Arc::new(
                        lwsws_ws::token::TokenKey::load(std::path::Path::new(p)).map_err(
                            |source| ServerError::TokenKey {
                                vhost: v.name.clone(),
                                protocol: e.name.clone(),
                                path: p.to_string(),
                                source,
                            },
                        )?,
                    )),
                });
            }
            ws_token_key.push(per_entry);
        }
        Ok(Resources {
            access_logs,
            basic_auth,
            proxy_tls,
            ws_basic_auth,
            ws_token_key,
            tls: Vec::new(),
            acme: Arc::default(),
        })
    }

    pub(crate) fn basic_auth(&self, vhost: usize, mount: usize) -> Option<&Arc<BasicAuth>> {
        self.basic_auth.get(vhost)?.get(mount)?.as_ref()
    }

    pub(crate) fn ws_basic_auth(&self, vhost: usize, entry: usize) -> Option<&Arc<BasicAuth>> {
        self.ws_basic_auth.get(vhost)?.get(entry)?.as_ref()
    }

    pub(crate) fn ws_token_key(
        &self,
        vhost: usize,
        entry: usize,
    ) -> Option<&Arc<lwsws_ws::token::TokenKey>> {
        self.ws_token_key.get(vhost)?.get(entry)?.as_ref()
    }

    pub(crate) fn tls(&self, vhost: usize) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.get(vhost)?.clone()
    }
}

/// How the worker's control loop tells a running server to stop.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Stop accepting; keep-alive connections end after their next response
    /// (`Connection: close`) or their idle timeout; upgraded connections,
    /// tunnels and streaming responses go on.
    pub drain: CancellationToken,
    /// End everything: WebSockets close with 1001, idle HTTP connections are
    /// shut, tunnels are cut. Implies drain.
    pub close: CancellationToken,
}

/// Everything a request needs, shared by every connection of this worker.
pub(crate) struct State {
    pub config: Arc<Config>,
    pub router: Router,
    pub resources: Resources,
    /// Access logs, replaceable while serving.
    pub access_logs: AccessLogs,
    /// `Server:` header value, built once.
    pub server_header: Option<http::HeaderValue>,
    /// Open files and metadata of small static files, checked by one stat.
    pub file_cache: lwsws_mounts::file::FileCache,
    /// Bounds the CGI programs running at once (`cgi-max-processes`).
    pub cgi: lwsws_mounts::cgi::CgiLimiter,
    /// Idle upstream connections of proxy mounts.
    pub proxy: lwsws_mounts::proxy::Pool,
    /// Counters the status protocol reports; the pipeline and connections update them.
    pub stats: Arc<lwsws_ws::stats::Stats>,
    /// Per vhost, per `ws-protocols` entry: the protocol's state on that vhost.
    pub ws: Vec<Vec<Arc<dyn lwsws_ws::protocol::VhostProtocol>>>,
    /// Upgraded connections (WebSocket sessions, proxy tunnels), which hyper
    /// no longer tracks.
    pub tasks: TaskTracker,
    /// Drain and close signals from the worker's control loop.
    pub control: Control,
    /// Per listener: the idle keep-alive timeout (the longest of its vhosts',
    /// since the vhost is not known until a request names it).
    pub keepalive: Vec<std::time::Duration>,
    /// Per listener: a TLS listener that lets plaintext in (a vhost of it
    /// has `allow-non-tls` with `redirect-http` or `allow-http-on-https`).
    pub plain_on_tls: Vec<bool>,
    /// Per listener: where its raw connections go (§7), if it has any.
    pub raw: Vec<Option<raw::RawRoute>>,
    /// Per listener: connections start with a PROXY protocol header.
    pub proxy_protocol: Vec<bool>,
    /// `trusted-proxies`.
    pub trusted: client::Trusted,
    /// `ip-limit-wsi` (connections) and `ip-limit-ah` (requests in progress)
    /// per client address.
    pub ip_limit_wsi: Option<Arc<client::PerClient>>,
    pub ip_limit_ah: Option<Arc<client::PerClient>>,
    /// Refused PROXY connections, logged at most once a second.
    pub proxy_refusals: client::RefusalLog,
    /// `max-connections`: one permit per open connection of this worker;
    /// without one the accept loops wait and new connections stay in the
    /// kernel's backlog.
    pub connections: Arc<tokio::sync::Semaphore>,
}

/// One worker generation's serving state, built before the first accept.
pub struct Server {
    state: Arc<State>,
}

impl Server {
    /// Builds the router, caches, pools and protocol instances of `config`.
    pub fn new(
        config: Arc<Config>,
        mut resources: Resources,
        generation: u64,
        control: Control,
    ) -> Result<Server, ServerError> {
        let router = Router::new(&config);
        let server_header = http::HeaderValue::from_str(&config.global.server_string).ok();
        let keepalive = router
            .listeners()
            .iter()
            .map(|l| {
                l.vhosts
                    .iter()
                    .map(|&v| config.vhosts[v].keepalive_timeout)
                    .max()
                    .unwrap_or(std::time::Duration::from_secs(60))
            })
            .collect();
        let plain_on_tls = router
            .listeners()
            .iter()
            .map(|l| {
                l.tls
                    && l.vhosts.iter().any(|&v| {
                        let v = &config.vhosts[v];
                        v.allow_non_tls && (v.redirect_http || v.allow_http_on_https)
                    })
            })
            .collect();
        let raw = router
            .listeners()
            .iter()
            .map(|l| raw::RawRoute::for_listener(&config, l))
            .collect();
        // Vhosts sharing a listener agree on it (the configuration checks).
        let proxy_protocol = router
            .listeners()
            .iter()
            .map(|l| l.vhosts.iter().any(|&v| config.vhosts[v].proxy_protocol))
            .collect();
        let g = &config.global;
        let connections = Arc::new(tokio::sync::Semaphore::new(
            g.max_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let trusted = client::Trusted::new(&g.trusted_proxies);
        let ip_limit_wsi = g
            .ip_limit_wsi
            .filter(|&n| n > 0)
            .map(|n| client::PerClient::new(n, "ip-limit-wsi (connections)"));
        let ip_limit_ah = g
            .ip_limit_ah
            .filter(|&n| n > 0)
            .map(|n| client::PerClient::new(n, "ip-limit-ah (requests in progress)"));
        let proxy = lwsws_mounts::proxy::Pool::new(resources.proxy_tls.clone());
        let mut stats = lwsws_ws::stats::Stats::new(
            config
                .vhosts
                .iter()
                .map(|v| {
                    lwsws_ws::stats::VhostStats::new(
                        v.name.clone(),
                        lwsws_config::describe_listen(&v.listen),
                        v.mounts
                            .iter()
                            .map(|m| (m.mountpoint.clone(), origin_kind(&m.origin)))
                            .collect(),
                    )
                })
                .collect(),
        );
        stats.generation = generation;
        let stats = Arc::new(stats);
        let cgi = lwsws_mounts::cgi::CgiLimiter::new(
            config.global.cgi_max_processes,
            lwsws_mounts::cgi::CgiCounters {
                runs: stats.cgi_runs.clone(),
                timeouts: stats.cgi_timeouts.clone(),
            },
        );
        // Plugins are loaded here, in the worker, after the privilege drop.
        let mut registry = lwsws_ws::Registry::builtin();
        let mut plugins = lwsws_plugin::Loader::default();
        for p in plugins
            .scan(&config.global.plugin_dirs)
            .map_err(ServerError::Plugin)?
        {
            registry.add(p);
        }
        // Broadcast rooms (SPEC §6.6): in this worker, or shared through
        // Redis; no Redis client exists without `ws-broadcast`. A URL the
        // client refuses (which --check should have caught) leaves the rooms
        // local rather than the server down, as an unreachable Redis does.
        let broadcast = match &config.global.ws_broadcast {
            None => lwsws_ws::room::Hub::local(),
            Some(url) => lwsws_redis::hub(url, &config.global.ws_broadcast_prefix)
                .unwrap_or_else(|e| {
                    tracing::error!(
                        url = %url.redacted(),
                        error = %e,
                        "ws-broadcast: the Redis client refuses this URL; rooms stay local to this worker"
                    );
                    lwsws_ws::room::Hub::local()
                }),
        };
        let mut ws = Vec::new();
        for v in &config.vhosts {
            let mut per_entry: Vec<Arc<dyn lwsws_ws::protocol::VhostProtocol>> = Vec::new();
            for e in &v.ws_protocols {
                let pvo = |k: &str| e.pvos.iter().find(|(n, _)| n == k).map(|(_, v)| v);
                let p = match (pvo("plugin"), pvo("init")) {
                    (Some(lib), Some(init)) => plugins
                        .entry(&e.name, std::path::Path::new(lib), init)
                        .map_err(ServerError::Plugin)?,
                    _ => match registry.get(&e.name) {
                        Some(p) => p.clone(),
                        None => return Err(ServerError::UnknownProtocol(e.name.clone())),
                    },
                };
                per_entry.push(p.for_vhost(lwsws_ws::protocol::VhostContext {
                    vhost: &v.name,
                    pvos: &e.pvos,
                    stats: stats.clone(),
                    broadcast: broadcast.clone(),
                }));
            }
            ws.push(per_entry);
        }
        let access_logs = std::mem::take(&mut resources.access_logs);
        Ok(Server {
            state: Arc::new(State {
                config,
                router,
                resources,
                access_logs,
                server_header,
                file_cache: lwsws_mounts::file::FileCache::default(),
                cgi,
                proxy,
                stats,
                ws,
                tasks: TaskTracker::new(),
                control,
                keepalive,
                plain_on_tls,
                proxy_protocol,
                connections,
                trusted,
                ip_limit_wsi,
                ip_limit_ah,
                proxy_refusals: client::RefusalLog::default(),
                raw,
            }),
        })
    }

    /// The counters this server keeps (connections, requests).
    pub fn stats(&self) -> Arc<lwsws_ws::stats::Stats> {
        self.state.stats.clone()
    }

    /// Takes reopened access log files into use (SIGUSR1).
    pub fn reopen_logs(&self, files: Vec<(std::path::PathBuf, std::fs::File)>) {
        self.state.access_logs.reopen(files);
    }

    /// New ACME challenge responses and certificate statuses (SPEC §5.1).
    pub fn acme(&self, responses: Vec<acme::Response>, status: serde_json::Value) {
        self.state.resources.acme.replace(responses);
        self.state.stats.set_acme(status);
    }

    /// Serves on `listeners` until the control says drain, then waits for
    /// the connections and tasks in flight to finish (or for close to cut them).
    pub async fn run(&self, listeners: Vec<BoundListener>) -> Result<(), ServerError> {
        let state = &self.state;
        let mut accept_loops = Vec::new();
        for l in listeners {
            accept_loops.push(start_accepting(l, state)?);
        }
        for a in accept_loops {
            let _ = a.await;
        }
        state.tasks.close();
        state.tasks.wait().await;
        Ok(())
    }
}

/// The kind of a mount's origin, for the status page.
fn origin_kind(o: &lwsws_config::Origin) -> &'static str {
    match o {
        lwsws_config::Origin::File(_) => "file",
        lwsws_config::Origin::Cgi(_) => "cgi",
        lwsws_config::Origin::Proxy(_) => "proxy",
        lwsws_config::Origin::Redirect(_) => "redirect",
        lwsws_config::Origin::Callback(_) => "callback",
    }
}

/// Spawns the accept loop of one bound listener.
fn start_accepting(
    l: BoundListener,
    state: &Arc<State>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let shown = lwsws_config::describe_listen(&l.listen);
    let index = state
        .router
        .listener_index(&l.listen)
        .ok_or_else(|| ServerError::UnusedListener(shown.clone()))?;
    let listener =
        conn::Listener::from_socket(l.socket).map_err(|source| ServerError::Listener {
            listen: shown,
            source,
        })?;
    Ok(tokio::spawn(conn::accept_loop(
        listener,
        index,
        state.clone(),
    )))
}
