//! Configuration errors and warnings, each tied to a file, line, column and key.
//!
//! Loading never stops at the first problem: every [`Diagnostic`] of a load is
//! collected and reported together. The binary prints them as
//! `lwsws: file:line:col: "key": what is wrong (how to fix it)`.

use crate::source::{Loc, Sources};
use std::fmt;

/// Whether a diagnostic stops the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// `file:line:column`, or a file or directory alone when there is no position.
    pub place: String,
    /// The key the problem is about (empty for syntax errors).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.place)?;
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "\"{}\": ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One or more errors in the files; `warnings` were found along the way.
    #[error("{} error(s) in the configuration", errors.len())]
    Invalid {
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    },
}

/// Collects diagnostics during one load.
pub(crate) struct Diags<'s> {
    pub sources: &'s Sources,
    pub list: Vec<Diagnostic>,
}

impl<'s> Diags<'s> {
    pub fn new(sources: &'s Sources) -> Self {
        Diags {
            sources,
            list: Vec::new(),
        }
    }

    pub fn error(&mut self, loc: Loc, key: &str, message: impl Into<String>, hint: Option<String>) {
        self.push(
            Severity::Error,
            self.sources.describe(loc),
            key,
            message,
            hint,
        );
    }

    pub fn warn(&mut self, loc: Loc, key: &str, message: impl Into<String>, hint: Option<String>) {
        self.push(
            Severity::Warning,
            self.sources.describe(loc),
            key,
            message,
            hint,
        );
    }

    /// A diagnostic about a place that has no position in a file (a directory).
    pub fn push(
        &mut self,
        severity: Severity,
        place: String,
        key: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.list.push(Diagnostic {
            severity,
            place,
            key: key.to_string(),
            message: message.into(),
            hint,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }

    /// Splits into (errors, warnings).
    pub fn split(self) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        self.list
            .into_iter()
            .partition(|d| d.severity == Severity::Error)
    }
}

/// "did you mean" hint for a misspelt name among `known`.
pub(crate) fn did_you_mean(name: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| format!("did you mean \"{k}\"?"))
}
