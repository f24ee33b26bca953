//! OpenSSL's names for cipher suites and curves, mapped onto what rustls's
//! *ring* provider implements. Configurations written for the original
//! lwsws (OpenSSL) keep loading: names of suites that rustls lacks and
//! OpenSSL keywords that select nothing here are skipped with a warning; a
//! name that OpenSSL would not know either is an error.

use rustls::crypto::SupportedKxGroup;
use rustls::{CipherSuite, SupportedCipherSuite};

/// TLS 1.2 suites rustls implements, by OpenSSL name (any IANA name works too).
pub const SUPPORTED_TLS12_CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

/// TLS 1.3 suites rustls implements, as `tls13-ciphers` names them.
pub const SUPPORTED_TLS13_CIPHERS: &[&str] = &[
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Key-exchange groups rustls implements, as `ecdh-curve` may name them.
pub const SUPPORTED_CURVES: &[&str] = &["X25519", "P-256 (prime256v1)", "P-384 (secp384r1)"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Rsa,
    Ecdsa,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Enc {
    Aes128,
    Aes256,
    Chacha,
}

struct Row {
    openssl: &'static str,
    iana: &'static str,
    id: CipherSuite,
    auth: Auth,
    enc: Enc,
}

/// The TLS 1.2 suites of the ring provider, in its order of preference.
const TLS12: [Row; 6] = [
    Row {
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        id: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        auth: Auth::Ecdsa,
        enc: Enc::Aes256,
    },
    Row {
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        id: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        auth: Auth::Ecdsa,
        enc: Enc::Aes128,
    },
    Row {
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        id: CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        auth: Auth::Ecdsa,
        enc: Enc::Chacha,
    },
    Row {
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        iana: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        id: CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        auth: Auth::Rsa,
        enc: Enc::Aes256,
    },
    Row {
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        id: CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        auth: Auth::Rsa,
        enc: Enc::Aes128,
    },
    Row {
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        iana: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        id: CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        auth: Auth::Rsa,
        enc: Enc::Chacha,
    },
];

/// TLS 1.3 suites: the OpenSSL/IANA name, rustls's spelling, and the suite.
const TLS13: [(&str, &str, CipherSuite); 3] = [
    (
        "TLS_AES_256_GCM_SHA384",
        "TLS13_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// TLS 1.3 suites OpenSSL knows and rustls does not implement.
const TLS13_UNSUPPORTED: &[&str] = &["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"];

/// TLS 1.2 and older suites OpenSSL knows (OpenSSL name, IANA name) that
/// rustls does not implement: those of OpenSSL 3 and some older ones.
const TLS12_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "DHE-DSS-AES256-GCM-SHA384",
        "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384",
    ),
    (
        "DHE-RSA-AES256-GCM-SHA384",
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "DHE-RSA-CHACHA20-POLY1305",
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-CCM8",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
    ),
    ("ECDHE-ECDSA-AES256-CCM", "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    ("DHE-RSA-AES256-CCM8", "TLS_DHE_RSA_WITH_AES_256_CCM_8"),
    ("DHE-RSA-AES256-CCM", "TLS_DHE_RSA_WITH_AES_256_CCM"),
    (
        "ECDHE-ECDSA-ARIA256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384",
    ),
    (
        "ECDHE-ARIA256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384",
    ),
    (
        "DHE-DSS-ARIA256-GCM-SHA384",
        "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384",
    ),
    (
        "DHE-RSA-ARIA256-GCM-SHA384",
        "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384",
    ),
    (
        "ADH-AES256-GCM-SHA384",
        "TLS_DH_anon_WITH_AES_256_GCM_SHA384",
    ),
    (
        "DHE-DSS-AES128-GCM-SHA256",
        "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256",
    ),
    (
        "DHE-RSA-AES128-GCM-SHA256",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES128-CCM8",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
    ),
    ("ECDHE-ECDSA-AES128-CCM", "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    ("DHE-RSA-AES128-CCM8", "TLS_DHE_RSA_WITH_AES_128_CCM_8"),
    ("DHE-RSA-AES128-CCM", "TLS_DHE_RSA_WITH_AES_128_CCM"),
    (
        "ECDHE-ECDSA-ARIA128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256",
    ),
    (
        "ECDHE-ARIA128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256",
    ),
    (
        "DHE-DSS-ARIA128-GCM-SHA256",
        "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256",
    ),
    (
        "DHE-RSA-ARIA128-GCM-SHA256",
        "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256",
    ),
    (
        "ADH-AES128-GCM-SHA256",
        "TLS_DH_anon_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    ),
    (
        "ECDHE-RSA-AES256-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    ),
    (
        "DHE-RSA-AES256-SHA256",
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    ),
    (
        "DHE-DSS-AES256-SHA256",
        "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256",
    ),
    (
        "ECDHE-ECDSA-CAMELLIA256-SHA384",
        "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384",
    ),
    (
        "ECDHE-RSA-CAMELLIA256-SHA384",
        "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384",
    ),
    (
        "DHE-RSA-CAMELLIA256-SHA256",
        "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256",
    ),
    (
        "DHE-DSS-CAMELLIA256-SHA256",
        "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256",
    ),
    ("ADH-AES256-SHA256", "TLS_DH_anon_WITH_AES_256_CBC_SHA256"),
    (
        "ADH-CAMELLIA256-SHA256",
        "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES128-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "DHE-RSA-AES128-SHA256",
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "DHE-DSS-AES128-SHA256",
        "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256",
    ),
    (
        "ECDHE-ECDSA-CAMELLIA128-SHA256",
        "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    (
        "ECDHE-RSA-CAMELLIA128-SHA256",
        "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    (
        "DHE-RSA-CAMELLIA128-SHA256",
        "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    (
        "DHE-DSS-CAMELLIA128-SHA256",
        "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    ("ADH-AES128-SHA256", "TLS_DH_anon_WITH_AES_128_CBC_SHA256"),
    (
        "ADH-CAMELLIA128-SHA256",
        "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    ),
    ("ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    ("DHE-RSA-AES256-SHA", "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    ("DHE-DSS-AES256-SHA", "TLS_DHE_DSS_WITH_AES_256_CBC_SHA"),
    (
        "DHE-RSA-CAMELLIA256-SHA",
        "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    ),
    (
        "DHE-DSS-CAMELLIA256-SHA",
        "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA",
    ),
    ("AECDH-AES256-SHA", "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"),
    ("ADH-AES256-SHA", "TLS_DH_anon_WITH_AES_256_CBC_SHA"),
    (
        "ADH-CAMELLIA256-SHA",
        "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA",
    ),
    (
        "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    ),
    ("ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    ("DHE-RSA-AES128-SHA", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    ("DHE-DSS-AES128-SHA", "TLS_DHE_DSS_WITH_AES_128_CBC_SHA"),
    (
        "DHE-RSA-CAMELLIA128-SHA",
        "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
    ),
    (
        "DHE-DSS-CAMELLIA128-SHA",
        "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA",
    ),
    ("AECDH-AES128-SHA", "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
    ("ADH-AES128-SHA", "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (
        "ADH-CAMELLIA128-SHA",
        "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA",
    ),
    (
        "RSA-PSK-AES256-GCM-SHA384",
        "TLS_RSA_PSK_WITH_AES_256_GCM_SHA384",
    ),
    (
        "DHE-PSK-AES256-GCM-SHA384",
        "TLS_DHE_PSK_WITH_AES_256_GCM_SHA384",
    ),
    (
        "RSA-PSK-CHACHA20-POLY1305",
        "TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "DHE-PSK-CHACHA20-POLY1305",
        "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-PSK-CHACHA20-POLY1305",
        "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
    ),
    ("DHE-PSK-AES256-CCM8", "TLS_PSK_DHE_WITH_AES_256_CCM_8"),
    ("DHE-PSK-AES256-CCM", "TLS_DHE_PSK_WITH_AES_256_CCM"),
    (
        "RSA-PSK-ARIA256-GCM-SHA384",
        "TLS_RSA_PSK_WITH_ARIA_256_GCM_SHA384",
    ),
    (
        "DHE-PSK-ARIA256-GCM-SHA384",
        "TLS_DHE_PSK_WITH_ARIA_256_GCM_SHA384",
    ),
    ("AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    ("AES256-CCM8", "TLS_RSA_WITH_AES_256_CCM_8"),
    ("AES256-CCM", "TLS_RSA_WITH_AES_256_CCM"),
    ("ARIA256-GCM-SHA384", "TLS_RSA_WITH_ARIA_256_GCM_SHA384"),
    ("PSK-AES256-GCM-SHA384", "TLS_PSK_WITH_AES_256_GCM_SHA384"),
    (
        "PSK-CHACHA20-POLY1305",
        "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    ),
    ("PSK-AES256-CCM8", "TLS_PSK_WITH_AES_256_CCM_8"),
    ("PSK-AES256-CCM", "TLS_PSK_WITH_AES_256_CCM"),
    ("PSK-ARIA256-GCM-SHA384", "TLS_PSK_WITH_ARIA_256_GCM_SHA384"),
    (
        "RSA-PSK-AES128-GCM-SHA256",
        "TLS_RSA_PSK_WITH_AES_128_GCM_SHA256",
    ),
    (
        "DHE-PSK-AES128-GCM-SHA256",
        "TLS_DHE_PSK_WITH_AES_128_GCM_SHA256",
    ),
    ("DHE-PSK-AES128-CCM8", "TLS_PSK_DHE_WITH_AES_128_CCM_8"),
    ("DHE-PSK-AES128-CCM", "TLS_DHE_PSK_WITH_AES_128_CCM"),
    (
        "RSA-PSK-ARIA128-GCM-SHA256",
        "TLS_RSA_PSK_WITH_ARIA_128_GCM_SHA256",
    ),
    (
        "DHE-PSK-ARIA128-GCM-SHA256",
        "TLS_DHE_PSK_WITH_ARIA_128_GCM_SHA256",
    ),
    ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    ("AES128-CCM8", "TLS_RSA_WITH_AES_128_CCM_8"),
    ("AES128-CCM", "TLS_RSA_WITH_AES_128_CCM"),
    ("ARIA128-GCM-SHA256", "TLS_RSA_WITH_ARIA_128_GCM_SHA256"),
    ("PSK-AES128-GCM-SHA256", "TLS_PSK_WITH_AES_128_GCM_SHA256"),
    ("PSK-AES128-CCM8", "TLS_PSK_WITH_AES_128_CCM_8"),
    ("PSK-AES128-CCM", "TLS_PSK_WITH_AES_128_CCM"),
    ("PSK-ARIA128-GCM-SHA256", "TLS_PSK_WITH_ARIA_128_GCM_SHA256"),
    ("AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    ("CAMELLIA256-SHA256", "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    ("AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    ("CAMELLIA128-SHA256", "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (
        "ECDHE-PSK-AES256-CBC-SHA384",
        "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384",
    ),
    (
        "ECDHE-PSK-AES256-CBC-SHA",
        "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
    ),
    (
        "SRP-DSS-AES-256-CBC-SHA",
        "TLS_SRP_SHA_DSS_WITH_AES_256_CBC_SHA",
    ),
    (
        "SRP-RSA-AES-256-CBC-SHA",
        "TLS_SRP_SHA_RSA_WITH_AES_256_CBC_SHA",
    ),
    ("SRP-AES-256-CBC-SHA", "TLS_SRP_SHA_WITH_AES_256_CBC_SHA"),
    (
        "RSA-PSK-AES256-CBC-SHA384",
        "TLS_RSA_PSK_WITH_AES_256_CBC_SHA384",
    ),
    (
        "DHE-PSK-AES256-CBC-SHA384",
        "TLS_DHE_PSK_WITH_AES_256_CBC_SHA384",
    ),
    ("RSA-PSK-AES256-CBC-SHA", "TLS_RSA_PSK_WITH_AES_256_CBC_SHA"),
    ("DHE-PSK-AES256-CBC-SHA", "TLS_DHE_PSK_WITH_AES_256_CBC_SHA"),
    (
        "ECDHE-PSK-CAMELLIA256-SHA384",
        "TLS_ECDHE_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    ),
    (
        "RSA-PSK-CAMELLIA256-SHA384",
        "TLS_RSA_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    ),
    (
        "DHE-PSK-CAMELLIA256-SHA384",
        "TLS_DHE_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    ),
    ("AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA"),
    ("CAMELLIA256-SHA", "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    ("PSK-AES256-CBC-SHA384", "TLS_PSK_WITH_AES_256_CBC_SHA384"),
    ("PSK-AES256-CBC-SHA", "TLS_PSK_WITH_AES_256_CBC_SHA"),
    (
        "PSK-CAMELLIA256-SHA384",
        "TLS_PSK_WITH_CAMELLIA_256_CBC_SHA384",
    ),
    (
        "ECDHE-PSK-AES128-CBC-SHA256",
        "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256",
    ),
    (
        "ECDHE-PSK-AES128-CBC-SHA",
        "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
    ),
    (
        "SRP-DSS-AES-128-CBC-SHA",
        "TLS_SRP_SHA_DSS_WITH_AES_128_CBC_SHA",
    ),
    (
        "SRP-RSA-AES-128-CBC-SHA",
        "TLS_SRP_SHA_RSA_WITH_AES_128_CBC_SHA",
    ),
    ("SRP-AES-128-CBC-SHA", "TLS_SRP_SHA_WITH_AES_128_CBC_SHA"),
    (
        "RSA-PSK-AES128-CBC-SHA256",
        "TLS_RSA_PSK_WITH_AES_128_CBC_SHA256",
    ),
    (
        "DHE-PSK-AES128-CBC-SHA256",
        "TLS_DHE_PSK_WITH_AES_128_CBC_SHA256",
    ),
    ("RSA-PSK-AES128-CBC-SHA", "TLS_RSA_PSK_WITH_AES_128_CBC_SHA"),
    ("DHE-PSK-AES128-CBC-SHA", "TLS_DHE_PSK_WITH_AES_128_CBC_SHA"),
    (
        "ECDHE-PSK-CAMELLIA128-SHA256",
        "TLS_ECDHE_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    (
        "RSA-PSK-CAMELLIA128-SHA256",
        "TLS_RSA_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    (
        "DHE-PSK-CAMELLIA128-SHA256",
        "TLS_DHE_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    ("AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"),
    ("CAMELLIA128-SHA", "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    ("PSK-AES128-CBC-SHA256", "TLS_PSK_WITH_AES_128_CBC_SHA256"),
    ("PSK-AES128-CBC-SHA", "TLS_PSK_WITH_AES_128_CBC_SHA"),
    (
        "PSK-CAMELLIA128-SHA256",
        "TLS_PSK_WITH_CAMELLIA_128_CBC_SHA256",
    ),
    ("ECDHE-ECDSA-NULL-SHA", "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    ("ECDHE-RSA-NULL-SHA", "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    ("AECDH-NULL-SHA", "TLS_ECDH_anon_WITH_NULL_SHA"),
    ("NULL-SHA256", "TLS_RSA_WITH_NULL_SHA256"),
    ("ECDHE-PSK-NULL-SHA384", "TLS_ECDHE_PSK_WITH_NULL_SHA384"),
    ("ECDHE-PSK-NULL-SHA256", "TLS_ECDHE_PSK_WITH_NULL_SHA256"),
    ("ECDHE-PSK-NULL-SHA", "TLS_ECDHE_PSK_WITH_NULL_SHA"),
    ("RSA-PSK-NULL-SHA384", "TLS_RSA_PSK_WITH_NULL_SHA384"),
    ("RSA-PSK-NULL-SHA256", "TLS_RSA_PSK_WITH_NULL_SHA256"),
    ("DHE-PSK-NULL-SHA384", "TLS_DHE_PSK_WITH_NULL_SHA384"),
    ("DHE-PSK-NULL-SHA256", "TLS_DHE_PSK_WITH_NULL_SHA256"),
    ("RSA-PSK-NULL-SHA", "TLS_RSA_PSK_WITH_NULL_SHA"),
    ("DHE-PSK-NULL-SHA", "TLS_DHE_PSK_WITH_NULL_SHA"),
    ("NULL-SHA", "TLS_RSA_WITH_NULL_SHA"),
    ("NULL-MD5", "TLS_RSA_WITH_NULL_MD5"),
    ("PSK-NULL-SHA384", "TLS_PSK_WITH_NULL_SHA384"),
    ("PSK-NULL-SHA256", "TLS_PSK_WITH_NULL_SHA256"),
    ("PSK-NULL-SHA", "TLS_PSK_WITH_NULL_SHA"),
    ("DES-CBC3-SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    ("EDH-RSA-DES-CBC3-SHA", "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    ("EDH-DSS-DES-CBC3-SHA", "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA"),
    (
        "ECDHE-RSA-DES-CBC3-SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    ),
    (
        "ECDHE-ECDSA-DES-CBC3-SHA",
        "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    ),
    ("ADH-DES-CBC3-SHA", "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"),
    ("AECDH-DES-CBC3-SHA", "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA"),
    ("RC4-SHA", "TLS_RSA_WITH_RC4_128_SHA"),
    ("RC4-MD5", "TLS_RSA_WITH_RC4_128_MD5"),
    ("ECDHE-RSA-RC4-SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    ("ECDHE-ECDSA-RC4-SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    ("ADH-RC4-MD5", "TLS_DH_anon_WITH_RC4_128_MD5"),
    ("AECDH-RC4-SHA", "TLS_ECDH_anon_WITH_RC4_128_SHA"),
    ("DES-CBC-SHA", "TLS_RSA_WITH_DES_CBC_SHA"),
    ("EDH-RSA-DES-CBC-SHA", "TLS_DHE_RSA_WITH_DES_CBC_SHA"),
    ("EDH-DSS-DES-CBC-SHA", "TLS_DHE_DSS_WITH_DES_CBC_SHA"),
    ("IDEA-CBC-SHA", "TLS_RSA_WITH_IDEA_CBC_SHA"),
    ("SEED-SHA", "TLS_RSA_WITH_SEED_CBC_SHA"),
    ("DHE-RSA-SEED-SHA", "TLS_DHE_RSA_WITH_SEED_CBC_SHA"),
    ("DHE-DSS-SEED-SHA", "TLS_DHE_DSS_WITH_SEED_CBC_SHA"),
    ("EXP-RC4-MD5", "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    ("EXP-DES-CBC-SHA", "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    ("EXP-RC2-CBC-MD5", "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    ("ECDH-RSA-AES128-SHA", "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"),
    ("ECDH-RSA-AES256-SHA", "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"),
    (
        "ECDH-ECDSA-AES128-SHA",
        "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA",
    ),
    (
        "ECDH-ECDSA-AES256-SHA",
        "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA",
    ),
    (
        "ECDH-RSA-AES128-SHA256",
        "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "ECDH-RSA-AES256-SHA384",
        "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384",
    ),
    (
        "ECDH-ECDSA-AES128-SHA256",
        "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256",
    ),
    (
        "ECDH-ECDSA-AES256-SHA384",
        "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384",
    ),
    (
        "ECDH-RSA-AES128-GCM-SHA256",
        "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDH-RSA-AES256-GCM-SHA384",
        "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDH-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDH-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    ("DH-RSA-AES128-SHA", "TLS_DH_RSA_WITH_AES_128_CBC_SHA"),
    ("DH-RSA-AES256-SHA", "TLS_DH_RSA_WITH_AES_256_CBC_SHA"),
    ("DH-DSS-AES128-SHA", "TLS_DH_DSS_WITH_AES_128_CBC_SHA"),
    ("DH-DSS-AES256-SHA", "TLS_DH_DSS_WITH_AES_256_CBC_SHA"),
    (
        "DH-RSA-AES128-GCM-SHA256",
        "TLS_DH_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "DH-RSA-AES256-GCM-SHA384",
        "TLS_DH_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "DH-DSS-AES128-GCM-SHA256",
        "TLS_DH_DSS_WITH_AES_128_GCM_SHA256",
    ),
    (
        "DH-DSS-AES256-GCM-SHA384",
        "TLS_DH_DSS_WITH_AES_256_GCM_SHA384",
    ),
    ("DH-RSA-AES128-SHA256", "TLS_DH_RSA_WITH_AES_128_CBC_SHA256"),
    ("DH-RSA-AES256-SHA256", "TLS_DH_RSA_WITH_AES_256_CBC_SHA256"),
    ("DH-DSS-AES128-SHA256", "TLS_DH_DSS_WITH_AES_128_CBC_SHA256"),
    ("DH-DSS-AES256-SHA256", "TLS_DH_DSS_WITH_AES_256_CBC_SHA256"),
];

/// What one name in a `ciphers` string is.
enum Name {
    /// A TLS 1.2 suite rustls implements: its index in [`TLS12`].
    Suite(usize),
    /// A suite OpenSSL knows and rustls does not.
    Unsupported,
    /// A TLS 1.3 suite (those belong in `tls13-ciphers`).
    Tls13,
    /// An OpenSSL keyword: the implemented suites it selects.
    Keyword(u8),
    /// An OpenSSL setting that rustls has no counterpart of.
    Command,
}

const ALL: u8 = (1 << TLS12.len()) - 1;

fn mask(f: impl Fn(&Row) -> bool) -> u8 {
    TLS12
        .iter()
        .enumerate()
        .filter(|(_, r)| f(r))
        .fold(0, |m, (i, _)| m | (1 << i))
}

/// OpenSSL cipher-string keywords (see `openssl ciphers`), as selections of [`TLS12`].
fn keyword(word: &str) -> Option<Name> {
    let upper = word.to_ascii_uppercase();
    let m = match upper.as_str() {
        "ALL" | "DEFAULT" | "HIGH" | "TLSV1.2" | "ECDHE" | "EECDH" | "KECDHE" | "KEECDH"
        | "ECDH" | "AEAD" => ALL,
        "ARSA" | "RSA" => mask(|r| r.auth == Auth::Rsa),
        "AECDSA" | "ECDSA" => mask(|r| r.auth == Auth::Ecdsa),
        "AES" | "AESGCM" => mask(|r| r.enc != Enc::Chacha),
        "AES128" => mask(|r| r.enc == Enc::Aes128),
        "AES256" | "SHA384" => mask(|r| r.enc == Enc::Aes256),
        "CHACHA20" => mask(|r| r.enc == Enc::Chacha),
        "SHA256" => mask(|r| r.enc != Enc::Aes256),
        "COMPLEMENTOFALL"
        | "COMPLEMENTOFDEFAULT"
        | "MEDIUM"
        | "LOW"
        | "EXPORT"
        | "EXP"
        | "EXPORT40"
        | "EXPORT56"
        | "ENULL"
        | "NULL"
        | "ANULL"
        | "KRSA"
        | "KDHE"
        | "KEDH"
        | "DH"
        | "DHE"
        | "EDH"
        | "ADH"
        | "AECDH"
        | "KDHR"
        | "KDHD"
        | "KDH"
        | "KECDHR"
        | "KECDH"
        | "ADSS"
        | "DSS"
        | "AGOST"
        | "AGOST01"
        | "AGOST12"
        | "KGOST"
        | "GOST94"
        | "GOST89MAC"
        | "GOST12"
        | "KPSK"
        | "KECDHEPSK"
        | "KDHEPSK"
        | "KRSAPSK"
        | "PSK"
        | "APSK"
        | "KSRP"
        | "SRP"
        | "ASRP"
        | "SSLV2"
        | "SSLV3"
        | "TLSV1"
        | "TLSV1.0"
        | "AESCCM"
        | "AESCCM8"
        | "CAMELLIA"
        | "CAMELLIA128"
        | "CAMELLIA256"
        | "ARIA"
        | "ARIA128"
        | "ARIA256"
        | "ARIAGCM"
        | "3DES"
        | "DES"
        | "RC4"
        | "RC2"
        | "IDEA"
        | "SEED"
        | "MD5"
        | "SHA1"
        | "SHA"
        | "CBC"
        | "KFZA"
        | "AFZA"
        | "EFZA"
        | "FZA"
        | "CHACHA20-POLY1305-OLD" => 0,
        "SUITEB128" | "SUITEB128ONLY" | "SUITEB128C2" | "SUITEB192" | "FIPS" => {
            return Some(Name::Command);
        }
        _ => return None,
    };
    Some(Name::Keyword(m))
}

fn lookup(word: &str) -> Option<Name> {
    if let Some(i) = TLS12
        .iter()
        .position(|r| r.openssl.eq_ignore_ascii_case(word) || r.iana.eq_ignore_ascii_case(word))
    {
        return Some(Name::Suite(i));
    }
    if TLS12_UNSUPPORTED
        .iter()
        .any(|(o, i)| o.eq_ignore_ascii_case(word) || i.eq_ignore_ascii_case(word))
    {
        return Some(Name::Unsupported);
    }
    if TLS13
        .iter()
        .any(|(o, r, _)| o.eq_ignore_ascii_case(word) || r.eq_ignore_ascii_case(word))
        || TLS13_UNSUPPORTED
            .iter()
            .any(|o| o.eq_ignore_ascii_case(word))
    {
        return Some(Name::Tls13);
    }
    keyword(word)
}

/// The items of an OpenSSL list: separated by ':', ',' or white space.
fn items(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ':' || c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
}

fn provider_suite(id: CipherSuite) -> Result<SupportedCipherSuite, String> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .find(|s| s.suite() == id)
        .copied()
        .ok_or_else(|| format!("{id:?} is missing from this build of rustls"))
}

/// The TLS 1.2 suites of an OpenSSL cipher string (`ciphers`), in order.
pub fn parse_ciphers(s: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    parse_ciphers_with_warnings(s).map(|(suites, _)| suites)
}

/// [`parse_ciphers`], and what was skipped, for the caller to warn about.
pub fn parse_ciphers_with_warnings(
    s: &str,
) -> Result<(Vec<SupportedCipherSuite>, Vec<String>), String> {
    let mut list: Vec<usize> = Vec::new();
    let mut banned: u8 = 0;
    let mut skipped: Vec<&str> = Vec::new();
    let mut commands: Vec<&str> = Vec::new();
    let mut tls13: Vec<&str> = Vec::new();
    for item in items(s) {
        let (op, body) = match item.as_bytes().first() {
            Some(b'!' | b'-' | b'+') => (item.as_bytes()[0], &item[1..]),
            _ => (b' ', item),
        };
        if body.is_empty() {
            return Err(format!("\"{item}\" names no cipher suite"));
        }
        if body.starts_with('@') || body.contains('=') {
            commands.push(item);
            continue;
        }
        let mut selected = ALL;
        for part in body.split('+') {
            match lookup(part) {
                Some(Name::Suite(i)) => selected &= 1 << i,
                Some(Name::Keyword(m)) => selected &= m,
                Some(Name::Unsupported) => selected = 0,
                Some(Name::Tls13) => {
                    tls13.push(part);
                    selected = 0;
                }
                Some(Name::Command) => {
                    commands.push(part);
                    selected = 0;
                }
                None if part.is_empty() => {
                    return Err(format!("\"{item}\" has an empty part"));
                }
                None => {
                    return Err(format!(
                        "\"{part}\" is neither an OpenSSL nor an IANA cipher suite name, nor an OpenSSL cipher keyword"
                    ));
                }
            }
        }
        let picked = |i: usize| selected & (1 << i) != 0;
        match op {
            b'!' => {
                list.retain(|&i| !picked(i));
                banned |= selected;
            }
            b'-' => list.retain(|&i| !picked(i)),
            b'+' => {
                let (moved, kept): (Vec<usize>, Vec<usize>) =
                    list.iter().partition(|&&i| picked(i));
                list = kept;
                list.extend(moved);
            }
            _ => {
                if selected == 0 {
                    if !tls13.contains(&body) && !commands.contains(&body) {
                        skipped.push(item);
                    }
                    continue;
                }
                for i in 0..TLS12.len() {
                    if picked(i) && banned & (1 << i) == 0 && !list.contains(&i) {
                        list.push(i);
                    }
                }
            }
        }
    }
    let mut notes = Vec::new();
    if !skipped.is_empty() {
        notes.push(format!(
            "skipped, rustls implements none of these: {}",
            skipped.join(", ")
        ));
    }
    if !tls13.is_empty() {
        notes.push(format!(
            "TLS 1.3 suites are chosen by \"tls13-ciphers\", ignored here: {}",
            tls13.join(", ")
        ));
    }
    if !commands.is_empty() {
        notes.push(format!(
            "OpenSSL settings with no rustls counterpart, ignored: {}",
            commands.join(", ")
        ));
    }
    // One warning for the whole value.
    let warnings = if notes.is_empty() {
        Vec::new()
    } else {
        vec![notes.join("; ")]
    };
    if list.is_empty() {
        return Err(format!(
            "\"{}\" leaves no TLS 1.2 cipher suite that rustls implements",
            s.trim()
        ));
    }
    let suites = list
        .into_iter()
        .map(|i| provider_suite(TLS12[i].id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((suites, warnings))
}

/// The TLS 1.3 suites of an OpenSSL `ciphersuites` list (`tls13-ciphers`).
pub fn parse_tls13_ciphers(s: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    parse_tls13_ciphers_with_warnings(s).map(|(suites, _)| suites)
}

/// [`parse_tls13_ciphers`], and what was skipped, for the caller to warn about.
pub fn parse_tls13_ciphers_with_warnings(
    s: &str,
) -> Result<(Vec<SupportedCipherSuite>, Vec<String>), String> {
    let mut ids: Vec<CipherSuite> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    for item in items(s) {
        if let Some((_, _, id)) = TLS13
            .iter()
            .find(|(o, r, _)| o.eq_ignore_ascii_case(item) || r.eq_ignore_ascii_case(item))
        {
            if !ids.contains(id) {
                ids.push(*id);
            }
        } else if TLS13_UNSUPPORTED
            .iter()
            .any(|o| o.eq_ignore_ascii_case(item))
        {
            skipped.push(item);
        } else if matches!(
            lookup(item),
            Some(Name::Suite(_) | Name::Unsupported | Name::Keyword(_) | Name::Command)
        ) {
            return Err(format!(
                "\"{item}\" is not a TLS 1.3 cipher suite (TLS 1.2 suites are chosen by \"ciphers\")"
            ));
        } else {
            return Err(format!("\"{item}\" is not a TLS 1.3 cipher suite name"));
        }
    }
    let warnings = if skipped.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "skipped, rustls does not implement: {}",
            skipped.join(", ")
        )]
    };
    if ids.is_empty() {
        return Err(format!(
            "\"{}\" leaves no TLS 1.3 cipher suite that rustls implements (to turn TLS 1.3 off, set SSL_OP_NO_TLSv1_3 in \"ssl-option-set\")",
            s.trim()
        ));
    }
    let suites = ids
        .into_iter()
        .map(provider_suite)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((suites, warnings))
}

/// Curve and group names OpenSSL knows that rustls's ring provider does not implement.
const CURVES_UNSUPPORTED: &[&str] = &[
    "X448",
    "P-521",
    "secp521r1",
    "P-224",
    "secp224r1",
    "P-192",
    "secp192r1",
    "prime192v1",
    "secp256k1",
    "brainpoolP256r1",
    "brainpoolP384r1",
    "brainpoolP512r1",
    "brainpoolP256r1tls13",
    "brainpoolP384r1tls13",
    "brainpoolP512r1tls13",
    "ffdhe2048",
    "ffdhe3072",
    "ffdhe4096",
    "ffdhe6144",
    "ffdhe8192",
    "X25519MLKEM768",
    "SecP256r1MLKEM768",
    "SecP384r1MLKEM1024",
    "X25519Kyber768Draft00",
];

fn curve(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    use rustls::crypto::ring::kx_group;
    let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(name));
    if is(&["X25519"]) {
        Some(kx_group::X25519)
    } else if is(&["P-256", "prime256v1", "secp256r1"]) {
        Some(kx_group::SECP256R1)
    } else if is(&["P-384", "secp384r1"]) {
        Some(kx_group::SECP384R1)
    } else {
        None
    }
}

/// The key-exchange groups of `ecdh-curve` (one name, or a ':'-separated list), in order.
pub fn parse_curves(s: &str) -> Result<Vec<&'static dyn SupportedKxGroup>, String> {
    parse_curves_with_warnings(s).map(|(groups, _)| groups)
}

/// [`parse_curves`], and what was skipped, for the caller to warn about.
pub fn parse_curves_with_warnings(
    s: &str,
) -> Result<(Vec<&'static dyn SupportedKxGroup>, Vec<String>), String> {
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    for item in items(s) {
        match curve(item) {
            Some(g) => {
                if !groups.iter().any(|h| h.name() == g.name()) {
                    groups.push(g);
                }
            }
            None if CURVES_UNSUPPORTED
                .iter()
                .any(|n| n.eq_ignore_ascii_case(item)) =>
            {
                skipped.push(item)
            }
            None => return Err(format!("\"{item}\" is not a curve or group name")),
        }
    }
    let warnings = if skipped.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "skipped, rustls does not implement: {}",
            skipped.join(", ")
        )]
    };
    if groups.is_empty() {
        return Err(format!(
            "\"{}\" leaves no key-exchange group that rustls implements",
            s.trim()
        ));
    }
    Ok((groups, warnings))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn names(suites: &[SupportedCipherSuite]) -> Vec<String> {
        suites.iter().map(|s| format!("{:?}", s.suite())).collect()
    }

    #[test]
    fn tables_have_no_duplicates_and_match_the_provider() {
        let mut seen = std::collections::HashSet::new();
        for (o, i) in TLS12_UNSUPPORTED {
            assert!(seen.insert(o.to_ascii_uppercase()), "{o}");
            assert!(seen.insert(i.to_ascii_uppercase()), "{i}");
        }
        for r in &TLS12 {
            assert!(seen.insert(r.openssl.to_ascii_uppercase()), "{}", r.openssl);
            assert!(seen.insert(r.iana.to_ascii_uppercase()), "{}", r.iana);
            assert_eq!(format!("{:?}", r.id), r.iana);
            provider_suite(r.id).unwrap();
        }
        for (_, _, id) in &TLS13 {
            provider_suite(*id).unwrap();
        }
        assert_eq!(
            SUPPORTED_TLS12_CIPHERS,
            TLS12.iter().map(|r| r.openssl).collect::<Vec<_>>()
        );
    }

    #[test]
    fn openssl_and_iana_names_with_any_separator() {
        let got = parse_ciphers(
            "ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, ECDHE-RSA-CHACHA20-POLY1305 ecdhe-ecdsa-aes256-gcm-sha384",
        )
        .unwrap();
        assert_eq!(
            names(&got),
            [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            ]
        );
    }

    #[test]
    fn keywords_prefixes_and_combinations() {
        let (got, warnings) = parse_ciphers_with_warnings("HIGH:!aNULL:!MD5").unwrap();
        assert_eq!(got.len(), 6);
        assert!(warnings.is_empty(), "{warnings:?}");
        let got = parse_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS").unwrap();
        assert_eq!(got.len(), 6);
        assert!(names(&got)[..4].iter().all(|n| n.contains("GCM")));
        let got = parse_ciphers("DEFAULT:!aECDSA").unwrap();
        assert!(names(&got).iter().all(|n| n.contains("_RSA_")), "{got:?}");
        let got = parse_ciphers("ALL:-CHACHA20:CHACHA20+aRSA").unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(
            names(&got).last().unwrap(),
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        );
        let got = parse_ciphers("ALL:!CHACHA20:CHACHA20").unwrap();
        assert_eq!(got.len(), 4, "! bans for good");
        let got = parse_ciphers("ALL:+AES128").unwrap();
        assert!(names(&got)[4..].iter().all(|n| n.contains("AES_128")));
    }

    #[test]
    fn unsupported_names_are_skipped_with_one_warning() {
        let mozilla = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-CHACHA20-POLY1305:DES-CBC3-SHA:kDHE:@STRENGTH:TLS_AES_128_GCM_SHA256";
        let (got, warnings) = parse_ciphers_with_warnings(mozilla).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(
                "DHE-RSA-AES128-GCM-SHA256, DHE-RSA-CHACHA20-POLY1305, DES-CBC3-SHA, kDHE;"
            ),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("tls13-ciphers"));
        assert!(warnings[0].contains("@STRENGTH"));
    }

    #[test]
    fn unknown_names_and_empty_results_are_errors() {
        let e =
            parse_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA265").unwrap_err();
        assert!(e.contains("\"ECDHE-RSA-AES128-GCM-SHA265\""), "{e}");
        let e = parse_ciphers("HIGH+BOGUS").unwrap_err();
        assert!(e.contains("\"BOGUS\""), "{e}");
        let e = parse_ciphers("DHE-RSA-AES128-GCM-SHA256").unwrap_err();
        assert!(e.contains("no TLS 1.2 cipher suite"), "{e}");
        assert!(parse_ciphers("").is_err());
        assert!(parse_ciphers("!").is_err());
    }

    #[test]
    fn tls13_names() {
        let got =
            parse_tls13_ciphers("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256").unwrap();
        assert_eq!(
            names(&got),
            ["TLS13_CHACHA20_POLY1305_SHA256", "TLS13_AES_128_GCM_SHA256"]
        );
        let (got, w) =
            parse_tls13_ciphers_with_warnings("TLS_AES_128_CCM_SHA256:TLS_AES_256_GCM_SHA384")
                .unwrap();
        assert_eq!(got.len(), 1);
        assert!(w[0].contains("TLS_AES_128_CCM_SHA256"));
        let e = parse_tls13_ciphers("ECDHE-RSA-AES128-GCM-SHA256").unwrap_err();
        assert!(e.contains("\"ciphers\""), "{e}");
        let e = parse_tls13_ciphers("TLS_AES_512_GCM").unwrap_err();
        assert!(e.contains("\"TLS_AES_512_GCM\""), "{e}");
        assert!(parse_tls13_ciphers("TLS_AES_128_CCM_8_SHA256").is_err());
    }

    #[test]
    fn curves() {
        let got = parse_curves("X25519:prime256v1:secp384r1:P-256").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name(), rustls::NamedGroup::X25519);
        assert_eq!(got[1].name(), rustls::NamedGroup::secp256r1);
        let (got, w) = parse_curves_with_warnings("secp521r1:P-384").unwrap();
        assert_eq!(got.len(), 1);
        assert!(w[0].contains("secp521r1"));
        let e = parse_curves("prime256v2").unwrap_err();
        assert!(e.contains("\"prime256v2\""), "{e}");
        assert!(parse_curves("X448").is_err());
    }
}
