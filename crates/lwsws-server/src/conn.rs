//! Connections: the accept loop of one listening socket, and HTTP/1 serving
//! of each accepted connection with hyper.

use crate::State;
use crate::pipeline;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
}

pub(crate) async fn accept_loop(
    listener: Listener,
    index: usize,
    state: Arc<State>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((io, peer)) => {
                let info = ConnInfo {
                    listener: index,
                    peer,
                };
                tracker.spawn(serve(io, info, state.clone(), shutdown.clone()));
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

async fn accept(l: &Listener) -> std::io::Result<(Box<dyn Io>, Option<SocketAddr>)> {
    match l {
        Listener::Tcp(t) => {
            let (s, peer) = t.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Box::new(s), Some(peer)))
        }
        Listener::Unix(u) => {
            let (s, _) = u.accept().await?;
            Ok((Box::new(s), None))
        }
    }
}

async fn serve(io: Box<dyn Io>, info: ConnInfo, state: Arc<State>, shutdown: CancellationToken) {
    let info = Arc::new(info);
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
        .header_read_timeout(state.config.global.timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = ?info.peer, error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
