//! A raw TCP upstream for `hardening_smuggling.rs`: it records every byte
//! each connection carries, frames the requests in them itself, as a strict
//! HTTP/1.1 origin server would (RFC 9112 §6.3: a chunked
//! `Transfer-Encoding`, else `Content-Length`, else no body), and answers
//! each request it could frame with [`ANSWER`]. What it cannot frame (both
//! framings, a bad chunk, a Content-Length list) is noted in
//! [`Recorder::unframed`] and left unanswered; the bytes are kept anyway.
//! Included only by `hardening_smuggling.rs` (`#[path]`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the upstream answers to every request it could frame (without the
/// body `ok` to a HEAD request).
pub const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// How a received request's body was delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length: N`.
    Length(u64),
    /// `Transfer-Encoding: …, chunked`.
    Chunked,
}

/// One request the upstream framed.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Index of the upstream connection it came on, in accept order.
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    /// In order, duplicates kept, values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The body, chunked coding removed.
    pub body: Vec<u8>,
    /// Trailer field lines of a chunked body.
    pub trailers: Vec<String>,
}

impl Seen {
    /// Every value of the header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Debug, Default)]
struct Log {
    /// Every byte received, per connection.
    conns: Vec<Vec<u8>>,
    requests: Vec<Seen>,
    /// `(connection, why)` for each connection whose bytes stopped making
    /// sense as requests.
    unframed: Vec<(usize, String)>,
    /// When the last byte arrived.
    last_byte: Option<Instant>,
}

/// The recording upstream; stops listening when dropped.
pub struct Recorder {
    pub port: u16,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Listens on a free port on 127.0.0.1.
    pub fn start() -> Recorder {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let index = {
                                let mut l = lock(&log);
                                l.conns.push(Vec::new());
                                l.conns.len() - 1
                            };
                            let (log, stop) = (log.clone(), stop.clone());
                            std::thread::spawn(move || serve(s, index, &log, &stop));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Recorder {
            port,
            log,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until no byte has arrived for 500 ms (at most 10 s): for
    /// checking that something did *not* reach the upstream.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let quiet = Duration::from_millis(500);
        let start = Instant::now();
        while Instant::now() < deadline {
            let last = lock(&self.log).last_byte.unwrap_or(start).max(start);
            if last.elapsed() >= quiet {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes received so far, over all connections.
    pub fn total_bytes(&self) -> usize {
        lock(&self.log).conns.iter().map(Vec::len).sum()
    }

    /// The requests framed so far.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.log).requests.clone()
    }

    /// Connections whose bytes could not be framed, and why.
    pub fn unframed(&self) -> Vec<(usize, String)> {
        lock(&self.log).unframed.clone()
    }

    /// Everything received, per connection, for assertion messages.
    pub fn describe(&self) -> String {
        let l = lock(&self.log);
        if l.conns.is_empty() {
            return "upstream: no connection".to_owned();
        }
        let mut out = String::new();
        for (i, c) in l.conns.iter().enumerate() {
            out.push_str(&format!(
                "upstream connection {i} ({} bytes): {:?}\n",
                c.len(),
                String::from_utf8_lossy(c)
            ));
        }
        for (i, why) in &l.unframed {
            out.push_str(&format!("upstream connection {i} unframed: {why}\n"));
        }
        out
    }

    /// A one-line summary for the case table.
    pub fn summary(&self) -> String {
        let l = lock(&self.log);
        if l.conns.is_empty() {
            return "nothing".to_owned();
        }
        let bytes: usize = l.conns.iter().map(Vec::len).sum();
        let reqs: Vec<String> = l
            .requests
            .iter()
            .map(|r| {
                format!(
                    "{} {} [{:?}, body {:?}]",
                    r.method,
                    r.target,
                    r.framing,
                    String::from_utf8_lossy(&r.body)
                )
            })
            .collect();
        let mut s = format!(
            "{} conn(s), {bytes} bytes, {} request(s): {}",
            l.conns.len(),
            reqs.len(),
            reqs.join("; ")
        );
        for (i, why) in &l.unframed {
            s.push_str(&format!("; conn {i} unframed: {why}"));
        }
        s
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records and answers one connection until it closes or the recorder stops.
fn serve(mut s: TcpStream, index: usize, log: &Mutex<Log>, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut pending = Vec::new();
    let mut broken = false;
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::Acquire) {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        let mut answers = Vec::new();
        {
            let mut l = lock(log);
            l.conns[index].extend_from_slice(&buf[..n]);
            l.last_byte = Some(Instant::now());
            if broken {
                continue;
            }
            pending.extend_from_slice(&buf[..n]);
            loop {
                match parse_request(&pending) {
                    Parsed::Partial => break,
                    Parsed::Bad(why) => {
                        l.unframed.push((index, why));
                        broken = true;
                        break;
                    }
                    Parsed::Complete(mut seen, len) => {
                        seen.conn = index;
                        answers.push(if seen.method == "HEAD" {
                            &ANSWER[..ANSWER.len() - 2]
                        } else {
                            ANSWER
                        });
                        l.requests.push(seen);
                        pending.drain(..len);
                    }
                }
            }
        }
        for answer in answers {
            if s.write_all(answer).is_err() {
                return;
            }
        }
    }
}

enum Parsed {
    Partial,
    Bad(String),
    /// A request and the bytes it took.
    Complete(Seen, usize),
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Frames the request at the start of `data`.
fn parse_request(data: &[u8]) -> Parsed {
    let Some(end) = find(data, b"\r\n\r\n", 0) else {
        return Parsed::Partial;
    };
    let head = &data[..end];
    let body_at = end + 4;
    if head.iter().any(|&b| b == b'\r' || b == b'\n') {
        // Only CRLF pairs may end lines: a bare CR or LF is not framed.
        let mut i = 0;
        while i < head.len() {
            match head[i] {
                b'\r' if head.get(i + 1) == Some(&b'\n') => i += 2,
                b'\r' => return Parsed::Bad("bare CR in head".into()),
                b'\n' => return Parsed::Bad("bare LF in head".into()),
                _ => i += 1,
            }
        }
    }
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Parsed::Bad(format!("bad request line {request_line:?}"));
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Bad(format!("header line without colon {line:?}"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Parsed::Bad(format!("bad header name {name:?}"));
        }
        headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    let values = |n: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .flat_map(|(_, v)| v.split(',').map(|p| p.trim().to_owned()))
            .collect()
    };
    let te = values("transfer-encoding");
    let cl = values("content-length");
    let mut seen = Seen {
        conn: 0,
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers: headers.clone(),
        framing: Framing::None,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    if !te.is_empty() && !cl.is_empty() {
        return Parsed::Bad("both Transfer-Encoding and Content-Length".into());
    }
    if !te.is_empty() {
        if !te.last().is_some_and(|c| c.eq_ignore_ascii_case("chunked")) {
            return Parsed::Bad(format!("Transfer-Encoding {te:?} not ending in chunked"));
        }
        seen.framing = Framing::Chunked;
        return match dechunk(data, body_at, &mut seen) {
            Ok(Some(len)) => Parsed::Complete(seen, len),
            Ok(None) => Parsed::Partial,
            Err(why) => Parsed::Bad(why),
        };
    }
    if !cl.is_empty() {
        let raw: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.as_str())
            .collect();
        if raw.len() != 1 || cl.len() != 1 {
            // A strict origin treats anything but one plain value as
            // unframeable (RFC 9112 §6.3 item 5 lets it).
            return Parsed::Bad(format!("Content-Length not a single value: {raw:?}"));
        }
        let Ok(n) = cl[0].parse::<u64>() else {
            return Parsed::Bad(format!("bad Content-Length {:?}", cl[0]));
        };
        if !cl[0].bytes().all(|b| b.is_ascii_digit()) {
            return Parsed::Bad(format!("bad Content-Length {:?}", cl[0]));
        }
        seen.framing = Framing::Length(n);
        let Ok(len) = usize::try_from(n) else {
            return Parsed::Bad("Content-Length too large".into());
        };
        if data.len() < body_at + len {
            return Parsed::Partial;
        }
        seen.body = data[body_at..body_at + len].to_vec();
        return Parsed::Complete(seen, body_at + len);
    }
    Parsed::Complete(seen, body_at)
}

/// Decodes a chunked body starting at `at`; the bytes the request took in
/// all, `None` if incomplete.
fn dechunk(data: &[u8], mut at: usize, seen: &mut Seen) -> Result<Option<usize>, String> {
    loop {
        let Some(eol) = find(data, b"\r\n", at) else {
            return Ok(None);
        };
        let line = &data[at..eol];
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!(
                "bad chunk size line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        let n = u64::from_str_radix(std::str::from_utf8(size).unwrap_or("x"), 16)
            .map_err(|e| format!("chunk size: {e}"))?;
        at = eol + 2;
        if n == 0 {
            loop {
                let Some(eol) = find(data, b"\r\n", at) else {
                    return Ok(None);
                };
                if eol == at {
                    return Ok(Some(at + 2));
                }
                seen.trailers
                    .push(String::from_utf8_lossy(&data[at..eol]).into_owned());
                at = eol + 2;
            }
        }
        let n = usize::try_from(n).map_err(|_| "chunk too large".to_owned())?;
        let Some(end) = at.checked_add(n).and_then(|e| e.checked_add(2)) else {
            return Err("chunk too large".into());
        };
        if data.len() < end {
            return Ok(None);
        }
        seen.body.extend_from_slice(&data[at..at + n]);
        if &data[at + n..at + n + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += n + 2;
    }
}
