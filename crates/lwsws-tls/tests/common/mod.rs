//! Test PKI: a CA made with rcgen, leaf certificates for every key kind
//! (RSA keys come from the `openssl` command, which rcgen cannot replace),
//! and an in-memory handshake between a rustls client and server.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use lwsws_tls::Material;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `key`; `client` makes a client certificate.
    pub fn leaf(&self, key: &KeyPair, subject: &[(DnType, &str)], client: bool) -> String {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        // In encoding order, most general first (rcgen starts with a CN of its own).
        params.distinguished_name = DistinguishedName::new();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.signed_by(key, &self.issuer).unwrap().pem()
    }

    /// Server material for `key` (PEM as given), with this CA's certificate in the chain.
    pub fn server(&self, key: &KeyPair, key_pem: &str) -> Material {
        let cert = self.leaf(key, &[(DnType::CommonName, "localhost")], false);
        Material {
            cert_pem: format!("{cert}{}", self.pem()).into_bytes(),
            key_pem: key_pem.as_bytes().to_vec(),
            ca_pem: None,
        }
    }
}

pub fn generate(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).unwrap()
}

/// Runs `openssl ARGS` in `dir`; `None` (with a message) when openssl is not installed.
pub fn openssl(dir: &Path, args: &[&str]) -> Option<()> {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(())
        }
        Err(e) => {
            eprintln!("skipping the RSA part: cannot run openssl ({e})");
            None
        }
    }
}

/// An RSA key from openssl: (PKCS#8 PEM, PKCS#1 PEM), or `None` without openssl.
pub fn rsa_key(dir: &Path) -> Option<(String, String)> {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa8.pem",
        ],
    )?;
    openssl(
        dir,
        &["rsa", "-in", "rsa8.pem", "-traditional", "-out", "rsa1.pem"],
    )?;
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    Some((read("rsa8.pem"), read("rsa1.pem")))
}

pub fn roots(pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A rustls client trusting `ca_pem`, offering h2 and http/1.1, optionally with a client certificate.
pub fn client_config(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_cert: Option<(&str, &str)>,
) -> Arc<ClientConfig> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots(ca_pem));
    let mut config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::in_memory_sessions(8);
    Arc::new(config)
}

/// Which side failed a handshake, and why.
#[derive(Debug)]
pub enum Failed {
    Client(rustls::Error),
    Server(rustls::Error),
}

/// A connected pair after a handshake in memory (the client also reads the
/// server's first flight after the handshake, so TLS 1.3 client-certificate
/// rejections and tickets arrive).
pub fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> Result<(ClientConnection, ServerConnection), Failed> {
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(server).unwrap();
    // One application byte each way pushes every post-handshake message through.
    std::io::Write::write_all(&mut c.writer(), b"x").unwrap();
    let mut answered = false;
    for _ in 0..20 {
        let mut moved = false;
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            if let Err(e) = s.process_new_packets() {
                return Err(Failed::Server(e));
            }
        }
        if !s.is_handshaking() && !answered {
            answered = true;
            std::io::Write::write_all(&mut s.writer(), b"y").unwrap();
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            if let Err(e) = c.process_new_packets() {
                return Err(Failed::Client(e));
            }
        }
        if !moved {
            break;
        }
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake stalled"
    );
    Ok((c, s))
}
