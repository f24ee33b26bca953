//! The rustls `ServerConfig` of one TLS vhost.

use crate::material::{self, Material, MaterialError};
use crate::names;
use crate::options::{self, SSL_OP_CIPHER_SERVER_PREFERENCE, SSL_OP_NO_TICKET};
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{ServerConfig, SupportedCipherSuite};
use std::sync::Arc;

/// Sessions kept for resumption by session ID (TLS 1.2) or stateful tickets.
const SESSION_CACHE: usize = 1024;

/// Everything the `ServerConfig` of one vhost is built from.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    pub material: &'a Material,
    /// `client-cert-required`: reject clients without a certificate signed by the CA bundle.
    pub client_cert_required: bool,
    /// `ciphers`: OpenSSL cipher string for TLS 1.2.
    pub ciphers: Option<&'a str>,
    /// `tls13-ciphers`: OpenSSL ciphersuites list for TLS 1.3.
    pub tls13_ciphers: Option<&'a str>,
    /// `ecdh-curve`: key-exchange groups.
    pub ecdh_curve: Option<&'a str>,
    pub ssl_option_set: u64,
    pub ssl_option_clear: u64,
    /// ALPN protocols offered, in order of preference (e.g. `h2`, `http/1.1`).
    pub alpn: &'a [Vec<u8>],
}

/// Why a vhost's TLS configuration cannot be built; each variant names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Material(#[from] MaterialError),
    #[error("\"ciphers\": {0}")]
    Ciphers(String),
    #[error("\"tls13-ciphers\": {0}")]
    Tls13Ciphers(String),
    #[error("\"ecdh-curve\": {0}")]
    Curves(String),
    #[error("\"ssl-option-set\": {0}")]
    Versions(String),
    #[error(
        "\"client-cert-required\" needs a CA bundle (\"host-ssl-ca\") to verify client certificates"
    )]
    ClientCertWithoutCa,
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the rustls ServerConfig of a vhost, logging each setting rustls cannot honour.
pub fn server_config(p: &Params) -> Result<Arc<ServerConfig>, TlsError> {
    let built = build(p)?;
    for w in &built.notes {
        tracing::warn!("{w}");
    }
    for w in &built.cross {
        tracing::warn!("\"ciphers\": {w}");
    }
    Ok(Arc::new(built.config))
}

/// Builds the configuration without logging, for validation: the first error, or the
/// warnings only the whole shows (the parsers and [`crate::ignored_options`] give the rest).
pub fn check_params(p: &Params) -> Result<Vec<String>, TlsError> {
    build(p).map(|built| built.cross)
}

struct Built {
    config: ServerConfig,
    /// Warnings of the parsers and of ignored option bits.
    notes: Vec<String>,
    /// Warnings about how the cipher suites fit the key.
    cross: Vec<String>,
}

fn build(p: &Params) -> Result<Built, TlsError> {
    let mut warnings: Vec<String> = Vec::new();
    let mut cross: Vec<String> = Vec::new();
    let versions = options::protocol_versions(p.ssl_option_set, p.ssl_option_clear)
        .map_err(TlsError::Versions)?;
    let tls13_on = versions.contains(&&rustls::version::TLS13);
    let tls12_on = versions.contains(&&rustls::version::TLS12);
    let base = crate::provider();

    let mut tls12: Vec<SupportedCipherSuite> = base
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .copied()
        .collect();
    if let Some(s) = p.ciphers {
        let (suites, w) = names::parse_ciphers_with_warnings(s).map_err(TlsError::Ciphers)?;
        tls12 = suites;
        warnings.extend(w.into_iter().map(|w| format!("\"ciphers\": {w}")));
    }
    let mut tls13: Vec<SupportedCipherSuite> = base
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    if let Some(s) = p.tls13_ciphers {
        let (suites, w) =
            names::parse_tls13_ciphers_with_warnings(s).map_err(TlsError::Tls13Ciphers)?;
        tls13 = suites;
        warnings.extend(w.into_iter().map(|w| format!("\"tls13-ciphers\": {w}")));
    }
    let mut kx_groups = base.kx_groups.clone();
    if let Some(s) = p.ecdh_curve {
        let (groups, w) = names::parse_curves_with_warnings(s).map_err(TlsError::Curves)?;
        kx_groups = groups;
        warnings.extend(w.into_iter().map(|w| format!("\"ecdh-curve\": {w}")));
    }
    for name in options::ignored_options(p.ssl_option_set, p.ssl_option_clear) {
        warnings.push(format!(
            "SSL option {name} has no effect with rustls; ignored"
        ));
    }

    let mut cipher_suites = Vec::new();
    if tls13_on {
        cipher_suites.extend(tls13);
    }
    if tls12_on {
        cipher_suites.extend(tls12.iter().copied());
    }
    let provider = Arc::new(CryptoProvider {
        cipher_suites,
        kx_groups,
        ..base
    });

    let certified = material::certified_key_with(p.material, &provider)?;
    let key_alg = certified.key.algorithm();
    if tls12_on
        && !tls12
            .iter()
            .any(|s| s.usable_for_signature_algorithm(key_alg))
    {
        let why = format!(
            "none of the TLS 1.2 suites left can be used with the {key_alg:?} key of the certificate"
        );
        if !tls13_on {
            return Err(TlsError::Ciphers(why));
        }
        cross.push(format!("{why}; TLS 1.2 clients will fail"));
    }

    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let builder = match &p.material.ca_pem {
        Some(ca) => {
            let roots = material::client_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if p.client_cert_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if p.client_cert_required => return Err(TlsError::ClientCertWithoutCa),
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));

    let eff = options::effective(p.ssl_option_set, p.ssl_option_clear);
    config.ignore_client_order = eff & SSL_OP_CIPHER_SERVER_PREFERENCE != 0;
    if eff & SSL_OP_NO_TICKET == 0 {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.alpn_protocols = p.alpn.to_vec();
    Ok(Built {
        config,
        notes: warnings,
        cross,
    })
}
