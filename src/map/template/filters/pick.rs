//! Filters that keep part of a text: its end (`tail`), or what a regex captures in it
//! (`capture`). Both are built once, when their template compiles.

use std::borrow::Cow;

use serde_json::Value;

use super::super::args::{Arg, str_arg};
use super::super::text::text_of;
use super::{Filter, length, on_text, on_value};

/// `tail(n)`: the last `n` chars, the first of them `…` when the text was cut. For texts
/// whose news is at the end (a console log ends with the failure), where `truncate` would keep
/// the start.
pub(super) fn tail(args: &[Arg]) -> Result<Filter, String> {
    on_text(length("tail", args)?, |max, s| last_chars(s, *max))
}

/// At most `max` chars of the end of `s`, starting with `…` when cut.
pub(super) fn last_chars(s: &str, max: usize) -> Cow<'_, str> {
    let total = s.chars().count();
    if total <= max {
        return Cow::Borrowed(s);
    }
    // Keep max - 1 chars and the ellipsis in front of them.
    let skip = total - max.saturating_sub(1);
    let start = s.char_indices().nth(skip).map_or(s.len(), |(i, _)| i);
    let mut out = String::with_capacity(s.len() - start + '…'.len_utf8());
    out.push('…');
    out.push_str(&s[start..]);
    Cow::Owned(out)
}

/// `capture(re)`: what the regex's first group matched in the text (the whole match when the
/// regex has no group); null when it does not match, so `default` can follow.
pub(super) fn capture(args: &[Arg]) -> Result<Filter, String> {
    let re = regex::Regex::new(str_arg(args, 0).unwrap_or_default())
        .map_err(|e| format!("invalid regex in capture: {e}"))?;
    on_value(re, |re, value, _| {
        if value.is_null() {
            return value;
        }
        let text = match value.as_ref() {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(text_of(other)),
        };
        let found = re.captures(&text).and_then(|caps| {
            let m = if caps.len() > 1 {
                caps.get(1)
            } else {
                caps.get(0)
            };
            m.map(|m| m.as_str().to_string())
        });
        match found {
            Some(s) if !s.is_empty() => Cow::Owned(Value::String(s)),
            _ => Cow::Owned(Value::Null),
        }
    })
}
