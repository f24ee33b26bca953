//! A certificate's subject as CGI programs expect it in `SSL_CLIENT_S_DN`.

use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The verified client certificate's subject as an RFC 4514 string (`CN=alice,O=Example`), for CGI's SSL_CLIENT_S_DN.
pub fn client_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = match string_value(atv.attr_value()) {
                        Some(s) => escape(&s),
                        None => format!(
                            "#{}",
                            hex(&atv.attr_value().to_der_vec().unwrap_or_default())
                        ),
                    };
                    match short_name(&oid) {
                        Some(name) => format!("{name}={value}"),
                        None => format!("{oid}={value}"),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // RFC 4514 writes the most specific RDN first: the reverse of the encoding.
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// RFC 4514's names, and OpenSSL's for the attributes it also prints by name.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "2.5.4.5" => "serialNumber",
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GN",
        "2.5.4.12" => "title",
        _ => return None,
    })
}

fn string_value(v: &Any) -> Option<String> {
    let data = v.data;
    match v.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_string),
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape(" #x "), "\\ #x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("Zoë"), "Zoë");
    }

    #[test]
    fn not_a_certificate() {
        assert_eq!(client_subject(b"nope"), None);
    }

    #[test]
    fn values_that_are_not_strings_are_hex_der() {
        let v = Any::from_tag_and_data(Tag::Integer, &[0x05]);
        assert_eq!(string_value(&v), None);
        assert_eq!(hex(&v.to_der_vec().unwrap_or_default()), "020105");
        let bmp = Any::from_tag_and_data(Tag::BmpString, &[0, b'h', 0, b'i']);
        assert_eq!(string_value(&bmp).as_deref(), Some("hi"));
    }
}
