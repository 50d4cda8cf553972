//! Cards in several languages from one rule set: a text may be `{ en: …, zh-CN: … }`;
//! `cards.locale` chooses, a file's `locale:` pins its own; a file that declares its languages
//! (or uses them) and lacks a text in one is refused at its `file:line:col`.

use std::collections::BTreeMap;

use fxhook::card::Locale;
use fxhook::diagnostic::Severity;
use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::{LoadOptions, load_file_with};
use fxhook::verify::{ContentKind, Verifier, Webhook};

const BILINGUAL: &str = r#"verify: { unsigned: true }
locales: [en, zh-CN]
rules:
  - name: push
    card:
      title: { en: "{$.repo}: {$.n} commit(s)", zh-CN: "{$.repo}：{$.n} 个提交" }
      rows:
        - { label: { en: Branch, zh-CN: 分支 }, value: "{$.branch}" }
      link: { title: { en: View, zh-CN: 查看 }, url: "https://example.com/{$.repo}" }
"#;

fn groups() -> Groups {
    Groups::new(&BTreeMap::from([("default".into(), vec!["1000".into()])])).unwrap()
}

fn options(locale: Locale) -> LoadOptions {
    let mut options = LoadOptions::default();
    options.limits.locale = locale;
    options
}

/// The card `yaml` makes of a small push, in `locale`.
fn card(yaml: &str, locale: Locale) -> fxhook::card::Composite {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("push.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (source, diagnostics) = load_file_with(&file, &groups(), &options(locale));
    let source = source.unwrap_or_else(|| panic!("{diagnostics:?}"));
    let webhook = Webhook {
        headers: Default::default(),
        body: br#"{"repo":"octo/app","n":3,"branch":"main"}"#.to_vec().into(),
        content: ContentKind::Json,
        query: String::new(),
        received_at: std::time::SystemTime::now(),
    };
    let payload = Verifier::unsigned()
        .verify(webhook)
        .unwrap()
        .parse()
        .unwrap();
    match fxhook::pipeline::render(&source.mapping, &payload, &groups(), chrono_tz::UTC) {
        Routed::Rendered { messages, .. } => messages[0].composite.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_rule_set_speaks_english_by_default_and_chinese_when_cards_locale_says_so() {
    let en = card(BILINGUAL, Locale::En);
    assert_eq!(en.head.title, "octo/app: 3 commit(s)");
    assert_eq!(
        (en.form[0].label.as_str(), en.link.title.as_str()),
        ("Branch", "View")
    );
    let zh = card(BILINGUAL, Locale::ZhCn);
    assert_eq!(zh.head.title, "octo/app：3 个提交");
    assert_eq!(
        (zh.form[0].label.as_str(), zh.link.title.as_str()),
        ("分支", "查看")
    );
    assert_eq!(
        zh.form[0].value, "main",
        "the payload's own text is kept as sent"
    );
}

#[test]
fn a_mapping_pins_its_own_language_and_plain_texts_stay_as_simple_as_before() {
    let pinned = BILINGUAL.replace(
        "locales: [en, zh-CN]",
        "locales: [en, zh-CN]\nlocale: zh-CN",
    );
    assert_eq!(card(&pinned, Locale::En).form[0].label, "分支");
    let plain = "verify: { unsigned: true }\nrules:\n  - card: { title: 'Push {$.n}', link: { title: View, url: 'https://x' } }\n";
    assert_eq!(card(plain, Locale::ZhCn).head.title, "Push 3");
}

#[test]
fn a_text_missing_in_a_declared_language_is_reported_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("push.yaml");
    let missing = BILINGUAL.replace("{ en: Branch, zh-CN: 分支 }", "{ en: Branch }");
    std::fs::write(&file, &missing).unwrap();
    let (source, diagnostics) = load_file_with(&file, &groups(), &options(Locale::En));
    assert!(source.is_none(), "refused");
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("push.yaml:8:"), "{errors:?}");
    assert!(errors[0].contains("no zh-CN text here"), "{errors:?}");

    // Not declared: the languages the file uses are the ones it must give everywhere.
    let undeclared = missing.replace("locales: [en, zh-CN]\n", "");
    std::fs::write(&file, &undeclared).unwrap();
    let (source, diagnostics) = load_file_with(&file, &groups(), &options(Locale::En));
    assert!(source.is_none(), "{diagnostics:?}");

    // A tag that is no language, and a pinned locale that is none, name what is known.
    std::fs::write(&file, BILINGUAL.replace("zh-CN: 分支", "fr: Branche")).unwrap();
    let (_, diagnostics) = load_file_with(&file, &groups(), &options(Locale::En));
    assert!(
        diagnostics
            .iter()
            .any(|d| d.to_string().contains("en or zh-CN")),
        "{diagnostics:?}"
    );
}

#[test]
fn cards_locale_is_read_from_the_settings_and_an_unknown_one_is_refused_naming_the_known() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fxhook.yaml");
    std::fs::write(&config, "cards:\n  locale: zh-CN\n").unwrap();
    let settings = fxhook::config::Settings::load(Some(&config)).unwrap();
    assert_eq!(settings.cards.locale, Locale::ZhCn);
    std::fs::write(&config, "cards:\n  locale: fr\n").unwrap();
    let err = format!(
        "{:#}",
        fxhook::config::Settings::load(Some(&config)).unwrap_err()
    );
    assert!(err.contains("en or zh-CN"), "{err}");
}

#[test]
fn an_example_states_the_card_in_its_own_language_whatever_cards_locale_says() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("push.json"),
        r#"{"repo":"octo/app","n":3,"branch":"main"}"#,
    )
    .unwrap();
    let file = dir.path().join("push.yaml");
    let yaml = format!(
        "{BILINGUAL}examples:
  - payload: push.json
    expect: {{ title: \"octo/app: 3 commit(s)\" }}
  - payload: push.json
    locale: zh-CN
    expect: {{ title: \"octo/app：3 个提交\" }}
"
    );
    std::fs::write(&file, &yaml).unwrap();
    for configured in [Locale::En, Locale::ZhCn] {
        let mut options = options(configured);
        options.examples = Severity::Error;
        let (source, diagnostics) = load_file_with(&file, &groups(), &options);
        let problems: Vec<_> = diagnostics
            .iter()
            .filter(|d| d.message.contains("example"))
            .collect();
        assert!(
            source.is_some() && problems.is_empty(),
            "{configured:?}: {diagnostics:?}"
        );
    }
    let french = yaml.replace("locale: zh-CN", "locale: fr");
    std::fs::write(&file, &french).unwrap();
    let (_, diagnostics) = load_file_with(&file, &groups(), &options(Locale::En));
    let d = diagnostics
        .iter()
        .find(|d| d.message.contains("fr"))
        .expect("fr is refused");
    let line = french
        .lines()
        .position(|l| l.contains("locale: fr"))
        .unwrap()
        + 1;
    assert_eq!(
        (d.line as usize, d.col, d.severity),
        (line, 13, Severity::Error),
        "{d}"
    );
}
