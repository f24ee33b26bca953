//! ACME (SPEC §5.1, issue 14) against the real binary and a real ACME CA:
//! pebble, with pebble-challtestsrv as its DNS (every name is 127.0.0.1),
//! both on loopback ports picked at run time (`common/pebble.rs`).
//!
//! - HTTP-01: from an empty `acme-dir` the vhost first serves a temporary
//!   self-signed certificate, then the one pebble issued after fetching the
//!   challenge from lwsws's plain listener; the account and key files are
//!   0600 in 0700 directories; `lws-server-status` shows `valid`.
//! - TLS-ALPN-01: the same, validated over the TLS port itself.
//! - Renewal: with 30-second certificates the renewal (due after 2/3 of
//!   the lifetime) switches the served certificate while a load loop of new
//!   HTTPS connections sees no failure.
//! - HTTP-01 answered on a TLS port that lets plain HTTP in
//!   (`allow-non-tls` + `redirect-http`), with no plain vhost.
//! - The CA down at start: lwsws serves the temporary certificate, logs
//!   each failed attempt once with its retry, and gets a certificate once
//!   the CA is up. With a certificate in `acme-dir`, a restart while the CA
//!   is down serves it at once; its renewal then fails and it stays.
//! - The workers (user nobody) cannot read the account key; the ACME
//!   process keeps the supervisor's user.
//! - `--check`: `acme` together with `host-ssl-cert`, a directory that is
//!   not a URL.
//!
//! pebble and pebble-challtestsrv must be installed (Debian package
//! `pebble`); without them these tests fail. The privilege test needs root
//! and skips with a visible message without it, like the tests in
//! `process_privileges.rs`.
//!
//! The implementation: `crates/lwsws-acme` (orders, files, retries),
//! `crates/lwsws/src/acme.rs` (the process), `crates/lwsws-supervisor/src/acme.rs`
//! (starting it, reload on issuance), `crates/lwsws-server/src/acme.rs`
//! (challenge answers in the workers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/pebble.rs"]
mod pebble;
#[path = "common/tls.rs"]
mod tls;

use common::{Reply, bin, check, live_children, stderr, wait_until};
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use nix::unistd::{Group, User};
use pebble::{Pebble, https_get};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The ACME vhost's name (pebble's DNS resolves it to 127.0.0.1).
const NAME: &str = "acme.test";

/// What `www/index.html` holds.
const INDEX: &str = "hello from the acme vhost\n";

/// How long a first certificate may take to be issued and served: a
/// liveness bound (issuance on loopback takes a second or two).
const ISSUE_DEADLINE: Duration = Duration::from_secs(30);

/// How long the renewal of a 30-second certificate may take to be served
/// after the first one: due after 20 s, so a liveness bound.
const RENEW_DEADLINE: Duration = Duration::from_secs(60);

/// How long a log line may take to appear: a liveness bound.
const LOG_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// TLS clients and certificates.

/// Accepts any server certificate (signatures are still checked), so that a
/// test can look at the temporary self-signed one.
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

/// A client that accepts any certificate (`curl -k`).
fn any_cert() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A client that trusts only `root_pem` (`curl --cacert ROOT`).
fn trusting(root_pem: &str) -> Arc<ClientConfig> {
    tls::rustls_client(root_pem, None, &[b"http/1.1"])
}

/// GET `path` on the ACME vhost (SNI and Host `acme.test`) over a new
/// connection: the response and the chain the server presented.
fn get(
    port: u16,
    path: &str,
    cfg: Arc<ClientConfig>,
) -> io::Result<(Reply, Vec<CertificateDer<'static>>)> {
    https_get(port, Some(NAME), NAME, path, cfg)
}

/// What the tests look at in a certificate.
#[derive(Debug)]
struct CertInfo {
    subject: Vec<u8>,
    subject_text: String,
    issuer: Vec<u8>,
    issuer_text: String,
    serial: String,
    dns_names: Vec<String>,
    not_before: i64,
    not_after: i64,
}

fn info(der: &[u8]) -> CertInfo {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    let dns_names = c
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
    CertInfo {
        subject: c.subject().as_raw().to_vec(),
        subject_text: c.subject().to_string(),
        issuer: c.issuer().as_raw().to_vec(),
        issuer_text: c.issuer().to_string(),
        serial: c.raw_serial_as_string(),
        dns_names,
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
    }
}

/// The DER of the first certificate in `pem`.
fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap_or_else(|e| panic!("no certificate in {pem:?}: {e}"))
        .to_vec()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// The site.

/// The configuration directory of one test and its ports.
struct Site {
    dir: ConfigDir,
    tls_port: u16,
    plain_port: Option<u16>,
    acme_dir: PathBuf,
    /// More keys for the ACME vhost (`, "key": "value"`).
    vhost_extra: String,
}

impl Site {
    /// Picks the ports: the TLS one and, for HTTP-01, a plain one.
    fn new(plain: bool) -> Site {
        let dir = ConfigDir::new();
        let acme_dir = dir.path().join("acmedir");
        Site {
            tls_port: free_port(),
            plain_port: plain.then(free_port),
            acme_dir,
            dir,
            vhost_extra: String::new(),
        }
    }

    /// No plain vhost: the ACME vhost's TLS listener lets plain HTTP in
    /// (`allow-non-tls`) and redirects it to https (`redirect-http`), and
    /// pebble validates HTTP-01 on that same port.
    fn plain_on_tls() -> Site {
        Site {
            vhost_extra: r#", "allow-non-tls": "1", "redirect-http": "1""#.to_owned(),
            ..Site::new(false)
        }
    }

    /// pebble validating on this site's ports, issuing `validity_secs`
    /// certificates. With no plain listener, HTTP-01 would go to a port
    /// where nothing listens.
    fn pebble(&self, validity_secs: u64) -> Pebble {
        let http = match self.plain_port {
            Some(port) => port,
            None if !self.vhost_extra.is_empty() => self.tls_port,
            None => free_port(),
        };
        Pebble::new(http, self.tls_port, validity_secs)
    }

    /// Writes `conf` (with `global_extra` inserted into `global`) and
    /// `conf.d/site`: the ACME vhost (with a status mount) and, if the site
    /// has a plain port, a plain vhost of the same name.
    fn write(&self, pebble: &Pebble, challenge: &str, global_extra: &str) {
        let www = self.dir.mkdir("www");
        self.dir.write_file("www/index.html", INDEX);
        self.dir.write_conf(&format!(
            r#"{{ "global": {{ "acme-dir": "{}" {global_extra} }} }}"#,
            self.acme_dir.display()
        ));
        let mounts = format!(
            r#"{{ "mountpoint": "/", "origin": "file://{}", "default": "index.html" }}"#,
            www.display()
        );
        let mut vhosts = vec![format!(
            r#"{{ "name": "{NAME}", "port": "{}" {},
                "acme": {{ "directory": "{}", "email": "admin@acme.test",
                           "challenge": "{challenge}", "directory-ca": "{}" }},
                "ws-protocols": [{{ "lws-server-status": {{}} }}],
                "mounts": [{mounts},
                           {{ "mountpoint": "/status", "origin": "callback://lws-server-status" }}] }}"#,
            self.tls_port,
            self.vhost_extra,
            pebble.directory(),
            pebble.ca_path().display()
        )];
        if let Some(plain) = self.plain_port {
            vhosts.push(format!(
                r#"{{ "name": "{NAME}", "port": "{plain}", "mounts": [{mounts}] }}"#
            ));
        }
        self.dir.write_conf_d(
            "site",
            &format!("{{ \"vhosts\": [\n{}\n] }}\n", vhosts.join(",\n")),
        );
    }

    fn ports(&self) -> Vec<u16> {
        std::iter::once(self.tls_port)
            .chain(self.plain_port)
            .collect()
    }

    fn start(&self) -> Lwsws {
        Lwsws::start(bin(), &self.dir, &[], &self.ports())
    }

    /// `acme-dir/acme.test`.
    fn vhost_dir(&self) -> PathBuf {
        self.acme_dir.join(NAME)
    }
}

/// Both logs, for failure messages.
fn logs(server: &Lwsws, pebble: &Pebble) -> String {
    format!(
        "\n--- lwsws log ---\n{}\n--- pebble log ---\n{}",
        server.log(),
        pebble.log()
    )
}

/// Waits until the vhost answers `GET /` over a connection that trusts only
/// `root_pem`, and returns the chain it presented then.
fn wait_for_issued(
    site: &Site,
    server: &Lwsws,
    pebble: &Pebble,
    root_pem: &str,
    deadline: Duration,
) -> Vec<CertificateDer<'static>> {
    let cfg = trusting(root_pem);
    let mut last = String::new();
    let mut chain = Vec::new();
    let ok = wait_until(deadline, || match get(site.tls_port, "/", cfg.clone()) {
        Ok((reply, c)) => {
            assert_eq!(reply.status, 200, "GET / over verified TLS");
            assert_eq!(reply.text(), INDEX);
            chain = c;
            true
        }
        Err(e) => {
            last = e.to_string();
            std::thread::sleep(Duration::from_millis(200));
            false
        }
    });
    assert!(
        ok,
        "no certificate chaining to pebble's root served within {deadline:?} (last error: {last}){}",
        logs(server, pebble)
    );
    chain
}

/// The operator's check, as the issue words it: `curl --cacert ROOT` over
/// HTTPS gets the page.
fn assert_curl_verifies(site: &Site, root_pem: &str) {
    let root_path = site.dir.write_file("pebble-root.pem", root_pem);
    let url = format!("https://{NAME}:{}/", site.tls_port);
    let resolve = format!("{NAME}:{}:127.0.0.1", site.tls_port);
    let reply = common::curl(&[
        "--cacert",
        root_path.to_str().unwrap(),
        "--resolve",
        &resolve,
        &url,
    ]);
    assert_eq!((reply.status, reply.text().as_str()), (200, INDEX));
}

/// The vhost's entry of `i.acme` in the status JSON (fetched with `cfg`),
/// or `Null` if there is none yet.
fn acme_status(port: u16, cfg: Arc<ClientConfig>) -> serde_json::Value {
    let (reply, _) = get(port, "/status", cfg).unwrap();
    assert_eq!(reply.status, 200, "GET /status: {}", reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {}", reply.text()));
    json["i"]["acme"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["vhost"] == NAME).cloned())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until the status shows `state`; returns the entry.
fn wait_for_status(
    site: &Site,
    server: &Lwsws,
    pebble: &Pebble,
    cfg: Arc<ClientConfig>,
    state: &str,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(LOG_DEADLINE, || {
        last = acme_status(site.tls_port, cfg.clone());
        last["state"] == state
    });
    assert!(
        ok,
        "status never showed state {state:?}; last: {last}{}",
        logs(server, pebble)
    );
    last
}

/// Asserts the served leaf is the temporary self-signed certificate for
/// the vhost, and that a client trusting only pebble's root refuses it.
fn assert_temporary_certificate(site: &Site, root_pem: Option<&str>) {
    let (reply, chain) = get(site.tls_port, "/", any_cert()).expect("GET / with any certificate");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), INDEX);
    let leaf = info(&chain[0]);
    assert_eq!(
        leaf.issuer, leaf.subject,
        "the temporary certificate is self-signed; issuer {}",
        leaf.issuer_text
    );
    assert!(
        !leaf.issuer_text.to_ascii_lowercase().contains("pebble"),
        "{}",
        leaf.issuer_text
    );
    if let Some(root) = root_pem {
        let err = get(site.tls_port, "/", trusting(root))
            .err()
            .expect("a client trusting pebble's root must refuse the temporary certificate");
        assert!(
            err.to_string().contains("certificate"),
            "refused for another reason: {err}"
        );
    }
}

/// Mode bits and owner of a path.
fn mode_owner(path: &Path) -> (u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.permissions().mode() & 0o7777, m.uid())
}

/// Runs `ARGS…` as nobody:nogroup with no supplementary groups (setpriv).
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .args(args)
        .output()
        .expect("run setpriv")
}

/// Whether `pid` runs `lwsws … ARG` (`worker`, `acme`).
fn runs(pid: u32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        .unwrap_or(false)
}

/// The numbers of a `/proc/PID/status` line (`Uid`, `Gid`).
fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field}: in /proc/{pid}/status"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn http01_issues_a_certificate_pebble_validated() {
    let site = Site::new(true);
    let plain = site.plain_port.unwrap();
    let mut pebble = site.pebble(3600);
    pebble.start();
    let root = pebble.root_pem();
    let intermediate = pebble.intermediate_pem();
    site.write(&pebble, "http-01", "");
    assert!(!site.acme_dir.exists());
    let server = site.start();

    // At once: the temporary certificate, refused by pebble's root. The
    // order cannot have finished yet (it needs the workers to serve the
    // challenge), which the log confirms after the handshake.
    assert_temporary_certificate(&site, Some(&root));
    assert!(
        !server.log().contains("ACME: new certificate"),
        "issued before the first handshake: the temporary certificate was not observed{}",
        logs(&server, &pebble)
    );

    let chain = wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE);
    let leaf = info(&chain[0]);
    let inter = info(&der(&intermediate));
    assert_eq!(
        leaf.issuer, inter.subject,
        "issued by pebble's intermediate ({}), not {}",
        inter.subject_text, leaf.issuer_text
    );
    assert_eq!(leaf.dns_names, vec![NAME.to_owned()], "subjectAltName");
    assert!(leaf.not_after > now(), "not_after {}", leaf.not_after);

    assert_curl_verifies(&site, &root);

    // pebble fetched the challenge from lwsws's plain listener.
    let attempt = format!(
        "Attempting to validate w/ HTTP: http://{NAME}:{plain}/.well-known/acme-challenge/"
    );
    assert!(
        pebble.log().contains(&attempt),
        "pebble never validated over HTTP ({attempt}){}",
        logs(&server, &pebble)
    );
    assert!(
        pebble.log().contains("set VALID by completed challenge"),
        "{}",
        logs(&server, &pebble)
    );
    assert!(
        server.wait_for_log("acme: certificate issued", LOG_DEADLINE),
        "{}",
        logs(&server, &pebble)
    );
    assert!(
        server
            .log()
            .contains("ACME: new certificate; reloading to serve it"),
        "{}",
        logs(&server, &pebble)
    );

    // Files: 0600 in 0700 directories, all the supervisor's user's (root
    // when the tests run as root, as in CI); the certificate on disk is the
    // one served.
    let me = nix::unistd::geteuid().as_raw();
    for dir in [site.acme_dir.clone(), site.vhost_dir()] {
        assert_eq!(mode_owner(&dir), (0o700, me), "{}", dir.display());
    }
    for file in ["account.json", "key.pem", "cert.pem"] {
        let path = site.vhost_dir().join(file);
        assert_eq!(mode_owner(&path), (0o600, me), "{}", path.display());
    }
    let on_disk = std::fs::read_to_string(site.vhost_dir().join("cert.pem")).unwrap();
    assert_eq!(
        der(&on_disk),
        chain[0].to_vec(),
        "cert.pem is what is served"
    );
    let account: serde_json::Value =
        serde_json::from_slice(&std::fs::read(site.vhost_dir().join("account.json")).unwrap())
            .expect("account.json is JSON");
    assert!(account.is_object(), "{account}");
    let key = std::fs::read_to_string(site.vhost_dir().join("key.pem")).unwrap();
    assert!(key.contains("PRIVATE KEY"), "key.pem holds a private key");

    // The status page.
    let status = wait_for_status(&site, &server, &pebble, trusting(&root), "valid");
    assert_eq!(status["vhost"], NAME);
    let not_after = status["not_after"].as_i64().expect("not_after");
    assert!(not_after > now(), "not_after {not_after} is in the past");
    assert_eq!(not_after, leaf.not_after, "not_after is the served one's");
    // Renewal after two thirds of the lifetime, up to a thirtieth earlier.
    let next = status["next_attempt"].as_i64().expect("next_attempt");
    let lifetime = leaf.not_after - leaf.not_before;
    let two_thirds = leaf.not_before + lifetime * 2 / 3;
    assert!(
        (two_thirds - lifetime / 30..=two_thirds).contains(&next),
        "next renewal {next}: not within a thirtieth before two thirds ({two_thirds}) of {}..{}",
        leaf.not_before,
        leaf.not_after
    );
    assert!(status["last_error"].is_null(), "{status}");
    // The log says it too.
    let due = format!("renewal due at {next}");
    assert!(
        server.wait_for_log(&due, LOG_DEADLINE),
        "no log line with {due:?}{}",
        logs(&server, &pebble)
    );
}

#[test]
fn tls_alpn01_issues_a_certificate() {
    let site = Site::new(false);
    let mut pebble = site.pebble(3600);
    pebble.start();
    let root = pebble.root_pem();
    let intermediate = pebble.intermediate_pem();
    site.write(&pebble, "tls-alpn-01", "");
    let server = site.start();

    assert_temporary_certificate(&site, Some(&root));
    assert!(
        !server.log().contains("ACME: new certificate"),
        "issued before the first handshake{}",
        logs(&server, &pebble)
    );

    let chain = wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE);
    let leaf = info(&chain[0]);
    assert_eq!(leaf.issuer, info(&der(&intermediate)).subject);
    assert_eq!(leaf.dns_names, vec![NAME.to_owned()]);

    // pebble validated (it logs no line naming TLS-ALPN-01, only that the
    // challenge completed), and not over HTTP: it logs every HTTP attempt,
    // and nothing listens on its HTTP port. lwsws answered its handshakes.
    let log = pebble.log();
    assert!(
        log.contains("set VALID by completed challenge"),
        "{}",
        logs(&server, &pebble)
    );
    assert!(
        !log.contains("Attempting to validate w/ HTTP"),
        "{}",
        logs(&server, &pebble)
    );
    assert!(
        server.log().contains("TLS-ALPN-01 validation answered"),
        "{}",
        logs(&server, &pebble)
    );
    assert!(
        server
            .log()
            .contains("ACME: new certificate; reloading to serve it"),
        "{}",
        logs(&server, &pebble)
    );
    let status = wait_for_status(&site, &server, &pebble, trusting(&root), "valid");
    assert_eq!(status["not_after"].as_i64(), Some(leaf.not_after));
    assert_curl_verifies(&site, &root);
}

#[test]
fn http01_on_the_tls_port_that_lets_plain_http_in() {
    // No plain vhost: pebble's HTTP-01 request arrives as plain HTTP on the
    // TLS listener, which answers it before redirecting anything else.
    let site = Site::plain_on_tls();
    let mut pebble = site.pebble(3600);
    pebble.start();
    let root = pebble.root_pem();
    site.write(&pebble, "http-01", "");
    let server = site.start();

    let chain = wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE);
    assert_eq!(
        info(&chain[0]).issuer,
        info(&der(&pebble.intermediate_pem())).subject
    );
    let attempt = format!(
        "Attempting to validate w/ HTTP: http://{NAME}:{}/.well-known/acme-challenge/",
        site.tls_port
    );
    assert!(
        pebble.log().contains(&attempt),
        "pebble never validated over plain HTTP on the TLS port ({attempt}){}",
        logs(&server, &pebble)
    );
    assert_curl_verifies(&site, &root);
    // Any other plain request is still sent to https.
    let reply = common::curl(&[
        "-H",
        &format!("Host: {NAME}"),
        &format!("http://127.0.0.1:{}/index.html", site.tls_port),
    ]);
    assert_eq!(reply.status, 301, "{}", reply.text());
    assert_eq!(
        reply.header("location"),
        Some(format!("https://{NAME}/index.html").as_str())
    );
}

/// What the load loop saw.
#[derive(Default)]
struct Load {
    ok: u64,
    failures: Vec<String>,
    /// The distinct serials served, in order.
    serials: Vec<String>,
}

#[test]
fn renewal_switches_without_a_refused_connection() {
    let site = Site::new(true);
    let mut pebble = site.pebble(30);
    pebble.start();
    let root = pebble.root_pem();
    site.write(&pebble, "http-01", "");
    let server = site.start();

    let first = info(&wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE)[0]);
    let issued_at = Instant::now();

    // Two threads of new verified connections, each one GET.
    let load = Arc::new(Mutex::new(Load::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (load, stop, cfg, port) =
                (load.clone(), stop.clone(), trusting(&root), site.tls_port);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let result = get(port, "/", cfg.clone());
                    let mut l = load.lock().unwrap();
                    match result {
                        Ok((reply, chain)) if reply.status == 200 && reply.text() == INDEX => {
                            l.ok += 1;
                            let serial = info(&chain[0]).serial;
                            if l.serials.last() != Some(&serial) {
                                l.serials.push(serial);
                            }
                        }
                        Ok((reply, _)) => {
                            l.failures
                                .push(format!("status {}: {}", reply.status, reply.text()))
                        }
                        Err(e) => l.failures.push(e.to_string()),
                    }
                }
            })
        })
        .collect();

    let renewed = wait_until(RENEW_DEADLINE, || {
        load.lock()
            .unwrap()
            .serials
            .iter()
            .any(|s| *s != first.serial)
    });
    // Keep loading while the old generation drains.
    if renewed {
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let load = load.lock().unwrap();
    assert!(
        renewed,
        "no new certificate served within {RENEW_DEADLINE:?} after the first ({} s ago); serials {:?}{}",
        issued_at.elapsed().as_secs(),
        load.serials,
        logs(&server, &pebble)
    );
    assert!(
        load.failures.is_empty(),
        "{} of {} requests failed during the switch: {:?}{}",
        load.failures.len(),
        load.ok as usize + load.failures.len(),
        &load.failures[..load.failures.len().min(10)],
        logs(&server, &pebble)
    );
    assert!(load.ok >= 20, "only {} requests made", load.ok);
    assert_eq!(load.serials[0], first.serial);
    let second = info(&get(site.tls_port, "/", trusting(&root)).unwrap().1[0]);
    assert_ne!(second.serial, first.serial, "serial changed");
    assert!(second.not_after > first.not_after);
    assert!(
        server.log().matches("ACME: new certificate").count() >= 2,
        "{}",
        logs(&server, &pebble)
    );
}

#[test]
fn pebble_down_then_up() {
    let site = Site::new(true);
    let mut pebble = site.pebble(3600);
    site.write(&pebble, "http-01", "");
    let server = site.start();

    // Serves the temporary certificate (curl -k works).
    assert_temporary_certificate(&site, None);
    assert!(
        server.wait_for_log("acme: order failed", LOG_DEADLINE),
        "no failed order logged{}",
        logs(&server, &pebble)
    );
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("acme: order failed"))
        .unwrap();
    assert!(
        line.contains("the current certificate stays in service; next attempt in "),
        "{line}"
    );
    let status = wait_for_status(&site, &server, &pebble, any_cert(), "pending");
    assert!(
        status["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{status}"
    );
    assert!(status["next_attempt"].as_i64().is_some(), "{status}");
    // Each attempt is logged once, with its number and the next retry: the
    // second comes 5 s after the first.
    assert!(
        server.wait_for_log("attempt=2", LOG_DEADLINE),
        "no second attempt logged{}",
        logs(&server, &pebble)
    );
    let log = server.log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("acme: order failed"))
        .collect();
    for (i, line) in failed.iter().enumerate() {
        assert!(
            line.contains(&format!("attempt={}", i + 1)) && line.contains("next attempt in "),
            "failure line {} of {}: {line}",
            i + 1,
            failed.len()
        );
    }

    pebble.start();
    let root = pebble.root_pem();
    let chain = wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE);
    assert_eq!(
        info(&chain[0]).issuer,
        info(&der(&pebble.intermediate_pem())).subject
    );
    let status = wait_for_status(&site, &server, &pebble, trusting(&root), "valid");
    assert!(status["last_error"].is_null(), "{status}");
}

#[test]
fn an_existing_certificate_is_served_while_the_ca_is_down() {
    // 30-second certificates: renewal falls due about 20 s after issuance.
    let site = Site::new(true);
    let mut pebble = site.pebble(30);
    pebble.start();
    let root = pebble.root_pem();
    site.write(&pebble, "http-01", "");
    let mut server = site.start();
    let first = info(&wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE)[0]);
    server.stop();
    drop(server);
    pebble.stop();
    let on_disk = std::fs::read(site.vhost_dir().join("cert.pem")).unwrap();

    // Restarted with the CA gone: the certificate from acme-dir is served
    // at once (no temporary one, no order) and trusted by pebble's root.
    let server = site.start();
    let (reply, chain) = get(site.tls_port, "/", trusting(&root)).unwrap_or_else(|e| {
        panic!(
            "the existing certificate is not served: {e}{}",
            logs(&server, &pebble)
        )
    });
    assert_eq!(reply.text(), INDEX);
    assert_eq!(info(&chain[0]).serial, first.serial);
    let status = wait_for_status(&site, &server, &pebble, trusting(&root), "valid");
    assert_eq!(status["not_after"].as_i64(), Some(first.not_after));
    assert!(
        server.wait_for_log("renewal due at", LOG_DEADLINE),
        "{}",
        logs(&server, &pebble)
    );

    // The renewal fails (nobody answers at the directory URL): logged with
    // the next attempt, and the working certificate stays in place.
    assert!(
        server.wait_for_log("acme: order failed", RENEW_DEADLINE),
        "renewal never attempted{}",
        logs(&server, &pebble)
    );
    let log = server.log();
    let ordering = log.find("acme: ordering a certificate").unwrap();
    assert!(
        log[..ordering].contains("renewal due at"),
        "ordered before the existing certificate was due{}",
        logs(&server, &pebble)
    );
    let (_, chain) = get(site.tls_port, "/", any_cert()).unwrap();
    assert_eq!(
        info(&chain[0]).serial,
        first.serial,
        "the certificate was replaced although no new one was issued"
    );
    assert_eq!(
        std::fs::read(site.vhost_dir().join("cert.pem")).unwrap(),
        on_disk
    );
    let status = wait_for_status(&site, &server, &pebble, any_cert(), "renewing");
    assert!(
        status["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{status}"
    );
    assert!(
        !server.log().contains("ACME: new certificate"),
        "{}",
        logs(&server, &pebble)
    );
}

#[test]
fn worker_cannot_read_the_account_key() {
    // As in process_privileges.rs: without root there is no privilege drop
    // to look at (CI runs the tests as root).
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "worker_cannot_read_the_account_key must run as root in CI"
        );
        eprintln!(
            "SKIPPED worker_cannot_read_the_account_key: needs root (the supervisor drops privileges only when started as root)"
        );
        return;
    }
    let nobody = User::from_name("nobody").unwrap().expect("user nobody");
    let nogroup = Group::from_name("nogroup").unwrap().expect("group nogroup");
    let site = Site::new(true);
    let mut pebble = site.pebble(3600);
    pebble.start();
    let root = pebble.root_pem();
    site.write(
        &pebble,
        "http-01",
        r#", "username": "nobody", "groupname": "nogroup""#,
    );
    // tempfile makes it 0700: the workers must reach the document root.
    std::fs::set_permissions(site.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = site.start();
    wait_for_issued(&site, &server, &pebble, &root, ISSUE_DEADLINE);

    // One worker (the old generation gone), running as nobody; the ACME
    // process as root.
    let sup = server.pid();
    let mut workers = Vec::new();
    let mut acme = Vec::new();
    let settled = wait_until(LOG_DEADLINE, || {
        let children = live_children(sup);
        workers = children
            .iter()
            .copied()
            .filter(|&p| runs(p, "worker"))
            .collect();
        acme = children
            .iter()
            .copied()
            .filter(|&p| runs(p, "acme"))
            .collect();
        workers.len() == 1 && acme.len() == 1
    });
    assert!(
        settled,
        "expected one worker and one ACME process, found workers {workers:?}, acme {acme:?}{}",
        logs(&server, &pebble)
    );
    let (uid, gid) = (nobody.uid.as_raw(), nogroup.gid.as_raw());
    assert_eq!(status_ids(workers[0], "Uid"), vec![uid; 4], "worker Uid");
    assert_eq!(status_ids(workers[0], "Gid"), vec![gid; 4], "worker Gid");
    assert_eq!(status_ids(acme[0], "Uid"), vec![0; 4], "ACME process Uid");

    // As the workers' user: a world-readable file is readable (the check
    // works), the account and certificate keys are not.
    let index = site.dir.path().join("www/index.html");
    let out = as_nobody(&["cat", index.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nobody cannot read a world-readable file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["account.json", "key.pem"] {
        let path = site.vhost_dir().join(file);
        assert!(path.is_file(), "{}", path.display());
        let out = as_nobody(&["cat", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Permission denied"),
            "nobody read {}: status {}, stderr {err}",
            path.display(),
            out.status
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn check_errors() {
    // `acme` together with host-ssl-cert/host-ssl-key.
    let dir = ConfigDir::new();
    let www = dir.mkdir("www");
    let ca = tls::Ca::new("check CA");
    let (cert, key) = ca.server_cert(&[NAME]);
    let cert = dir.write_file("tls/a.crt", cert);
    let key = dir.write_file("tls/a.key", key);
    dir.write_conf(&format!(
        r#"{{ "global": {{ "acme-dir": "{}/acmedir" }} }}"#,
        dir.path().display()
    ));
    let text = format!(
        "{{ \"vhosts\": [{{\n  \"name\": \"{NAME}\",\n  \"port\": \"8443\",\n  \"host-ssl-cert\": \"{}\",\n  \"host-ssl-key\": \"{}\",\n  \"acme\": {{ \"directory\": \"https://acme.invalid/dir\" }},\n  \"mounts\": [{{ \"mountpoint\": \"/\", \"origin\": \"file://{}\" }}]\n}}] }}\n",
        cert.display(),
        key.display(),
        www.display()
    );
    dir.write_conf_d("site", &text);
    let out = check(&dir);
    let err = stderr(&out);
    assert!(!out.status.success(), "--check accepted it:\n{err}");
    // `"acme"` is on line 6.
    let place = format!("{}/conf.d/site:6:", dir.path().display());
    let line = err
        .lines()
        .find(|l| l.contains(&place))
        .unwrap_or_else(|| panic!("no diagnostic at {place}\n{err}"));
    assert!(line.contains("\"acme\": "), "{line}");
    assert!(line.contains("host-ssl-cert"), "{line}");

    // A directory that is not a URL.
    let dir = ConfigDir::new();
    let www = dir.mkdir("www");
    let text = format!(
        "{{ \"vhosts\": [{{\n  \"name\": \"{NAME}\",\n  \"port\": \"8443\",\n  \"acme\": {{\n    \"directory\": \"not a url\"\n  }},\n  \"mounts\": [{{ \"mountpoint\": \"/\", \"origin\": \"file://{}\" }}]\n}}] }}\n",
        www.display()
    );
    dir.write_conf_d("site", &text);
    let out = check(&dir);
    let err = stderr(&out);
    assert!(!out.status.success(), "--check accepted it:\n{err}");
    let place = format!("{}/conf.d/site:5:", dir.path().display());
    let line = err
        .lines()
        .find(|l| l.contains(&place))
        .unwrap_or_else(|| panic!("no diagnostic at {place}\n{err}"));
    assert!(line.contains("\"directory\": "), "{line}");
    assert!(line.contains("not a url"), "{line}");
}
