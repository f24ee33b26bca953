//! Commented JSON → a tree of [`Node`]s that remember where they came from.
//!
//! The original lwsws accepts `#` comments; we also accept `//` and `/* */`
//! and trailing commas. Comments are first replaced by spaces byte for byte
//! (newlines kept), so line and column numbers in messages stay those of the
//! original text. `jsonc-parser` then parses the blanked text into an AST with
//! byte ranges that, unlike serde, keeps duplicate keys; the tree built here
//! is what `convert.rs` reads into typed values.

use crate::source::Loc;
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions, ast};

/// A parsed JSON value with its location.
#[derive(Debug, Clone)]
pub struct Node {
    pub loc: Loc,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Null,
    Bool(bool),
    /// The number's text as written.
    Number(String),
    Str(String),
    Array(Vec<Node>),
    Object(Vec<Prop>),
}

/// One `"key": value` pair of an object, in file order, duplicates kept.
#[derive(Debug, Clone)]
pub struct Prop {
    pub key: String,
    pub key_loc: Loc,
    pub value: Node,
}

impl Node {
    /// A short name of the value's JSON type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Number(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Array(_) => "an array",
            NodeKind::Object(_) => "an object",
        }
    }
}

/// A syntax error: where, what, and how to fix it.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
    pub hint: &'static str,
}

/// What to do about a parser error, in the words of someone editing the
/// file at the position given.
fn hint(kind: &jsonc_parser::errors::ParseErrorKind) -> &'static str {
    use jsonc_parser::errors::ParseErrorKind as K;
    match kind {
        K::ExpectedComma => {
            "add a \",\" before this value: the one before it is not followed by one"
        }
        K::UnexpectedComma => {
            "remove this \",\": a value or member is missing before it (a doubled comma?)"
        }
        K::UnexpectedTokenInObject => {
            "a \"key\": value member must start here: remove this character (a doubled \",\"?) or quote the key"
        }
        K::ExpectedColonAfterObjectKey => "add \":\" between the key and its value",
        K::UnexpectedColon => "remove this \":\", or put a key in quotes before it",
        K::ExpectedStringObjectProperty | K::UnexpectedWord => {
            "put the key in double quotes (\"key\": value)"
        }
        K::ExpectedObjectValue => "give the key a value (\"key\": \"value\")",
        K::SingleQuotedStringsNotAllowed => "use double quotes for strings",
        K::UnterminatedObject => "close the object with \"}\" (a brace is missing)",
        K::UnterminatedArray => "close the list with \"]\" (a bracket is missing)",
        K::UnexpectedCloseBrace | K::UnexpectedCloseBracket => {
            "remove this closing bracket, or open it earlier (brackets do not match)"
        }
        K::MultipleRootJsonValues => {
            "put everything in one object: { \"global\": …, \"vhosts\": [ … ] }"
        }
        K::String(_) => "close the string with a double quote, and escape \" and \\ inside it",
        _ => "fix the JSON syntax here",
    }
}

/// Replaces `#`, `//` and `/* */` comments outside strings by spaces,
/// keeping every newline and the byte length of the text.
pub fn blank_comments(text: &str) -> Result<String, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip a string, honouring backslash escapes.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    if i < bytes.len() && bytes[i] == b'\n' {
                        // An unterminated string: let the parser report it.
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                let end = line_end(bytes, i);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = line_end(bytes, i);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let Some(close) = find(bytes, i + 2, b"*/") else {
                    return Err(SyntaxError {
                        offset: i,
                        message: "comment opened with /* is never closed".into(),
                        hint: "add */ where the comment ends",
                    });
                };
                blank(&mut out, i, close + 2);
                i = close + 2;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced by ASCII spaces, whole characters at a
    // time (comments end at ASCII delimiters), so the text stays UTF-8.
    String::from_utf8(out).map_err(|e| SyntaxError {
        offset: e.utf8_error().valid_up_to(),
        message: "the file is not valid UTF-8".into(),
        hint: "save the file as UTF-8",
    })
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Parses one file's text (comments allowed) into a [`Node`].
/// `ddir` replaces `_lws_ddir_` inside every string value.
pub fn parse(text: &str, file: usize, ddir: &str) -> Result<Option<Node>, SyntaxError> {
    let blanked = blank_comments(text)?;
    let options = ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: true,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let result = jsonc_parser::parse_to_ast(&blanked, &CollectOptions::default(), &options)
        .map_err(|e| SyntaxError {
            offset: e.range().start,
            message: e.kind().to_string(),
            hint: hint(e.kind()),
        })?;
    Ok(result.value.map(|v| convert(v, file, ddir)))
}

fn convert(value: ast::Value<'_>, file: usize, ddir: &str) -> Node {
    let loc = |start: usize| Loc {
        file,
        offset: start,
    };
    match value {
        ast::Value::StringLit(s) => Node {
            loc: loc(s.range.start),
            kind: NodeKind::Str(s.value.replace("_lws_ddir_", ddir)),
        },
        ast::Value::NumberLit(n) => Node {
            loc: loc(n.range.start),
            kind: NodeKind::Number(n.value.to_string()),
        },
        ast::Value::BooleanLit(b) => Node {
            loc: loc(b.range.start),
            kind: NodeKind::Bool(b.value),
        },
        ast::Value::NullKeyword(n) => Node {
            loc: loc(n.range.start),
            kind: NodeKind::Null,
        },
        ast::Value::Array(a) => Node {
            loc: loc(a.range.start),
            kind: NodeKind::Array(
                a.elements
                    .into_iter()
                    .map(|v| convert(v, file, ddir))
                    .collect(),
            ),
        },
        ast::Value::Object(o) => Node {
            loc: loc(o.range.start),
            kind: NodeKind::Object(
                o.properties
                    .into_iter()
                    .map(|p| {
                        let key_loc = loc(p.name.range().start);
                        Prop {
                            key: p.name.into_string(),
                            key_loc,
                            value: convert(p.value, file, ddir),
                        }
                    })
                    .collect(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_all_comment_kinds_and_keeps_lines() {
        let text = "{ # hash \"x\n  // slashes\n /* a\n b */ \"k\": \"v # not a comment\" }";
        let out = blank_comments(text).unwrap();
        assert_eq!(out.len(), text.len());
        assert_eq!(out.matches('\n').count(), text.matches('\n').count());
        assert!(!out.contains("hash"));
        assert!(!out.contains("slashes"));
        assert!(out.contains("\"v # not a comment\""));
    }

    #[test]
    fn unterminated_block_comment_is_an_error() {
        let e = blank_comments("{ /* open").unwrap_err();
        assert_eq!(e.offset, 2);
    }

    #[test]
    fn keeps_duplicates_and_substitutes_ddir() {
        let n = parse("{\"a\": \"_lws_ddir_/x\", \"a\": 2,}", 0, "/d")
            .unwrap()
            .unwrap();
        let NodeKind::Object(props) = n.kind else {
            panic!()
        };
        assert_eq!(props.len(), 2);
        assert!(matches!(&props[0].value.kind, NodeKind::Str(s) if s == "/d/x"));
        assert_eq!(props[1].key_loc.offset, 22);
    }
}
