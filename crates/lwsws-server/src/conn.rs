//! Connections: the accept loop of one listening socket, and HTTP/1 serving
//! of each accepted connection with hyper.

use crate::State;
use crate::guard::{ConnHandle, GuardedIo, Limits};
use crate::pipeline;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// A listening socket registered with the runtime.
pub(crate) enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    pub fn from_socket(s: crate::Socket) -> std::io::Result<Listener> {
        Ok(match s {
            crate::Socket::Tcp(t) => {
                t.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(t)?)
            }
            crate::Socket::Unix(u) => {
                u.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(u)?)
            }
        })
    }
}

/// What the pipeline knows about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// Index of the listener in the router.
    pub listener: usize,
    /// The client's address; `None` on a Unix socket.
    pub peer: Option<SocketAddr>,
    /// Our address on this connection (its port is `SERVER_PORT`).
    pub local: Option<SocketAddr>,
    /// Shared with the head guard of this connection: why it refused a head,
    /// and where the pipeline marks an upgrade.
    pub handle: ConnHandle,
}

/// Accepts until the worker drains. The listening socket itself stays open
/// in the supervisor and the next generation, so nothing queued is lost.
pub(crate) async fn accept_loop(listener: Listener, index: usize, state: Arc<State>) {
    let drain = state.control.drain.clone();
    loop {
        let accepted = tokio::select! {
            _ = drain.cancelled() => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((io, peer, local)) => {
                state
                    .tasks
                    .spawn(serve(io, index, peer, local, state.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A boxed stream so TCP and Unix connections share one serving path.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

type Accepted = (Box<dyn Io>, Option<SocketAddr>, Option<SocketAddr>);

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Tcp(t) => {
            let (s, peer) = t.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().ok().map(unmap);
            Ok((Box::new(s), Some(unmap(peer)), local))
        }
        Listener::Unix(u) => {
            let (s, _) = u.accept().await?;
            Ok((Box::new(s), None, None))
        }
    }
}

/// Request heads are checked by the guard, which also enforces the head and
/// keep-alive timeouts (hyper's own header timer is off).
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_URI: usize = 8 * 1024;

/// On a dual-stack socket IPv4 peers appear as `::ffff:a.b.c.d`; everything
/// downstream (logs, CGI, limits) wants the plain IPv4 address.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

async fn serve(
    io: Box<dyn Io>,
    listener: usize,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    state: Arc<State>,
) {
    let limits = Limits {
        max_head: MAX_HEAD,
        max_headers: MAX_HEADERS,
        max_uri: MAX_URI,
        head_timeout: state.config.global.timeout,
        keepalive: state.keepalive[listener],
    };
    let _counted = lwsws_ws::stats::Counted::new(&state.stats.http_connections);
    let (io, handle) = GuardedIo::new(io, limits);
    let info = Arc::new(ConnInfo {
        listener,
        peer,
        local,
        handle,
    });
    let service = {
        let state = state.clone();
        let info = info.clone();
        hyper::service::service_fn(move |req| {
            let state = state.clone();
            let info = info.clone();
            async move { Ok::<_, std::convert::Infallible>(pipeline::handle(&state, &info, req).await) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    // Draining needs nothing here: the pipeline answers with `Connection:
    // close` and the guard's keep-alive timer ends idle connections, so a
    // request already on its way is never cut. Only close shuts idle ones.
    let close = state.control.close.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = ?info.peer, error = %e, "connection ended with an error");
            }
        }
        _ = close.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
