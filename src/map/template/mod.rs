//! One-line templates used in card fields: literal text with `{ expression }` holes.
//!
//! This module owns the template syntax (`{$.ref | trim_prefix('refs/heads/') | upper}`,
//! `{{`/`}}` for literal braces), its filters and the text rendering of JSON values.
//! Everything is parsed and validated by [`Template::compile`] (paths, filter arguments,
//! date formats); [`Template::render`] only evaluates and never fails.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, TimeZone};
use serde_json::Value;

use super::jsonpath::{JsonPath, Scope};

/// Filter names, in the order they are listed in error messages.
const KNOWN_FILTERS: &[&str] = &[
    "default",
    "count",
    "truncate",
    "left",
    "first_line",
    "join",
    "trim_prefix",
    "trim_suffix",
    "replace",
    "upper",
    "lower",
    "trim",
    "date",
    "json",
    "first",
    "scalar",
    "first_url",
];

const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Numbers above this are unix milliseconds rather than seconds.
const MILLIS_THRESHOLD: i64 = 1_000_000_000_000;

/// A compiled one-line template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
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

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Expr(Expr),
}

#[derive(Debug, Clone)]
struct Expr {
    primary: Primary,
    filters: Vec<Filter>,
}

#[derive(Debug, Clone)]
enum Primary {
    Path(JsonPath),
    /// A quoted literal, kept as a JSON string so it can be lent out without copying.
    Literal(Value),
}

#[derive(Debug, Clone)]
enum Filter {
    Default(Value),
    DefaultPath(JsonPath),
    Count,
    Truncate(usize),
    Left(usize),
    FirstLine,
    Join(String),
    TrimPrefix(String),
    TrimSuffix(String),
    Replace(String, String),
    Upper,
    Lower,
    Trim,
    Date(Vec<Item<'static>>),
    Json,
    First,
    Scalar,
    /// The first http(s) string found breadth-first, skipping those the regex matches.
    FirstUrl(Option<Box<regex::Regex>>),
}

impl Template {
    /// Parses and validates `text`; all later rendering works from the compiled form.
    pub fn compile(text: &str, opts: &CompileOptions) -> Result<Template, TemplateError> {
        let parts = Parser { text, pos: 0, opts }.parse()?;
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

    /// True when the template has no text and no expressions at all.
    pub fn is_empty_literal(&self) -> bool {
        self.parts.is_empty()
    }

    /// The template text as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Expr {
    fn evaluate<'v>(&'v self, scope: &Scope<'v>) -> Cow<'v, Value> {
        let mut value = match &self.primary {
            Primary::Literal(v) => Cow::Borrowed(v),
            Primary::Path(path) => {
                let mut hits = path.query(scope);
                match hits.len() {
                    0 => Cow::Owned(Value::Null),
                    1 => hits.pop().map_or(Cow::Owned(Value::Null), Cow::Borrowed),
                    _ => Cow::Owned(Value::Array(hits.into_iter().cloned().collect())),
                }
            }
        };
        for filter in &self.filters {
            value = filter.apply(value, scope);
        }
        value
    }
}

impl Filter {
    fn apply<'v>(&'v self, value: Cow<'v, Value>, scope: &Scope<'v>) -> Cow<'v, Value> {
        let tz = scope.tz;
        match self {
            Filter::DefaultPath(path) => {
                if is_blank(&value) {
                    let mut hits = path.query(scope);
                    match hits.len() {
                        0 => Cow::Owned(Value::Null),
                        1 => hits.pop().map_or(Cow::Owned(Value::Null), Cow::Borrowed),
                        _ => Cow::Owned(Value::Array(hits.into_iter().cloned().collect())),
                    }
                } else {
                    value
                }
            }
            Filter::Default(fallback) => {
                if is_blank(&value) {
                    Cow::Borrowed(fallback)
                } else {
                    value
                }
            }
            Filter::Count => {
                let n = match value.as_ref() {
                    Value::Array(a) => a.len(),
                    Value::Object(o) => o.len(),
                    Value::Null => 0,
                    _ => 1,
                };
                Cow::Owned(Value::from(n))
            }
            Filter::Join(sep) => match value.as_ref() {
                Value::Array(items) => {
                    let mut out = String::new();
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(sep);
                        }
                        write_text(&mut out, item);
                    }
                    Cow::Owned(Value::String(out))
                }
                Value::Null | Value::String(_) => value,
                other => Cow::Owned(Value::String(text_of(other))),
            },
            Filter::Date(items) => match format_date(&value, items, tz) {
                Some(text) => Cow::Owned(Value::String(text)),
                None => value,
            },
            Filter::First => match value {
                Cow::Borrowed(Value::Array(items)) => {
                    items.first().map_or(Cow::Owned(Value::Null), Cow::Borrowed)
                }
                Cow::Owned(Value::Array(mut items)) if !items.is_empty() => {
                    Cow::Owned(items.swap_remove(0))
                }
                Cow::Owned(Value::Array(_)) => Cow::Owned(Value::Null),
                other => other,
            },
            Filter::FirstUrl(skip) => match first_url(&value, skip.as_deref()) {
                Some(url) => Cow::Owned(Value::String(url.to_string())),
                None => Cow::Owned(Value::Null),
            },
            Filter::Scalar => match value.as_ref() {
                Value::Array(_) | Value::Object(_) => Cow::Owned(Value::Null),
                _ => value,
            },
            Filter::Json => Cow::Owned(Value::String(
                serde_json::to_string(&*value).unwrap_or_default(),
            )),
            _ => self.apply_to_text(value),
        }
    }

    /// Runs a string filter on the text rendering of `value`; null (missing) stays null.
    fn apply_to_text<'v>(&self, value: Cow<'v, Value>) -> Cow<'v, Value> {
        let changed = match value.as_ref() {
            Value::Null => None,
            Value::String(s) => match self.text_op(s) {
                // Every borrowed result is a sub-slice of `s`: same length means unchanged.
                Cow::Borrowed(r) if r.len() == s.len() => None,
                other => Some(other.into_owned()),
            },
            other => Some(self.text_op(&text_of(other)).into_owned()),
        };
        match changed {
            None => value,
            Some(text) => Cow::Owned(Value::String(text)),
        }
    }

    fn text_op<'s>(&self, s: &'s str) -> Cow<'s, str> {
        match self {
            Filter::Truncate(max) => truncate(s, *max),
            Filter::Left(n) => match s.char_indices().nth(*n) {
                Some((byte, _)) => Cow::Borrowed(&s[..byte]),
                None => Cow::Borrowed(s),
            },
            Filter::FirstLine => {
                let line = s.split('\n').next().unwrap_or(s);
                Cow::Borrowed(line.trim_end())
            }
            Filter::TrimPrefix(p) => Cow::Borrowed(s.strip_prefix(p.as_str()).unwrap_or(s)),
            Filter::TrimSuffix(p) => Cow::Borrowed(s.strip_suffix(p.as_str()).unwrap_or(s)),
            Filter::Replace(from, to) => {
                if s.contains(from.as_str()) {
                    Cow::Owned(s.replace(from.as_str(), to))
                } else {
                    Cow::Borrowed(s)
                }
            }
            Filter::Upper => Cow::Owned(s.to_uppercase()),
            Filter::Lower => Cow::Owned(s.to_lowercase()),
            Filter::Trim => Cow::Borrowed(s.trim()),
            _ => Cow::Borrowed(s),
        }
    }
}

/// Null, "" and [] count as "no value" for `default`.
/// Breadth-first (top-level addresses before nested ones), bounded to a few thousand nodes so
/// a huge payload costs a bounded amount.
fn first_url<'v>(root: &'v Value, skip: Option<&regex::Regex>) -> Option<&'v str> {
    let mut queue = std::collections::VecDeque::from([root]);
    let mut visited = 0usize;
    while let Some(v) = queue.pop_front() {
        visited += 1;
        if visited > 5_000 {
            return None;
        }
        match v {
            Value::String(s) => {
                let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
                let is_url = lower.starts_with("http://") || lower.starts_with("https://");
                if is_url
                    && !s.contains(char::is_whitespace)
                    && !skip.is_some_and(|re| re.is_match(s))
                {
                    return Some(s);
                }
            }
            Value::Array(items) => queue.extend(items.iter()),
            Value::Object(map) => queue.extend(map.values()),
            _ => {}
        }
    }
    None
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// At most `max` chars, ending with `…` when cut.
fn truncate(s: &str, max: usize) -> Cow<'_, str> {
    if s.char_indices().nth(max).is_none() {
        return Cow::Borrowed(s);
    }
    let keep = max.saturating_sub(1);
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let mut out = String::with_capacity(end + '…'.len_utf8());
    out.push_str(&s[..end]);
    out.push('…');
    Cow::Owned(out)
}

/// Formats an RFC 3339 string or unix seconds/milliseconds in `tz`; `None` when it does not parse.
fn format_date(value: &Value, items: &[Item<'static>], tz: chrono_tz::Tz) -> Option<String> {
    let instant = match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()?
            .with_timezone(&tz),
        Value::Number(n) => {
            let millis = match n.as_i64() {
                Some(i) if i > MILLIS_THRESHOLD => i,
                Some(i) => i.checked_mul(1000)?,
                None => {
                    let f = n.as_f64().filter(|f| f.is_finite())?;
                    // `as` saturates; out-of-range instants are rejected below.
                    if f > MILLIS_THRESHOLD as f64 {
                        f.round() as i64
                    } else {
                        (f * 1000.0).round() as i64
                    }
                }
            };
            tz.timestamp_millis_opt(millis).single()?
        }
        _ => return None,
    };
    let mut out = String::new();
    write!(out, "{}", instant.format_with_items(items.iter())).ok()?;
    Some(out)
}

/// The text rendering of a value as a new string.
fn text_of(value: &Value) -> String {
    let mut out = String::new();
    write_text(&mut out, value);
    out
}

/// Appends the text rendering of `value`: strings as-is, integers without `.0`, null as "",
/// arrays joined with ", ", objects as compact JSON.
fn write_text(out: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => {
            // Writing to a String cannot fail.
            let _ = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => write!(out, "{i}"),
                (None, Some(u), _) => write!(out, "{u}"),
                (None, None, Some(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    write!(out, "{}", f as i64)
                }
                _ => write!(out, "{n}"),
            };
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_text(out, item);
            }
        }
        Value::Object(_) => {
            if let Ok(json) = serde_json::to_string(value) {
                out.push_str(&json);
            }
        }
    }
}

/// A filter argument with the byte position where it starts.
struct Arg {
    value: ArgValue,
    at: usize,
}

enum ArgValue {
    Str(String),
    Int(i64),
    Path(JsonPath),
}

/// What a filter expects in one argument position.
enum ArgKind {
    Str,
    Int,
    Any,
}

fn str_arg(args: &[Arg], i: usize) -> Option<&str> {
    match args.get(i).map(|a| &a.value) {
        Some(ArgValue::Str(s)) => Some(s),
        _ => None,
    }
}

fn int_arg(args: &[Arg], i: usize) -> Option<i64> {
    match args.get(i).map(|a| &a.value) {
        Some(ArgValue::Int(n)) => Some(*n),
        _ => None,
    }
}

/// Recursive-descent parser over the template text; positions are byte offsets.
struct Parser<'t> {
    text: &'t str,
    pos: usize,
    opts: &'t CompileOptions,
}

impl Parser<'_> {
    fn parse(mut self) -> Result<Vec<Part>, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        while let Some(c) = self.peek() {
            let at = self.pos;
            self.bump();
            match c {
                '{' if self.peek() == Some('{') => {
                    self.bump();
                    literal.push('{');
                }
                '}' if self.peek() == Some('}') => {
                    self.bump();
                    literal.push('}');
                }
                '}' => {
                    return Err(self.error(at, "unmatched '}' (write '}}' for a literal brace)"));
                }
                '{' => {
                    let expr = self.expression(at)?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Expr(expr));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(parts)
    }

    /// Parses what follows the `{` at byte `open`, up to and including the closing `}`.
    fn expression(&mut self, open: usize) -> Result<Expr, TemplateError> {
        self.skip_ws();
        let primary = match self.peek() {
            None => return Err(self.unclosed(open)),
            Some('}') => {
                return Err(self.error(open, "empty expression (write '{{' for a literal brace)"));
            }
            Some('$' | '@') => Primary::Path(self.path(open, false)?),
            Some(q @ ('\'' | '"')) => Primary::Literal(Value::String(self.string(q)?)),
            Some(_) => {
                return Err(self.error(
                    self.pos,
                    "expected a JSONPath ('$…' or '@…') or a quoted string",
                ));
            }
        };
        let mut filters = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.unclosed(open)),
                Some('}') => {
                    self.bump();
                    return Ok(Expr { primary, filters });
                }
                Some('|') => {
                    self.bump();
                    self.skip_ws();
                    filters.push(self.filter(open)?);
                }
                Some(_) => return Err(self.error(self.pos, "expected '|' or '}'")),
            }
        }
    }

    /// A JSONPath runs until a `|` or `}` outside brackets, parentheses and quotes.
    /// As a filter argument (`in_args`), it also ends at a top-level `,` or `)`.
    fn path(&mut self, open: usize, in_args: bool) -> Result<JsonPath, TemplateError> {
        let start = self.pos;
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut escaped = false;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.unclosed(open));
            };
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            } else {
                match c {
                    '\'' | '"' => quote = Some(c),
                    ',' | ')' if depth == 0 && in_args => break,
                    '[' | '(' => depth += 1,
                    ']' | ')' => depth = depth.saturating_sub(1),
                    '|' | '}' if depth == 0 => break,
                    _ => {}
                }
            }
            self.bump();
        }
        let text = self.text[start..self.pos].trim_end();
        if text.starts_with('@') && !self.opts.allow_element {
            return Err(self.error(start, "@ is only allowed inside a row list (each:)"));
        }
        JsonPath::compile(text).map_err(|e| TemplateError {
            offset: char_offset(self.text, start) + e.offset,
            message: format!("invalid JSONPath: {}", e.message),
        })
    }

    /// A quoted string starting at the current quote char; `\` escapes the quote and itself.
    fn string(&mut self, quote: char) -> Result<String, TemplateError> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error(open, "unclosed string literal")),
                Some('\\') => match self.peek() {
                    Some(c) if c == quote || c == '\\' => {
                        self.bump();
                        out.push(c);
                    }
                    _ => out.push('\\'),
                },
                Some(c) if c == quote => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// `name` or `name(arg, …)`, checked against what each filter accepts.
    fn filter(&mut self, open: usize) -> Result<Filter, TemplateError> {
        let name_at = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        let name = &self.text[name_at..self.pos];
        if name.is_empty() {
            return match self.peek() {
                None => Err(self.unclosed(open)),
                Some(_) => Err(self.error(name_at, "expected a filter name after '|'")),
            };
        }
        if !KNOWN_FILTERS.contains(&name) {
            return Err(self.error(
                name_at,
                format!(
                    "unknown filter '{name}' (known: {})",
                    KNOWN_FILTERS.join(", ")
                ),
            ));
        }
        self.skip_ws();
        let args = if self.peek() == Some('(') {
            self.bump();
            self.args(open)?
        } else {
            Vec::new()
        };
        self.build_filter(name, name_at, &args)
    }

    fn args(&mut self, open: usize) -> Result<Vec<Arg>, TemplateError> {
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.bump();
            return Ok(args);
        }
        loop {
            self.skip_ws();
            let at = self.pos;
            let value = match self.peek() {
                None => return Err(self.unclosed(open)),
                Some(q @ ('\'' | '"')) => ArgValue::Str(self.string(q)?),
                Some('$' | '@') => ArgValue::Path(self.path(open, true)?),
                Some(c) if c == '-' || c.is_ascii_digit() => {
                    self.bump();
                    while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.bump();
                    }
                    let digits = &self.text[at..self.pos];
                    let n = digits
                        .parse::<i64>()
                        .map_err(|_| self.error(at, format!("invalid integer '{digits}'")))?;
                    ArgValue::Int(n)
                }
                Some(_) => {
                    return Err(self.error(
                        at,
                        "filter arguments are quoted strings, integers or JSONPaths",
                    ));
                }
            };
            args.push(Arg { value, at });
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(')') => {
                    self.bump();
                    return Ok(args);
                }
                None => return Err(self.unclosed(open)),
                Some(_) => {
                    return Err(self.error(self.pos, "expected ',' or ')' after a filter argument"));
                }
            }
        }
    }

    /// Checks the arguments against what filter `name` accepts and builds it.
    fn build_filter(
        &self,
        name: &str,
        name_at: usize,
        args: &[Arg],
    ) -> Result<Filter, TemplateError> {
        use ArgKind::{Any, Int, Str};
        // Where to point when an argument's value (not its shape) is wrong.
        let first_at = args.first().map_or(name_at, |a| a.at);
        let filter = match name {
            "default" => {
                self.check_args(
                    name_at,
                    args,
                    &[Any],
                    1,
                    "default takes one argument: a string, an integer or a JSONPath",
                )?;
                match args.first().map(|a| &a.value) {
                    Some(ArgValue::Int(i)) => Filter::Default(Value::from(*i)),
                    Some(ArgValue::Str(s)) => Filter::Default(Value::String(s.clone())),
                    Some(ArgValue::Path(p)) => Filter::DefaultPath(p.clone()),
                    None => Filter::Default(Value::Null),
                }
            }
            "first_url" => {
                let usage =
                    "first_url takes at most one string argument (a regex of addresses to skip)";
                self.check_args(name_at, args, &[Str], 0, usage)?;
                match str_arg(args, 0) {
                    None => Filter::FirstUrl(None),
                    Some(pattern) => {
                        let re = regex::Regex::new(pattern).map_err(|e| {
                            self.error(first_at, format!("invalid regex in first_url: {e}"))
                        })?;
                        Filter::FirstUrl(Some(Box::new(re)))
                    }
                }
            }
            "left" => {
                self.check_args(name_at, args, &[Int], 1, "left takes one integer argument")?;
                match int_arg(args, 0).map(usize::try_from) {
                    Some(Ok(n)) if n >= 1 => Filter::Left(n),
                    _ => return Err(self.error(first_at, "left length must be at least 1")),
                }
            }
            "truncate" => {
                self.check_args(
                    name_at,
                    args,
                    &[Int],
                    1,
                    "truncate takes one integer argument",
                )?;
                match int_arg(args, 0).map(usize::try_from) {
                    Some(Ok(n)) if n >= 1 => Filter::Truncate(n),
                    _ => return Err(self.error(first_at, "truncate length must be at least 1")),
                }
            }
            "join" => {
                let usage = "join takes at most one string argument (the separator)";
                self.check_args(name_at, args, &[Str], 0, usage)?;
                Filter::Join(str_arg(args, 0).unwrap_or(", ").to_string())
            }
            "date" => {
                let usage = "date takes at most one string argument (the format)";
                self.check_args(name_at, args, &[Str], 0, usage)?;
                let format = str_arg(args, 0).unwrap_or(DEFAULT_DATE_FORMAT);
                let items = StrftimeItems::new(format)
                    .parse_to_owned()
                    .map_err(|_| self.error(first_at, format!("invalid date format '{format}'")))?;
                Filter::Date(items)
            }
            "trim_prefix" | "trim_suffix" => {
                let usage = format!("{name} takes one string argument");
                self.check_args(name_at, args, &[Str], 1, &usage)?;
                let affix = str_arg(args, 0).unwrap_or_default().to_string();
                if name == "trim_prefix" {
                    Filter::TrimPrefix(affix)
                } else {
                    Filter::TrimSuffix(affix)
                }
            }
            "replace" => {
                let usage = "replace takes two string arguments ('from', 'to')";
                self.check_args(name_at, args, &[Str, Str], 2, usage)?;
                let from = str_arg(args, 0).unwrap_or_default();
                if from.is_empty() {
                    return Err(self.error(first_at, "replace needs a non-empty text to replace"));
                }
                Filter::Replace(
                    from.to_string(),
                    str_arg(args, 1).unwrap_or_default().to_string(),
                )
            }
            "count" | "first_line" | "upper" | "lower" | "trim" | "json" | "first" | "scalar" => {
                self.check_args(name_at, args, &[], 0, &format!("{name} takes no arguments"))?;
                match name {
                    "count" => Filter::Count,
                    "first_line" => Filter::FirstLine,
                    "upper" => Filter::Upper,
                    "lower" => Filter::Lower,
                    "trim" => Filter::Trim,
                    "first" => Filter::First,
                    "scalar" => Filter::Scalar,
                    _ => Filter::Json,
                }
            }
            _ => return Err(self.error(name_at, format!("unknown filter '{name}'"))),
        };
        Ok(filter)
    }

    /// Checks the shape of a filter's arguments: at most `kinds.len()`, at least `required`,
    /// each of its kind. Points at the name when one is missing, else at the wrong argument.
    fn check_args(
        &self,
        name_at: usize,
        args: &[Arg],
        kinds: &[ArgKind],
        required: usize,
        usage: &str,
    ) -> Result<(), TemplateError> {
        if let Some(extra) = args.get(kinds.len()) {
            return Err(self.error(extra.at, usage));
        }
        if args.len() < required {
            return Err(self.error(name_at, usage));
        }
        for (arg, kind) in args.iter().zip(kinds) {
            let fits = matches!(
                (kind, &arg.value),
                (ArgKind::Any, _)
                    | (ArgKind::Str, ArgValue::Str(_))
                    | (ArgKind::Int, ArgValue::Int(_))
            );
            if !fits {
                return Err(self.error(arg.at, usage));
            }
        }
        Ok(())
    }

    fn peek(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn unclosed(&self, open: usize) -> TemplateError {
        self.error(open, "unclosed '{'")
    }

    fn error(&self, byte: usize, message: impl Into<String>) -> TemplateError {
        TemplateError {
            offset: char_offset(self.text, byte),
            message: message.into(),
        }
    }
}

/// Number of chars that start before byte `byte` of `text`.
fn char_offset(text: &str, byte: usize) -> usize {
    text.char_indices().take_while(|(i, _)| *i < byte).count()
}

#[cfg(test)]
mod tests;
