//! The PEM files of a TLS vhost: read as bytes by the privileged side,
//! parsed and checked wherever they are used.

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files larger than this are not PEM material (and `/dev/zero` must not hang a load).
const MAX_FILE: u64 = 16 << 20;

/// PEM bytes of one TLS vhost, read by the root supervisor and handed to the worker.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Material {
    /// Certificate chain, end-entity certificate first.
    #[serde(with = "pem_text")]
    pub cert_pem: Vec<u8>,
    /// The private key; never logged.
    #[serde(with = "pem_text")]
    pub key_pem: Vec<u8>,
    /// CA bundle that signs acceptable client certificates (`host-ssl-ca`).
    #[serde(with = "opt_pem_text")]
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|c| format!("{} bytes", c.len())),
            )
            .finish()
    }
}

/// Which of a vhost's files a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cert,
    Key,
    Ca,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Which::Cert => "certificate",
            Which::Key => "private key",
            Which::Ca => "CA bundle",
        })
    }
}

/// What is wrong with a vhost's key material, and in which file.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// The file could not be read.
    #[error("cannot read the {which} file {}: {source}", path.display())]
    Io {
        which: Which,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The certificate chain is not usable.
    #[error("certificate: {what}")]
    Cert { what: String },
    /// The private key is not usable.
    #[error("private key: {what}")]
    Key { what: String },
    /// The private key is encrypted (rustls has no passphrase support).
    #[error(
        "private key: encrypted keys are not supported; decrypt it with openssl pkey -in K -out K2"
    )]
    EncryptedKey,
    /// The CA bundle is not usable.
    #[error("CA bundle: {what}")]
    Ca { what: String },
    /// The key is not the one the certificate was issued for.
    #[error("the private key does not belong to the certificate (their public keys differ)")]
    Mismatch,
}

impl MaterialError {
    /// The file the problem is in (a mismatch is reported against the key).
    pub fn which(&self) -> Which {
        match self {
            MaterialError::Io { which, .. } => *which,
            MaterialError::Cert { .. } => Which::Cert,
            MaterialError::Key { .. } | MaterialError::EncryptedKey | MaterialError::Mismatch => {
                Which::Key
            }
            MaterialError::Ca { .. } => Which::Ca,
        }
    }
}

/// Reads a vhost's certificate chain, key and optional CA bundle (no parsing).
pub fn read_material(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
) -> Result<Material, MaterialError> {
    Ok(Material {
        cert_pem: read_file(Which::Cert, cert)?,
        key_pem: read_file(Which::Key, key)?,
        ca_pem: ca.map(|p| read_file(Which::Ca, p)).transpose()?,
    })
}

fn read_file(which: Which, path: &Path) -> Result<Vec<u8>, MaterialError> {
    let io = |source| MaterialError::Io {
        which,
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io(std::io::Error::other(format!(
            "larger than {} MiB, so not a PEM file",
            MAX_FILE >> 20
        ))));
    }
    Ok(bytes)
}

/// Parses everything and checks it fits: chain, key (and that it matches the certificate), CA bundle.
pub fn check_material(m: &Material) -> Result<(), MaterialError> {
    match material_problems(m).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every problem [`check_material`] would find, each file on its own, so a load reports them all.
pub fn material_problems(m: &Material) -> Vec<MaterialError> {
    let mut problems = Vec::new();
    let chain = cert_chain(&m.cert_pem)
        .map_err(|e| problems.push(e))
        .is_ok();
    let key = private_key(&m.key_pem)
        .map_err(|e| problems.push(e))
        .is_ok();
    if chain && key {
        let provider = crate::provider();
        if let Err(e) = certified_key_with(m, &provider) {
            problems.push(e);
        }
    }
    if let Some(ca) = &m.ca_pem
        && let Err(e) = client_roots(ca)
    {
        problems.push(e);
    }
    problems
}

/// The checked certificate chain and signing key, for a certificate resolver.
pub fn certified_key(m: &Material) -> Result<Arc<CertifiedKey>, MaterialError> {
    let provider = crate::provider();
    certified_key_with(m, &provider).map(Arc::new)
}

pub(crate) fn certified_key_with(
    m: &Material,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, MaterialError> {
    let chain = cert_chain(&m.cert_pem)?;
    let key = private_key(&m.key_pem)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| MaterialError::Key {
            what: format!("unsupported or malformed key ({e}); RSA, ECDSA P-256/P-384 and Ed25519 keys are supported"),
        })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(MaterialError::Mismatch)
        }
        // The key cannot tell its public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(ck),
        Err(e) => Err(MaterialError::Cert {
            what: format!("the first certificate is not usable: {e}"),
        }),
    }
}

/// Every CERTIFICATE of the chain file, each a well-formed X.509 certificate.
pub(crate) fn cert_chain(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let what = |what: String| MaterialError::Cert { what };
    let chain = certificates(pem_bytes).map_err(what)?;
    if chain.is_empty() {
        return Err(what(no_section(pem_bytes, "CERTIFICATE", "x509")));
    }
    for (i, c) in chain.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(c) {
            return Err(what(format!(
                "certificate #{} is not a valid X.509 certificate: {e}",
                i + 1
            )));
        }
    }
    Ok(chain)
}

/// The CA bundle as a root store for client-certificate verification.
pub(crate) fn client_roots(pem_bytes: &[u8]) -> Result<RootCertStore, MaterialError> {
    let what = |what: String| MaterialError::Ca { what };
    let certs = certificates(pem_bytes).map_err(what)?;
    if certs.is_empty() {
        return Err(what(no_section(pem_bytes, "CERTIFICATE", "x509")));
    }
    let mut roots = RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        if let Err(e) = roots.add(c) {
            return Err(what(format!(
                "certificate #{} cannot be used as a trust anchor: {e}",
                i + 1
            )));
        }
    }
    Ok(roots)
}

fn certificates(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("malformed PEM: {}", pem_error(&e)))
}

/// The first RSA (PKCS#1), EC (SEC1) or PKCS#8 private key of the key file.
pub(crate) fn private_key(pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, MaterialError> {
    let labels = labels(pem_bytes);
    let encrypted_legacy = pem_bytes
        .windows(b"Proc-Type: 4,ENCRYPTED".len())
        .any(|w| w == b"Proc-Type: 4,ENCRYPTED");
    if encrypted_legacy
        || (labels.iter().any(|l| l == "ENCRYPTED PRIVATE KEY")
            && !labels.iter().any(|l| is_key_label(l)))
    {
        return Err(MaterialError::EncryptedKey);
    }
    let what = |what: String| MaterialError::Key { what };
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem_bytes) {
        let (kind, der) = item.map_err(|e| what(format!("malformed PEM: {}", pem_error(&e))))?;
        let key = match kind {
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            _ => continue,
        };
        return Ok(key);
    }
    if let Some(other) = labels.iter().find(|l| l.ends_with("PRIVATE KEY")) {
        return Err(what(format!(
            "it holds a {other}, but only RSA PRIVATE KEY, EC PRIVATE KEY and (PKCS#8) PRIVATE KEY are supported"
        )));
    }
    Err(what(no_section(pem_bytes, "PRIVATE KEY", "pkey")))
}

fn is_key_label(l: &str) -> bool {
    matches!(l, "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY")
}

/// Says why a file has no `want` section: not PEM at all, DER, or other sections.
fn no_section(pem_bytes: &[u8], want: &str, openssl_cmd: &str) -> String {
    let labels = labels(pem_bytes);
    if labels.is_empty() {
        if pem_bytes.first() == Some(&0x30) {
            return format!(
                "not PEM: it looks like binary DER; convert it with openssl {openssl_cmd} -inform der -in FILE -out FILE.pem"
            );
        }
        if pem_bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return "the file is empty".to_string();
        }
        return format!("not PEM: no \"-----BEGIN {want}-----\" line");
    }
    let mut found: Vec<&str> = Vec::new();
    for l in &labels {
        if !found.contains(&l.as_str()) {
            found.push(l);
        }
    }
    let looks_swapped = if want == "CERTIFICATE" {
        found.iter().any(|l| l.ends_with("PRIVATE KEY"))
    } else {
        found.contains(&"CERTIFICATE")
    };
    let swapped = if looks_swapped {
        "; are the certificate and key files swapped?"
    } else {
        ""
    };
    format!(
        "holds no {want}, only {}{swapped}",
        found
            .iter()
            .map(|l| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The labels of every `-----BEGIN X-----` line, in order.
fn labels(pem_bytes: &[u8]) -> Vec<String> {
    pem_bytes
        .split(|b| *b == b'\n' || *b == b'\r')
        .filter_map(|line| {
            let rest = line.strip_prefix(b"-----BEGIN ")?;
            let end = rest.windows(5).position(|w| w == b"-----")?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        })
        .collect()
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => {
            format!("bad line \"{}\"", String::from_utf8_lossy(line).trim())
        }
        pem::Error::Base64Decode(_) => "a section is not valid base64".to_string(),
        other => other.to_string(),
    }
}

/// PEM is ASCII: carry it as a JSON string, not an array of numbers.
mod pem_text {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(v) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.serialize_bytes(v),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(BytesVisitor)
    }

    pub(super) struct BytesVisitor;

    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("PEM text or bytes")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

mod opt_pem_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_some(&Text(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Owned>::deserialize(d)?.map(|o| o.0))
    }

    struct Text<'a>(&'a [u8]);

    impl serde::Serialize for Text<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::pem_text::serialize(self.0, s)
        }
    }

    struct Owned(Vec<u8>);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::pem_text::deserialize(d).map(Owned)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn labels_and_reasons() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(labels(pem), vec!["CERTIFICATE".to_string()]);
        assert!(no_section(b"\x30\x82\x01", "CERTIFICATE", "x509").contains("DER"));
        assert!(no_section(b"hello", "CERTIFICATE", "x509").contains("not PEM"));
        assert!(no_section(b"\n", "CERTIFICATE", "x509").contains("empty"));
        assert!(no_section(pem, "PRIVATE KEY", "pkey").contains("swapped"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let m = Material {
            cert_pem: b"CERT".to_vec(),
            key_pem: b"SECRET-KEY-BYTES".to_vec(),
            ca_pem: None,
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn material_travels_as_json_text() {
        let m = Material {
            cert_pem: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
            key_pem: vec![0xff, 0x00, b'k'],
            ca_pem: Some(b"ca".to_vec()),
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.contains("\"-----BEGIN CERTIFICATE-----\\n\""),
            "{json}"
        );
        let back: Material = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let none = Material { ca_pem: None, ..m };
        let back: Material = serde_json::from_str(&serde_json::to_string(&none).unwrap()).unwrap();
        assert_eq!(back, none);
    }
}
