//! One-line templates used in card fields: literal text with `{ expression }` holes.
//!
//! This module owns the template syntax (`{$.ref | trim_prefix('refs/heads/') | upper}`,
//! `{{`/`}}` for literal braces), its filters and the text rendering of JSON values.
//! Everything is parsed and validated by [`Template::compile`] (paths, filter arguments,
//! date formats); [`Template::render`] only evaluates and never fails.
//!
//! Layout:
//! - this file: the compiled form and its evaluation;
//! - `parse`: reads template text into it, checking each filter call against its row;
//! - `filters`: the table of filters, one row each (adding a filter is a row there and its
//!   function, there or in one of its submodules);
//! - `args`: a filter call's arguments, as the parser reads them and the rows declare them;
//! - `text`: the text rendering of values.

mod args;
mod filters;
mod parse;
mod text;

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

use super::jsonpath::{JsonPath, Scope};
use filters::Filter;
use parse::Parser;
use text::write_text;

/// A compiled one-line template.
pub struct Template {
    /// The text as written, shown by `Debug` (the built filters cannot show themselves).
    source: String,
    parts: Vec<Part>,
    /// Bytes of literal text, to size the output once.
    literal_len: usize,
}

/// Why a template did not compile.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// Char offset in the template text pointing at the offending text.
    pub offset: usize,
    /// Short human-readable description.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at char {})", self.message, self.offset)
    }
}

impl std::error::Error for TemplateError {}

/// Where a template is used, which decides what it may refer to.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompileOptions {
    /// false: `@` paths are an error ("@ is only allowed inside a row list (each:)").
    pub allow_element: bool,
}

enum Part {
    Text(String),
    Expr(Expr),
}

/// One `{ … }`: a value and the filters applied to it, left to right.
struct Expr {
    primary: Primary,
    filters: Vec<Filter>,
}

enum Primary {
    Path(JsonPath),
    /// A quoted literal, kept as a JSON string so it can be lent out without copying.
    Literal(Value),
}

impl Template {
    /// Parses and validates `text`; all later rendering works from the compiled form.
    ///
    /// # Errors
    ///
    /// The first problem in `text`, at the char where it is.
    pub fn compile(text: &str, opts: &CompileOptions) -> Result<Template, TemplateError> {
        let parts = Parser::new(text, opts).parse()?;
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Expr(_) => 0,
            })
            .sum();
        Ok(Template {
            source: text.to_string(),
            parts,
            literal_len,
        })
    }

    /// Evaluates the template against `scope`. Never fails: missing values render as "".
    pub fn render(&self, scope: &Scope) -> String {
        let mut out = String::with_capacity(self.literal_len);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => write_text(&mut out, &e.evaluate(scope)),
            }
        }
        out
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl Expr {
    fn evaluate<'v>(&'v self, scope: &Scope<'v>) -> Cow<'v, Value> {
        let mut value = match &self.primary {
            Primary::Literal(v) => Cow::Borrowed(v),
            Primary::Path(path) => value_of(path, scope),
        };
        for filter in &self.filters {
            value = filter.apply(value, scope);
        }
        value
    }
}

/// What a path stands for in a template: null when it matches nothing, the value when it
/// matches one, a list of the values when it matches several.
fn value_of<'v>(path: &JsonPath, scope: &Scope<'v>) -> Cow<'v, Value> {
    match path.query(scope).as_slice() {
        [] => Cow::Owned(Value::Null),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

#[cfg(test)]
mod filter_tests;
#[cfg(test)]
mod tests;
