//! Who the client is behind a load balancer, and how much of the server one
//! client may hold (SPEC §2.2 `trusted-proxies`, `ip-limit-wsi`,
//! `ip-limit-ah`; §2.3 `proxy-protocol`).
//!
//! A connection from a trusted balancer may start with a PROXY protocol
//! header (v1 text or v2 binary, parsed by `ppp`), whose source address is
//! then the connection's client; a request from a trusted peer may carry
//! `X-Forwarded-For`/`-Proto`, whose right-most untrusted address is then
//! the request's client. That address replaces the TCP peer everywhere:
//! logs, CGI, proxy headers, origin checks and the per-client limits.

use crate::conn::{ConnInfo, Io};
use http::HeaderMap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// The longest PROXY header read: v1 is at most 107 bytes; v2 carries TLVs,
/// which balancers keep small.
const MAX_PROXY_HEADER: usize = 16 * 1024;
/// The longest PROXY v1 line, CRLF included.
const V1_MAX: usize = 107;

/// `trusted-proxies`.
#[derive(Debug, Default)]
pub(crate) struct Trusted(Vec<IpNet>);

impl Trusted {
    pub fn new(nets: &[IpNet]) -> Trusted {
        Trusted(nets.to_vec())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("the connection closed before a complete PROXY header")]
    Closed,
    #[error("no complete PROXY header within timeout-secs")]
    Timeout,
    #[error("not a valid PROXY protocol header: {0}")]
    Invalid(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY protocol header that starts the connection. Returns the
/// client address it names (`None` for `LOCAL` / `UNKNOWN`: the balancer's
/// own connection, e.g. a health check) and the bytes read after it.
pub(crate) async fn read_proxy_header(
    io: &mut Box<dyn Io>,
    deadline: tokio::time::Instant,
) -> Result<(Option<SocketAddr>, Vec<u8>), ProxyHeaderError> {
    use ppp::{HeaderResult, PartialResult};
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        let mut chunk = [0u8; 512];
        let n = match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err(ProxyHeaderError::Closed),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(ProxyHeaderError::Timeout),
        };
        buf.extend_from_slice(&chunk[..n]);
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() {
            // A v1 header is one line of at most 107 bytes: once the line
            // is complete (or could not be), more input cannot help — `ppp`
            // reports a line with missing fields as incomplete.
            let v1_done = buf.starts_with(b"PROXY")
                && (buf.windows(2).any(|w| w == b"\r\n") || buf.len() >= V1_MAX);
            if v1_done {
                return Err(ProxyHeaderError::Invalid(
                    "a PROXY v1 line with missing fields".into(),
                ));
            }
            if buf.len() >= MAX_PROXY_HEADER {
                return Err(ProxyHeaderError::Invalid("header too long".into()));
            }
            continue;
        }
        let (len, source) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.header.len(), v2_source(&h)),
            HeaderResult::V1(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
            HeaderResult::V2(Err(e)) => return Err(ProxyHeaderError::Invalid(e.to_string())),
        };
        let rest = buf.get(len..).map(<[u8]>::to_vec).unwrap_or_default();
        return Ok((source, rest));
    }
}

fn v1_source(a: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_source(h: &ppp::v2::Header<'_>) -> Option<SocketAddr> {
    if h.command == ppp::v2::Command::Local {
        return None;
    }
    match &h.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        _ => None,
    }
}

/// The request's client: from a trusted peer, the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy (the left-most if all
/// are), and the scheme of `X-Forwarded-Proto`. `None` when the headers do
/// not apply (no trusted proxies, an untrusted peer, no header).
pub(crate) fn forwarded(
    trusted: &Trusted,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Option<ConnInfo> {
    if trusted.is_empty() {
        return None;
    }
    let peer = conn.peer?;
    if !trusted.contains(peer.ip()) {
        return None;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| parse_hop(s.trim()))
        .collect();
    let client = hops
        .iter()
        .rev()
        .find(|ip| !trusted.contains(**ip))
        .or(hops.first())
        .copied();
    let https = headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .map(|p| p.trim().eq_ignore_ascii_case("https"));
    if client.is_none() && https.is_none() {
        return None;
    }
    let mut c = conn.clone();
    if let Some(ip) = client {
        // A forwarded address has no port.
        c.peer = Some(SocketAddr::new(canonical(ip), 0));
    }
    c.forwarded_https = https;
    Some(c)
}

/// One `X-Forwarded-For` element: an address, perhaps bracketed or with a port.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.trim_start_matches('[')
        .split(']')
        .next()
        .and_then(|ip| ip.parse().ok())
}

/// A per-address count with a limit (`ip-limit-wsi`, `ip-limit-ah`). An
/// address has an entry only while it holds something, so the table is as
/// large as the set of clients with connections (or requests) open.
#[derive(Debug)]
pub(crate) struct PerClient {
    limit: u32,
    what: &'static str,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    count: u32,
    /// When a refusal was last logged for this address.
    logged: Option<Instant>,
}

/// How often a refused address is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

impl PerClient {
    pub fn new(limit: u32, what: &'static str) -> Arc<PerClient> {
        Arc::new(PerClient {
            limit,
            what,
            table: Mutex::default(),
        })
    }

    /// A slot for `ip`, or `None` at the limit (logged at most once a
    /// minute per address).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = canonical(ip);
        let mut t = self.table.lock().ok()?;
        let e = t.entry(ip).or_default();
        if e.count >= self.limit {
            let now = Instant::now();
            if e.logged.is_none_or(|l| now.duration_since(l) >= LOG_EVERY) {
                e.logged = Some(now);
                tracing::warn!(client = %ip, limit = self.limit, "{} reached for this client address; refusing more", self.what);
            }
            if e.count == 0 {
                t.remove(&ip);
            }
            return None;
        }
        e.count += 1;
        Some(Slot {
            owner: self.clone(),
            ip,
        })
    }

    /// Addresses holding something (for tests of the table's bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map_or(0, |t| t.len())
    }
}

/// One unit of a client's allowance, returned when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.owner.table.lock()
            && let Some(e) = t.get_mut(&self.ip)
        {
            e.count = e.count.saturating_sub(1);
            if e.count == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Logs refused PROXY connections at most once a second, with how many
/// were not logged in between.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog(Mutex<(Option<Instant>, u64)>);

impl RefusalLog {
    pub fn refused(&self, peer: Option<SocketAddr>, why: &str) {
        let Ok(mut s) = self.0.lock() else {
            return;
        };
        let now = Instant::now();
        if s.0
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            s.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut s.1);
        s.0 = Some(now);
        tracing::warn!(
            ?peer,
            suppressed,
            "proxy-protocol: connection closed: {why}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(peer: &str) -> ConnInfo {
        ConnInfo::for_tests(peer.parse().ok())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn right_most_untrusted_address_from_a_trusted_peer() {
        let t = Trusted::new(&[
            "127.0.0.0/8".parse().unwrap(),
            "198.51.100.0/24".parse().unwrap(),
        ]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7, 198.51.100.2")]);
        let c = forwarded(&t, &info("127.0.0.1:5000"), &h).unwrap();
        assert_eq!(c.peer, Some("203.0.113.7:0".parse().unwrap()));
        // From an untrusted peer nothing changes.
        assert!(forwarded(&t, &info("192.0.2.1:5000"), &h).is_none());
        // A spoofed left part does not win over the real hop.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = forwarded(&t, &info("127.0.0.1:5000"), &h).unwrap();
        assert_eq!(c.peer, Some("203.0.113.7:0".parse().unwrap()));
        assert!(c.https());
        // No trusted proxies: headers are not looked at.
        assert!(forwarded(&Trusted::default(), &info("127.0.0.1:1"), &h).is_none());
    }

    #[test]
    fn the_table_holds_only_addresses_in_use() {
        let l = PerClient::new(2, "ip-limit-wsi");
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let s2 = l.acquire(a).unwrap();
        assert!(l.acquire(a).is_none());
        assert!(l.acquire("127.0.0.3".parse().unwrap()).is_some());
        drop(s1);
        let s3 = l.acquire(a).unwrap();
        drop((s2, s3));
        assert_eq!(l.len(), 0);
    }
}
