//! Server-wide figures that the status protocol reports: updated by the
//! server with relaxed atomics (no lock on the request path), read by
//! whoever wants a snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Counters of one worker.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub generation: u64,
    pub http_connections: AtomicUsize,
    pub ws_connections: AtomicUsize,
    pub requests: AtomicU64,
    pub vhosts: Vec<VhostStats>,
    /// WebSocket connections with an authenticated user (SPEC §6.5), by
    /// user; see [`AuthCount`].
    users: Mutex<HashMap<String, usize>>,
    /// ACME vhosts' certificate status (SPEC §5.1), as the supervisor last
    /// passed it on; `Null` without ACME.
    acme: Mutex<serde_json::Value>,
    /// When this worker started, for `process_start_time_seconds`.
    pub started_at: std::time::SystemTime,
    /// TLS handshakes completed and failed (or timed out).
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
    /// Reloads the supervisor has done before starting this worker.
    pub reloads: AtomicU64,
    /// CGI programs started, and killed by `cgi-timeout` (shared with the
    /// CGI runner).
    pub cgi_runs: Arc<AtomicU64>,
    pub cgi_timeouts: Arc<AtomicU64>,
    /// Requests no vhost took (421, bad heads), by status class.
    unrouted: [AtomicU64; 5],
    /// WebSocket data messages by protocol name; connections hold their
    /// protocol's counters, so the lock is taken once per connection.
    ws_messages: Mutex<std::collections::BTreeMap<String, Arc<MessageCount>>>,
}

/// Data messages received from and sent to one protocol's connections.
#[derive(Debug, Default)]
pub struct MessageCount {
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

/// Counters and description of one vhost.
#[derive(Debug)]
pub struct VhostStats {
    pub name: String,
    pub listen: String,
    pub mounts: Vec<(String, &'static str)>,
    pub requests: AtomicU64,
    pub ws_connections: AtomicUsize,
    /// Requests by status class, 1xx … 5xx.
    pub status: [AtomicU64; 5],
    pub response_bytes: AtomicU64,
    /// Proxy mount requests that failed upstream (502, 504).
    pub proxy_errors: AtomicU64,
}

impl Stats {
    /// Replaces the ACME status shown by `lws-server-status`.
    pub fn set_acme(&self, status: serde_json::Value) {
        if let Ok(mut a) = self.acme.lock() {
            *a = status;
        }
    }

    /// The ACME status, `Null` without ACME vhosts.
    pub fn acme(&self) -> serde_json::Value {
        self.acme
            .lock()
            .map_or(serde_json::Value::Null, |a| a.clone())
    }

    pub fn new(vhosts: Vec<VhostStats>) -> Stats {
        Stats {
            started: Instant::now(),
            generation: 1,
            http_connections: AtomicUsize::new(0),
            ws_connections: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            vhosts,
            users: Mutex::new(HashMap::new()),
            acme: Mutex::new(serde_json::Value::Null),
            started_at: std::time::SystemTime::now(),
            tls_handshakes: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            cgi_runs: Arc::default(),
            cgi_timeouts: Arc::default(),
            unrouted: Default::default(),
            ws_messages: Mutex::default(),
        }
    }

    /// The message counters of `protocol`'s connections.
    pub fn ws_messages(&self, protocol: &str) -> Arc<MessageCount> {
        match self.ws_messages.lock() {
            Ok(mut m) => m.entry(protocol.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Every protocol's (name, received, sent), by name.
    pub fn ws_message_counts(&self) -> Vec<(String, u64, u64)> {
        self.ws_messages.lock().map_or_else(
            |_| Vec::new(),
            |m| {
                m.iter()
                    .map(|(k, c)| {
                        (
                            k.clone(),
                            c.received.load(Ordering::Relaxed),
                            c.sent.load(Ordering::Relaxed),
                        )
                    })
                    .collect()
            },
        )
    }

    /// Requests no vhost took, by status class (1xx … 5xx).
    pub fn unrouted(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.unrouted[i].load(Ordering::Relaxed))
    }

    /// Authenticated WebSocket connections and distinct users among them.
    pub fn authenticated(&self) -> (usize, usize) {
        match self.users.lock() {
            Ok(u) => (u.values().sum(), u.len()),
            Err(_) => (0, 0),
        }
    }

    /// A request answered with `status`, by the vhost that took it.
    pub fn request(&self, vhost: Option<usize>, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        match vhost.and_then(|i| self.vhosts.get(i)) {
            Some(v) => {
                v.requests.fetch_add(1, Ordering::Relaxed);
                v.status[class].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.unrouted[class].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Response body bytes sent by `vhost`.
    pub fn sent(&self, vhost: usize, bytes: u64) {
        if let Some(v) = self.vhosts.get(vhost) {
            v.response_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

impl VhostStats {
    pub fn new(name: String, listen: String, mounts: Vec<(String, &'static str)>) -> VhostStats {
        VhostStats {
            name,
            listen,
            mounts,
            requests: AtomicU64::new(0),
            ws_connections: AtomicUsize::new(0),
            status: Default::default(),
            response_bytes: AtomicU64::new(0),
            proxy_errors: AtomicU64::new(0),
        }
    }
}

/// Counts a WebSocket connection (server-wide and on its vhost) while it lives.
pub struct WsCount {
    stats: std::sync::Arc<Stats>,
    vhost: usize,
}

impl WsCount {
    pub fn new(stats: std::sync::Arc<Stats>, vhost: usize) -> WsCount {
        stats.ws_connections.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = stats.vhosts.get(vhost) {
            v.ws_connections.fetch_add(1, Ordering::Relaxed);
        }
        WsCount { stats, vhost }
    }
}

impl Drop for WsCount {
    fn drop(&mut self) {
        self.stats.ws_connections.fetch_sub(1, Ordering::Relaxed);
        if let Some(v) = self.stats.vhosts.get(self.vhost) {
            v.ws_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts a WebSocket connection with an authenticated user while it lives.
pub struct AuthCount {
    stats: std::sync::Arc<Stats>,
    user: String,
}

impl AuthCount {
    pub fn new(stats: std::sync::Arc<Stats>, user: &str) -> AuthCount {
        if let Ok(mut u) = stats.users.lock() {
            *u.entry(user.to_string()).or_insert(0) += 1;
        }
        AuthCount {
            stats,
            user: user.to_string(),
        }
    }
}

impl Drop for AuthCount {
    fn drop(&mut self) {
        if let Ok(mut u) = self.stats.users.lock()
            && let Some(n) = u.get_mut(&self.user)
        {
            *n -= 1;
            if *n == 0 {
                u.remove(&self.user);
            }
        }
    }
}

/// Counts a connection while it lives.
pub struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    pub fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Counted(c)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
