//! Compiled JSONPath expressions and the [`Scope`] they run against.
//!
//! This module owns every contact with the JSONPath engine (`jsonpath-rust`): paths are
//! parsed once at load time into a [`JsonPath`] and evaluated many times with
//! [`JsonPath::query`]. Nothing else in the crate names the engine, so it stays replaceable.
//!
//! It also owns the one parse of a payload on the request path: a source's [`Footprint`] (every
//! part of a payload its compiled paths can read, recorded while the source compiles) lets
//! [`Footprint::parse`] build only those parts, and skip the rest without allocating.

mod footprint;
pub use footprint::{Footprint, recording};

use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use jsonpath_rust::parser::errors::JsonPathError;
use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
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
    /// The same query as plain steps, when it is only member names, indexes and wildcards
    /// (most paths admins write): walked directly, without the engine's bookkeeping of each
    /// node's normalized path. Same answers, in the same order (tests compare them).
    steps: Option<Vec<Step>>,
}

/// One step of a plain path (see [`JsonPath::steps`]).
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// `.name` or `['name']`: that member of an object.
    Name(String),
    /// `[i]`: that element of an array, from the end when negative.
    Index(i64),
    /// `[*]` or `.*`: every member value of an object, every element of an array.
    Wildcard,
}

fn plain_steps(query: &JpQuery) -> Option<Vec<Step>> {
    query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(Selector::Name(name)) => Some(Step::Name(name.clone())),
            Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
            Segment::Selector(Selector::Wildcard) => Some(Step::Wildcard),
            _ => None,
        })
        .collect()
}

/// Runs plain `steps` from `start`, as RFC 9535 says: a name selects a member of an object, an
/// index an element of an array, a wildcard every member value or element; anything else
/// selects nothing.
fn walk<'a>(steps: &[Step], start: &'a Value) -> Vec<&'a Value> {
    let mut nodes = vec![start];
    for step in steps {
        let mut next = Vec::with_capacity(nodes.len());
        for node in nodes {
            match (step, node) {
                (Step::Name(name), Value::Object(members)) => next.extend(members.get(name)),
                (Step::Index(i), Value::Array(elements)) => {
                    let at = if *i < 0 {
                        i.checked_add(elements.len() as i64)
                    } else {
                        Some(*i)
                    };
                    next.extend(
                        at.and_then(|at| usize::try_from(at).ok())
                            .and_then(|at| elements.get(at)),
                    );
                }
                (Step::Wildcard, Value::Object(members)) => next.extend(members.values()),
                (Step::Wildcard, Value::Array(elements)) => next.extend(elements.iter()),
                _ => {}
            }
        }
        if next.is_empty() {
            return next;
        }
        nodes = next;
    }
    nodes
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
        if !relative {
            // A relative path reads inside what an absolute one reached: only `$` paths say
            // which parts of a payload are read.
            footprint::record(&query, root_reference(&text[1..]).is_some());
        }
        Ok(JsonPath {
            text: text.to_string(),
            relative,
            steps: plain_steps(&query),
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
        if let Some(steps) = &self.steps {
            return walk(steps, start);
        }
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

    /// The engine's answer, for comparison with the plain walk.
    fn by_engine<'a>(path: &JsonPath, root: &'a Value) -> Vec<&'a Value> {
        js_path_process(&path.query, root)
            .map(|refs| refs.into_iter().map(|r| r.val).collect())
            .unwrap_or_default()
    }

    #[test]
    fn plain_paths_are_walked_and_find_what_the_engine_finds() {
        let root = json!({
            "a": {"b": [10, {"c": 1}, [2, 3]], "z": null, "y": {"c": 2}},
            "list": [{"c": "x"}, {"d": "y"}, 7, "s"],
            "s": "text", "n": 1.5, "e": [], "o": {}
        });
        let paths = [
            "$",
            "$.a",
            "$.a.b",
            "$.a.b[0]",
            "$.a.b[-1]",
            "$.a.b[-3]",
            "$.a.b[-4]",
            "$.a.b[3]",
            "$.a.b[1].c",
            "$.a.b[*]",
            "$.a.*",
            "$.a.*.c",
            "$.*",
            "$.*.*",
            "$.list[*].c",
            "$.list.c",
            "$.s.x",
            "$.s[0]",
            "$.n[*]",
            "$.e[*]",
            "$.o.*",
            "$['a']['z']",
            "$.a.z.q",
            "$.missing",
            "$.a.b[999]",
            "$.a.b[-999]",
            "$.list[1]['d']",
            "$[*][*]",
        ];
        for text in paths {
            let path = JsonPath::compile(text).unwrap();
            assert!(path.steps.is_some(), "{text} is plain");
            assert_eq!(
                walk(path.steps.as_ref().unwrap(), &root),
                by_engine(&path, &root),
                "{text}"
            );
        }
        for text in [
            "$..c",
            "$.a.b[0:2]",
            "$.list[?@.c]",
            "$['a','s']",
            "$.a.b[0,1]",
        ] {
            assert!(
                JsonPath::compile(text).unwrap().steps.is_none(),
                "{text} is not plain"
            );
        }
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn a_walk_and_the_engine_agree_on_any_payload_and_plain_path(
            root in arbitrary_json(),
            steps in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec!["a", "b", "0"]).prop_map(|n| format!("['{n}']")),
                    (-3i64..4).prop_map(|i| format!("[{i}]")),
                    proptest::strategy::Just("[*]".to_string()),
                ],
                0..5,
            ),
        ) {
            let text = format!("${}", steps.concat());
            let path = JsonPath::compile(&text).unwrap();
            proptest::prop_assert_eq!(walk(path.steps.as_ref().unwrap(), &root), by_engine(&path, &root));
        }
    }

    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..5).prop_map(|n| json!(n)),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::sample::select(vec!["a".to_string(), "b".into(), "0".into()]),
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
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
