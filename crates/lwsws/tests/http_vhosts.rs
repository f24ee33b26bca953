//! Listeners and vhost selection (SPEC §2.3, §3): several vhosts on one port
//! chosen by Host, the first vhost as fallback and `strict-host`'s 421, the
//! same name on two ports, a Unix-socket vhost, an IPv6 vhost, `*.` wildcards,
//! and the Host matching rules (case, port, trailing dot). Each vhost serves a
//! directory whose `index.html` names the vhost, so the body tells which one
//! answered. The router's own unit tests are in `crates/lwsws-router`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, curl, get};
use lwsws_testkit::{ConfigDir, Lwsws, Ready, free_port};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `DIR/www-TAG/index.html` holding `site TAG` and returns the
/// directory.
fn site(dir: &ConfigDir, tag: &str) -> std::path::PathBuf {
    dir.write_file(&format!("www-{tag}/index.html"), format!("site {tag}\n"));
    dir.path().join(format!("www-{tag}"))
}

/// One vhost object of a `vhosts` list; `extra` is inserted verbatim (e.g.
/// `"interface": "::1",`).
fn vhost(name: &str, port: u16, root: &Path, extra: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "port": "{port}", {extra}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}] }}"#,
        root.display()
    )
}

fn vhosts(list: &[String]) -> String {
    format!("{{ \"vhosts\": [\n{}\n] }}\n", list.join(",\n"))
}

/// The body served at `/` on `port` for a request with `Host: host`.
fn body_for_host(port: u16, host: &str) -> (u16, String) {
    let r = curl(&[
        "-H",
        &format!("Host: {host}"),
        &format!("http://127.0.0.1:{port}/"),
    ]);
    (r.status, r.text())
}

#[test]
fn host_header_chooses_the_vhost_and_unknown_hosts_get_the_first() {
    let dir = ConfigDir::new();
    let port = free_port();
    let (a, b) = (site(&dir, "a"), site(&dir, "b"));
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost("a.test", port, &a, ""), vhost("b.test", port, &b, "")]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);

    assert_eq!(
        body_for_host(port, "a.test"),
        (200, "site a\n".into()),
        "{}",
        server.log()
    );
    assert_eq!(body_for_host(port, "b.test"), (200, "site b\n".into()));
    assert_eq!(
        body_for_host(port, "unknown.test"),
        (200, "site a\n".into())
    );
    // An address as Host names no vhost either.
    let r = get(&format!("http://127.0.0.1:{port}/"), &[]);
    assert_eq!((r.status, r.text()), (200, "site a\n".into()));
}

#[test]
fn strict_host_answers_421_for_an_unknown_host() {
    let dir = ConfigDir::new();
    let port = free_port();
    let (a, b) = (site(&dir, "a"), site(&dir, "b"));
    dir.write_conf(r#"{ "global": { "strict-host": "1" } }"#);
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost("a.test", port, &a, ""), vhost("b.test", port, &b, "")]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);

    assert_eq!(
        body_for_host(port, "b.test"),
        (200, "site b\n".into()),
        "{}",
        server.log()
    );
    assert_eq!(body_for_host(port, "a.test"), (200, "site a\n".into()));
    let (status, body) = body_for_host(port, "unknown.test");
    assert_eq!(status, 421, "{body}");
    assert!(!body.contains("site a"), "{body}");
}

#[test]
fn the_same_name_on_two_ports_gives_two_vhosts() {
    let dir = ConfigDir::new();
    let (p1, p2) = (free_port(), free_port());
    let (one, two) = (site(&dir, "one"), site(&dir, "two"));
    dir.write_conf_d(
        "sites",
        &vhosts(&[
            vhost("same.test", p1, &one, ""),
            vhost("same.test", p2, &two, ""),
        ]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[p1, p2]);

    assert_eq!(
        body_for_host(p1, "same.test"),
        (200, "site one\n".into()),
        "{}",
        server.log()
    );
    assert_eq!(body_for_host(p2, "same.test"), (200, "site two\n".into()));
}

#[test]
fn a_unix_socket_vhost_is_reached_with_curl_and_is_private() {
    let dir = ConfigDir::new();
    let root = site(&dir, "unix");
    let sock = dir.path().join("s.sock");
    dir.write_conf_d(
        "sites",
        &format!(
            r#"{{ "vhosts": [{{ "name": "unix.test", "unix-socket": "1",
                "interface": "{}",
                "mounts": [{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}] }}] }}"#,
            sock.display(),
            root.display()
        ),
    );
    let server = Lwsws::start_with(bin(), &dir, &[], &[Ready::Unix(sock.clone())]);

    let r = curl(&["--unix-socket", sock.to_str().unwrap(), "http://unix.test/"]);
    assert_eq!(r.status, 200, "{}", server.log());
    assert_eq!(r.text(), "site unix\n");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
}

#[test]
fn an_ipv6_vhost_serves_on_loopback_v6() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        println!("skipped: cannot bind [::1] on this machine ({e})");
        return;
    }
    let dir = ConfigDir::new();
    let port = free_port();
    let root = site(&dir, "v6");
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost("v6.test", port, &root, r#""interface": "::1","#)]),
    );
    let server = Lwsws::start_with(bin(), &dir, &[], &[Ready::Tcp6(port)]);

    let r = curl(&["-g", &format!("http://[::1]:{port}/")]);
    assert_eq!(r.status, 200, "{}", server.log());
    assert_eq!(r.text(), "site v6\n");
    // Bound to ::1 only: nothing listens on the IPv4 loopback.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_wildcard_name_matches_exactly_one_label() {
    let dir = ConfigDir::new();
    let port = free_port();
    let (plain, wild) = (site(&dir, "plain"), site(&dir, "wild"));
    dir.write_conf_d(
        "sites",
        &vhosts(&[
            vhost("plain.test", port, &plain, ""),
            vhost("*.example.test", port, &wild, ""),
        ]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);

    assert_eq!(
        body_for_host(port, "a.example.test"),
        (200, "site wild\n".into()),
        "{}",
        server.log()
    );
    assert_eq!(
        body_for_host(port, "A.Example.Test:8080"),
        (200, "site wild\n".into())
    );
    // Two labels, or none, are not matched: the first vhost serves them.
    assert_eq!(
        body_for_host(port, "a.b.example.test"),
        (200, "site plain\n".into())
    );
    assert_eq!(
        body_for_host(port, "example.test"),
        (200, "site plain\n".into())
    );
}

#[test]
fn host_matching_ignores_case_port_and_trailing_dot() {
    let dir = ConfigDir::new();
    let port = free_port();
    let (a, b) = (site(&dir, "a"), site(&dir, "b"));
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost("a.test", port, &a, ""), vhost("b.test", port, &b, "")]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);

    for host in [
        "B.TEST",
        "b.Test",
        &format!("b.test:{port}"),
        "b.test:1",
        "b.test.",
        "B.Test.:8080",
    ] {
        assert_eq!(
            body_for_host(port, host),
            (200, "site b\n".into()),
            "Host: {host}\n{}",
            server.log()
        );
    }
    // Not a suffix or prefix match.
    assert_eq!(body_for_host(port, "bb.test"), (200, "site a\n".into()));
    assert_eq!(body_for_host(port, "b.test.x"), (200, "site a\n".into()));
}
