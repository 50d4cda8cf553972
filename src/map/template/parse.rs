//! The template parser: reads template text into the compiled parts of `mod.rs`, checking every
//! path and filter call as it goes. Errors point at the char where the text goes wrong.

use serde_json::Value;

use super::super::jsonpath::JsonPath;
use super::args::{Arg, ArgValue};
use super::filters::{self, FILTERS, Filter, FilterDef};
use super::{CompileOptions, Expr, Part, Primary, TemplateError};

/// Recursive-descent parser over the template text; positions are byte offsets.
pub(super) struct Parser<'t> {
    text: &'t str,
    pos: usize,
    opts: &'t CompileOptions,
}

impl<'t> Parser<'t> {
    /// A parser at the start of `text`.
    pub(super) fn new(text: &'t str, opts: &'t CompileOptions) -> Self {
        Parser { text, pos: 0, opts }
    }

    /// The parts of the whole text, literal runs and expressions in order.
    pub(super) fn parse(mut self) -> Result<Vec<Part>, TemplateError> {
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

    /// `name` or `name(arg, …)`, looked up in the filter table and checked against its row.
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
        let Some(row) = filters::find(name) else {
            let known: Vec<&str> = FILTERS.iter().map(|f| f.name).collect();
            let message = format!("unknown filter '{name}' (known: {})", known.join(", "));
            return Err(self.error(name_at, message));
        };
        self.skip_ws();
        let args = if self.peek() == Some('(') {
            self.bump();
            self.args(open)?
        } else {
            Vec::new()
        };
        self.check_args(name_at, &args, row)?;
        // Where to point when an argument's value (not its shape) is wrong.
        let first_at = args.first().map_or(name_at, |a| a.at);
        (row.build)(&args).map_err(|message| self.error(first_at, message))
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

    /// Checks the shape of a filter's arguments against its row: no more positions than it
    /// lists, none of the required ones missing, each of its kind. Points at the name when one
    /// is missing, else at the wrong argument.
    fn check_args(
        &self,
        name_at: usize,
        args: &[Arg],
        row: &FilterDef,
    ) -> Result<(), TemplateError> {
        if let Some(extra) = args.get(row.args.len()) {
            return Err(self.error(extra.at, row.usage));
        }
        let required = row.args.iter().filter(|p| !p.optional).count();
        if args.len() < required {
            return Err(self.error(name_at, row.usage));
        }
        for (arg, param) in args.iter().zip(row.args) {
            if !param.kind.accepts(&arg.value) {
                return Err(self.error(arg.at, row.usage));
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
