//! The C ABI of `share/lwsws/include/lwsws_plugin.h`, apache-websocket's
//! `WebSocketPlugin` / `WebSocketServer` with lwsws's additions appended to
//! the server table. Layouts here and in the header must match exactly.

use std::ffi::{c_char, c_int, c_uchar, c_uint, c_void};

/// `MESSAGE_TYPE_TEXT`.
pub const MESSAGE_TYPE_TEXT: c_int = 0;
/// `MESSAGE_TYPE_BINARY`.
pub const MESSAGE_TYPE_BINARY: c_int = 128;
/// `MESSAGE_TYPE_CLOSE`.
pub const MESSAGE_TYPE_CLOSE: c_int = 255;
/// `MESSAGE_TYPE_PING`.
pub const MESSAGE_TYPE_PING: c_int = 256;
/// `MESSAGE_TYPE_PONG`.
pub const MESSAGE_TYPE_PONG: c_int = 257;

/// `WEBSOCKET_PLUGIN_VERSION_0`: the only plugin table version.
pub const PLUGIN_VERSION: c_uint = 0;
/// The server table version (apache-websocket's is 1; lwsws's additions are
/// announced by `size`, not by the version).
pub const SERVER_VERSION: c_uint = 1;

pub type OnConnect = unsafe extern "C" fn(server: *const WebSocketServer) -> *mut c_void;
pub type OnMessage = unsafe extern "C" fn(
    private: *mut c_void,
    server: *const WebSocketServer,
    kind: c_int,
    buffer: *mut c_uchar,
    len: usize,
) -> usize;
pub type OnDisconnect = unsafe extern "C" fn(private: *mut c_void, server: *const WebSocketServer);
pub type Destroy = unsafe extern "C" fn(plugin: *mut WebSocketPlugin);
pub type Init = unsafe extern "C" fn() -> *mut WebSocketPlugin;

/// `struct _WebSocketPlugin`.
#[repr(C)]
pub struct WebSocketPlugin {
    pub size: c_uint,
    pub version: c_uint,
    pub destroy: Option<Destroy>,
    pub on_connect: Option<OnConnect>,
    pub on_message: Option<OnMessage>,
    pub on_disconnect: Option<OnDisconnect>,
}

/// `struct _WebSocketServer`.
#[repr(C)]
pub struct WebSocketServer {
    pub size: c_uint,
    pub version: c_uint,
    pub state: *mut c_void,
    pub request: unsafe extern "C" fn(*const WebSocketServer) -> *mut c_void,
    pub header_get: unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> *const c_char,
    pub header_set: unsafe extern "C" fn(*const WebSocketServer, *const c_char, *const c_char),
    pub protocol_count: unsafe extern "C" fn(*const WebSocketServer) -> usize,
    pub protocol_index: unsafe extern "C" fn(*const WebSocketServer, usize) -> *const c_char,
    pub protocol_set: unsafe extern "C" fn(*const WebSocketServer, *const c_char),
    pub send: unsafe extern "C" fn(*const WebSocketServer, c_int, *const c_uchar, usize) -> usize,
    pub close: unsafe extern "C" fn(*const WebSocketServer),
    // lwsws additions (SPEC §6.4), announced by `size`.
    pub room_join: unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> c_int,
    pub room_leave: unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> c_int,
    pub room_send: unsafe extern "C" fn(
        *const WebSocketServer,
        *const c_char,
        c_int,
        *const c_uchar,
        usize,
    ) -> usize,
    pub user_get: unsafe extern "C" fn(*const WebSocketServer) -> *const c_char,
    pub pvo_get: unsafe extern "C" fn(*const WebSocketServer, *const c_char) -> *const c_char,
}

/// One element of `lwsws_plugin_protocols`, a NULL-terminated array.
#[repr(C)]
pub struct PluginProtocol {
    pub name: *const c_char,
    pub init: Option<Init>,
}

/// The exported array's symbol.
pub const PROTOCOLS_SYMBOL: &[u8] = b"lwsws_plugin_protocols";

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The layouts of `lwsws_plugin.h` on LP64 (and ILP32: pointers scale).
    #[test]
    fn layouts_match_the_header() {
        let p = size_of::<usize>();
        assert_eq!(offset_of!(WebSocketPlugin, destroy), 8);
        assert_eq!(offset_of!(WebSocketPlugin, on_message), 8 + 2 * p);
        assert_eq!(size_of::<WebSocketPlugin>(), 8 + 4 * p);
        assert_eq!(offset_of!(WebSocketServer, state), 8);
        assert_eq!(offset_of!(WebSocketServer, close), 8 + 8 * p);
        // The lwsws additions follow `close`, announced by `size`.
        assert_eq!(offset_of!(WebSocketServer, room_join), 8 + 9 * p);
        assert_eq!(size_of::<WebSocketServer>(), 8 + 14 * p);
        assert_eq!(size_of::<PluginProtocol>(), 2 * p);
    }
}
