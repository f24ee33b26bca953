//! `lwsws-chat`: an example WebSocket plugin written in Rust against the C
//! ABI of `share/lwsws/include/lwsws_plugin.h` (no lwsws crate is linked;
//! the tables are declared here as any foreign plugin would).
//!
//! Every connection joins the room named by the entry's pvo `room`
//! (default `lobby`, or `?room=` is not looked at: rooms are per entry);
//! each text message is sent to every member as `NAME: TEXT`, where NAME is
//! the authenticated user or `guest`. Binary messages are ignored.
//!
//! Build: `cargo build -p lwsws-plugin-chat` → `liblwsws_plugin_chat.so`;
//! put it in a `plugin-dir`.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uchar, c_uint, c_void};

const MESSAGE_TYPE_TEXT: c_int = 0;

#[repr(C)]
pub struct WebSocketServer {
    size: c_uint,
    version: c_uint,
    state: *mut c_void,
    request: *const c_void,
    header_get: *const c_void,
    header_set: *const c_void,
    protocol_count: *const c_void,
    protocol_index: *const c_void,
    protocol_set: *const c_void,
    send:
        Option<unsafe extern "C" fn(*const WebSocketServer, c_int, *const c_uchar, usize) -> usize>,
    close: Option<unsafe extern "C" fn(*const WebSocketServer)>,
    room_join: Option<unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> c_int>,
    room_leave: Option<unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> c_int>,
    room_send: Option<
        unsafe extern "C" fn(
            *const WebSocketServer,
            *const c_char,
            c_int,
            *const c_uchar,
            usize,
        ) -> usize,
    >,
    user_get: Option<unsafe extern "C" fn(*const WebSocketServer) -> *const c_char>,
    pvo_get: Option<unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> *const c_char>,
}

#[repr(C)]
pub struct WebSocketPlugin {
    size: c_uint,
    version: c_uint,
    destroy: Option<unsafe extern "C" fn(*mut WebSocketPlugin)>,
    on_connect: Option<unsafe extern "C" fn(*const WebSocketServer) -> *mut c_void>,
    on_message: Option<
        unsafe extern "C" fn(
            *mut c_void,
            *const WebSocketServer,
            c_int,
            *mut c_uchar,
            usize,
        ) -> usize,
    >,
    on_disconnect: Option<unsafe extern "C" fn(*mut c_void, *const WebSocketServer)>,
}

#[repr(C)]
pub struct PluginProtocol {
    name: *const c_char,
    init: Option<unsafe extern "C" fn() -> *mut WebSocketPlugin>,
}

/// The exported array; a wrapper so that a static may hold raw pointers.
#[repr(transparent)]
pub struct Protocols([PluginProtocol; 2]);
// SAFETY: the array is immutable and points at static data only.
unsafe impl Sync for Protocols {}

#[unsafe(no_mangle)]
pub static lwsws_plugin_protocols: Protocols = Protocols([
    PluginProtocol {
        name: c"lwsws-chat".as_ptr(),
        init: Some(chat_init),
    },
    PluginProtocol {
        name: std::ptr::null(),
        init: None,
    },
]);

/// Static tables must be Sync; this one holds only function pointers.
#[repr(transparent)]
struct Table(std::cell::UnsafeCell<WebSocketPlugin>);
// SAFETY: never written after initialisation.
unsafe impl Sync for Table {}

static PLUGIN: Table = Table(std::cell::UnsafeCell::new(WebSocketPlugin {
    size: std::mem::size_of::<WebSocketPlugin>() as c_uint,
    version: 0,
    destroy: None,
    on_connect: Some(on_connect),
    on_message: Some(on_message),
    on_disconnect: Some(on_disconnect),
}));

/// Per-connection state: the room joined and the name shown.
struct Member {
    room: std::ffi::CString,
    name: String,
}

/// True if the server's table has the field ending at `end` bytes.
fn has(server: &WebSocketServer, end: usize) -> bool {
    server.size as usize >= end
}

/// # Safety
/// Called by the server with its table.
unsafe extern "C" fn on_connect(server: *const WebSocketServer) -> *mut c_void {
    // SAFETY: the server passes a valid table for the call's duration.
    let Some(s) = (unsafe { server.as_ref() }) else {
        return std::ptr::null_mut();
    };
    let end = std::mem::offset_of!(WebSocketServer, pvo_get) + std::mem::size_of::<usize>();
    // Needs lwsws's room functions (not there under mod_websocket).
    if !has(s, end) {
        return std::ptr::null_mut();
    }
    let (Some(join), Some(user_get), Some(pvo_get)) = (s.room_join, s.user_get, s.pvo_get) else {
        return std::ptr::null_mut();
    };
    // SAFETY: strings returned by the server are NUL-terminated or NULL.
    let text = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_owned());
    // SAFETY: server functions called with the server's own table.
    let room =
        text(unsafe { pvo_get(server, c"room".as_ptr()) }).unwrap_or_else(|| c"lobby".to_owned());
    // SAFETY: as above.
    let name = text(unsafe { user_get(server) })
        .map(|u| u.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest".into());
    // SAFETY: as above.
    if unsafe { join(server, room.as_ptr()) } != 0 {
        return std::ptr::null_mut();
    }
    Box::into_raw(Box::new(Member { room, name })).cast()
}

/// # Safety
/// Called by the server with the private pointer `on_connect` returned.
unsafe extern "C" fn on_message(
    private: *mut c_void,
    server: *const WebSocketServer,
    kind: c_int,
    buffer: *mut c_uchar,
    len: usize,
) -> usize {
    if private.is_null() || server.is_null() || kind != MESSAGE_TYPE_TEXT || buffer.is_null() {
        return 0;
    }
    // SAFETY: our own Member, alive until on_disconnect.
    let m = unsafe { &*private.cast::<Member>() };
    // SAFETY: the server passes `len` bytes at `buffer`, and its table.
    let (data, s) = unsafe { (std::slice::from_raw_parts(buffer, len), &*server) };
    let Some(send) = s.room_send else {
        return 0;
    };
    let mut line = Vec::with_capacity(m.name.len() + 2 + len);
    line.extend_from_slice(m.name.as_bytes());
    line.extend_from_slice(b": ");
    line.extend_from_slice(data);
    // SAFETY: server function with its table and our buffer.
    unsafe {
        send(
            server,
            m.room.as_ptr(),
            MESSAGE_TYPE_TEXT,
            line.as_ptr(),
            line.len(),
        )
    }
}

/// # Safety
/// Called once per accepted connection, last.
unsafe extern "C" fn on_disconnect(private: *mut c_void, _server: *const WebSocketServer) {
    if !private.is_null() {
        // SAFETY: the Box from on_connect, freed once; the server leaves
        // the room itself.
        drop(unsafe { Box::from_raw(private.cast::<Member>()) });
    }
}

/// # Safety
/// The plugin's init function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn chat_init() -> *mut WebSocketPlugin {
    PLUGIN.0.get()
}
