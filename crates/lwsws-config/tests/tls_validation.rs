//! TLS vhosts: the certificate, key and CA files must parse and fit, and the
//! OpenSSL-only keys must map onto rustls; every problem is a diagnostic at
//! the key it is about, all of them reported by one load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lwsws_config::{ConfigError, Diagnostic, LoadOptions, Loaded};
use rcgen::{CertificateParams, CertifiedIssuer, KeyPair};
use std::path::PathBuf;

struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// The vhost file's path as diagnostics show it.
    fn conf(&self) -> String {
        self.path("conf.d/site").display().to_string()
    }

    fn load(&self, text: &str) -> Result<Loaded, ConfigError> {
        std::fs::create_dir_all(self.path("conf.d")).unwrap();
        std::fs::write(self.path("conf.d/site"), text).unwrap();
        let opts = LoadOptions {
            data_dir: self.tmp.path().to_path_buf(),
            protocols: Vec::new(),
            as_root: false,
            plugins: None,
        };
        lwsws_config::load(self.tmp.path(), &opts)
    }

    fn errors(&self, text: &str) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        match self.load(text) {
            Err(ConfigError::Invalid { errors, warnings }) => (errors, warnings),
            Ok(_) => panic!("expected errors in\n{text}"),
        }
    }

    fn ok(&self, text: &str) -> Loaded {
        match self.load(text) {
            Ok(l) => l,
            Err(ConfigError::Invalid { errors, .. }) => panic!(
                "{}",
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
}

/// `file:line:col` of the first occurrence of `needle` in `text`.
fn place(file: &str, text: &str, needle: &str) -> String {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    format!("{file}:{line}:{col}")
}

/// The one diagnostic at `place`; panics listing them all otherwise.
fn at<'a>(diags: &'a [Diagnostic], place: &str) -> &'a Diagnostic {
    let found: Vec<&Diagnostic> = diags.iter().filter(|d| d.place == place).collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "expected one diagnostic at {place}, found {}:\n{}",
            found.len(),
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// (certificate PEM, key PEM) for `localhost`.
    fn leaf(&self, alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A site with a good ECDSA certificate (`cert.pem`, `key.pem`) and CA (`ca.pem`).
fn good_site() -> (Site, Pki) {
    let site = Site::new();
    let pki = Pki::new();
    let (cert, key) = pki.leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
    site.write("cert.pem", cert);
    site.write("key.pem", key);
    site.write("ca.pem", pki.ca.pem());
    (site, pki)
}

fn vhost(extra: &str) -> String {
    format!(
        "{{\"vhosts\": [{{\n  \"name\": \"localhost\",\n  \"port\": \"8443\",\n{extra}\n}}]}}\n"
    )
}

const FILES: &str = "  \"host-ssl-cert\": \"cert.pem\",\n  \"host-ssl-key\": \"key.pem\"";

#[test]
fn a_good_tls_vhost_loads_with_every_openssl_key() {
    let (site, _) = good_site();
    let text = vhost(&format!(
        "{FILES},\n  \"host-ssl-ca\": \"ca.pem\",\n  \"client-cert-required\": \"1\",\n  \"ciphers\": \"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:!aNULL:!MD5\",\n  \"tls13-ciphers\": \"TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256\",\n  \"ecdh-curve\": \"X25519:prime256v1\",\n  \"ssl-option-set\": \"{}\"",
        lwsws_tls::SSL_OP_NO_TLSV1_3 | (1 << 26)
    ));
    let loaded = site.ok(&text);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.config.vhosts[0].tls.is_some());
}

#[test]
fn a_certificate_that_is_not_pem_is_an_error_at_its_key() {
    let (site, _) = good_site();
    let cert = site.write("cert.pem", "cert\n");
    let text = vhost(FILES);
    let (errors, _) = site.errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = at(&errors, &place(&site.conf(), &text, "\"host-ssl-cert\""));
    assert_eq!(e.key, "host-ssl-cert");
    assert!(
        e.message.contains(&cert) && e.message.contains("not PEM"),
        "{e}"
    );
}

#[test]
fn bad_certificate_key_and_ca_are_reported_together() {
    let (site, _) = good_site();
    site.write("cert.pem", "cert\n");
    site.write("key.pem", "key\n");
    site.write("ca.pem", "ca\n");
    let text = vhost(&format!("{FILES},\n  \"host-ssl-ca\": \"ca.pem\""));
    let (errors, _) = site.errors(&text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    for key in ["\"host-ssl-cert\"", "\"host-ssl-key\"", "\"host-ssl-ca\""] {
        let e = at(&errors, &place(&site.conf(), &text, key));
        assert!(e.message.contains("not PEM"), "{e}");
    }
}

#[test]
fn a_key_that_is_not_pem_is_an_error_at_its_key() {
    let (site, _) = good_site();
    site.write("key.pem", "key\n");
    let text = vhost(FILES);
    let (errors, _) = site.errors(&text);
    let e = at(&errors, &place(&site.conf(), &text, "\"host-ssl-key\""));
    assert_eq!(e.key, "host-ssl-key");
    assert!(
        e.message.contains("key.pem: ") && e.message.contains("not PEM"),
        "{e}"
    );
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch_naming_both_files() {
    let (site, pki) = good_site();
    let (_, other) = pki.leaf(&rcgen::PKCS_ECDSA_P256_SHA256);
    let key = site.write("key.pem", other);
    let text = vhost(FILES);
    let (errors, _) = site.errors(&text);
    let e = at(&errors, &place(&site.conf(), &text, "\"host-ssl-key\""));
    assert!(
        e.message.contains(&key)
            && e.message
                .contains(&site.path("cert.pem").display().to_string())
            && e.message.contains("does not belong"),
        "{e}"
    );
}

#[test]
fn an_encrypted_key_says_how_to_decrypt_it() {
    let (site, _) = good_site();
    let key = site.write(
        "key.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let text = vhost(FILES);
    let (errors, _) = site.errors(&text);
    let e = at(&errors, &place(&site.conf(), &text, "\"host-ssl-key\""));
    assert!(
        e.message.contains("encrypted keys are not supported"),
        "{e}"
    );
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains(&format!("openssl pkey -in {key} -out")),
        "{e}"
    );
}

#[test]
fn a_ca_bundle_that_is_not_pem_is_an_error_at_its_key() {
    let (site, _) = good_site();
    site.write("ca.pem", "ca\n");
    let text = vhost(&format!("{FILES},\n  \"host-ssl-ca\": \"ca.pem\""));
    let (errors, _) = site.errors(&text);
    let e = at(&errors, &place(&site.conf(), &text, "\"host-ssl-ca\""));
    assert!(
        e.message.contains("ca.pem: ") && e.message.contains("not PEM"),
        "{e}"
    );
}

#[test]
fn missing_files_are_reported_once_each() {
    let site = Site::new();
    let text = vhost(&format!("{FILES},\n  \"host-ssl-ca\": \"ca.pem\""));
    let (errors, _) = site.errors(&text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    for key in ["\"host-ssl-cert\"", "\"host-ssl-key\"", "\"host-ssl-ca\""] {
        let e = at(&errors, &place(&site.conf(), &text, key));
        assert!(e.message.contains("no such file"), "{e}");
    }
}

#[test]
fn bad_openssl_keys_are_all_reported_at_their_keys() {
    let (site, _) = good_site();
    let text = vhost(&format!(
        "{FILES},\n  \"client-cert-required\": \"1\",\n  \"ciphers\": \"HIGH:ECDHE-RSA-AES128-GCM-SHA265\",\n  \"tls13-ciphers\": \"TLS_AES_512_GCM_SHA512\",\n  \"ecdh-curve\": \"prime256v2\",\n  \"ssl-option-set\": \"{}\"",
        lwsws_tls::SSL_OP_NO_TLSV1_2 | lwsws_tls::SSL_OP_NO_TLSV1_3
    ));
    let (errors, _) = site.errors(&text);
    let conf = site.conf();
    let e = at(&errors, &place(&conf, &text, "\"ciphers\""));
    assert!(e.message.contains("\"ECDHE-RSA-AES128-GCM-SHA265\""), "{e}");
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains("ECDHE-RSA-AES128-GCM-SHA256"),
        "{e}"
    );
    let e = at(&errors, &place(&conf, &text, "\"tls13-ciphers\""));
    assert!(e.message.contains("\"TLS_AES_512_GCM_SHA512\""), "{e}");
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains("TLS_AES_128_GCM_SHA256"),
        "{e}"
    );
    let e = at(&errors, &place(&conf, &text, "\"ecdh-curve\""));
    assert!(e.message.contains("\"prime256v2\""), "{e}");
    assert!(e.hint.as_deref().unwrap().contains("prime256v1"), "{e}");
    let e = at(&errors, &place(&conf, &text, "\"ssl-option-set\""));
    assert!(
        e.message
            .contains("SSL_OP_NO_TLSv1_2 and SSL_OP_NO_TLSv1_3"),
        "{e}"
    );
    let e = at(&errors, &place(&conf, &text, "\"client-cert-required\""));
    assert!(e.hint.as_deref().unwrap().contains("host-ssl-ca"), "{e}");
    assert_eq!(errors.len(), 5, "{errors:?}");
}

#[test]
fn client_cert_required_needs_a_ca_on_acme_vhosts_too() {
    let site = Site::new();
    let text = vhost(
        "  \"acme\": {\"directory\": \"https://acme.invalid/directory\"},\n  \"client-cert-required\": \"on\",\n  \"ciphers\": \"NOPE\"",
    );
    let (errors, _) = site.errors(&text);
    at(
        &errors,
        &place(&site.conf(), &text, "\"client-cert-required\""),
    );
    at(&errors, &place(&site.conf(), &text, "\"ciphers\""));
}

#[test]
fn ignored_option_bits_warn_once_per_load() {
    let (site, _) = good_site();
    // SSL_OP_ALL's workarounds, on two vhosts; clearing SSL_OP_NO_TLSv1 is ignored too.
    let one = format!(
        "{{\"name\": \"a\", \"port\": \"8443\", {f}, \"ssl-option-set\": \"2147485780\", \"ssl-option-clear\": \"67108864\"}}",
        f = FILES.replace('\n', " ")
    );
    let two = one.replace("\"a\"", "\"b\"");
    let text = format!("{{\"vhosts\": [\n{one},\n{two}\n]}}\n");
    let loaded = site.ok(&text);
    let set_place = place(&site.conf(), &text, "\"ssl-option-set\"");
    let on_set: Vec<&Diagnostic> = loaded
        .warnings
        .iter()
        .filter(|w| w.place == set_place)
        .collect();
    let names: Vec<&str> = on_set
        .iter()
        .map(|w| w.message.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "SSL_OP_LEGACY_SERVER_CONNECT",
            "SSL_OP_TLSEXT_PADDING",
            "SSL_OP_SAFARI_ECDHE_ECDSA_BUG",
            "SSL_OP_CRYPTOPRO_TLSEXT_BUG",
        ],
        "{:?}",
        loaded.warnings
    );
    let w = at(
        &loaded.warnings,
        &place(&site.conf(), &text, "\"ssl-option-clear\""),
    );
    assert!(w.message.starts_with("SSL_OP_NO_TLSv1 "), "{w}");
    // Nothing more: the second vhost repeats none of them.
    assert_eq!(loaded.warnings.len(), 5, "{:?}", loaded.warnings);
}

#[test]
fn suites_rustls_lacks_are_skipped_with_a_warning() {
    let (site, _) = good_site();
    let text = vhost(&format!(
        "{FILES},\n  \"ciphers\": \"ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384:@STRENGTH\",\n  \"ecdh-curve\": \"secp521r1:secp384r1\""
    ));
    let loaded = site.ok(&text);
    let w = at(&loaded.warnings, &place(&site.conf(), &text, "\"ciphers\""));
    assert!(w.message.contains("DHE-RSA-AES256-GCM-SHA384"), "{w}");
    let w = at(
        &loaded.warnings,
        &place(&site.conf(), &text, "\"ecdh-curve\""),
    );
    assert!(w.message.contains("secp521r1"), "{w}");
}

#[test]
fn suites_that_cannot_use_the_key() {
    let (site, _) = good_site();
    // An ECDSA key with RSA suites only: TLS 1.2 clients would fail.
    let text = vhost(&format!(
        "{FILES},\n  \"ciphers\": \"ECDHE-RSA-AES128-GCM-SHA256\""
    ));
    let loaded = site.ok(&text);
    let w = at(&loaded.warnings, &place(&site.conf(), &text, "\"ciphers\""));
    assert!(w.message.contains("TLS 1.2 clients will fail"), "{w}");
    // …and with TLS 1.3 off, nobody could connect.
    let text = vhost(&format!(
        "{FILES},\n  \"ciphers\": \"ECDHE-RSA-AES128-GCM-SHA256\",\n  \"ssl-option-set\": \"{}\"",
        lwsws_tls::SSL_OP_NO_TLSV1_3
    ));
    let (errors, _) = site.errors(&text);
    let e = at(&errors, &place(&site.conf(), &text, "\"ciphers\""));
    assert!(e.message.contains("key"), "{e}");
}

#[test]
fn ignore_missing_cert_warns_for_missing_files_only() {
    let site = Site::new();
    let text = vhost(&format!("{FILES},\n  \"ignore-missing-cert\": \"1\""));
    let loaded = site.ok(&text);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    // Present but broken is still an error.
    site.write("cert.pem", "cert\n");
    site.write("key.pem", "key\n");
    let (errors, _) = site.errors(&text);
    at(&errors, &place(&site.conf(), &text, "\"host-ssl-cert\""));
}

#[test]
fn material_is_not_read_for_vhosts_without_tls() {
    let site = Site::new();
    let text = vhost("  \"ciphers\": \"NOPE\"");
    let loaded = site.ok(&text);
    assert!(
        loaded.warnings[0]
            .message
            .contains("no effect on a vhost without TLS"),
        "{:?}",
        loaded.warnings
    );
}
