//! The response body every handler returns: nothing, bytes in memory, or a
//! range of an open file streamed in chunks (never read whole).

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncRead;

/// Chunk size for file bodies.
const FILE_CHUNK: usize = 64 * 1024;

/// A streamed body of unknown length (a CGI program's output, an upstream's).
pub type StreamBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = std::io::Error> + Send>>;

/// A response body.
pub enum Body {
    Empty,
    /// Bytes in memory; `None` once sent.
    Full(Option<Bytes>),
    /// `remaining` bytes of `file`, read from its current position.
    File(FileBody),
    /// Produced by another party as it goes.
    Stream(StreamBody),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => f.debug_tuple("Body::Full").field(b).finish(),
            Body::File(fb) => f.debug_tuple("Body::File").field(fb).finish(),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

/// Part of a file, streamed.
#[derive(Debug)]
pub struct FileBody {
    pub file: tokio::fs::File,
    pub remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    /// `file` must already be positioned at the first byte to send.
    pub fn new(file: tokio::fs::File, len: u64) -> Self {
        FileBody {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl Body {
    pub fn empty() -> Self {
        Body::Empty
    }

    pub fn full(b: impl Into<Bytes>) -> Self {
        Body::Full(Some(b.into()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::File(f) => {
                if f.remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = (f.remaining as usize).min(FILE_CHUNK);
                // Read at most `want` bytes, so a range ends where it should.
                f.buf.resize(want, 0);
                let mut rb = tokio::io::ReadBuf::new(&mut f.buf[..want]);
                match Pin::new(&mut f.file).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            return Poll::Ready(Some(Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "file shrank while being sent",
                            ))));
                        }
                        let chunk = f.buf.split_to(n).freeze();
                        f.remaining -= n as u64;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                }
            }
            Body::Stream(s) => s.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::File(f) => f.remaining == 0,
            Body::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::File(f) => SizeHint::with_exact(f.remaining),
            Body::Stream(s) => s.size_hint(),
        }
    }
}
