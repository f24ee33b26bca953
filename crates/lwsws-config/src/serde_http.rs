//! `#[serde(with = "…")]` helpers for the [`Config`](crate::Config) fields
//! whose types have no serde form of their own (the `http` types), or whose
//! own form would not round-trip every value (paths that are not UTF-8).
//!
//! The supervisor sends the validated configuration to its workers as JSON,
//! and a worker must get back exactly the value the supervisor holds. So:
//! - [`StatusCode`] is its number;
//! - [`HeaderName`] is its (lower-case) name;
//! - [`HeaderValue`] is a string when it is visible ASCII, else its raw bytes
//!   (a list of numbers in JSON), so that every value comes back byte for byte;
//! - a path is a string when it is UTF-8, else its raw bytes.
//!
//! Formats that are not human-readable always get the raw bytes. A value that
//! does not parse becomes a serde error, never a panic.

use http::{HeaderName, HeaderValue, StatusCode};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// A value read back as text or as raw bytes.
enum TextOrBytes {
    Text(String),
    Bytes(Vec<u8>),
}

/// Writes `text` when there is one and the format is human-readable, else `bytes`.
fn serialize_text_or_bytes<S: Serializer>(
    text: Option<&str>,
    bytes: &[u8],
    s: S,
) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) if s.is_human_readable() => s.serialize_str(t),
        _ => s.serialize_bytes(bytes),
    }
}

struct TextOrBytesVisitor;

impl<'de> Visitor<'de> for TextOrBytesVisitor {
    type Value = TextOrBytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a list of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<TextOrBytes, E> {
        Ok(TextOrBytes::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<TextOrBytes, E> {
        Ok(TextOrBytes::Text(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<TextOrBytes, E> {
        Ok(TextOrBytes::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<TextOrBytes, E> {
        Ok(TextOrBytes::Bytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextOrBytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(TextOrBytes::Bytes(out))
    }
}

fn deserialize_text_or_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<TextOrBytes, D::Error> {
    if d.is_human_readable() {
        d.deserialize_any(TextOrBytesVisitor)
    } else {
        d.deserialize_byte_buf(TextOrBytesVisitor)
    }
}

// ---- http types -------------------------------------------------------------

/// `StatusCode` as its number.
pub(crate) mod status_code {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(status.as_u16())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StatusCode, D::Error> {
        let code = u16::deserialize(d)?;
        StatusCode::from_u16(code)
            .map_err(|_| de::Error::custom(format!("{code} is not an HTTP status code")))
    }
}

struct NameRef<'a>(&'a HeaderName);

impl Serialize for NameRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

struct OwnedName(HeaderName);

impl<'de> Deserialize<'de> for OwnedName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OwnedName, D::Error> {
        let name = match deserialize_text_or_bytes(d)? {
            TextOrBytes::Text(t) => HeaderName::from_bytes(t.as_bytes()),
            TextOrBytes::Bytes(b) => HeaderName::from_bytes(&b),
        };
        name.map(OwnedName)
            .map_err(|e| de::Error::custom(format!("invalid header name: {e}")))
    }
}

struct ValueRef<'a>(&'a HeaderValue);

impl Serialize for ValueRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `to_str` succeeds only for visible ASCII (and tab), which
        // `HeaderValue::from_str` turns back into the same bytes.
        serialize_text_or_bytes(self.0.to_str().ok(), self.0.as_bytes(), s)
    }
}

struct OwnedValue(HeaderValue);

impl<'de> Deserialize<'de> for OwnedValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OwnedValue, D::Error> {
        let value = match deserialize_text_or_bytes(d)? {
            TextOrBytes::Text(t) => HeaderValue::from_str(&t),
            TextOrBytes::Bytes(b) => HeaderValue::from_bytes(&b),
        };
        value
            .map(OwnedValue)
            .map_err(|e| de::Error::custom(format!("invalid header value: {e}")))
    }
}

/// `Vec<(HeaderName, HeaderValue)>` as a list of `[name, value]` pairs.
pub(crate) mod header_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        list: &[(HeaderName, HeaderValue)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|(n, v)| (NameRef(n), ValueRef(v))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, D::Error> {
        let list = Vec::<(OwnedName, OwnedValue)>::deserialize(d)?;
        Ok(list.into_iter().map(|(n, v)| (n.0, v.0)).collect())
    }
}

// ---- paths ------------------------------------------------------------------

struct PathRef<'a>(&'a Path);

impl Serialize for PathRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_text_or_bytes(self.0.to_str(), self.0.as_os_str().as_bytes(), s)
    }
}

struct OwnedPath(PathBuf);

impl<'de> Deserialize<'de> for OwnedPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OwnedPath, D::Error> {
        Ok(OwnedPath(match deserialize_text_or_bytes(d)? {
            TextOrBytes::Text(t) => PathBuf::from(t),
            TextOrBytes::Bytes(b) => PathBuf::from(OsString::from_vec(b)),
        }))
    }
}

/// `PathBuf`, exact even when it is not UTF-8.
pub(crate) mod path {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        PathRef(p).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        OwnedPath::deserialize(d).map(|p| p.0)
    }
}

/// `Option<PathBuf>`, exact even when it is not UTF-8.
pub(crate) mod opt_path {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.serialize_some(&PathRef(p)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<OwnedPath>::deserialize(d)?.map(|p| p.0))
    }
}

/// `Vec<PathBuf>`, exact even when a path is not UTF-8.
pub(crate) mod path_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(list: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(list.iter().map(|p| PathRef(p)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        let list = Vec::<OwnedPath>::deserialize(d)?;
        Ok(list.into_iter().map(|p| p.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "status_code")]
        status: StatusCode,
        #[serde(with = "header_list")]
        headers: Vec<(HeaderName, HeaderValue)>,
        #[serde(with = "path")]
        path: PathBuf,
        #[serde(with = "opt_path")]
        maybe: Option<PathBuf>,
        #[serde(with = "opt_path")]
        none: Option<PathBuf>,
        #[serde(with = "path_list")]
        paths: Vec<PathBuf>,
    }

    fn odd_path() -> PathBuf {
        PathBuf::from(OsString::from_vec(b"/srv/\xff\xfe/x".to_vec()))
    }

    #[test]
    fn exact_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let sample = Sample {
            status: StatusCode::IM_A_TEAPOT,
            headers: vec![
                (
                    HeaderName::from_static("x-frame-options"),
                    HeaderValue::from_static("DENY"),
                ),
                (
                    HeaderName::from_static("x-odd"),
                    HeaderValue::from_bytes(b"caf\xc3\xa9 \xff\tend")?,
                ),
                (
                    HeaderName::from_static("x-empty"),
                    HeaderValue::from_static(""),
                ),
            ],
            path: odd_path(),
            maybe: Some(odd_path()),
            none: None,
            paths: vec![PathBuf::from("/usr/lib/lwsws"), odd_path()],
        };
        let json = serde_json::to_string(&sample)?;
        let back: Sample = serde_json::from_str(&json)?;
        assert_eq!(back, sample);
        assert_eq!(back.headers[1].1.as_bytes(), b"caf\xc3\xa9 \xff\tend");
        assert_eq!(serde_json::to_string(&back)?, json);
        // Readable where it can be.
        assert!(json.contains(r#"["x-frame-options","DENY"]"#), "{json}");
        assert!(json.contains(r#""/usr/lib/lwsws""#), "{json}");
        assert!(json.contains(r#""status":418"#), "{json}");
        Ok(())
    }

    #[test]
    fn bad_values_are_errors() {
        let bad = [
            r#"{"status":42,"headers":[],"path":"/","maybe":null,"none":null,"paths":[]}"#,
            r#"{"status":200,"headers":[["bad name","x"]],"path":"/","maybe":null,"none":null,"paths":[]}"#,
            r#"{"status":200,"headers":[["x","a\nb"]],"path":"/","maybe":null,"none":null,"paths":[]}"#,
            r#"{"status":200,"headers":[["x",[104,10]]],"path":"/","maybe":null,"none":null,"paths":[]}"#,
            r#"{"status":200,"headers":[["x",[300]]],"path":"/","maybe":null,"none":null,"paths":[]}"#,
            r#"{"status":200,"headers":[["x",5]],"path":"/","maybe":null,"none":null,"paths":[]}"#,
        ];
        for b in bad {
            assert!(serde_json::from_str::<Sample>(b).is_err(), "{b}");
        }
    }
}
