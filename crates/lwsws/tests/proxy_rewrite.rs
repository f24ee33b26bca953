//! What points back at the upstream is rewritten to the mountpoint (SPEC
//! §3.5): URL attributes (`href`, `src`, `action`) in HTML pages, also when
//! the upstream sends them gzip-compressed; redirect `Location`s; cookie
//! `Path`s. Links elsewhere, and bodies that are not HTML, pass byte for
//! byte, and so do the bytes of a page in another charset. With an origin
//! path, only links under it are mapped. The upstream is
//! `fixtures/proxy/upstream.py pages`, whose main page links to `/a`, to
//! its own address `http://127.0.0.1:UP/b` and to `https://other/c`, at the
//! start and again after about 200 KiB. The rewriting rules themselves are
//! unit-tested in `crates/lwsws-mounts/src/proxy/rewrite.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::proxy::{Upstream, start_proxy};
use common::{Reply, curl};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::io::Write;
use std::process::{Command, Stdio};

/// lwsws with `/p` → the upstream's root and `/q` → its `/app/`.
struct Proxy {
    server: Lwsws,
    up: Upstream,
    port: u16,
    _dir: ConfigDir,
}

fn start() -> Proxy {
    let up = Upstream::start("upstream.py", &["pages"]);
    let dir = ConfigDir::new();
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/p", "origin": "{}" }},
               {{ "mountpoint": "/q", "origin": "{}" }}"#,
            up.url("/"),
            up.url("/app/")
        ),
    );
    Proxy {
        server,
        up,
        port,
        _dir: dir,
    }
}

impl Proxy {
    /// `curl ARGS… http://127.0.0.1:PORT/PATH` through lwsws.
    fn get(&self, path: &str, args: &[&str]) -> Reply {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut all = args.to_vec();
        all.push(&url);
        curl(&all)
    }

    /// The same from the upstream directly.
    fn direct(&self, path: &str) -> Reply {
        let r = curl(&[&self.up.url(path)]);
        assert_eq!(r.status, 200, "{path} from the upstream itself");
        r
    }

    /// The page as it should come out under `/p`: the links to `/a` and to
    /// the origin's `/b` mapped, those to `https://other/c` untouched.
    fn rewritten(&self, page: &str) -> String {
        let origin_b = format!("=\"http://127.0.0.1:{}/b\"", self.up.port);
        for needle in [
            "href=\"/a\"".to_owned(),
            "src=\"/a\"".to_owned(),
            "action=\"/a\"".to_owned(),
            format!("href{origin_b}"),
            format!("src{origin_b}"),
            format!("action{origin_b}"),
            "href=\"https://other/c\"".to_owned(),
        ] {
            assert!(page.contains(&needle), "the test page lacks {needle}");
        }
        page.replace("=\"/a\"", "=\"/p/a\"")
            .replace(&origin_b, "=\"/p/b\"")
    }
}

/// The body as the client reads it: gunzipped if the server chose to send
/// it compressed (the issue allows recompressing).
fn decoded(r: &Reply) -> String {
    let body = match r.header("content-encoding") {
        None => r.body.clone(),
        Some(e) if e.eq_ignore_ascii_case("identity") => r.body.clone(),
        Some(e) if e.eq_ignore_ascii_case("gzip") => gunzip(&r.body),
        Some(e) => panic!("unexpected Content-Encoding {e:?}"),
    };
    String::from_utf8(body).expect("the page is UTF-8")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -d failed");
    out.stdout
}

/// Content-Length, if the response has one, matches the body.
fn assert_length_matches(r: &Reply) {
    if let Some(len) = r.header("content-length") {
        assert_eq!(len, r.body.len().to_string(), "Content-Length");
    }
}

#[test]
fn html_links_to_the_origin_are_mapped_under_the_mountpoint() {
    let p = start();
    let page = String::from_utf8(p.direct("/page.html").body).unwrap();
    let expected = p.rewritten(&page);
    assert_ne!(expected, page);

    let r = p.get("/p/page.html", &[]);
    assert_eq!(r.status, 200, "{}", p.server.log());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        r.header("content-type")
    );
    assert_length_matches(&r);
    let got = decoded(&r);
    assert!(got.contains("href=\"/p/a\""));
    assert!(got.contains("src=\"/p/b\""));
    assert!(got.contains("action=\"/p/b\""));
    assert!(got.contains("href=\"https://other/c\""));
    assert!(
        got == expected,
        "the page differs from the expected rewrite"
    );
}

#[test]
fn a_gzip_compressed_page_is_rewritten_too() {
    let p = start();
    let page = String::from_utf8(p.direct("/page.html").body).unwrap();
    let compressed = p.direct("/page-gz.html");
    assert_eq!(compressed.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&compressed.body), page.as_bytes());
    let expected = p.rewritten(&page);

    for accept in [&["-H", "Accept-Encoding: gzip"][..], &[]] {
        let r = p.get("/p/page-gz.html", accept);
        assert_eq!(r.status, 200, "{}", p.server.log());
        assert_length_matches(&r);
        if accept.is_empty() {
            assert_eq!(r.header("content-encoding"), None);
        }
        let got = decoded(&r);
        assert!(
            got == expected,
            "{accept:?}: the page differs from the expected rewrite"
        );
    }
}

#[test]
fn bodies_that_are_not_html_pass_byte_for_byte() {
    let p = start();
    for path in ["/binary", "/text"] {
        let direct = p.direct(path);
        let r = p.get(&format!("/p{path}"), &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), direct.header("content-type"));
        assert_eq!(r.header("content-encoding"), None);
        assert_length_matches(&r);
        assert_eq!(r.body.len(), direct.body.len(), "{path}");
        assert!(r.body == direct.body, "{path} was changed");
        let needle = b"href=\"/a\"";
        assert!(
            r.body.windows(needle.len()).any(|w| w == needle),
            "{path} should hold a link-like text"
        );
    }
}

#[test]
fn redirects_to_the_origin_point_under_the_mountpoint() {
    let p = start();
    for (path, location) in [
        ("/p/redirect-absolute", "/p/next"),
        ("/p/redirect-path", "/p/x"),
        ("/p/redirect-other", "https://other/c"),
    ] {
        let r = p.get(path, &[]);
        assert_eq!(r.status, 302, "{path}");
        assert_eq!(r.header("location"), Some(location), "{path}");
    }
}

#[test]
fn cookie_paths_are_mapped_to_the_mountpoint() {
    let p = start();
    let cookies = |r: &Reply| -> Vec<String> {
        r.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let r = p.get("/p/cookie", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(cookies(&r), ["s=1; Path=/p/"]);

    // Origin path /app/: /app/x is /q/x; a path outside the origin's is
    // left alone.
    let r = p.get("/q/cookie", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        cookies(&r),
        ["t=2; Path=/q/x; HttpOnly", "u=3; Path=/elsewhere"]
    );
}

#[test]
fn with_an_origin_path_only_links_under_it_are_mapped() {
    let p = start();
    let o = format!("http://127.0.0.1:{}", p.up.port);
    let r = p.get("/q/page.html", &[]);
    assert_eq!(r.status, 200, "{}", p.server.log());
    // The rewriter may re-quote the attributes it changes.
    assert_eq!(
        decoded(&r).replace('\'', "\""),
        format!(
            "<html><body>\n\
             <A HREF=\"/q/a\">1</A> <a href=\"/q/b?q=1#f\">2</a> <img SRC=\"/q/\">\n\
             <a href=\"/a\">outside</a> <a href=\"/apple\">outside</a> <a href=\"{o}/c\">outside</a>\n\
             </body></html>\n"
        )
    );
}

#[test]
fn a_page_in_another_charset_keeps_its_bytes() {
    let p = start();
    let page = p.direct("/latin1.html").body;
    assert!(
        page.contains(&0xe9),
        "the test page should hold Latin-1 bytes"
    );
    let r = p.get("/p/latin1.html", &[]);
    assert_eq!(r.status, 200);
    let needle = b"href=\"/a\"";
    let at = page
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let expected = [&page[..at], b"href=\"/p/a\"", &page[at + needle.len()..]].concat();
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(&expected)
    );
    assert!(r.body == expected, "bytes differ");
}
