//! `url_join(base)`: a relative address made absolute against a base, as a browser would follow
//! a link. Senders such as Jenkins give their own pages as paths (`job/api/12/`) and the site's
//! address only when it is configured; the base can be written in the mapping or read from the
//! payload.

use std::borrow::Cow;

use serde_json::Value;

use super::super::super::jsonpath::{JsonPath, Scope};
use super::super::args::{Arg, ArgValue};
use super::super::text::text_of;
use super::super::value_of;
use super::{Filter, on_value};

/// Where the base comes from.
enum Base {
    /// Written in the mapping (`url_join('https://ci.example.com/')`); "" means none.
    Literal(String),
    /// Read from the payload (`url_join($.site.url)`).
    Path(JsonPath),
}

/// Builds `url_join(base)`.
pub(super) fn url_join(args: &[Arg]) -> Result<Filter, String> {
    let base = match args.first().map(|a| &a.value) {
        Some(ArgValue::Path(path)) => Base::Path(path.clone()),
        Some(ArgValue::Str(s)) => {
            if !s.is_empty() && absolute(s).is_none() {
                return Err(format!(
                    "url_join base {s:?} is not an http(s) address (write '' for none)"
                ));
            }
            Base::Literal(s.clone())
        }
        Some(ArgValue::Int(_)) | None => {
            return Err("url_join takes a base address: a string or a JSONPath".into());
        }
    };
    on_value(base, joined)
}

fn joined<'v>(base: &'v Base, value: Cow<'v, Value>, scope: &Scope<'v>) -> Cow<'v, Value> {
    let reference = match value.as_ref() {
        Value::Null => return value,
        Value::String(s) => s.trim().to_string(),
        other => text_of(other),
    };
    if reference.is_empty() {
        return Cow::Owned(Value::Null);
    }
    // An address that is already absolute is kept as it is.
    if absolute(&reference).is_some() {
        return value;
    }
    let base_text = match base {
        Base::Literal(s) => s.clone(),
        Base::Path(path) => text_of(&value_of(path, scope)),
    };
    let Some(mut base_url) = absolute(base_text.trim()) else {
        return Cow::Owned(Value::Null);
    };
    // The base names a site or a folder (`https://host/jenkins`), never a page to replace.
    if !base_url.path().ends_with('/') {
        let folder = format!("{}/", base_url.path());
        base_url.set_path(&folder);
    }
    match base_url.join(&reference) {
        Ok(url) => Cow::Owned(Value::String(url.into())),
        Err(_) => Cow::Owned(Value::Null),
    }
}

/// `text` parsed as an http(s) address.
fn absolute(text: &str) -> Option<url::Url> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}
