//! Basic auth on a mount (SPEC §3.6), the response headers the operator
//! controls — Cache-Control from the `cache-*` keys (§3.1), the vhost's
//! `headers`, `Server:` from `server-string` — `reject-service-keywords`
//! (§2.2), and redirect mounts keeping path and query (§3.3). Credential
//! checking alone is tested without sockets in
//! `crates/lwsws-mounts/tests/basic_auth.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, curl, get};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};

/// A server with one vhost, `name`, on a fresh port, whose mounts are the
/// JSON objects in `mounts`; `global` is the body of the global section and
/// `vhost_extra` is inserted into the vhost object (ending in a comma).
fn start(
    dir: &ConfigDir,
    name: &str,
    global: &str,
    vhost_extra: &str,
    mounts: &str,
) -> (u16, Lwsws) {
    let port = free_port();
    dir.write_conf(&format!("{{ \"global\": {{ {global} }} }}\n"));
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{ "vhosts": [{{ "name": "{name}", "port": "{port}", {vhost_extra}
                "mounts": [ {mounts} ] }}] }}"#
        ),
    );
    let server = Lwsws::start(bin(), dir, &[], &[port]);
    (port, server)
}

#[test]
fn basic_auth_protects_its_mount_only() {
    let dir = ConfigDir::new();
    dir.write_file("www/public.txt", "public\n");
    dir.write_file("private/p.txt", "private\n");
    let bcrypt_b = bcrypt::hash("hunter2", 4).unwrap();
    assert!(bcrypt_b.starts_with("$2b$04$"), "{bcrypt_b}");
    let bcrypt_y = bcrypt::hash_with_result("correct horse", 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    assert!(bcrypt_y.starts_with("$2y$04$"), "{bcrypt_y}");
    let passwd = dir.write_file(
        "passwd",
        format!("alice:secret\nbob:{bcrypt_b}\ncarol:{bcrypt_y}\n"),
    );
    let (www, private) = (dir.path().join("www"), dir.path().join("private"));
    let (port, server) = start(
        &dir,
        "auth.test",
        "",
        "",
        &format!(
            r#"{{ "mountpoint": "/", "origin": "file://{}" }},
               {{ "mountpoint": "/private", "origin": "file://{}", "basic-auth": "{}" }}"#,
            www.display(),
            private.display(),
            passwd.display()
        ),
    );
    let url = format!("http://127.0.0.1:{port}/private/p.txt");

    let r = curl(&[&url]);
    assert_eq!(r.status, 401, "{}", server.log());
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"auth.test\"")
    );
    assert!(!r.text().contains("private\n"));
    for wrong in [
        "alice:wrong",
        "alice:",
        "alice:secretx",
        "nobody:secret",
        "bob:hunter",
        "carol:secret",
    ] {
        let r = curl(&["-u", wrong, &url]);
        assert_eq!(r.status, 401, "{wrong}");
        assert!(r.header("www-authenticate").is_some(), "{wrong}");
        assert!(!r.text().contains("private\n"), "{wrong}");
    }
    for good in ["alice:secret", "bob:hunter2", "carol:correct horse"] {
        let r = curl(&["-u", good, &url]);
        assert_eq!(r.status, 200, "{good}\n{}", server.log());
        assert_eq!(r.text(), "private\n", "{good}");
    }
    // Not Basic: still a challenge.
    let r = curl(&["-H", "Authorization: Bearer abc", &url]);
    assert_eq!(r.status, 401);

    let r = get(&format!("http://127.0.0.1:{port}/public.txt"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "public\n");
}

#[test]
fn cache_control_follows_the_cache_keys() {
    let dir = ConfigDir::new();
    dir.write_file("www/a.txt", "a\n");
    let root = dir.path().join("www");
    let root = root.display();
    let mount = |point: &str, keys: &str| {
        format!(r#"{{ "mountpoint": "{point}", "origin": "file://{root}" {keys} }}"#)
    };
    let mounts = [
        mount("/", ""),
        mount(
            "/pub",
            r#", "cache-max-age": "60", "cache-intermediaries": "1""#,
        ),
        mount(
            "/reval",
            r#", "cache-max-age": "60", "cache-intermediaries": "1", "cache-revalidate": "1""#,
        ),
        mount("/priv", r#", "cache-max-age": "120""#),
        mount(
            "/noreuse",
            r#", "cache-max-age": "60", "cache-intermediaries": "1", "cache-reuse": "0""#,
        ),
    ]
    .join(",\n");
    let (port, server) = start(&dir, "cache.test", "", "", &mounts);
    let cc = |point: &str| {
        let r = get(&format!("http://127.0.0.1:{port}{point}/a.txt"), &[]);
        assert_eq!(r.status, 200, "{point}\n{}", server.log());
        let value = r.header("cache-control").unwrap_or_default().to_owned();
        let parts: Vec<String> = value
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        (value, parts)
    };
    let has = |parts: &[String], p: &str| parts.iter().any(|x| x == p);

    let (v, p) = cc("");
    assert_eq!(p, ["no-store"], "{v}");

    let (v, p) = cc("/pub");
    assert!(has(&p, "public") && has(&p, "max-age=60"), "{v}");
    assert!(!has(&p, "private") && !has(&p, "no-store"), "{v}");
    assert!(!has(&p, "must-revalidate"), "{v}");

    let (v, p) = cc("/reval");
    assert!(has(&p, "public") && has(&p, "max-age=60"), "{v}");
    assert!(has(&p, "must-revalidate"), "{v}");

    let (v, p) = cc("/priv");
    assert!(has(&p, "private") && has(&p, "max-age=120"), "{v}");
    assert!(!has(&p, "public"), "{v}");

    let (v, p) = cc("/noreuse");
    assert_eq!(p, ["no-store"], "{v}");
}

#[test]
fn vhost_headers_and_the_server_string_are_on_every_response() {
    let dir = ConfigDir::new();
    dir.write_file("www/a.txt", "a\n");
    let (port, server) = start(
        &dir,
        "hdr.test",
        r#""server-string": "TestServer/9.9""#,
        r#""headers": [{ "X-Test-One": "first value", "X-Frame-Options": "DENY" },
                       { "X-Test-Two": "second" }],"#,
        &format!(
            r#"{{ "mountpoint": "/", "origin": "file://{}" }},
               {{ "mountpoint": "/go", "origin": ">https://example.org/" }}"#,
            dir.path().join("www").display()
        ),
    );
    for (path, status) in [("/a.txt", 200), ("/missing.txt", 404), ("/go/x", 301)] {
        let r = get(&format!("http://127.0.0.1:{port}{path}"), &[]);
        assert_eq!(r.status, status, "{path}\n{}", server.log());
        assert_eq!(r.header("x-test-one"), Some("first value"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("x-test-two"), Some("second"), "{path}");
        assert_eq!(r.header("server"), Some("TestServer/9.9"), "{path}");
    }
}

#[test]
fn reject_service_keywords_answer_with_their_status() {
    let dir = ConfigDir::new();
    dir.write_file("www/a.txt", "a\n");
    let (port, server) = start(
        &dir,
        "ua.test",
        r#""reject-service-keywords": [{ "scumbot": "404 Not Found" }, { "badcrawler": "403 Forbidden" }]"#,
        "",
        &format!(
            r#"{{ "mountpoint": "/", "origin": "file://{}" }}"#,
            dir.path().join("www").display()
        ),
    );
    let url = format!("http://127.0.0.1:{port}/a.txt");
    let ua = |agent: &str| get(&url, &[("User-Agent", agent)]);

    let r = ua("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0");
    assert_eq!(r.status, 200, "{}", server.log());
    assert_eq!(r.text(), "a\n");
    let r = ua("Mozilla scumbot/1.0");
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("a\n"));
    let r = ua("badcrawler");
    assert_eq!(r.status, 403);
    // The same file without a User-Agent at all.
    let r = curl(&["-H", "User-Agent:", &url]);
    assert_eq!(r.status, 200);
}

#[test]
fn redirect_mounts_keep_the_path_and_query() {
    let dir = ConfigDir::new();
    dir.write_file("www/index.html", "home\n");
    let (port, server) = start(
        &dir,
        "redir.test",
        "",
        "",
        &format!(
            r#"{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }},
               {{ "mountpoint": "/old", "origin": ">https://example.org/new" }}"#,
            dir.path().join("www").display()
        ),
    );
    let location = |path: &str| {
        let r = get(&format!("http://127.0.0.1:{port}{path}"), &[]);
        assert_eq!(r.status, 301, "{path}\n{}", server.log());
        r.header("location").unwrap_or_default().to_owned()
    };
    assert_eq!(
        location("/old/a/b?x=1&y=2"),
        "https://example.org/new/a/b?x=1&y=2"
    );
    assert_eq!(location("/old"), "https://example.org/new/");
    assert_eq!(location("/old/"), "https://example.org/new/");
    assert_eq!(location("/old?q=1"), "https://example.org/new/?q=1");
    // `/older` is not under `/old`.
    let r = get(&format!("http://127.0.0.1:{port}/older"), &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("location"), None);
}
