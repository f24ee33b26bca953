//! The request pipeline, top to bottom: refuse unwanted user agents, choose
//! the vhost, choose the mount, run its handler, finish the response with
//! the server-wide and vhost headers. Nothing here goes back up.

use crate::State;
use crate::conn::ConnInfo;
use crate::error_page;
use http::{HeaderValue, Request, Response, StatusCode, header};
use lwsws_config::{Origin, Vhost};
use lwsws_mounts::{Body, HttpError};

/// Answers one request.
pub(crate) async fn handle<B>(state: &State, conn: &ConnInfo, req: Request<B>) -> Response<Body> {
    let (parts, _body) = req.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));

    let result = route(state, conn, &parts, host).await;
    let (vhost, resp) = match result {
        Ok((v, r)) => (Some(v), r),
        Err((v, e)) => (v, error_page::render(e)),
    };
    finish(state, vhost.map(|i| &state.config.vhosts[i]), resp)
}

type Routed = Result<(usize, Response<Body>), (Option<usize>, HttpError)>;

async fn route(
    state: &State,
    conn: &ConnInfo,
    parts: &http::request::Parts,
    host: Option<&str>,
) -> Routed {
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
        return Err((None, HttpError::new(r.status)));
    }
    let vhost = state
        .router
        .select_vhost(conn.listener, host, None)
        .map_err(|_| (None, HttpError::new(StatusCode::MISDIRECTED_REQUEST)))?;
    let v = &state.config.vhosts[vhost];
    let path = parts.uri.path();
    let Some((mi, remainder)) = state.router.select_mount(vhost, path) else {
        return Err((Some(vhost), HttpError::new(StatusCode::NOT_FOUND)));
    };
    let mount = &v.mounts[mi];
    let resp = match &mount.origin {
        Origin::File(root) => lwsws_mounts::file::serve(parts, mount, root, remainder).await,
        Origin::Redirect(base) => Err(lwsws_mounts::redirect::redirect(
            base,
            remainder,
            parts.uri.query(),
        )),
        Origin::Cgi(_) | Origin::Proxy(_) | Origin::Callback(_) => {
            Err(HttpError::new(StatusCode::NOT_IMPLEMENTED))
        }
    };
    resp.map(|r| (vhost, r)).map_err(|e| (Some(vhost), e))
}

/// Adds `Server:` and the vhost's `headers` to every response.
fn finish(state: &State, vhost: Option<&Vhost>, mut resp: Response<Body>) -> Response<Body> {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&state.config.global.server_string) {
        h.insert(header::SERVER, v);
    }
    if let Some(v) = vhost {
        for (k, val) in &v.headers {
            h.append(k.clone(), val.clone());
        }
    }
    resp
}
