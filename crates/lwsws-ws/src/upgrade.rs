//! Handshake rules (SPEC §6.1, §6.2): which requests are upgrades, which
//! protocol they get, and why one is refused. Pure: the server calls
//! [`negotiate`] with the request head and the vhost, and either writes the
//! 101 this returns or answers with the refusal's status.

use crate::deflate::DeflateParams;
use crate::handshake;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use lwsws_config::{OriginCheck, Vhost};

/// A request that asks for a WebSocket (`GET` with `Upgrade: websocket` and
/// `Connection: upgrade`).
pub fn is_upgrade(parts: &Parts) -> bool {
    parts.method == Method::GET
        && parts
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| handshake::has_token(v.as_bytes(), "websocket"))
        && parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| handshake::has_token(v.as_bytes(), "upgrade"))
}

/// An accepted handshake.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Index into the vhost's `ws_protocols`.
    pub entry: usize,
    /// Headers of the 101 answer (Upgrade, Connection, Accept, Protocol,
    /// Extensions).
    pub headers: HeaderMap,
    /// permessage-deflate's agreed parameters, when it was negotiated.
    pub deflate: Option<DeflateParams>,
}

/// A refused handshake: the status, its headers, and a reason for the log.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refused {
    Refused {
        status,
        headers: HeaderMap::new(),
        reason,
    }
}

/// Where the request came in, for the `same` origin check.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub tls: bool,
    /// The local port the request came in on (`None` on a Unix socket).
    pub port: Option<u16>,
    /// HTTP/2 extended CONNECT (RFC 8441): no key, no accept, answered 200.
    pub h2: bool,
}

/// Applies the handshake rules for `vhost`. `mount_protocol` is the matched
/// mount's `protocol` key, used when the client names none.
pub fn negotiate(
    parts: &Parts,
    vhost: &Vhost,
    mount_protocol: Option<&str>,
    at: Arrival,
) -> Result<Accepted, Refused> {
    let h = &parts.headers;
    if handshake::check_version(h.get("sec-websocket-version").map(|v| v.as_bytes())).is_err() {
        let mut r = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version",
        );
        r.headers.insert(
            HeaderName::from_static("sec-websocket-version"),
            HeaderValue::from_static(handshake::SUPPORTED_VERSIONS),
        );
        return Err(r);
    }
    let key = h
        .get("sec-websocket-key")
        .filter(|k| handshake::valid_key(k.as_bytes()));
    if key.is_none() && !at.h2 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "missing or invalid Sec-WebSocket-Key",
        ));
    }
    origin_allowed(h, parts.uri.authority().map(|a| a.as_str()), vhost, at)?;

    let offered: Vec<&[u8]> = h
        .get_all("sec-websocket-protocol")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let (entry, echo) = if !offered.is_empty() {
        let chosen = handshake::select_protocol(offered.iter().copied(), |name| {
            vhost.ws_protocols.iter().any(|e| e.name == name)
        })
        .ok_or(refuse(
            StatusCode::BAD_REQUEST,
            "no offered protocol is enabled on this vhost",
        ))?;
        let i = vhost
            .ws_protocols
            .iter()
            .position(|e| e.name == chosen)
            .ok_or(refuse(
                StatusCode::BAD_REQUEST,
                "no offered protocol is enabled on this vhost",
            ))?;
        (i, Some(chosen.to_string()))
    } else {
        if vhost.disable_no_protocol_ws_upgrades {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "no Sec-WebSocket-Protocol and this vhost requires one",
            ));
        }
        let by_mount =
            mount_protocol.and_then(|p| vhost.ws_protocols.iter().position(|e| e.name == p));
        let i = by_mount
            .or_else(|| vhost.ws_protocols.iter().position(|e| e.default))
            .ok_or(refuse(
                StatusCode::BAD_REQUEST,
                "no Sec-WebSocket-Protocol and no default protocol",
            ))?;
        (i, None)
    };

    let mut headers = HeaderMap::new();
    if !at.h2
        && let Some(key) = key
    {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&handshake::accept_key(key.as_bytes())) {
            headers.insert(HeaderName::from_static("sec-websocket-accept"), v);
        }
    }
    if let Some(p) = echo
        && let Ok(v) = HeaderValue::from_str(&p)
    {
        headers.insert(HeaderName::from_static("sec-websocket-protocol"), v);
    }
    // permessage-deflate (RFC 7692): the first acceptable offer, if the
    // vhost allows compression.
    let mut deflate = None;
    if vhost.ws_deflate
        && let Some((params, answer)) = crate::deflate::negotiate(
            h.get_all("sec-websocket-extensions")
                .iter()
                .map(|v| v.as_bytes()),
        )
        && let Ok(v) = HeaderValue::from_str(&answer)
    {
        headers.insert(HeaderName::from_static("sec-websocket-extensions"), v);
        deflate = Some(params);
    }
    Ok(Accepted {
        entry,
        headers,
        deflate,
    })
}

/// SPEC §6.2: `same`, `trusted` or `off`; no Origin header is allowed.
fn origin_allowed(
    h: &HeaderMap,
    authority: Option<&str>,
    vhost: &Vhost,
    at: Arrival,
) -> Result<(), Refused> {
    let Some(origin) = h.get(header::ORIGIN) else {
        return Ok(());
    };
    let foreign = || Err(refuse(StatusCode::FORBIDDEN, "foreign Origin"));
    let Ok(origin) = origin.to_str() else {
        return foreign();
    };
    match vhost.ws_origin_check {
        OriginCheck::Off => Ok(()),
        OriginCheck::Trusted => {
            let o = origin.trim().trim_end_matches('/');
            let ok = url::Url::parse(o)
                .map(|u| u.origin().ascii_serialization())
                .is_ok_and(|o| vhost.ws_trusted_origins.contains(&o));
            if ok { Ok(()) } else { foreign() }
        }
        OriginCheck::Same => {
            let Ok(u) = url::Url::parse(origin.trim()) else {
                return foreign();
            };
            let scheme = if at.tls { "https" } else { "http" };
            // HTTP/2 has `:authority` instead of Host.
            let host_header = h
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or(authority)
                .unwrap_or("");
            let (host, host_port) = lwsws_config::split_host_port(host_header);
            let port = at
                .port
                .or(host_port)
                .unwrap_or(if at.tls { 443 } else { 80 });
            let same = u.scheme() == scheme
                && u.host_str().is_some_and(|oh| {
                    let oh = oh.trim_start_matches('[').trim_end_matches(']');
                    oh.eq_ignore_ascii_case(host.trim_end_matches('.'))
                })
                && u.port_or_known_default() == Some(port);
            if same { Ok(()) } else { foreign() }
        }
    }
}
