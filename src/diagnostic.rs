//! Problems found in what admins write, reported as `FILE:LINE:COL: message` so that editors and
//! CI logs jump straight to the offending text.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file is rejected.
    Error,
    /// The file loads, but something is probably wrong.
    Warning,
}

/// One problem at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warn = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(
            f,
            "{}:{}:{}: {warn}{}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Collects diagnostics for one file, turning YAML locations (plus offsets inside a scalar)
/// into line and column.
pub struct Reporter<'a> {
    file: &'a Path,
    source: &'a str,
    /// What was found so far.
    pub found: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    /// A reporter for `file` whose text is `source`.
    pub fn new(file: &'a Path, source: &'a str) -> Self {
        Reporter {
            file,
            source,
            found: Vec::new(),
        }
    }

    /// True when an error (not a warning) was reported.
    pub fn has_errors(&self) -> bool {
        self.found.iter().any(|d| d.severity == Severity::Error)
    }

    fn push(&mut self, line: u32, col: u32, message: String, severity: Severity) {
        self.found.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: line.max(1),
            col: col.max(1),
            message,
            severity,
        });
    }

    /// An error at a line and column.
    pub fn error_at(&mut self, line: u32, col: u32, message: impl Into<String>) {
        self.push(line, col, message.into(), Severity::Error);
    }

    /// An error at a YAML node.
    pub fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.push(
            at.line() as u32,
            at.column() as u32,
            message.into(),
            Severity::Error,
        );
    }

    /// A warning at a YAML node.
    pub fn warning(&mut self, at: &Location, message: impl Into<String>) {
        self.push(
            at.line() as u32,
            at.column() as u32,
            message.into(),
            Severity::Warning,
        );
    }

    /// An error `offset` characters into the scalar that starts at `at` (skipping its opening
    /// quote when it is quoted).
    pub fn error_in_scalar(&mut self, at: &Location, offset: usize, message: impl Into<String>) {
        let (line, col) = self.scalar_position(at, offset);
        self.push(line, col, message.into(), Severity::Error);
    }

    fn line_text(&self, line: u32) -> &str {
        self.source
            .lines()
            .nth((line as usize).saturating_sub(1))
            .unwrap_or("")
    }

    fn scalar_position(&self, at: &Location, offset: usize) -> (u32, u32) {
        let (line, col) = (at.line() as u32, at.column() as u32);
        let first = self
            .line_text(line)
            .chars()
            .nth((col as usize).saturating_sub(1));
        let quote = u32::from(matches!(first, Some('"' | '\'')));
        (line, col + quote + offset as u32)
    }

    /// An error `offset` characters into `needle` where it is written on `at`'s line or the
    /// lines just before it (for map keys, whose own position YAML does not give).
    pub fn error_in_key(
        &mut self,
        at: &Location,
        needle: &str,
        offset: usize,
        message: impl Into<String>,
    ) {
        let line = at.line() as u32;
        let found = (0..3).find_map(|back| {
            let l = line.checked_sub(back).filter(|l| *l >= 1)?;
            let text = self.line_text(l);
            let byte = text.find(needle)?;
            Some((l, text[..byte].chars().count() as u32 + 1))
        });
        let (line, col) = found.unwrap_or((line, at.column() as u32));
        self.push(line, col + offset as u32, message.into(), Severity::Error);
    }

    /// Reports a YAML error (syntax, unknown key, wrong type) at its own position.
    pub fn yaml_error(&mut self, err: &serde_saphyr::Error) {
        let plain = err.without_snippet();
        let (line, col) = plain
            .location()
            .map(|l| (l.line() as u32, l.column() as u32))
            .unwrap_or((1, 1));
        let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
        let text = plain.render_with_options(opts);
        let message = strip_location_suffix(&text);
        self.push(line, col, message, Severity::Error);
    }
}

/// serde-saphyr appends " at line L column C" to plain messages; the position is already in
/// front of ours.
fn strip_location_suffix(text: &str) -> String {
    let text = text.lines().next().unwrap_or(text).trim();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}
