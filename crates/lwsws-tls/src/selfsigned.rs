//! A temporary self-signed certificate, for a vhost whose certificate is not
//! there yet (`ignore-missing-cert`; later an ACME vhost before its first
//! certificate), so its TLS port answers instead of failing every handshake.

use crate::Material;

/// Why a temporary certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a temporary self-signed certificate for {name}: {source}")]
pub struct SelfSignedError {
    pub name: String,
    #[source]
    pub source: rcgen::Error,
}

/// An ECDSA P-256 certificate for `name` (a host name or `*.domain`),
/// valid from now for 90 days, with no CA.
pub fn self_signed(name: &str) -> Result<Material, SelfSignedError> {
    let err = |source| SelfSignedError {
        name: name.to_string(),
        source,
    };
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(Material {
        cert_pem: cert.pem().into_bytes(),
        key_pem: key.serialize_pem().into_bytes(),
        ca_pem: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_usable_material_for_the_name() {
        let m = self_signed("*.example.test").expect("made");
        crate::check_material(&m).expect("a matching certificate and key");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&m.cert_pem).expect("PEM");
        let cert = pem.parse_x509().expect("X.509");
        let san = cert
            .subject_alternative_name()
            .expect("extension")
            .expect("present");
        assert!(format!("{:?}", san.value).contains("*.example.test"));
        assert!(cert.subject().to_string().contains("CN=*.example.test"));
    }
}
