//! HTML bodies from the upstream, rewritten as they stream through lol_html
//! (never buffered whole, never regexes): URL attributes that point at the
//! upstream are mapped to the mountpoint. A gzip body is decompressed first
//! and sent on uncompressed; other encodings cannot be rewritten and pass
//! through as they are.

use super::Rewriter;
use super::pool::ReturningBody;
use crate::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body::Frame;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Attributes that carry URLs, as lol_html selectors and names.
const URL_ATTRIBUTES: &[(&str, &str)] = &[
    ("[href]", "href"),
    ("[src]", "src"),
    ("[action]", "action"),
    ("[formaction]", "formaction"),
    ("[poster]", "poster"),
    ("object[data]", "data"),
];

pub fn is_html(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// The body to send for an HTML response, adjusting the headers to match.
/// `None` if the rewriter cannot be built.
pub fn rewrite_body(h: &mut HeaderMap, body: ReturningBody, rewriter: Rewriter) -> Option<Body> {
    let encoding = h
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(_) => return Some(Body::Stream(Box::pin(body))),
    };
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ETAG);
    if gzip {
        h.remove(header::CONTENT_ENCODING);
    }
    let out = Arc::new(Mutex::new(Vec::new()));
    let rw = Arc::new(rewriter);
    let mut settings = lol_html::send::Settings::new_send();
    for (selector, attr) in URL_ATTRIBUTES {
        let rw = rw.clone();
        let attr: &'static str = attr;
        settings =
            settings.append_element_content_handler(lol_html::element!(selector, move |el| {
                if let Some(v) = el.get_attribute(attr)
                    && let Some(mapped) = rw.map_url(&v)
                {
                    el.set_attribute(attr, &mapped)?;
                }
                Ok(())
            }));
    }
    let rewriter = lol_html::send::HtmlRewriter::new(settings, Sink(out.clone()));
    Some(Body::Stream(Box::pin(HtmlBody {
        upstream: body,
        gunzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
        rewriter: Some(rewriter),
        out,
    })))
}

/// Collects lol_html's output between polls.
struct Sink(Arc<Mutex<Vec<u8>>>);

impl lol_html::OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if let Ok(mut o) = self.0.lock() {
            o.extend_from_slice(chunk);
        }
    }
}

struct HtmlBody {
    upstream: ReturningBody,
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    rewriter: Option<lol_html::send::HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl HtmlBody {
    fn take_output(&self) -> Option<Bytes> {
        let mut o = self.out.lock().ok()?;
        if o.is_empty() {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut *o)))
    }

    /// Feeds upstream bytes through the decoder and the rewriter.
    fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        let decoded;
        let html: &[u8] = match &mut self.gunzip {
            Some(g) => {
                g.write_all(data)?;
                decoded = std::mem::take(g.get_mut());
                &decoded
            }
            None => data,
        };
        if let Some(r) = &mut self.rewriter {
            r.write(html).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(mut g) = self.gunzip.take() {
            g.try_finish()?;
            let rest = std::mem::take(g.get_mut());
            if let Some(r) = &mut self.rewriter {
                r.write(&rest).map_err(std::io::Error::other)?;
            }
        }
        if let Some(r) = self.rewriter.take() {
            r.end().map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

impl http_body::Body for HtmlBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.take_output() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.rewriter.is_none() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(f))) => {
                    if let Ok(data) = f.into_data()
                        && let Err(e) = this.feed(&data)
                    {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(None) => {
                    if let Err(e) = this.finish() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }
}
