//! `otherwise(t)`: `default` with a template for the fallback, for the cases where no single
//! field holds the text but several together do (a CircleCI workflow's page from its project,
//! pipeline and workflow ids).

use std::borrow::Cow;

use serde_json::Value;

use super::super::args::{Arg, str_arg};
use super::super::{CompileOptions, Template};
use super::{Filter, is_blank, on_value};

/// Builds `otherwise('text with {holes}')`. The inner template is compiled here, once; `@` is
/// allowed in it, as in a row (outside a row list it reads nothing).
pub(super) fn otherwise(args: &[Arg]) -> Result<Filter, String> {
    let text = str_arg(args, 0).unwrap_or_default();
    let template = Template::compile(
        text,
        &CompileOptions {
            allow_element: true,
        },
    )
    .map_err(|e| format!("in the template of otherwise: {e}"))?;
    on_value(template, |template, value, scope| {
        if !is_blank(&value) {
            return value;
        }
        let text = template.render(scope);
        if text.trim().is_empty() {
            Cow::Owned(Value::Null)
        } else {
            Cow::Owned(Value::String(text))
        }
    })
}
