//! pebble (Let's Encrypt's ACME test CA) and pebble-challtestsrv (its mock
//! DNS, answering 127.0.0.1 for every name) for the ACME tests, on ports
//! picked at run time, plus a small synchronous HTTPS client (rustls) that
//! also returns the certificate chain the server presented.
//!
//! pebble's own HTTPS (ACME directory, management interface) gets a leaf
//! certificate for 127.0.0.1/localhost signed by a private CA made here
//! (`ca_pem`, what lwsws's `directory-ca` names). The certificates pebble
//! issues chain to its root, fetched from the management interface
//! (`/roots/0`) once it runs.
//!
//! Both programs come from the Debian package `pebble`; without them the
//! tests fail (they do not skip).
//!
//! Included by `tests/acme.rs` only, next to `common` and `common/tls.rs`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use crate::common::{Reply, parse_responses};
use crate::tls::Ca;
use lwsws_testkit::free_port;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::{CertificateDer, ServerName};
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket reads and writes give up after this long: a liveness bound.
pub const IO_DEADLINE: Duration = Duration::from_secs(15);

/// How long pebble and its DNS may take to listen: a liveness bound.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The absolute path of `program` in `$PATH`; panics (the test fails) when
/// it is not installed.
fn installed(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed (not in $PATH): the ACME tests need pebble and \
                 pebble-challtestsrv (Debian package `pebble`: apt-get install pebble)"
            )
        })
}

/// A port free for both TCP and UDP on 127.0.0.1 (the mock DNS serves both).
fn free_tcp_udp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// pebble and its mock DNS, prepared with [`Pebble::new`] and started with
/// [`Pebble::start`] (possibly later: a test may start lwsws first). Dropping
/// it kills both programs.
pub struct Pebble {
    dir: tempfile::TempDir,
    /// The ACME server (`https://127.0.0.1:PORT/dir`).
    pub acme_port: u16,
    /// pebble's management interface (`/roots/0`, `/intermediates/0`).
    pub mgmt_port: u16,
    dns_port: u16,
    dns_mgmt_port: u16,
    /// The CA that signed pebble's own HTTPS certificate (PEM).
    ca_pem: String,
    ca_path: PathBuf,
    config_path: PathBuf,
    children: Vec<(String, Child)>,
}

impl Pebble {
    /// Prepares a pebble that validates HTTP-01 on `http_port` and
    /// TLS-ALPN-01 on `tls_port` of the identifier's address (127.0.0.1)
    /// and issues certificates valid for `validity_secs`.
    pub fn new(http_port: u16, tls_port: u16, validity_secs: u64) -> Pebble {
        // Fail early and clearly when the programs are missing.
        installed("pebble");
        installed("pebble-challtestsrv");
        let dir = tempfile::Builder::new()
            .prefix("lwsws-pebble-")
            .tempdir()
            .unwrap();
        let ca = Ca::new("pebble test CA");
        let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
        let ca_pem = ca.pem();
        let ca_path = dir.path().join("pebble-ca.pem");
        std::fs::write(&ca_path, &ca_pem).unwrap();
        let cert_path = dir.path().join("pebble-cert.pem");
        let key_path = dir.path().join("pebble-key.pem");
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let acme_port = free_port();
        let mgmt_port = free_port();
        let dns_port = free_tcp_udp_port();
        let dns_mgmt_port = free_port();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity_secs,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        Pebble {
            dir,
            acme_port,
            mgmt_port,
            dns_port,
            dns_mgmt_port,
            ca_pem,
            ca_path,
            config_path,
            children: Vec::new(),
        }
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The file holding the CA of pebble's own HTTPS certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Starts the mock DNS, then pebble, and waits until both listen.
    /// Panics (with their logs) if either exits or does not listen in time.
    pub fn start(&mut self) {
        assert!(self.children.is_empty(), "pebble already started");
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let dns_mgmt = format!("127.0.0.1:{}", self.dns_mgmt_port);
        let mut cmd = Command::new(installed("pebble-challtestsrv"));
        cmd.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &dns])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &dns_mgmt]);
        self.spawn("challtestsrv", cmd);
        self.wait_listening(&[self.dns_mgmt_port, self.dns_port]);

        let mut cmd = Command::new(installed("pebble"));
        cmd.arg("-config")
            .arg(&self.config_path)
            .args(["-dnsserver", &dns])
            // Validate at once (no random sleep) and accept every nonce.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0");
        self.spawn("pebble", cmd);
        self.wait_listening(&[self.acme_port, self.mgmt_port]);
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) {
        let log = File::create(self.log_path(name)).unwrap();
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // A group of its own, killed as a whole on drop.
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name.to_owned(), child));
    }

    fn wait_listening(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + START_DEADLINE;
        for &port in ports {
            loop {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    break;
                }
                let exited = self
                    .children
                    .iter_mut()
                    .find_map(|(name, child)| Some((name.clone(), child.try_wait().unwrap()?)));
                if let Some((name, status)) = exited {
                    panic!(
                        "{name} exited ({status}) before listening\n--- pebble log ---\n{}\n--- challtestsrv log ---\n{}",
                        self.log(),
                        self.dns_log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "pebble: nothing listens on 127.0.0.1:{port} after {START_DEADLINE:?}\n--- pebble log ---\n{}\n--- challtestsrv log ---\n{}",
                    self.log(),
                    self.dns_log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Kills pebble and its DNS (a new `start` brings up a new CA: pebble
    /// keeps nothing across restarts).
    pub fn stop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// What pebble has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path("pebble")).unwrap_or_default()
    }

    /// What the mock DNS has logged so far.
    pub fn dns_log(&self) -> String {
        std::fs::read_to_string(self.log_path("challtestsrv")).unwrap_or_default()
    }

    /// GET `path` on the management interface; panics unless 200.
    fn management(&self, path: &str) -> String {
        let cfg = crate::tls::rustls_client(&self.ca_pem, None, &[b"http/1.1"]);
        let (reply, _) = https_get(self.mgmt_port, None, "127.0.0.1", path, cfg)
            .unwrap_or_else(|e| panic!("GET {path} from pebble's management interface: {e}"));
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        reply.text()
    }

    /// The root that pebble's issued certificates chain to (PEM).
    pub fn root_pem(&self) -> String {
        self.management("/roots/0")
    }

    /// The intermediate that signs pebble's certificates (PEM).
    pub fn intermediate_pem(&self) -> String {
        self.management("/intermediates/0")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// A synchronous HTTPS client.

pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `127.0.0.1:port` and completes the TLS handshake, sending
/// `sni` as the server name (`None`: connect "by IP address", no SNI).
pub fn tls_connect(port: u16, sni: Option<&str>, cfg: Arc<ClientConfig>) -> io::Result<Tls> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_owned()).unwrap(),
        None => ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    let sock = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    sock.set_read_timeout(Some(IO_DEADLINE))?;
    sock.set_write_timeout(Some(IO_DEADLINE))?;
    let conn = ClientConnection::new(cfg, name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, sock);
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

/// One HTTPS GET on a new connection (`Connection: close`): the response
/// and the certificate chain the server presented. Any transport or TLS
/// failure, or not exactly one response, is an error.
pub fn https_get(
    port: u16,
    sni: Option<&str>,
    host: &str,
    path: &str,
    cfg: Arc<ClientConfig>,
) -> io::Result<(Reply, Vec<CertificateDer<'static>>)> {
    let mut tls = tls_connect(port, sni, cfg)?;
    let chain: Vec<CertificateDer<'static>> = tls
        .conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let bytes = read_all(&mut tls)?;
    // parse_responses panics on garbage; the load loop of the renewal test
    // must count that as a failure, not die.
    let parsed = std::panic::catch_unwind(|| parse_responses(&bytes));
    match parsed {
        Ok(mut replies) if replies.len() == 1 => Ok((replies.remove(0), chain)),
        _ => Err(io::Error::other(format!(
            "not one HTTP response: {:?}",
            String::from_utf8_lossy(&bytes)
        ))),
    }
}
