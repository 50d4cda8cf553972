//! The filters of the template language, one row of [`FILTERS`] each: the name written after
//! `|`, the arguments it takes, its usage line and the function that builds it. The parser looks
//! a filter up here and checks its arguments against the row before the function sees them, so
//! adding a filter is adding a row and its function (and its line in `docs/mapping.md`, which a
//! test holds to this table). Functions longer than a few lines live in files beside this
//! one: `collections` (filters that read lists and objects whole), `texts` (filters that
//! rewrite text with a regex or a base address), `pick` (`tail`, `capture`), `urls`
//! (`url_join`) and `fallback` (`otherwise`).
//!
//! A filter is built once, when the template compiles: bad argument values (a regex, a date
//! format) are errors then, and a render only runs the built filter, which never fails.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, TimeZone};
use serde_json::Value;

use super::super::jsonpath::Scope;
use super::args::{
    Arg, ArgKind, ArgValue, Param, int_arg, one_to_eight, optional, required, str_arg, string_arg,
};
use super::text::{text_of, write_text};
use super::value_of;

mod collections;
mod texts;

/// One filter of the language.
pub(super) struct FilterDef {
    /// The name written after `|`.
    pub name: &'static str,
    /// What each argument position takes; the parser checks calls against it.
    pub args: &'static [Param],
    /// What the filter takes, in one line: the error when a call's arguments do not fit.
    pub usage: &'static str,
    /// Builds the filter from arguments that fit `args`. An error is about an argument's value
    /// and is reported at the first argument.
    pub build: fn(&[Arg]) -> Result<Filter, String>,
}

/// Every filter, in the order an unknown filter's error lists them.
pub(super) static FILTERS: &[FilterDef] = &[
    FilterDef {
        name: "default",
        args: &[required(ArgKind::Any)],
        usage: "default takes one argument: a string, an integer or a JSONPath",
        build: default,
    },
    FilterDef {
        name: "count",
        args: &[],
        usage: "count takes no arguments",
        build: |_| on_value((), |_, value, _| Cow::Owned(Value::from(count(&value)))),
    },
    FilterDef {
        name: "truncate",
        args: &[required(ArgKind::Int)],
        usage: "truncate takes one integer argument",
        build: |args| on_text(length("truncate", args)?, |max, s| truncate(s, *max)),
    },
    FilterDef {
        name: "left",
        args: &[required(ArgKind::Int)],
        usage: "left takes one integer argument",
        build: |args| on_text(length("left", args)?, |n, s| left(s, *n)),
    },
    FilterDef {
        name: "first_line",
        args: &[],
        usage: "first_line takes no arguments",
        build: |_| {
            on_text((), |_, s| {
                Cow::Borrowed(s.split('\n').next().unwrap_or(s).trim_end())
            })
        },
    },
    FilterDef {
        name: "join",
        args: &[optional(ArgKind::Str)],
        usage: "join takes at most one string argument (the separator)",
        build: |args| {
            let sep = str_arg(args, 0).unwrap_or(", ").to_string();
            on_value(sep, |sep, value, _| join(value, sep))
        },
    },
    FilterDef {
        name: "trim_prefix",
        args: &[required(ArgKind::Str)],
        usage: "trim_prefix takes one string argument",
        build: |args| {
            on_text(string_arg(args, 0), |p, s| {
                Cow::Borrowed(s.strip_prefix(p.as_str()).unwrap_or(s))
            })
        },
    },
    FilterDef {
        name: "trim_suffix",
        args: &[required(ArgKind::Str)],
        usage: "trim_suffix takes one string argument",
        build: |args| {
            on_text(string_arg(args, 0), |p, s| {
                Cow::Borrowed(s.strip_suffix(p.as_str()).unwrap_or(s))
            })
        },
    },
    FilterDef {
        name: "replace",
        args: &[required(ArgKind::Str), required(ArgKind::Str)],
        usage: "replace takes two string arguments ('from', 'to')",
        build: replace,
    },
    FilterDef {
        name: "upper",
        args: &[],
        usage: "upper takes no arguments",
        build: |_| on_text((), |_, s| Cow::Owned(s.to_uppercase())),
    },
    FilterDef {
        name: "lower",
        args: &[],
        usage: "lower takes no arguments",
        build: |_| on_text((), |_, s| Cow::Owned(s.to_lowercase())),
    },
    FilterDef {
        name: "trim",
        args: &[],
        usage: "trim takes no arguments",
        build: |_| on_text((), |_, s| Cow::Borrowed(s.trim())),
    },
    FilterDef {
        name: "date",
        args: &[optional(ArgKind::Str)],
        usage: "date takes at most one string argument (the format)",
        build: date,
    },
    FilterDef {
        name: "json",
        args: &[],
        usage: "json takes no arguments",
        build: |_| {
            on_value((), |_, value, _| {
                Cow::Owned(Value::String(
                    serde_json::to_string(&*value).unwrap_or_default(),
                ))
            })
        },
    },
    FilterDef {
        name: "pairs",
        args: &[optional(ArgKind::Str)],
        usage: "pairs takes at most one string argument (the separator)",
        build: collections::pairs,
    },
    FilterDef {
        name: "omit",
        args: &one_to_eight(ArgKind::Any),
        usage: "omit takes one to eight arguments: keys, or JSONPaths to objects whose keys to drop",
        build: collections::omit,
    },
    FilterDef {
        name: "pick",
        args: &one_to_eight(ArgKind::Str),
        usage: "pick takes one to eight string arguments (the keys, in order of preference)",
        build: collections::pick,
    },
    FilterDef {
        name: "unique",
        args: &[],
        usage: "unique takes no arguments",
        build: collections::unique,
    },
    FilterDef {
        name: "count_by",
        args: &[required(ArgKind::Str)],
        usage: "count_by takes one string argument (the key whose values are counted)",
        build: collections::count_by,
    },
    FilterDef {
        name: "wrap",
        args: &[required(ArgKind::Str), optional(ArgKind::Str)],
        usage: "wrap takes one or two string arguments ('before', 'after')",
        build: texts::wrap,
    },
    FilterDef {
        name: "replace_re",
        args: &[required(ArgKind::Str), required(ArgKind::Str)],
        usage: "replace_re takes two string arguments ('regex', 'replacement')",
        build: texts::replace_re,
    },
    FilterDef {
        name: "absolute_url",
        args: &[required(ArgKind::Any)],
        usage: "absolute_url takes one argument: the base address, a string or a JSONPath",
        build: texts::absolute_url,
    },
    FilterDef {
        name: "first",
        args: &[],
        usage: "first takes no arguments",
        build: |_| on_value((), |_, value, _| first(value)),
    },
    FilterDef {
        name: "scalar",
        args: &[],
        usage: "scalar takes no arguments",
        build: |_| {
            on_value((), |_, value, _| match value.as_ref() {
                Value::Array(_) | Value::Object(_) => Cow::Owned(Value::Null),
                _ => value,
            })
        },
    },
    FilterDef {
        name: "first_url",
        args: &[optional(ArgKind::Str)],
        usage: "first_url takes at most one string argument (a regex of addresses to skip)",
        build: first_url,
    },
    FilterDef {
        name: "since",
        args: &[required(ArgKind::Any)],
        usage: "since takes one argument: the earlier date (a JSONPath, or a date as text)",
        build: since,
    },
    FilterDef {
        name: "duration",
        args: &[optional(ArgKind::Str)],
        usage: "duration takes at most one string argument, the unit of the number: 's' (default) or 'ms'",
        build: duration,
    },
    FilterDef {
        name: "tail",
        args: &[required(ArgKind::Int)],
        usage: "tail takes one integer argument",
        build: pick::tail,
    },
    FilterDef {
        name: "url_join",
        args: &[required(ArgKind::Any)],
        usage: "url_join takes one argument: the base address, a string or a JSONPath",
        build: urls::url_join,
    },
    FilterDef {
        name: "otherwise",
        args: &[required(ArgKind::Str)],
        usage: "otherwise takes one string argument: a template",
        build: fallback::otherwise,
    },
    FilterDef {
        name: "capture",
        args: &[required(ArgKind::Str)],
        usage: "capture takes one string argument (a regex)",
        build: pick::capture,
    },
];

/// The row of filter `name`.
pub(super) fn find(name: &str) -> Option<&'static FilterDef> {
    FILTERS.iter().find(|f| f.name == name)
}

/// A built filter: what one `| name(…)` does at each render.
pub(super) type Filter = Box<dyn Apply>;

/// Runs a built filter; never fails (a value it cannot use passes through or becomes null).
pub(super) trait Apply: Send + Sync {
    /// The filtered value, borrowing from `value`, the filter or the scope where it can.
    fn apply<'v>(&'v self, value: Cow<'v, Value>, scope: &Scope<'v>) -> Cow<'v, Value>;
}

/// A filter on the value, with the argument it was built with.
struct OnValue<A> {
    /// The call's arguments, prepared when the template compiled.
    arg: A,
    /// What the filter does with them at each render.
    run: for<'v> fn(&'v A, Cow<'v, Value>, &Scope<'v>) -> Cow<'v, Value>,
}

impl<A: Send + Sync> Apply for OnValue<A> {
    fn apply<'v>(&'v self, value: Cow<'v, Value>, scope: &Scope<'v>) -> Cow<'v, Value> {
        (self.run)(&self.arg, value, scope)
    }
}

fn on_value<A: Send + Sync + 'static>(
    arg: A,
    run: for<'v> fn(&'v A, Cow<'v, Value>, &Scope<'v>) -> Cow<'v, Value>,
) -> Result<Filter, String> {
    Ok(Box::new(OnValue { arg, run }))
}

/// A filter on text, run on the text rendering of the value; null (missing) stays null.
/// `run` may borrow only a sub-slice of its input, so that a borrowed result of the same length
/// means "unchanged" and the value is passed on without a copy.
struct OnText<A> {
    /// The call's arguments, prepared when the template compiled.
    arg: A,
    /// What the filter does to the text at each render.
    run: for<'s> fn(&A, &'s str) -> Cow<'s, str>,
}

impl<A: Send + Sync> Apply for OnText<A> {
    fn apply<'v>(&'v self, value: Cow<'v, Value>, _: &Scope<'v>) -> Cow<'v, Value> {
        let changed = match value.as_ref() {
            Value::Null => None,
            Value::String(s) => match (self.run)(&self.arg, s) {
                Cow::Borrowed(r) if r.len() == s.len() => None,
                other => Some(other.into_owned()),
            },
            other => Some((self.run)(&self.arg, &text_of(other)).into_owned()),
        };
        match changed {
            None => value,
            Some(text) => Cow::Owned(Value::String(text)),
        }
    }
}

fn on_text<A: Send + Sync + 'static>(
    arg: A,
    run: for<'s> fn(&A, &'s str) -> Cow<'s, str>,
) -> Result<Filter, String> {
    Ok(Box::new(OnText { arg, run }))
}

const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d %H:%M";

/// Numbers above this are unix milliseconds rather than seconds.
const MILLIS_THRESHOLD: i64 = 1_000_000_000_000;

/// `default(x)`: a literal is lent out as it is; a path is only queried when the value is blank.
fn default(args: &[Arg]) -> Result<Filter, String> {
    let fallback = match args.first().map(|a| &a.value) {
        Some(ArgValue::Path(path)) => {
            return on_value(path.clone(), |path, value, scope| {
                if is_blank(&value) {
                    value_of(path, scope)
                } else {
                    value
                }
            });
        }
        Some(ArgValue::Int(i)) => Value::from(*i),
        Some(ArgValue::Str(s)) => Value::String(s.clone()),
        None => Value::Null,
    };
    on_value(fallback, |fallback, value, _| {
        if is_blank(&value) {
            Cow::Borrowed(fallback)
        } else {
            value
        }
    })
}

/// Null, "" and [] count as "no value" for `default`.
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn count(value: &Value) -> usize {
    match value {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        Value::Null => 0,
        _ => 1,
    }
}

/// The length argument of `truncate` and `left`: at least 1.
fn length(name: &str, args: &[Arg]) -> Result<usize, String> {
    match int_arg(args, 0).map(usize::try_from) {
        Some(Ok(n)) if n >= 1 => Ok(n),
        _ => Err(format!("{name} length must be at least 1")),
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

/// The first `n` chars, without an ellipsis.
fn left(s: &str, n: usize) -> Cow<'_, str> {
    match s.char_indices().nth(n) {
        Some((byte, _)) => Cow::Borrowed(&s[..byte]),
        None => Cow::Borrowed(s),
    }
}

/// A list's items as text between `sep`; anything else as its text, null staying null.
fn join<'v>(value: Cow<'v, Value>, sep: &str) -> Cow<'v, Value> {
    match value.as_ref() {
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
    }
}

fn replace(args: &[Arg]) -> Result<Filter, String> {
    let from = string_arg(args, 0);
    if from.is_empty() {
        return Err("replace needs a non-empty text to replace".to_string());
    }
    on_text((from, string_arg(args, 1)), |(from, to), s| {
        if s.contains(from.as_str()) {
            Cow::Owned(s.replace(from.as_str(), to))
        } else {
            Cow::Borrowed(s)
        }
    })
}

fn date(args: &[Arg]) -> Result<Filter, String> {
    let format = str_arg(args, 0).unwrap_or(DEFAULT_DATE_FORMAT);
    let items = StrftimeItems::new(format)
        .parse_to_owned()
        .map_err(|_| format!("invalid date format '{format}'"))?;
    on_value(items, |items, value, scope| {
        match format_date(&value, items, scope.tz) {
            Some(text) => Cow::Owned(Value::String(text)),
            None => value,
        }
    })
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

/// The first item of a list; anything else passes through.
fn first(value: Cow<'_, Value>) -> Cow<'_, Value> {
    match value {
        Cow::Borrowed(Value::Array(items)) => {
            items.first().map_or(Cow::Owned(Value::Null), Cow::Borrowed)
        }
        Cow::Owned(Value::Array(mut items)) if !items.is_empty() => {
            Cow::Owned(items.swap_remove(0))
        }
        Cow::Owned(Value::Array(_)) => Cow::Owned(Value::Null),
        other => other,
    }
}

fn first_url(args: &[Arg]) -> Result<Filter, String> {
    let skip = str_arg(args, 0)
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| format!("invalid regex in first_url: {e}"))?;
    on_value(skip, |skip, value, _| {
        match find_url(&value, skip.as_ref()) {
            Some(url) => Cow::Owned(Value::String(url.to_string())),
            None => Cow::Owned(Value::Null),
        }
    })
}

/// The first http(s) string found breadth-first (top-level addresses before nested ones),
/// skipping those `skip` matches; bounded to a few thousand nodes so a huge payload costs a
/// bounded amount.
fn find_url<'v>(root: &'v Value, skip: Option<&regex::Regex>) -> Option<&'v str> {
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

mod fallback;
mod pick;
mod urls;

#[cfg(test)]
mod tests;

/// An RFC 3339 text or unix seconds/milliseconds as milliseconds since the epoch.
fn instant_ms(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|d| d.timestamp_millis()),
        Value::Number(n) => {
            let i = n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f.round() as i64))?;
            Some(if i > MILLIS_THRESHOLD {
                i
            } else {
                i.checked_mul(1000)?
            })
        }
        _ => None,
    }
}

/// `since(earlier)`: seconds from `earlier` to the value (both dates); null when either is not
/// a date.
fn since(args: &[Arg]) -> Result<Filter, String> {
    let earlier = match args.first().map(|a| &a.value) {
        Some(ArgValue::Path(path)) => Earlier::Path(path.clone()),
        Some(ArgValue::Str(s)) => Earlier::Fixed(Value::String(s.clone())),
        Some(ArgValue::Int(i)) => Earlier::Fixed(Value::from(*i)),
        None => return Err("since takes one argument: the earlier date".into()),
    };
    on_value(earlier, |earlier, value, scope| {
        let from = match earlier {
            Earlier::Path(p) => instant_ms(value_of(p, scope).as_ref()),
            Earlier::Fixed(v) => instant_ms(v),
        };
        match (from, instant_ms(&value)) {
            (Some(a), Some(b)) if b >= a => Cow::Owned(Value::from((b - a) / 1000)),
            _ => Cow::Owned(Value::Null),
        }
    })
}

/// Where `since` reads the earlier date.
enum Earlier {
    Path(crate::map::jsonpath::JsonPath),
    Fixed(Value),
}

/// `duration` / `duration('ms')`: a number of seconds (or milliseconds) as a short duration in
/// the card's language: `45 s`, `3 min`, `1 h 5 min`, `2 d 3 h`; `45 秒`, `3 分钟`, `1 小时 5
/// 分钟`, `2 天 3 小时`. A value that is not a number passes unchanged.
fn duration(args: &[Arg]) -> Result<Filter, String> {
    let divisor = match str_arg(args, 0) {
        None | Some("s") => 1,
        Some("ms") => 1000,
        Some(other) => return Err(format!("duration unit '{other}' is not 's' or 'ms'")),
    };
    on_value(divisor, |divisor, value, scope| {
        let seconds = match value.as_ref() {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| *f >= 0.0),
            _ => None,
        };
        match seconds {
            Some(s) => Cow::Owned(Value::String(short_duration(
                (s / f64::from(*divisor)).round() as u64,
                scope.locale,
            ))),
            None => value,
        }
    })
}

/// `seconds` in its largest unit and the next one down (when not zero), in `locale`.
pub(super) fn short_duration(seconds: u64, locale: crate::card::Locale) -> String {
    use crate::card::Locale;
    const UNITS: [(u64, &str, &str); 4] = [
        (86_400, "d", "天"),
        (3_600, "h", "小时"),
        (60, "min", "分钟"),
        (1, "s", "秒"),
    ];
    let word = |n: u64, i: usize| match locale {
        Locale::En => format!("{n} {}", UNITS[i].1),
        Locale::ZhCn => format!("{n} {}", UNITS[i].2),
    };
    let first = UNITS
        .iter()
        .position(|(size, _, _)| seconds >= *size)
        .unwrap_or(UNITS.len() - 1);
    let n = seconds / UNITS[first].0;
    let mut text = word(n, first);
    if let Some((size, _, _)) = UNITS.get(first + 1) {
        let next = (seconds % UNITS[first].0) / size;
        if next > 0 {
            text.push(' ');
            text.push_str(&word(next, first + 1));
        }
    }
    text
}
