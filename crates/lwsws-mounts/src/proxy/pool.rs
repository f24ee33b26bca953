//! Upstream connections: a per-worker pool of hyper HTTP/1 client
//! connections per upstream (address, TLS, trusted CA). A connection is
//! checked out for one request and goes back to the pool when its response
//! body has been read to the end; one abandoned half-way is dropped.

use super::UpstreamBody;
use crate::HttpError;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use lwsws_config::{ProxyOrigin, ProxyTarget};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Idle connections kept per upstream.
const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// Which pool a connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    target: ProxyTarget,
    tls: bool,
    ca: Option<PathBuf>,
}

impl Key {
    pub fn new(origin: &ProxyOrigin, ca: Option<&Path>) -> Key {
        Key {
            target: origin.target.clone(),
            tls: origin.tls,
            ca: ca.map(Path::to_path_buf),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        match &self.target {
            ProxyTarget::Tcp { host, port } => write!(f, "{scheme}://{host}:{port}"),
            ProxyTarget::Unix(p) => write!(f, "{scheme}://unix:{}", p.display()),
        }
    }
}

/// rustls client settings: the system trust store, and one per `proxy-ca`.
#[derive(Clone, Default)]
pub struct TlsConfigs {
    system: Option<Arc<rustls::ClientConfig>>,
    by_ca: Vec<(PathBuf, Arc<rustls::ClientConfig>)>,
}

impl TlsConfigs {
    /// Loads the system roots (only if some mount needs them) and every CA file.
    pub fn build(any_https: bool, cas: &[PathBuf]) -> Result<TlsConfigs, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let make = |roots: rustls::RootCertStore| -> Result<Arc<rustls::ClientConfig>, String> {
            let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(c))
        };
        let mut out = TlsConfigs::default();
        if any_https {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            out.system = Some(make(roots)?);
        }
        for ca in cas {
            use rustls_pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate in the file", ca.display()));
            }
            out.by_ca.push((ca.clone(), make(roots)?));
        }
        Ok(out)
    }

    fn get(&self, ca: Option<&Path>) -> Option<Arc<rustls::ClientConfig>> {
        match ca {
            Some(p) => self
                .by_ca
                .iter()
                .find(|(c, _)| c == p)
                .map(|(_, cfg)| cfg.clone()),
            None => self.system.clone(),
        }
    }
}

/// The pool of one worker; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<HashMap<Key, Vec<SendRequest<UpstreamBody>>>>,
    tls: TlsConfigs,
}

/// A connection checked out for one request.
pub struct Conn {
    sender: SendRequest<UpstreamBody>,
    key: Key,
    pool: Pool,
    /// It came from the idle list: the upstream may have closed it since.
    reused: bool,
}

/// Why a request got no response head.
pub struct SendError {
    pub error: hyper::Error,
    /// The request, when it never left: it may go again on another
    /// connection, whatever its method, since the upstream saw none of it.
    pub unsent: Option<Request<UpstreamBody>>,
}

impl Conn {
    /// Sends the request and waits for the response head.
    pub async fn send(
        &mut self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SendError> {
        if let Err(error) = self.sender.ready().await {
            return Err(SendError {
                error,
                unsent: Some(req),
            });
        }
        self.sender
            .try_send_request(req)
            .await
            .map_err(|mut e| SendError {
                unsent: e.take_message(),
                error: e.into_error(),
            })
    }

    /// Whether the connection was idle in the pool before this request.
    pub fn reused(&self) -> bool {
        self.reused
    }

    fn give_back(self) {
        if self.sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.pool.inner.idle.lock() else {
            return;
        };
        let list = idle.entry(self.key).or_default();
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push(self.sender);
        }
    }
}

/// A boxed upstream stream (TCP, Unix or TLS).
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

impl Pool {
    pub fn new(tls: TlsConfigs) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                idle: Mutex::new(HashMap::new()),
                tls,
            }),
        }
    }

    /// An idle connection to the upstream, or a new one.
    pub async fn checkout(
        &self,
        key: &Key,
        origin: &ProxyOrigin,
        connect_timeout: Duration,
    ) -> Result<Conn, HttpError> {
        if let Ok(mut idle) = self.inner.idle.lock()
            && let Some(list) = idle.get_mut(key)
        {
            while let Some(sender) = list.pop() {
                if !sender.is_closed() {
                    return Ok(Conn {
                        sender,
                        key: key.clone(),
                        pool: self.clone(),
                        reused: true,
                    });
                }
            }
        }
        self.connect_new(key, origin, connect_timeout).await
    }

    /// A new connection to the upstream, never one from the pool.
    pub async fn connect_new(
        &self,
        key: &Key,
        origin: &ProxyOrigin,
        connect_timeout: Duration,
    ) -> Result<Conn, HttpError> {
        let sender = match tokio::time::timeout(connect_timeout, self.connect(key, origin)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(upstream = %key, error = %e, "cannot connect to upstream");
                return Err(HttpError::new(StatusCode::BAD_GATEWAY));
            }
            Err(_) => {
                tracing::warn!(upstream = %key, seconds = connect_timeout.as_secs(), "upstream connect timed out");
                return Err(HttpError::new(StatusCode::BAD_GATEWAY));
            }
        };
        Ok(Conn {
            sender,
            key: key.clone(),
            pool: self.clone(),
            reused: false,
        })
    }

    async fn connect(
        &self,
        key: &Key,
        origin: &ProxyOrigin,
    ) -> Result<SendRequest<UpstreamBody>, String> {
        let io: Box<dyn Io> = match &origin.target {
            ProxyTarget::Tcp { host, port } => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            ProxyTarget::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        let io: Box<dyn Io> = if origin.tls {
            let cfg = self
                .inner
                .tls
                .get(key.ca.as_deref())
                .ok_or("no TLS settings for this upstream")?;
            let name = match &origin.target {
                ProxyTarget::Tcp { host, .. } => host.clone(),
                ProxyTarget::Unix(_) => "localhost".to_string(),
            };
            let server_name =
                rustls_pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(server_name, io)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            Box::new(tls)
        } else {
            io
        };
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake::<_, UpstreamBody>(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        let name = key.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = %name, error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// The upstream's response body: bounded gaps, and the connection goes back
/// to the pool when the body ends.
pub struct ReturningBody {
    inner: Incoming,
    conn: Option<Conn>,
    gap: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Data was handed out since the last `Pending`: it may still sit in the
    /// server's write buffer.
    unflushed: bool,
    /// An upstream failure held back for one poll, so the server flushes
    /// what it already has (the head and the bytes that did arrive) before
    /// the error ends the client's connection, as nginx does.
    failed: Option<std::io::Error>,
}

impl ReturningBody {
    pub fn new(inner: Incoming, conn: Conn, gap: Duration) -> Self {
        ReturningBody {
            inner,
            conn: Some(conn),
            gap,
            timer: Box::pin(tokio::time::sleep(gap)),
            unflushed: false,
            failed: None,
        }
    }

    /// `e` now, or after one more poll when data may be unflushed.
    fn fail(
        &mut self,
        e: std::io::Error,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.conn = None;
        if std::mem::take(&mut self.unflushed) {
            // hyper flushes its write buffer when the body is pending.
            self.failed = Some(e);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for ReturningBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                this.unflushed = true;
                if this.inner.is_end_stream() {
                    // hyper will not poll again once it has every byte of a
                    // sized body: hand the connection back now.
                    if let Some(c) = this.conn.take() {
                        c.give_back();
                    }
                } else {
                    let deadline = tokio::time::Instant::now() + this.gap;
                    this.timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(std::io::Error::other(e), cx),
            Poll::Ready(None) => {
                if let Some(c) = this.conn.take() {
                    c.give_back();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream stopped sending its body",
                    ),
                    cx,
                ),
                Poll::Pending => {
                    this.unflushed = false;
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
