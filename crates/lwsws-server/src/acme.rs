//! ACME challenge responses a worker serves while the ACME process has an
//! order validated (SPEC §5.1): HTTP-01 key authorizations under
//! `/.well-known/acme-challenge/` on plain HTTP, and TLS-ALPN-01
//! certificates for handshakes that offer only `acme-tls/1`. The supervisor
//! replaces the whole set whenever it changes.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Default)]
struct Set {
    /// token → (host name, key authorization).
    http01: HashMap<String, (String, String)>,
    /// host name (lower case) → handshake configuration.
    alpn: HashMap<String, Arc<rustls::ServerConfig>>,
}

/// The responses being served.
#[derive(Default)]
pub struct AcmeResponses(RwLock<Set>);

/// One response, as the supervisor passes it on: the JSON form of
/// `lwsws_acme::Challenge`, which produces it.
#[derive(Debug, serde::Deserialize)]
pub enum Response {
    Http01 {
        name: String,
        token: String,
        key_authorization: String,
    },
    TlsAlpn01 {
        name: String,
        cert_pem: String,
        key_pem: String,
    },
}

impl AcmeResponses {
    /// Replaces every response; a TLS-ALPN-01 certificate that does not
    /// load is logged and left out.
    pub fn replace(&self, responses: Vec<Response>) {
        let mut set = Set::default();
        for r in responses {
            match r {
                Response::Http01 {
                    name,
                    token,
                    key_authorization,
                } => {
                    set.http01
                        .insert(token, (name.to_ascii_lowercase(), key_authorization));
                }
                Response::TlsAlpn01 {
                    name,
                    cert_pem,
                    key_pem,
                } => match alpn_config(&cert_pem, &key_pem) {
                    Ok(c) => {
                        set.alpn.insert(name.to_ascii_lowercase(), Arc::new(c));
                    }
                    Err(e) => tracing::error!(name, "acme: TLS-ALPN-01 certificate: {e}"),
                },
            }
        }
        if let Ok(mut s) = self.0.write() {
            *s = set;
        }
    }

    /// The key authorization for `token`, if it was issued for `host`.
    pub fn http01(&self, host: &str, token: &str) -> Option<String> {
        let s = self.0.read().ok()?;
        let (name, ka) = s.http01.get(token)?;
        name.eq_ignore_ascii_case(host).then(|| ka.clone())
    }

    /// The TLS-ALPN-01 configuration for `host`, if an order needs one.
    pub fn alpn(&self, host: &str) -> Option<Arc<rustls::ServerConfig>> {
        let s = self.0.read().ok()?;
        if s.alpn.is_empty() {
            return None;
        }
        s.alpn.get(&host.to_ascii_lowercase()).cloned()
    }
}

fn alpn_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    // `with_single_cert` would refuse the critical acmeIdentifier extension
    // (webpki knows nothing of it); the CA is the only one to look at it.
    let provider = lwsws_tls::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    let certified = Arc::new(rustls::sign::CertifiedKey::new(certs, signing));
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified)));
    c.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(c)
}

/// Always the challenge certificate.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON the ACME process sends (`lwsws_acme::Challenge`).
    #[test]
    fn responses_read_the_acme_process_json() {
        let v = serde_json::json!([
            {"Http01": {"name": "A.test", "token": "t", "key_authorization": "t.k"}}
        ]);
        let set: Vec<Response> = serde_json::from_value(v).unwrap();
        let r = AcmeResponses::default();
        r.replace(set);
        assert_eq!(r.http01("a.test", "t").as_deref(), Some("t.k"));
        assert_eq!(r.http01("b.test", "t"), None);
    }
}
