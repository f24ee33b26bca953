//! Typed reading of [`Node`]s, collecting every error instead of stopping.
//!
//! [`Obj`] walks one JSON object: each `get` marks a key as used and reports
//! a repeated key; `finish` reports the keys nobody asked for, with a "did you
//! mean" among the keys the object knows. The free functions coerce values
//! the way the original accepts them (everything may be a string).

use crate::error::{Diags, did_you_mean};
use crate::jsonc::{Node, NodeKind, Prop};
use crate::source::Loc;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keys that may repeat inside one object; their values accumulate.
const REPEATABLE: &[&str] = &[
    "ssl-option-set",
    "ssl-option-clear",
    "filespath",
    "plugin-dir",
];

/// One JSON object being read.
pub(crate) struct Obj<'a> {
    /// What the object is, for messages: "vhost", "mount", …
    pub what: &'static str,
    pub loc: Loc,
    props: Vec<&'a Prop>,
    used: Vec<bool>,
    known: &'static [&'static str],
}

impl<'a> Obj<'a> {
    /// Reads `node` as an object; reports and returns `None` if it is not one.
    pub fn from_node(
        d: &mut Diags,
        node: &'a Node,
        key: &str,
        what: &'static str,
        known: &'static [&'static str],
    ) -> Option<Self> {
        match &node.kind {
            NodeKind::Object(props) => Some(Self::from_props(
                props.iter().collect(),
                node.loc,
                what,
                known,
            )),
            _ => {
                d.error(
                    node.loc,
                    key,
                    format!(
                        "expected an object {{…}} for the {what}, found {}",
                        node.type_name()
                    ),
                    None,
                );
                None
            }
        }
    }

    pub fn from_props(
        props: Vec<&'a Prop>,
        loc: Loc,
        what: &'static str,
        known: &'static [&'static str],
    ) -> Self {
        let used = vec![false; props.len()];
        Obj {
            what,
            loc,
            props,
            used,
            known,
        }
    }

    /// The value of `key`; a repeated key is an error naming both places.
    pub fn get(&mut self, d: &mut Diags, key: &str) -> Option<&'a Node> {
        let mut found: Option<&'a Prop> = None;
        for (i, p) in self.props.iter().enumerate() {
            if p.key != key {
                continue;
            }
            self.used[i] = true;
            match found {
                None => found = Some(p),
                Some(first) => d.error(
                    p.key_loc,
                    key,
                    format!(
                        "set twice in one {}; first set at {}",
                        self.what,
                        d.sources.describe(first.key_loc)
                    ),
                    Some("keep only one of them".into()),
                ),
            }
        }
        // `null` means "not set": --print-config writes it for unset keys.
        found
            .map(|p| &p.value)
            .filter(|n| !matches!(n.kind, NodeKind::Null))
    }

    /// The value under the first of several spellings of one key.
    pub fn get_alias(
        &mut self,
        d: &mut Diags,
        keys: &[&'static str],
    ) -> Option<(&'static str, &'a Node)> {
        let mut found: Option<(&'static str, &'a Node)> = None;
        for k in keys {
            if let Some(n) = self.get(d, k) {
                match found {
                    None => found = Some((k, n)),
                    Some((first, first_node)) => d.error(
                        n.loc,
                        k,
                        format!(
                            "\"{first}\" and \"{k}\" are the same key; first set at {}",
                            d.sources.describe(first_node.loc)
                        ),
                        Some("keep only one spelling".into()),
                    ),
                }
            }
        }
        found
    }

    /// Every value of a key that may repeat (see `REPEATABLE`).
    pub fn get_all(&mut self, key: &str) -> Vec<&'a Node> {
        debug_assert!(REPEATABLE.contains(&key));
        let mut out = Vec::new();
        for (i, p) in self.props.iter().enumerate() {
            if p.key == key {
                self.used[i] = true;
                match &p.value.kind {
                    NodeKind::Array(items) => out.extend(items.iter()),
                    NodeKind::Null => {}
                    _ => out.push(&p.value),
                }
            }
        }
        out
    }

    /// Location of a key's name, for errors about the key as a whole.
    pub fn key_loc(&self, key: &str) -> Loc {
        self.props
            .iter()
            .find(|p| p.key == key)
            .map_or(self.loc, |p| p.key_loc)
    }

    /// Whether a key of the object looks like a misspelling of `key` (the
    /// unknown-key error suggests it; a "missing key" error would only
    /// repeat it).
    pub fn misspelt(&self, key: &str) -> bool {
        self.props
            .iter()
            .any(|p| p.key != key && did_you_mean(&p.key, &[key]).is_some())
    }

    /// Reports every key that was not read.
    pub fn finish(self, d: &mut Diags) {
        for (p, used) in self.props.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let hint = did_you_mean(&p.key, self.known).or_else(|| {
                Some(format!(
                    "see the {} keys in the configuration reference",
                    self.what
                ))
            });
            d.error(
                p.key_loc,
                &p.key,
                format!("unknown {} key", self.what),
                hint,
            );
        }
    }
}

/// A string value (numbers are taken as written).
pub(crate) fn string(d: &mut Diags, key: &str, n: &Node) -> Option<String> {
    match &n.kind {
        NodeKind::Str(s) => Some(s.clone()),
        NodeKind::Number(s) => Some(s.clone()),
        _ => {
            d.error(
                n.loc,
                key,
                format!("expected a string, found {}", n.type_name()),
                None,
            );
            None
        }
    }
}

/// A non-empty string value.
pub(crate) fn nonempty(d: &mut Diags, key: &str, n: &Node) -> Option<String> {
    let s = string(d, key, n)?;
    if s.trim().is_empty() {
        d.error(n.loc, key, "must not be empty", None);
        return None;
    }
    Some(s)
}

/// A boolean: JSON `true`/`false`, or `1 0 on off yes no true false` in any case.
pub(crate) fn boolean(d: &mut Diags, key: &str, n: &Node) -> Option<bool> {
    let text = match &n.kind {
        NodeKind::Bool(b) => return Some(*b),
        NodeKind::Str(s) | NodeKind::Number(s) => s.trim().to_ascii_lowercase(),
        _ => String::new(),
    };
    match text.as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => {
            d.error(
                n.loc,
                key,
                format!("{} is not a boolean", show(n)),
                Some("use one of 1 0 on off yes no true false".into()),
            );
            None
        }
    }
}

/// A whole number in `min..=max`, written as a JSON number or a string.
pub(crate) fn number(d: &mut Diags, key: &str, n: &Node, min: u64, max: u64) -> Option<u64> {
    let text = match &n.kind {
        NodeKind::Str(s) | NodeKind::Number(s) => s.trim().to_string(),
        _ => String::new(),
    };
    let hint = if max == u64::MAX {
        format!("use a whole number of at least {min}")
    } else {
        format!("use a whole number from {min} to {max}")
    };
    match text.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Some(v),
        Ok(_) => {
            d.error(
                n.loc,
                key,
                format!("{} is out of range", show(n)),
                Some(hint),
            );
            None
        }
        Err(_) => {
            d.error(
                n.loc,
                key,
                format!("{} is not a whole number", show(n)),
                Some(hint),
            );
            None
        }
    }
}

/// Seconds as a `Duration` (0 allowed only when `min` is 0).
pub(crate) fn seconds(d: &mut Diags, key: &str, n: &Node, min: u64) -> Option<Duration> {
    number(d, key, n, min, 10 * 365 * 24 * 3600).map(Duration::from_secs)
}

/// A path; relative paths are taken from the configuration directory.
pub(crate) fn path(d: &mut Diags, key: &str, n: &Node, base: &Path) -> Option<PathBuf> {
    let s = nonempty(d, key, n)?;
    Some(resolve(base, &s))
}

pub(crate) fn resolve(base: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A list of strings: a JSON array of strings, or one comma-separated string.
pub(crate) fn string_list(d: &mut Diags, key: &str, n: &Node) -> Vec<(String, Loc)> {
    match &n.kind {
        NodeKind::Array(items) => items
            .iter()
            .filter_map(|i| nonempty(d, key, i).map(|s| (s.trim().to_string(), i.loc)))
            .collect(),
        NodeKind::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| (s.to_string(), n.loc))
            .collect(),
        _ => {
            d.error(
                n.loc,
                key,
                format!("expected a list of strings, found {}", n.type_name()),
                Some("write [\"a\", \"b\"] or \"a, b\"".into()),
            );
            Vec::new()
        }
    }
}

/// A name/value pair read from a list of objects.
pub(crate) struct Pair {
    pub name: String,
    pub name_loc: Loc,
    pub value: String,
    pub value_loc: Loc,
}

/// `[{"a": "1", "b": "2"}, {"c": "3"}]` → pairs in file order. A name repeated
/// inside one object is an error unless it is in `REPEATABLE`.
pub(crate) fn pairs(d: &mut Diags, key: &str, n: &Node) -> Vec<Pair> {
    let NodeKind::Array(items) = &n.kind else {
        let hint = if matches!(n.kind, NodeKind::Object(_)) {
            format!("write it as a list of objects: \"{key}\": [{{ \"name\": \"value\" }}]")
        } else {
            format!("write \"{key}\": [{{ \"name\": \"value\" }}]")
        };
        d.error(
            n.loc,
            key,
            format!("expected a list of objects, found {}", n.type_name()),
            Some(hint),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let NodeKind::Object(props) = &item.kind else {
            d.error(
                item.loc,
                key,
                format!(
                    "expected an object {{\"name\": \"value\"}}, found {}",
                    item.type_name()
                ),
                None,
            );
            continue;
        };
        object_pairs(d, key, props, &mut out);
    }
    out
}

/// The pairs of one object, with the repeated-name rule of [`pairs`].
pub(crate) fn object_pairs(d: &mut Diags, key: &str, props: &[Prop], out: &mut Vec<Pair>) {
    for (i, p) in props.iter().enumerate() {
        if !REPEATABLE.contains(&p.key.as_str())
            && let Some(first) = props[..i].iter().find(|q| q.key == p.key)
        {
            d.error(
                p.key_loc,
                key,
                format!(
                    "\"{}\" is set twice in one object; first set at {}",
                    p.key,
                    d.sources.describe(first.key_loc)
                ),
                Some("keep only one of them".into()),
            );
            continue;
        }
        if let (true, NodeKind::Array(items)) =
            (REPEATABLE.contains(&p.key.as_str()), &p.value.kind)
        {
            for item in items {
                if let Some(value) = string(d, &p.key, item) {
                    out.push(Pair {
                        name: p.key.clone(),
                        name_loc: p.key_loc,
                        value,
                        value_loc: item.loc,
                    });
                }
            }
            continue;
        }
        let value = match &p.value.kind {
            NodeKind::Str(s) | NodeKind::Number(s) => s.clone(),
            NodeKind::Bool(b) => b.to_string(),
            _ => {
                d.error(
                    p.value.loc,
                    key,
                    format!(
                        "the value of \"{}\" must be a string, found {}",
                        p.key,
                        p.value.type_name()
                    ),
                    None,
                );
                continue;
            }
        };
        out.push(Pair {
            name: p.key.clone(),
            name_loc: p.key_loc,
            value,
            value_loc: p.value.loc,
        });
    }
}

/// A value as it appears in the file, for messages.
pub(crate) fn show(n: &Node) -> String {
    match &n.kind {
        NodeKind::Str(s) => format!("\"{s}\""),
        NodeKind::Number(s) => s.clone(),
        NodeKind::Bool(b) => b.to_string(),
        NodeKind::Null => "null".into(),
        NodeKind::Array(_) => "an array".into(),
        NodeKind::Object(_) => "an object".into(),
    }
}
