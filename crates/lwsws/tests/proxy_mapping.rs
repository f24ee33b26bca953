//! Reverse-proxy mounts map requests onto their upstream (SPEC §3.5): the
//! upstream path is the origin's path plus the remainder past the mountpoint
//! plus the query, unchanged (encoded bytes included); methods, bodies and
//! large headers arrive intact; the upstream sees `X-Forwarded-*`, `Via` and
//! its own `Host`; hop-by-hop headers cross in neither direction; HEAD
//! answers carry no body; a proxy mounted at `/` maps too; and an origin on
//! a Unix socket works. The upstream is `fixtures/proxy/upstream.py
//! echo`, which answers with what it received. Socket-free tests of the
//! mapping itself are in `crates/lwsws-mounts/src/proxy.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::proxy::{Echo, Upstream, raw, start_proxy};
use common::{Reply, curl};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::io::Write;

/// lwsws with `/p` → `http://127.0.0.1:UP/` and `/q` → `.../app/`, and the
/// echo upstream behind both. Fields drop in order: server, upstream, files.
struct Proxy {
    server: Lwsws,
    up: Upstream,
    port: u16,
    dir: ConfigDir,
}

fn start() -> Proxy {
    let up = Upstream::start("upstream.py", &["echo"]);
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
        dir,
    }
}

impl Proxy {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `curl ARGS… URL(path)`, and what the upstream saw.
    fn curl(&self, path: &str, args: &[&str]) -> (Reply, Echo) {
        let url = self.url(path);
        let mut all = args.to_vec();
        all.push(&url);
        let reply = curl(&all);
        assert_eq!(
            reply.status,
            200,
            "{path}: {}\n--- lwsws ---\n{}\n--- upstream ---\n{}",
            reply.text(),
            self.server.log(),
            self.up.log()
        );
        let echo = Echo::parse(&reply);
        (reply, echo)
    }
}

#[test]
fn paths_and_queries_map_onto_the_origin_path() {
    let p = start();
    for (path, target) in [
        ("/p/f.txt?a=1", "/f.txt?a=1"),
        ("/q/f.txt?a=1", "/app/f.txt?a=1"),
        ("/p", "/"),
        ("/p/", "/"),
        ("/p?a=1", "/?a=1"),
        ("/q", "/app/"),
        ("/q/", "/app/"),
        ("/q/dir/sub/", "/app/dir/sub/"),
        ("/p/s?a=1&b=%20&c&d=%26%3D", "/s?a=1&b=%20&c&d=%26%3D"),
        ("/p/a%20b%2Fc", "/a%20b%2Fc"),
        ("/q/a%20b%2Fc?x=%2F", "/app/a%20b%2Fc?x=%2F"),
        ("/p/%7Euser/caf%C3%A9/%25", "/%7Euser/caf%C3%A9/%25"),
    ] {
        let (_, echo) = p.curl(path, &["--path-as-is"]);
        assert_eq!(echo.method, "GET", "{path}");
        assert_eq!(echo.target, target, "{path}");
        assert!(echo.body.is_empty(), "{path}: {:?}", echo.body);
    }
}

#[test]
fn methods_and_bodies_arrive_intact() {
    let p = start();
    let form = "name=value&other=%C3%A9+1";
    let (_, echo) = p.curl(
        "/p/form?x=y",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data-binary",
            form,
        ],
    );
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.target, "/form?x=y");
    assert_eq!(echo.body, form.as_bytes());
    assert_eq!(
        echo.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        echo.header("content-length"),
        Some(form.len().to_string().as_str())
    );

    // Every byte value, with and without a Content-Length, and large enough
    // for curl to ask `Expect: 100-continue`.
    let blob: Vec<u8> = (0..=255u8).cycle().take(3 * 1024 * 1024 + 7).collect();
    let file = p.dir.write_file("blob.bin", &blob);
    let at_file = format!("@{}", file.display());
    for (method, extra) in [
        ("PUT", None),
        ("POST", Some("Transfer-Encoding: chunked")),
        ("PUT", Some("Expect: 100-continue")),
    ] {
        let mut args = vec!["-X", method, "--data-binary", &at_file];
        if let Some(h) = extra {
            args.extend(["-H", h]);
        }
        let (_, echo) = p.curl("/q/up/load.bin?v=2", &args);
        assert_eq!(echo.method, method, "{extra:?}");
        assert_eq!(echo.target, "/app/up/load.bin?v=2", "{extra:?}");
        assert_eq!(echo.body.len(), blob.len(), "{method} {extra:?}");
        assert!(echo.body == blob, "{method} {extra:?}: body differs");
    }

    // A body on a DELETE, an empty POST.
    let (_, echo) = p.curl("/p/item/7", &["-X", "DELETE", "--data-binary", "why"]);
    assert_eq!(
        (echo.method.as_str(), echo.target.as_str()),
        ("DELETE", "/item/7")
    );
    assert_eq!(echo.body, b"why");
    let (_, echo) = p.curl("/p/empty", &["-X", "POST", "--data-binary", ""]);
    assert_eq!(echo.method, "POST");
    assert!(echo.body.is_empty());
}

#[test]
fn the_upstream_sees_forwarding_headers_and_its_own_host() {
    let p = start();
    let reply = raw(
        p.port,
        b"GET /p/who HTTP/1.1\r\nHost: proxy.test\r\nUser-Agent: mapping-test\r\nConnection: close\r\n\r\n",
    );
    let echo = Echo::parse(&reply);
    assert_eq!(echo.target, "/who");
    assert_eq!(
        echo.header("host"),
        Some(format!("127.0.0.1:{}", p.up.port).as_str())
    );
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));
    assert_eq!(echo.header("x-forwarded-host"), Some("proxy.test"));
    assert_eq!(echo.header("user-agent"), Some("mapping-test"));
    // `Via: 1.1 <pseudonym>`: the client spoke HTTP/1.1 to us.
    let via = echo.header("via").expect("no Via upstream");
    let mut parts = via.split_whitespace();
    assert_eq!(parts.next(), Some("1.1"), "Via: {via:?}");
    assert!(parts.next().is_some(), "Via without a pseudonym: {via:?}");

    // With a port in Host, X-Forwarded-Host keeps it.
    let reply = raw(
        p.port,
        format!(
            "GET /q/who HTTP/1.1\r\nHost: proxy.test:{}\r\nConnection: close\r\n\r\n",
            p.port
        )
        .as_bytes(),
    );
    let echo = Echo::parse(&reply);
    assert_eq!(echo.target, "/app/who");
    assert_eq!(
        echo.header("x-forwarded-host"),
        Some(format!("proxy.test:{}", p.port).as_str())
    );
    assert_eq!(
        echo.header("host"),
        Some(format!("127.0.0.1:{}", p.up.port).as_str())
    );
}

#[test]
fn an_8_kib_cookie_passes() {
    let p = start();
    let cookie: String = (0..8 * 1024)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap()))
        .collect();
    let cookie = format!("big={cookie}");
    let reply = raw(
        p.port,
        format!(
            "GET /p/c HTTP/1.1\r\nHost: proxy.test\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let echo = Echo::parse(&reply);
    assert_eq!(echo.header("cookie"), Some(cookie.as_str()));
}

#[test]
fn hop_by_hop_headers_cross_in_neither_direction() {
    let p = start();
    let reply = raw(
        p.port,
        b"GET /p/hop HTTP/1.1\r\nHost: proxy.test\r\n\
          Connection: close, X-Hop\r\n\
          X-Hop: 1\r\n\
          Keep-Alive: timeout=300\r\n\
          TE: trailers\r\n\
          Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
          X-End-To-End: kept\r\n\r\n",
    );
    let echo = Echo::parse(&reply);
    // Client → upstream.
    assert_eq!(echo.header("x-end-to-end"), Some("kept"));
    for name in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(
            echo.all(name),
            Vec::<&str>::new(),
            "{name} reached the upstream"
        );
    }
    for v in echo.all("connection") {
        let v = v.to_ascii_lowercase();
        assert!(
            !v.contains("x-hop") && !v.contains("close"),
            "the client's Connection reached the upstream: {v:?}"
        );
    }
    // Upstream → client: the upstream named X-Upstream-Hop in Connection and
    // sent Keep-Alive.
    assert_eq!(reply.header("x-upstream-end"), Some("yes"));
    for name in ["x-upstream-hop", "keep-alive"] {
        assert_eq!(reply.header(name), None, "{name} reached the client");
    }
    for (k, v) in &reply.headers {
        if k.eq_ignore_ascii_case("connection") {
            assert!(
                !v.to_ascii_lowercase().contains("x-upstream-hop"),
                "the upstream's Connection reached the client: {v:?}"
            );
        }
    }
}

#[test]
fn an_origin_on_a_unix_socket() {
    let dir = ConfigDir::new();
    let sock = dir.path().join("up.sock");
    let up = Upstream::start("upstream.py", &["echo", "--unix", sock.to_str().unwrap()]);
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/u", "origin": "http://unix:{}:/prefix" }},
               {{ "mountpoint": "/r", "origin": "http://unix:{}" }}"#,
            sock.display(),
            sock.display()
        ),
    );
    let base = format!("http://127.0.0.1:{port}");
    for (path, target) in [
        ("/u/f.txt?a=1", "/prefix/f.txt?a=1"),
        ("/u", "/prefix/"),
        ("/r/f.txt?a=1", "/f.txt?a=1"),
        ("/r", "/"),
    ] {
        let reply = curl(&[&format!("{base}{path}")]);
        assert_eq!(
            reply.status,
            200,
            "{path}: {}\n{}\n{}",
            reply.text(),
            server.log(),
            up.log()
        );
        let echo = Echo::parse(&reply);
        assert_eq!(echo.target, target, "{path}");
    }
    let reply = curl(&[
        "--data-binary",
        "over a unix socket",
        &format!("{base}/u/post"),
    ]);
    let echo = Echo::parse(&reply);
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.target, "/prefix/post");
    assert_eq!(echo.body, b"over a unix socket");
    assert_eq!(echo.header("x-forwarded-for"), Some("127.0.0.1"));
    drop(server);
    drop(up);
}

#[test]
fn a_head_request_gets_the_upstreams_headers_and_no_body() {
    let p = start();
    let sock = common::connect(p.port);
    let mut r = std::io::BufReader::new(&sock);
    // HEAD, then GET on the same connection: a body after the HEAD
    // answer would be read as the head of the next response.
    (&sock)
        .write_all(
            b"HEAD /p/h?x=1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n\
              GET /p/g HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let head = common::read_response(&mut r, true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    assert_eq!(head.header("x-upstream-end"), Some("yes"));
    // The length the upstream announced for the body it did not send.
    assert!(
        head.header("content-length")
            .is_some_and(|l| l.parse::<u64>().unwrap() > 0),
        "{:?}",
        head.headers
    );
    let next = common::read_response(&mut r, false);
    let echo = Echo::parse(&next);
    assert_eq!((echo.method.as_str(), echo.target.as_str()), ("GET", "/g"));
}

#[test]
fn a_proxy_mounted_at_the_root() {
    let up = Upstream::start("upstream.py", &["echo"]);
    let dir = ConfigDir::new();
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/", "origin": "{}" }}"#,
            up.url("/base/")
        ),
    );
    for (path, target) in [
        ("/", "/base/"),
        ("/f.txt?a=1", "/base/f.txt?a=1"),
        ("/d/", "/base/d/"),
    ] {
        let r = curl(&[&format!("http://127.0.0.1:{port}{path}")]);
        assert_eq!(r.status, 200, "{path}: {}", server.log());
        assert_eq!(Echo::parse(&r).target, target, "{path}");
    }
}
