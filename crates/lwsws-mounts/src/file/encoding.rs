//! Precompressed siblings (SPEC §3.2, last bullet): which of `X.br` / `X.gz`
//! the client's `Accept-Encoding` (RFC 9110 §12.5.3) lets us send instead
//! of `X`. Looking for the files happens in `open.rs`.

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

/// A content coding we may find precompressed beside a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    /// Every coding, in the order we prefer them when the client has no preference.
    pub const ALL: [Coding; 2] = [Coding::Br, Coding::Gzip];

    /// The file-name suffix of the sibling.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// The `Content-Encoding` value.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The codings the request accepts, best first: by the client's q-value,
/// `br` before `gzip` on a tie. A coding with `q=0` is refused; `*` stands
/// for any coding not named.
pub fn accepted(headers: &HeaderMap) -> Vec<Coding> {
    let mut q_br = None;
    let mut q_gzip = None;
    let mut q_any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let mut q = Some(1000);
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = qvalue(v.trim());
                }
            }
            // A malformed q-value refuses the coding: identity is always safe.
            let q = q.unwrap_or(0);
            let slot = if name.eq_ignore_ascii_case("br") {
                &mut q_br
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                &mut q_gzip
            } else if name == "*" {
                &mut q_any
            } else {
                continue;
            };
            *slot = Some(q);
        }
    }
    let q_br = q_br.or(q_any).unwrap_or(0);
    let q_gzip = q_gzip.or(q_any).unwrap_or(0);
    let mut out = Vec::with_capacity(2);
    if q_br > 0 {
        out.push(Coding::Br);
    }
    if q_gzip > 0 {
        if q_gzip > q_br {
            out.insert(0, Coding::Gzip);
        } else {
            out.push(Coding::Gzip);
        }
    }
    out
}

/// An RFC 9110 qvalue in thousandths: `0`, `0.5`, `1`, `1.000`.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn acc(v: &str) -> Vec<Coding> {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        accepted(&h)
    }

    #[test]
    fn none() {
        assert_eq!(accepted(&HeaderMap::new()), vec![]);
        assert_eq!(acc(""), vec![]);
        assert_eq!(acc("identity"), vec![]);
        assert_eq!(acc("deflate, zstd"), vec![]);
    }

    #[test]
    fn br_preferred_on_tie() {
        assert_eq!(acc("gzip, deflate, br"), vec![Coding::Br, Coding::Gzip]);
        assert_eq!(
            acc("gzip, deflate, br, zstd"),
            vec![Coding::Br, Coding::Gzip]
        );
        assert_eq!(acc("GZIP"), vec![Coding::Gzip]);
        assert_eq!(acc("x-gzip"), vec![Coding::Gzip]);
        assert_eq!(acc("br"), vec![Coding::Br]);
    }

    #[test]
    fn q_values() {
        assert_eq!(acc("br;q=0, gzip"), vec![Coding::Gzip]);
        assert_eq!(acc("br; q=0.000, gzip;q=0.1"), vec![Coding::Gzip]);
        assert_eq!(acc("br;q=0.5, gzip;q=1"), vec![Coding::Gzip, Coding::Br]);
        assert_eq!(acc("br;q=1.0, gzip;q=0.9"), vec![Coding::Br, Coding::Gzip]);
        assert_eq!(acc("gzip;q=0"), vec![]);
        assert_eq!(acc("gzip;Q=0"), vec![]);
        // Malformed q-values refuse the coding.
        assert_eq!(acc("gzip;q=2"), vec![]);
        assert_eq!(acc("gzip;q=0.1234"), vec![]);
        assert_eq!(acc("gzip;q=abc, br"), vec![Coding::Br]);
    }

    #[test]
    fn wildcard() {
        assert_eq!(acc("*"), vec![Coding::Br, Coding::Gzip]);
        assert_eq!(acc("*;q=0"), vec![]);
        assert_eq!(acc("gzip, *;q=0"), vec![Coding::Gzip]);
        assert_eq!(acc("br;q=0, *"), vec![Coding::Gzip]);
    }

    #[test]
    fn several_header_lines() {
        let mut h = HeaderMap::new();
        h.append(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        h.append(ACCEPT_ENCODING, HeaderValue::from_static("br;q=0.5"));
        assert_eq!(accepted(&h), vec![Coding::Gzip, Coding::Br]);
    }

    #[test]
    fn qvalue_grammar() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0."), Some(0));
        assert_eq!(qvalue("0.25"), Some(250));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue(".5"), None);
        assert_eq!(qvalue("-0"), None);
    }
}
