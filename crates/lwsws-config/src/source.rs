//! Configuration source files and positions inside them.
//!
//! Every value read from a file keeps a [`Loc`]: which file and which byte.
//! [`Sources`] turns a `Loc` into the `file:line:column` that error messages
//! show. Comments are blanked byte for byte (see `jsonc.rs`), so offsets into
//! the blanked text are offsets into the original text.

use std::path::PathBuf;

/// A position in one of the loaded files: index into [`Sources`] and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    pub file: usize,
    pub offset: usize,
}

/// One configuration file as read from disk.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as shown in messages (the configuration directory joined with the name).
    pub path: PathBuf,
    /// The original text.
    pub text: String,
    /// Byte offset of the start of every line, for offset → line/column.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, col + 1)
    }
}

/// All files of one load, indexed by [`Loc::file`].
#[derive(Debug, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
}

impl Sources {
    pub fn add(&mut self, file: SourceFile) -> usize {
        self.files.push(file);
        self.files.len() - 1
    }

    /// `file:line:column` of a location.
    pub fn describe(&self, loc: Loc) -> String {
        match self.files.get(loc.file) {
            Some(f) => {
                let (l, c) = f.line_col(loc.offset);
                format!("{}:{}:{}", f.path.display(), l, c)
            }
            None => "<unknown>".to_string(),
        }
    }

    /// `file:line` of a location, for "defined at" notes.
    pub fn describe_line(&self, loc: Loc) -> String {
        match self.files.get(loc.file) {
            Some(f) => format!("{}:{}", f.path.display(), f.line_col(loc.offset).0),
            None => "<unknown>".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let f = SourceFile::new("x".into(), "ab\n\u{e9}c\nd".into());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        // 'c' follows a two-byte character: byte 5, column 2
        assert_eq!(f.line_col(5), (2, 2));
        assert_eq!(f.line_col(7), (3, 1));
    }
}
