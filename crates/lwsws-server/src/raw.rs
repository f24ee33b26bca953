//! Raw vhosts (SPEC §7): connections bound to the `raw-proxy` protocol,
//! whose bytes are forwarded both ways to the protocol's `onward` address.
//!
//! A listener gets a [`RawRoute`] when one of its vhosts has
//! `apply-listen-accept` (every connection is raw) or
//! `fallback-listen-accept` (connections that are neither TLS nor HTTP are
//! raw; on a TLS port only with `allow-non-tls`). [`sniff`] tells HTTP from
//! other plaintext by the first bytes; [`proxy`] does the forwarding.

use crate::State;
use crate::conn::Io;
use lwsws_config::{Config, Onward};
use lwsws_router::ListenerRoutes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// What a listener does with raw connections.
#[derive(Debug, Clone)]
pub(crate) struct RawRoute {
    /// Every connection is raw (`apply-listen-accept`); on a TLS listener
    /// after the TLS handshake.
    pub apply: bool,
    /// Non-TLS, non-HTTP connections are raw (`fallback-listen-accept`).
    pub fallback: bool,
    /// Where the bytes go.
    pub onward: Onward,
    /// The vhost whose raw protocol this is, for logs.
    pub vhost: String,
}

impl RawRoute {
    /// The raw route of one listener: from its first vhost with
    /// `apply-listen-accept`, else its first with an effective
    /// `fallback-listen-accept`.
    pub fn for_listener(config: &Config, l: &ListenerRoutes) -> Option<RawRoute> {
        let vhosts = || l.vhosts.iter().map(|&v| &config.vhosts[v]);
        let route = |v: &lwsws_config::Vhost, apply: bool| {
            Some(RawRoute {
                apply,
                fallback: !apply,
                onward: v.listen_accept.onward.clone()?,
                vhost: v.name.clone(),
            })
        };
        if let Some(v) = vhosts().find(|v| v.listen_accept.apply) {
            return route(v, true);
        }
        vhosts()
            .find(|v| v.listen_accept.fallback && (!l.tls || v.allow_non_tls))
            .and_then(|v| route(v, false))
    }
}

/// The route of `listener` when every connection goes raw.
pub(crate) fn applied(state: &State, listener: usize) -> Option<&RawRoute> {
    state.raw.get(listener)?.as_ref().filter(|r| r.apply)
}

/// The route of `listener` when non-TLS, non-HTTP connections go raw.
pub(crate) fn fallback(state: &State, listener: usize) -> Option<&RawRoute> {
    state.raw.get(listener)?.as_ref().filter(|r| r.fallback)
}

/// What the first bytes of a plaintext connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// An HTTP method token followed by a space.
    Http,
    /// Anything else, or nothing decisive within the head timeout.
    Raw,
    /// The client closed (or failed) before sending anything.
    Gone,
}

/// Longest method token looked for; longer runs of token characters are
/// not taken for HTTP.
const MAX_METHOD: usize = 24;

/// Reads from `io` (after the bytes already in `prefix`) until the bytes
/// tell an HTTP request line (`TOKEN SP`) from anything else, or until
/// `deadline`. Everything read is left in `prefix`, to be replayed.
pub(crate) async fn sniff(
    io: &mut Box<dyn Io>,
    prefix: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> Sniffed {
    loop {
        if let Some(s) = classify(prefix) {
            return s;
        }
        let mut buf = [0u8; MAX_METHOD + 1];
        let want = MAX_METHOD + 1 - prefix.len().min(MAX_METHOD);
        match tokio::time::timeout_at(deadline, io.read(&mut buf[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return if prefix.is_empty() {
                    Sniffed::Gone
                } else {
                    Sniffed::Raw
                };
            }
            Ok(Ok(n)) => prefix.extend_from_slice(&buf[..n]),
            // Silent clients (protocols where the server speaks first) go raw.
            Err(_) => return Sniffed::Raw,
        }
    }
}

/// `Some` once `bytes` decide: a method then a space is HTTP; anything
/// else, or a token too long for a method, is not. Methods are taken to be
/// upper-case letters, `-` and `_` (GET, PROPFIND, M-SEARCH…): RFC 9110
/// allows any token, but an SSH banner such as `SSH-2.0-OpenSSH_9.6p1
/// Debian-2` is a token followed by a space too, and must go raw.
fn classify(bytes: &[u8]) -> Option<Sniffed> {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            return Some(if i > 0 { Sniffed::Http } else { Sniffed::Raw });
        }
        if !is_method_char(b) || i >= MAX_METHOD {
            return Some(Sniffed::Raw);
        }
    }
    None
}

/// A byte of an HTTP method as clients send them.
fn is_method_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// Connects to `route.onward` (within `timeout-secs`) and forwards bytes
/// both ways until both directions have ended: an end of stream on one
/// side is passed on as a write shutdown to the other, which may go on
/// sending. A connect failure closes the client connection. The worker's
/// close signal cuts the connection.
pub(crate) async fn proxy(
    mut client: Box<dyn Io>,
    route: &RawRoute,
    peer: Option<SocketAddr>,
    state: Arc<State>,
) {
    let timeout = state.config.global.timeout;
    let close = state.control.close.clone();
    let connecting = tokio::time::timeout(timeout, connect(&route.onward));
    let upstream = tokio::select! {
        r = connecting => r,
        _ = close.cancelled() => return,
    };
    let mut upstream = match upstream {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::warn!(vhost = %route.vhost, onward = %route.onward, ?peer, error = %e,
                "raw-proxy: cannot connect onward; client connection closed");
            return;
        }
        Err(_) => {
            tracing::warn!(vhost = %route.vhost, onward = %route.onward, ?peer,
                "raw-proxy: no onward connection within timeout-secs; client connection closed");
            return;
        }
    };
    tracing::debug!(vhost = %route.vhost, onward = %route.onward, ?peer, "raw-proxy: connected");
    let copying = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        COPY_BUFFER,
        COPY_BUFFER,
    );
    tokio::select! {
        r = copying => match r {
            Ok((up, down)) => tracing::debug!(?peer, up, down, "raw-proxy: connection ended"),
            Err(e) => tracing::debug!(?peer, error = %e, "raw-proxy: connection ended with an error"),
        },
        _ = close.cancelled() => {
            tracing::debug!(?peer, "raw-proxy: connection cut by shutdown");
        }
    }
}

const COPY_BUFFER: usize = 64 * 1024;

/// Opens the onward connection.
async fn connect(onward: &Onward) -> std::io::Result<Box<dyn Io>> {
    match onward {
        Onward::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
        Onward::Tcp { host, port, ipv6 } => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .filter(|a| a.is_ipv6() == *ipv6)
                .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{host} has no {} address",
                        if *ipv6 { "IPv6" } else { "IPv4" }
                    ),
                ));
            }
            let mut last = None;
            for a in addrs {
                match tokio::net::TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Box::new(s));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_http_from_other_bytes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"OPTIONS "), Some(Sniffed::Http));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1\r\n"), Some(Sniffed::Http));
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.6\r\n"), Some(Sniffed::Raw));
        // A real OpenSSH banner has a space after a token-like version.
        assert_eq!(
            classify(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"),
            Some(Sniffed::Raw)
        );
        assert_eq!(classify(b"SSH-"), None);
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Sniffed::Raw));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b" GET"), Some(Sniffed::Raw));
        assert_eq!(classify(b"\x00\x01"), Some(Sniffed::Raw));
        assert_eq!(classify(&[b'A'; 40]), Some(Sniffed::Raw));
    }
}
