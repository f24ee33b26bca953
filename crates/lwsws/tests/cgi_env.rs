//! What a CGI program sees and what its answer becomes (SPEC §3.4, RFC
//! 3875): a fixture script (`tests/fixtures/cgi/dump.sh`) sends back its
//! environment block exactly as `execve` gave it, its working directory and
//! its stdin, and the tests check every meta-variable for GETs, POSTs
//! (plain and chunked), encoded PATH_INFO, basic auth (§3.6), `cgi-env`,
//! httpoxy and the server's own environment. `answer.sh` turns `Status:` and
//! `Location:` into a status, a redirect, or an internal redirect. The
//! handler itself is `crates/lwsws-mounts/src/cgi.rs`; process handling
//! (timeouts, limits, big bodies) is tested in `cgi_process.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Reply, bin, connect, curl, install_cgi, read_response};
use lwsws_testkit::{ConfigDir, Launch, Lwsws, Ready, free_port};
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;

/// `server-string` of the test server: SERVER_SOFTWARE must carry it.
const SERVER_STRING: &str = "lwsws-cgi-test/1.0";
/// An environment variable of the server process that no CGI may see.
const SECRET: &str = "LWSWS_SECRET_TEST";

/// Names of meta-variables (RFC 3875 and the common `REQUEST_URI`): if the
/// test's own environment has one, the program may rightly get it too.
const META: &[&str] = &[
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "GATEWAY_INTERFACE",
    "HTTPS",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "REMOTE_USER",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SCRIPT_NAME",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
];

/// One vhost, `cgi.test`, with the dump script at `/cgi` (with `cgi-env`)
/// and `/private` (behind basic auth), the answer script at `/answer`, and
/// a file mount at `/files`.
struct Site {
    dir: ConfigDir,
    port: u16,
    server: Lwsws,
    /// The directory of the dump script: its expected working directory.
    cgi_bin: PathBuf,
}

impl Site {
    fn start() -> Site {
        let dir = ConfigDir::new();
        let dump = install_cgi(&dir, "cgi-bin/dump.sh", "dump.sh");
        let answer = install_cgi(&dir, "answer-bin/answer.sh", "answer.sh");
        dir.write_file("www/other.txt", "the other path\n");
        let passwd = dir.write_file("passwd", "alice:secret\n");
        let port = free_port();
        dir.write_conf(&format!(
            "{{ \"global\": {{ \"server-string\": \"{SERVER_STRING}\" }} }}\n"
        ));
        dir.write_conf_d(
            "site",
            &format!(
                r#"{{ "vhosts": [{{ "name": "cgi.test", "port": "{port}", "mounts": [
                    {{ "mountpoint": "/cgi", "origin": "cgi://{dump}",
                       "cgi-env": [{{ "CGI_TEST_VAR": "from cgi-env" }},
                                   {{ "CGI_TEST_SPACES": "a b = c" }}] }},
                    {{ "mountpoint": "/private", "origin": "cgi://{dump}",
                       "basic-auth": "{passwd}" }},
                    {{ "mountpoint": "/answer", "origin": "cgi://{answer}" }},
                    {{ "mountpoint": "/files", "origin": "file://{www}" }}
                ] }}] }}"#,
                dump = dump.display(),
                answer = answer.display(),
                passwd = passwd.display(),
                www = dir.path().join("www").display(),
            ),
        );
        let server = Launch::new(bin(), dir.path())
            .env(SECRET, "1")
            .wait_for(Ready::Tcp(port))
            .start();
        let cgi_bin = dir.path().join("cgi-bin").canonicalize().unwrap();
        Site {
            dir,
            port,
            server,
            cgi_bin,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `request` (a complete HTTP/1.1 request with `Connection:
    /// close`) on a new connection; returns the response and the local
    /// port of the connection (the client's port the server saw).
    fn raw(&self, request: &[u8]) -> (Reply, u16) {
        let mut s = connect(self.port);
        let local_port = s.local_addr().unwrap().port();
        s.write_all(request).unwrap();
        let reply = read_response(&mut BufReader::new(s), false);
        (reply, local_port)
    }

    /// Parses a response from the dump script, failing with the log if it
    /// is not one.
    fn dump(&self, r: &Reply) -> Dump {
        assert_eq!(
            r.status,
            200,
            "body {:?}\n--- server log ---\n{}",
            r.text(),
            self.server.log()
        );
        assert_eq!(r.header("x-dump"), Some("1"), "not the dump script");
        Dump::parse(&r.body)
    }
}

/// What the dump script saw.
struct Dump {
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    stdin: Vec<u8>,
}

impl Dump {
    /// `CWD \n ENV-ENTRY \0 … ENV-ENTRY \0 \0 STDIN`.
    fn parse(body: &[u8]) -> Dump {
        let nl = body.iter().position(|&b| b == b'\n').expect("cwd line");
        let cwd = PathBuf::from(String::from_utf8(body[..nl].to_vec()).unwrap());
        let rest = &body[nl + 1..];
        // Entries are never empty, so the first NUL NUL ends the block
        // (the block itself may be empty: then it starts with the NUL).
        let end = if rest.first() == Some(&0) {
            0
        } else {
            rest.windows(2)
                .position(|w| w == [0, 0])
                .expect("end of the environment block")
                + 1
        };
        let mut env = BTreeMap::new();
        for entry in rest[..end].split(|&b| b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8(entry.to_vec()).unwrap();
            let (k, v) = entry.split_once('=').expect("NAME=value");
            let old = env.insert(k.to_owned(), v.to_owned());
            assert!(old.is_none(), "{k} given twice");
        }
        Dump {
            cwd,
            env,
            stdin: rest[end + 1..].to_vec(),
        }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// Asserts `name` is set to `value`.
    fn expect(&self, name: &str, value: &str) {
        assert_eq!(self.var(name), Some(value), "{name} in {:#?}", self.env);
    }

    /// Asserts `name` is not set.
    fn absent(&self, name: &str) {
        assert_eq!(self.var(name), None, "{name} in {:#?}", self.env);
    }
}

#[test]
fn a_get_with_a_query_gets_every_meta_variable() {
    let s = Site::start();
    let request = format!(
        "GET /cgi/sub/path?a=1&b=two%20words HTTP/1.1\r\nHost: cgi.test:{}\r\n\
         User-Agent: cgi-env-test\r\nAccept: */*\r\nX-Custom-Thing: v1\r\n\
         X-Multi: first\r\nX-Multi: second\r\nCookie: a=1\r\nCookie: b=2\r\n\
         Connection: close\r\n\r\n",
        s.port
    );
    let (r, client_port) = s.raw(request.as_bytes());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let d = s.dump(&r);

    d.expect("GATEWAY_INTERFACE", "CGI/1.1");
    d.expect("SERVER_SOFTWARE", SERVER_STRING);
    d.expect("SERVER_NAME", "cgi.test");
    d.expect("SERVER_PORT", &s.port.to_string());
    d.expect("SERVER_PROTOCOL", "HTTP/1.1");
    d.expect("REQUEST_METHOD", "GET");
    d.expect("SCRIPT_NAME", "/cgi");
    d.expect("PATH_INFO", "/sub/path");
    // The query string as it was sent, not decoded.
    d.expect("QUERY_STRING", "a=1&b=two%20words");
    d.expect("REMOTE_ADDR", "127.0.0.1");
    d.expect("REMOTE_PORT", &client_port.to_string());
    // No body: no CONTENT_LENGTH, no CONTENT_TYPE; plain HTTP: no HTTPS;
    // no basic auth on this mount: no REMOTE_USER, no AUTH_TYPE.
    for name in [
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "HTTPS",
        "REMOTE_USER",
        "AUTH_TYPE",
    ] {
        d.absent(name);
    }
    // Request headers as HTTP_*; repeated ones joined with ", " (RFC 3875
    // §4.1.18).
    d.expect("HTTP_HOST", &format!("cgi.test:{}", s.port));
    d.expect("HTTP_USER_AGENT", "cgi-env-test");
    d.expect("HTTP_ACCEPT", "*/*");
    d.expect("HTTP_X_CUSTOM_THING", "v1");
    d.expect("HTTP_X_MULTI", "first, second");
    // Except cookies, which join as one Cookie header would carry them
    // (RFC 9113 §8.2.3; ", " would glue "b=2" into the value of a).
    d.expect("HTTP_COOKIE", "a=1; b=2");
    // cgi-env, values as written.
    d.expect("CGI_TEST_VAR", "from cgi-env");
    d.expect("CGI_TEST_SPACES", "a b = c");
    // PATH is the server's.
    d.expect("PATH", &std::env::var("PATH").unwrap());
    // The working directory is the program's directory; no body, empty stdin.
    assert_eq!(d.cwd, s.cgi_bin);
    assert_eq!(d.stdin, b"");
}

#[test]
fn nothing_of_the_servers_environment_but_path_reaches_the_program() {
    let s = Site::start();
    let r = curl(&[&s.url("/cgi/x?y")]);
    let d = s.dump(&r);
    d.absent(SECRET);
    d.absent("NO_COLOR");
    // The server inherited the whole environment of this test process.
    let inherited: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k != "PATH" && !k.starts_with("HTTP_") && !META.contains(&k.as_str()))
        .collect();
    assert!(
        inherited.len() > 1,
        "the test's own environment: {inherited:?}"
    );
    for k in &inherited {
        d.absent(k);
    }
}

#[test]
fn http_1_0_without_host_names_the_vhost_and_protocol() {
    let s = Site::start();
    let bytes = common::exchange(s.port, b"GET /cgi HTTP/1.0\r\n\r\n");
    let r = &common::parse_responses(&bytes)[0];
    let d = s.dump(r);
    d.expect("SERVER_PROTOCOL", "HTTP/1.0");
    d.expect("SERVER_NAME", "cgi.test");
    d.expect("SCRIPT_NAME", "/cgi");
    d.absent("HTTP_HOST");
    // The mountpoint itself: no path info (unset or empty, RFC 3875 §4.1.5).
    assert!(
        d.var("PATH_INFO").is_none_or(str::is_empty),
        "{:?}",
        d.var("PATH_INFO")
    );
    // QUERY_STRING is always set, empty without a query (RFC 3875 §4.1.7).
    d.expect("QUERY_STRING", "");
}

/// Bytes that a text-minded pipe would mangle: every byte value, CR LF,
/// NULs, and enough of them to take several reads.
fn awkward_body(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|i| match i % 1000 {
            0 => 0,
            1 => b'\r',
            2 => b'\n',
            _ => {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            }
        })
        .collect()
}

#[test]
fn a_post_body_reaches_stdin_byte_for_byte_with_its_length_and_type() {
    let s = Site::start();
    let body = awkward_body(300_000);
    let file = s.dir.write_file("post.bin", &body);
    let data = format!("@{}", file.display());
    let r = curl(&[
        "-H",
        "Content-Type: application/x-test; charset=binary",
        "--data-binary",
        &data,
        &s.url("/cgi/upload"),
    ]);
    let d = s.dump(&r);
    d.expect("REQUEST_METHOD", "POST");
    d.expect("CONTENT_LENGTH", &body.len().to_string());
    d.expect("CONTENT_TYPE", "application/x-test; charset=binary");
    d.expect("PATH_INFO", "/upload");
    assert_eq!(d.stdin.len(), body.len());
    assert!(d.stdin == body, "stdin differs from the body sent");
}

#[test]
fn a_chunked_post_has_no_content_length_and_an_intact_body() {
    let s = Site::start();
    let body = awkward_body(200_000);
    let file = s.dir.write_file("post.bin", &body);
    let data = format!("@{}", file.display());
    let r = curl(&[
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
        &s.url("/cgi"),
    ]);
    let d = s.dump(&r);
    d.expect("REQUEST_METHOD", "POST");
    d.absent("CONTENT_LENGTH");
    // stdin is already de-chunked: the program must not be told otherwise.
    d.absent("HTTP_TRANSFER_ENCODING");
    d.expect("CONTENT_TYPE", "application/octet-stream");
    assert_eq!(d.stdin.len(), body.len());
    assert!(d.stdin == body, "stdin differs from the body sent");

    // Small chunks with an extension and a trailer, written by hand.
    let (r, _) = s.raw(
        b"POST /cgi HTTP/1.1\r\nHost: cgi.test\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld\n\r\n\
          0\r\nX-Trailer: t\r\n\r\n",
    );
    let d = s.dump(&r);
    d.absent("CONTENT_LENGTH");
    assert_eq!(String::from_utf8_lossy(&d.stdin), "hello world\n");
}

#[test]
fn path_info_is_percent_decoded_exactly_once() {
    let s = Site::start();
    let r = curl(&[
        "--path-as-is",
        &s.url("/cgi/a%20b/c%2Fd/%2541/%C3%A9t%C3%A9?q=%2541"),
    ]);
    let d = s.dump(&r);
    d.expect("SCRIPT_NAME", "/cgi");
    d.expect("PATH_INFO", "/a b/c/d/%41/été");
    d.expect("QUERY_STRING", "q=%2541");

    let r = curl(&[&s.url("/cgi/")]);
    s.dump(&r).expect("PATH_INFO", "/");
}

#[test]
fn basic_auth_gives_remote_user_and_auth_type() {
    let s = Site::start();
    let r = curl(&[&s.url("/private/x")]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("x-dump").is_none(), "the program ran without auth");
    let r = curl(&["-u", "alice:wrong", &s.url("/private/x")]);
    assert_eq!(r.status, 401);

    let r = curl(&["-u", "alice:secret", &s.url("/private/x?k=v")]);
    let d = s.dump(&r);
    d.expect("REMOTE_USER", "alice");
    d.expect("AUTH_TYPE", "Basic");
    d.expect("SCRIPT_NAME", "/private");
    d.expect("PATH_INFO", "/x");
    d.expect("QUERY_STRING", "k=v");
    // The credentials themselves are not handed on (RFC 3875 §4.1.18).
    let everything = format!("{:?}", d.env);
    assert!(!everything.contains("YWxpY2U6c2VjcmV0"), "{everything}");
    assert!(!everything.contains("secret"), "{everything}");
    // cgi-env belongs to the /cgi mount only.
    d.absent("CGI_TEST_VAR");
}

#[test]
fn a_proxy_header_never_becomes_http_proxy() {
    let s = Site::start();
    let r = curl(&[
        "-H",
        "Proxy: http://attacker.example:3128",
        "-H",
        "X-Other: kept",
        "-H",
        "Proxy-Authorization: Basic c2VjcmV0OnNlY3JldA==",
        &s.url("/cgi"),
    ]);
    let d = s.dump(&r);
    d.absent("HTTP_PROXY");
    // Credentials are never handed to the program (RFC 3875 §4.1.18).
    d.absent("HTTP_PROXY_AUTHORIZATION");
    d.expect("HTTP_X_OTHER", "kept");
    // Lower case on the wire, nothing between us and the server.
    let (r, _) = s.raw(
        b"GET /cgi HTTP/1.1\r\nHost: cgi.test\r\nproxy: http://attacker.example:3128\r\n\
          Connection: close\r\n\r\n",
    );
    let d = s.dump(&r);
    d.absent("HTTP_PROXY");
    assert!(
        !format!("{:?}", d.env).contains("attacker.example"),
        "{:#?}",
        d.env
    );
}

#[test]
fn status_sets_the_response_status() {
    let s = Site::start();
    let r = curl(&[&s.url("/answer/not-found")]);
    assert_eq!(r.status, 404, "{}", s.server.log());
    assert_eq!(r.text(), "no such thing\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(
        r.header("status").is_none(),
        "Status: passed on as a header"
    );
}

#[test]
fn a_location_url_is_a_302() {
    let s = Site::start();
    let r = curl(&[&s.url("/answer/external")]);
    assert_eq!(r.status, 302, "{}", s.server.log());
    assert_eq!(r.header("location"), Some("http://example.org/x"));
}

#[test]
fn a_local_location_is_served_internally() {
    let s = Site::start();
    let r = curl(&[&s.url("/answer/local")]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.server.log());
    assert_eq!(r.text(), "the other path\n");
    assert!(r.header("location").is_none());
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );

    // To another CGI: it runs for the new path and query.
    let r = curl(&[&s.url("/answer/local-cgi")]);
    let d = s.dump(&r);
    d.expect("REQUEST_METHOD", "GET");
    d.expect("SCRIPT_NAME", "/cgi");
    d.expect("PATH_INFO", "/after-redirect");
    d.expect("QUERY_STRING", "from=redirect");
}
