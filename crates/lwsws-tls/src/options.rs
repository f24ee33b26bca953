//! OpenSSL `SSL_OP_*` bits (`ssl-option-set` / `ssl-option-clear`) and what
//! each means for rustls: applied (protocol versions, tickets, server cipher
//! order), already so in rustls, or ignored with a warning.

use rustls::SupportedProtocolVersion;

/// `SSL_OP_NO_TICKET`: no stateless session tickets.
pub const SSL_OP_NO_TICKET: u64 = 1 << 14;
/// `SSL_OP_CIPHER_SERVER_PREFERENCE`: the server's suite order wins (on by default, as in lws).
pub const SSL_OP_CIPHER_SERVER_PREFERENCE: u64 = 1 << 22;
/// `SSL_OP_NO_TLSv1_2`: TLS 1.3 only.
pub const SSL_OP_NO_TLSV1_2: u64 = 0x0800_0000;
/// `SSL_OP_NO_TLSv1_3`: TLS 1.2 only.
pub const SSL_OP_NO_TLSV1_3: u64 = 0x2000_0000;

/// The options lws sets on every server context before applying the configuration's.
const LWS_DEFAULTS: u64 = (1 << 25) | (1 << 17) | SSL_OP_CIPHER_SERVER_PREFERENCE;

/// How rustls relates to one option bit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// lwsws maps it onto rustls.
    Applied,
    /// rustls always behaves as if it were set: clearing it is ignored.
    AlwaysSet,
    /// rustls always behaves as if it were clear: setting it is ignored.
    AlwaysClear,
}

/// OpenSSL 3's option bits by position.
const BITS: &[(u32, &str, Effect)] = &[
    (0, "SSL_OP_NO_EXTENDED_MASTER_SECRET", Effect::AlwaysClear),
    (1, "SSL_OP_CLEANSE_PLAINTEXT", Effect::AlwaysClear),
    (2, "SSL_OP_LEGACY_SERVER_CONNECT", Effect::AlwaysClear),
    (3, "SSL_OP_ENABLE_KTLS", Effect::AlwaysClear),
    (4, "SSL_OP_TLSEXT_PADDING", Effect::AlwaysClear),
    (6, "SSL_OP_SAFARI_ECDHE_ECDSA_BUG", Effect::AlwaysClear),
    (7, "SSL_OP_IGNORE_UNEXPECTED_EOF", Effect::AlwaysClear),
    (8, "SSL_OP_ALLOW_CLIENT_RENEGOTIATION", Effect::AlwaysClear),
    (9, "SSL_OP_DISABLE_TLSEXT_CA_NAMES", Effect::AlwaysClear),
    (10, "SSL_OP_ALLOW_NO_DHE_KEX", Effect::AlwaysClear),
    (11, "SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS", Effect::AlwaysSet),
    (12, "SSL_OP_NO_QUERY_MTU", Effect::AlwaysClear),
    (13, "SSL_OP_COOKIE_EXCHANGE", Effect::AlwaysClear),
    (14, "SSL_OP_NO_TICKET", Effect::Applied),
    (15, "SSL_OP_CISCO_ANYCONNECT", Effect::AlwaysClear),
    (
        16,
        "SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION",
        Effect::AlwaysSet,
    ),
    (17, "SSL_OP_NO_COMPRESSION", Effect::AlwaysSet),
    (
        18,
        "SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION",
        Effect::AlwaysClear,
    ),
    (19, "SSL_OP_NO_ENCRYPT_THEN_MAC", Effect::AlwaysClear),
    (20, "SSL_OP_ENABLE_MIDDLEBOX_COMPAT", Effect::AlwaysSet),
    (21, "SSL_OP_PRIORITIZE_CHACHA", Effect::AlwaysClear),
    (22, "SSL_OP_CIPHER_SERVER_PREFERENCE", Effect::Applied),
    (23, "SSL_OP_TLS_ROLLBACK_BUG", Effect::AlwaysClear),
    (24, "SSL_OP_NO_ANTI_REPLAY", Effect::AlwaysClear),
    (25, "SSL_OP_NO_SSLv3", Effect::AlwaysSet),
    (26, "SSL_OP_NO_TLSv1", Effect::AlwaysSet),
    (27, "SSL_OP_NO_TLSv1_2", Effect::Applied),
    (28, "SSL_OP_NO_TLSv1_1", Effect::AlwaysSet),
    (29, "SSL_OP_NO_TLSv1_3", Effect::Applied),
    (30, "SSL_OP_NO_RENEGOTIATION", Effect::AlwaysSet),
    (31, "SSL_OP_CRYPTOPRO_TLSEXT_BUG", Effect::AlwaysClear),
    (
        32,
        "SSL_OP_NO_TX_CERTIFICATE_COMPRESSION",
        Effect::AlwaysSet,
    ),
    (
        33,
        "SSL_OP_NO_RX_CERTIFICATE_COMPRESSION",
        Effect::AlwaysSet,
    ),
    (
        34,
        "SSL_OP_ENABLE_KTLS_TX_ZEROCOPY_SENDFILE",
        Effect::AlwaysClear,
    ),
    (35, "SSL_OP_PREFER_NO_DHE_KEX", Effect::AlwaysClear),
];

/// Names for bits OpenSSL 3 does not define, so that each still gets its own warning.
const UNKNOWN: [&str; 64] = [
    "unknown option bit 0x1",
    "unknown option bit 0x2",
    "unknown option bit 0x4",
    "unknown option bit 0x8",
    "unknown option bit 0x10",
    "unknown option bit 0x20",
    "unknown option bit 0x40",
    "unknown option bit 0x80",
    "unknown option bit 0x100",
    "unknown option bit 0x200",
    "unknown option bit 0x400",
    "unknown option bit 0x800",
    "unknown option bit 0x1000",
    "unknown option bit 0x2000",
    "unknown option bit 0x4000",
    "unknown option bit 0x8000",
    "unknown option bit 0x10000",
    "unknown option bit 0x20000",
    "unknown option bit 0x40000",
    "unknown option bit 0x80000",
    "unknown option bit 0x100000",
    "unknown option bit 0x200000",
    "unknown option bit 0x400000",
    "unknown option bit 0x800000",
    "unknown option bit 0x1000000",
    "unknown option bit 0x2000000",
    "unknown option bit 0x4000000",
    "unknown option bit 0x8000000",
    "unknown option bit 0x10000000",
    "unknown option bit 0x20000000",
    "unknown option bit 0x40000000",
    "unknown option bit 0x80000000",
    "unknown option bit 0x100000000",
    "unknown option bit 0x200000000",
    "unknown option bit 0x400000000",
    "unknown option bit 0x800000000",
    "unknown option bit 0x1000000000",
    "unknown option bit 0x2000000000",
    "unknown option bit 0x4000000000",
    "unknown option bit 0x8000000000",
    "unknown option bit 0x10000000000",
    "unknown option bit 0x20000000000",
    "unknown option bit 0x40000000000",
    "unknown option bit 0x80000000000",
    "unknown option bit 0x100000000000",
    "unknown option bit 0x200000000000",
    "unknown option bit 0x400000000000",
    "unknown option bit 0x800000000000",
    "unknown option bit 0x1000000000000",
    "unknown option bit 0x2000000000000",
    "unknown option bit 0x4000000000000",
    "unknown option bit 0x8000000000000",
    "unknown option bit 0x10000000000000",
    "unknown option bit 0x20000000000000",
    "unknown option bit 0x40000000000000",
    "unknown option bit 0x80000000000000",
    "unknown option bit 0x100000000000000",
    "unknown option bit 0x200000000000000",
    "unknown option bit 0x400000000000000",
    "unknown option bit 0x800000000000000",
    "unknown option bit 0x1000000000000000",
    "unknown option bit 0x2000000000000000",
    "unknown option bit 0x4000000000000000",
    "unknown option bit 0x8000000000000000",
];

/// The options in force, as lws computes them: its defaults, then set, then clear.
pub(crate) fn effective(set: u64, clear: u64) -> u64 {
    (LWS_DEFAULTS | set) & !clear
}

/// Names of the option bits that rustls cannot honour, one per bit, for warnings.
pub fn ignored_options(set: u64, clear: u64) -> Vec<&'static str> {
    let mut out = Vec::new();
    for pos in 0..64u32 {
        let bit = 1u64 << pos;
        let (in_set, in_clear) = (set & !clear & bit != 0, clear & bit != 0);
        if !in_set && !in_clear {
            continue;
        }
        let ignored = match BITS.iter().find(|(p, _, _)| *p == pos) {
            None => Some(UNKNOWN[pos as usize]),
            Some((_, name, effect)) => match effect {
                Effect::Applied => None,
                Effect::AlwaysSet => in_clear.then_some(*name),
                Effect::AlwaysClear => in_set.then_some(*name),
            },
        };
        out.extend(ignored);
    }
    out
}

/// The protocol versions the options leave on; both off is an error.
pub fn protocol_versions(
    set: u64,
    clear: u64,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let eff = effective(set, clear);
    let mut v = Vec::new();
    if eff & SSL_OP_NO_TLSV1_3 == 0 {
        v.push(&rustls::version::TLS13);
    }
    if eff & SSL_OP_NO_TLSV1_2 == 0 {
        v.push(&rustls::version::TLS12);
    }
    if v.is_empty() {
        return Err(
            "SSL_OP_NO_TLSv1_2 and SSL_OP_NO_TLSv1_3 together turn off every TLS version rustls speaks"
                .to_string(),
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_match_positions() {
        for (i, (pos, name, _)) in BITS.iter().enumerate() {
            assert!(BITS[..i].iter().all(|(p, _, _)| p != pos), "{name}");
        }
        assert_eq!(
            UNKNOWN[29],
            format!("unknown option bit {:#x}", SSL_OP_NO_TLSV1_3)
        );
        assert_eq!(
            ignored_options(SSL_OP_NO_TLSV1_2 | SSL_OP_NO_TLSV1_3, 0),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn versions() {
        assert_eq!(protocol_versions(0, 0).unwrap().len(), 2);
        let v = protocol_versions(SSL_OP_NO_TLSV1_3, 0).unwrap();
        assert_eq!(v, [&rustls::version::TLS12]);
        let v = protocol_versions(SSL_OP_NO_TLSV1_2, 0).unwrap();
        assert_eq!(v, [&rustls::version::TLS13]);
        assert!(protocol_versions(SSL_OP_NO_TLSV1_2 | SSL_OP_NO_TLSV1_3, 0).is_err());
        // clear wins over set, as SSL_CTX_clear_options runs last
        assert_eq!(
            protocol_versions(SSL_OP_NO_TLSV1_2 | SSL_OP_NO_TLSV1_3, SSL_OP_NO_TLSV1_2)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn ignored_bits() {
        // Setting what rustls already does, or what lwsws applies: silent.
        let quiet = (1 << 25) | (1 << 26) | (1 << 28) | (1 << 17) | SSL_OP_NO_TICKET;
        assert!(ignored_options(quiet, 0).is_empty());
        // SSL_OP_ALL's bug workarounds and legacy renegotiation: one name each.
        let got = ignored_options(0x8000_0854 | (1 << 18), 0);
        assert_eq!(
            got,
            [
                "SSL_OP_LEGACY_SERVER_CONNECT",
                "SSL_OP_TLSEXT_PADDING",
                "SSL_OP_SAFARI_ECDHE_ECDSA_BUG",
                "SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION",
                "SSL_OP_CRYPTOPRO_TLSEXT_BUG",
            ]
        );
        // Clearing what rustls always does, and bits nobody defines.
        let got = ignored_options(1 << 40, (1 << 26) | SSL_OP_CIPHER_SERVER_PREFERENCE | 0x20);
        assert_eq!(
            got,
            [
                "unknown option bit 0x20",
                "SSL_OP_NO_TLSv1",
                "unknown option bit 0x10000000000",
            ]
        );
    }
}
