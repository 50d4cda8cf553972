//! The filters that read lists and objects as a whole: `omit`, `pick`, `pairs`, `unique` and
//! `count_by`. Alert payloads need them most — what sets one alert apart from the rest of its
//! group is its labels less the group's common ones (`omit`), written `k=v` (`pairs`) — but
//! nothing in them is about alerts.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::super::super::jsonpath::{JsonPath, Scope};
use super::super::args::{Arg, ArgValue, str_arg};
use super::super::text::{text_of, write_text};
use super::{Filter, is_blank, on_value};

/// What one argument of `omit` names: a key, or the keys a path finds when the template renders.
enum Keys {
    /// A key written in the template.
    Key(String),
    /// A path: the keys of the object it finds, or the text(s) it finds.
    Path(JsonPath),
}

/// `omit(x, …)`: the object without the keys its arguments name.
pub(super) fn omit(args: &[Arg]) -> Result<Filter, String> {
    let keys: Vec<Keys> = args
        .iter()
        .map(|a| match &a.value {
            ArgValue::Str(s) => Keys::Key(s.clone()),
            ArgValue::Int(i) => Keys::Key(i.to_string()),
            ArgValue::Path(p) => Keys::Path(p.clone()),
        })
        .collect();
    on_value(keys, |keys, value, scope| {
        let Value::Object(map) = value.as_ref() else {
            return value;
        };
        let names = named_keys(keys, scope);
        if !map.keys().any(|k| names.contains(&k.as_str())) {
            return value;
        }
        let kept: Map<String, Value> = map
            .iter()
            .filter(|(k, _)| !names.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Cow::Owned(Value::Object(kept))
    })
}

/// Every key `keys` names in this scope: a path to an object names its keys (Alertmanager's
/// `.Labels.Remove .CommonLabels.Names`), a path to text names that text, to a list each item.
fn named_keys<'v>(keys: &'v [Keys], scope: &Scope<'v>) -> Vec<&'v str> {
    let mut names = Vec::new();
    for k in keys {
        match k {
            Keys::Key(k) => names.push(k.as_str()),
            Keys::Path(path) => {
                for found in path.query(scope) {
                    match found {
                        Value::Object(map) => names.extend(map.keys().map(String::as_str)),
                        Value::String(s) => names.push(s.as_str()),
                        Value::Array(items) => {
                            names.extend(items.iter().filter_map(Value::as_str));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    names
}

/// `pick(k, …)`: the value of the first listed key that the object holds (not blank); for a list
/// of objects, from the first object that holds one; null when none does. A text, number or
/// boolean passes through, so that `pick(…) | default(@.other) | pick(…)` reads on from the
/// first value found.
pub(super) fn pick(args: &[Arg]) -> Result<Filter, String> {
    let keys: Vec<String> = (0..args.len())
        .filter_map(|i| str_arg(args, i).map(str::to_string))
        .collect();
    on_value(keys, |keys, value, _| {
        let found = match value.as_ref() {
            Value::Object(map) => picked(map, keys).cloned(),
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_object)
                .find_map(|map| picked(map, keys))
                .cloned(),
            _ => return value,
        };
        Cow::Owned(found.unwrap_or(Value::Null))
    })
}

fn picked<'m>(map: &'m Map<String, Value>, keys: &[String]) -> Option<&'m Value> {
    keys.iter()
        .filter_map(|k| map.get(k))
        .find(|v| !is_blank(v))
}

/// `pairs` / `pairs(sep)`: an object as `key=value` text, in key order, the pairs between `sep`;
/// pairs whose value is blank are left out, and an object with none is null. Anything else
/// passes through.
pub(super) fn pairs(args: &[Arg]) -> Result<Filter, String> {
    let sep = str_arg(args, 0).unwrap_or(", ").to_string();
    on_value(sep, |sep, value, _| {
        let Value::Object(map) = value.as_ref() else {
            return value;
        };
        let mut out = String::new();
        for (k, v) in map.iter().filter(|(_, v)| !is_blank(v)) {
            if !out.is_empty() {
                out.push_str(sep);
            }
            out.push_str(k);
            out.push('=');
            write_text(&mut out, v);
        }
        if out.is_empty() {
            Cow::Owned(Value::Null)
        } else {
            Cow::Owned(Value::String(out))
        }
    })
}

/// `unique`: a list without its repeats, the first of each kept; anything else passes through.
pub(super) fn unique(_: &[Arg]) -> Result<Filter, String> {
    on_value((), |_, value, _| {
        let Value::Array(items) = value.as_ref() else {
            return value;
        };
        let mut kept: Vec<Value> = Vec::with_capacity(items.len());
        for item in items {
            if !kept.contains(item) {
                kept.push(item.clone());
            }
        }
        if kept.len() == items.len() {
            value
        } else {
            Cow::Owned(Value::Array(kept))
        }
    })
}

/// `count_by(key)`: how many items of a list have each value of `key`, as `value:count` text
/// in the values' order (`firing:1, resolved:2`); items without the key are not counted, and a
/// list with none is null. An object counts as a list of one.
pub(super) fn count_by(args: &[Arg]) -> Result<Filter, String> {
    let key = str_arg(args, 0).unwrap_or_default().to_string();
    on_value(key, |key, value, _| {
        let items: &[Value] = match value.as_ref() {
            Value::Array(items) => items,
            Value::Object(_) => std::slice::from_ref(value.as_ref()),
            _ => return Cow::Owned(Value::Null),
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for item in items {
            match item.get(key.as_str()) {
                Some(v) if !is_blank(v) => *counts.entry(text_of(v)).or_default() += 1,
                _ => {}
            }
        }
        if counts.is_empty() {
            return Cow::Owned(Value::Null);
        }
        let text: Vec<String> = counts.iter().map(|(v, n)| format!("{v}:{n}")).collect();
        Cow::Owned(Value::String(text.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::super::super::jsonpath::Scope;
    use super::super::super::{CompileOptions, Template};

    const ROW: CompileOptions = CompileOptions {
        allow_element: true,
    };

    fn alert_group() -> Value {
        json!({
            "status": "firing",
            "commonLabels": {"alertname": "DiskFull", "job": "node"},
            "commonAnnotations": {"summary": "A disk is full"},
            "alerts": [
                {"status": "resolved",
                 "labels": {"alertname": "DiskFull", "job": "node", "instance": "a:9100", "mountpoint": "/var"},
                 "annotations": {"summary": "A disk is full", "description": "/var is full"}},
                {"status": "firing",
                 "labels": {"alertname": "DiskFull", "job": "node", "instance": "a:9100", "mountpoint": "/home"},
                 "annotations": {"summary": "A disk is full", "description": ""}},
                {"status": "resolved", "labels": {"alertname": "DiskFull"}},
                {"labels": {}}
            ],
            "values": {"B": 44.25, "A": 1, "C": null, "D": ""},
            "none": {}
        })
    }

    fn render(text: &str) -> String {
        let root = alert_group();
        let element = &root["alerts"][0];
        let template = Template::compile(text, &ROW).unwrap();
        template.render(&Scope::new(&root, chrono_tz::UTC).with_element(element))
    }

    #[test]
    fn omit_drops_named_keys_and_the_keys_of_another_object() {
        assert_eq!(
            render("{@.labels | omit($.commonLabels) | json}"),
            r#"{"instance":"a:9100","mountpoint":"/var"}"#
        );
        assert_eq!(
            render("{@.labels | omit($.commonLabels, 'instance') | json}"),
            r#"{"mountpoint":"/var"}"#
        );
        assert_eq!(
            render("{@.labels | omit('nothing') | json}"),
            r#"{"alertname":"DiskFull","instance":"a:9100","job":"node","mountpoint":"/var"}"#
        );
        assert_eq!(render("{@.status | omit('status')}"), "resolved");
        assert_eq!(render("{@.missing | omit('x') | default('-')}"), "-");
    }

    #[test]
    fn pick_takes_the_first_listed_key_that_holds_something() {
        assert_eq!(
            render("{@.annotations | pick('description', 'summary')}"),
            "/var is full"
        );
        assert_eq!(
            render("{$.alerts[1].annotations | pick('description', 'summary')}"),
            "A disk is full",
            "an empty description is skipped"
        );
        assert_eq!(
            render("{@.annotations | omit($.commonAnnotations) | pick('summary', 'description')}"),
            "/var is full",
            "what is not common to the group"
        );
        assert_eq!(
            render("{$.alerts[*].annotations | pick('description')}"),
            "/var is full",
            "from the first object of a list that has one"
        );
        assert_eq!(
            render("{@.annotations | pick('message') | default('none')}"),
            "none"
        );
        assert_eq!(
            render("{@.status | pick('x')}"),
            "resolved",
            "text passes through"
        );
        assert_eq!(
            render("{@.missing | pick('x') | default(@.annotations) | pick('description')}"),
            "/var is full"
        );
        assert_eq!(
            render("{@.annotations | pick('summary') | default(@.labels) | pick('instance')}"),
            "A disk is full",
            "what the first pick found is kept"
        );
    }

    #[test]
    fn pairs_writes_an_object_as_key_value_text_in_key_order_without_blanks() {
        assert_eq!(render("{$.values | pairs}"), "A=1, B=44.25");
        assert_eq!(render("{$.values | pairs(' ')}"), "A=1 B=44.25");
        assert_eq!(
            render("{$.none | pairs | default('no values')}"),
            "no values"
        );
        assert_eq!(
            render("{@.labels | omit($.commonLabels) | pairs | upper}"),
            "INSTANCE=A:9100, MOUNTPOINT=/VAR"
        );
        assert_eq!(render("{@.status | pairs}"), "resolved");
    }

    #[test]
    fn unique_keeps_the_first_of_each_repeated_item() {
        assert_eq!(
            render("{$.alerts[*].labels.alertname | unique | join}"),
            "DiskFull"
        );
        assert_eq!(
            render("{$.alerts[*].status | unique | join('/')}"),
            "resolved/firing"
        );
        assert_eq!(render("{@.status | unique}"), "resolved");
    }

    #[test]
    fn count_by_counts_the_items_of_each_value_in_value_order() {
        assert_eq!(
            render("{$.alerts | count_by('status') | upper}"),
            "FIRING:1, RESOLVED:2"
        );
        assert_eq!(render("{$.alerts[1] | count_by('status')}"), "firing:1");
        assert_eq!(
            render("{$.alerts[3] | count_by('status') | default('none')}"),
            "none"
        );
        assert_eq!(
            render("{$.status | count_by('status') | default('none')}"),
            "none"
        );
    }
}
