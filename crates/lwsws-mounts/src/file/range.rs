//! The `Range` header (RFC 9110 §14.2) over a file of known length: one
//! byte range → 206; none satisfiable → 416; several → the whole file (200,
//! which the RFC allows instead of multipart); anything unparsable → ignored.

use http::HeaderMap;
use http::header::RANGE;

/// What to do with a request's `Range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable Range: the whole representation, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// The answer for the `Range` header(s) of `headers` over `len` bytes.
pub fn answer(headers: &HeaderMap, len: u64) -> RangeAnswer {
    let mut values = headers.get_all(RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return RangeAnswer::Full;
    };
    match value.to_str() {
        Ok(v) => parse(v, len),
        Err(_) => RangeAnswer::Full,
    }
}

/// One `byte-range-spec` or `suffix-byte-range-spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-suffix`.
    Suffix(u64),
}

/// Parses `bytes=…` for a representation of `len` bytes.
pub fn parse(value: &str, len: u64) -> RangeAnswer {
    let Some(specs) = parse_specs(value) else {
        return RangeAnswer::Full;
    };
    let mut satisfiable = specs.iter().filter_map(|s| resolve(*s, len));
    match (satisfiable.next(), specs.len()) {
        (None, _) => RangeAnswer::Unsatisfiable,
        (Some((start, end)), 1) => RangeAnswer::Partial { start, end },
        (Some(_), _) => RangeAnswer::Full,
    }
}

/// The specs of a syntactically valid `bytes=` ranges-specifier.
fn parse_specs(value: &str) -> Option<Vec<Spec>> {
    let (unit, set) = value.trim().split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for item in set.split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            continue; // empty list elements are allowed
        }
        let (first, last) = item.split_once('-')?;
        let spec = if first.is_empty() {
            Spec::Suffix(digits(last)?)
        } else {
            let first = digits(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(digits(last)?)
            };
            if last.is_some_and(|l| l < first) {
                return None;
            }
            Spec::From { first, last }
        };
        specs.push(spec);
        if specs.len() > 100 {
            return None; // not worth reading on
        }
    }
    (!specs.is_empty()).then_some(specs)
}

/// A non-empty run of ASCII digits; values too large for u64 saturate.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// The inclusive byte range a spec selects, if satisfiable.
fn resolve(spec: Spec, len: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::From { first, last } => {
            (first < len).then(|| (first, last.map_or(len - 1, |l| l.min(len - 1))))
        }
        Spec::Suffix(n) => (n > 0 && len > 0).then(|| (len - n.min(len), len - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    fn p(start: u64, end: u64) -> RangeAnswer {
        Partial { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-0", 10), p(0, 0));
        assert_eq!(parse("bytes=2-5", 10), p(2, 5));
        assert_eq!(parse("bytes=2-", 10), p(2, 9));
        assert_eq!(parse("bytes=-3", 10), p(7, 9));
        assert_eq!(parse("bytes=-30", 10), p(0, 9));
        assert_eq!(parse("bytes=5-100", 10), p(5, 9));
        assert_eq!(parse("bytes=9-9", 10), p(9, 9));
        assert_eq!(parse("Bytes=1-2", 10), p(1, 2));
        assert_eq!(parse(" bytes=1-2 ", 10), p(1, 2));
        assert_eq!(parse("bytes=1-2,", 10), p(1, 2));
        assert_eq!(parse("bytes=0-99999999999999999999999", 10), p(0, 9));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=-5", 0), Unsatisfiable);
        assert_eq!(parse("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(parse("bytes=20-30, 40-50", 10), Unsatisfiable);
    }

    #[test]
    fn several_ranges_give_the_whole_file() {
        assert_eq!(parse("bytes=0-1, 3-4", 10), Full);
        assert_eq!(parse("bytes=0-1,20-30", 10), Full);
        assert_eq!(parse("bytes=-1,0-", 10), Full);
    }

    #[test]
    fn invalid_syntax_is_ignored() {
        for v in [
            "bytes=",
            "bytes=,",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=1",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=1-2-3",
            "items=0-1",
            "bytes 0-1",
            "0-1",
            "bytes=0x1-2",
            "bytes=1 - 2",
        ] {
            assert_eq!(parse(v, 10), Full, "{v}");
        }
    }

    #[test]
    fn header_lines() {
        let mut h = HeaderMap::new();
        assert_eq!(answer(&h, 10), Full);
        h.append(RANGE, http::HeaderValue::from_static("bytes=1-2"));
        assert_eq!(answer(&h, 10), p(1, 2));
        h.append(RANGE, http::HeaderValue::from_static("bytes=3-4"));
        assert_eq!(answer(&h, 10), Full);
    }
}
