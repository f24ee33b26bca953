//! The WebSocket step of the pipeline: check the handshake rules and the
//! protocol's own auth, answer 101, and hand the upgraded connection to the
//! protocol's session in a task the server tracks (so drain and shutdown
//! reach it).

use crate::State;
use crate::conn::ConnInfo;
use http::request::Parts;
use http::{Response, StatusCode};
use lwsws_mounts::{Body, HttpError};
use lwsws_ws::conn::{ConnHandle, DriverConfig};
use lwsws_ws::protocol::ConnectInfo;
use lwsws_ws::upgrade::{Arrival, negotiate};

/// Answers a WebSocket upgrade on `vhost`.
pub(crate) async fn upgrade(
    state: &State,
    conn: &ConnInfo,
    parts: &Parts,
    vhost: usize,
    mount_protocol: Option<&str>,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    user: &mut Option<String>,
) -> Result<Response<Body>, HttpError> {
    let v = &state.config.vhosts[vhost];
    let arrival = Arrival {
        tls: conn.https(),
        // Behind a balancer the client came in on the balancer's port,
        // which the Host header names (or the scheme implies).
        port: conn
            .local
            .map(|a| a.port())
            .filter(|_| conn.forwarded_https.is_none()),
        h2: conn.h2,
    };
    let accepted = negotiate(parts, v, mount_protocol, arrival).map_err(|r| {
        tracing::info!(
            peer = ?conn.peer,
            vhost = %v.name,
            origin = ?parts.headers.get(http::header::ORIGIN),
            status = r.status.as_u16(),
            reason = r.reason,
            "WebSocket handshake refused"
        );
        HttpError {
            status: r.status,
            headers: r.headers,
        }
    })?;
    // A protocol's own basic-auth pvo protects its upgrade.
    if let Some(auth) = state.resources.ws_basic_auth(vhost, accepted.entry) {
        match auth
            .check_async(parts.headers.get(http::header::AUTHORIZATION))
            .await
        {
            Some(u) => *user = Some(u),
            None => return Err(lwsws_mounts::auth::challenge(&v.name)),
        }
    }
    // A signed token (SPEC §6.5), checked here unless the protocol entry
    // expects it as the first message.
    let token_key = state.resources.ws_token_key(vhost, accepted.entry).cloned();
    let first_message = token_key.is_some()
        && v.ws_protocols[accepted.entry]
            .pvo("auth-first-message")
            .is_some_and(|s| matches!(s.trim(), "1" | "on" | "yes" | "true"));
    if let Some(key) = &token_key
        && !first_message
    {
        let found = lwsws_ws::token::from_request(parts);
        let checked = match &found {
            None => Err(lwsws_ws::token::TokenError::Missing),
            Some((t, _)) => key.verify(t),
        };
        match checked {
            Ok(u) => *user = Some(u),
            Err(e) => {
                // The token itself is never logged.
                tracing::info!(
                    peer = ?conn.peer,
                    vhost = %v.name,
                    carrier = ?found.map(|(_, c)| c),
                    reason = %e,
                    "WebSocket token refused"
                );
                return Ok(unauthorized(&e.to_string()));
            }
        }
    }
    let Some(protocol) = state
        .ws
        .get(vhost)
        .and_then(|p| p.get(accepted.entry))
        .cloned()
    else {
        return Err(HttpError::new(StatusCode::BAD_REQUEST));
    };
    let Some(on_upgrade) = on_upgrade else {
        return Err(HttpError::new(StatusCode::BAD_REQUEST));
    };
    let handle = ConnHandle::new(user.clone());
    handle.count_messages(
        state
            .stats
            .ws_messages(&v.ws_protocols[accepted.entry].name),
    );
    // Counted from before the session starts, so what it reports includes it.
    let counted = lwsws_ws::stats::WsCount::new(state.stats.clone(), vhost);
    let auth_counted = user
        .as_deref()
        .map(|u| lwsws_ws::stats::AuthCount::new(state.stats.clone(), u));
    let offered: Vec<String> = parts
        .headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let chosen = accepted
        .headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let info = ConnectInfo {
        query: parts.uri.query().map(str::to_string),
        user: user.clone(),
        headers: parts.headers.clone(),
        offered,
        chosen,
        ..ConnectInfo::default()
    };
    // First-message mode: the protocol's session starts once a token came.
    let (session, info) = if let Some(key) = token_key.filter(|_| first_message) {
        let s = lwsws_ws::auth::FirstMessage::new(
            &handle,
            protocol.clone(),
            info,
            key,
            state.stats.clone(),
            state.config.global.timeout,
        );
        let s: Box<dyn lwsws_ws::protocol::Session> = Box::new(s);
        (Some(s), ConnectInfo::default())
    // A protocol running foreign code (plugins) connects on a blocking thread.
    } else if protocol.connect_blocks() {
        let protocol = protocol.clone();
        let handle = handle.clone();
        tokio::task::spawn_blocking(move || {
            let s = protocol.connect(&handle, &info);
            (s, info)
        })
        .await
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR))?
    } else {
        (protocol.connect(&handle, &info), info)
    };
    let Some(session) = session else {
        return Err(HttpError::new(StatusCode::FORBIDDEN));
    };
    let mut headers = accepted.headers;
    if let Ok(mut added) = info.response_headers.into_inner() {
        let mut last = None;
        for (name, value) in added.drain() {
            // `drain` yields the name once, before all of its values.
            if let Some(n) = name {
                headers.remove(&n);
                last = Some(n);
            }
            if let Some(n) = &last {
                headers.append(n.clone(), value);
            }
        }
    }
    let cfg = DriverConfig {
        codec: lwsws_ws::Config {
            max_message_size: usize::try_from(v.ws_max_message_size).unwrap_or(usize::MAX),
            allow_reserved_close_codes: v.ws_allow_reserved_status_codes,
            compression: accepted.deflate.is_some(),
        },
        ping_after: state.config.global.ws_pingpong,
        deflate: accepted
            .deflate
            .map(|params| lwsws_ws::deflate::DeflateConfig {
                params,
                threshold: usize::try_from(v.ws_deflate_threshold).unwrap_or(usize::MAX),
            }),
    };
    let close = state.control.close.clone();
    let protocol_name = v.ws_protocols[accepted.entry].name.clone();
    // The connection's place and the client's slot live as long as the WebSocket.
    let held = conn.take_held();
    state.tasks.spawn(async move {
        let _held = held;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                return;
            }
        };
        let _counted = counted;
        let _auth_counted = auth_counted;
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let ended = lwsws_ws::conn::drive(io, handle, session, cfg, close).await;
        tracing::debug!(protocol = %protocol_name, ?ended, "WebSocket connection ended");
    });
    let mut resp = Response::new(Body::empty());
    // RFC 8441: an extended CONNECT is accepted with 200, not 101.
    *resp.status_mut() = if conn.h2 {
        StatusCode::OK
    } else {
        StatusCode::SWITCHING_PROTOCOLS
    };
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A 401 for a missing, bad or expired token: a short reason, no challenge
/// (browsers do not answer one on a WebSocket handshake).
fn unauthorized(reason: &str) -> Response<Body> {
    let mut resp = Response::new(Body::full(format!("{reason}\n")));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}
