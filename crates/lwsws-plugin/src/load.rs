//! Loading plugin libraries: `dlopen`, the init symbol, the
//! `lwsws_plugin_protocols` array, and checking the plugin table they return.
//!
//! Libraries are never unloaded: a plugin may have started threads that
//! still run code of the library, so a worker keeps every library it loaded
//! until it exits (a reload starts a new worker, which loads them afresh).
#![allow(unsafe_code)]

use crate::abi::{self, Init, WebSocketPlugin};
use libloading::Library;
use std::ffi::CStr;
use std::mem::offset_of;
use std::path::Path;
use std::sync::Arc;

/// Bound on the entries read from `lwsws_plugin_protocols` (a missing NULL
/// terminator must not walk through memory forever).
const MAX_PROTOCOLS: usize = 256;

/// An open library, kept loaded for the life of the process.
#[derive(Clone)]
pub(crate) struct Lib(Arc<Library>);

impl Lib {
    /// Opens a library for serving: it stays loaded.
    pub(crate) fn open(path: &Path) -> Result<Lib, String> {
        let lib = Lib::open_for_check(path)?;
        // Never unloaded (see the module comment).
        std::mem::forget(lib.0.clone());
        Ok(lib)
    }

    /// Opens a library for a check (`--check`, the supervisor's reload
    /// validation): unloaded when the last clone is dropped, so that the
    /// next check reads the file afresh (`dlopen` of a loaded path would
    /// return the old version).
    pub(crate) fn open_for_check(path: &Path) -> Result<Lib, String> {
        // SAFETY: loading a library runs its initialisers; the library is the
        // administrator's plugin, which is trusted code by configuration.
        let lib = unsafe { Library::new(path) }.map_err(|e| e.to_string())?;
        Ok(Lib(Arc::new(lib)))
    }

    /// The init function named `symbol`.
    pub(crate) fn init(&self, symbol: &str) -> Result<Init, String> {
        // SAFETY: the symbol is declared `WebSocketPlugin *NAME(void)` by the
        // ABI; the function pointer stays valid since the library is never
        // unloaded.
        let f = unsafe { self.0.get::<Init>(symbol.as_bytes()) }.map_err(|e| e.to_string())?;
        Ok(*f)
    }

    /// The `(name, init)` pairs of `lwsws_plugin_protocols`, or `Ok(None)`
    /// when the library does not export it.
    pub(crate) fn protocols(&self) -> Result<Option<Vec<(String, Init)>>, String> {
        // SAFETY: the symbol's address is that of the array (a data symbol).
        let sym = match unsafe {
            self.0
                .get::<*const abi::PluginProtocol>(abi::PROTOCOLS_SYMBOL)
        } {
            Ok(s) => s,
            Err(_) => return Ok(None),
        };
        let mut at: *const abi::PluginProtocol = *sym;
        if at.is_null() {
            return Err("lwsws_plugin_protocols is NULL".into());
        }
        let mut out = Vec::new();
        for _ in 0..MAX_PROTOCOLS {
            // SAFETY: the ABI says the array is NULL-terminated; we read up
            // to its terminator, bounded by MAX_PROTOCOLS.
            let entry = unsafe { &*at };
            if entry.name.is_null() {
                return Ok(Some(out));
            }
            // SAFETY: a non-NULL name is a NUL-terminated string of the library.
            let name = unsafe { CStr::from_ptr(entry.name) };
            let name = name
                .to_str()
                .map_err(|_| "a protocol name is not UTF-8".to_string())?;
            if name.is_empty() || name.contains([',', ' ']) {
                return Err(format!("invalid protocol name \"{name}\""));
            }
            let Some(init) = entry.init else {
                return Err(format!("protocol \"{name}\" has a NULL init"));
            };
            out.push((name.to_string(), init));
            // SAFETY: not past the terminator yet, so the next element exists.
            at = unsafe { at.add(1) };
        }
        Err(format!(
            "lwsws_plugin_protocols has no NULL terminator within {MAX_PROTOCOLS} entries"
        ))
    }
}

/// A plugin table checked and copied out of the library.
pub(crate) struct Table {
    pub ptr: *mut WebSocketPlugin,
    pub destroy: Option<abi::Destroy>,
    pub on_connect: Option<abi::OnConnect>,
    pub on_message: abi::OnMessage,
    pub on_disconnect: Option<abi::OnDisconnect>,
}

/// Calls `init` and checks what it returns: not NULL, version 0, a size
/// that covers `on_message`, and an `on_message`. Fields beyond the table's
/// `size` are taken as NULL.
pub(crate) fn call_init(init: Init) -> Result<Table, String> {
    // SAFETY: `init` is the plugin's `WebSocketPlugin *NAME(void)`.
    let ptr = unsafe { init() };
    if ptr.is_null() {
        return Err("the init function returned NULL".into());
    }
    // SAFETY: a non-NULL result points at a WebSocketPlugin; its first two
    // fields exist in every version of the table, and the others are read
    // only when `size` says they are there.
    let p = unsafe { &*ptr };
    if p.version != abi::PLUGIN_VERSION {
        return Err(format!(
            "unsupported WebSocketPlugin version {} (expected 0)",
            p.version
        ));
    }
    let size = p.size as usize;
    let has = |end: usize| size >= end;
    let ptr_len = std::mem::size_of::<usize>();
    if !has(offset_of!(WebSocketPlugin, on_message) + ptr_len) {
        return Err(format!(
            "WebSocketPlugin size {size} is too small (expected {})",
            std::mem::size_of::<WebSocketPlugin>()
        ));
    }
    let Some(on_message) = p.on_message else {
        return Err("the plugin has no on_message function".into());
    };
    let on_disconnect = if has(offset_of!(WebSocketPlugin, on_disconnect) + ptr_len) {
        p.on_disconnect
    } else {
        None
    };
    Ok(Table {
        ptr,
        destroy: p.destroy,
        on_connect: p.on_connect,
        on_message,
        on_disconnect,
    })
}

impl Table {
    /// Calls the plugin's `destroy`, if any.
    pub(crate) fn destroy(&self) {
        if let Some(d) = self.destroy {
            // SAFETY: `destroy` takes the table `init` returned, once.
            unsafe { d(self.ptr) }
        }
    }
}

// SAFETY: the table's pointer is only passed back to the plugin's own
// `destroy`; the ABI requires plugin callbacks to be callable from any
// thread (apache-websocket calls them from its worker threads).
unsafe impl Send for Table {}
// SAFETY: as above; the table is never written to after loading.
unsafe impl Sync for Table {}
