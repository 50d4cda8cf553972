//! A filter call's arguments: the kinds of value a filter row declares it takes, and the
//! values the parser reads for a call. Both `parse` and `filters` use them, so they sit apart
//! from either (the parser looks filters up; filters read arguments).

use super::super::jsonpath::JsonPath;

/// What a filter takes in one argument position.
pub(super) struct Param {
    /// The kind of value it accepts.
    pub kind: ArgKind,
    /// Whether a call may leave it out; optional positions come after the required ones.
    pub optional: bool,
}

/// A position a call must fill.
pub(super) const fn required(kind: ArgKind) -> Param {
    Param {
        kind,
        optional: false,
    }
}

/// A position a call may leave out.
pub(super) const fn optional(kind: ArgKind) -> Param {
    Param {
        kind,
        optional: true,
    }
}

/// One to eight positions of one kind: a filter that takes a list of keys.
pub(super) const fn one_to_eight(kind: ArgKind) -> [Param; 8] {
    [
        required(kind),
        optional(kind),
        optional(kind),
        optional(kind),
        optional(kind),
        optional(kind),
        optional(kind),
        optional(kind),
    ]
}

/// The kind of value an argument position accepts.
#[derive(Clone, Copy)]
pub(super) enum ArgKind {
    /// A quoted string.
    Str,
    /// An integer.
    Int,
    /// A string, an integer or a JSONPath.
    Any,
}

impl ArgKind {
    /// Whether `value` is of this kind.
    pub(super) fn accepts(self, value: &ArgValue) -> bool {
        matches!(
            (self, value),
            (ArgKind::Any, _) | (ArgKind::Str, ArgValue::Str(_)) | (ArgKind::Int, ArgValue::Int(_))
        )
    }
}

/// A filter argument as parsed, with the byte position where it starts.
pub(super) struct Arg {
    /// What was written.
    pub value: ArgValue,
    /// Where it starts, for errors about it.
    pub at: usize,
}

/// The value of a filter argument.
pub(super) enum ArgValue {
    Str(String),
    Int(i64),
    Path(JsonPath),
}

/// Argument `i` when it is a string.
pub(super) fn str_arg(args: &[Arg], i: usize) -> Option<&str> {
    match args.get(i).map(|a| &a.value) {
        Some(ArgValue::Str(s)) => Some(s),
        _ => None,
    }
}

/// Argument `i` as an owned string; "" when it is not a string (the row makes that a
/// missing optional one).
pub(super) fn string_arg(args: &[Arg], i: usize) -> String {
    str_arg(args, i).unwrap_or_default().to_string()
}

/// Argument `i` when it is an integer.
pub(super) fn int_arg(args: &[Arg], i: usize) -> Option<i64> {
    match args.get(i).map(|a| &a.value) {
        Some(ArgValue::Int(n)) => Some(*n),
        _ => None,
    }
}
