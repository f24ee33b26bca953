//! `ignore-missing-cert`: a TLS vhost whose certificate files are missing
//! still starts, serving a temporary self-signed certificate, and a reload
//! that finds the files serves them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::bin;
use lwsws_testkit::{ConfigDir, Lwsws, free_port};
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

/// Connects with SNI `name`, accepting any certificate, and returns the
/// subject of the certificate served and the body of `GET /`.
fn fetch(port: u16, name: &str) -> (String, String) {
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &[rustls_pki_types::CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls_pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    let der = conn.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (cert.subject().to_string(), body)
}

#[test]
fn missing_certificate_serves_a_temporary_one_until_a_reload_finds_the_files() {
    let port = free_port();
    let dir = ConfigDir::new();
    let www = dir.mkdir("www");
    std::fs::write(www.join("index.html"), "secure content\n").unwrap();
    let cert = dir.path().join("site.crt");
    let key = dir.path().join("site.key");
    dir.write_conf_d(
        "site",
        &format!(
            r#"{{"vhosts": [{{"name": "late.test", "port": "{port}", "interface": "127.0.0.1",
                "host-ssl-cert": "{}", "host-ssl-key": "{}", "ignore-missing-cert": "1",
                "mounts": [{{"mountpoint": "/", "origin": "file://{}", "default": "index.html"}}]}}]}}"#,
            cert.display(),
            key.display(),
            www.display()
        ),
    );
    // --check accepts it with warnings naming the missing files.
    let check = common::check(&dir);
    assert!(check.status.success(), "{}", common::stderr(&check));
    assert!(common::stderr(&check).contains("site.crt"));

    let server = Lwsws::start(bin(), &dir, &[], &[port]);
    assert!(
        server.wait_for_log("worker ready generation=1", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let (subject, body) = fetch(port, "late.test");
    assert_eq!(subject, "CN=late.test", "temporary certificate");
    assert_eq!(body, "secure content\n");
    assert!(server.log().contains("temporary self-signed certificate"));

    // The real files arrive; a reload serves them.
    let mut params = rcgen::CertificateParams::new(vec!["late.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "late.test real");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Operator");
    let kp = rcgen::KeyPair::generate().unwrap();
    let real = params.self_signed(&kp).unwrap();
    std::fs::write(&cert, real.pem()).unwrap();
    std::fs::write(&key, kp.serialize_pem()).unwrap();
    server.signal(Signal::SIGHUP);
    assert!(
        server.wait_for_log("worker ready generation=2", Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let (subject, body) = fetch(port, "late.test");
    assert!(subject.contains("CN=late.test real"), "{subject}");
    assert!(subject.contains("O=Operator"), "{subject}");
    assert_eq!(body, "secure content\n");
}
