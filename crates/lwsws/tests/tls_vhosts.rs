//! TLS vhosts against the real binary (SPEC §2.3 TLS keys and §5, issue 7's
//! acceptance). Every test makes its own CA and certificates (rcgen, in
//! `common/tls.rs`) and talks to the server with a synchronous rustls client
//! (and `openssl s_client` where the acceptance names it):
//! - SNI: three TLS vhosts on one port each serve their own certificate; an
//!   unknown SNI and no SNI get the first vhost's; Host naming another vhost
//!   than the SNI gets 421, the SNI's own name (or an unknown one) 200;
//! - `client-cert-required` + `host-ssl-ca`: no certificate and one from
//!   another CA are refused before any HTTP; the right one reaches CGI as
//!   `SSL_CLIENT_S_DN`, `SSL_CLIENT_VERIFY=SUCCESS`, `HTTPS=on`;
//! - plaintext on a TLS port: `redirect-http` → 301 to the https URL,
//!   `allow-http-on-https` → served, neither → closed without a byte;
//! - `sts` on TLS responses only;
//! - `ssl-option-set` TLS 1.2-only and 1.3-only vhosts (`openssl s_client`);
//! - bad input: garbage instead of a ClientHello, stalled handshakes closed
//!   after `timeout-secs`, non-PEM, encrypted and mismatched key material
//!   reported by `--check` (and refused at start);
//! - a SIGHUP reload re-reads renewed certificate files (and the client CA
//!   bundle); a broken renewal is refused and the old certificate stays.
//!
//! Beyond the acceptance list: wildcard SNI, a keep-alive connection or an
//! absolute-form target cannot reach another vhost, session resumption
//! (keeps the client subject; a session of an optional-certificate vhost
//! does not open a `client-cert-required` one), RFC 4514 escaping of the
//! subject, no HTTPS variables for plaintext CGI, `ciphers`/`ecdh-curve`,
//! unknown cipher names, RSA/ECDSA/Ed25519 keys in PKCS#1/SEC1/PKCS#8.
//!
//! The connection code is `crates/lwsws-server/src/conn.rs` (first byte,
//! SNI, handshake deadline), 421/redirect/STS `crates/lwsws-server/src/pipeline.rs`,
//! the key material and rustls configuration `crates/lwsws-tls`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/tls.rs"]
mod tls;

use common::{Reply, bin, install_cgi, parse_responses, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port, run};
use nix::sys::signal::Signal;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls::{Ca, rustls_client};

/// Socket reads give up after this long: a liveness bound only.
const IO_DEADLINE: Duration = Duration::from_secs(20);
/// How long a reload may take to become visible: a liveness bound.
const SETTLE: Duration = Duration::from_secs(30);
/// `timeout-secs` of the servers that test stalled handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// A stalled connection must be closed within this long (several times
/// `HANDSHAKE_TIMEOUT`)…
const CLOSE_BOUND: Duration = Duration::from_secs(10);
/// … and not before this long (it must not be closed at once).
const NOT_BEFORE: Duration = Duration::from_secs(1);

const STS: &str = "max-age=15768000 ; includeSubDomains";
/// `SSL_OP_NO_TLSv1_2` and `SSL_OP_NO_TLSv1_3`, as `ssl-option-set` takes them.
const NO_TLS12: u64 = 0x0800_0000;
const NO_TLS13: u64 = 0x2000_0000;

// ---------------------------------------------------------------------------
// Files and configuration.

/// Writes `DIR/NAME.crt` and `DIR/NAME.key` and returns their paths.
fn write_pair(dir: &ConfigDir, name: &str, pair: &(String, String)) -> (PathBuf, PathBuf) {
    (
        dir.write_file(&format!("tls/{name}.crt"), &pair.0),
        dir.write_file(&format!("tls/{name}.key"), &pair.1),
    )
}

/// Writes `DIR/www-TAG/index.html` holding `site TAG` and returns the
/// directory.
fn site(dir: &ConfigDir, tag: &str) -> PathBuf {
    dir.write_file(&format!("www-{tag}/index.html"), format!("site {tag}\n"));
    dir.path().join(format!("www-{tag}"))
}

/// One vhost object serving `root` at `/`; `extra` is inserted verbatim
/// (e.g. `"sts": "1",`).
fn vhost(name: &str, port: u16, root: &Path, extra: &str) -> String {
    format!(
        r#"{{ "name": "{name}", "port": "{port}", {extra}
            "mounts": [{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}] }}"#,
        root.display()
    )
}

/// `"host-ssl-cert": …, "host-ssl-key": …,` for [`vhost`]'s `extra`.
fn tls_keys(files: &(PathBuf, PathBuf)) -> String {
    format!(
        r#""host-ssl-cert": "{}", "host-ssl-key": "{}","#,
        files.0.display(),
        files.1.display()
    )
}

fn vhosts(list: &[String]) -> String {
    format!("{{ \"vhosts\": [\n{}\n] }}\n", list.join(",\n"))
}

// ---------------------------------------------------------------------------
// A synchronous rustls client.

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Accepts any server certificate (signatures are still checked), so that
/// a test can look at what the server presented whatever the name asked.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that accepts any certificate, offering `versions`.
fn any_cert_client(versions: &[&'static SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

fn any_cert() -> Arc<ClientConfig> {
    any_cert_client(rustls::DEFAULT_VERSIONS)
}

/// A TCP connection to 127.0.0.1:port with read and write deadlines.
fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(IO_DEADLINE)).unwrap();
    s.set_write_timeout(Some(IO_DEADLINE)).unwrap();
    s
}

/// The name a ClientHello carries: `Some(name)` is sent as SNI, `None`
/// connects "by IP address", so that no SNI is sent at all.
fn server_name(sni: Option<&str>) -> ServerName<'static> {
    match sni {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        None => ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

/// Connects and completes the handshake (as far as the client can tell).
fn tls_connect(port: u16, sni: Option<&str>, cfg: Arc<ClientConfig>) -> io::Result<Tls> {
    let conn = ClientConnection::new(cfg, server_name(sni)).unwrap();
    let mut tls = StreamOwned::new(conn, tcp(port));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Reads until the server closes; a TLS connection closed without
/// `close_notify` after some data counts as closed.
fn read_all(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof && !out.is_empty() => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Sends `GET path` with `Host: host` and `Connection: close` and returns
/// every byte of the answer.
fn request(tls: &mut Tls, host: &str, path: &str) -> io::Result<Vec<u8>> {
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    read_all(tls)
}

/// One HTTPS GET: a new connection with `sni`, `Host: host`. Panics on any
/// transport failure.
fn https_get(
    port: u16,
    sni: Option<&str>,
    host: &str,
    path: &str,
    cfg: Arc<ClientConfig>,
) -> Reply {
    let mut tls = tls_connect(port, sni, cfg)
        .unwrap_or_else(|e| panic!("TLS handshake with {sni:?} on port {port}: {e}"));
    let bytes = request(&mut tls, host, path)
        .unwrap_or_else(|e| panic!("GET {path} (SNI {sni:?}, Host {host}): {e}"));
    let mut replies = parse_responses(&bytes);
    assert_eq!(
        replies.len(),
        1,
        "one response expected: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    replies.remove(0)
}

/// The certificate (leaf) the server presents to a ClientHello with `sni`.
fn served_cert(port: u16, sni: Option<&str>) -> Vec<u8> {
    let tls = tls_connect(port, sni, any_cert())
        .unwrap_or_else(|e| panic!("TLS handshake with {sni:?} on port {port}: {e}"));
    tls.conn.peer_certificates().expect("a server certificate")[0].to_vec()
}

/// The DER bytes of the first certificate in `pem`.
fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// `(common name, DNS subjectAltNames)` of a DER certificate.
fn names(der: &[u8]) -> (String, Vec<String>) {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sans = c
        .subject_alternative_name()
        .unwrap()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(s) => Some((*s).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (cn, sans)
}

/// Whether the server closes `s` without sending a single byte (EOF or
/// reset), within [`IO_DEADLINE`].
fn closed_silently(s: &mut TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "the server sent {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(format!("not closed: {e}")),
    }
}

/// Reads raw bytes until the server closes `s` (EOF or reset); panics if it
/// stays open past [`IO_DEADLINE`]. Returns what was received.
fn raw_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("connection not closed by the server: {e}; got {out:?}"),
        }
    }
}

/// A plaintext HTTP/1.1 request on a new connection; every byte of the
/// answer until the server closes.
fn plain_exchange(port: u16, request: &str) -> Vec<u8> {
    let mut s = tcp(port);
    s.write_all(request.as_bytes()).unwrap();
    raw_until_closed(&mut s)
}

// ---------------------------------------------------------------------------
// openssl

fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("openssl not found: skipping the openssl part of this test");
    }
    ok
}

/// `openssl s_client -connect 127.0.0.1:PORT [-servername NAME] EXTRA…`
/// with stdin at EOF (so it quits after the handshake), bounded by
/// `timeout 30`.
fn s_client(port: u16, sni: Option<&str>, extra: &[&str]) -> Output {
    let connect = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("timeout");
    cmd.args(["30", "openssl", "s_client", "-connect", &connect]);
    match sni {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    cmd.args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client")
}

fn out_text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The server certificate `openssl s_client` printed (DER).
fn s_client_cert(o: &Output) -> Vec<u8> {
    let text = String::from_utf8_lossy(&o.stdout);
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate in s_client output\n{}", out_text(o)));
    der(&text[start..])
}

// ---------------------------------------------------------------------------
// 1. SNI picks the certificate; Host must agree with SNI.

/// Three TLS vhosts on one port, `a.test` first, and a wildcard one,
/// `*.w.test`, each with its own certificate and document root.
struct Sni {
    port: u16,
    certs: BTreeMap<&'static str, String>,
    ca: Ca,
    _server: Lwsws,
    _dir: ConfigDir,
}

fn sni_site() -> Sni {
    let dir = ConfigDir::new();
    let ca = Ca::new("SNI test CA");
    let port = free_port();
    let mut certs = BTreeMap::new();
    let mut list = Vec::new();
    for (tag, name) in [
        ("a", "a.test"),
        ("b", "b.test"),
        ("c", "c.test"),
        ("w", "*.w.test"),
    ] {
        let pair = if name.starts_with('*') {
            ca.server_cert(&[name])
        } else {
            ca.server_cert(&[name, &format!("www.{name}")])
        };
        let files = write_pair(&dir, tag, &pair);
        certs.insert(name, pair.0);
        list.push(vhost(name, port, &site(&dir, tag), &tls_keys(&files)));
    }
    dir.write_conf_d("sites", &vhosts(&list));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Sni {
        port,
        certs,
        ca,
        _server: server,
        _dir: dir,
    }
}

#[test]
fn each_sni_name_gets_its_own_certificate_and_unknown_or_none_the_first() {
    let s = sni_site();
    for name in ["a.test", "b.test", "c.test"] {
        let got = served_cert(s.port, Some(name));
        assert_eq!(got, der(&s.certs[name]), "SNI {name}: wrong certificate");
        let (cn, sans) = names(&got);
        assert_eq!(cn, name);
        assert!(sans.contains(&name.to_owned()), "{sans:?}");
    }
    // Matching is case-insensitive.
    assert_eq!(
        names(&served_cert(s.port, Some("B.Test"))).0,
        "b.test",
        "SNI B.Test"
    );
    // Unknown SNI and no SNI at all: the first vhost's certificate.
    for sni in [Some("unknown.test"), Some("www.b.test"), None] {
        let got = served_cert(s.port, sni);
        assert_eq!(
            names(&got).0,
            "a.test",
            "SNI {sni:?} should get the first vhost's certificate"
        );
        assert_eq!(got, der(&s.certs["a.test"]));
    }
    // The certificates verify against the CA for their names (a real,
    // verifying client).
    for name in ["a.test", "b.test", "c.test"] {
        let cfg = rustls_client(&s.ca.pem(), None, &[]);
        let r = https_get(s.port, Some(name), name, "/", cfg);
        assert_eq!(r.status, 200, "{name}");
    }
}

#[test]
fn openssl_s_client_sees_the_certificate_of_its_servername() {
    if !have_openssl() {
        return;
    }
    let s = sni_site();
    for name in ["a.test", "b.test", "c.test"] {
        let o = s_client(s.port, Some(name), &[]);
        assert!(o.status.success(), "{name}: {}", out_text(&o));
        assert_eq!(s_client_cert(&o), der(&s.certs[name]), "-servername {name}");
    }
    for sni in [Some("nobody.test"), None] {
        let o = s_client(s.port, sni, &[]);
        assert!(o.status.success(), "{sni:?}: {}", out_text(&o));
        assert_eq!(
            s_client_cert(&o),
            der(&s.certs["a.test"]),
            "{sni:?}: the first vhost's certificate expected"
        );
    }
}

#[test]
fn host_naming_another_vhost_than_the_sni_gets_421() {
    let s = sni_site();
    // Host = SNI: that vhost's content.
    for (name, body) in [
        ("a.test", "site a\n"),
        ("b.test", "site b\n"),
        ("c.test", "site c\n"),
    ] {
        let r = https_get(s.port, Some(name), name, "/", any_cert());
        assert_eq!((r.status, r.text()), (200, body.to_owned()), "{name}");
        // With a port and in another case, still the same vhost.
        let host = format!("{}:{}", name.to_ascii_uppercase(), s.port);
        let r = https_get(s.port, Some(name), &host, "/", any_cert());
        assert_eq!((r.status, r.text()), (200, body.to_owned()), "{host}");
    }
    // SNI a.test, Host b.test (and the reverse): misdirected.
    for (sni, host) in [
        ("a.test", "b.test"),
        ("b.test", "a.test"),
        ("c.test", "b.test"),
    ] {
        let r = https_get(s.port, Some(sni), host, "/", any_cert());
        assert_eq!(r.status, 421, "SNI {sni}, Host {host}: {}", r.text());
        assert!(!r.text().contains("site "), "{}", r.text());
    }
    // A Host that names no vhost: the SNI's vhost serves.
    let r = https_get(s.port, Some("c.test"), "other.test", "/", any_cert());
    assert_eq!((r.status, r.text()), (200, "site c\n".to_owned()));
    // No SNI: the connection has the first vhost's certificate. Host a.test
    // is served; Host b.test is misdirected (as built: the first vhost
    // stands in for the SNI) or served by b.test (as Apache does for
    // clients without SNI): both are acceptable.
    let r = https_get(s.port, None, "a.test", "/", any_cert());
    assert_eq!((r.status, r.text()), (200, "site a\n".to_owned()));
    let r = https_get(s.port, None, "b.test", "/", any_cert());
    assert!(
        r.status == 421 || (r.status == 200 && r.text() == "site b\n"),
        "no SNI, Host b.test: {} {}",
        r.status,
        r.text()
    );
}

#[test]
fn a_wildcard_vhost_is_chosen_by_sni() {
    let s = sni_site();
    let got = served_cert(s.port, Some("x.w.test"));
    assert_eq!(got, der(&s.certs["*.w.test"]), "SNI x.w.test");
    // One label only: a.b.w.test is unknown, so the first vhost's.
    let got = served_cert(s.port, Some("a.b.w.test"));
    assert_eq!(names(&got).0, "a.test", "SNI a.b.w.test");
    let cfg = rustls_client(&s.ca.pem(), None, &[]);
    let r = https_get(s.port, Some("x.w.test"), "x.w.test", "/", cfg);
    assert_eq!((r.status, r.text()), (200, "site w\n".to_owned()));
    let r = https_get(s.port, Some("x.w.test"), "a.test", "/", any_cert());
    assert_eq!(r.status, 421, "SNI x.w.test, Host a.test");
    let r = https_get(s.port, Some("a.test"), "y.w.test", "/", any_cert());
    assert_eq!(r.status, 421, "SNI a.test, Host y.w.test");
}

#[test]
fn a_keep_alive_connection_cannot_switch_to_another_vhost() {
    let s = sni_site();
    let mut tls = tls_connect(s.port, Some("a.test"), any_cert()).unwrap();
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n\
         GET / HTTP/1.1\r\nHost: b.test\r\n\r\n\
         GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let bytes = read_all(&mut tls).unwrap();
    let replies = parse_responses(&bytes);
    let got: Vec<(u16, String)> = replies.iter().map(|r| (r.status, r.text())).collect();
    assert!(
        !got.iter().any(|(_, b)| b == "site b\n"),
        "b.test's content over a.test's connection: {got:?}"
    );
    assert_eq!(got.first(), Some(&(200, "site a\n".to_owned())), "{got:?}");
    assert_eq!(got.get(1).map(|r| r.0), Some(421), "{got:?}");
}

#[test]
fn an_absolute_form_target_naming_another_vhost_is_misdirected() {
    // RFC 9112 §3.2.2: with an absolute-form target the target's authority
    // names the vhost, not Host. On a connection whose SNI is a.test:
    let s = sni_site();
    for (target, host, want) in [
        // the authority agrees with Host and names another vhost: 421;
        ("https://b.test/", "b.test", &[421][..]),
        // the authority names a.test: served;
        ("https://a.test/", "a.test", &[200][..]),
        // authority and Host disagree (the server refuses such requests
        // with 400 anyway, guard.rs), never b.test's content.
        ("https://b.test/", "a.test", &[400, 421][..]),
        ("https://a.test/", "b.test", &[400, 421][..]),
    ] {
        let mut tls = tls_connect(s.port, Some("a.test"), any_cert()).unwrap();
        write!(
            tls,
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        tls.flush().unwrap();
        let bytes = read_all(&mut tls).unwrap();
        let r = &parse_responses(&bytes)[0];
        assert!(
            want.contains(&r.status),
            "GET {target} with Host {host} on SNI a.test: {} {:?}",
            r.status,
            r.text()
        );
        assert_ne!(
            r.text(),
            "site b\n",
            "b.test's content over a.test's certificate"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Client certificates.

/// `secure.test` (first; `client-cert-required`, CA `ca`) and `open.test`
/// (`host-ssl-ca` without `client-cert-required`) on one port, each with the
/// CGI dump script at `/cgi` and a file at `/`.
struct ClientCerts {
    port: u16,
    ca: Ca,
    _server: Lwsws,
    _dir: ConfigDir,
}

fn client_cert_site() -> ClientCerts {
    let dir = ConfigDir::new();
    let ca = Ca::new("Client test CA");
    let ca_file = dir.write_file("tls/client-ca.pem", ca.pem());
    let dump = install_cgi(&dir, "cgi-bin/dump.sh", "dump.sh");
    let port = free_port();
    let mut list = Vec::new();
    for (tag, name, extra) in [
        ("secure", "secure.test", r#""client-cert-required": "1","#),
        ("open", "open.test", ""),
    ] {
        let files = write_pair(&dir, tag, &ca.server_cert(&[name]));
        let root = site(&dir, tag);
        list.push(format!(
            r#"{{ "name": "{name}", "port": "{port}", {keys} {extra}
                "host-ssl-ca": "{ca}",
                "mounts": [
                  {{ "mountpoint": "/", "origin": "file://{root}", "default": "index.html" }},
                  {{ "mountpoint": "/cgi", "origin": "cgi://{dump}" }}
                ] }}"#,
            keys = tls_keys(&files),
            ca = ca_file.display(),
            root = root.display(),
            dump = dump.display(),
        ));
    }
    dir.write_conf_d("sites", &vhosts(&list));
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    ClientCerts {
        port,
        ca,
        _server: server,
        _dir: dir,
    }
}

/// The CGI environment in a dump.sh answer body (`cwd\n`, then NUL-separated
/// `KEY=VALUE` entries, then NUL, then stdin).
fn cgi_env(body: &[u8]) -> BTreeMap<String, String> {
    let nl = body.iter().position(|&b| b == b'\n').expect("cwd line");
    let rest = &body[nl + 1..];
    let end = rest
        .windows(2)
        .position(|w| w == b"\0\0")
        .map_or(rest.len(), |p| p + 1);
    rest[..end]
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// A connection attempt that must fail before any HTTP: the handshake
/// fails, or the request gets no response bytes (TLS 1.3 clients finish
/// their side before the server has looked at their certificate).
fn refused(port: u16, sni: &str, cfg: Arc<ClientConfig>) -> Result<String, String> {
    let mut tls = match tls_connect(port, Some(sni), cfg) {
        Err(e) => return Ok(format!("handshake failed: {e}")),
        Ok(t) => t,
    };
    match request(&mut tls, sni, "/cgi") {
        Err(e) => Ok(format!("request failed: {e}")),
        Ok(b) if b.is_empty() => Ok("closed without a response".into()),
        Ok(b) => Err(format!(
            "the server answered: {:?}",
            String::from_utf8_lossy(&b)
        )),
    }
}

#[test]
fn client_cert_required_refuses_clients_without_a_certificate() {
    let s = client_cert_site();
    let cfg = rustls_client(&s.ca.pem(), None, &[b"http/1.1"]);
    let how = refused(s.port, "secure.test", cfg).unwrap_or_else(|e| panic!("no client cert: {e}"));
    eprintln!("no client certificate: {how}");
    // The server is unharmed: the right certificate still works.
    let (c, k) = s.ca.client_cert("alice");
    let cfg = rustls_client(&s.ca.pem(), Some((&c, &k)), &[b"http/1.1"]);
    let r = https_get(s.port, Some("secure.test"), "secure.test", "/", cfg);
    assert_eq!((r.status, r.text()), (200, "site secure\n".to_owned()));
}

#[test]
fn client_cert_required_refuses_certificates_of_another_ca() {
    let s = client_cert_site();
    // Another CA of the same name (the server finds the issuer by name, and
    // the signature fails) and one of another name (unknown issuer).
    for (what, other) in [
        ("same-name CA", Ca::new("Client test CA")),
        ("other CA", Ca::new("Somebody else's CA")),
    ] {
        let (c, k) = other.client_cert("mallory");
        for versions in [rustls::DEFAULT_VERSIONS, &[&rustls::version::TLS12]] {
            let cfg = client_for(&s.ca.pem(), Some((&c, &k)), versions);
            let how = refused(s.port, "secure.test", cfg)
                .unwrap_or_else(|e| panic!("{what}, {versions:?}: {e}"));
            eprintln!("client certificate of {what} ({versions:?}): {how}");
            // …also on the vhost where a certificate is optional: one that is
            // presented must verify.
            let cfg = client_for(&s.ca.pem(), Some((&c, &k)), versions);
            let how = refused(s.port, "open.test", cfg)
                .unwrap_or_else(|e| panic!("{what} on open.test, {versions:?}: {e}"));
            eprintln!("client certificate of {what}, optional vhost ({versions:?}): {how}");
        }
    }
}

/// [`rustls_client`] restricted to `versions`.
fn client_for(
    ca_pem: &str,
    client_cert: Option<(&str, &str)>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    let cfg = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// A client session store that files every session under one name, so
/// that a session made with one SNI is offered for another.
#[derive(Debug)]
struct OneName(Arc<rustls::client::ClientSessionMemoryCache>);

fn one_name() -> ServerName<'static> {
    ServerName::try_from("one-name.test").unwrap()
}

impl rustls::client::ClientSessionStore for OneName {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.0.set_kx_hint(one_name(), group);
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.0.kx_hint(&one_name())
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.0.set_tls12_session(one_name(), v);
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.0.tls12_session(&one_name())
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.0.remove_tls12_session(&one_name());
    }
    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.insert_tls13_ticket(one_name(), v);
    }
    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.0.take_tls13_ticket(&one_name())
    }
}

#[test]
fn a_session_of_an_optional_vhost_does_not_resume_into_client_cert_required() {
    let s = client_cert_site();
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let store = Arc::new(OneName(Arc::new(
            rustls::client::ClientSessionMemoryCache::new(32),
        )));
        let mut cfg = (*client_for(&s.ca.pem(), None, versions)).clone();
        cfg.resumption = rustls::client::Resumption::store(store);
        let cfg = Arc::new(cfg);
        // A session on open.test, without a client certificate…
        let r = https_get(s.port, Some("open.test"), "open.test", "/cgi", cfg.clone());
        assert_eq!(r.status, 200);
        // …proves it resumes there (so the store works)…
        let mut t = tls_connect(s.port, Some("open.test"), cfg.clone()).unwrap();
        let resumed_open = t.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let _ = request(&mut t, "open.test", "/");
        eprintln!("{versions:?}: open.test resumed its own session: {resumed_open}");
        // …and must not let the client into secure.test.
        let how = refused(s.port, "secure.test", cfg.clone())
            .unwrap_or_else(|e| panic!("{versions:?}: open.test's session let a client without certificate into secure.test: {e}"));
        eprintln!("{versions:?}: open.test session offered to secure.test: {how}");
    }
}

#[test]
fn a_resumed_session_keeps_the_client_certificate_subject() {
    let s = client_cert_site();
    let (c, k) = s.ca.client_cert("carol");
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let cfg = client_for(&s.ca.pem(), Some((&c, &k)), versions);
        let mut resumed = false;
        for i in 0..3 {
            let mut t = tls_connect(s.port, Some("secure.test"), cfg.clone())
                .unwrap_or_else(|e| panic!("{versions:?} #{i}: {e}"));
            resumed |= t.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            let kind = t.conn.handshake_kind();
            let bytes = request(&mut t, "secure.test", "/cgi").unwrap();
            let r = &parse_responses(&bytes)[0];
            assert_eq!(r.status, 200, "{versions:?} #{i} ({kind:?})");
            let env = cgi_env(&r.body);
            assert_eq!(
                env.get("SSL_CLIENT_S_DN").map(String::as_str),
                Some("CN=carol,O=Example"),
                "{versions:?} connection #{i} ({kind:?}): {env:?}"
            );
            assert_eq!(
                env.get("SSL_CLIENT_VERIFY").map(String::as_str),
                Some("SUCCESS"),
                "{versions:?} connection #{i} ({kind:?})"
            );
        }
        eprintln!("{versions:?}: some connection resumed: {resumed}");
    }
}

#[test]
fn the_right_client_certificate_reaches_cgi() {
    let s = client_cert_site();
    let (c, k) = s.ca.client_cert("alice");
    for alpn in [&b"http/1.1"[..], &b""[..]] {
        let protos: Vec<&[u8]> = if alpn.is_empty() { vec![] } else { vec![alpn] };
        let cfg = rustls_client(&s.ca.pem(), Some((&c, &k)), &protos);
        let r = https_get(s.port, Some("secure.test"), "secure.test", "/cgi", cfg);
        assert_eq!(r.status, 200, "{}", r.text());
        let env = cgi_env(&r.body);
        let dn = env.get("SSL_CLIENT_S_DN").map(String::as_str);
        assert!(
            dn.is_some_and(|d| d.contains("CN=alice")),
            "SSL_CLIENT_S_DN = {dn:?}; env: {env:?}"
        );
        assert_eq!(dn, Some("CN=alice,O=Example"), "RFC 4514 order");
        assert_eq!(
            env.get("SSL_CLIENT_VERIFY").map(String::as_str),
            Some("SUCCESS")
        );
        assert_eq!(env.get("HTTPS").map(String::as_str), Some("on"));
    }
    // Optional client certificate: without one, VERIFY=NONE and no DN.
    let cfg = rustls_client(&s.ca.pem(), None, &[]);
    let r = https_get(s.port, Some("open.test"), "open.test", "/cgi", cfg);
    assert_eq!(r.status, 200, "{}", r.text());
    let env = cgi_env(&r.body);
    assert_eq!(
        env.get("SSL_CLIENT_VERIFY").map(String::as_str),
        Some("NONE")
    );
    assert_eq!(env.get("SSL_CLIENT_S_DN"), None, "{env:?}");
    assert_eq!(env.get("HTTPS").map(String::as_str), Some("on"));
    // …and with one, SUCCESS and its DN.
    let (c, k) = s.ca.client_cert("bob");
    let cfg = rustls_client(&s.ca.pem(), Some((&c, &k)), &[]);
    let r = https_get(s.port, Some("open.test"), "open.test", "/cgi", cfg);
    let env = cgi_env(&r.body);
    assert_eq!(
        env.get("SSL_CLIENT_S_DN").map(String::as_str),
        Some("CN=bob,O=Example")
    );
    assert_eq!(
        env.get("SSL_CLIENT_VERIFY").map(String::as_str),
        Some("SUCCESS")
    );
}

#[test]
fn the_client_subject_is_escaped_as_rfc_4514_says() {
    let s = client_cert_site();
    for (cn, want) in [
        ("Doe, John", r"CN=Doe\, John,O=Example"),
        ("a+b;c<d>e\"f\\g", r#"CN=a\+b\;c\<d\>e\"f\\g,O=Example"#),
        ("#lead", r"CN=\#lead,O=Example"),
        (" pad ", r"CN=\ pad\ ,O=Example"),
        ("Jürgen Ünicode", "CN=Jürgen Ünicode,O=Example"),
    ] {
        let (c, k) = s.ca.client_cert(cn);
        let cfg = rustls_client(&s.ca.pem(), Some((&c, &k)), &[]);
        let r = https_get(s.port, Some("secure.test"), "secure.test", "/cgi", cfg);
        assert_eq!(r.status, 200, "{cn:?}");
        let env = cgi_env(&r.body);
        assert_eq!(
            env.get("SSL_CLIENT_S_DN").map(String::as_str),
            Some(want),
            "CN {cn:?}"
        );
    }
}

#[test]
fn cgi_over_plaintext_on_a_tls_port_gets_no_https_variables() {
    let dir = ConfigDir::new();
    let ca = Ca::new("Mixed CA");
    let ca_file = dir.write_file("tls/ca.pem", ca.pem());
    let dump = install_cgi(&dir, "cgi-bin/dump.sh", "dump.sh");
    let files = write_pair(&dir, "mix", &ca.server_cert(&["mix.test"]));
    let port = free_port();
    dir.write_conf_d(
        "sites",
        &format!(
            r#"{{ "vhosts": [{{ "name": "mix.test", "port": "{port}", {keys}
                "allow-non-tls": "1", "allow-http-on-https": "1", "host-ssl-ca": "{ca}",
                "mounts": [{{ "mountpoint": "/cgi", "origin": "cgi://{dump}" }}] }}] }}"#,
            keys = tls_keys(&files),
            ca = ca_file.display(),
            dump = dump.display()
        ),
    );
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    // Plaintext, even with headers that look like the TLS variables.
    let bytes = plain_exchange(
        port,
        "GET /cgi HTTP/1.1\r\nHost: mix.test\r\nHTTPS: on\r\nSSL_CLIENT_VERIFY: SUCCESS\r\n\
         SSL-Client-S-DN: CN=admin\r\nConnection: close\r\n\r\n",
    );
    let r = &parse_responses(&bytes)[0];
    assert_eq!(r.status, 200, "{}", r.text());
    let env = cgi_env(&r.body);
    for k in ["HTTPS", "SSL_CLIENT_S_DN", "SSL_CLIENT_VERIFY"] {
        assert_eq!(env.get(k), None, "plaintext CGI has {k}: {env:?}");
    }
    // TLS without and with a client certificate.
    let r = https_get(
        port,
        Some("mix.test"),
        "mix.test",
        "/cgi",
        rustls_client(&ca.pem(), None, &[]),
    );
    let env = cgi_env(&r.body);
    assert_eq!(env.get("HTTPS").map(String::as_str), Some("on"));
    assert_eq!(
        env.get("SSL_CLIENT_VERIFY").map(String::as_str),
        Some("NONE")
    );
    let (c, k) = ca.client_cert("dave");
    let cfg = rustls_client(&ca.pem(), Some((&c, &k)), &[]);
    let r = https_get(port, Some("mix.test"), "mix.test", "/cgi", cfg);
    let env = cgi_env(&r.body);
    assert_eq!(
        env.get("SSL_CLIENT_VERIFY").map(String::as_str),
        Some("SUCCESS")
    );
    assert_eq!(
        env.get("SSL_CLIENT_S_DN").map(String::as_str),
        Some("CN=dave,O=Example")
    );
}

#[test]
fn openssl_s_client_without_a_client_certificate_gets_no_http() {
    if !have_openssl() {
        return;
    }
    let s = client_cert_site();
    let dir = ConfigDir::new();
    let ca = dir.write_file("ca.pem", s.ca.pem());
    // Send a request after the handshake; no HTTP status may come back.
    let connect = format!("127.0.0.1:{}", s.port);
    let mut child = Command::new("timeout")
        .args(["30", "openssl", "s_client", "-connect", &connect])
        .args(["-servername", "secure.test", "-CAfile"])
        .arg(&ca)
        .args(["-quiet", "-no_ign_eof"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        !stdout.contains("HTTP/1.1"),
        "an HTTP response without a client certificate\n{}",
        out_text(&o)
    );
}

// ---------------------------------------------------------------------------
// 3 and 4. Plaintext on a TLS port; STS.

/// One server, four TLS listeners, each with one vhost:
/// - `redir`: `allow-non-tls` + `redirect-http`;
/// - `both`: `allow-non-tls` + `allow-http-on-https` + `sts`;
/// - `none`: no plaintext keys;
/// - `ant`: `allow-non-tls` alone.
struct Plain {
    redir: u16,
    both: u16,
    none: u16,
    ant: u16,
    /// `mixed-r.test` (first: `allow-non-tls` + `redirect-http`) and
    /// `mixed-s.test` (`allow-non-tls` + `allow-http-on-https`) and
    /// `mixed-n.test` (no plaintext keys) sharing one port.
    mixed: u16,
    _server: Lwsws,
    _dir: ConfigDir,
}

fn plaintext_site() -> Plain {
    let dir = ConfigDir::new();
    let ca = Ca::new("Plain test CA");
    let (redir, both, none, ant) = (free_port(), free_port(), free_port(), free_port());
    let mixed = free_port();
    let mut list = Vec::new();
    for (tag, port, extra) in [
        (
            "redir",
            redir,
            r#""allow-non-tls": "1", "redirect-http": "1","#,
        ),
        (
            "both",
            both,
            r#""allow-non-tls": "1", "allow-http-on-https": "1", "sts": "1","#,
        ),
        ("none", none, ""),
        ("ant", ant, r#""allow-non-tls": "1","#),
        (
            "mixed-r",
            mixed,
            r#""allow-non-tls": "1", "redirect-http": "1","#,
        ),
        (
            "mixed-s",
            mixed,
            r#""allow-non-tls": "1", "allow-http-on-https": "1","#,
        ),
        ("mixed-n", mixed, ""),
    ] {
        let name = format!("{tag}.test");
        let files = write_pair(&dir, tag, &ca.server_cert(&[&name]));
        dir.write_file(&format!("www-{tag}/x.txt"), format!("x of {tag}\n"));
        list.push(vhost(
            &name,
            port,
            &site(&dir, tag),
            &format!("{} {extra}", tls_keys(&files)),
        ));
    }
    dir.write_conf_d("sites", &vhosts(&list));
    let server = Lwsws::start(bin(), &dir, &[], &[redir, both, none, ant, mixed]);
    Plain {
        redir,
        both,
        none,
        ant,
        mixed,
        _server: server,
        _dir: dir,
    }
}

#[test]
fn plaintext_on_a_redirect_http_port_gets_301_to_https() {
    let p = plaintext_site();
    let host = format!("redir.test:{}", p.redir);
    for (host, target) in [
        (host.as_str(), "/x?y=1"),
        (host.as_str(), "/x.txt?y=1"),
        (host.as_str(), "/a%20b/c?q=%41&z"),
        ("redir.test", "/x?y=1"),
    ] {
        // No `Connection: close`: the server closes after the redirect.
        let bytes = plain_exchange(
            p.redir,
            &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        );
        let replies = parse_responses(&bytes);
        assert_eq!(replies.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
        let r = &replies[0];
        assert_eq!(r.status, 301, "{target}: {}", r.text());
        assert_eq!(
            r.header("location"),
            Some(format!("https://{host}{target}").as_str()),
            "{host} {target}"
        );
        // No plaintext content leaks out with the redirect.
        assert!(!r.text().contains("x of redir"), "{}", r.text());
    }
    // Over TLS the same vhost serves normally.
    let r = https_get(p.redir, Some("redir.test"), &host, "/x.txt?y=1", any_cert());
    assert_eq!((r.status, r.text()), (200, "x of redir\n".to_owned()));
}

#[test]
fn options_asterisk_on_a_redirect_http_port_gets_no_malformed_location() {
    let p = plaintext_site();
    let host = format!("redir.test:{}", p.redir);
    // `OPTIONS *` has no path: whatever the answer, a Location it carries
    // must be a URL (`https://host/…`), not `https://host*`.
    let bytes = plain_exchange(
        p.redir,
        &format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    let r = &parse_responses(&bytes)[0];
    if let Some(loc) = r.header("location") {
        assert!(
            loc.starts_with(&format!("https://{host}/")),
            "OPTIONS *: {} with Location {loc:?}",
            r.status
        );
    }
}

#[test]
fn plaintext_on_an_allow_http_on_https_port_is_served() {
    let p = plaintext_site();
    let host = format!("both.test:{}", p.both);
    let bytes = plain_exchange(
        p.both,
        &format!("GET /x.txt?y=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    let replies = parse_responses(&bytes);
    assert_eq!(replies.len(), 1, "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(
        (replies[0].status, replies[0].text()),
        (200, "x of both\n".to_owned())
    );
    // Keep-alive works on such a connection too: two requests, two answers.
    let bytes = plain_exchange(
        p.both,
        &format!(
            "GET /x.txt HTTP/1.1\r\nHost: {host}\r\n\r\nGET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ),
    );
    let replies = parse_responses(&bytes);
    assert_eq!(replies.len(), 2, "{:?}", String::from_utf8_lossy(&bytes));
    assert_eq!(replies[1].text(), "site both\n");
}

#[test]
fn plaintext_without_redirect_or_allow_http_is_closed_without_a_byte() {
    let p = plaintext_site();
    for (what, port) in [
        ("no plaintext keys", p.none),
        ("allow-non-tls alone", p.ant),
    ] {
        let mut s = tcp(port);
        s.write_all(b"GET /x.txt?y=1 HTTP/1.1\r\nHost: x.test\r\n\r\n")
            .unwrap();
        closed_silently(&mut s).unwrap_or_else(|e| panic!("{what}: {e}"));
        // TLS still works there.
        let name = if port == p.none {
            "none.test"
        } else {
            "ant.test"
        };
        let r = https_get(port, Some(name), name, "/", any_cert());
        assert_eq!(r.status, 200, "{what}: TLS");
    }
}

#[test]
fn plaintext_on_a_shared_port_follows_the_vhost_its_host_names() {
    let p = plaintext_site();
    let plain = |host: &str| {
        let bytes = plain_exchange(
            p.mixed,
            &format!("GET /x.txt?k=v HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        let mut r = parse_responses(&bytes);
        assert_eq!(r.len(), 1, "{host}: {:?}", String::from_utf8_lossy(&bytes));
        r.remove(0)
    };
    // The vhost with allow-http-on-https serves.
    let r = plain("mixed-s.test");
    assert_eq!((r.status, r.text()), (200, "x of mixed-s\n".to_owned()));
    // The others are sent to https.
    for host in ["mixed-r.test", "mixed-n.test", "unknown.test"] {
        let r = plain(host);
        assert_eq!(r.status, 301, "{host}: {}", r.text());
        assert_eq!(
            r.header("location"),
            Some(format!("https://{host}/x.txt?k=v").as_str()),
            "{host}"
        );
    }
    // TLS on that port works for each of them.
    for tag in ["mixed-r", "mixed-s", "mixed-n"] {
        let name = format!("{tag}.test");
        let r = https_get(p.mixed, Some(&name), &name, "/x.txt", any_cert());
        assert_eq!((r.status, r.text()), (200, format!("x of {tag}\n")));
    }
}

#[test]
fn sts_is_sent_on_tls_responses_only() {
    let p = plaintext_site();
    let host = format!("both.test:{}", p.both);
    // TLS: the header, on files and errors alike.
    for path in ["/", "/x.txt", "/missing"] {
        let r = https_get(p.both, Some("both.test"), &host, path, any_cert());
        assert_eq!(
            r.header("strict-transport-security"),
            Some(STS),
            "TLS {path}: {} {:?}",
            r.status,
            r.headers
        );
    }
    // Plaintext on the same vhost: never.
    for path in ["/", "/x.txt", "/missing"] {
        let bytes = plain_exchange(
            p.both,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        let r = &parse_responses(&bytes)[0];
        assert_ne!(r.status, 301, "plaintext {path} was redirected");
        assert_eq!(
            r.header("strict-transport-security"),
            None,
            "plaintext {path}: {:?}",
            r.headers
        );
    }
    // A TLS vhost without `sts`: never.
    let r = https_get(p.redir, Some("redir.test"), "redir.test", "/", any_cert());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);
}

// ---------------------------------------------------------------------------
// 5. TLS versions by ssl-option-set.

/// `v12.test` (NO_TLSv1_3) and `v13.test` (NO_TLSv1_2), on ports of their
/// own.
struct Versions {
    v12: u16,
    v13: u16,
    _server: Lwsws,
    _dir: ConfigDir,
}

fn versions_site() -> Versions {
    let dir = ConfigDir::new();
    let ca = Ca::new("Versions test CA");
    let (v12, v13) = (free_port(), free_port());
    let mut list = Vec::new();
    for (tag, port, opt) in [("v12", v12, NO_TLS13), ("v13", v13, NO_TLS12)] {
        let name = format!("{tag}.test");
        let files = write_pair(&dir, tag, &ca.server_cert(&[&name]));
        list.push(vhost(
            &name,
            port,
            &site(&dir, tag),
            &format!(r#"{} "ssl-option-set": "{opt}","#, tls_keys(&files)),
        ));
    }
    dir.write_conf_d("sites", &vhosts(&list));
    let server = Lwsws::start(bin(), &dir, &[], &[v12, v13]);
    Versions {
        v12,
        v13,
        _server: server,
        _dir: dir,
    }
}

#[test]
fn ssl_option_set_limits_the_tls_version_openssl() {
    if !have_openssl() {
        return;
    }
    let v = versions_site();
    for (what, port, name, ok, bad, proto) in [
        (
            "TLS 1.2-only",
            v.v12,
            "v12.test",
            "-tls1_2",
            "-tls1_3",
            "TLSv1.2",
        ),
        (
            "TLS 1.3-only",
            v.v13,
            "v13.test",
            "-tls1_3",
            "-tls1_2",
            "TLSv1.3",
        ),
    ] {
        let o = s_client(port, Some(name), &[ok]);
        assert!(o.status.success(), "{what} {ok}: {}", out_text(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!("New, {proto}"))
                || text.contains(&format!("Protocol  : {proto}")),
            "{what} {ok}: not {proto}\n{}",
            out_text(&o)
        );
        let o = s_client(port, Some(name), &[bad]);
        assert!(
            !o.status.success(),
            "{what} {bad} succeeded: {}",
            out_text(&o)
        );
        // Without a version option, the allowed one is negotiated.
        let o = s_client(port, Some(name), &[]);
        assert!(o.status.success(), "{what}: {}", out_text(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!("New, {proto}")),
            "{what}: default client did not get {proto}\n{}",
            out_text(&o)
        );
    }
}

#[test]
fn ssl_option_set_limits_the_tls_version_rustls() {
    let v = versions_site();
    let tls12 = || any_cert_client(&[&rustls::version::TLS12]);
    let tls13 = || any_cert_client(&[&rustls::version::TLS13]);
    for (what, port, name, ok, bad, want) in [
        (
            "TLS 1.2-only",
            v.v12,
            "v12.test",
            tls12(),
            tls13(),
            rustls::ProtocolVersion::TLSv1_2,
        ),
        (
            "TLS 1.3-only",
            v.v13,
            "v13.test",
            tls13(),
            tls12(),
            rustls::ProtocolVersion::TLSv1_3,
        ),
    ] {
        let mut t = tls_connect(port, Some(name), ok).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(t.conn.protocol_version(), Some(want), "{what}");
        let bytes = request(&mut t, name, "/").unwrap();
        assert_eq!(parse_responses(&bytes)[0].status, 200, "{what}");
        assert!(
            tls_connect(port, Some(name), bad).is_err(),
            "{what}: the disallowed version was accepted"
        );
        let t = tls_connect(port, Some(name), any_cert()).unwrap();
        assert_eq!(t.conn.protocol_version(), Some(want), "{what}: default");
    }
}

#[test]
fn ciphers_and_ecdh_curve_restrict_the_vhost_they_are_set_on() {
    if !have_openssl() {
        return;
    }
    let dir = ConfigDir::new();
    let ca = Ca::new("Cipher CA");
    let port = free_port();
    let mut list = Vec::new();
    for (tag, extra) in [
        ("plain", ""),
        (
            "strict",
            r#""ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256", "ecdh-curve": "secp384r1","#,
        ),
    ] {
        let name = format!("{tag}.test");
        let files = write_pair(&dir, tag, &ca.server_cert(&[&name]));
        list.push(vhost(
            &name,
            port,
            &site(&dir, tag),
            &format!("{} {extra}", tls_keys(&files)),
        ));
    }
    dir.write_conf_d("sites", &vhosts(&list));
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    let ok = |sni: &str, args: &[&str]| s_client(port, Some(sni), args);
    // TLS 1.2 suites.
    let aes256 = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"];
    let aes128 = ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"];
    let o = ok("strict.test", &aes256);
    assert!(
        !o.status.success(),
        "strict.test took AES256: {}",
        out_text(&o)
    );
    let o = ok("strict.test", &aes128);
    assert!(o.status.success(), "strict.test AES128: {}", out_text(&o));
    let o = ok("plain.test", &aes256);
    assert!(o.status.success(), "plain.test AES256: {}", out_text(&o));
    // Key-exchange groups.
    let x25519 = ["-tls1_3", "-groups", "X25519"];
    let o = ok("strict.test", &x25519);
    assert!(
        !o.status.success(),
        "strict.test took X25519: {}",
        out_text(&o)
    );
    let o = ok("strict.test", &["-tls1_3", "-groups", "P-384"]);
    assert!(o.status.success(), "strict.test P-384: {}", out_text(&o));
    let o = ok("plain.test", &x25519);
    assert!(o.status.success(), "plain.test X25519: {}", out_text(&o));
}

// ---------------------------------------------------------------------------
// 6. Bad input.

/// One TLS vhost `bad.test` with `timeout-secs` 2.
struct Short {
    port: u16,
    _server: Lwsws,
    _dir: ConfigDir,
}

fn short_timeout_site() -> Short {
    let dir = ConfigDir::new();
    let ca = Ca::new("Bad input CA");
    let port = free_port();
    dir.write_conf(&format!(
        r#"{{ "global": {{ "timeout-secs": "{}" }} }}"#,
        HANDSHAKE_TIMEOUT.as_secs()
    ));
    let files = write_pair(&dir, "bad", &ca.server_cert(&["bad.test"]));
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost(
            "bad.test",
            port,
            &site(&dir, "bad"),
            &tls_keys(&files),
        )]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    Short {
        port,
        _server: server,
        _dir: dir,
    }
}

fn still_serves(port: u16) {
    let r = https_get(port, Some("bad.test"), "bad.test", "/", any_cert());
    assert_eq!((r.status, r.text()), (200, "site bad\n".to_owned()));
}

/// A few bytes that are not random from run to run, but have no structure.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A real ClientHello, as rustls would send it.
fn client_hello() -> Vec<u8> {
    let mut conn = ClientConnection::new(any_cert(), server_name(Some("bad.test"))).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out[0], 0x16);
    out
}

#[test]
fn garbage_instead_of_a_client_hello_is_closed_and_others_are_served() {
    let s = short_timeout_site();
    let mut inputs: Vec<(&str, Vec<u8>)> = Vec::new();
    // A handshake record header announcing an impossible length.
    let mut big = vec![0x16, 0x03, 0x01, 0xff, 0xff];
    big.extend(noise(200, 1));
    inputs.push(("0x16 + oversized record", big));
    // A complete handshake record whose content is noise.
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    rec.extend(noise(0x40, 2));
    inputs.push(("0x16 + record of noise", rec));
    // A ClientHello of a few bytes of nonsense.
    let mut bad_hello = vec![0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04];
    bad_hello.extend(b"garb");
    inputs.push(("0x16 + malformed ClientHello", bad_hello));
    // 0x16 and a burst of noise.
    let mut burst = vec![0x16];
    burst.extend(noise(4096, 3));
    inputs.push(("0x16 + 4 KiB of noise", burst));
    // Not a handshake record, on a port without allow-non-tls.
    inputs.push((
        "a non-0x16 byte",
        noise(64, 4).into_iter().map(|b| b & 0x7f | 0x01).collect(),
    ));
    inputs.push((
        "an HTTP request",
        b"GET / HTTP/1.1\r\nHost: bad.test\r\n\r\n".to_vec(),
    ));

    for (what, bytes) in &inputs {
        let start = Instant::now();
        let mut sock = tcp(s.port);
        // The server may close (and reset) before it has read everything.
        let _ = sock.write_all(bytes);
        let got = raw_until_closed(&mut sock);
        let took = start.elapsed();
        assert!(took < CLOSE_BOUND, "{what}: closed only after {took:?}");
        assert!(
            !got.starts_with(b"HTTP/"),
            "{what}: got an HTTP answer {:?}",
            String::from_utf8_lossy(&got)
        );
        // At most a TLS alert record.
        assert!(
            got.is_empty() || (got[0] == 0x15 && got.len() <= 7 * 4),
            "{what}: unexpected answer {got:?}"
        );
        if bytes[0] != 0x16 {
            assert!(got.is_empty(), "{what}: {got:?}");
        }
        still_serves(s.port);
    }
}

#[test]
fn stalled_handshakes_are_closed_after_timeout_secs() {
    let s = short_timeout_site();
    let hello = client_hello();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nothing sent", Vec::new()),
        ("the first byte only", vec![0x16]),
        ("half a ClientHello", hello[..hello.len() / 2].to_vec()),
        // The server answers (ServerHello…), then waits for the client's
        // Finished: the deadline covers the whole handshake.
        ("a whole ClientHello, then nothing", hello.clone()),
    ];
    // All at once: a stalled client holds no one else up.
    let stalled: Vec<(&str, TcpStream, Instant)> = cases
        .iter()
        .map(|(what, bytes)| {
            let mut sock = tcp(s.port);
            sock.write_all(bytes).unwrap();
            (*what, sock, Instant::now())
        })
        .collect();
    still_serves(s.port);
    let handles: Vec<_> = stalled
        .into_iter()
        .map(|(what, mut sock, start)| {
            std::thread::spawn(move || {
                let got = raw_until_closed(&mut sock);
                (what, start.elapsed(), got)
            })
        })
        .collect();
    for h in handles {
        let (what, took, got) = h.join().unwrap();
        assert!(
            took >= NOT_BEFORE,
            "{what}: closed after {took:?}, before timeout-secs ({HANDSHAKE_TIMEOUT:?})"
        );
        assert!(
            took < CLOSE_BOUND,
            "{what}: closed only after {took:?} (timeout-secs {HANDSHAKE_TIMEOUT:?})"
        );
        assert!(!got.starts_with(b"HTTP/"), "{what}: {got:?}");
    }
    still_serves(s.port);
}

#[test]
fn a_slow_but_complete_handshake_within_timeout_secs_succeeds() {
    // The handshake deadline bounds the whole handshake, not each read: a
    // client that trickles its ClientHello but finishes in time is served.
    let s = short_timeout_site();
    let mut conn = ClientConnection::new(any_cert(), server_name(Some("bad.test"))).unwrap();
    let mut first = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut first).unwrap();
    }
    let mut sock = tcp(s.port);
    let (a, b) = first.split_at(first.len() / 2);
    sock.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sock.write_all(b).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    let bytes = request(&mut tls, "bad.test", "/").unwrap();
    assert_eq!(parse_responses(&bytes)[0].status, 200);
}

/// A config dir with one TLS vhost using `cert` and `key` (file contents).
fn check_dir(cert: &[u8], key: &[u8]) -> (ConfigDir, PathBuf, PathBuf) {
    let dir = ConfigDir::new();
    let c = dir.write_file("tls/server.crt", cert);
    let k = dir.write_file("tls/server.key", key);
    let port = free_port();
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost(
            "check.test",
            port,
            &site(&dir, "check"),
            &tls_keys(&(c.clone(), k.clone())),
        )]),
    );
    (dir, c, k)
}

/// `lwsws --check -c DIR`: asserts exit 1 and returns stderr.
fn check_fails(dir: &ConfigDir) -> String {
    let o = common::check(dir);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "--check: {err}");
    err
}

/// The `lwsws: file:line:col: "key": …` line of `err` that names `key`.
fn error_line<'a>(err: &'a str, key: &str) -> &'a str {
    err.lines()
        .find(|l| l.contains(&format!("\"{key}\"")))
        .unwrap_or_else(|| panic!("no error naming \"{key}\" in:\n{err}"))
}

#[test]
fn a_certificate_that_is_not_pem_is_a_check_error_naming_file_and_key() {
    let ca = Ca::new("Check CA");
    let (cert, key) = ca.server_cert(&["check.test"]);
    // A DER certificate (the usual mistake) and a text file.
    for (what, bytes) in [
        ("DER", der(&cert)),
        ("text", b"this is not a certificate\n".to_vec()),
        ("empty", Vec::new()),
    ] {
        let (dir, c, _) = check_dir(&bytes, key.as_bytes());
        let err = check_fails(&dir);
        let line = error_line(&err, "host-ssl-cert");
        assert!(line.starts_with("lwsws: "), "{what}: {line}");
        assert!(
            line.contains(&c.display().to_string()),
            "{what}: the file is not named: {line}"
        );
        assert!(
            line.contains(&format!("{}/conf.d/sites:", dir.path().display())),
            "{what}: no conf file:line: {line}"
        );
        assert!(
            line.to_ascii_lowercase().contains("pem") || line.contains("certificate"),
            "{what}: unclear: {line}"
        );
    }
    // A key that is not PEM either.
    let (dir, _, k) = check_dir(cert.as_bytes(), b"not a key\n");
    let err = check_fails(&dir);
    let line = error_line(&err, "host-ssl-key");
    assert!(line.contains(&k.display().to_string()), "{line}");
}

#[test]
fn a_broken_certificate_refuses_startup() {
    let ca = Ca::new("Check CA");
    let (cert, key) = ca.server_cert(&["check.test"]);
    let (dir, c, _) = check_dir(&der(&cert), key.as_bytes());
    let o = run(bin(), &["-c", dir.path().to_str().unwrap()]);
    let err = common::stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "started with a DER certificate: {err}"
    );
    let line = error_line(&err, "host-ssl-cert");
    assert!(line.contains(&c.display().to_string()), "{line}");
}

#[test]
fn an_encrypted_key_is_a_check_error_saying_so() {
    if !have_openssl() {
        return;
    }
    let ca = Ca::new("Check CA");
    let (cert, key) = ca.server_cert(&["check.test"]);
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.key");
    let enc = tmp.path().join("enc.key");
    std::fs::write(&plain, &key).unwrap();
    let o = Command::new("openssl")
        .args(["pkey", "-aes256", "-passout", "pass:x", "-in"])
        .arg(&plain)
        .arg("-out")
        .arg(&enc)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let enc_pem = std::fs::read(&enc).unwrap();
    assert!(String::from_utf8_lossy(&enc_pem).contains("ENCRYPTED"));
    // Also a traditional (PKCS#1-style, Proc-Type: 4,ENCRYPTED) RSA key.
    let rsa_plain = tmp.path().join("rsa.key");
    let rsa_enc = tmp.path().join("rsa-enc.key");
    let o = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&rsa_plain)
        .arg("2048")
        .output()
        .unwrap();
    let mut keys = vec![("PKCS#8 encrypted", enc_pem)];
    if o.status.success() {
        let o = Command::new("openssl")
            .args([
                "rsa",
                "-traditional",
                "-aes256",
                "-passout",
                "pass:x",
                "-in",
            ])
            .arg(&rsa_plain)
            .arg("-out")
            .arg(&rsa_enc)
            .output()
            .unwrap();
        if o.status.success() {
            keys.push((
                "traditional encrypted RSA",
                std::fs::read(&rsa_enc).unwrap(),
            ));
        }
    }
    for (what, k) in keys {
        let (dir, _, kpath) = check_dir(cert.as_bytes(), &k);
        let err = check_fails(&dir);
        let line = error_line(&err, "host-ssl-key");
        assert!(
            line.to_ascii_lowercase().contains("encrypted"),
            "{what}: does not say encrypted: {line}"
        );
        assert!(
            line.contains(&kpath.display().to_string()),
            "{what}: the key file is not named: {line}"
        );
    }
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_a_check_error() {
    let ca = Ca::new("Check CA");
    let (cert, _) = ca.server_cert(&["check.test"]);
    let (_, other_key) = ca.server_cert(&["check.test"]);
    let (dir, c, k) = check_dir(cert.as_bytes(), other_key.as_bytes());
    let err = check_fails(&dir);
    let line = err
        .lines()
        .find(|l| l.contains("\"host-ssl-key\"") || l.contains("\"host-ssl-cert\""))
        .unwrap_or_else(|| panic!("no error naming the TLS keys:\n{err}"));
    assert!(
        line.contains("does not belong") || line.contains("match"),
        "unclear mismatch error: {line}"
    );
    assert!(
        line.contains(&k.display().to_string()) || line.contains(&c.display().to_string()),
        "the files are not named: {line}"
    );
    // The matching pair passes.
    let (cert, key) = ca.server_cert(&["check.test"]);
    let (dir, _, _) = check_dir(cert.as_bytes(), key.as_bytes());
    let o = common::check(&dir);
    assert!(o.status.success(), "{}", common::stderr(&o));
}

#[test]
fn an_unknown_cipher_name_is_a_check_error() {
    let ca = Ca::new("Check CA");
    let (cert, key) = ca.server_cert(&["check.test"]);
    for (k, v) in [
        ("ciphers", "NO-SUCH-CIPHER"),
        ("tls13-ciphers", "TLS_NO_SUCH_SUITE"),
    ] {
        let dir = ConfigDir::new();
        let files = write_pair(&dir, "s", &(cert.clone(), key.clone()));
        dir.write_conf_d(
            "sites",
            &vhosts(&[vhost(
                "check.test",
                free_port(),
                &site(&dir, "check"),
                &format!(r#"{} "{k}": "{v}","#, tls_keys(&files)),
            )]),
        );
        let err = check_fails(&dir);
        let line = error_line(&err, k);
        assert!(line.contains(v), "{k}: the bad name is not shown: {line}");
    }
}

/// `openssl ARGS…`; panics with its output if it fails.
fn openssl(args: &[&str]) {
    let o = Command::new("openssl").args(args).output().unwrap();
    assert!(o.status.success(), "openssl {args:?}: {}", out_text(&o));
}

#[test]
fn rsa_ecdsa_and_ed25519_keys_in_pkcs8_pkcs1_and_sec1_are_served() {
    if !have_openssl() {
        return;
    }
    let dir = ConfigDir::new();
    let tls_dir = dir.mkdir("tls");
    let p = |f: &str| tls_dir.join(f).display().to_string();
    // (tag, how to make the key, the PEM label the key file must have)
    let kinds: [(&str, &[&str], &str); 5] = [
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "-out", "KEY", "2048"],
            "BEGIN RSA PRIVATE KEY",
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "KEY",
            ],
            "BEGIN PRIVATE KEY",
        ),
        (
            "ec-sec1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "KEY",
            ],
            "BEGIN EC PRIVATE KEY",
        ),
        (
            "ec384-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "KEY",
            ],
            "BEGIN PRIVATE KEY",
        ),
        (
            "ed25519",
            &["genpkey", "-algorithm", "ed25519", "-out", "KEY"],
            "BEGIN PRIVATE KEY",
        ),
    ];
    let port = free_port();
    let mut list = Vec::new();
    let mut certs = Vec::new();
    for (tag, gen_args, label) in kinds {
        let key = p(&format!("{tag}.key"));
        let crt = p(&format!("{tag}.crt"));
        let args: Vec<&str> = gen_args
            .iter()
            .map(|a| if *a == "KEY" { key.as_str() } else { a })
            .collect();
        openssl(&args);
        assert!(
            std::fs::read_to_string(&key).unwrap().contains(label),
            "{tag}: not {label}"
        );
        let name = format!("{tag}.test");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
            "-days",
            "30",
            "-out",
            &crt,
        ]);
        let files = (PathBuf::from(&crt), PathBuf::from(&key));
        list.push(vhost(&name, port, &site(&dir, tag), &tls_keys(&files)));
        certs.push((tag, name, std::fs::read_to_string(&crt).unwrap()));
    }
    dir.write_conf_d("sites", &vhosts(&list));
    let o = common::check(&dir);
    assert!(o.status.success(), "--check: {}", common::stderr(&o));
    let _server = Lwsws::start(bin(), &dir, &[], &[port]);
    for (tag, name, pem) in &certs {
        for (v, versions) in [
            ("TLS 1.3", &[&rustls::version::TLS13][..]),
            ("TLS 1.2", &[&rustls::version::TLS12][..]),
        ] {
            let mut t = tls_connect(port, Some(name), any_cert_client(versions))
                .unwrap_or_else(|e| panic!("{tag} over {v}: {e}"));
            assert_eq!(
                t.conn.peer_certificates().unwrap()[0].to_vec(),
                der(pem),
                "{tag} over {v}"
            );
            let bytes = request(&mut t, name, "/").unwrap();
            let r = &parse_responses(&bytes)[0];
            assert_eq!(
                (r.status, r.text()),
                (200, format!("site {tag}\n")),
                "{tag} over {v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 7. Reload re-reads certificates.

#[test]
fn a_reload_serves_the_renewed_certificate() {
    let dir = ConfigDir::new();
    let ca = Ca::new("Reload CA");
    let port = free_port();
    let a = ca.server_cert(&["a.test"]);
    let files = write_pair(&dir, "a", &a);
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost("a.test", port, &site(&dir, "a"), &tls_keys(&files))]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    assert!(
        server.wait_for_log("worker ready generation=1", SETTLE),
        "{}",
        server.log()
    );
    assert_eq!(served_cert(port, Some("a.test")), der(&a.0));

    // Renewed: another key, and another CN so that it is told apart even
    // by name.
    let b = ca.server_cert(&["renewed.a.test", "a.test"]);
    assert_ne!(der(&a.0), der(&b.0));
    std::fs::write(&files.0, &b.0).unwrap();
    std::fs::write(&files.1, &b.1).unwrap();
    // Nothing changes before the reload.
    assert_eq!(served_cert(port, Some("a.test")), der(&a.0));

    server.signal(Signal::SIGHUP);
    assert!(
        server.wait_for_log("worker ready generation=2", SETTLE),
        "no generation 2\n{}",
        server.log()
    );
    // The old generation may still take a connection or two while it
    // hands over; soon every new connection gets the renewed certificate.
    assert!(
        wait_until(SETTLE, || served_cert(port, Some("a.test")) == der(&b.0)),
        "the renewed certificate is never served\n{}",
        server.log()
    );
    for _ in 0..10 {
        let got = served_cert(port, Some("a.test"));
        assert_eq!(names(&got).0, "renewed.a.test");
        assert_eq!(got, der(&b.0));
    }
    let r = https_get(
        port,
        Some("a.test"),
        "a.test",
        "/",
        rustls_client(&ca.pem(), None, &[]),
    );
    assert_eq!((r.status, r.text()), (200, "site a\n".to_owned()));

    // A broken renewal is refused, and the working certificate stays.
    std::fs::write(&files.0, "not a certificate\n").unwrap();
    server.signal(Signal::SIGHUP);
    assert!(
        server.wait_for_log("reload refused", SETTLE),
        "a broken certificate was not refused\n{}",
        server.log()
    );
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("host-ssl-cert") && l.contains(&files.0.display().to_string())),
        "the refusal does not name the certificate file\n{log}"
    );
    assert!(!log.contains("worker ready generation=3"), "{log}");
    assert_eq!(served_cert(port, Some("a.test")), der(&b.0));
}

#[test]
fn a_reload_re_reads_the_client_ca_bundle() {
    let dir = ConfigDir::new();
    let server_ca = Ca::new("Server CA");
    let (old_ca, new_ca) = (Ca::new("Old client CA"), Ca::new("New client CA"));
    let ca_file = dir.write_file("tls/client-ca.pem", old_ca.pem());
    let files = write_pair(&dir, "s", &server_ca.server_cert(&["s.test"]));
    let port = free_port();
    dir.write_conf_d(
        "sites",
        &vhosts(&[vhost(
            "s.test",
            port,
            &site(&dir, "s"),
            &format!(
                r#"{} "client-cert-required": "1", "host-ssl-ca": "{}","#,
                tls_keys(&files),
                ca_file.display()
            ),
        )]),
    );
    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    let old_client = old_ca.client_cert("old");
    let new_client = new_ca.client_cert("new");
    let with =
        |pair: &(String, String)| rustls_client(&server_ca.pem(), Some((&pair.0, &pair.1)), &[]);
    let r = https_get(port, Some("s.test"), "s.test", "/", with(&old_client));
    assert_eq!(r.status, 200);
    refused(port, "s.test", with(&new_client)).unwrap_or_else(|e| panic!("new CA before: {e}"));

    std::fs::write(&ca_file, new_ca.pem()).unwrap();
    server.signal(Signal::SIGHUP);
    assert!(
        server.wait_for_log("worker ready generation=2", SETTLE),
        "no generation 2\n{}",
        server.log()
    );
    assert!(
        wait_until(SETTLE, || refused(port, "s.test", with(&old_client))
            .is_ok()),
        "the old client CA is still trusted after the reload\n{}",
        server.log()
    );
    let r = https_get(port, Some("s.test"), "s.test", "/", with(&new_client));
    assert_eq!((r.status, r.text()), (200, "site s\n".to_owned()));
}
