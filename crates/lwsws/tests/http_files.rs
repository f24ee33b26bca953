//! File mounts over the wire (SPEC §3.2): path decoding and the traversal,
//! NUL, symlink and dotfile defences; which suffixes are served and with
//! which Content-Type (`extra-mimetypes`, `"*"`); directories; validators,
//! conditional and range requests; HEAD and 405; precompressed siblings; and
//! a 100 MiB file streamed while the server's memory stays small. The
//! socket-free tests of the same handler are in `crates/lwsws-mounts/tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, bin, connect, curl, read_response, read_to_close};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;

const A_TXT: &str = "alpha bravo charlie delta echo\n";
const CSS: &str = "body { color: red; margin: 0 }\n";

/// A server with one vhost whose mounts serve the same tree:
/// `/` plainly, `/star` with `"extra-mimetypes": {"*": ""}`, `/mt` with extra
/// types for `.zip` and `.lwx`. `outside.txt` lies beside the tree.
struct Site {
    /// Declared first, so it is dropped (killed) before `dir` is deleted.
    server: Lwsws,
    dir: ConfigDir,
    port: u16,
}

impl Site {
    fn start() -> Site {
        let dir = ConfigDir::new();
        for (path, text) in [
            ("www/index.html", "<h1>home</h1>\n"),
            ("www/a.txt", A_TXT),
            ("www/sub/a.txt", "sub a\n"),
            ("www/sub/index.html", "sub index\n"),
            ("www/sub/.hidden.html", "hidden\n"),
            ("www/sub/.well-known/x.txt", "not first segment\n"),
            ("www/nodefault/x.txt", "x\n"),
            ("www/.secret.txt", "secret\n"),
            ("www/.well-known/x.txt", "well known\n"),
            ("www/x.unknownext", "unknown suffix\n"),
            ("www/noext", "no suffix\n"),
            ("www/app.zip", "PK\u{3}\u{4} not really a zip\n"),
            ("www/thing.lwx", "lwx\n"),
            ("www/%2e%2e.txt", "literal percent name\n"),
            ("www/style.css", CSS),
            ("www/style.css.br", "pretend brotli bytes\n"),
            ("outside.txt", "outside the root\n"),
        ] {
            dir.write_file(path, text);
        }
        let www = dir.path().join("www");
        let gz = std::process::Command::new("gzip")
            .args(["-9", "-n", "-c"])
            .arg(www.join("style.css"))
            .output()
            .expect("run gzip");
        assert!(gz.status.success());
        fs::write(www.join("style.css.gz"), gz.stdout).unwrap();
        std::os::unix::fs::symlink("a.txt", www.join("link-in.txt")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", www.join("link-out.txt")).unwrap();
        std::os::unix::fs::symlink("..", www.join("escape")).unwrap();

        let port = free_port();
        let root = www.display();
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "files.test", "port": "{port}", "mounts": [
                    {{ "mountpoint": "/", "origin": "file://{root}", "default": "index.html" }},
                    {{ "mountpoint": "/star", "origin": "file://{root}",
                       "extra-mimetypes": {{ "*": "" }} }},
                    {{ "mountpoint": "/mt", "origin": "file://{root}",
                       "extra-mimetypes": {{ ".zip": "application/zip", ".lwx": "application/x-lwx" }} }}
                ] }}] }}"#
            ),
        );
        let server = Lwsws::start(bin(), &dir, &[], &[port]);
        Site { dir, port, server }
    }

    fn www(&self, rel: &str) -> PathBuf {
        self.dir.path().join("www").join(rel)
    }

    /// GET `path` exactly as written (no dot-segment removal) with curl.
    fn get(&self, path: &str, extra: &[&str]) -> Reply {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut args = vec!["--path-as-is"];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    }

    fn status(&self, path: &str) -> u16 {
        self.get(path, &[]).status
    }

    /// Asserts `path` answers `status`, with the server log on failure.
    fn expect(&self, path: &str, status: u16) -> Reply {
        let r = self.get(path, &[]);
        assert_eq!(
            r.status,
            status,
            "GET {path}: body {:?}\n--- server log ---\n{}",
            r.text(),
            self.server.log()
        );
        r
    }
}

#[test]
fn dot_dot_segments_are_refused_however_they_are_written() {
    let s = Site::start();
    // The file they aim at exists: a successful escape would be a 200.
    assert!(s.dir.path().join("outside.txt").is_file());
    for path in [
        "/../outside.txt",
        "/sub/../../outside.txt",
        "/sub/../a.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E/outside.txt",
        "/.%2e/outside.txt",
        "/sub/%2e%2e/%2e%2e/outside.txt",
        "/..%2foutside.txt",
        "/sub%2f..%2f..%2foutside.txt",
        "/..%2Foutside.txt",
    ] {
        let r = s.expect(path, 403);
        assert!(!r.text().contains("outside the root"), "{path}");
    }
    // The same over a raw socket, with nothing between us and the server.
    let bytes = common::exchange(
        s.port,
        b"GET /../outside.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n",
    );
    let r = &common::parse_responses(&bytes)[0];
    assert_eq!(r.status, 403);
}

#[test]
fn an_encoded_slash_separates_segments() {
    let s = Site::start();
    let r = s.expect("/sub%2fa.txt", 200);
    assert_eq!(r.text(), "sub a\n");
    let r = s.expect("/sub%2Fa.txt", 200);
    assert_eq!(r.text(), "sub a\n");
}

#[test]
fn paths_are_decoded_exactly_once() {
    let s = Site::start();
    // `%252e%252e` decodes to the name `%2e%2e`, not to `..`.
    s.expect("/%252e%252e/outside.txt", 404);
    let r = s.expect("/%252e%252e.txt", 200);
    assert_eq!(r.text(), "literal percent name\n");
    // Plain percent-encoding of ordinary characters is decoded.
    let r = s.expect("/%61.txt", 200);
    assert_eq!(r.text(), A_TXT);
}

#[test]
fn nul_is_refused_and_malformed_encoding_is_a_bad_request() {
    let s = Site::start();
    s.expect("/a.txt%00.html", 403);
    s.expect("/a.txt%00", 403);
    s.expect("/a%zz.txt", 400);
    s.expect("/a.txt%", 400);
    s.expect("/a.txt%2", 400);
}

#[test]
fn symlinks_may_not_lead_outside_the_root() {
    let s = Site::start();
    let r = s.expect("/link-out.txt", 403);
    assert!(!r.text().contains("outside the root"));
    let r = s.expect("/escape/outside.txt", 403);
    assert!(!r.text().contains("outside the root"));
    let r = s.expect("/link-in.txt", 200);
    assert_eq!(r.text(), A_TXT);
}

#[test]
fn dotfiles_are_hidden_except_well_known() {
    let s = Site::start();
    s.expect("/.secret.txt", 404);
    s.expect("/sub/.hidden.html", 404);
    s.expect("/sub/.well-known/x.txt", 404);
    let r = s.expect("/.well-known/x.txt", 200);
    assert_eq!(r.text(), "well known\n");
}

#[test]
fn unknown_suffixes_are_refused_unless_star_allows_them() {
    let s = Site::start();
    s.expect("/x.unknownext", 403);
    s.expect("/noext", 403);
    // `"*": ""` serves them, without a Content-Type.
    let r = s.expect("/star/x.unknownext", 200);
    assert_eq!(r.text(), "unknown suffix\n");
    assert_eq!(r.header("content-type"), None, "{:?}", r.headers);
    let r = s.expect("/star/noext", 200);
    assert_eq!(r.text(), "no suffix\n");
    assert_eq!(r.header("content-type"), None, "{:?}", r.headers);
    // Known types keep theirs under `"*"`.
    let r = s.expect("/star/a.txt", 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[test]
fn extra_mimetypes_give_their_types() {
    let s = Site::start();
    let r = s.expect("/mt/app.zip", 200);
    assert_eq!(r.header("content-type"), Some("application/zip"));
    assert_eq!(r.body, fs::read(s.www("app.zip")).unwrap());
    let r = s.expect("/mt/thing.lwx", 200);
    assert_eq!(r.header("content-type"), Some("application/x-lwx"));
    assert_eq!(r.text(), "lwx\n");
    // Only on the mount that declares them.
    s.expect("/thing.lwx", 403);
}

#[test]
fn text_types_carry_charset_utf8() {
    let s = Site::start();
    for (path, ty) in [
        ("/a.txt", "text/plain; charset=utf-8"),
        ("/index.html", "text/html; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
    ] {
        let r = s.expect(path, 200);
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
    }
}

#[test]
fn directories_redirect_to_the_slash_form_and_serve_default() {
    let s = Site::start();
    let r = s.expect("/sub", 301);
    let location = r.header("location").unwrap_or_default();
    assert!(location.ends_with("/sub/"), "Location: {location:?}");
    let r = s.expect("/sub/", 200);
    assert_eq!(r.text(), "sub index\n");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = s.expect("/", 200);
    assert_eq!(r.text(), "<h1>home</h1>\n");
    // A mount without `default` (`/star`): 403, and no listing.
    let r = s.expect("/star/nodefault/", 403);
    assert!(!r.text().contains("x.txt"));
    let r = s.expect("/star/sub/", 403);
    assert!(!r.text().contains("sub index"));
    // A `default` that this directory lacks: nothing served, no listing
    // (a missing file, 404, in the mounts crate's own tests).
    let r = s.get("/nodefault/", &[]);
    assert!(matches!(r.status, 403 | 404), "{}", r.status);
    assert!(!r.text().contains("x.txt"));
    let r = s.expect("/nodefault", 301);
    assert!(
        r.header("location")
            .unwrap_or_default()
            .ends_with("/nodefault/")
    );
}

#[test]
fn responses_carry_length_last_modified_and_a_strong_etag() {
    let s = Site::start();
    let r = s.expect("/a.txt", 200);
    let meta = fs::metadata(s.www("a.txt")).unwrap();
    assert_eq!(r.body, A_TXT.as_bytes());
    assert_eq!(
        r.header("content-length"),
        Some(meta.len().to_string().as_str())
    );
    let mtime = httpdate::fmt_http_date(meta.modified().unwrap());
    assert_eq!(r.header("last-modified"), Some(mtime.as_str()));
    let etag = r.header("etag").expect("ETag");
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "not a strong ETag: {etag}"
    );
    // A different file has a different ETag.
    let other = s.expect("/sub/a.txt", 200);
    assert_ne!(other.header("etag"), Some(etag));
}

#[test]
fn conditional_requests_get_304() {
    let s = Site::start();
    let first = s.expect("/a.txt", 200);
    let etag = first.header("etag").expect("ETag").to_owned();
    let lm = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();

    let inm = format!("If-None-Match: {etag}");
    let r = s.get("/a.txt", &["-H", &inm]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = s.get("/a.txt", &["-H", "If-None-Match: \"something-else\""]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), A_TXT);
    let r = s.get("/a.txt", &["-H", &format!("If-None-Match: \"x\", {etag}")]);
    assert_eq!(r.status, 304);
    let r = s.get("/a.txt", &["-H", "If-None-Match: *"]);
    assert_eq!(r.status, 304);

    let ims = format!("If-Modified-Since: {lm}");
    let r = s.get("/a.txt", &["-H", &ims]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let mtime = fs::metadata(s.www("a.txt")).unwrap().modified().unwrap();
    let day_before = httpdate::fmt_http_date(mtime - std::time::Duration::from_secs(86400));
    let r = s.get(
        "/a.txt",
        &["-H", &format!("If-Modified-Since: {day_before}")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), A_TXT);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let r = s.get(
        "/a.txt",
        &["-H", "If-None-Match: \"something-else\"", "-H", &ims],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn single_ranges_get_206_and_unsatisfiable_ones_416() {
    let s = Site::start();
    let body = A_TXT.as_bytes();
    let len = body.len();

    let r = s.get("/a.txt", &["-H", "Range: bytes=2-5"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[2..=5]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 2-5/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("4"));

    let r = s.get("/a.txt", &["-H", "Range: bytes=-4"]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[len - 4..]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 4, len - 1).as_str())
    );

    let r = s.get("/a.txt", &["-H", &format!("Range: bytes={len}-")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
}

#[test]
fn if_range_gives_the_range_only_while_the_validator_matches() {
    let s = Site::start();
    let first = s.expect("/a.txt", 200);
    let etag = first.header("etag").expect("ETag").to_owned();
    let body = A_TXT.as_bytes();

    let r = s.get(
        "/a.txt",
        &["-H", "Range: bytes=0-4", "-H", &format!("If-Range: {etag}")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &body[..5]);
    let r = s.get(
        "/a.txt",
        &["-H", "Range: bytes=0-4", "-H", "If-Range: \"stale\""],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
}

#[test]
fn head_sends_the_headers_and_no_body() {
    let s = Site::start();
    let mut sock = connect(s.port);
    sock.write_all(b"HEAD /a.txt HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let all = read_to_close(&mut sock);
    let text = String::from_utf8_lossy(&all);
    let (head, rest) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(rest, "", "HEAD answered with a body");
    let (_, headers) = common::parse_head(head);
    let r = Reply {
        status: 200,
        headers,
        body: Vec::new(),
    };
    assert_eq!(
        r.header("content-length"),
        Some(A_TXT.len().to_string().as_str())
    );
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("etag").is_some());
    assert!(r.header("last-modified").is_some());
}

#[test]
fn other_methods_get_405_with_allow() {
    let s = Site::start();
    for method in ["POST", "PUT", "DELETE"] {
        let r = s.get("/a.txt", &["-X", method, "--data", "x=1"]);
        assert_eq!(r.status, 405, "{method}\n{}", s.server.log());
        let allow = r.header("allow").unwrap_or_default().to_ascii_uppercase();
        let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        assert!(
            methods.contains(&"GET") && methods.contains(&"HEAD"),
            "{method}: Allow: {allow:?}"
        );
        assert!(!methods.contains(&method), "{method}: Allow: {allow:?}");
    }
}

#[test]
fn precompressed_siblings_are_served_to_clients_that_accept_them() {
    let s = Site::start();
    let gz = fs::read(s.www("style.css.gz")).unwrap();
    let r = s.get("/style.css", &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, gz);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(
        r.header("content-length"),
        Some(gz.len().to_string().as_str())
    );
    let vary = r.header("vary").unwrap_or_default().to_ascii_lowercase();
    assert!(vary.contains("accept-encoding"), "Vary: {vary:?}");

    let r = s.get("/style.css", &["-H", "Accept-Encoding: br"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "pretend brotli bytes\n");
    assert_eq!(r.header("content-encoding"), Some("br"));
    let vary = r.header("vary").unwrap_or_default().to_ascii_lowercase();
    assert!(vary.contains("accept-encoding"), "Vary: {vary:?}");

    // Without Accept-Encoding (curl sends none unless asked): the plain file.
    for extra in [&[][..], &["-H", "Accept-Encoding: identity"]] {
        let r = s.get("/style.css", extra);
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), CSS, "{extra:?}");
        assert_eq!(r.header("content-encoding"), None, "{extra:?}");
    }
    // A file without siblings is unaffected by Accept-Encoding.
    let r = s.get("/a.txt", &["-H", "Accept-Encoding: gzip, br"]);
    assert_eq!(r.text(), A_TXT);
    assert_eq!(r.header("content-encoding"), None);
}

/// Size of the large file.
const BIG: usize = 100 * 1024 * 1024;
/// The large file is made of blocks of this size, each starting with its
/// index, so a lost, repeated or reordered block is seen.
const BLOCK: usize = 4096;

fn big_block(i: usize) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; BLOCK];
    b[..16].copy_from_slice(format!("{i:016x}").as_bytes());
    b
}

/// The summed resident set (KiB) of the processes of `server`.
fn rss_kib(server: &Lwsws) -> u64 {
    let members = server.group_members();
    assert!(!members.is_empty(), "no live server process");
    members
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn a_100_mib_file_is_streamed_with_small_server_memory() {
    let s = Site::start();
    {
        let mut f = std::io::BufWriter::new(fs::File::create(s.www("big.bin")).unwrap());
        for i in 0..BIG / BLOCK {
            f.write_all(&big_block(i)).unwrap();
        }
        f.flush().unwrap();
    }
    assert_eq!(
        fs::metadata(s.www("big.bin")).unwrap().len(),
        u64::try_from(BIG).unwrap()
    );
    let limit_kib = 64 * 1024;

    let sock = connect(s.port);
    (&sock)
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: files.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::with_capacity(1 << 16, &sock);
    let head = read_response(&mut r, true);
    assert_eq!(head.status, 200, "{}", s.server.log());
    assert_eq!(
        head.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    assert_eq!(
        head.header("content-type"),
        Some("application/octet-stream")
    );

    let mut block = vec![0u8; BLOCK];
    let mut rss_midway = None;
    for i in 0..BIG / BLOCK {
        r.read_exact(&mut block)
            .unwrap_or_else(|e| panic!("block {i} of {}: {e}", BIG / BLOCK));
        assert!(block == big_block(i), "block {i} differs");
        if i == BIG / BLOCK / 2 {
            // Half read, the rest in flight: a server that loaded the whole
            // file would hold it now.
            rss_midway = Some(rss_kib(&s.server));
        }
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes past Content-Length", rest.len());
    let rss_after = rss_kib(&s.server);
    let rss_midway = rss_midway.unwrap();
    assert!(
        rss_midway < limit_kib,
        "server RSS {rss_midway} KiB while streaming"
    );
    assert!(
        rss_after < limit_kib,
        "server RSS {rss_after} KiB after streaming"
    );
    // The server is still fine afterwards.
    assert_eq!(s.status("/a.txt"), 200);
}
