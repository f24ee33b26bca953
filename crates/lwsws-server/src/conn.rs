//! Connections: the accept loop of one listening socket, and HTTP/1 serving
//! of each accepted connection with hyper.

use crate::State;
use crate::guard::{ConnHandle, GuardedIo, Limits};
use crate::pipeline;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

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

/// What the TLS handshake settled.
#[derive(Debug, Clone)]
pub(crate) struct TlsInfo {
    /// The vhost the SNI chose (the first one of the listener without SNI).
    pub sni_vhost: usize,
    /// The verified client certificate's subject, RFC 4514.
    pub client_subject: Option<String>,
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
    /// `Some` on a TLS connection.
    pub tls: Option<TlsInfo>,
    /// A plaintext connection let in on a TLS port (`allow-non-tls`).
    pub plain_on_tls: bool,
    /// HTTP/2 (ALPN `h2`).
    pub h2: bool,
    /// The scheme a trusted balancer's `X-Forwarded-Proto` names (true:
    /// https), for this request.
    pub forwarded_https: Option<bool>,
    /// What the connection holds (its `max-connections` place, its
    /// `ip-limit-wsi` slot): released when the connection ends, or taken by
    /// the WebSocket the connection becomes.
    pub held: Arc<std::sync::Mutex<Held>>,
}

/// A connection's share of the worker's limits, returned when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Its place under `max-connections`.
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Its `ip-limit-wsi` slot.
    pub slot: Option<crate::client::Slot>,
}

impl ConnInfo {
    /// Whether the client reached us over https (here, or at a trusted
    /// balancer in front).
    pub fn https(&self) -> bool {
        self.forwarded_https.unwrap_or(self.tls.is_some())
    }

    #[cfg(test)]
    pub fn for_tests(peer: Option<SocketAddr>) -> ConnInfo {
        ConnInfo {
            listener: 0,
            peer,
            local: None,
            handle: ConnHandle::detached(),
            tls: None,
            plain_on_tls: false,
            h2: false,
            forwarded_https: None,
            held: Arc::default(),
        }
    }

    /// What the connection holds, for a task that outlives the HTTP
    /// connection (a WebSocket). An HTTP/2 connection keeps its place: it
    /// lives as long as the streams it carries.
    pub fn take_held(&self) -> Held {
        let Ok(mut h) = self.held.lock() else {
            return Held::default();
        };
        Held {
            permit: if self.h2 { None } else { h.permit.take() },
            slot: h.slot.take(),
        }
    }
}

/// Accepts until the worker drains. The listening socket itself stays open
/// in the supervisor and the next generation, so nothing queued is lost.
pub(crate) async fn accept_loop(listener: Listener, index: usize, state: Arc<State>) {
    let drain = state.control.drain.clone();
    loop {
        // `max-connections`: a place first, then the connection; while the
        // worker is full, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            _ = drain.cancelled() => return,
            p = state.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = drain.cancelled() => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok((io, peer, local)) => {
                let held = Held {
                    permit: Some(permit),
                    slot: None,
                };
                state
                    .tasks
                    .spawn(serve(io, index, peer, local, held, state.clone()));
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

/// Reads the PROXY header of a connection on a `proxy-protocol` listener:
/// the connection (with what followed the header) and the client address.
/// `None`: refused — not from `trusted-proxies`, or no valid header. On a
/// Unix socket (no peer address) the socket's permissions decide who may
/// connect, so every peer may send the header, as with HAProxy's
/// `send-proxy` to a socket.
async fn proxied(
    mut io: Box<dyn Io>,
    peer: Option<SocketAddr>,
    state: &State,
) -> Option<(Box<dyn Io>, Option<SocketAddr>)> {
    if peer.is_some_and(|p| !state.trusted.contains(p.ip())) {
        state
            .proxy_refusals
            .refused(peer, "the peer is not in trusted-proxies");
        return None;
    }
    let deadline = tokio::time::Instant::now() + state.config.global.timeout;
    match crate::client::read_proxy_header(&mut io, deadline).await {
        Ok((source, rest)) => {
            let io: Box<dyn Io> = if rest.is_empty() {
                io
            } else {
                Box::new(Prefixed::new(rest, io))
            };
            Some((io, source.map(unmap).or(peer)))
        }
        Err(e) => {
            state.proxy_refusals.refused(peer, &e.to_string());
            None
        }
    }
}

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

async fn serve(
    io: Box<dyn Io>,
    listener: usize,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    mut held: Held,
    state: Arc<State>,
) {
    // Behind a balancer: the PROXY header names the client (SPEC §2.3).
    let (io, peer) = match state.proxy_protocol.get(listener) {
        Some(true) => match proxied(io, peer, &state).await {
            Some(p) => p,
            None => return,
        },
        _ => (io, peer),
    };
    // `ip-limit-wsi`: connections at once per client address.
    if let (Some(limit), Some(p)) = (&state.ip_limit_wsi, peer) {
        match limit.acquire(p.ip()) {
            Some(s) => held.slot = Some(s),
            None => return,
        }
    }
    let stats = state.stats.clone();
    let _counted = lwsws_ws::stats::Counted::new(&stats.http_connections);
    let plain = ConnInfo {
        listener,
        peer,
        local,
        handle: ConnHandle::detached(),
        tls: None,
        plain_on_tls: false,
        h2: false,
        forwarded_https: None,
        held: Arc::new(std::sync::Mutex::new(held)),
    };
    let is_tls = state
        .router
        .listeners()
        .get(listener)
        .is_some_and(|l| l.tls);
    if !is_tls {
        if let Some(route) = crate::raw::applied(&state, listener).cloned() {
            return crate::raw::proxy(io, &route, peer, state).await;
        }
        if let Some(route) = crate::raw::fallback(&state, listener).cloned() {
            let deadline = tokio::time::Instant::now() + state.config.global.timeout;
            let (mut io, mut prefix) = (io, Vec::new());
            let sniffed = crate::raw::sniff(&mut io, &mut prefix, deadline).await;
            let io: Box<dyn Io> = Box::new(Prefixed::new(prefix, io));
            return match sniffed {
                crate::raw::Sniffed::Http => serve_http1(io, plain, state).await,
                crate::raw::Sniffed::Raw => crate::raw::proxy(io, &route, peer, state).await,
                crate::raw::Sniffed::Gone => {}
            };
        }
        return serve_http1(io, plain, state).await;
    }
    // The handshake, like a request head, must arrive within `timeout-secs`.
    let deadline = tokio::time::Instant::now() + state.config.global.timeout;
    let mut io = io;
    let mut first = [0u8; 1];
    let read = tokio::time::timeout_at(deadline, io.read(&mut first)).await;
    let n = match read {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "connection failed before its first byte");
            return;
        }
        Err(_) => {
            // A silent client may wait for a raw protocol's server to speak first.
            if let Some(route) = crate::raw::fallback(&state, listener).cloned() {
                return crate::raw::proxy(io, &route, peer, state).await;
            }
            tracing::debug!(?peer, "no TLS handshake within timeout-secs; closed");
            return;
        }
    };
    if n == 0 {
        return;
    }
    let mut prefix = vec![first[0]];
    if first[0] != TLS_HANDSHAKE
        && let Some(route) = crate::raw::fallback(&state, listener).cloned()
        && crate::raw::sniff(&mut io, &mut prefix, deadline).await != crate::raw::Sniffed::Http
    {
        let io = Box::new(Prefixed::new(prefix, io));
        return crate::raw::proxy(io, &route, peer, state).await;
    }
    let io = Prefixed::new(prefix, io);
    if first[0] != TLS_HANDSHAKE {
        if !state.plain_on_tls[listener] {
            tracing::debug!(?peer, "plaintext on a TLS port; closed (no allow-non-tls)");
            return;
        }
        let info = ConnInfo {
            plain_on_tls: true,
            ..plain
        };
        return serve_http1(Box::new(io), info, state).await;
    }
    let handshake = async {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = acceptor.await?;
        let sni = start.client_hello().server_name().map(str::to_owned);
        // An ACME TLS-ALPN-01 validation (SPEC §5.1, RFC 8737): a handshake
        // offering only `acme-tls/1` for a name with an order in progress
        // gets the challenge certificate, and nothing else follows.
        let acme_only = start
            .client_hello()
            .alpn()
            .map(|mut a| a.all(|p| p == crate::acme::ACME_TLS_ALPN))
            .unwrap_or(false);
        if acme_only && let Some(config) = sni.as_deref().and_then(|n| state.resources.acme.alpn(n))
        {
            let mut stream = start.into_stream(config).await?;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return Ok(None);
        }
        let vhost = state
            .router
            .select_sni(listener, sni.as_deref())
            .ok_or_else(|| std::io::Error::other("no TLS vhost on this listener"))?;
        let config = state
            .resources
            .tls(vhost)
            .ok_or_else(|| std::io::Error::other("the vhost has no TLS configuration"))?;
        let stream = start.into_stream(config).await?;
        Ok::<_, std::io::Error>(Some((vhost, stream)))
    };
    let outcome = tokio::time::timeout_at(deadline, handshake).await;
    let counter = match &outcome {
        Ok(Ok(_)) => &state.stats.tls_handshakes,
        _ => &state.stats.tls_failures,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (vhost, stream) = match outcome {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            tracing::info!(?peer, "ACME TLS-ALPN-01 validation answered");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(
                ?peer,
                "TLS handshake not finished within timeout-secs; closed"
            );
            return;
        }
    };
    if let Some(route) = crate::raw::applied(&state, listener).cloned() {
        return crate::raw::proxy(Box::new(stream), &route, peer, state).await;
    }
    let (_, session) = stream.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
    let client_subject = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| lwsws_tls::client_subject(c.as_ref()));
    let info = ConnInfo {
        tls: Some(TlsInfo {
            sni_vhost: vhost,
            client_subject,
        }),
        h2,
        ..plain
    };
    if h2 {
        serve_http2(Box::new(stream), info, state).await;
    } else {
        serve_http1(Box::new(stream), info, state).await;
    }
}

/// The hyper service of one connection: every request goes through the pipeline.
fn service(
    state: Arc<State>,
    info: Arc<ConnInfo>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::access_log::LoggedBody>,
    Error = std::convert::Infallible,
    Future = impl Future<
        Output = Result<http::Response<crate::access_log::LoggedBody>, std::convert::Infallible>,
    > + Send,
> + Clone {
    hyper::service::service_fn(move |req| {
        let state = state.clone();
        let info = info.clone();
        async move { Ok::<_, std::convert::Infallible>(pipeline::handle(&state, &info, req).await) }
    })
}

async fn serve_http1(io: Box<dyn Io>, info: ConnInfo, state: Arc<State>) {
    let limits = Limits {
        max_head: MAX_HEAD,
        max_headers: MAX_HEADERS,
        max_uri: MAX_URI,
        head_timeout: state.config.global.timeout,
        keepalive: state.keepalive[info.listener],
    };
    let (mut io, handle) = GuardedIo::new(io, limits);
    let close = state.control.close.clone();
    // hyper's connection (and its buffers) only once a first head is in.
    tokio::select! {
        _ = std::future::poll_fn(|cx| io.poll_first_head(cx)) => {}
        _ = close.cancelled() => return,
    }
    let info = Arc::new(ConnInfo { handle, ..info });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service(state.clone(), info.clone()))
        .with_upgrades();
    tokio::pin!(conn);
    // Draining needs nothing here: the pipeline answers with `Connection:
    // close` and the guard's keep-alive timer ends idle connections, so a
    // request already on its way is never cut. Only close shuts idle ones.
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

/// HTTP/2 over TLS. Drain sends GOAWAY and lets open streams finish;
/// extended CONNECT (RFC 8441) carries WebSockets.
async fn serve_http2(io: Box<dyn Io>, info: ConnInfo, state: Arc<State>) {
    let info = Arc::new(info);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_header_list_size(MAX_HEAD as u32)
        .max_concurrent_streams(250)
        // Rapid reset (CVE-2023-44487): h2's default, stated so that an
        // upgrade cannot loosen it unnoticed.
        .max_pending_accept_reset_streams(20)
        // A peer that stops answering PINGs (dead, or flooding without
        // reading) loses the connection.
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service(state.clone(), info.clone()));
    tokio::pin!(conn);
    let drain = state.control.drain.clone();
    let close = state.control.close.clone();
    // hyper has no idle timeout for HTTP/2: a connection with no request in
    // progress (and no WebSocket stream) for `keepalive-timeout` is closed
    // with GOAWAY, as an idle HTTP/1.1 connection is. This also bounds a
    // header block that never ends, which dispatches no request.
    let idle_after = state
        .keepalive
        .get(info.listener)
        .copied()
        .unwrap_or(Duration::from_secs(60));
    let mut last_busy = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let idle = loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = ?info.peer, error = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            _ = drain.cancelled() => break false,
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                if info.handle.is_busy() || info.handle.is_upgraded() {
                    last_busy = now;
                } else if now.duration_since(last_busy) >= idle_after {
                    break true;
                }
            }
        }
    };
    conn.as_mut().graceful_shutdown();
    if idle {
        tracing::debug!(peer = ?info.peer, "idle HTTP/2 connection closed");
        // A peer that reads nothing cannot take the GOAWAY: bounded.
        let _ = tokio::time::timeout(state.config.global.timeout, conn.as_mut()).await;
        return;
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = ?info.peer, error = %e, "HTTP/2 connection ended with an error");
            }
        }
        _ = close.cancelled() => {
            // WebSocket streams are queueing their 1001 on this connection:
            // keep driving it until they have ended, within the close grace.
            let _ = tokio::time::timeout(H2_CLOSE_GRACE, conn.as_mut()).await;
        }
    }
}

/// PINGs on an HTTP/2 connection, and how long the peer has to answer.
const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an HTTP/2 connection is still driven after close, so its
/// WebSocket streams can send their close frames.
const H2_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A stream whose first bytes were already read (to tell TLS from
/// plaintext, and HTTP from raw protocols): they are read again first.
struct Prefixed {
    prefix: Vec<u8>,
    /// How much of `prefix` has been read again.
    pos: usize,
    inner: Box<dyn Io>,
}

impl Prefixed {
    fn new(prefix: Vec<u8>, inner: Box<dyn Io>) -> Prefixed {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let this = &mut *self;
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
