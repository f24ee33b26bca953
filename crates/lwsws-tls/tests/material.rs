//! Key material: every supported key format loads, and each kind of bad
//! input is a clear error naming the file it is in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Ca, generate, openssl, rsa_key};
use lwsws_tls::{Material, MaterialError, Which, check_material, read_material};

fn ok(m: &Material, what: &str) {
    if let Err(e) = check_material(m) {
        panic!("{what}: {e}");
    }
}

fn err(m: &Material) -> MaterialError {
    match check_material(m) {
        Ok(()) => panic!("expected an error for {m:?}"),
        Err(e) => e,
    }
}

#[test]
fn ecdsa_and_ed25519_keys_in_pkcs8_load() {
    let ca = Ca::new("Test CA");
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ] {
        let key = generate(alg);
        ok(&ca.server(&key, &key.serialize_pem()), &format!("{alg:?}"));
    }
}

#[test]
fn sec1_ec_key_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    std::fs::write(tmp.path().join("k8.pem"), key.serialize_pem()).unwrap();
    if openssl(tmp.path(), &["ec", "-in", "k8.pem", "-out", "sec1.pem"]).is_none() {
        return;
    }
    let sec1 = std::fs::read_to_string(tmp.path().join("sec1.pem")).unwrap();
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    ok(&ca.server(&key, &sec1), "SEC1");
}

#[test]
fn rsa_keys_in_pkcs8_and_pkcs1_load() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pkcs8, pkcs1)) = rsa_key(tmp.path()) else {
        return;
    };
    assert!(pkcs8.contains("BEGIN PRIVATE KEY"));
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    let ca = Ca::new("Test CA");
    let key = rcgen::KeyPair::from_pem(&pkcs8).unwrap();
    ok(&ca.server(&key, &pkcs8), "RSA PKCS#8");
    ok(&ca.server(&key, &pkcs1), "RSA PKCS#1");
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let ca = Ca::new("Test CA");
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let other = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut m = ca.server(&key, &key.serialize_pem());
    m.key_pem = other.serialize_pem().into_bytes();
    let e = err(&m);
    assert!(matches!(e, MaterialError::Mismatch), "{e}");
    assert_eq!(e.which(), Which::Key);
    // Another key type entirely is a mismatch too.
    m.key_pem = generate(&rcgen::PKCS_ED25519).serialize_pem().into_bytes();
    assert!(matches!(err(&m), MaterialError::Mismatch));
}

#[test]
fn encrypted_keys_are_refused_with_the_way_out() {
    let ca = Ca::new("Test CA");
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut m = ca.server(&key, &key.serialize_pem());
    m.key_pem = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n".to_vec();
    let e = err(&m);
    assert!(matches!(e, MaterialError::EncryptedKey), "{e}");
    assert!(e.to_string().contains("openssl pkey"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("k.pem"), key.serialize_pem()).unwrap();
    let made = openssl(
        tmp.path(),
        &[
            "pkey", "-in", "k.pem", "-aes256", "-passout", "pass:x", "-out", "enc8.pem",
        ],
    )
    .and_then(|()| {
        openssl(
            tmp.path(),
            &[
                "ec",
                "-in",
                "k.pem",
                "-aes256",
                "-passout",
                "pass:x",
                "-out",
                "enc-legacy.pem",
            ],
        )
    });
    if made.is_some() {
        for f in ["enc8.pem", "enc-legacy.pem"] {
            m.key_pem = std::fs::read(tmp.path().join(f)).unwrap();
            let e = err(&m);
            assert!(matches!(e, MaterialError::EncryptedKey), "{f}: {e}");
        }
    }
}

#[test]
fn files_that_are_not_pem_are_named_errors() {
    let ca = Ca::new("Test CA");
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let good = ca.server(&key, &key.serialize_pem());

    let mut m = good.clone();
    m.cert_pem = b"cert\n".to_vec();
    let e = err(&m);
    assert_eq!(e.which(), Which::Cert);
    assert!(e.to_string().contains("not PEM"), "{e}");

    // DER instead of PEM gets the conversion command.
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&good.cert_pem)
        .map(|c: rustls::pki_types::CertificateDer| c.to_vec())
        .unwrap();
    m.cert_pem = der;
    let e = err(&m);
    assert!(e.to_string().contains("openssl x509 -inform der"), "{e}");

    // An empty file, a truncated section, a section that is no certificate.
    m.cert_pem = Vec::new();
    assert!(err(&m).to_string().contains("empty"));
    m.cert_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n".to_vec();
    let e = err(&m);
    assert!(e.to_string().contains("-----END CERTIFICATE-----"), "{e}");
    m.cert_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
    let e = err(&m);
    assert!(e.to_string().contains("not a valid X.509"), "{e}");

    // Certificate and key swapped.
    let mut m = good.clone();
    std::mem::swap(&mut m.cert_pem, &mut m.key_pem);
    let e = err(&m);
    assert_eq!(e.which(), Which::Cert);
    assert!(e.to_string().contains("swapped"), "{e}");
    let mut m = good.clone();
    m.key_pem = m.cert_pem.clone();
    let e = err(&m);
    assert_eq!(e.which(), Which::Key);
    assert!(e.to_string().contains("swapped"), "{e}");
    m.key_pem = b"-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n".to_vec();
    let e = err(&m);
    assert!(e.to_string().contains("DSA PRIVATE KEY"), "{e}");
    m.key_pem = b"key\n".to_vec();
    assert!(err(&m).to_string().contains("not PEM"));
}

#[test]
fn every_bad_file_is_reported() {
    let m = Material {
        cert_pem: b"cert".to_vec(),
        key_pem: b"key".to_vec(),
        ca_pem: Some(b"ca".to_vec()),
    };
    let which: Vec<Which> = lwsws_tls::material_problems(&m)
        .iter()
        .map(MaterialError::which)
        .collect();
    assert_eq!(which, [Which::Cert, Which::Key, Which::Ca]);
}

#[test]
fn the_ca_bundle_must_hold_usable_certificates() {
    let ca = Ca::new("Test CA");
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut m = ca.server(&key, &key.serialize_pem());
    m.ca_pem = Some(ca.pem().into_bytes());
    ok(&m, "CA bundle");
    m.ca_pem = Some(b"ca\n".to_vec());
    let e = err(&m);
    assert_eq!(e.which(), Which::Ca);
    assert!(e.to_string().contains("not PEM"), "{e}");
    m.ca_pem = Some(
        format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ca.pem()
        )
        .into_bytes(),
    );
    let e = err(&m);
    assert!(e.to_string().contains("certificate #2"), "{e}");
}

#[test]
fn read_material_names_the_file_it_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let key = generate(&rcgen::PKCS_ECDSA_P256_SHA256);
    let m = ca.server(&key, &key.serialize_pem());
    let (c, k, a) = (
        tmp.path().join("c.pem"),
        tmp.path().join("k.pem"),
        tmp.path().join("ca.pem"),
    );
    std::fs::write(&c, &m.cert_pem).unwrap();
    std::fs::write(&k, &m.key_pem).unwrap();
    let got = read_material(&c, &k, None).unwrap();
    assert_eq!(got, m);
    match read_material(&c, &k, Some(&a)) {
        Err(
            e @ MaterialError::Io {
                which: Which::Ca, ..
            },
        ) => {
            assert!(e.to_string().contains("ca.pem"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match read_material(&tmp.path().join("nope.pem"), &k, None) {
        Err(e) => assert_eq!(e.which(), Which::Cert),
        Ok(_) => panic!("read a missing file"),
    }
}
