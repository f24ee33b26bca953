//! `https://` proxy origins are verified (SPEC §3.5, §3.1 `proxy-ca`): an
//! upstream whose certificate a private CA signed works when the mount
//! trusts that CA with `proxy-ca`; trusting another private CA, or the
//! system store, gives 502 and a log line that names the certificate
//! problem; so does a certificate for another name. A WebSocket reaches an
//! https upstream too. Each test makes its CAs and certificates with the
//! `openssl` command; the upstreams are `fixtures/proxy/upstream.py echo
//! --tls` and `fixtures/proxy/ws_echo.py --tls`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::curl;
use common::proxy::{Echo, Upstream, start_proxy, ws_client};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `openssl ARGS…` in `dir`; panics with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA `NAME.pem` with its key `NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=lwsws test {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A server certificate `NAME.pem` (key `NAME.key`) in `dir` for the
/// subject alternative name `san` (e.g. `IP:127.0.0.1`), signed by the CA
/// `ca` made by [`make_ca`]. Returns the certificate's and key's paths.
fn make_leaf(dir: &Path, ca: &str, name: &str, san: &str) -> (PathBuf, PathBuf) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = {san}\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=lwsws test {name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            "2",
            "-days",
            "2",
            "-out",
            &format!("{name}.pem"),
            "-extfile",
            &ext,
        ],
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// An https echo upstream with the certificate `leaf`.
fn tls_upstream(leaf: &(PathBuf, PathBuf)) -> Upstream {
    Upstream::start(
        "upstream.py",
        &[
            "echo",
            "--tls",
            leaf.0.to_str().unwrap(),
            leaf.1.to_str().unwrap(),
        ],
    )
}

/// `https://127.0.0.1:PORT/` of an upstream.
fn https(up: &Upstream) -> String {
    format!("https://127.0.0.1:{}/", up.port)
}

/// Waits (10 s at most) for a log line that names the upstream and a
/// certificate problem.
fn logs_certificate_problem(server: &Lwsws, up: &Upstream) -> bool {
    let addr = format!("127.0.0.1:{}", up.port);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if server
            .log()
            .lines()
            .any(|l| l.contains(&addr) && l.to_ascii_lowercase().contains("certificate"))
        {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_upstream_signed_by_the_proxy_ca_is_reached() {
    let dir = ConfigDir::new();
    let ca = make_ca(dir.path(), "ca");
    let leaf = make_leaf(dir.path(), "ca", "upstream", "IP:127.0.0.1");
    let up = tls_upstream(&leaf);
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/s", "origin": "{}", "proxy-ca": "{}" }},
               {{ "mountpoint": "/app", "origin": "{}app/", "proxy-ca": "{}" }}"#,
            https(&up),
            ca.display(),
            https(&up),
            ca.display()
        ),
    );
    let base = format!("http://127.0.0.1:{port}");

    let r = curl(&[&format!("{base}/s/f.txt?a=1")]);
    assert_eq!(r.status, 200, "{}\n{}", server.log(), up.log());
    let echo = Echo::parse(&r);
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.target, "/f.txt?a=1");
    assert_eq!(
        echo.header("host"),
        Some(format!("127.0.0.1:{}", up.port).as_str())
    );
    // The client spoke plain HTTP to lwsws.
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));

    let r = curl(&["--data-binary", "over tls", &format!("{base}/app/x")]);
    let echo = Echo::parse(&r);
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.target, "/app/x");
    assert_eq!(echo.body, b"over tls");

    // Several in a row (pooled TLS connections, or new ones) all work.
    for i in 0..10 {
        let r = curl(&[&format!("{base}/s/n{i}")]);
        assert_eq!(Echo::parse(&r).target, format!("/n{i}"));
    }
}

#[test]
fn another_ca_or_the_system_store_gives_502_and_a_logged_reason() {
    let dir = ConfigDir::new();
    make_ca(dir.path(), "ca");
    let other = make_ca(dir.path(), "other-ca");
    let leaf = make_leaf(dir.path(), "ca", "upstream", "IP:127.0.0.1");
    let up = tls_upstream(&leaf);
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/wrong", "origin": "{}", "proxy-ca": "{}" }},
               {{ "mountpoint": "/system", "origin": "{}" }}"#,
            https(&up),
            other.display(),
            https(&up)
        ),
    );
    for path in ["/wrong/x", "/system/x"] {
        let r = curl(&[&format!("http://127.0.0.1:{port}{path}")]);
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        assert!(
            !r.text().contains("\"target\""),
            "{path}: the upstream's answer got through"
        );
    }
    assert!(
        logs_certificate_problem(&server, &up),
        "no log line names the certificate problem:\n{}",
        server.log()
    );
}

#[test]
fn a_certificate_for_another_name_gives_502() {
    let dir = ConfigDir::new();
    let ca = make_ca(dir.path(), "ca");
    let leaf = make_leaf(dir.path(), "ca", "elsewhere", "DNS:elsewhere.test");
    let up = tls_upstream(&leaf);
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/s", "origin": "{}", "proxy-ca": "{}" }}"#,
            https(&up),
            ca.display()
        ),
    );
    let r = curl(&[&format!("http://127.0.0.1:{port}/s/x")]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        logs_certificate_problem(&server, &up),
        "no log line names the certificate problem:\n{}",
        server.log()
    );
}

#[test]
fn a_websocket_reaches_an_https_upstream() {
    let dir = ConfigDir::new();
    let ca = make_ca(dir.path(), "ca");
    let (cert, key) = make_leaf(dir.path(), "ca", "upstream", "IP:127.0.0.1");
    let log = dir.path().join("closes.log");
    let up = Upstream::start(
        "ws_echo.py",
        &[
            log.to_str().unwrap(),
            "--tls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ],
    );
    let port = free_port();
    let server = start_proxy(
        &dir,
        port,
        "",
        &format!(
            r#"{{ "mountpoint": "/ws", "origin": "{}", "proxy-ca": "{}" }}"#,
            https(&up),
            ca.display()
        ),
    );
    let out = ws_client(&format!("ws://127.0.0.1:{port}/ws/secure"), "server-close")
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- lwsws ---\n{}\n--- upstream ---\n{}",
                server.log(),
                up.log()
            )
        });
    assert_eq!(out["texts"][2], "/secure", "{out}");
    assert_eq!(out["binary_equal"], true, "{out}");
    assert_eq!(out["close_code"], 4001, "{out}");
    assert_eq!(out["close_reason"], "bye now", "{out}");
}
