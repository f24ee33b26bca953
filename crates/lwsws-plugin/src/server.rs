//! The `WebSocketServer` table lwsws hands to plugins: one per connection,
//! the callbacks behind its function pointers, and the calls into the
//! plugin's `on_connect` / `on_message` / `on_disconnect`.
//!
//! Lifetime rule (also in the header): the `WebSocketServer *` a plugin gets
//! is valid from `on_connect` until at least [`GRACE`] after its
//! `on_disconnect` returned (or after a declining `on_connect` returned).
//! `send`, `close` and the room functions work from any thread until
//! `on_disconnect` returns; after that they do nothing and return 0.
#![allow(unsafe_code)]

use crate::abi::{self, WebSocketServer};
use crate::load::Table;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use lwsws_ws::OpCode;
use lwsws_ws::conn::ConnHandle;
use lwsws_ws::frame;
use lwsws_ws::protocol::ConnectInfo;
use lwsws_ws::room::Rooms;
use std::ffi::{CStr, CString, c_char, c_int, c_uchar, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a connection's table outlives its `on_disconnect`.
pub(crate) const GRACE: Duration = Duration::from_secs(60);

/// The largest buffer `send` accepts (anything larger is taken as garbage).
const MAX_SEND: usize = 1 << 30;

/// What every connection of one plugin protocol on one vhost shares.
pub(crate) struct VhostShared {
    /// The entry's pvos, for `pvo_get`.
    pub pvos: Vec<(CString, CString)>,
    /// Rooms of this vhost and protocol (`room_join`, `room_send`).
    pub rooms: Rooms,
}

/// The handshake, readable during `on_connect` only.
struct Handshake {
    headers: HeaderMap,
    /// Headers set through `header_set` / `protocol_set`.
    set: HeaderMap,
}

/// One connection's server table, followed by what its callbacks need.
/// `table` must stay the first field: plugins get `&cell.table`, and the
/// callbacks cast it back to the cell.
#[repr(C)]
pub(crate) struct Cell {
    table: WebSocketServer,
    pub conn: Arc<ConnHandle>,
    vhost: Arc<VhostShared>,
    /// Cleared when `on_disconnect` has returned.
    alive: AtomicBool,
    handshake: Mutex<Option<Handshake>>,
    offered: Vec<CString>,
    offered_names: Vec<String>,
    user: Option<CString>,
    /// Strings handed out by `header_get`, kept for the cell's life.
    strings: Mutex<Vec<(String, CString)>>,
    joined: Mutex<Vec<String>>,
}

// SAFETY: `table` holds our own function pointers and a `state` pointer to
// this cell, none of which is written after construction; everything else
// is Send + Sync on its own.
unsafe impl Send for Cell {}
// SAFETY: as above.
unsafe impl Sync for Cell {}

/// The private pointer `on_connect` returned, moved between threads (the
/// plugin's own business; the ABI lets any thread pass it back).
#[derive(Clone, Copy)]
pub(crate) struct Private(pub *mut c_void);
// SAFETY: we never dereference it; it is only given back to the plugin.
unsafe impl Send for Private {}
// SAFETY: as above.
unsafe impl Sync for Private {}

impl Cell {
    pub(crate) fn new(
        conn: Arc<ConnHandle>,
        vhost: Arc<VhostShared>,
        info: &ConnectInfo,
    ) -> Arc<Cell> {
        Arc::new(Cell {
            table: WebSocketServer {
                size: std::mem::size_of::<WebSocketServer>() as u32,
                version: abi::SERVER_VERSION,
                state: std::ptr::null_mut(),
                request: request_get,
                header_get,
                header_set,
                protocol_count,
                protocol_index,
                protocol_set,
                send,
                close,
                room_join,
                room_leave,
                room_send,
                user_get,
                pvo_get,
            },
            conn,
            vhost,
            alive: AtomicBool::new(true),
            handshake: Mutex::new(Some(Handshake {
                headers: info.headers.clone(),
                set: HeaderMap::new(),
            })),
            offered: info
                .offered
                .iter()
                .filter_map(|p| CString::new(p.as_str()).ok())
                .collect(),
            offered_names: info.offered.clone(),
            user: info.user.as_deref().and_then(|u| CString::new(u).ok()),
            strings: Mutex::new(Vec::new()),
            joined: Mutex::new(Vec::new()),
        })
    }

    fn ptr(self: &Arc<Cell>) -> *const WebSocketServer {
        Arc::as_ptr(self).cast::<WebSocketServer>()
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Runs `on_connect` (if the plugin has one) with the handshake
    /// readable; returns the private pointer, or `None` if declined. The
    /// headers the plugin set go to `info.response_headers`.
    pub(crate) fn connect(self: &Arc<Cell>, table: &Table, info: &ConnectInfo) -> Option<Private> {
        let (private, declined) = match table.on_connect {
            Some(f) => {
                // SAFETY: the plugin's on_connect, given our table, which
                // lives as long as the rule in the module comment says.
                let p = unsafe { f(self.ptr()) };
                (p, p.is_null())
            }
            // No on_connect: accepted, with a NULL private pointer.
            None => (std::ptr::null_mut(), false),
        };
        let hs = self.handshake.lock().ok().and_then(|mut h| h.take());
        if declined {
            self.finish();
            return None;
        }
        if let (Some(hs), Ok(mut out)) = (hs, info.response_headers.lock()) {
            for (k, v) in hs.set.iter() {
                out.insert(k.clone(), v.clone());
            }
        }
        Some(Private(private))
    }

    /// Gives one message to `on_message`.
    pub(crate) fn message(
        self: &Arc<Cell>,
        table: &Table,
        private: Private,
        kind: c_int,
        data: &[u8],
    ) {
        // A private, NUL-terminated copy: the plugin may write to it, and C
        // code printing text messages finds a terminator.
        let mut buf = Vec::with_capacity(data.len() + 1);
        buf.extend_from_slice(data);
        buf.push(0);
        // SAFETY: the plugin's on_message with its private pointer, our
        // table and a buffer of `data.len()` bytes it may use during the call.
        let _ = unsafe {
            (table.on_message)(private.0, self.ptr(), kind, buf.as_mut_ptr(), data.len())
        };
    }

    /// Calls `on_disconnect`, then makes the table's functions no-ops.
    pub(crate) fn disconnect(self: &Arc<Cell>, table: &Table, private: Private) {
        if let Some(f) = table.on_disconnect {
            // SAFETY: the plugin's on_disconnect, once, after its last on_message.
            unsafe { f(private.0, self.ptr()) }
        }
        self.finish();
    }

    /// No more calls work; rooms are left; the cell is kept for [`GRACE`].
    fn finish(self: &Arc<Cell>) {
        self.alive.store(false, Ordering::Release);
        if let Ok(mut joined) = self.joined.lock() {
            for name in joined.drain(..) {
                self.vhost.rooms.leave(&name, &self.conn);
            }
        }
        let keep = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    tokio::time::sleep(GRACE).await;
                    drop(keep);
                });
            }
            // No runtime (tests): keep it for the life of the process.
            Err(_) => std::mem::forget(keep),
        }
    }
}

/// The cell behind a table pointer a plugin passed back.
fn cell<'a>(s: *const WebSocketServer) -> Option<&'a Cell> {
    if s.is_null() {
        return None;
    }
    // SAFETY: every table we hand out is the first field of a `Cell`
    // (repr(C)), kept alive per the lifetime rule; a plugin passing any
    // other pointer is outside the ABI.
    Some(unsafe { &*s.cast::<Cell>() })
}

/// A C string argument, if not NULL and UTF-8.
fn arg<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the ABI passes NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// A buffer argument, if sane.
fn buffer<'a>(p: *const c_uchar, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() || len > MAX_SEND {
        return None;
    }
    // SAFETY: the ABI passes `len` readable bytes at `p`.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}

unsafe extern "C" fn request_get(_s: *const WebSocketServer) -> *mut c_void {
    // There is no Apache request_rec here.
    std::ptr::null_mut()
}

unsafe extern "C" fn header_get(s: *const WebSocketServer, key: *const c_char) -> *const c_char {
    let (Some(c), Some(key)) = (cell(s), arg(key)) else {
        return std::ptr::null();
    };
    let value = {
        let Ok(hs) = c.handshake.lock() else {
            return std::ptr::null();
        };
        let Some(hs) = hs.as_ref() else {
            return std::ptr::null();
        };
        let values: Vec<&str> = hs
            .headers
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return std::ptr::null();
        }
        values.join(", ")
    };
    let Ok(mut strings) = c.strings.lock() else {
        return std::ptr::null();
    };
    let lower = key.to_ascii_lowercase();
    if let Some((_, s)) = strings
        .iter()
        .find(|(k, s)| *k == lower && s.as_bytes() == value.as_bytes())
    {
        return s.as_ptr();
    }
    let Ok(cs) = CString::new(value) else {
        return std::ptr::null();
    };
    let ptr = cs.as_ptr();
    strings.push((lower, cs));
    ptr
}

/// Headers a plugin may not set on the 101.
const RESERVED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

unsafe extern "C" fn header_set(
    s: *const WebSocketServer,
    key: *const c_char,
    value: *const c_char,
) {
    let (Some(c), Some(key), Some(value)) = (cell(s), arg(key), arg(value)) else {
        return;
    };
    let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) else {
        return;
    };
    if RESERVED.contains(&name.as_str()) {
        tracing::debug!(header = %name, "plugin header_set ignored for a handshake header");
        return;
    }
    if let Ok(mut hs) = c.handshake.lock()
        && let Some(hs) = hs.as_mut()
    {
        hs.set.insert(name, value);
    }
}

unsafe extern "C" fn protocol_count(s: *const WebSocketServer) -> usize {
    cell(s).map_or(0, |c| c.offered.len())
}

unsafe extern "C" fn protocol_index(s: *const WebSocketServer, i: usize) -> *const c_char {
    cell(s)
        .and_then(|c| c.offered.get(i))
        .map_or(std::ptr::null(), |p| p.as_ptr())
}

unsafe extern "C" fn protocol_set(s: *const WebSocketServer, protocol: *const c_char) {
    let (Some(c), Some(p)) = (cell(s), arg(protocol)) else {
        return;
    };
    // Only a protocol the client offered may be answered.
    if !c.offered_names.iter().any(|o| o == p) {
        return;
    }
    let Ok(v) = HeaderValue::try_from(p) else {
        return;
    };
    if let Ok(mut hs) = c.handshake.lock()
        && let Some(hs) = hs.as_mut()
    {
        hs.set
            .insert(HeaderName::from_static("sec-websocket-protocol"), v);
    }
}

/// Encodes a message of a plugin's `type` as a frame, or `None` if it cannot be sent.
fn encode(kind: c_int, data: &[u8]) -> Option<Bytes> {
    match kind {
        abi::MESSAGE_TYPE_TEXT => std::str::from_utf8(data)
            .ok()
            .map(|_| frame::frame(OpCode::Text, data)),
        abi::MESSAGE_TYPE_BINARY => Some(frame::frame(OpCode::Binary, data)),
        abi::MESSAGE_TYPE_PING if data.len() <= 125 => Some(frame::frame(OpCode::Ping, data)),
        abi::MESSAGE_TYPE_PONG if data.len() <= 125 => Some(frame::frame(OpCode::Pong, data)),
        _ => None,
    }
}

unsafe extern "C" fn send(
    s: *const WebSocketServer,
    kind: c_int,
    buf: *const c_uchar,
    len: usize,
) -> usize {
    let (Some(c), Some(data)) = (cell(s), buffer(buf, len)) else {
        return 0;
    };
    if !c.alive() || c.conn.is_closing() {
        return 0;
    }
    if kind == abi::MESSAGE_TYPE_CLOSE {
        // Payload: optional 2-byte code, then a reason.
        let (code, reason) = if data.len() >= 2 {
            let code = u16::from_be_bytes([data[0], data[1]]);
            let reason = String::from_utf8_lossy(&data[2..data.len().min(125)]).into_owned();
            (code, reason)
        } else {
            (lwsws_ws::close::code::NORMAL, String::new())
        };
        let code = if lwsws_ws::valid_close_code(code, false) {
            code
        } else {
            lwsws_ws::close::code::NORMAL
        };
        c.conn.close(code, &reason);
        return len;
    }
    match encode(kind, data) {
        Some(f) => {
            c.conn.send_frame(f);
            len
        }
        None => 0,
    }
}

unsafe extern "C" fn close(s: *const WebSocketServer) {
    if let Some(c) = cell(s)
        && c.alive()
    {
        c.conn.close(lwsws_ws::close::code::NORMAL, "");
    }
}

unsafe extern "C" fn room_join(s: *const WebSocketServer, name: *const c_char) -> c_int {
    let (Some(c), Some(name)) = (cell(s), arg(name)) else {
        return -1;
    };
    if !c.alive() {
        return -1;
    }
    let Ok(mut joined) = c.joined.lock() else {
        return -1;
    };
    if !joined.iter().any(|j| j == name) {
        c.vhost.rooms.join(name, &c.conn);
        joined.push(name.to_string());
    }
    0
}

unsafe extern "C" fn room_leave(s: *const WebSocketServer, name: *const c_char) -> c_int {
    let (Some(c), Some(name)) = (cell(s), arg(name)) else {
        return -1;
    };
    let Ok(mut joined) = c.joined.lock() else {
        return -1;
    };
    let Some(i) = joined.iter().position(|j| j == name) else {
        return -1;
    };
    joined.remove(i);
    c.vhost.rooms.leave(name, &c.conn);
    0
}

unsafe extern "C" fn room_send(
    s: *const WebSocketServer,
    name: *const c_char,
    kind: c_int,
    buf: *const c_uchar,
    len: usize,
) -> usize {
    let (Some(c), Some(name), Some(data)) = (cell(s), arg(name), buffer(buf, len)) else {
        return 0;
    };
    if !c.alive() {
        return 0;
    }
    let kind = match kind {
        abi::MESSAGE_TYPE_TEXT if std::str::from_utf8(data).is_ok() => OpCode::Text,
        abi::MESSAGE_TYPE_BINARY => OpCode::Binary,
        _ => return 0,
    };
    c.vhost.rooms.send(name, kind, data);
    len
}

unsafe extern "C" fn user_get(s: *const WebSocketServer) -> *const c_char {
    cell(s)
        .and_then(|c| c.user.as_ref())
        .map_or(std::ptr::null(), |u| u.as_ptr())
}

unsafe extern "C" fn pvo_get(s: *const WebSocketServer, name: *const c_char) -> *const c_char {
    let (Some(c), Some(name)) = (cell(s), arg(name)) else {
        return std::ptr::null();
    };
    c.vhost
        .pvos
        .iter()
        .find(|(k, _)| k.as_bytes() == name.as_bytes())
        .map_or(std::ptr::null(), |(_, v)| v.as_ptr())
}
