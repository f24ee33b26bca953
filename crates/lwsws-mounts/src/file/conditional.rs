//! Validators of a file (a strong `ETag`, `Last-Modified`) and the
//! conditional request headers that test them (RFC 9110 §13): `If-Match`,
//! `If-Unmodified-Since` (412), `If-None-Match`, `If-Modified-Since` (304)
//! and `If-Range` (whether a `Range` is honoured), evaluated in the order of
//! RFC 9110 §13.2.2.

use http::HeaderMap;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What identifies one version of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quotes included:
    /// `"<inode>-<size>-<mtime in ns>"` in hex.
    pub etag: String,
    /// The modification time in whole seconds, when it can be written as an
    /// HTTP date (1970 to 9999).
    pub last_modified: Option<SystemTime>,
}

/// The last second `httpdate` can format (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE: u64 = 253_402_300_799;

impl Validators {
    pub fn of(meta: &Metadata) -> Validators {
        Self::from_parts(meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec())
    }

    /// From `stat` fields; `mtime` in seconds since 1970 (may be negative).
    fn from_parts(ino: u64, size: u64, mtime: i64, mtime_nsec: i64) -> Validators {
        let nanos = i128::from(mtime) * 1_000_000_000 + i128::from(mtime_nsec);
        let etag = format!("\"{ino:x}-{size:x}-{nanos:x}\"");
        let last_modified = u64::try_from(mtime)
            .ok()
            .filter(|&s| s <= LAST_HTTP_DATE)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s));
        Validators {
            etag,
            last_modified,
        }
    }

    /// `Last-Modified` as an HTTP date.
    pub fn last_modified_header(&self) -> Option<String> {
        self.last_modified.map(httpdate::fmt_http_date)
    }
}

/// The verdict of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on and answer normally.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the preconditions of a GET or HEAD against `v`.
pub fn evaluate(headers: &HeaderMap, v: &Validators) -> Precondition {
    if headers.contains_key(IF_MATCH) {
        // Strong comparison.
        if !tag_list_matches(headers, IF_MATCH, &v.etag, false) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(lm)) = (date(headers, IF_UNMODIFIED_SINCE), v.last_modified)
        && lm > since
    {
        return Precondition::Failed;
    }
    if headers.contains_key(IF_NONE_MATCH) {
        // Weak comparison.
        if tag_list_matches(headers, IF_NONE_MATCH, &v.etag, true) {
            return Precondition::NotModified;
        }
    } else if let (Some(since), Some(lm)) = (date(headers, IF_MODIFIED_SINCE), v.last_modified)
        && lm <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a `Range` may be honoured: no `If-Range`, or one that names the
/// current version (a strong ETag match, or exactly `Last-Modified`).
pub fn if_range_allows(headers: &HeaderMap, v: &Validators) -> bool {
    let mut values = headers.get_all(IF_RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // Absent: allowed; repeated: not a valid If-Range, so no range.
        return !headers.contains_key(IF_RANGE);
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        // A weak tag never matches strongly.
        return value == v.etag;
    }
    match (httpdate::parse_http_date(value), v.last_modified) {
        (Ok(d), Some(lm)) => d == lm,
        _ => false,
    }
}

/// The single, valid HTTP date of header `name`; invalid dates are ignored
/// (RFC 9110 §13.1.3, §13.1.4).
fn date(headers: &HeaderMap, name: http::HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// Whether the entity-tag list of header `name` (over all its lines) is
/// `*` or names `etag`; `weak` compares ignoring `W/`. A malformed list
/// matches nothing.
fn tag_list_matches(headers: &HeaderMap, name: http::HeaderName, etag: &str, weak: bool) -> bool {
    headers.get_all(name).iter().any(|value| {
        let Ok(value) = value.to_str() else {
            return false;
        };
        if value.trim() == "*" {
            return true;
        }
        EntityTags(value).any(|t| match t {
            Some((is_weak, opaque)) => opaque == etag && (weak || !is_weak),
            None => false,
        })
    })
}

/// The entity tags of a list: `Some((weak, "\"opaque\""))` per tag, then a
/// single `None` if the rest does not parse.
struct EntityTags<'a>(&'a str);

impl<'a> Iterator for EntityTags<'a> {
    type Item = Option<(bool, &'a str)>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.0.trim_start_matches([' ', '\t', ',']);
        if s.is_empty() {
            return None;
        }
        let (weak, s) = match s.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let tag = s
            .strip_prefix('"')
            .and_then(|rest| rest.find('"'))
            .map(|end| &s[..end + 2]);
        let Some(tag) = tag else {
            self.0 = "";
            return Some(None);
        };
        let rest = &s[tag.len()..];
        let rest_trimmed = rest.trim_start_matches([' ', '\t']);
        if !(rest_trimmed.is_empty() || rest_trimmed.starts_with(',')) {
            self.0 = "";
            return Some(None);
        }
        self.0 = rest_trimmed;
        Some(Some((weak, tag)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TAG: &str = "\"1-2-3\"";

    fn v() -> Validators {
        Validators {
            etag: TAG.into(),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        }
    }

    fn h(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, val) in pairs {
            m.append(k.clone(), HeaderValue::from_str(val).unwrap());
        }
        m
    }

    // 1_000_000_000 s is Sun, 09 Sep 2001 01:46:40 GMT.
    const LM: &str = "Sun, 09 Sep 2001 01:46:40 GMT";
    const BEFORE: &str = "Sun, 09 Sep 2001 01:46:39 GMT";
    const AFTER: &str = "Sun, 09 Sep 2001 01:46:41 GMT";

    #[test]
    fn validators_of_metadata() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "hello").unwrap();
        let meta = f.path().metadata().unwrap();
        let v = Validators::of(&meta);
        assert!(v.etag.starts_with(&format!("\"{:x}-5-", meta.ino())));
        assert!(v.etag.ends_with('"'));
        assert!(v.last_modified_header().unwrap().ends_with(" GMT"));
    }

    #[test]
    fn validators_out_of_http_date_range() {
        let v = Validators::from_parts(0x10, 0x20, 1_000_000_000, 5);
        assert_eq!(v.etag, "\"10-20-de0b6b3a7640005\"");
        assert_eq!(v.last_modified_header().as_deref(), Some(LM));
        let v = Validators::from_parts(1, 1, -86_400, 0);
        assert_eq!(v.last_modified, None);
        assert!(v.etag.starts_with("\"1-1-"));
        assert_eq!(
            Validators::from_parts(1, 1, 253_402_300_799, 0)
                .last_modified_header()
                .as_deref(),
            Some("Fri, 31 Dec 9999 23:59:59 GMT")
        );
        assert_eq!(
            Validators::from_parts(1, 1, 253_402_300_800, 0).last_modified,
            None
        );
        assert_eq!(
            Validators::from_parts(1, 1, i64::MAX, 999_999_999).last_modified,
            None
        );
        assert_eq!(
            Validators::from_parts(1, 1, i64::MIN, 0).last_modified,
            None
        );
    }

    #[test]
    fn entity_tag_lists() {
        let all: Vec<_> = EntityTags(r#""a", W/"b" ,"c,d""#).collect();
        assert_eq!(
            all,
            vec![
                Some((false, "\"a\"")),
                Some((true, "\"b\"")),
                Some((false, "\"c,d\""))
            ]
        );
        let bad: Vec<_> = EntityTags(r#""a", b"#).collect();
        assert_eq!(bad, vec![Some((false, "\"a\"")), None]);
        let bad: Vec<_> = EntityTags(r#""a"x"#).collect();
        assert_eq!(bad, vec![None]);
        assert_eq!(EntityTags(" , ").count(), 0);
    }

    #[test]
    fn if_none_match() {
        use Precondition::*;
        assert_eq!(evaluate(&h(&[]), &v()), Proceed);
        assert_eq!(evaluate(&h(&[(IF_NONE_MATCH, TAG)]), &v()), NotModified);
        assert_eq!(
            evaluate(&h(&[(IF_NONE_MATCH, "W/\"1-2-3\"")]), &v()),
            NotModified
        );
        assert_eq!(
            evaluate(&h(&[(IF_NONE_MATCH, "\"x\", \"1-2-3\"")]), &v()),
            NotModified
        );
        assert_eq!(evaluate(&h(&[(IF_NONE_MATCH, "*")]), &v()), NotModified);
        assert_eq!(evaluate(&h(&[(IF_NONE_MATCH, "\"x\"")]), &v()), Proceed);
        assert_eq!(evaluate(&h(&[(IF_NONE_MATCH, "1-2-3")]), &v()), Proceed);
        assert_eq!(
            evaluate(&h(&[(IF_NONE_MATCH, "\"x\""), (IF_NONE_MATCH, TAG)]), &v()),
            NotModified
        );
    }

    #[test]
    fn if_modified_since() {
        use Precondition::*;
        assert_eq!(evaluate(&h(&[(IF_MODIFIED_SINCE, LM)]), &v()), NotModified);
        assert_eq!(
            evaluate(&h(&[(IF_MODIFIED_SINCE, AFTER)]), &v()),
            NotModified
        );
        assert_eq!(evaluate(&h(&[(IF_MODIFIED_SINCE, BEFORE)]), &v()), Proceed);
        assert_eq!(
            evaluate(&h(&[(IF_MODIFIED_SINCE, "yesterday")]), &v()),
            Proceed
        );
        // Ignored when If-None-Match is present.
        assert_eq!(
            evaluate(
                &h(&[(IF_NONE_MATCH, "\"x\""), (IF_MODIFIED_SINCE, LM)]),
                &v()
            ),
            Proceed
        );
        // No Last-Modified: nothing to compare.
        let mut nolm = v();
        nolm.last_modified = None;
        assert_eq!(evaluate(&h(&[(IF_MODIFIED_SINCE, LM)]), &nolm), Proceed);
    }

    #[test]
    fn if_match_and_unmodified_since() {
        use Precondition::*;
        assert_eq!(evaluate(&h(&[(IF_MATCH, TAG)]), &v()), Proceed);
        assert_eq!(evaluate(&h(&[(IF_MATCH, "*")]), &v()), Proceed);
        assert_eq!(evaluate(&h(&[(IF_MATCH, "W/\"1-2-3\"")]), &v()), Failed);
        assert_eq!(evaluate(&h(&[(IF_MATCH, "\"x\"")]), &v()), Failed);
        assert_eq!(evaluate(&h(&[(IF_UNMODIFIED_SINCE, LM)]), &v()), Proceed);
        assert_eq!(evaluate(&h(&[(IF_UNMODIFIED_SINCE, BEFORE)]), &v()), Failed);
        // If-Match wins over If-Unmodified-Since.
        assert_eq!(
            evaluate(&h(&[(IF_MATCH, TAG), (IF_UNMODIFIED_SINCE, BEFORE)]), &v()),
            Proceed
        );
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(&h(&[]), &v()));
        assert!(if_range_allows(&h(&[(IF_RANGE, TAG)]), &v()));
        assert!(if_range_allows(&h(&[(IF_RANGE, LM)]), &v()));
        assert!(!if_range_allows(&h(&[(IF_RANGE, "W/\"1-2-3\"")]), &v()));
        assert!(!if_range_allows(&h(&[(IF_RANGE, "\"x\"")]), &v()));
        assert!(!if_range_allows(&h(&[(IF_RANGE, AFTER)]), &v()));
        assert!(!if_range_allows(&h(&[(IF_RANGE, "garbage")]), &v()));
        assert!(!if_range_allows(
            &h(&[(IF_RANGE, TAG), (IF_RANGE, TAG)]),
            &v()
        ));
    }
}
