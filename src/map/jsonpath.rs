//! Compiled JSONPath expressions and the [`Scope`] they run against.
//!
//! This module owns every contact with the JSONPath engine (`jsonpath-rust`): paths are
//! parsed once at load time into a [`JsonPath`] and evaluated many times with
//! [`JsonPath::query`]. Nothing else in the crate names the engine, so it stays replaceable.

use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use jsonpath_rust::parser::errors::JsonPathError;
use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

/// What a path or template is evaluated against.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The whole payload, reached with `$`.
    pub root: &'a Value,
    /// The current element of a row list, reached with `@`; `None` outside a row list.
    pub element: Option<&'a Value>,
    /// Time zone in which dates are displayed.
    pub tz: chrono_tz::Tz,
    /// The card's language (durations and other words filters write).
    pub locale: crate::card::Locale,
}

impl<'a> Scope<'a> {
    /// A scope over `root` with no current element.
    pub fn new(root: &'a Value, tz: chrono_tz::Tz) -> Self {
        Scope {
            root,
            element: None,
            tz,
            locale: crate::card::Locale::En,
        }
    }

    /// The same scope with `element` as the current element of a row list.
    pub fn with_element(self, element: &'a Value) -> Self {
        Scope {
            element: Some(element),
            ..self
        }
    }
}

/// A JSONPath compiled once at load time. Written `$...` (from the payload root) or `@...`
/// (from the current element of a row list; `@` alone is the element itself).
#[derive(Clone)]
pub struct JsonPath {
    text: String,
    relative: bool,
    query: JpQuery,
}

/// Why a JSONPath did not compile. The message does not repeat "invalid JSONPath".
#[derive(Debug, Clone, PartialEq)]
pub struct PathError {
    /// Char offset inside the path text where the problem is.
    pub offset: usize,
    /// Short human-readable description.
    pub message: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid JSONPath: {} (at char {})",
            self.message, self.offset
        )
    }
}

impl std::error::Error for PathError {}

impl JsonPath {
    /// Parses `text` (`$...` or `@...`) into a reusable compiled path.
    pub fn compile(text: &str) -> Result<JsonPath, PathError> {
        let relative = match text.chars().next() {
            Some('$') => false,
            Some('@') => true,
            _ => {
                return Err(PathError {
                    offset: 0,
                    message: "a JSONPath must start with '$' or '@'".to_string(),
                });
            }
        };
        // The engine only accepts root queries: a relative path is compiled as the same
        // query from `$` (same byte length, so error positions line up) and run with the
        // element as its root. A `$` inside it would then silently mean the element, so it
        // is refused instead.
        let root_in_relative = if relative { root_reference(text) } else { None };
        if let Some(offset) = root_in_relative {
            return Err(PathError {
                offset,
                message: "'$' cannot be used inside an '@' path (it would mean the row)"
                    .to_string(),
            });
        }
        let engine_text: Cow<'_, str> = match text.strip_prefix('@') {
            Some(rest) => Cow::Owned(format!("${rest}")),
            None => Cow::Borrowed(text),
        };
        let query = parse_json_path(&engine_text).map_err(|e| path_error(text, &e))?;
        Ok(JsonPath {
            text: text.to_string(),
            relative,
            query,
        })
    }

    /// True for an `@...` path, which reads from the current element of a row list.
    pub fn is_relative(&self) -> bool {
        self.relative
    }

    /// The path text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// All nodes matched. A relative path with no element in scope matches nothing.
    pub fn query<'a>(&self, scope: &Scope<'a>) -> Vec<&'a Value> {
        // The engine is third-party code fed with untrusted payloads: a bug there must cost
        // one empty field, not the process.
        catch_unwind(AssertUnwindSafe(|| self.run(scope))).unwrap_or_default()
    }

    fn run<'a>(&self, scope: &Scope<'a>) -> Vec<&'a Value> {
        let start = if self.relative {
            match scope.element {
                Some(element) => element,
                None => return Vec::new(),
            }
        } else {
            scope.root
        };
        match js_path_process(&self.query, start) {
            Ok(refs) => refs.into_iter().map(|r| r.val).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({:?})", self.text)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Turns an engine error into a short message with a char offset into `text`.
fn path_error(text: &str, err: &JsonPathError) -> PathError {
    match err {
        JsonPathError::PestError(pest) => {
            // pest is not a direct dependency, so its `InputLocation` cannot be named;
            // its derived Debug form is `Pos(n)` or `Span((start, end))` in bytes.
            let byte = pest_byte_position(&format!("{:?}", pest.location)).unwrap_or(0);
            let message = match text.get(byte..).and_then(|rest| rest.chars().next()) {
                Some(c) => format!("unexpected '{c}'"),
                None => "unexpected end of path".to_string(),
            };
            PathError {
                offset: char_offset(text, byte),
                message,
            }
        }
        JsonPathError::MaxNestingDepthExceeded(max) => PathError {
            offset: 0,
            message: format!("brackets nested deeper than {max} levels"),
        },
        other => PathError {
            offset: 0,
            message: other.to_string(),
        },
    }
}

/// Char offset of the first `$` outside quotes, if any.
fn root_reference(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (offset, c) in text.chars().enumerate() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' => return Some(offset),
            None => {}
        }
    }
    None
}

/// Reads the start byte out of pest's `Pos(n)` / `Span((start, end))` debug text.
fn pest_byte_position(debug: &str) -> Option<usize> {
    let rest = debug
        .strip_prefix("Pos(")
        .or_else(|| debug.strip_prefix("Span(("))?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Number of chars that start before byte `byte` of `text`.
fn char_offset(text: &str, byte: usize) -> usize {
    text.char_indices().take_while(|(i, _)| *i < byte).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> Value {
        json!({
            "ref": "refs/heads/main",
            "target": "b",
            "repo": {"name": "fxhook", "owner": {"login": "ada"}},
            "commits": [
                {"id": "a1", "author": "ada", "tags": ["x|y", "z"]},
                {"id": "b2", "author": "bob", "tags": []}
            ]
        })
    }

    fn scope(root: &Value) -> Scope<'_> {
        Scope::new(root, chrono_tz::UTC)
    }

    #[test]
    fn an_absolute_path_finds_a_nested_value() {
        let root = payload();
        let path = JsonPath::compile("$.repo.owner.login").unwrap();
        assert_eq!(path.query(&scope(&root)), vec![&json!("ada")]);
    }

    #[test]
    fn a_wildcard_returns_every_match_in_order() {
        let root = payload();
        let path = JsonPath::compile("$.commits[*].id").unwrap();
        assert_eq!(path.query(&scope(&root)), vec![&json!("a1"), &json!("b2")]);
    }

    #[test]
    fn a_missing_member_matches_nothing() {
        let root = payload();
        let path = JsonPath::compile("$.repo.nope.deeper").unwrap();
        assert!(path.query(&scope(&root)).is_empty());
    }

    #[test]
    fn a_filter_with_a_pipe_inside_quotes_compiles_and_matches() {
        let root = payload();
        let path = JsonPath::compile("$.commits[?@.tags[0] == 'x|y'].author").unwrap();
        assert_eq!(path.query(&scope(&root)), vec![&json!("ada")]);
    }

    #[test]
    fn a_relative_path_reads_from_the_current_element() {
        let root = payload();
        let element = json!({"id": "c3", "author": "cy"});
        let path = JsonPath::compile("@.author").unwrap();
        assert!(path.is_relative());
        let found = path.query(&scope(&root).with_element(&element));
        assert_eq!(found, vec![&json!("cy")]);
    }

    #[test]
    fn a_bare_at_sign_is_the_element_itself() {
        let root = payload();
        let element = json!("just me");
        let path = JsonPath::compile("@").unwrap();
        assert_eq!(
            path.query(&scope(&root).with_element(&element)),
            vec![&element]
        );
    }

    #[test]
    fn a_bare_dollar_sign_is_the_whole_payload() {
        let root = payload();
        let path = JsonPath::compile("$").unwrap();
        assert_eq!(path.query(&scope(&root)), vec![&root]);
    }

    #[test]
    fn a_relative_path_without_an_element_matches_nothing() {
        let root = payload();
        let path = JsonPath::compile("@.author").unwrap();
        assert!(path.query(&scope(&root)).is_empty());
    }

    #[test]
    fn a_relative_path_can_filter_on_the_element() {
        let root = payload();
        let element = json!({"items": [{"k": "a", "v": 1}, {"k": "$b", "v": 2}]});
        let path = JsonPath::compile("@.items[?@.k == '$b'].v").unwrap();
        assert_eq!(
            path.query(&scope(&root).with_element(&element)),
            vec![&json!(2)]
        );
    }

    #[test]
    fn a_dollar_inside_a_relative_path_is_refused() {
        let err = JsonPath::compile("@.items[?@.k == $.target]").unwrap_err();
        assert_eq!(err.offset, 16, "{err:?}");
        assert!(err.message.contains("'$'"), "{}", err.message);
    }

    #[test]
    fn a_path_must_start_with_a_dollar_or_an_at_sign() {
        let err = JsonPath::compile("repo.name").unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.message.contains("'$' or '@'"), "{}", err.message);
        assert_eq!(JsonPath::compile("").unwrap_err().offset, 0);
    }

    #[test]
    fn a_syntax_error_points_at_the_offending_char() {
        let err = JsonPath::compile("$.repo.#name").unwrap_err();
        assert_eq!(err.offset, 7, "{err:?}");
        assert_eq!(err.message, "unexpected '#'");
        assert_eq!(
            err.to_string(),
            "invalid JSONPath: unexpected '#' (at char 7)"
        );
    }

    #[test]
    fn a_syntax_error_offset_counts_chars_not_bytes() {
        let err = JsonPath::compile("$.名字.#").unwrap_err();
        assert_eq!(err.offset, 5, "{err:?}");
    }

    #[test]
    fn a_syntax_error_in_a_relative_path_points_into_the_written_text() {
        let err = JsonPath::compile("@.a[?@.b ==]").unwrap_err();
        assert_eq!(err.offset, 11, "{err:?}");
        assert_eq!(err.message, "unexpected ']'");
    }

    #[test]
    fn an_unclosed_bracket_is_reported_inside_the_path() {
        let err = JsonPath::compile("$.a[0").unwrap_err();
        assert_eq!(err.offset, 4, "{err:?}");
        let err = JsonPath::compile("$.").unwrap_err();
        assert_eq!(err.offset, 2, "{err:?}");
        assert!(
            err.message.ends_with("unexpected end of path"),
            "{}",
            err.message
        );
    }

    #[test]
    fn debug_and_as_str_show_the_path_text() {
        let path = JsonPath::compile("$.repo.name").unwrap();
        assert_eq!(path.as_str(), "$.repo.name");
        assert!(!path.is_relative());
        assert_eq!(format!("{path:?}"), "JsonPath(\"$.repo.name\")");
        assert_eq!(path.to_string(), "$.repo.name");
    }
}
