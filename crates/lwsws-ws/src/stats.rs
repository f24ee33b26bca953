//! Server-wide figures that the status protocol reports: updated by the
//! server with relaxed atomics (no lock on the request path), read by
//! whoever wants a snapshot.

use std::collections::HashMap;
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
}

/// Counters and description of one vhost.
#[derive(Debug)]
pub struct VhostStats {
    pub name: String,
    pub listen: String,
    pub mounts: Vec<(String, &'static str)>,
    pub requests: AtomicU64,
    pub ws_connections: AtomicUsize,
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
        }
    }

    /// Authenticated WebSocket connections and distinct users among them.
    pub fn authenticated(&self) -> (usize, usize) {
        match self.users.lock() {
            Ok(u) => (u.values().sum(), u.len()),
            Err(_) => (0, 0),
        }
    }

    pub fn request(&self, vhost: Option<usize>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = vhost.and_then(|i| self.vhosts.get(i)) {
            v.requests.fetch_add(1, Ordering::Relaxed);
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
