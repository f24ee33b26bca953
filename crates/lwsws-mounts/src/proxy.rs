//! Reverse-proxy mounts (SPEC §3.5): map the request onto the upstream,
//! stream bodies both ways, fix up headers, and rewrite what points back at
//! the upstream (`Location`, cookie paths, links in HTML) to the mountpoint.
//!
//! Upstream connections come from [`pool::Pool`], a per-worker pool of hyper
//! HTTP/1 connections per upstream. Link rewriting is in `rewrite.rs`, the
//! streaming HTML and gzip body in `html.rs`.

mod html;
mod pool;
mod rewrite;

use crate::{Body, HttpError};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body::Frame;
use http_body_util::BodyExt;
use lwsws_config::{Config, Mount, Origin, ProxyOrigin, ProxyTarget};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

pub use pool::{Pool, TlsConfigs};
pub use rewrite::Rewriter;

/// The body sent upstream: the client's body, errors as `io::Error`.
pub type UpstreamBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = std::io::Error> + Send>>;

/// Facts about the client side of the request.
#[derive(Debug, Clone)]
pub struct ProxyRequest<'a> {
    pub peer: Option<SocketAddr>,
    /// The client spoke TLS to us.
    pub tls: bool,
    /// The vhost's name, when the request has no Host.
    pub vhost: &'a str,
    /// How long connecting may take (`timeout-secs`).
    pub connect_timeout: Duration,
    /// Where WebSocket tunnels run, so a draining worker waits for them.
    pub tunnels: &'a tokio_util::task::TaskTracker,
    /// Cancelled when the worker's last connections must end; tunnels close then.
    pub close: &'a tokio_util::sync::CancellationToken,
}

/// Why the upstream could not answer, as the client will see it.
fn bad_gateway() -> HttpError {
    HttpError::new(StatusCode::BAD_GATEWAY)
}

/// Proxies one request to the upstream of `mount`.
#[allow(clippy::too_many_arguments)]
pub async fn serve<B>(
    parts: &Parts,
    body: B,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    mount: &Mount,
    origin: &ProxyOrigin,
    remainder: &str,
    info: &ProxyRequest<'_>,
    pool: &Pool,
) -> Result<Response<Body>, HttpError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let websocket = is_websocket_upgrade(&parts.headers);
    let upstream_request = |body: UpstreamBody| -> Result<Request<UpstreamBody>, HttpError> {
        let mut req = Request::builder()
            .method(parts.method.clone())
            .uri(upstream_uri(origin, remainder, parts.uri.query())?)
            .version(http::Version::HTTP_11);
        if let Some(h) = req.headers_mut() {
            *h = upstream_headers(parts, origin, info, websocket);
        }
        req.body(body)
            .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST))
    };
    // Without a body, an idempotent request can be sent again if a pooled
    // connection fails under it (RFC 9110 §9.2.2).
    let replayable = parts.method.is_idempotent() && body.is_end_stream();
    let body_failed = Arc::new(AtomicBool::new(false));
    let mut req = upstream_request(Box::pin(ClientBody(body, body_failed.clone())))?;

    let key = pool::Key::new(origin, mount.proxy_ca.as_deref());
    let mut conn = pool.checkout(&key, origin, info.connect_timeout).await?;
    let response = loop {
        match tokio::time::timeout(mount.proxy_timeout, conn.send(req)).await {
            Err(_) => {
                tracing::warn!(upstream = %key, seconds = mount.proxy_timeout.as_secs(), "upstream did not answer in time");
                return Err(HttpError::new(StatusCode::GATEWAY_TIMEOUT));
            }
            Ok(Ok(r)) => break r,
            // A pooled connection the upstream closed while it was idle
            // (its close crossed our request): send the request again on a
            // new connection if it never left or may be repeated. A new
            // connection is not `reused`, so this happens at most once.
            Ok(Err(pool::SendError { error, unsent }))
                if conn.reused() && (unsent.is_some() || replayable) =>
            {
                tracing::debug!(upstream = %key, error = %error, "pooled upstream connection failed; sending again on a new one");
                req = match unsent {
                    Some(unsent) => unsent,
                    None => upstream_request(Box::pin(
                        http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}),
                    ))?,
                };
                conn = pool.connect_new(&key, origin, info.connect_timeout).await?;
            }
            // The client's body broke off or was malformed (the guard
            // refuses a bad chunk only when it arrives): its fault, not the
            // upstream's, which never saw a complete request.
            Ok(Err(e)) if body_failed.load(Ordering::Acquire) => {
                tracing::info!(upstream = %key, error = %e.error, "client request body failed while it was being forwarded");
                return Err(HttpError::new(StatusCode::BAD_REQUEST));
            }
            Ok(Err(e)) => {
                tracing::warn!(upstream = %key, error = %e.error, "upstream request failed");
                return Err(bad_gateway());
            }
        }
    };

    let (mut head, up) = response.into_parts();
    // Our answer speaks the client's HTTP version, whatever the upstream spoke.
    head.version = parts.version;
    if websocket && head.status == StatusCode::SWITCHING_PROTOCOLS {
        let up_upgrade = hyper::upgrade::on(Response::from_parts(head.clone(), ()));
        let _ = up;
        let Some(client_upgrade) = on_upgrade else {
            return Err(bad_gateway());
        };
        info.tunnels.spawn(tunnel(
            client_upgrade,
            up_upgrade,
            key.to_string(),
            info.close.clone(),
        ));
        strip_hop_by_hop(&mut head.headers, true);
        let mut resp = Response::from_parts(head, Body::empty());
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(resp);
    }

    strip_hop_by_hop(&mut head.headers, false);
    let rewriter = Rewriter::new(&mount.mountpoint, origin);
    rewriter.response_headers(&mut head.headers);
    append_via(&mut head.headers);
    let body = pool::ReturningBody::new(up, conn, mount.proxy_timeout);
    let body: Body = if html::is_html(&head.headers) {
        match html::rewrite_body(&mut head.headers, body, rewriter) {
            Some(b) => b,
            None => return Err(bad_gateway()),
        }
    } else {
        Body::Stream(Box::pin(body))
    };
    Ok(Response::from_parts(head, body))
}

/// Origin path (without its trailing `/`) + remainder (`/` if empty) + query.
pub fn upstream_uri(
    origin: &ProxyOrigin,
    remainder: &str,
    query: Option<&str>,
) -> Result<Uri, HttpError> {
    let mut pq = String::with_capacity(origin.path.len() + remainder.len() + 16);
    pq.push_str(&origin.path);
    pq.push_str(if remainder.is_empty() { "/" } else { remainder });
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    pq.parse::<Uri>()
        .map_err(|_| HttpError::new(StatusCode::BAD_REQUEST))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus those named in `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if keep_upgrade && n == header::UPGRADE {
            continue;
        }
        h.remove(&n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        h.remove(n);
    }
    for n in ["keep-alive", "proxy-connection"] {
        h.remove(n);
    }
    if !keep_upgrade {
        h.remove(header::UPGRADE);
    }
}

fn is_websocket_upgrade(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn append_via(h: &mut HeaderMap) {
    h.append(header::VIA, HeaderValue::from_static("1.1 lwsws"));
}

/// The request headers the upstream sees.
fn upstream_headers(
    parts: &Parts,
    origin: &ProxyOrigin,
    info: &ProxyRequest<'_>,
    websocket: bool,
) -> HeaderMap {
    let mut h = parts.headers.clone();
    let client_host = h
        .get(header::HOST)
        .cloned()
        .or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        })
        .or_else(|| HeaderValue::from_str(info.vhost).ok());
    strip_hop_by_hop(&mut h, websocket);
    if websocket {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    if let Ok(v) = HeaderValue::from_str(&origin_authority(origin)) {
        h.insert(header::HOST, v);
    }
    if let Some(peer) = info.peer {
        // Every X-Forwarded-For line the client sent, in order, as one list
        // (as the client address was resolved from all of them), then the peer.
        let mut xff: Vec<u8> = Vec::new();
        for line in h.get_all("x-forwarded-for") {
            let line = line.as_bytes().trim_ascii();
            if !line.is_empty() {
                xff.extend_from_slice(line);
                xff.extend_from_slice(b", ");
            }
        }
        xff.extend_from_slice(peer.ip().to_string().as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&xff) {
            h.insert("x-forwarded-for", v);
        }
    }
    h.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if info.tls { "https" } else { "http" }),
    );
    if let Some(host) = client_host {
        h.insert("x-forwarded-host", host);
    }
    append_via(&mut h);
    h
}

/// `host[:port]` of the origin as a Host header (default ports omitted).
pub fn origin_authority(origin: &ProxyOrigin) -> String {
    match &origin.target {
        ProxyTarget::Tcp { host, port } => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let default = if origin.tls { 443 } else { 80 };
            if *port == default {
                host
            } else {
                format!("{host}:{port}")
            }
        }
        ProxyTarget::Unix(_) => "localhost".to_string(),
    }
}

/// Copies bytes both ways between the client and the upstream after a 101.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    name: String,
    close: tokio_util::sync::CancellationToken,
) {
    let (c, u) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(upstream = %name, error = %e, "websocket upgrade did not complete");
            return;
        }
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Err(e) = r {
                tracing::debug!(upstream = %name, error = %e, "websocket tunnel ended");
            }
        }
        _ = close.cancelled() => {
            tracing::debug!(upstream = %name, "websocket tunnel closed: the worker is stopping");
        }
    }
}

/// The client's request body with its errors made `io::Error`s.
/// The client's body on its way upstream; errors set the flag.
struct ClientBody<B>(B, Arc<AtomicBool>);

impl<B> http_body::Body for ClientBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.0).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.1.store(true, Ordering::Release);
                Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
            other => other.map(|o| o.map(|r| r.map_err(|_| std::io::Error::other("unreachable")))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// The TLS client settings of every `https://` proxy mount, built once.
pub fn tls_configs(config: &Config) -> Result<pool::TlsConfigs, String> {
    let mut cas: Vec<std::path::PathBuf> = Vec::new();
    let mut any_https = false;
    for v in &config.vhosts {
        for m in &v.mounts {
            if let Origin::Proxy(p) = &m.origin
                && p.tls
            {
                any_https = true;
                if let Some(ca) = &m.proxy_ca
                    && !cas.contains(ca)
                {
                    cas.push(ca.clone());
                }
            }
        }
    }
    pool::TlsConfigs::build(any_https, &cas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn origin(path: &str) -> ProxyOrigin {
        ProxyOrigin {
            tls: false,
            target: ProxyTarget::Tcp {
                host: "127.0.0.1".into(),
                port: 8080,
            },
            path: path.into(),
        }
    }

    #[test]
    fn maps_paths_as_the_spec_says() {
        assert_eq!(
            upstream_uri(&origin(""), "/f.txt", Some("a=1")).unwrap(),
            "/f.txt?a=1"
        );
        assert_eq!(
            upstream_uri(&origin("/app"), "/f.txt", Some("a=1")).unwrap(),
            "/app/f.txt?a=1"
        );
        assert_eq!(upstream_uri(&origin(""), "", None).unwrap(), "/");
        assert_eq!(upstream_uri(&origin("/app"), "", None).unwrap(), "/app/");
    }

    #[test]
    fn authority_omits_default_ports() {
        assert_eq!(origin_authority(&origin("")), "127.0.0.1:8080");
        let mut o = origin("");
        o.target = ProxyTarget::Tcp {
            host: "example.org".into(),
            port: 80,
        };
        assert_eq!(origin_authority(&o), "example.org");
        o.target = ProxyTarget::Unix(PathBuf::from("/run/x.sock"));
        assert_eq!(origin_authority(&o), "localhost");
    }

    #[test]
    fn every_forwarded_for_line_is_kept_and_the_peer_appended() {
        let (tunnels, close) = (
            tokio_util::task::TaskTracker::new(),
            tokio_util::sync::CancellationToken::new(),
        );
        let info = ProxyRequest {
            peer: Some("192.0.2.9:4000".parse().unwrap()),
            tls: false,
            vhost: "v",
            connect_timeout: Duration::from_secs(1),
            tunnels: &tunnels,
            close: &close,
        };
        let forwarded = |lines: &[&str]| {
            let mut req = http::Request::builder().uri("/x");
            for l in lines {
                req = req.header("x-forwarded-for", *l);
            }
            let (parts, ()) = req.body(()).unwrap().into_parts();
            let h = upstream_headers(&parts, &origin(""), &info, false);
            let all: Vec<_> = h.get_all("x-forwarded-for").iter().cloned().collect();
            assert_eq!(all.len(), 1, "{all:?}");
            all[0].to_str().unwrap().to_owned()
        };
        assert_eq!(forwarded(&[]), "192.0.2.9");
        assert_eq!(forwarded(&["203.0.113.7"]), "203.0.113.7, 192.0.2.9");
        assert_eq!(
            forwarded(&["203.0.113.7, 198.51.100.2", " 198.51.100.3 ", ""]),
            "203.0.113.7, 198.51.100.2, 198.51.100.3, 192.0.2.9"
        );
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
