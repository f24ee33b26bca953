//! `server_config` against a rustls client, in memory: ALPN, protocol
//! versions from `ssl-option-set`, cipher and curve choices, client
//! certificates and their subject, session resumption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ca, Failed, client_config, generate, handshake, rsa_key};
use lwsws_tls::{
    Material, Params, SSL_OP_NO_TLSV1_2, SSL_OP_NO_TLSV1_3, TlsError, check_params, client_subject,
    server_config,
};
use rcgen::DnType;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, NamedGroup, ProtocolVersion};

const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

fn alpn() -> Vec<Vec<u8>> {
    ALPN.iter().map(|a| a.to_vec()).collect()
}

fn params<'a>(m: &'a Material, alpn: &'a [Vec<u8>]) -> Params<'a> {
    Params {
        material: m,
        client_cert_required: false,
        ciphers: None,
        tls13_ciphers: None,
        ecdh_curve: None,
        ssl_option_set: 0,
        ssl_option_clear: 0,
        alpn,
    }
}

fn ecdsa_server(ca: &Ca) -> Material {
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    ca.server(&key, &key.serialize_pem())
}

#[test]
fn h2_is_negotiated_over_tls13_by_default() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    let server = server_config(&params(&m, &alpn)).unwrap();
    let (c, s) = handshake(client_config(&ca.pem(), &[&TLS13, &TLS12], None), server).unwrap();
    assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(c.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    assert!(s.peer_certificates().is_none());

    // http/1.1 only, as "alpn": "http/1.1" gives.
    let only_h1 = vec![b"http/1.1".to_vec()];
    let server = server_config(&params(&m, &only_h1)).unwrap();
    let (_, s) = handshake(client_config(&ca.pem(), &[&TLS13], None), server).unwrap();
    assert_eq!(s.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn option_bits_choose_the_protocol_version() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    let tls12_only = Params {
        ssl_option_set: SSL_OP_NO_TLSV1_3,
        ..params(&m, &alpn)
    };
    let server = server_config(&tls12_only).unwrap();
    let (_, s) = handshake(
        client_config(&ca.pem(), &[&TLS13, &TLS12], None),
        server.clone(),
    )
    .unwrap();
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));
    assert!(matches!(
        handshake(client_config(&ca.pem(), &[&TLS13], None), server),
        Err(Failed::Server(_))
    ));

    let tls13_only = Params {
        ssl_option_set: SSL_OP_NO_TLSV1_2,
        ..params(&m, &alpn)
    };
    let server = server_config(&tls13_only).unwrap();
    assert!(handshake(client_config(&ca.pem(), &[&TLS12], None), server.clone()).is_err());
    let (_, s) = handshake(client_config(&ca.pem(), &[&TLS13, &TLS12], None), server).unwrap();
    assert_eq!(s.protocol_version(), Some(ProtocolVersion::TLSv1_3));

    let neither = Params {
        ssl_option_set: SSL_OP_NO_TLSV1_2 | SSL_OP_NO_TLSV1_3,
        ..params(&m, &alpn)
    };
    assert!(matches!(
        server_config(&neither),
        Err(TlsError::Versions(_))
    ));
}

#[test]
fn ciphers_and_curves_are_applied() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    let p = Params {
        ciphers: Some("ECDHE-ECDSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256"),
        ecdh_curve: Some("secp384r1"),
        ssl_option_set: SSL_OP_NO_TLSV1_3,
        ..params(&m, &alpn)
    };
    assert!(check_params(&p).unwrap().is_empty());
    let (_, s) = handshake(
        client_config(&ca.pem(), &[&TLS12], None),
        server_config(&p).unwrap(),
    )
    .unwrap();
    assert_eq!(
        s.negotiated_cipher_suite().unwrap().suite(),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );
    assert_eq!(
        s.negotiated_key_exchange_group().unwrap().name(),
        NamedGroup::secp384r1
    );

    let p = Params {
        tls13_ciphers: Some("TLS_AES_128_GCM_SHA256"),
        ..params(&m, &alpn)
    };
    let (_, s) = handshake(
        client_config(&ca.pem(), &[&TLS13], None),
        server_config(&p).unwrap(),
    )
    .unwrap();
    assert_eq!(
        s.negotiated_cipher_suite().unwrap().suite(),
        CipherSuite::TLS13_AES_128_GCM_SHA256
    );

    let bad = Params {
        ciphers: Some("ECDHE-RSA-AES128-GCM-SHA256:NOT-A-CIPHER"),
        ..params(&m, &alpn)
    };
    match server_config(&bad) {
        Err(e @ TlsError::Ciphers(_)) => assert!(e.to_string().contains("NOT-A-CIPHER"), "{e}"),
        other => panic!("{other:?}"),
    }
    let bad = Params {
        ecdh_curve: Some("prime256v9"),
        ..params(&m, &alpn)
    };
    assert!(matches!(server_config(&bad), Err(TlsError::Curves(_))));
    let bad = Params {
        tls13_ciphers: Some("TLS_AES_128_CCM_8_SHA256"),
        ..params(&m, &alpn)
    };
    assert!(matches!(
        server_config(&bad),
        Err(TlsError::Tls13Ciphers(_))
    ));
}

#[test]
fn suites_that_cannot_use_the_key_are_an_error_when_tls12_is_all_there_is() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    let rsa_suites_only = Params {
        ciphers: Some("aRSA"),
        ..params(&m, &alpn)
    };
    let warnings = check_params(&rsa_suites_only).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("TLS 1.2 clients will fail")),
        "{warnings:?}"
    );
    let tls12_only = Params {
        ssl_option_set: SSL_OP_NO_TLSV1_3,
        ..rsa_suites_only
    };
    assert!(matches!(
        check_params(&tls12_only),
        Err(TlsError::Ciphers(_))
    ));
}

#[test]
fn ignored_option_bits_are_warnings_not_errors() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    let set = 0x8000_0854 | SSL_OP_NO_TLSV1_3;
    let p = Params {
        ssl_option_set: set,
        ..params(&m, &alpn)
    };
    server_config(&p).unwrap();
    let ignored = lwsws_tls::ignored_options(set, 0);
    assert_eq!(ignored.len(), 4, "{ignored:?}");
    assert_eq!(ignored[0], "SSL_OP_LEGACY_SERVER_CONNECT");
}

#[test]
fn every_key_kind_serves() {
    let ca = Ca::new("Test CA");
    let alpn = alpn();
    let mut materials = Vec::new();
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let key = generate(alg);
        materials.push((format!("{alg:?}"), ca.server(&key, &key.serialize_pem())));
    }
    let tmp = tempfile::tempdir().unwrap();
    if let Some((pkcs8, pkcs1)) = rsa_key(tmp.path()) {
        let key = rcgen::KeyPair::from_pem(&pkcs8).unwrap();
        materials.push(("RSA PKCS#8".into(), ca.server(&key, &pkcs8)));
        materials.push(("RSA PKCS#1".into(), ca.server(&key, &pkcs1)));
    }
    for (what, m) in &materials {
        for versions in [&TLS12, &TLS13] {
            let server = server_config(&params(m, &alpn)).unwrap();
            if let Err(e) = handshake(client_config(&ca.pem(), &[versions], None), server) {
                panic!("{what} over {versions:?}: {e:?}");
            }
        }
    }
}

fn client_cert(ca: &Ca, cn: &str) -> (String, String) {
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let cert = ca.leaf(
        &key,
        &[
            (DnType::OrganizationName, "Example, Inc."),
            (DnType::CommonName, cn),
        ],
        true,
    );
    (cert, key.serialize_pem())
}

#[test]
fn client_certificates_required() {
    let ca = Ca::new("Test CA");
    let client_ca = Ca::new("Client CA");
    let stranger_ca = Ca::new("Other CA");
    let mut m = ecdsa_server(&ca);
    m.ca_pem = Some(client_ca.pem().into_bytes());
    let alpn = alpn();
    let p = Params {
        client_cert_required: true,
        ..params(&m, &alpn)
    };
    let server = server_config(&p).unwrap();
    for versions in [&TLS13, &TLS12] {
        // No certificate: refused.
        match handshake(client_config(&ca.pem(), &[versions], None), server.clone()) {
            Err(Failed::Server(e)) => {
                assert!(matches!(e, rustls::Error::NoCertificatesPresented), "{e}")
            }
            other => panic!("{versions:?}: {other:?}"),
        }
        // A certificate from another CA: refused.
        let (cert, key) = client_cert(&stranger_ca, "mallory");
        assert!(matches!(
            handshake(
                client_config(&ca.pem(), &[versions], Some((&cert, &key))),
                server.clone()
            ),
            Err(Failed::Server(_))
        ));
        // The right one: accepted, and its subject reaches the application.
        let (cert, key) = client_cert(&client_ca, "alice");
        let (_, s) = handshake(
            client_config(&ca.pem(), &[versions], Some((&cert, &key))),
            server.clone(),
        )
        .unwrap();
        let peer = s.peer_certificates().unwrap();
        assert_eq!(
            client_subject(peer[0].as_ref()).unwrap(),
            "CN=alice,O=Example\\, Inc."
        );
    }
}

#[test]
fn client_certificates_optional_with_a_ca() {
    let ca = Ca::new("Test CA");
    let client_ca = Ca::new("Client CA");
    let mut m = ecdsa_server(&ca);
    m.ca_pem = Some(client_ca.pem().into_bytes());
    let alpn = alpn();
    let server = server_config(&params(&m, &alpn)).unwrap();
    let (_, s) = handshake(client_config(&ca.pem(), &[&TLS13], None), server.clone()).unwrap();
    assert!(s.peer_certificates().is_none());
    let (cert, key) = client_cert(&client_ca, "bob");
    let (_, s) = handshake(
        client_config(&ca.pem(), &[&TLS13], Some((&cert, &key))),
        server,
    )
    .unwrap();
    let subject = client_subject(s.peer_certificates().unwrap()[0].as_ref());
    assert_eq!(subject.as_deref(), Some("CN=bob,O=Example\\, Inc."));
}

#[test]
fn client_cert_required_without_a_ca_is_an_error() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    let p = Params {
        client_cert_required: true,
        ..params(&m, &alpn)
    };
    assert!(matches!(
        server_config(&p),
        Err(TlsError::ClientCertWithoutCa)
    ));
}

#[test]
fn sessions_resume() {
    let ca = Ca::new("Test CA");
    let m = ecdsa_server(&ca);
    let alpn = alpn();
    for (versions, set) in [
        (&TLS13, 0),
        (&TLS12, 0),
        (&TLS13, lwsws_tls::SSL_OP_NO_TICKET),
        (&TLS12, lwsws_tls::SSL_OP_NO_TICKET),
    ] {
        let p = Params {
            ssl_option_set: set,
            ..params(&m, &alpn)
        };
        let server = server_config(&p).unwrap();
        let client = client_config(&ca.pem(), &[versions], None);
        let (_, s) = handshake(client.clone(), server.clone()).unwrap();
        assert_eq!(s.handshake_kind(), Some(rustls::HandshakeKind::Full));
        let (_, s) = handshake(client, server).unwrap();
        assert_eq!(
            s.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?} options {set:#x}"
        );
    }
}
