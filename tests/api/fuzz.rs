//! Property tests: arbitrary header values, bodies, query strings, secrets and clocks thrown at
//! every preset's verification, and arbitrary JSON thrown at every shipped mapping file. None
//! may panic (proptest reports a panic as a failure, with the shrunk input); a scheme with no
//! secret never accepts; a payload that parses always maps to an outcome.
//!
//! Case counts are kept small so the whole file runs in a few seconds; raise `PROPTEST_CASES`
//! locally for a longer hunt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use fxhook::route::Groups;
use fxhook::source::{Source, load_file};
use fxhook::verify::presets::PRESETS;
use fxhook::verify::spec::VerifySpec;
use fxhook::verify::{ContentKind, Scheme, Secret, Verifier, Webhook};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Every header some preset reads, plus a few it does not.
const HEADERS: &[&str] = &[
    "X-Hub-Signature-256",
    "X-Hub-Signature",
    "X-Gitlab-Token",
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Gogs-Signature",
    "circleci-signature",
    "Sentry-Hook-Signature",
    "X-Grafana-Alerting-Signature",
    "X-Grafana-Alert-Signature",
    "X-Ts",
    "X-Id",
    "X-Sig",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "Stripe-Signature",
    "X-Shopify-Hmac-Sha256",
    "X-Webhook-Token",
    "Authorization",
    "Content-Type",
    "X-Unrelated",
];

/// `cases` cases, unless `PROPTEST_CASES` asks for another number: `Config::default()` reads
/// the variable, and an explicit count would override it.
fn config(cases: u32) -> Config {
    let default = Config::default();
    let asked = std::env::var_os("PROPTEST_CASES").is_some();
    Config {
        cases: if asked { default.cases } else { cases },
        // Regressions are reported in the failure message; no file is written into tests/.
        failure_persistence: None,
        ..default
    }
}

/// Every preset, built with the default `verify:` section and with the options it takes.
fn schemes() -> Vec<(String, Arc<dyn Scheme>)> {
    let mut specs: Vec<(&str, VerifySpec)> = PRESETS
        .iter()
        .filter(|p| p.name != "hmac")
        .map(|p| (p.name, VerifySpec::default()))
        .collect();
    specs.extend([
        (
            "github",
            VerifySpec {
                legacy_sha1: true,
                ..VerifySpec::default()
            },
        ),
        (
            "grafana",
            VerifySpec {
                header: Some("X-Sig".into()),
                timestamp_header: Some("X-Ts".into()),
                ..VerifySpec::default()
            },
        ),
        (
            "jenkins",
            VerifySpec {
                header: Some("X-Sig".into()),
                ..VerifySpec::default()
            },
        ),
        (
            "hmac",
            VerifySpec {
                header: Some("X-Sig".into()),
                ..VerifySpec::default()
            },
        ),
        (
            "hmac",
            VerifySpec {
                header: Some("X-Sig".into()),
                algorithm: Some(fxhook::verify::spec::Algorithm::Sha512),
                encoding: Some(fxhook::verify::spec::Encoding::Base64),
                prefix: Some("v1=".into()),
                signed: Some("{id}.{timestamp}.{body}".into()),
                timestamp_header: Some("X-Ts".into()),
                id_header: Some("X-Id".into()),
                tolerance: Some(Duration::from_secs(1)),
                ..VerifySpec::default()
            },
        ),
    ]);
    specs
        .into_iter()
        .map(|(name, spec)| {
            let preset = fxhook::verify::presets::find(name).unwrap();
            let scheme = (preset.build)(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
            (format!("{name} {spec:?}"), scheme)
        })
        .collect()
}

/// Bytes a header value may hold (no control characters but tab), including non-UTF-8 ones.
fn raw_header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..48)
}

/// Header values shaped like the real ones, so the fuzzer gets past the first checks.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let hex = "[0-9a-fA-F]{0,130}";
    let b64 = "[A-Za-z0-9+/]{0,90}={0,2}";
    prop_oneof![
        raw_header_value(),
        ("(sha256=|sha1=|v0=|v1=|sha512=|)", hex).prop_map(|(p, h)| format!("{p}{h}").into_bytes()),
        ("(v1,|v1a,|v2,|)", b64, "( v1,[A-Za-z0-9+/=]{0,44})?")
            .prop_map(|(p, b, more)| format!("{p}{b}{more}").into_bytes()),
        "t=-?[0-9]{0,20}(,v1=[0-9a-f]{0,64}){0,3}(,v0=x)?".prop_map(String::into_bytes),
        "v1=[0-9a-f]{0,64}(, ?v1=[0-9a-f]{0,64}){0,3}".prop_map(String::into_bytes),
        "[-+ ]?[0-9]{0,22}".prop_map(String::into_bytes),
        "(Bearer|Basic|bearer|Token|) ?[A-Za-z0-9+/=:._-]{0,40}".prop_map(String::into_bytes),
        "(application/json|application/x-www-form-urlencoded|text/plain)"
            .prop_map(String::into_bytes),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\{\"[a-z]{0,8}\": ?(-?[0-9]{1,5}|\"[^\"]{0,20}\"|null|true)\\}"
            .prop_map(String::into_bytes),
        "payload=[A-Za-z0-9%{}\":,+=&]{0,60}".prop_map(String::into_bytes),
    ]
}

/// Secrets as admins write them: plain, `whsec_` base64, `user:password`, or anything.
fn secrets() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z0-9+/=:._-]{0,40}",
            "whsec_[A-Za-z0-9+/]{0,43}={0,2}",
            ".{0,20}",
        ],
        0..3,
    )
}

/// A request as the receiver could build it from an arbitrary HTTP request.
fn webhook() -> impl Strategy<Value = Webhook> {
    let header = (prop::sample::select(HEADERS), header_value());
    (
        prop::collection::vec(header, 0..8),
        body(),
        any::<bool>(),
        "[a-z]{0,6}(=[A-Za-z0-9%+:._-]{0,30})?(&token=[A-Za-z0-9%+:._-]{0,30})?",
        0u64..=(1 << 40),
    )
        .prop_map(|(headers, body, form, query, now)| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    map.append(name, value);
                }
            }
            Webhook {
                headers: map,
                body: body.into(),
                content: if form {
                    ContentKind::Form
                } else {
                    ContentKind::Json
                },
                query,
                received_at: UNIX_EPOCH + Duration::from_secs(now),
            }
        })
}

#[test]
fn no_request_makes_any_preset_panic_and_no_scheme_accepts_without_a_secret() {
    for (name, scheme) in schemes() {
        let mut runner = TestRunner::new(config(128));
        let result = runner.run(&(webhook(), secrets()), |(hook, secrets)| {
            let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(s, "fuzz")).collect();
            let _ = scheme.check(&hook, &secrets, hook.received_at);
            // The clock is arbitrary too: a request far from "now" must be refused, not panic.
            let _ = scheme.check(&hook, &secrets, SystemTime::now());
            prop_assert!(
                scheme.check(&hook, &[], hook.received_at).is_err(),
                "accepted with no secret"
            );
            let verifier = Verifier::new(scheme.clone(), secrets);
            if let Ok(verified) = verifier.verify(hook) {
                let _ = verified.parse();
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mappings
// ---------------------------------------------------------------------------------------------

fn mapping_files() -> Vec<PathBuf> {
    let dir = crate::helpers::repo_file("mappings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no mapping files in {}", dir.display());
    files
}

/// Loads a shipped mapping, creating (with one recipient each) every group it names.
fn load(file: &Path) -> (Source, Groups) {
    let mut config: BTreeMap<String, Vec<String>> = BTreeMap::new();
    config.insert("default".into(), vec!["1000".into()]);
    loop {
        let groups = Groups::new(&config).unwrap();
        let (source, diagnostics) = load_file(file, &groups);
        if let Some(source) = source {
            return (source, groups);
        }
        let unknown: Vec<String> = diagnostics
            .iter()
            .filter_map(|d| {
                let text = d.to_string();
                let rest = text.split("unknown group \"").nth(1)?;
                Some(rest.split('"').next()?.to_string())
            })
            .filter(|g| !config.contains_key(g))
            .collect();
        assert!(
            !unknown.is_empty(),
            "{} does not load: {diagnostics:?}",
            file.display()
        );
        for g in unknown {
            config.insert(g, vec!["1001".into()]);
        }
    }
}

/// What a mapping's `when:` conditions test, so generated requests reach its rules: the
/// headers with the values they are compared with, the `match:` paths (simple `$.a.b` ones)
/// with theirs, and every word of the file for keys and strings.
struct Conditions {
    headers: Vec<(String, String)>,
    matches: Vec<(Vec<String>, String)>,
    words: Vec<String>,
}

fn conditions(file: &Path) -> Conditions {
    fn texts(v: &Value) -> Vec<String> {
        match v {
            Value::Array(items) => items.iter().flat_map(texts).collect(),
            Value::String(s) => vec![s.clone()],
            Value::Null => vec![],
            other => vec![other.to_string()],
        }
    }
    fn walk(v: &Value, found: &mut Conditions) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("header", Value::Object(h)) => {
                            for (name, values) in h {
                                for text in texts(values) {
                                    found.headers.push((name.clone(), text));
                                }
                            }
                        }
                        ("match", Value::Object(m)) => {
                            for (path, values) in m {
                                let Some(steps) = path.strip_prefix("$.") else {
                                    continue;
                                };
                                let steps: Vec<String> =
                                    steps.split('.').map(String::from).collect();
                                if steps
                                    .iter()
                                    .any(|s| s.is_empty() || s.contains(['[', '*', '?']))
                                {
                                    continue;
                                }
                                for text in texts(values) {
                                    found.matches.push((steps.clone(), text));
                                }
                            }
                        }
                        _ => walk(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(file).unwrap();
    let yaml: Value = serde_saphyr::from_str(&text).unwrap();
    let mut found = Conditions {
        headers: Vec::new(),
        matches: Vec::new(),
        words: text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .filter(|w| !w.is_empty() && w.len() <= 40)
            .map(str::to_string)
            .collect(),
    };
    walk(&yaml, &mut found);
    found.headers.push(("X-Unrelated".into(), "x".into()));
    found.matches.push((vec!["unrelated".into()], "x".into()));
    found.words.extend(
        [
            "true",
            "false",
            "0",
            "-1",
            "",
            "0001-01-01T00:00:00Z",
            "2024-02-29T23:59:60+08:00",
            "9999-12-31T23:59:59Z",
            "1700000000",
            "refs/heads/main",
            "{$.a}",
            "'",
            "\u{2713} \u{1d11e}",
            "line1\nline2",
        ]
        .map(String::from),
    );
    found.words.sort();
    found.words.dedup();
    found
}

/// Real payloads to start from: the JSON files of tests/fixtures under 8 KiB. (Larger ones are
/// mapped by the mapping tests; here they would only slow each case down, as rules with `$..`
/// filters take time in proportion to the payload.)
fn seeds() -> Vec<Value> {
    fn collect(dir: &Path, out: &mut Vec<Value>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                collect(&path, out);
            } else if path.extension().is_some_and(|e| e == "json")
                && std::fs::metadata(&path).unwrap().len() < 8 * 1024
            {
                out.extend(serde_json::from_slice(&std::fs::read(&path).unwrap()).ok());
            }
        }
    }
    let mut out = Vec::new();
    collect(&crate::helpers::repo_file("tests/fixtures"), &mut out);
    out
}

/// Arbitrary JSON whose keys and strings mostly come from `words`.
fn json(words: Vec<String>) -> impl Strategy<Value = Value> {
    let word = prop::sample::select(words);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word.clone().prop_map(Value::String),
        ".{0,30}".prop_map(Value::String),
        "[a-z ]{200,600}".prop_map(Value::String),
    ];
    let key = prop_oneof![3 => word, 1 => "[a-zA-Z_.$@\\[\\]*]{0,8}"];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..10)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// One change to a payload, at a place chosen by a list of indices (one per level).
#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    /// The value as a JSON string (`42` becomes `"42"`, an object its text).
    Stringify,
    /// An array repeated to hundreds of elements (lists, `max:`, the 500-recipient split).
    Grow(usize),
}

fn edit(value: &mut Value, path: &[prop::sample::Index], change: &Edit) {
    let Some((index, rest)) = path.split_first() else {
        return apply(value, change);
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(index.index(map.len())).unwrap().clone();
            if rest.is_empty() && matches!(change, Edit::Remove) {
                map.remove(&key);
            } else {
                edit(map.get_mut(&key).unwrap(), rest, change);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = index.index(items.len());
            if rest.is_empty() && matches!(change, Edit::Remove) {
                items.remove(i);
            } else {
                edit(&mut items[i], rest, change);
            }
        }
        _ => apply(value, change),
    }
}

fn apply(value: &mut Value, change: &Edit) {
    match change {
        Edit::Replace(v) => *value = v.clone(),
        Edit::Remove => *value = Value::Null,
        Edit::Stringify => *value = Value::String(value.to_string()),
        Edit::Grow(times) => {
            if let Value::Array(items) = value {
                let copy = items.clone();
                for _ in 0..*times {
                    items.extend(copy.iter().cloned());
                }
            }
        }
    }
}

/// Sets `$.a.b…` to `text` (as a string, or as the number or boolean it spells).
fn set(value: &mut Value, steps: &[String], text: &str, typed: bool) {
    let Some((first, rest)) = steps.split_first() else {
        *value = match serde_json::from_str::<Value>(text) {
            Ok(v) if typed && !v.is_string() => v,
            _ => Value::String(text.to_string()),
        };
        return;
    };
    if !value.is_object() {
        *value = Value::Object(Default::default());
    }
    let child = value
        .as_object_mut()
        .unwrap()
        .entry(first.clone())
        .or_insert(Value::Null);
    set(child, rest, text, typed);
}

/// A request for a mapping: a real payload (or an arbitrary one), steered to a rule by the
/// mapping's own header and `match:` values, then edited at random places.
fn mapping_request(
    seeds: Arc<Vec<Value>>,
    found: &Conditions,
) -> impl Strategy<Value = (Value, Vec<(String, String)>)> {
    let edit_strategy = prop_oneof![
        4 => json(found.words.clone()).prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        1 => Just(Edit::Stringify),
        1 => (1usize..20).prop_map(Edit::Grow),
    ];
    let edits = prop::collection::vec(
        (
            prop::collection::vec(any::<prop::sample::Index>(), 0..7),
            edit_strategy,
        ),
        0..5,
    );
    let start = prop_oneof![
        4 => any::<prop::sample::Index>().prop_map(move |i| seeds[i.index(seeds.len())].clone()),
        1 => json(found.words.clone()),
    ];
    let headers = prop::collection::vec(prop::sample::select(found.headers.clone()), 1..3);
    let matches = prop::collection::vec(
        (prop::sample::select(found.matches.clone()), any::<bool>()),
        0..3,
    );
    (start, headers, matches, edits).prop_map(|(mut payload, headers, matches, edits)| {
        for ((steps, text), typed) in matches {
            set(&mut payload, &steps, &text, typed);
        }
        for (path, change) in &edits {
            edit(&mut payload, path, change);
        }
        (payload, headers)
    })
}

#[test]
fn no_payload_makes_any_shipped_mapping_panic() {
    let seeds = Arc::new(seeds());
    for file in mapping_files() {
        let (source, groups) = load(&file);
        let found = conditions(&file);
        let strategy = (
            mapping_request(seeds.clone(), &found),
            any::<bool>(),
            any::<bool>(),
        );
        let mut runner = TestRunner::new(config(96));
        let result = runner.run(&strategy, |((payload, headers), as_form, in_utc)| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value),
                ) {
                    map.append(n, v);
                }
            }
            let text = payload.to_string();
            let (body, content) = if as_form {
                let form = serde_urlencoded::to_string([("payload", &text)]).unwrap();
                (form.into_bytes(), ContentKind::Form)
            } else {
                (text.into_bytes(), ContentKind::Json)
            };
            let webhook = Webhook {
                headers: map,
                body: body.into(),
                content,
                query: String::new(),
                received_at: SystemTime::now(),
            };
            let parsed = Verifier::unsigned()
                .verify(webhook)
                .map_err(|e| TestCaseError::fail(format!("an unsigned source refused: {e}")))?
                .parse()
                .map_err(|e| TestCaseError::fail(format!("a JSON payload did not parse: {e}")))?;
            let tz = if in_utc {
                chrono_tz::UTC
            } else {
                chrono_tz::Asia::Shanghai
            };
            let _ = fxhook::pipeline::render(&source.mapping, &parsed, &groups, tz);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{}: {e}", file.display());
        }
    }
}

#[test]
fn no_body_makes_payload_parsing_panic() {
    let mut runner = TestRunner::new(config(512));
    let result = runner.run(&(body(), any::<bool>()), |(body, form)| {
        let webhook = Webhook {
            headers: HeaderMap::new(),
            body: body.into(),
            content: if form {
                ContentKind::Form
            } else {
                ContentKind::Json
            },
            query: String::new(),
            received_at: SystemTime::now(),
        };
        let verified = Verifier::unsigned()
            .verify(webhook)
            .expect("an unsigned source accepts every request");
        let _ = verified.parse();
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
