//! The filters that rewrite text with a pattern or a base: `wrap`, `replace_re` and
//! `absolute_url`. Each is built once when its template compiles (the regex, the base) and a
//! value it cannot use becomes null, so that a `default` after it can take over.

use std::borrow::Cow;

use serde_json::Value;

use super::super::super::jsonpath::JsonPath;
use super::super::args::{Arg, ArgValue, str_arg, string_arg};
use super::super::text::text_of;
use super::super::value_of;
use super::{Filter, on_text, on_value};

/// `wrap(before)` / `wrap(before, after)`: text that is not blank, between `before` and
/// `after`; blank text (null, "", white space) becomes null, so nothing is written around it.
pub(super) fn wrap(args: &[Arg]) -> Result<Filter, String> {
    let around = (string_arg(args, 0), string_arg(args, 1));
    on_value(around, |(before, after), value, _| {
        let text = match value.as_ref() {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(text_of(other)),
        };
        if text.trim().is_empty() {
            return Cow::Owned(Value::Null);
        }
        Cow::Owned(Value::String(format!("{before}{text}{after}")))
    })
}

/// `replace_re(regex, with)`: every match of the regex replaced by `with`, where `$1` or
/// `${name}` stands for a group (the `regex` crate's syntax); the regex is checked when the
/// template compiles.
pub(super) fn replace_re(args: &[Arg]) -> Result<Filter, String> {
    let pattern = str_arg(args, 0).unwrap_or_default();
    let re = regex::Regex::new(pattern).map_err(|e| format!("invalid regex in replace_re: {e}"))?;
    on_text((re, string_arg(args, 1)), |(re, with), s| {
        re.replace_all(s, with.as_str())
    })
}

/// Where `absolute_url` takes its base from.
enum Base {
    /// A base written in the template, parsed once (`None`: not an http(s) address).
    Fixed(Option<url::Url>),
    /// A path read at each render.
    Path(JsonPath),
}

/// `absolute_url(base)`: an http(s) address as it is; a relative one (`/prometheus/graph?…`,
/// `?orgId=1`) resolved against `base` as a browser resolves a link; null when neither gives an
/// http(s) address.
pub(super) fn absolute_url(args: &[Arg]) -> Result<Filter, String> {
    let base = match args.first().map(|a| &a.value) {
        Some(ArgValue::Path(path)) => Base::Path(path.clone()),
        Some(ArgValue::Str(s)) => Base::Fixed(http_url(s)),
        Some(ArgValue::Int(_)) | None => Base::Fixed(None),
    };
    on_value(base, |base, value, scope| {
        let text = match value.as_ref() {
            Value::String(s) => s.trim(),
            _ => return Cow::Owned(Value::Null),
        };
        if text.is_empty() {
            return Cow::Owned(Value::Null);
        }
        if http_url(text).is_some() {
            return value;
        }
        let base = match base {
            Base::Fixed(url) => url.clone(),
            Base::Path(path) => match value_of(path, scope).as_ref() {
                Value::String(s) => http_url(s),
                _ => None,
            },
        };
        let joined = base.and_then(|b| b.join(text).ok()).filter(is_http);
        match joined {
            Some(url) => Cow::Owned(Value::String(url.into())),
            None => Cow::Owned(Value::Null),
        }
    })
}

/// `text` parsed as an absolute http(s) address with a host, or `None`.
fn http_url(text: &str) -> Option<url::Url> {
    url::Url::parse(text.trim()).ok().filter(is_http)
}

fn is_http(url: &url::Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::super::super::jsonpath::Scope;
    use super::super::super::{CompileOptions, Template};

    const TOP: CompileOptions = CompileOptions {
        allow_element: false,
    };

    fn payload() -> Value {
        json!({
            "externalURL": "https://example.com/alertmanager/",
            "bare": "http://alertmanager:9093",
            "broken": "http://:9093",
            "relative": "/prometheus/graph?g0.expr=up&g0.tab=1",
            "query": "?orgId=1",
            "absolute": "http://prometheus:9090/graph?g0.expr=up",
            "other": "dingtalk://dingtalkclient/page/link?url=x",
            "empty": "",
            "valueString": "[ var='B' labels={job=api} value=17 ], [ var='C' labels={} value=1 ]",
            "text": "  ",
            "n": 0
        })
    }

    fn render(text: &str) -> String {
        let root = payload();
        Template::compile(text, &TOP)
            .unwrap()
            .render(&Scope::new(&root, chrono_tz::UTC))
    }

    #[test]
    fn wrap_surrounds_text_and_leaves_blank_text_out() {
        assert_eq!(
            render("firing{$.bare | wrap(' (', ')')}"),
            "firing (http://alertmanager:9093)"
        );
        assert_eq!(render("firing{$.empty | wrap(' (', ')')}"), "firing");
        assert_eq!(render("firing{$.text | wrap(': ')}"), "firing");
        assert_eq!(render("firing{$.missing | wrap(': ')}"), "firing");
        assert_eq!(render("{$.n | wrap('n=')}"), "n=0");
        assert_eq!(render("{$.empty | wrap('x') | default('none')}"), "none");
    }

    #[test]
    fn replace_re_rewrites_every_match_with_its_groups() {
        assert_eq!(
            render(
                r"{$.valueString | replace_re('\[ var=\'([^\']*)\'[^\]]*? value=(\S+) \]', '$1=$2')}"
            ),
            "B=17, C=1"
        );
        assert_eq!(
            render("{$.bare | replace_re('^https?://', '')}"),
            "alertmanager:9093"
        );
        assert_eq!(
            render("{$.missing | replace_re('x', 'y') | default('none')}"),
            "none"
        );
        let err = Template::compile("{$.a | replace_re('(', '')}", &TOP).unwrap_err();
        assert!(err.message.contains("invalid regex"), "{}", err.message);
        assert_eq!(err.offset, 18);
    }

    #[test]
    fn absolute_url_resolves_a_relative_address_against_the_base() {
        assert_eq!(
            render("{$.relative | absolute_url($.externalURL)}"),
            "https://example.com/prometheus/graph?g0.expr=up&g0.tab=1"
        );
        assert_eq!(
            render("{$.relative | absolute_url($.bare)}"),
            "http://alertmanager:9093/prometheus/graph?g0.expr=up&g0.tab=1"
        );
        assert_eq!(
            render("{$.query | absolute_url('https://grafana.example/alerting/list')}"),
            "https://grafana.example/alerting/list?orgId=1"
        );
        assert_eq!(
            render("{$.absolute | absolute_url($.externalURL)}"),
            "http://prometheus:9090/graph?g0.expr=up",
            "an absolute address is kept as written"
        );
    }

    #[test]
    fn absolute_url_is_null_when_no_http_address_comes_of_it() {
        for text in [
            "{$.relative | absolute_url($.broken) | default('none')}",
            "{$.relative | absolute_url($.missing) | default('none')}",
            "{$.relative | absolute_url('/not/absolute') | default('none')}",
            "{$.other | absolute_url($.externalURL) | default('none')}",
            "{$.empty | absolute_url($.externalURL) | default('none')}",
            "{$.missing | absolute_url($.externalURL) | default('none')}",
            "{$.n | absolute_url($.externalURL) | default('none')}",
            "{$.broken | absolute_url($.broken) | default('none')}",
        ] {
            assert_eq!(render(text), "none", "{text}");
        }
        assert_eq!(
            render("{$.relative | absolute_url($.broken) | default($.externalURL)}"),
            "https://example.com/alertmanager/"
        );
    }
}
