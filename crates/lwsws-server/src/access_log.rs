//! Access logs in Apache "combined" format, one line per request, written
//! when the response body is finished (or abandoned) so the byte count is
//! what was really sent.
//!
//! The files are opened by whoever starts the worker (so root-owned log
//! directories work) and handed over as [`AccessLogs`]; every write is one
//! `write` call on an `O_APPEND` descriptor, so lines of concurrent requests
//! never interleave.

use crate::guard::InFlight;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use lwsws_mounts::Body;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

/// The open access log of each vhost. The files are opened by the
/// supervisor and can be replaced while serving (SIGUSR1, after logrotate).
#[derive(Debug, Default)]
pub struct AccessLogs {
    /// Per vhost: index into `paths`/`files`, `None` when it logs nothing.
    by_vhost: Vec<Option<usize>>,
    /// Every distinct `access-log` path, in first-use order.
    paths: Vec<PathBuf>,
    files: RwLock<Vec<Arc<File>>>,
}

impl AccessLogs {
    /// Matches the already opened `files` to the `access-log` of each vhost;
    /// vhosts naming the same path share one descriptor.
    pub fn new(
        config: &lwsws_config::Config,
        mut files: Vec<(PathBuf, File)>,
    ) -> Result<AccessLogs, MissingLog> {
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut opened = Vec::new();
        let mut by_vhost = Vec::new();
        for v in &config.vhosts {
            let Some(path) = &v.access_log else {
                by_vhost.push(None);
                continue;
            };
            if let Some(i) = paths.iter().position(|p| p == path) {
                by_vhost.push(Some(i));
                continue;
            }
            let Some(at) = files.iter().position(|(p, _)| p == path) else {
                return Err(MissingLog(path.clone()));
            };
            let (p, f) = files.swap_remove(at);
            by_vhost.push(Some(paths.len()));
            paths.push(p);
            opened.push(Arc::new(f));
        }
        Ok(AccessLogs {
            by_vhost,
            paths,
            files: RwLock::new(opened),
        })
    }

    /// The distinct log paths, each once.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Takes newly opened files into use; lines of requests already under
    /// way still go to the file they started with.
    pub fn reopen(&self, files: Vec<(PathBuf, File)>) {
        let mut current = self.files.write().unwrap_or_else(|e| e.into_inner());
        for (path, f) in files {
            if let Some(i) = self.paths.iter().position(|p| *p == path)
                && let Some(slot) = current.get_mut(i)
            {
                *slot = Arc::new(f);
            }
        }
    }

    /// The log of vhost `vhost`, if it has one.
    pub(crate) fn get(&self, vhost: usize) -> Option<Arc<File>> {
        let i = (*self.by_vhost.get(vhost)?)?;
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        files.get(i).cloned()
    }
}

/// An `access-log` of the configuration with no opened file handed over.
#[derive(Debug, thiserror::Error)]
#[error("no open descriptor was handed over for access log {}", .0.display())]
pub struct MissingLog(pub PathBuf);

/// What the log line says about a request, gathered before the response goes out.
#[derive(Debug)]
pub(crate) struct Entry {
    pub file: Arc<File>,
    pub peer: Option<SocketAddr>,
    pub user: Option<String>,
    /// `"GET /path HTTP/1.1"` without the quotes.
    pub request_line: String,
    pub status: u16,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

impl Entry {
    fn write(&self, bytes: u64) {
        let now = time::OffsetDateTime::now_utc();
        let stamp = now
            .format(time::macros::format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let host = self
            .peer
            .map_or_else(|| "-".to_string(), |p| p.ip().to_string());
        let line = format!(
            "{host} - {user} [{stamp}] \"{req}\" {status} {bytes} \"{referer}\" \"{ua}\"\n",
            user = self.user.as_deref().map_or_else(|| "-".to_string(), escape),
            req = escape(&redact_request_line(&self.request_line)),
            status = self.status,
            bytes = if bytes == 0 {
                "-".to_string()
            } else {
                bytes.to_string()
            },
            referer = self.referer.as_deref().map_or_else(
                || "-".to_string(),
                |r| escape(&lwsws_ws::token::redact_query(r))
            ),
            ua = self
                .user_agent
                .as_deref()
                .map_or_else(|| "-".to_string(), escape),
        );
        if let Err(e) = (&*self.file).write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "cannot write the access log");
        }
    }
}

/// The request line with `token=` query values (WebSocket tokens, SPEC
/// §6.5) shown as `token=<redacted>`.
fn redact_request_line(line: &str) -> std::borrow::Cow<'_, str> {
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return line.into();
    };
    match lwsws_ws::token::redact_query(target) {
        std::borrow::Cow::Borrowed(_) => line.into(),
        std::borrow::Cow::Owned(t) => match parts.next() {
            Some(version) => format!("{method} {t} {version}").into(),
            None => format!("{method} {t}").into(),
        },
    }
}

/// Apache's escaping: `"` and `\` backslashed, control and non-ASCII bytes as `\xHH`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// A response body that writes the log line once it is finished or dropped.
/// It also holds the connection's in-flight mark, so the head guard's idle
/// timer never cuts a response whose body is still being produced.
pub(crate) struct LoggedBody {
    inner: Body,
    entry: Option<Entry>,
    sent: u64,
    _busy: InFlight,
    /// Where the bytes sent are counted (metrics): the stats and the vhost.
    counted: Option<(std::sync::Arc<lwsws_ws::stats::Stats>, usize)>,
    /// The client's `ip-limit-ah` slot, held until the body is done.
    _slot: Option<crate::client::Slot>,
}

impl LoggedBody {
    pub fn new(
        inner: Body,
        entry: Option<Entry>,
        busy: InFlight,
        counted: Option<(std::sync::Arc<lwsws_ws::stats::Stats>, usize)>,
        slot: Option<crate::client::Slot>,
    ) -> Self {
        LoggedBody {
            inner,
            entry,
            sent: 0,
            _busy: busy,
            counted,
            _slot: slot,
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some((stats, vhost)) = self.counted.take() {
            stats.sent(vhost, self.sent);
        }
        if let Some(e) = self.entry.take() {
            e.write(self.sent);
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.sent += d.len() as u64;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_in_request_lines_are_redacted() {
        assert_eq!(
            super::redact_request_line("GET /ws?a=1&token=abc.alice.9 HTTP/1.1"),
            "GET /ws?a=1&token=<redacted> HTTP/1.1"
        );
        assert_eq!(
            super::redact_request_line("GET /ws?a=1 HTTP/1.1"),
            "GET /ws?a=1 HTTP/1.1"
        );
        assert_eq!(super::redact_request_line("-"), "-");
    }
}
