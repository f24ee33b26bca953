//! The plugin ABI's inputs that take bytes (SPEC §6.4): the host side of the
//! `WebSocketServer` table — `header_get`, `header_set`, `protocol_set`,
//! `protocol_index`, `pvo_get`, `user_get`, `send`, `close`, `room_join`,
//! `room_leave`, `room_send` — called with strings and buffers chosen by the
//! input, from a plugin linked into this target (`lwsws_plugin::from_init`),
//! around the host's own `on_connect` / `on_message` / `on_disconnect` calls
//! with the handshake, pvos and messages the input gives.
//!
//! Input, one item per line, by its first byte:
//! - set-up: `h` `name: value` (handshake header), `o` name (offered
//!   subprotocol), `u` user, `v` `name=value` (the entry's pvo);
//! - the plugin's calls, made in `on_connect` until the first `M`, then in
//!   the `on_message` of the `M` before them: `G` key (header_get), `S`
//!   `key:value` (header_set), `P` name (protocol_set), `I` index
//!   (protocol_count / protocol_index), `V` name (pvo_get), `U` (user_get),
//!   `J` / `L` room (room_join / room_leave), `R` kind room`:`data
//!   (room_send), `T` kind data (send), `N` kind (send of NULL), `C` (close),
//!   `X` (on_connect declines);
//! - `M` kind data: a message from the client to the plugin.
//!
//! kind is `t` text, `b` binary, `c` close, `p` ping, `o` pong, or another
//! byte (an invalid type).
//!
//! Invariants: never panics or crashes; every call answers as the header
//! documents (a string the host returns is a valid C string equal to what
//! it stands for; `send` returns the length or 0; rooms return 0 or -1);
//! reserved headers and unoffered subprotocols never reach the 101; after
//! `on_disconnect` returns, every call does nothing.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lwsws_plugin::abi::{self, WebSocketPlugin, WebSocketServer};
use lwsws_ws::conn::ConnHandle;
use lwsws_ws::protocol::{ConnectInfo, Incoming, Protocol, VhostContext};
use lwsws_ws::room::Hub;
use lwsws_ws::stats::Stats;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_int, c_uchar, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// One call the plugin makes.
#[derive(Debug, Clone)]
enum Op {
    HeaderGet(Vec<u8>),
    HeaderSet(Vec<u8>, Vec<u8>),
    ProtocolSet(Vec<u8>),
    ProtocolIndex(usize),
    PvoGet(Vec<u8>),
    UserGet,
    RoomJoin(Vec<u8>),
    RoomLeave(Vec<u8>),
    RoomSend(c_int, Vec<u8>, Vec<u8>),
    Send(c_int, Vec<u8>),
    SendNull(c_int),
    Close,
    Decline,
}

/// What the plugin's callbacks know of the iteration (they run on this
/// thread, except `on_disconnect`).
#[derive(Default)]
struct Expect {
    headers: http::HeaderMap,
    offered: Vec<String>,
    user: Option<String>,
    pvos: Vec<(String, String)>,
    /// Ops for `on_connect`, then for each message in turn.
    connect_ops: Vec<Op>,
    message_ops: VecDeque<Vec<Op>>,
    /// The table `on_connect` was given.
    server: Option<usize>,
    joined: Vec<Vec<u8>>,
}

thread_local! {
    static EXPECT: RefCell<Expect> = RefCell::new(Expect::default());
}

static DISCONNECTED: AtomicBool = AtomicBool::new(false);

/// A C string of `b` up to its first NUL.
fn cstring(b: &[u8]) -> CString {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    CString::new(&b[..end]).unwrap()
}

unsafe fn text<'a>(p: *const std::ffi::c_char) -> Option<&'a [u8]> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// Runs the plugin's calls; `true` if `on_connect` is to decline.
unsafe fn run(s: *const WebSocketServer, ops: &[Op], in_connect: bool) -> bool {
    let t = unsafe { &*s };
    let mut decline = false;
    for op in ops {
        match op {
            Op::HeaderGet(key) => {
                let k = cstring(key);
                let got = unsafe { (t.header_get)(s, k.as_ptr()) };
                let want = EXPECT.with_borrow(|e| {
                    let k = std::str::from_utf8(k.as_bytes()).ok()?;
                    let values: Vec<&str> = e
                        .headers
                        .get_all(k)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    (!values.is_empty() && in_connect).then(|| values.join(", "))
                });
                let want = want.filter(|w| !w.contains('\0'));
                assert_eq!(
                    unsafe { text(got) },
                    want.as_deref().map(str::as_bytes),
                    "header_get({k:?})"
                );
                if !got.is_null() {
                    let again = unsafe { (t.header_get)(s, k.as_ptr()) };
                    assert_eq!(
                        got, again,
                        "header_get gave another string for the same value"
                    );
                }
            }
            Op::HeaderSet(k, v) => {
                let (k, v) = (cstring(k), cstring(v));
                unsafe { (t.header_set)(s, k.as_ptr(), v.as_ptr()) };
            }
            Op::ProtocolSet(p) => {
                let p = cstring(p);
                unsafe { (t.protocol_set)(s, p.as_ptr()) };
            }
            Op::ProtocolIndex(i) => {
                let n = unsafe { (t.protocol_count)(s) };
                let offered = EXPECT.with_borrow(|e| {
                    e.offered
                        .iter()
                        .filter(|o| !o.contains('\0'))
                        .cloned()
                        .collect::<Vec<_>>()
                });
                assert_eq!(n, offered.len());
                let got = unsafe { text((t.protocol_index)(s, *i)) };
                assert_eq!(got, offered.get(*i).map(|o| o.as_bytes()));
            }
            Op::PvoGet(name) => {
                let name = cstring(name);
                let got = unsafe { text((t.pvo_get)(s, name.as_ptr())) };
                let want = EXPECT.with_borrow(|e| {
                    e.pvos
                        .iter()
                        .filter(|(k, v)| !k.contains('\0') && !v.contains('\0'))
                        .find(|(k, _)| k.as_bytes() == name.as_bytes())
                        .map(|(_, v)| v.clone())
                });
                assert_eq!(got, want.as_deref().map(str::as_bytes), "pvo_get({name:?})");
            }
            Op::UserGet => {
                let got = unsafe { text((t.user_get)(s)) };
                let want = EXPECT.with_borrow(|e| e.user.clone().filter(|u| !u.contains('\0')));
                assert_eq!(got, want.as_deref().map(str::as_bytes));
            }
            Op::RoomJoin(name) => {
                let n = cstring(name);
                let r = unsafe { (t.room_join)(s, n.as_ptr()) };
                let utf8 = std::str::from_utf8(n.as_bytes()).is_ok();
                assert_eq!(r, if utf8 { 0 } else { -1 }, "room_join({n:?})");
                if utf8 {
                    EXPECT.with_borrow_mut(|e| {
                        if !e.joined.contains(&n.as_bytes().to_vec()) {
                            e.joined.push(n.as_bytes().to_vec());
                        }
                    });
                }
            }
            Op::RoomLeave(name) => {
                let n = cstring(name);
                let r = unsafe { (t.room_leave)(s, n.as_ptr()) };
                let was = EXPECT.with_borrow_mut(|e| {
                    let i = e.joined.iter().position(|j| j == n.as_bytes());
                    i.map(|i| e.joined.remove(i)).is_some()
                });
                assert_eq!(r, if was { 0 } else { -1 }, "room_leave({n:?})");
            }
            Op::RoomSend(kind, name, data) => {
                let n = cstring(name);
                let r = unsafe { (t.room_send)(s, n.as_ptr(), *kind, data.as_ptr(), data.len()) };
                assert!(r == 0 || r == data.len(), "room_send returned {r}");
            }
            Op::Send(kind, data) => {
                let r = unsafe { (t.send)(s, *kind, data.as_ptr(), data.len()) };
                assert!(r == 0 || r == data.len(), "send returned {r}");
                if *kind == abi::MESSAGE_TYPE_TEXT && std::str::from_utf8(data).is_err() {
                    assert_eq!(r, 0, "send of text that is not UTF-8");
                }
            }
            Op::SendNull(kind) => {
                let r = unsafe { (t.send)(s, *kind, std::ptr::null(), 10) };
                assert_eq!(r, 0, "send of NULL");
                let r = unsafe { (t.room_send)(s, c"r".as_ptr(), *kind, std::ptr::null(), 10) };
                assert_eq!(r, 0, "room_send of NULL");
                // NULL strings.
                assert!(unsafe { (t.header_get)(s, std::ptr::null()) }.is_null());
                assert!(unsafe { (t.pvo_get)(s, std::ptr::null()) }.is_null());
                assert_eq!(unsafe { (t.room_join)(s, std::ptr::null()) }, -1);
                unsafe { (t.header_set)(s, std::ptr::null(), c"x".as_ptr()) };
                unsafe { (t.protocol_set)(s, std::ptr::null()) };
            }
            Op::Close => unsafe { (t.close)(s) },
            Op::Decline => decline = true,
        }
    }
    decline
}

unsafe extern "C" fn on_connect(s: *const WebSocketServer) -> *mut c_void {
    let ops = EXPECT.with_borrow_mut(|e| {
        e.server = Some(s as usize);
        std::mem::take(&mut e.connect_ops)
    });
    if unsafe { run(s, &ops, true) } {
        std::ptr::null_mut()
    } else {
        // Any non-NULL private pointer.
        std::ptr::NonNull::<u8>::dangling().as_ptr().cast()
    }
}

unsafe extern "C" fn on_message(
    _private: *mut c_void,
    s: *const WebSocketServer,
    _kind: c_int,
    buffer: *mut c_uchar,
    len: usize,
) -> usize {
    // The host's copy is NUL-terminated and writable.
    let b = unsafe { std::slice::from_raw_parts_mut(buffer, len + 1) };
    assert_eq!(b[len], 0);
    b.fill(0xAA);
    b[len] = 0;
    let ops = EXPECT.with_borrow_mut(|e| e.message_ops.pop_front().unwrap_or_default());
    unsafe { run(s, &ops, false) };
    0
}

unsafe extern "C" fn on_disconnect(_private: *mut c_void, s: *const WebSocketServer) {
    // Still usable during on_disconnect (it runs on another thread: no ops).
    let t = unsafe { &*s };
    let _ = unsafe { (t.send)(s, abi::MESSAGE_TYPE_TEXT, b"bye".as_ptr(), 3) };
    DISCONNECTED.store(true, Ordering::Release);
}

static PLUGIN: WebSocketPlugin = WebSocketPlugin {
    size: std::mem::size_of::<WebSocketPlugin>() as u32,
    version: abi::PLUGIN_VERSION,
    destroy: None,
    on_connect: Some(on_connect),
    on_message: Some(on_message),
    on_disconnect: Some(on_disconnect),
};

unsafe extern "C" fn init() -> *mut WebSocketPlugin {
    (&raw const PLUGIN).cast_mut()
}

fn protocol() -> &'static Arc<dyn Protocol> {
    static P: OnceLock<Arc<dyn Protocol>> = OnceLock::new();
    P.get_or_init(|| lwsws_plugin::from_init("fuzz-plugin", init).unwrap())
}

/// One runtime for every iteration (its blocking threads are reused), with
/// a paused clock that jumps ahead whenever the runtime is idle.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    })
}

fn kind(b: Option<&u8>) -> c_int {
    match b {
        Some(b't') => abi::MESSAGE_TYPE_TEXT,
        Some(b'b') => abi::MESSAGE_TYPE_BINARY,
        Some(b'c') => abi::MESSAGE_TYPE_CLOSE,
        Some(b'p') => abi::MESSAGE_TYPE_PING,
        Some(b'o') => abi::MESSAGE_TYPE_PONG,
        Some(&other) => c_int::from(other),
        None => -1,
    }
}

fn split(b: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == sep) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut e = Expect::default();
    let mut messages: Vec<(c_int, Vec<u8>)> = Vec::new();
    let mut ops = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&tag, rest)) = line.split_first() else {
            continue;
        };
        let arg = rest.to_vec();
        let op = match tag {
            b'h' => {
                let (k, v) = split(rest, b':');
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.trim_ascii()),
                    http::HeaderValue::from_bytes(v.trim_ascii()),
                ) {
                    e.headers.append(k, v);
                }
                continue;
            }
            b'o' => {
                e.offered.push(String::from_utf8_lossy(rest).into_owned());
                continue;
            }
            b'u' => {
                e.user = Some(String::from_utf8_lossy(rest).into_owned());
                continue;
            }
            b'v' => {
                let (k, v) = split(rest, b'=');
                e.pvos.push((
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
                continue;
            }
            b'M' => {
                if messages.is_empty() {
                    e.connect_ops = std::mem::take(&mut ops);
                } else {
                    e.message_ops.push_back(std::mem::take(&mut ops));
                }
                messages.push((kind(rest.first()), rest.get(1..).unwrap_or(&[]).to_vec()));
                continue;
            }
            b'G' => Op::HeaderGet(arg),
            b'S' => {
                let (k, v) = split(rest, b':');
                Op::HeaderSet(k.to_vec(), v.to_vec())
            }
            b'P' => Op::ProtocolSet(arg),
            b'I' => Op::ProtocolIndex(rest.first().map_or(0, |&b| usize::from(b % 8))),
            b'V' => Op::PvoGet(arg),
            b'U' => Op::UserGet,
            b'J' => Op::RoomJoin(arg),
            b'L' => Op::RoomLeave(arg),
            b'R' => {
                let (name, data) = split(rest.get(1..).unwrap_or(&[]), b':');
                Op::RoomSend(kind(rest.first()), name.to_vec(), data.to_vec())
            }
            b'T' => Op::Send(kind(rest.first()), rest.get(1..).unwrap_or(&[]).to_vec()),
            b'N' => Op::SendNull(kind(rest.first())),
            b'C' => Op::Close,
            b'X' => Op::Decline,
            _ => continue,
        };
        ops.push(op);
    }
    if messages.is_empty() {
        e.connect_ops = ops;
    } else {
        e.message_ops.push_back(ops);
    }

    let hub = Hub::local();
    let vhost = protocol().for_vhost(VhostContext {
        vhost: "localhost",
        pvos: &e.pvos,
        stats: Arc::new(Stats::new(Vec::new())),
        broadcast: hub.clone(),
    });
    let info = ConnectInfo {
        user: e.user.clone(),
        headers: e.headers.clone(),
        offered: e.offered.clone(),
        ..ConnectInfo::default()
    };
    let offered = e.offered.clone();
    EXPECT.set(e);
    DISCONNECTED.store(false, Ordering::Release);

    // A runtime only around connecting and closing: the host keeps a
    // finished table alive for a grace period with a task, and queues
    // on_disconnect on a blocking thread. Messages are delivered without
    // one, so on_message runs here, in order. The runtime's clock is paused:
    // sleeping past the grace period at the end ends those tasks at once.
    let rt = runtime();
    let conn = ConnHandle::new(info.user.clone());
    let session = {
        let _g = rt.enter();
        vhost.connect(&conn, &info)
    };
    let server = EXPECT.with_borrow(|e| e.server).unwrap() as *const WebSocketServer;

    // What the plugin set on the 101.
    for (name, value) in info.response_headers.lock().unwrap().iter() {
        assert!(
            ![
                "upgrade",
                "connection",
                "sec-websocket-accept",
                "sec-websocket-extensions",
                "content-length",
                "transfer-encoding",
            ]
            .contains(&name.as_str()),
            "a plugin set {name} on the 101"
        );
        if name == "sec-websocket-protocol" {
            let v = value.to_str().unwrap();
            assert!(
                offered.iter().any(|o| o == v),
                "answered an unoffered {v:?}"
            );
        }
    }

    let finished = match session {
        None => true,
        Some(mut s) => {
            for (k, data) in messages {
                let data = Bytes::from(data);
                let msg = if k == abi::MESSAGE_TYPE_TEXT && std::str::from_utf8(&data).is_ok() {
                    Incoming::Text(data)
                } else {
                    Incoming::Binary(data)
                };
                s.on_message(&conn, msg);
            }
            let _g = rt.enter();
            s.on_close(&conn);
            drop(s);
            false
        }
    };
    rt.block_on(async {
        // Wait for on_disconnect and the host's clean-up after it (which
        // starts the grace-period task last).
        if !finished {
            while !DISCONNECTED.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
        }
        while rt.metrics().num_alive_tasks() == 0 {
            tokio::task::yield_now().await;
        }
        // The table still exists (the grace task holds it) but does nothing.
        let t = unsafe { &*server };
        assert_eq!(
            unsafe { (t.send)(server, abi::MESSAGE_TYPE_BINARY, b"x".as_ptr(), 1) },
            0
        );
        assert_eq!(unsafe { (t.room_join)(server, c"late".as_ptr()) }, -1);
        assert_eq!(
            unsafe {
                (t.room_send)(
                    server,
                    c"late".as_ptr(),
                    abi::MESSAGE_TYPE_BINARY,
                    b"x".as_ptr(),
                    1,
                )
            },
            0
        );
        // Past the grace period: the table is freed.
        tokio::time::sleep(std::time::Duration::from_secs(61)).await;
        while rt.metrics().num_alive_tasks() != 0 {
            tokio::task::yield_now().await;
        }
    });
    drop(vhost);
});
