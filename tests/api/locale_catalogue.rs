//! Every built-in mapping in both languages (issue 17): `fxhook check` passes with
//! `cards.locale` `en` and `zh-CN`, and every example's payload makes a card whose title and
//! labels are English by default and Chinese with `zh-CN` — except text that is the payload's
//! own (a commit's short SHA, an alert's label, a project's name), which stays as sent — and
//! the Chinese card keeps within the vendor's limits.

use std::collections::BTreeMap;

use fxhook::card::{Locale, SendBody};
use fxhook::diagnostic::Severity;
use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::{LoadOptions, Source, load_file_with};
use fxhook::verify::{ContentKind, Verifier, Webhook};
use serde_json::Value;

use crate::cards::assert_valid_composite;
use crate::helpers::repo_file;

fn groups() -> Groups {
    Groups::new(&BTreeMap::from([("default".into(), vec!["1000".into()])])).unwrap()
}

/// The shipped mapping `name` loaded as `fxhook check` loads it, in `locale`.
fn load(name: &str, locale: Locale) -> Source {
    let mut options = LoadOptions::default();
    options.limits.locale = locale;
    options.examples = Severity::Error;
    let file = repo_file(&format!("mappings/{name}.yaml"));
    let (source, diagnostics) = load_file_with(&file, &groups(), &options);
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "fxhook check in {locale:?}:\n{}",
        errors.join("\n")
    );
    source.expect("the mapping loads")
}

/// The examples of mapping `name`: payload file and headers.
fn examples(name: &str) -> Vec<(std::path::PathBuf, BTreeMap<String, String>)> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        examples: Vec<Example>,
    }
    #[derive(serde::Deserialize)]
    struct Example {
        payload: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(repo_file(&format!("mappings/{name}.yaml"))).unwrap();
    let file: File = serde_saphyr::from_str(&text).expect("the mapping's YAML");
    file.examples
        .into_iter()
        .map(|e| (repo_file(&format!("mappings/{}", e.payload)), e.headers))
        .collect()
}

fn render(source: &Source, payload: &[u8], headers: &BTreeMap<String, String>) -> Option<SendBody> {
    let mut map = actix_web::http::header::HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            actix_web::http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            actix_web::http::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    let form = map.get("content-type").is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    let webhook = Webhook {
        headers: map,
        body: payload.to_vec().into(),
        content: if form {
            ContentKind::Form
        } else {
            ContentKind::Json
        },
        query: String::new(),
        received_at: std::time::SystemTime::now(),
    };
    let payload = Verifier::unsigned()
        .verify(webhook)
        .unwrap()
        .parse()
        .unwrap();
    match fxhook::pipeline::render(
        &source.mapping,
        &payload,
        &groups(),
        chrono_tz::Asia::Shanghai,
    ) {
        Routed::Rendered { messages, .. } => messages.into_iter().next(),
        _ => None,
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}')
}

/// Every key and scalar of the payload and the headers, as text.
fn payload_texts(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push_str(k);
                out.push('\n');
                payload_texts(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| payload_texts(v, out)),
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        other => {
            out.push_str(&other.to_string());
            out.push('\n');
        }
    }
}

/// True when `text` is the payload's own (it occurs in it as sent).
fn from_payload(text: &str, payload: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && payload.contains(text)
}

/// Both languages of every example of mapping `name`.
fn speaks_both(name: &str) {
    let en = load(name, Locale::En);
    let zh = load(name, Locale::ZhCn);
    let mut problems = Vec::new();
    let mut rendered = 0;
    for (path, headers) in examples(name) {
        let bytes = std::fs::read(&path).unwrap();
        let mut texts = String::new();
        if let Ok(json) = serde_json::from_slice::<Value>(&bytes) {
            payload_texts(&json, &mut texts);
        }
        headers.values().for_each(|v| texts.push_str(v));
        let shown = path.file_name().unwrap().to_string_lossy().into_owned();
        let (Some(en_body), Some(zh_body)) =
            (render(&en, &bytes, &headers), render(&zh, &bytes, &headers))
        else {
            continue;
        };
        assert_valid_composite(&zh_body);
        let (en_card, zh_card) = (en_body.composite, zh_body.composite);
        rendered += 1;
        let mut en_texts = vec![
            ("title", en_card.head.title.clone()),
            ("link title", en_card.link.title.clone()),
        ];
        en_texts.extend(en_card.form.iter().map(|r| ("label", r.label.clone())));
        for (what, text) in &en_texts {
            let foreign: String = text
                .chars()
                .filter(|c| is_cjk(*c) && !texts.contains(*c))
                .collect();
            if !foreign.is_empty() {
                problems.push(format!("{shown}: en {what} {text:?} has Chinese"));
            }
        }
        let title = &zh_card.head.title;
        if !title.chars().any(is_cjk) && !from_payload(title, &texts) {
            problems.push(format!("{shown}: zh-CN title {title:?} is not Chinese"));
        }
        let link = &zh_card.link.title;
        if !link.chars().any(is_cjk) && !from_payload(link, &texts) {
            problems.push(format!("{shown}: zh-CN link title {link:?} is not Chinese"));
        }
        for row in &zh_card.form {
            if !row.label.chars().any(is_cjk) && !from_payload(&row.label, &texts) {
                problems.push(format!(
                    "{shown}: zh-CN label {:?} is not Chinese",
                    row.label
                ));
            }
        }
    }
    assert!(rendered > 0, "{name}: no example renders a card");
    assert!(
        problems.is_empty(),
        "{name}: {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

macro_rules! both_languages {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                speaks_both(stringify!($name));
            }
        )*
    };
}

both_languages!(
    github,
    gitlab,
    gitea,
    bitbucket,
    alertmanager,
    grafana,
    sentry,
    jenkins,
    circleci,
    generic,
);
