//! The text rendering of JSON values: what a template writes for each value, and what the text
//! filters read when given something other than a string.

use std::fmt::Write as _;

use serde_json::Value;

/// The text rendering of a value as a new string.
pub(super) fn text_of(value: &Value) -> String {
    let mut out = String::new();
    write_text(&mut out, value);
    out
}

/// Appends the text rendering of `value`: strings as-is, integers without `.0`, null as "",
/// arrays joined with ", ", objects as compact JSON.
pub(super) fn write_text(out: &mut String, value: &Value) {
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
