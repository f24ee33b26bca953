//! WebSocket protocol plugins (SPEC §6.4): shared libraries written against
//! `share/lwsws/include/lwsws_plugin.h`, whose ABI is apache-websocket's
//! (`WebSocketPlugin`, `WebSocketServer`) with lwsws's additions appended to
//! the server table. A plugin becomes one more [`Protocol`] of the registry.
//!
//! - [`abi`]: the `#[repr(C)]` tables, message types and symbols.
//! - `load`: `dlopen`, init symbols, `lwsws_plugin_protocols`, table checks.
//! - `server`: the per-connection `WebSocketServer` and its callbacks.
//!
//! Plugin callbacks never run on the async reactor threads: `on_connect`
//! runs on a blocking thread (see [`VhostProtocol::connect_blocks`]), and
//! each connection's `on_message` / `on_disconnect` calls are queued and run
//! one after another, in order, on blocking threads, so a slow plugin delays
//! only its own connection.

pub mod abi;
mod load;
mod server;

use bytes::Bytes;
use load::{Lib, Table};
use lwsws_ws::conn::ConnHandle;
use lwsws_ws::protocol::{ConnectInfo, Incoming, Protocol, Session, VhostContext, VhostProtocol};
use server::{Cell, Private, VhostShared};
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, c_int};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes of messages a connection may have waiting for its plugin before it
/// is closed (1008): a client must not queue unbounded work.
const MAX_QUEUED: usize = 16 * 1024 * 1024;

/// The hooks the configuration loader uses to check plugins (`--check`).
pub fn config_hooks() -> lwsws_config::PluginHooks {
    lwsws_config::PluginHooks {
        probe,
        scan: scan_dir,
    }
}

/// Loads the library at `path`, resolves `symbol` and checks the table its
/// init function returns, then unloads the library (init functions must
/// not start threads; the header says so).
pub fn probe(path: &Path, symbol: &str) -> Result<(), String> {
    let lib = Lib::open_for_check(path)?;
    let init = lib.init(symbol)?;
    load::call_init(init).map(|_| ())
}

/// The `*.so` files of `dir`, sorted.
fn libraries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so") && p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Scans one `plugin-dir`: the protocols its libraries offer.
pub fn scan_dir(dir: &Path) -> lwsws_config::PluginScan {
    let mut scan = lwsws_config::PluginScan::default();
    let libs = match libraries(dir) {
        Ok(l) => l,
        Err(e) => {
            scan.errors.push((dir.to_path_buf(), e));
            return scan;
        }
    };
    for path in libs {
        // Unloaded again when `lib` goes (see `Lib::open_for_check`).
        let lib = Lib::open_for_check(&path);
        match lib
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|l| l.protocols())
        {
            Ok(Some(list)) => {
                for (name, init) in list {
                    if let Err(e) = load::call_init(init) {
                        scan.errors
                            .push((path.clone(), format!("protocol \"{name}\": {e}")));
                        continue;
                    }
                    scan.protocols.push(lwsws_config::ScannedProtocol {
                        name,
                        library: path.clone(),
                    });
                }
            }
            Ok(None) => {
                tracing::debug!(library = %path.display(), "no lwsws_plugin_protocols; skipped")
            }
            Err(e) => scan.errors.push((path, e)),
        }
    }
    scan
}

/// Loads plugins for one server: libraries are opened once and each init
/// function is called once, however many entries use it.
#[derive(Default)]
pub struct Loader {
    libs: HashMap<PathBuf, Lib>,
    plugins: HashMap<(PathBuf, String), Arc<Loaded>>,
}

impl Loader {
    fn lib(&mut self, path: &Path) -> Result<Lib, String> {
        if let Some(l) = self.libs.get(path) {
            return Ok(l.clone());
        }
        let l = Lib::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.libs.insert(path.to_path_buf(), l.clone());
        Ok(l)
    }

    /// The protocol `name` of a `ws-protocols` entry with pvos `plugin` and `init`.
    pub fn entry(
        &mut self,
        name: &str,
        path: &Path,
        symbol: &str,
    ) -> Result<Arc<dyn Protocol>, String> {
        let key = (path.to_path_buf(), symbol.to_string());
        let loaded = match self.plugins.get(&key) {
            Some(l) => l.clone(),
            None => {
                let lib = self.lib(path)?;
                let init = lib
                    .init(symbol)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let table = load::call_init(init)
                    .map_err(|e| format!("{} {symbol}: {e}", path.display()))?;
                let l = Arc::new(Loaded { table });
                self.plugins.insert(key, l.clone());
                l
            }
        };
        Ok(Arc::new(PluginProtocol {
            name: leak(name),
            loaded,
        }))
    }

    /// Every protocol offered by the `*.so` libraries of `dirs` that export
    /// `lwsws_plugin_protocols`; a name offered twice is an error naming both.
    pub fn scan(&mut self, dirs: &[PathBuf]) -> Result<Vec<Arc<dyn Protocol>>, String> {
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut out: Vec<Arc<dyn Protocol>> = Vec::new();
        for dir in dirs {
            for path in libraries(dir)? {
                let lib = self.lib(&path)?;
                let Some(list) = lib
                    .protocols()
                    .map_err(|e| format!("{}: {e}", path.display()))?
                else {
                    continue;
                };
                for (name, init) in list {
                    if let Some(other) = seen.get(&name) {
                        return Err(format!(
                            "protocol \"{name}\" is offered by two plugins: {} and {}",
                            other.display(),
                            path.display()
                        ));
                    }
                    let table = load::call_init(init)
                        .map_err(|e| format!("{} ({name}): {e}", path.display()))?;
                    tracing::info!(protocol = %name, library = %path.display(), "WebSocket plugin loaded");
                    out.push(Arc::new(PluginProtocol {
                        name: leak(&name),
                        loaded: Arc::new(Loaded { table }),
                    }));
                    seen.insert(name, path.clone());
                }
            }
        }
        Ok(out)
    }
}

/// A protocol from an init function already linked into this process,
/// without a library: for the fuzz targets in `fuzz/` (not part of the API),
/// which drive the server table's callbacks with their own plugin.
#[doc(hidden)]
pub fn from_init(name: &str, init: abi::Init) -> Result<Arc<dyn Protocol>, String> {
    let table = load::call_init(init)?;
    Ok(Arc::new(PluginProtocol {
        name: leak(name),
        loaded: Arc::new(Loaded { table }),
    }))
}

/// Protocol names live as long as the worker (the registry wants
/// `&'static str`); a worker loads its plugins once.
fn leak(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

/// One plugin table, from one init call.
struct Loaded {
    table: Table,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.table.destroy();
    }
}

/// A plugin as a registry protocol.
pub struct PluginProtocol {
    name: &'static str,
    loaded: Arc<Loaded>,
}

impl Protocol for PluginProtocol {
    fn name(&self) -> &'static str {
        self.name
    }

    fn pvos(&self) -> &'static [&'static str] {
        &["*"]
    }

    fn for_vhost(&self, ctx: VhostContext<'_>) -> Arc<dyn VhostProtocol> {
        let pvos = ctx
            .pvos
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    CString::new(k.as_str()).ok()?,
                    CString::new(v.as_str()).ok()?,
                ))
            })
            .collect();
        Arc::new(PluginVhost {
            loaded: self.loaded.clone(),
            shared: Arc::new(VhostShared {
                pvos,
                rooms: ctx.broadcast.rooms(ctx.vhost, self.name),
            }),
        })
    }
}

struct PluginVhost {
    loaded: Arc<Loaded>,
    shared: Arc<VhostShared>,
}

impl VhostProtocol for PluginVhost {
    fn connect(&self, conn: &Arc<ConnHandle>, info: &ConnectInfo) -> Option<Box<dyn Session>> {
        let cell = Cell::new(conn.clone(), self.shared.clone(), info);
        let private = cell.connect(&self.loaded.table, info)?;
        Some(Box::new(PluginSession {
            conn: Arc::new(Conn {
                cell,
                loaded: self.loaded.clone(),
                private,
                queue: Mutex::new(Queue::default()),
            }),
            ended: false,
        }))
    }

    fn connect_blocks(&self) -> bool {
        true
    }
}

enum Item {
    Message(c_int, Bytes),
    Disconnect,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    /// A drain is scheduled or running.
    running: bool,
}

/// One connection of a plugin: its table and its queue of callbacks.
struct Conn {
    cell: Arc<Cell>,
    loaded: Arc<Loaded>,
    private: Private,
    queue: Mutex<Queue>,
}

impl Conn {
    /// Queues a callback; starts a drain on a blocking thread if none runs.
    fn push(self: &Arc<Conn>, item: Item) {
        let start = {
            let Ok(mut q) = self.queue.lock() else {
                return;
            };
            if let Item::Message(_, b) = &item {
                if q.bytes + b.len() > MAX_QUEUED {
                    drop(q);
                    self.cell
                        .conn
                        .close(lwsws_ws::close::code::POLICY_VIOLATION, "plugin backlog");
                    return;
                }
                q.bytes += b.len();
            }
            q.items.push_back(item);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            let me = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(move || me.drain());
                }
                Err(_) => me.drain(),
            }
        }
    }

    /// Runs queued callbacks in order until the queue is empty.
    fn drain(&self) {
        loop {
            let item = {
                let Ok(mut q) = self.queue.lock() else {
                    return;
                };
                match q.items.pop_front() {
                    Some(i) => {
                        if let Item::Message(_, b) = &i {
                            q.bytes -= b.len();
                        }
                        i
                    }
                    None => {
                        q.running = false;
                        return;
                    }
                }
            };
            let table = &self.loaded.table;
            match item {
                Item::Message(kind, data) => self.cell.message(table, self.private, kind, &data),
                Item::Disconnect => self.cell.disconnect(table, self.private),
            }
        }
    }
}

struct PluginSession {
    conn: Arc<Conn>,
    /// `on_disconnect` is queued.
    ended: bool,
}

impl Session for PluginSession {
    fn on_message(&mut self, _conn: &Arc<ConnHandle>, msg: Incoming) {
        let item = match msg {
            Incoming::Text(b) => Item::Message(abi::MESSAGE_TYPE_TEXT, b),
            Incoming::Binary(b) => Item::Message(abi::MESSAGE_TYPE_BINARY, b),
        };
        self.conn.push(item);
    }

    fn on_close(&mut self, _conn: &Arc<ConnHandle>) {
        if !std::mem::replace(&mut self.ended, true) {
            self.conn.push(Item::Disconnect);
        }
    }
}

impl Drop for PluginSession {
    /// A session dropped without `on_close` (the upgrade never completed)
    /// still gets its `on_disconnect`.
    fn drop(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.conn.push(Item::Disconnect);
        }
    }
}
