//! TLS for lwsws: the PEM key material of a vhost, the checks that find a bad
//! or mismatched certificate at load time, and the rustls `ServerConfig` it
//! serves with, the OpenSSL-only configuration keys (`ciphers`,
//! `tls13-ciphers`, `ecdh-curve`, `ssl-option-set/clear`) mapped onto rustls.
//!
//! The root supervisor reads the files ([`read_material`]) and hands the
//! bytes to its unprivileged workers, which build a [`server_config`] per
//! vhost. Configuration validation uses [`check_material`] and the pure
//! parsers so that `--check`, start-up and reload report the same errors.
//! This crate depends on no other lwsws crate.

mod material;
mod names;
mod options;
mod selfsigned;
mod server;
mod subject;

pub use material::{
    Material, MaterialError, Which, certified_key, check_material, material_problems, read_material,
};
pub use names::{
    SUPPORTED_CURVES, SUPPORTED_TLS12_CIPHERS, SUPPORTED_TLS13_CIPHERS, parse_ciphers,
    parse_ciphers_with_warnings, parse_curves, parse_curves_with_warnings, parse_tls13_ciphers,
    parse_tls13_ciphers_with_warnings,
};
pub use options::{
    SSL_OP_CIPHER_SERVER_PREFERENCE, SSL_OP_NO_TICKET, SSL_OP_NO_TLSV1_2, SSL_OP_NO_TLSV1_3,
    ignored_options, protocol_versions,
};
pub use selfsigned::{SelfSignedError, self_signed};
pub use server::{Params, TlsError, check_params, server_config};
pub use subject::client_subject;

/// The crypto provider of every TLS server configuration: ring for the
/// record layer and key exchange, aws-lc-rs for the certificate's private
/// key, whose RSA signing (the AVX-512 IFMA code OpenSSL also has) makes a
/// full RSA-2048 handshake 1.6 times as fast as ring's; aws-lc-rs's record
/// layer was slower than ring's on small responses (docs/performance.md).
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::CryptoProvider {
        key_provider: rustls::crypto::aws_lc_rs::default_provider().key_provider,
        ..rustls::crypto::ring::default_provider()
    }
}
