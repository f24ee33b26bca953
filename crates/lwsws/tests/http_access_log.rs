//! The per-vhost access log (`access-log`, SPEC §2.3) in Apache "combined"
//! format: one line per request, failed ones included, written when the
//! response ends. Each line is split into its fields here (no regex) and
//! checked field by field against what the test sent and received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, bin, curl, exchange, parse_responses};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a log line may take to appear: a liveness bound.
const LOG_DEADLINE: Duration = Duration::from_secs(10);

/// One access-log line, split into its nine fields, quotes and brackets
/// removed and backslash escapes undone.
#[derive(Debug)]
struct Line {
    host: String,
    ident: String,
    user: String,
    time: String,
    request: String,
    status: String,
    bytes: String,
    referer: String,
    user_agent: String,
}

/// Splits `host ident user [time] "request" status bytes "referer" "ua"`.
fn parse_line(line: &str) -> Line {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '[' => {
                chars.next();
                let f: String = chars.by_ref().take_while(|&c| c != ']').collect();
                fields.push(f);
            }
            '"' => {
                chars.next();
                let mut f = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => f.push(chars.next().expect("escape at end of line")),
                        Some('"') => break,
                        Some(c) => f.push(c),
                        None => panic!("unterminated quote in {line:?}"),
                    }
                }
                fields.push(f);
            }
            _ => {
                let mut f = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    f.push(c);
                    chars.next();
                }
                fields.push(f);
            }
        }
    }
    assert_eq!(fields.len(), 9, "not a combined-format line: {line:?}");
    let mut f = fields.into_iter();
    let mut next = || f.next().unwrap();
    Line {
        host: next(),
        ident: next(),
        user: next(),
        time: next(),
        request: next(),
        status: next(),
        bytes: next(),
        referer: next(),
        user_agent: next(),
    }
}

/// Seconds since the epoch of `dd/Mon/yyyy:hh:mm:ss +0000`; panics on
/// anything else.
fn parse_time(t: &str) -> i64 {
    let b = t.as_bytes();
    assert_eq!(b.len(), 26, "time {t:?}");
    assert!(
        b[2] == b'/' && b[6] == b'/' && b[11] == b':' && b[14] == b':' && b[17] == b':',
        "time {t:?}"
    );
    assert_eq!(&t[20..], " +0000", "time {t:?}");
    let num = |r: std::ops::Range<usize>| -> i64 {
        assert!(
            t[r.clone()].bytes().all(|c| c.is_ascii_digit()),
            "time {t:?}"
        );
        t[r].parse().unwrap()
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| *m == &t[3..6])
        .unwrap_or_else(|| panic!("month in {t:?}")) as i64
        + 1;
    let (day, year) = (num(0..2), num(7..11));
    let (h, m, s) = (num(12..14), num(15..17), num(18..20));
    assert!(
        (1..=31).contains(&day) && h < 24 && m < 60 && s < 61,
        "time {t:?}"
    );
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86400 + h * 3600 + m * 60 + s
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The complete lines of the log, once it has at least `n`; panics after
/// [`LOG_DEADLINE`].
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LOG_DEADLINE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| l.trim_end_matches('\n').to_owned())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} access-log lines after {LOG_DEADLINE:?}: {text:?}",
            lines.len()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A vhost logging to `DIR/logs/access.log`, with a public mount and a
/// basic-auth one (alice:secret).
struct Site {
    /// Declared first, so it is dropped (killed) before `dir` is deleted.
    server: Lwsws,
    dir: ConfigDir,
    port: u16,
    log: PathBuf,
    /// Lines the log should hold so far.
    expected: usize,
}

impl Site {
    fn start() -> Site {
        let dir = ConfigDir::new();
        dir.write_file("www/a.txt", "alpha bravo\n");
        dir.write_file("private/p.txt", "private page\n");
        let passwd = dir.write_file("passwd", "alice:secret\n");
        dir.mkdir("logs");
        let log = dir.path().join("logs/access.log");
        let port = free_port();
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "log.test", "port": "{port}",
                    "access-log": "{}",
                    "mounts": [
                        {{ "mountpoint": "/", "origin": "file://{}" }},
                        {{ "mountpoint": "/private", "origin": "file://{}", "basic-auth": "{}" }}
                    ] }}] }}"#,
                log.display(),
                dir.path().join("www").display(),
                dir.path().join("private").display(),
                passwd.display()
            ),
        );
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Site {
            dir,
            port,
            server,
            log,
            expected: 0,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for the line of the request just made and returns it parsed,
    /// checking that no other line came with it.
    fn next_line(&mut self) -> Line {
        self.expected += 1;
        let lines = wait_lines(&self.log, self.expected);
        assert_eq!(
            lines.len(),
            self.expected,
            "one line per request: {lines:#?}\n{}",
            self.server.log()
        );
        let line = parse_line(lines.last().unwrap());
        assert_eq!(line.host, "127.0.0.1", "{line:?}");
        assert_eq!(line.ident, "-", "{line:?}");
        let t = parse_time(&line.time);
        assert!(
            (t - now()).abs() < 300,
            "time {} is not now ({line:?})",
            line.time
        );
        line
    }

    fn file_len(&self, rel: &str) -> String {
        std::fs::metadata(self.dir.path().join(rel))
            .unwrap()
            .len()
            .to_string()
    }
}

/// The byte count the log should show for `r`: its body length, `-` if empty.
fn bytes_of(r: &Reply) -> String {
    if r.body.is_empty() {
        "-".into()
    } else {
        r.body.len().to_string()
    }
}

#[test]
fn each_request_gets_one_combined_format_line() {
    let mut s = Site::start();

    // A 200 with Referer and User-Agent.
    let r = curl(&[
        "-e",
        "http://ref.test/page?x=1",
        "-A",
        "TestAgent/1.0 (lwsws tests)",
        &s.url("/a.txt"),
    ]);
    assert_eq!(r.status, 200);
    let l = s.next_line();
    assert_eq!(l.user, "-");
    assert_eq!(l.request, "GET /a.txt HTTP/1.1");
    assert_eq!(l.status, "200");
    assert_eq!(l.bytes, s.file_len("www/a.txt"));
    assert_eq!(l.bytes, r.body.len().to_string());
    assert_eq!(l.referer, "http://ref.test/page?x=1");
    assert_eq!(l.user_agent, "TestAgent/1.0 (lwsws tests)");

    // A 404, with neither header: `-` for both.
    let bytes = exchange(
        s.port,
        b"GET /missing.txt?q=1 HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n",
    );
    let r = &parse_responses(&bytes)[0];
    assert_eq!(r.status, 404);
    let l = s.next_line();
    assert_eq!(l.request, "GET /missing.txt?q=1 HTTP/1.1");
    assert_eq!(l.status, "404");
    assert_eq!(l.bytes, bytes_of(r));
    assert_eq!(l.user, "-");
    assert_eq!(l.referer, "-");
    assert_eq!(l.user_agent, "-");

    // Basic auth: refused, then accepted with the user's name.
    let r = curl(&["-A", "authagent", &s.url("/private/p.txt")]);
    assert_eq!(r.status, 401);
    let l = s.next_line();
    assert_eq!((l.status.as_str(), l.user.as_str()), ("401", "-"));
    assert_eq!(l.bytes, bytes_of(&r));
    assert_eq!(l.user_agent, "authagent");
    let r = curl(&["-u", "alice:secret", &s.url("/private/p.txt")]);
    assert_eq!(r.status, 200);
    let l = s.next_line();
    assert_eq!(l.request, "GET /private/p.txt HTTP/1.1");
    assert_eq!((l.status.as_str(), l.user.as_str()), ("200", "alice"));
    assert_eq!(l.bytes, s.file_len("private/p.txt"));

    // Nothing sent: `-` bytes, for HEAD and for 304.
    let bytes = exchange(
        s.port,
        b"HEAD /a.txt HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 200"));
    let l = s.next_line();
    assert_eq!(l.request, "HEAD /a.txt HTTP/1.1");
    assert_eq!((l.status.as_str(), l.bytes.as_str()), ("200", "-"));
    let etag = curl(&[&s.url("/a.txt")])
        .header("etag")
        .expect("ETag")
        .to_owned();
    s.next_line();
    let r = curl(&["-H", &format!("If-None-Match: {etag}"), &s.url("/a.txt")]);
    assert_eq!(r.status, 304);
    let l = s.next_line();
    assert_eq!((l.status.as_str(), l.bytes.as_str()), ("304", "-"));

    // HTTP/1.0 is logged as such.
    let bytes = exchange(s.port, b"GET /a.txt HTTP/1.0\r\nHost: log.test\r\n\r\n");
    assert_eq!(parse_responses(&bytes)[0].status, 200);
    let l = s.next_line();
    assert_eq!(l.request, "GET /a.txt HTTP/1.0");
    assert_eq!(l.bytes, s.file_len("www/a.txt"));

    // A last request shows that none of the earlier ones was logged twice.
    curl(&[&s.url("/a.txt")]);
    let l = s.next_line();
    assert_eq!(l.request, "GET /a.txt HTTP/1.1");
}

#[test]
fn quotes_in_logged_headers_are_escaped() {
    let mut s = Site::start();
    let r = curl(&["-A", r#"evil" 200 1 "x"#, &s.url("/a.txt")]);
    assert_eq!(r.status, 200);
    let l = s.next_line();
    // The parser undoes the escapes: the fields come back whole.
    assert_eq!(l.user_agent, r#"evil" 200 1 "x"#);
    assert_eq!(l.status, "200");
}
