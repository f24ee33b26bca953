//! `lws-server-status` (also answering to `lws-status`): JSON status every
//! `update-ms` (default 5000) to every connected client, in the original's
//! outer shape `{"i": {…}, "files": [{"path", "val"}]}`; the vhosts are left
//! out with `hide-vhosts`, and each `filespath` file's contents are included.

use crate::conn::ConnHandle;
use crate::protocol::{ConnectInfo, Incoming, Protocol, Session, VhostContext, VhostProtocol};
use crate::room::{Hub, Room};
use crate::stats::Stats;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Bytes read from each `filespath` file per update.
const FILE_LIMIT: u64 = 4096;

pub struct ServerStatus;

impl Protocol for ServerStatus {
    fn name(&self) -> &'static str {
        "lws-server-status"
    }

    fn pvos(&self) -> &'static [&'static str] {
        &["update-ms", "hide-vhosts", "filespath", "filepath"]
    }

    fn for_vhost(&self, ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        let mut period = Duration::from_millis(5000);
        let mut hide_vhosts = false;
        let mut files = Vec::new();
        for (k, v) in ctx.pvos {
            match k.as_str() {
                "update-ms" => {
                    if let Ok(ms) = v.trim().parse::<u64>() {
                        period = Duration::from_millis(ms.max(50));
                    }
                }
                "hide-vhosts" => hide_vhosts = matches!(v.trim(), "1" | "on" | "yes" | "true"),
                "filespath" | "filepath" => files.push(PathBuf::from(v)),
                _ => {}
            }
        }
        Arc::new(StatusHandle(Arc::new(StatusVhost {
            stats: ctx.stats,
            broadcast: ctx.broadcast,
            period,
            hide_vhosts,
            files,
            room: Arc::new(Room::default()),
            running: AtomicBool::new(false),
        })))
    }
}

struct StatusVhost {
    stats: Arc<Stats>,
    /// The broadcast rooms, whose backend state is reported.
    broadcast: Arc<Hub>,
    period: Duration,
    hide_vhosts: bool,
    files: Vec<PathBuf>,
    /// Every status connection of the vhost.
    room: Arc<Room>,
    /// Whether the update task runs (it stops when the room empties).
    running: AtomicBool,
}

impl StatusVhost {
    fn snapshot(&self) -> String {
        let s = &self.stats;
        let (auth_connections, auth_users) = s.authenticated();
        let mut i = json!({
            "server": "lwsws",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime": s.started.elapsed().as_secs(),
            "generation": s.generation,
            "pid": std::process::id(),
            "connections": {
                "http": s.http_connections.load(Ordering::Relaxed),
                "ws": s.ws_connections.load(Ordering::Relaxed),
            },
            "requests": s.requests.load(Ordering::Relaxed),
            // WebSocket connections with an authenticated user (basic-auth
            // or token pvos, SPEC §6.5) and how many distinct users they are.
            "authenticated": {
                "connections": auth_connections,
                "users": auth_users,
            },
            // `ws-broadcast` (SPEC §6.6): `local`, `connected` or
            // `reconnecting`, and the rooms with members in this worker.
            "broadcast": {
                "backend": self.broadcast.state().as_str(),
                "rooms": self.broadcast.len(),
            },
        });
        // ACME certificates (SPEC §5.1): state, expiry, next attempt, last error.
        let acme = s.acme();
        if !acme.is_null() {
            i["acme"] = acme;
        }
        if !self.hide_vhosts {
            let vhosts: Vec<Value> = s
                .vhosts
                .iter()
                .map(|v| {
                    json!({
                        "name": v.name,
                        "listen": v.listen,
                        "requests": v.requests.load(Ordering::Relaxed),
                        "ws": v.ws_connections.load(Ordering::Relaxed),
                        "mounts": v.mounts.iter().map(|(mp, kind)| json!({"mountpoint": mp, "origin": kind})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            i["vhosts"] = Value::Array(vhosts);
        }
        let files: Vec<Value> = self
            .files
            .iter()
            .filter_map(|p| {
                use std::io::Read;
                let f = std::fs::File::open(p).ok()?;
                let mut s = String::new();
                f.take(FILE_LIMIT).read_to_string(&mut s).ok()?;
                Some(json!({"path": p.display().to_string(), "val": s}))
            })
            .collect();
        json!({"i": i, "files": files}).to_string()
    }

    /// Starts the periodic update task if it is not running.
    fn ensure_running(self: &Arc<Self>) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<StatusVhost> = Arc::downgrade(self);
        let period = self.period;
        tokio::spawn(async move {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                t.tick().await;
                let Some(v) = weak.upgrade() else { return };
                if v.room.is_empty() {
                    v.running.store(false, Ordering::Release);
                    // A connection may have joined after the check above and
                    // seen `running` still set, so started no task: look
                    // again, and carry on unless the room is still empty or
                    // a new task has taken over.
                    if v.room.is_empty() || v.running.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
                let frame = crate::frame::frame(crate::OpCode::Text, v.snapshot().as_bytes());
                v.room.broadcast_frame(&frame);
            }
        });
    }
}

/// The vhost state as the registry holds it (the update task needs an `Arc`).
struct StatusHandle(Arc<StatusVhost>);

impl VhostProtocol for StatusHandle {
    /// On a `callback://lws-server-status` mount: the same JSON, once.
    fn http(
        &self,
        _req: &http::request::Parts,
        _pmo: &[(String, String)],
    ) -> Option<http::Response<bytes::Bytes>> {
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(bytes::Bytes::from(self.0.snapshot()))
            .ok()
    }

    fn connect(&self, conn: &Arc<ConnHandle>, _info: &ConnectInfo) -> Option<Box<dyn Session>> {
        self.0.room.join(conn);
        conn.send_text(&self.0.snapshot());
        self.0.ensure_running();
        Some(Box::new(StatusSession {
            room: self.0.room.clone(),
        }))
    }
}

struct StatusSession {
    room: Arc<Room>,
}

impl Session for StatusSession {
    fn on_message(&mut self, _conn: &Arc<ConnHandle>, _msg: Incoming) {}

    fn on_close(&mut self, conn: &Arc<ConnHandle>) {
        self.room.leave(conn);
    }
}
