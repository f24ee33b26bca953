//! The request pipeline, top to bottom: refuse what the head guard or the
//! user-agent rules reject, choose the vhost, choose the mount, check basic
//! auth, run the mount's handler, finish the response with the server-wide
//! and vhost headers, and attach the access-log entry. Nothing here goes back.

use crate::State;
use crate::access_log::{Entry, LoggedBody};
use crate::conn::ConnInfo;
use crate::error_page;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use lwsws_config::Origin;
use lwsws_mounts::cgi::CgiOutcome;
use lwsws_mounts::{Body, HttpError};

/// The outcome of routing and handling, before the common finishing steps.
struct Handled {
    vhost: Option<usize>,
    user: Option<String>,
    response: Result<Response<Body>, HttpError>,
    /// Close the connection after this response (a rejected head).
    close: bool,
    /// A CGI program asked for this local path to be served instead.
    internal_redirect: Option<String>,
    /// A proxy mount answered (its 502 and 504 are upstream errors).
    proxied: bool,
}

impl Handled {
    /// An answer of `e` that no vhost took yet.
    fn error(e: HttpError) -> Handled {
        Handled {
            vhost: None,
            user: None,
            response: Err(e),
            close: false,
            internal_redirect: None,
            proxied: false,
        }
    }
}

/// The head of a GET for `target` (path and query), keeping the client's headers.
fn redirected_parts(parts: &Parts, target: &str) -> Option<Parts> {
    let uri: http::Uri = target.parse().ok()?;
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .version(parts.version)
        .body(())
        .ok()?;
    let h = req.headers_mut();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_LENGTH
            && k != header::CONTENT_TYPE
            && k != header::TRANSFER_ENCODING
        {
            h.append(k.clone(), v.clone());
        }
    }
    Some(req.into_parts().0)
}

/// How many CGI internal redirects one request may follow.
const MAX_INTERNAL_REDIRECTS: usize = 4;

/// Answers one request.
pub(crate) async fn handle<B>(
    state: &State,
    conn: &ConnInfo,
    req: Request<B>,
) -> Response<LoggedBody>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let busy = conn.handle.in_flight();
    let (mut parts, body) = req.into_parts();
    // HTTP/2 names the host in `:authority`; a gateway gives it to what
    // follows as Host (RFC 9113 §8.3.1), so CGI, proxies and logs see it.
    if !parts.headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    // Behind a trusted balancer the client is who X-Forwarded-For names.
    let forwarded = crate::client::forwarded(&state.trusted, conn, &parts.headers);
    let conn = forwarded.as_ref().unwrap_or(conn);
    // `ip-limit-ah`: requests in progress per client address.
    let (slot, over_limit) = match (&state.ip_limit_ah, conn.peer) {
        (Some(limit), Some(p)) => match limit.acquire(p.ip()) {
            Some(s) => (Some(s), false),
            None => (None, true),
        },
        _ => (None, false),
    };
    let mut h = if over_limit {
        Handled::error(
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        )
    } else {
        route(state, conn, &parts, body, on_upgrade).await
    };
    // A CGI program may answer with a local Location: serve that path instead.
    let mut hops = 0;
    while let Some(target) = h.internal_redirect.take() {
        hops += 1;
        if hops > MAX_INTERNAL_REDIRECTS {
            h.response = Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR));
            break;
        }
        let Some(next) = redirected_parts(&parts, &target) else {
            h.response = Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR));
            break;
        };
        let user = h.user.take();
        h = Box::pin(route(
            state,
            conn,
            &next,
            http_body_util::Empty::<bytes::Bytes>::new(),
            None,
        ))
        .await;
        h.user = h.user.take().or(user);
    }
    let mut resp = match h.response {
        Ok(r) => r,
        Err(e) if e.status == StatusCode::NOT_FOUND => not_found(state, h.vhost, &parts, e).await,
        Err(e) => error_page::render(e),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // From here on the connection carries another protocol.
        conn.handle.mark_upgraded();
    }
    finish(state, conn, h.vhost, &mut resp, h.close);
    state.stats.request(h.vhost, resp.status().as_u16());
    if h.proxied
        && matches!(
            resp.status(),
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        )
        && let Some(v) = h.vhost.and_then(|i| state.stats.vhosts.get(i))
    {
        v.proxy_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let entry = log_entry(state, conn, &parts, h.vhost, h.user, resp.status());
    let counted = h.vhost.map(|v| (state.stats.clone(), v));
    resp.map(|b| LoggedBody::new(b, entry, busy, counted, slot))
}

async fn route<B>(
    state: &State,
    conn: &ConnInfo,
    parts: &Parts,
    body: B,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Handled
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let mut h = Handled::error(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR));
    // 1. A head the guard refused arrives as a synthetic request.
    if let Some(status) = rejected(parts) {
        if let Some((code, reason)) = conn.handle.violation() {
            tracing::info!(peer = ?conn.peer, status = code, reason, "bad request head refused");
        }
        h.response = Err(HttpError::new(status));
        h.close = true;
        return h;
    }
    // 2. User agents the operator refuses.
    let g = &state.config.global;
    if !g.reject_service_keywords.is_empty()
        && let Some(ua) = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|u| u.to_str().ok())
        && let Some(r) = g
            .reject_service_keywords
            .iter()
            .find(|r| ua.contains(&r.keyword))
    {
        h.response = Err(HttpError::new(r.status));
        return h;
    }
    // 3. Vhost by Host.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let sni = conn.tls.as_ref().map(|t| t.sni_vhost);
    let vhost = match state.router.select_vhost(conn.listener, host, sni) {
        Ok(v) => v,
        Err(_) => {
            h.response = Err(HttpError::new(StatusCode::MISDIRECTED_REQUEST));
            return h;
        }
    };
    h.vhost = Some(vhost);
    let v = &state.config.vhosts[vhost];
    // An ACME HTTP-01 validation (SPEC §5.1): on plain HTTP, before any
    // redirect to https, for a token issued for this host.
    if conn.tls.is_none()
        && let Some(token) = parts.uri.path().strip_prefix(crate::acme::HTTP01_PREFIX)
        && let Some(ka) = state
            .resources
            .acme
            .http01(host_name(host.unwrap_or(&v.name)), token)
    {
        h.response = Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::full(bytes::Bytes::from(ka)))
            .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR));
        return h;
    }
    // Plaintext let in on a TLS port: served only where the vhost allows
    // it, otherwise sent to the same URL on https.
    if conn.plain_on_tls && !(v.allow_non_tls && v.allow_http_on_https) {
        h.response = Err(to_https(host.unwrap_or(&v.name), parts));
        h.close = true;
        return h;
    }
    // 4. Mount by path. A WebSocket upgrade is served on any path that is
    //    not a proxy mount (those pass the upgrade to their upstream).
    let matched = state.router.select_mount(vhost, parts.uri.path());
    let proxied = matched.is_some_and(|(mi, _)| matches!(v.mounts[mi].origin, Origin::Proxy(_)));
    let websocket = !proxied && (lwsws_ws::upgrade::is_upgrade(parts) || is_h2_websocket(parts));
    if matched.is_none() && !websocket {
        h.response = Err(HttpError::new(StatusCode::NOT_FOUND));
        return h;
    }
    // 5. Basic auth, before any handler sees the request.
    if let Some((mi, _)) = matched
        && let Some(auth) = state.resources.basic_auth(vhost, mi)
    {
        match auth
            .check_async(parts.headers.get(header::AUTHORIZATION))
            .await
        {
            Some(user) => h.user = Some(user),
            None => {
                h.response = Err(lwsws_mounts::auth::challenge(&v.name));
                return h;
            }
        }
    }
    if websocket {
        let mount_protocol = matched.and_then(|(mi, _)| v.mounts[mi].protocol.as_deref());
        h.response = crate::websocket::upgrade(
            state,
            conn,
            parts,
            vhost,
            mount_protocol,
            on_upgrade,
            &mut h.user,
        )
        .await;
        return h;
    }
    let Some((mi, remainder)) = matched else {
        h.response = Err(HttpError::new(StatusCode::NOT_FOUND));
        return h;
    };
    let mount = &v.mounts[mi];
    // 6. The handler.
    h.response = match &mount.origin {
        Origin::File(root) => {
            lwsws_mounts::file::serve_cached(parts, mount, root, remainder, &state.file_cache).await
        }
        Origin::Redirect(base) => Err(lwsws_mounts::redirect::redirect(
            base,
            remainder,
            parts.uri.query(),
        )),
        Origin::Cgi(program) => {
            let info = lwsws_mounts::cgi::CgiRequest {
                server_software: &g.server_string,
                server_name: &v.name,
                local: conn.local,
                peer: conn.peer,
                tls: conn.https(),
                client_subject: conn.tls.as_ref().and_then(|t| t.client_subject.as_deref()),
                user: h.user.as_deref(),
            };
            match lwsws_mounts::cgi::serve(
                parts, body, mount, program, remainder, &info, &state.cgi,
            )
            .await
            {
                Ok(CgiOutcome::Response(r)) => Ok(*r),
                Ok(CgiOutcome::InternalRedirect(target)) => {
                    h.internal_redirect = Some(target);
                    Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR))
                }
                Err(e) => Err(e),
            }
        }
        Origin::Proxy(origin) => {
            h.proxied = true;
            let info = lwsws_mounts::proxy::ProxyRequest {
                peer: conn.peer,
                tls: conn.https(),
                vhost: &v.name,
                connect_timeout: g.timeout,
                tunnels: &state.tasks,
                close: &state.control.close,
            };
            lwsws_mounts::proxy::serve(
                parts,
                body,
                on_upgrade,
                mount,
                origin,
                remainder,
                &info,
                &state.proxy,
            )
            .await
        }
        Origin::Callback(name) => callback(state, vhost, name, parts, &mount.pmo),
    };
    h
}

/// A `callback://NAME` mount: the protocol NAME enabled on this vhost answers.
fn callback(
    state: &State,
    vhost: usize,
    name: &str,
    parts: &Parts,
    pmo: &[(String, String)],
) -> Result<Response<Body>, HttpError> {
    let v = &state.config.vhosts[vhost];
    let entry = v.ws_protocols.iter().position(|e| e.name == name);
    let protocol = entry.and_then(|i| state.ws.get(vhost).and_then(|p| p.get(i)));
    match protocol.and_then(|p| p.http(parts, pmo)) {
        Some(r) => Ok(r.map(Body::full)),
        None => Err(HttpError::new(StatusCode::NOT_FOUND)),
    }
}

/// A Host header's name: without port or trailing dot.
fn host_name(host: &str) -> &str {
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    name.trim_end_matches('.')
}

/// The status carried by the guard's synthetic request, if this is one.
fn rejected(parts: &Parts) -> Option<StatusCode> {
    let v = parts.headers.get(crate::guard::REJECT_HEADER)?;
    v.to_str()
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .or(Some(StatusCode::BAD_REQUEST))
}

/// A 404, or with `error-document-404` that page's content with status 404.
async fn not_found(
    state: &State,
    vhost: Option<usize>,
    parts: &Parts,
    e: HttpError,
) -> Response<Body> {
    let Some(vi) = vhost else {
        return error_page::render(e);
    };
    let v = &state.config.vhosts[vi];
    let Some(doc) = &v.error_document_404 else {
        return error_page::render(e);
    };
    if parts.uri.path() == doc.as_str() {
        return error_page::render(e);
    }
    let Some((mi, remainder)) = state.router.select_mount(vi, doc) else {
        return error_page::render(e);
    };
    let mount = &v.mounts[mi];
    let Origin::File(root) = &mount.origin else {
        return error_page::render(e);
    };
    // Fetch the page as a plain GET (or HEAD) of its own path.
    let mut req = Request::builder().method(if parts.method == Method::HEAD {
        Method::HEAD
    } else {
        Method::GET
    });
    if let Ok(uri) = doc.parse::<http::Uri>() {
        req = req.uri(uri);
    }
    let Ok(req) = req.body(()) else {
        return error_page::render(e);
    };
    let (doc_parts, ()) = req.into_parts();
    match lwsws_mounts::file::serve_cached(&doc_parts, mount, root, remainder, &state.file_cache)
        .await
    {
        Ok(mut r) if r.status() == StatusCode::OK => {
            *r.status_mut() = StatusCode::NOT_FOUND;
            let h = r.headers_mut();
            h.remove(header::ETAG);
            h.remove(header::LAST_MODIFIED);
            h.remove(header::ACCEPT_RANGES);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        _ => error_page::render(e),
    }
}

/// Adds `Server:`, the vhost's `headers`, and `Connection: close` when asked.
fn finish(
    state: &State,
    conn: &ConnInfo,
    vhost: Option<usize>,
    resp: &mut Response<Body>,
    close: bool,
) {
    // A draining worker ends each keep-alive connection after its next
    // response, so the client moves to the new generation (an upgrade's
    // 101 keeps its `Connection: upgrade`; the tunnel drains on its own).
    let draining = state.control.drain.is_cancelled()
        && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    if let Some(v) = &state.server_header {
        h.insert(header::SERVER, v.clone());
    }
    if let Some(v) = vhost.and_then(|i| state.config.vhosts.get(i)) {
        for (k, val) in &v.headers {
            h.append(k.clone(), val.clone());
        }
        if v.sts && conn.https() {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=15768000 ; includeSubDomains"),
            );
        }
    }
    // HTTP/2 has no Connection header: drain is its GOAWAY.
    if (close || draining) && !conn.h2 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn log_entry(
    state: &State,
    conn: &ConnInfo,
    parts: &Parts,
    vhost: Option<usize>,
    user: Option<String>,
    status: StatusCode,
) -> Option<Entry> {
    // Requests no vhost took are logged by the listener's first vhost.
    let vi = vhost.or_else(|| {
        state
            .router
            .listeners()
            .get(conn.listener)
            .and_then(|l| l.vhosts.first().copied())
    })?;
    let file = state.access_logs.get(vi)?;
    let header = |n: header::HeaderName| {
        parts
            .headers
            .get(n)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let request_line = if rejected(parts).is_some() {
        "-".to_string()
    } else {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        format!("{} {} {:?}", parts.method, target, parts.version)
    };
    Some(Entry {
        file,
        peer: conn.peer,
        user,
        request_line,
        status: status.as_u16(),
        referer: header(header::REFERER),
        user_agent: header(header::USER_AGENT),
    })
}

/// An RFC 8441 WebSocket: extended CONNECT with `:protocol` websocket.
fn is_h2_websocket(parts: &Parts) -> bool {
    parts.method == http::Method::CONNECT
        && parts
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// 301 to the same host and path on https (`redirect-http`).
fn to_https(host: &str, parts: &Parts) -> HttpError {
    // `OPTIONS *` (asterisk-form) has no path to keep.
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|t| t.starts_with('/'))
        .unwrap_or("/");
    let location = format!("https://{host}{target}");
    let mut e = HttpError::new(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        e.headers.insert(header::LOCATION, v);
    }
    e
}
