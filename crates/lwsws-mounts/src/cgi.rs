//! CGI mounts (RFC 3875, SPEC §3.4): run the program with the request's
//! meta-variables, stream the request body to its stdin, parse the CGI
//! header block from its stdout, and stream the rest to the client.
//!
//! The program runs in its own process group. The group is killed (TERM,
//! then KILL) when the client goes away before the program's output ended
//! (the request future, or later the response body, is dropped first), and
//! when `cgi-timeout` passes before both the program has exited and its
//! output has ended (a child it left behind may hold stdout open); a
//! response cut by the timeout ends with an error, not a clean end. tokio
//! reaps the child in every case. stderr lines go to the error log with the
//! mount.

use crate::{Body, HttpError};
use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use lwsws_config::Mount;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest CGI header block accepted from a program.
const MAX_CGI_HEAD: usize = 64 * 1024;
/// Time between SIGTERM and SIGKILL when a program is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Process groups of CGI programs whose reaper has not finished.
static LIVE_GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// SIGKILL to every CGI program group still running (the worker is exiting).
pub fn kill_all_groups() {
    let groups = std::mem::take(&mut *LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()));
    for pgid in groups {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Facts about the request that are not in its head.
#[derive(Debug, Clone)]
pub struct CgiRequest<'a> {
    pub server_software: &'a str,
    /// The vhost's name, used when the request has no Host.
    pub server_name: &'a str,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub tls: bool,
    /// The verified client certificate's subject (`SSL_CLIENT_S_DN`).
    pub client_subject: Option<&'a str>,
    /// The user basic auth let in.
    pub user: Option<&'a str>,
}

/// What a CGI program answered.
pub enum CgiOutcome {
    Response(Box<Response<Body>>),
    /// A `Location:` with a local path and no `Status:`: serve that path instead.
    InternalRedirect(String),
}

/// Limits CGI programs running at once in this worker (`cgi-max-processes`).
#[derive(Debug, Clone)]
pub struct CgiLimiter(Arc<Semaphore>, CgiCounters);

/// Programs started and programs killed by `cgi-timeout` (for metrics).
#[derive(Debug, Clone, Default)]
pub struct CgiCounters {
    pub runs: Arc<std::sync::atomic::AtomicU64>,
    pub timeouts: Arc<std::sync::atomic::AtomicU64>,
}

impl CgiLimiter {
    pub fn new(max: usize, counters: CgiCounters) -> Self {
        CgiLimiter(Arc::new(Semaphore::new(max)), counters)
    }
}

/// Runs the program of a `cgi://` mount for one request.
pub async fn serve<B>(
    parts: &Parts,
    body: B,
    mount: &Mount,
    program: &Path,
    remainder: &str,
    info: &CgiRequest<'_>,
    limiter: &CgiLimiter,
) -> Result<CgiOutcome, HttpError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let Ok(permit) = limiter.0.clone().try_acquire_owned() else {
        return Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")));
    };
    let env = meta_variables(parts, mount, remainder, info)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = program.parent() {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| {
        tracing::error!(program = %program.display(), error = %e, "cannot start CGI program");
        HttpError::new(StatusCode::BAD_GATEWAY)
    })?;
    limiter.1.runs.fetch_add(1, Ordering::Relaxed);
    let timeouts = limiter.1.timeouts.clone();
    let pgid = child.id().map_or(0, |p| p as i32);
    if pgid > 0 {
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pgid);
    }
    let stdout = child.stdout.take();
    let group = Arc::new(Group {
        pgid,
        output_done: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
    });
    // From here on, whatever ends this request before the program's output
    // ended stops the program: an error below, an internal redirect, the
    // client going away while we wait for the headers (the caller drops this
    // future), or later while the body streams (the guard then lives in the
    // body). Dropping the guard also tells the reaper the response is over.
    let (released_tx, mut released) = oneshot::channel::<()>();
    let guard = GroupGuard {
        group: group.clone(),
        _released: released_tx,
    };

    // stdin: the request body, streamed.
    if let Some(stdin) = child.stdin.take() {
        tokio::spawn(feed_stdin(body, stdin));
    }
    // stderr: to the error log, line by line.
    if let Some(stderr) = child.stderr.take() {
        let mountpoint = mount.mountpoint.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(mount = %mountpoint, "cgi stderr: {line}");
            }
        });
    }
    // Reap the child. The request is over when the program has exited and
    // the response is done with its output (the guard was dropped); if
    // cgi-timeout passes first, stop the group, which also ends an output
    // that a leftover child still held open.
    {
        let group = group.clone();
        let timeout = mount.cgi_timeout;
        let program = program.display().to_string();
        tokio::spawn(async move {
            let _permit: OwnedSemaphorePermit = permit;
            let over = async {
                let _ = child.wait().await;
                let _ = (&mut released).await;
            };
            if tokio::time::timeout(timeout, over).await.is_err() {
                tracing::warn!(
                    program,
                    seconds = timeout.as_secs(),
                    "CGI program exceeded cgi-timeout; killing it"
                );
                group.timed_out.store(true, Ordering::Release);
                timeouts.fetch_add(1, Ordering::Relaxed);
                group.kill().await;
                let _ = child.wait().await;
            }
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|&g| g != group.pgid);
        });
    }

    let Some(mut stdout) = stdout else {
        return Err(HttpError::new(StatusCode::BAD_GATEWAY));
    };
    let (head, rest) = match read_head(&mut stdout).await {
        Ok(h) => h,
        Err((why, at_eof)) => {
            tracing::warn!(program = %program.display(), reason = why, "bad CGI response");
            // Output that ended needs no stopping; the reaper still bounds
            // a program that closed stdout and runs on.
            group.output_done.store(at_eof, Ordering::Release);
            return Err(HttpError::new(if group.timed_out.load(Ordering::Acquire) {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            }));
        }
    };
    let parsed = match parse_head(&head) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(program = %program.display(), reason = why, "bad CGI response headers");
            return Err(HttpError::new(StatusCode::BAD_GATEWAY));
        }
    };
    if parsed.status.is_none()
        && let Some(loc) = parsed
            .headers
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
        && loc.starts_with('/')
    {
        let target = loc.to_string();
        // The program's own output no longer matters; dropping the guard
        // stops the program if it is still running.
        drop(stdout);
        return Ok(CgiOutcome::InternalRedirect(target));
    }
    let mut status = parsed.status.unwrap_or(StatusCode::OK);
    if parsed.status.is_none() && parsed.headers.contains_key(header::LOCATION) {
        status = StatusCode::FOUND;
    }
    let body = CgiBody {
        first: if rest.is_empty() {
            None
        } else {
            Some(rest.freeze())
        },
        stdout,
        buf: BytesMut::new(),
        group: guard,
    };
    let mut resp = Response::new(Body::Stream(Box::pin(body)));
    *resp.status_mut() = status;
    *resp.headers_mut() = parsed.headers;
    Ok(CgiOutcome::Response(Box::new(resp)))
}

/// RFC 3875 meta-variables plus `cgi-env`, and `PATH` from our environment.
fn meta_variables(
    parts: &Parts,
    mount: &Mount,
    remainder: &str,
    info: &CgiRequest<'_>,
) -> Result<Vec<(String, String)>, HttpError> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(32);
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", info.server_software.into());
    // Not lwsws_config::split_host_port: RFC 3875 §4.1.14 keeps the brackets
    // of an IPv6 SERVER_NAME, so only a trailing numeric port is cut here.
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                .map_or(h, |(h, _)| h)
        })
        .unwrap_or(info.server_name);
    set("SERVER_NAME", host.to_string());
    if let Some(local) = info.local {
        set("SERVER_PORT", local.port().to_string());
    }
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("REQUEST_METHOD", parts.method.as_str().into());
    set(
        "SCRIPT_NAME",
        mount.mountpoint.trim_end_matches('/').to_string(),
    );
    if !remainder.is_empty() {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(remainder).collect();
        let path_info =
            String::from_utf8(decoded).map_err(|_| HttpError::new(StatusCode::BAD_REQUEST))?;
        if path_info.contains('\0') {
            return Err(HttpError::new(StatusCode::BAD_REQUEST));
        }
        set("PATH_INFO", path_info);
    }
    set("QUERY_STRING", parts.uri.query().unwrap_or("").to_string());
    set(
        "REQUEST_URI",
        parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
    );
    if let Some(peer) = info.peer {
        set("REMOTE_ADDR", peer.ip().to_string());
        set("REMOTE_PORT", peer.port().to_string());
    }
    if let Some(ct) = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        set("CONTENT_TYPE", ct.to_string());
    }
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    if !chunked
        && let Some(cl) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
    {
        set("CONTENT_LENGTH", cl.to_string());
    }
    if info.tls {
        set("HTTPS", "on".into());
        // mod_ssl's names: the verified subject, and whether there was one.
        match info.client_subject {
            Some(dn) => {
                set("SSL_CLIENT_S_DN", dn.into());
                set("SSL_CLIENT_VERIFY", "SUCCESS".into());
            }
            None => set("SSL_CLIENT_VERIFY", "NONE".into()),
        }
    }
    if let Some(user) = info.user {
        set("REMOTE_USER", user.to_string());
        set("AUTH_TYPE", "Basic".into());
    }
    // HTTP_* for request headers: never HTTP_PROXY (httpoxy), never the
    // credentials, and not the two that have their own variables.
    let mut seen: Vec<(String, String)> = Vec::new();
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "proxy"
                | "authorization"
                | "proxy-authorization"
                | "content-type"
                | "content-length"
                | "transfer-encoding"
                | "connection"
        ) {
            continue;
        }
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match seen.iter_mut().find(|(k, _)| *k == var) {
            Some((_, v)) => {
                // Cookie crumbs (HTTP/2 sends one field per cookie) join
                // with "; " (RFC 9113 §8.2.3); other fields with ", ".
                v.push_str(if name == header::COOKIE { "; " } else { ", " });
                v.push_str(&value);
            }
            None => seen.push((var, value)),
        }
    }
    env.extend(seen);
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".into(), path.to_string_lossy().into_owned()));
    } else {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    for (k, v) in &mount.cgi_env {
        env.retain(|(e, _)| e != k);
        env.push((k.clone(), v.clone()));
    }
    Ok(env)
}

async fn feed_stdin<B>(mut body: B, mut stdin: tokio::process::ChildStdin)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data()
                    && stdin.write_all(&data).await.is_err()
                {
                    // The program stopped reading; the rest is not wanted.
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body ended early; closing CGI stdin");
                return;
            }
        }
    }
    let _ = stdin.shutdown().await;
}

/// Reads stdout up to the blank line that ends the CGI header block. An
/// error says why, and whether the output had ended.
async fn read_head<R: AsyncRead + Unpin>(
    out: &mut R,
) -> Result<(BytesMut, BytesMut), (&'static str, bool)> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some(end) = head_end(&buf) {
            let rest = buf.split_off(end);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_CGI_HEAD {
            return Err(("header block larger than 64 KiB", false));
        }
        match out.read_buf(&mut buf).await {
            Ok(0) => {
                let why = if buf.is_empty() {
                    "the program exited without output"
                } else {
                    "the program exited before the end of its headers"
                };
                return Err((why, true));
            }
            Ok(_) => {}
            Err(_) => return Err(("cannot read the program's output", false)),
        }
    }
}

/// Index just past `\r\n\r\n` or `\n\n` (CGI programs often write bare LF).
fn head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            if b.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// A parsed CGI header block.
#[derive(Debug)]
pub struct CgiHead {
    pub status: Option<StatusCode>,
    pub headers: HeaderMap,
}

/// Parses the header block with httparse: `Status:` gives the status, the
/// hop-by-hop headers are dropped, everything else is passed on.
pub fn parse_head(head: &[u8]) -> Result<CgiHead, &'static str> {
    let mut raw = [httparse::EMPTY_HEADER; 100];
    let parsed = match httparse::parse_headers(head, &mut raw) {
        Ok(httparse::Status::Complete((_, h))) => h,
        Ok(httparse::Status::Partial) => return Err("incomplete header block"),
        Err(_) => return Err("malformed header block"),
    };
    let mut out = CgiHead {
        status: None,
        headers: HeaderMap::new(),
    };
    for h in parsed {
        if h.name.eq_ignore_ascii_case("status") {
            let v = std::str::from_utf8(h.value).map_err(|_| "Status is not text")?;
            let code = v.trim().split(' ').next().unwrap_or("");
            let code: u16 = code.parse().map_err(|_| "Status has no number")?;
            out.status = Some(StatusCode::from_u16(code).map_err(|_| "Status out of range")?);
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        if matches!(
            name.as_str(),
            "connection"
                | "transfer-encoding"
                | "keep-alive"
                | "upgrade"
                | "proxy-connection"
                | "te"
                | "trailer"
        ) {
            continue;
        }
        let value = HeaderValue::from_bytes(h.value).map_err(|_| "invalid header value")?;
        out.headers.append(name, value);
    }
    Ok(out)
}

/// The program's process group, killed when it must stop early. Shared by
/// the reaper task and the guard (in `serve`, then in the response body).
struct Group {
    pgid: i32,
    /// Set when stdout reached its end: every process of the group has
    /// closed it, and a client leaving after that stops nothing.
    output_done: AtomicBool,
    /// Set by the reaper when cgi-timeout passed: the body then ends with an
    /// error, so that the client sees a cut response, not a complete one.
    timed_out: AtomicBool,
}

impl Group {
    /// TERM, then KILL after a grace period, to the whole group.
    async fn kill(&self) {
        if self.pgid <= 0 {
            return;
        }
        let pg = nix::unistd::Pid::from_raw(self.pgid);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
        tokio::time::sleep(KILL_GRACE).await;
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
    }

    fn kill_soon(self: &Arc<Self>) {
        let g = self.clone();
        tokio::spawn(async move { g.kill().await });
    }
}

/// Held by `serve`, then by the response body: dropping it before the
/// program's output ended (an error, or the client went away) stops the
/// group, even when the program itself has exited and a child it left
/// holds stdout. Dropping it also drops `_released`, which tells the reaper
/// that the response is over.
struct GroupGuard {
    group: Arc<Group>,
    _released: oneshot::Sender<()>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.group.output_done.load(Ordering::Acquire)
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.group.kill_soon();
        }
    }
}

/// The response body: what followed the headers, then the rest of stdout.
struct CgiBody {
    first: Option<Bytes>,
    stdout: tokio::process::ChildStdout,
    buf: BytesMut,
    group: GroupGuard,
}

impl http_body::Body for CgiBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(b) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        this.buf.reserve(32 * 1024);
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.stdout), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                // End of output: every process of the group closed stdout.
                this.group.group.output_done.store(true, Ordering::Release);
                if this.group.group.timed_out.load(Ordering::Acquire) {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "cgi-timeout passed; the program was killed",
                    ))));
                }
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_accepts_crlf_and_lf() {
        assert_eq!(head_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(head_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(head_end(b"A: b\n"), None);
    }

    #[test]
    fn parses_status_location_and_drops_hop_by_hop() {
        let h = parse_head(
            b"Status: 404 Nope\r\nContent-Type: text/plain\r\nConnection: close\r\nX-A: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, Some(StatusCode::NOT_FOUND));
        assert_eq!(h.headers["content-type"], "text/plain");
        assert!(!h.headers.contains_key("connection"));
        assert_eq!(h.headers["x-a"], "1");
        let h = parse_head(b"Location: /elsewhere\n\n").unwrap();
        assert_eq!(h.status, None);
        assert!(parse_head(b"no colon here\n\n").is_err());
        assert!(parse_head(b"Status: abc\n\n").is_err());
    }
}
