//! Every payload in `tests/fixtures/`, through its source's shipped mapping, must make a card
//! an on-call engineer can trust — or be ignored with a reason. A card fails when its mapping
//! errs, its title lacks the subject (repository, project, alert), a row is empty or repeated,
//! a text says `null`, a row value is a long run of raw JSON, or its link is a site's front page
//! while the payload carries the event's own page. And the card made from the parts of the
//! payload the request path builds (the source's footprint) is the card of the whole payload.

use std::collections::BTreeMap;

use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::load_file;
use fxhook::verify::{ContentKind, Verifier, Webhook};
use serde_json::Value;

use crate::helpers::repo_file;

/// The request headers a sender puts beside this payload (the event type, named after the
/// file or read from the payload).
fn headers_for(source: &str, file: &str, payload: &Value) -> Vec<(String, String)> {
    let event = file.split('.').next().unwrap_or_default().to_string();
    let one = |name: &str, value: String| vec![(name.to_string(), value)];
    match source {
        "github" => one("X-GitHub-Event", event),
        "gitea" => one("X-Gitea-Event", event),
        "sentry" => one("Sentry-Hook-Resource", event),
        "circleci" => one("circleci-event-type", event),
        "gitlab" => {
            let kind = payload["object_kind"]
                .as_str()
                .or(payload["event_name"].as_str())
                .unwrap_or_default();
            let hook = match kind {
                "push" => "Push Hook",
                "tag_push" => "Tag Push Hook",
                "issue" | "work_item" => "Issue Hook",
                "note" => "Note Hook",
                "merge_request" => "Merge Request Hook",
                "wiki_page" => "Wiki Page Hook",
                "pipeline" => "Pipeline Hook",
                "build" => "Job Hook",
                "deployment" => "Deployment Hook",
                "release" => "Release Hook",
                "feature_flag" => "Feature Flag Hook",
                "emoji" => "Emoji Hook",
                other => panic!("gitlab/{file}: no hook name known for object_kind {other:?}"),
            };
            one("X-Gitlab-Event", hook.to_string())
        }
        "bitbucket" => {
            // Data Center names its event in the payload; Cloud's file names say it.
            let key = payload["eventKey"].as_str().map_or_else(
                || {
                    let stem = file.trim_start_matches("cloud.");
                    let stem = stem.split('.').next().unwrap_or_default();
                    stem.replacen('_', ":", 1)
                },
                str::to_string,
            );
            one("X-Event-Key", key)
        }
        _ => Vec::new(),
    }
}

/// Where each source's payloads name their subject; the title must show one when any is there.
fn subjects(source: &str, payload: &Value) -> Vec<String> {
    let paths: &[&[&str]] = match source {
        "github" | "gitea" => &[
            &["repository", "full_name"],
            &["repository", "name"],
            &["organization", "login"],
        ],
        "gitlab" => &[
            &["project", "path_with_namespace"],
            &["project", "name"],
            &["repository", "name"],
        ],
        "bitbucket" => &[
            &["repository", "full_name"],
            &["repository", "name"],
            &["repository", "slug"],
        ],
        "alertmanager" | "grafana" => &[
            &["commonLabels", "alertname"],
            &["groupLabels", "alertname"],
            &["alerts", "0", "labels", "alertname"],
            &["title"],
        ],
        // A project behind an opaque slug (circleci/<id>/<id>) is named by nothing readable:
        // its workflow's name says what ran.
        "circleci" => &[
            &["project", "name"],
            &["project", "slug"],
            &["workflow", "name"],
        ],
        "jenkins" => &[&["name"], &["display_name"]],
        "sentry" => &[
            &["project_slug"],
            &["project_name"],
            &["data", "issue", "project", "slug"],
            &["data", "event", "project"],
        ],
        _ => &[],
    };
    paths
        .iter()
        .filter_map(|path| {
            let mut v = payload;
            for key in *path {
                v = match key.parse::<usize>() {
                    Ok(i) => v.get(i)?,
                    Err(_) => v.get(*key)?,
                };
            }
            v.as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// Every absolute URL a payload carries.
fn urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            out.push(s.clone())
        }
        Value::Array(items) => items.iter().for_each(|i| urls(i, out)),
        Value::Object(map) => map.values().for_each(|i| urls(i, out)),
        _ => {}
    }
}

/// A URL with no path beyond `/`: a site's front page.
fn is_front_page(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    path.split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .is_empty()
}

/// What is wrong with the card made of `payload`, if anything.
pub fn problems(source: &str, payload: &Value, routed: &Routed) -> Vec<String> {
    let messages = match routed {
        Routed::Ignored { reason } if reason.trim().is_empty() => {
            return vec!["ignored without a reason".into()];
        }
        Routed::Ignored { .. } => return Vec::new(),
        Routed::Failed { rule, reason } => return vec![format!("rule {rule} fails: {reason}")],
        Routed::Rendered { messages, .. } => messages,
    };
    let Some(card) = messages.first().map(|m| &m.composite) else {
        return vec!["rendered no message".into()];
    };
    let mut found = Vec::new();
    let title = &card.head.title;
    let wanted = subjects(source, payload);
    // Compared as a phone shows text: case and runs of white space aside.
    let folded = |t: &str| {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    if !wanted.is_empty() && !wanted.iter().any(|s| folded(title).contains(&folded(s))) {
        found.push(format!("title {title:?} names none of {wanted:?}"));
    }
    let mut texts = vec![
        title.clone(),
        card.link.title.clone(),
        card.link.url.clone(),
    ];
    texts.extend(card.first.as_ref().map(|f| f.content.clone()));
    texts.extend(card.remark.as_ref().map(|f| f.content.clone()));
    let mut seen = std::collections::HashSet::new();
    for row in &card.form {
        if row.label.trim().is_empty() || row.value.trim().is_empty() {
            found.push(format!("empty row {:?}: {:?}", row.label, row.value));
        }
        if !seen.insert((row.label.clone(), row.value.clone())) {
            found.push(format!("repeated row {:?}: {:?}", row.label, row.value));
        }
        let v = row.value.trim_start();
        if row.value.chars().count() > 200 && (v.starts_with('{') || v.starts_with('[')) {
            found.push(format!(
                "row {:?} is raw JSON ({} chars)",
                row.label,
                row.value.len()
            ));
        }
        texts.push(row.label.clone());
        texts.push(row.value.clone());
    }
    for text in &texts {
        // A word `null` outside a URL (`https://null.jsbin.com/…` is a real address).
        let says_null = text
            .split_whitespace()
            .filter(|w| !w.contains("://"))
            .flat_map(|w| w.split(|c: char| !c.is_alphanumeric()))
            .any(|w| w == "null");
        if says_null {
            found.push(format!("says null: {text:?}"));
        }
    }
    let mut carried = Vec::new();
    urls(payload, &mut carried);
    // Pictures (avatars, screenshots) are not pages one opens from a card.
    let is_picture = |u: &str| {
        let path = u.split(['?', '#']).next().unwrap_or(u).to_ascii_lowercase();
        [".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"]
            .iter()
            .any(|ext| path.ends_with(ext))
            || path.contains("avatar")
            || path.contains("gravatar")
    };
    let own_page = carried.iter().any(|u| !is_front_page(u) && !is_picture(u));
    if own_page && is_front_page(&card.link.url) {
        found.push(format!(
            "links to the front page {} while the payload carries the event's own page",
            card.link.url
        ));
    }
    found
}

#[test]
fn every_fixture_makes_a_card_an_on_call_engineer_can_trust_or_is_ignored_with_a_reason() {
    let groups = Groups::new(&BTreeMap::from([("default".into(), vec!["1000".into()])])).unwrap();
    let mut report = Vec::new();
    let mut checked = 0;
    // Every directory of tests/fixtures/ is a source, read by the shipped mapping of its name.
    let mut sources: Vec<String> = std::fs::read_dir(repo_file("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    sources.sort();
    for source in &sources {
        let source = source.as_str();
        let (mapping, diagnostics) =
            load_file(&repo_file(&format!("mappings/{source}.yaml")), &groups);
        let mapping = mapping.unwrap_or_else(|| panic!("{source}.yaml: {diagnostics:?}"));
        let mut files: Vec<_> = std::fs::read_dir(repo_file(&format!("tests/fixtures/{source}")))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            let body = std::fs::read(&path).unwrap();
            let payload: Value = serde_json::from_slice(&body).unwrap();
            let mut headers = actix_web::http::header::HeaderMap::new();
            for (k, v) in headers_for(source, &file, &payload) {
                headers.insert(
                    actix_web::http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    actix_web::http::header::HeaderValue::from_str(&v).unwrap(),
                );
            }
            let webhook = Webhook {
                headers,
                body: body.into(),
                content: ContentKind::Json,
                query: String::new(),
                received_at: std::time::SystemTime::now(),
            };
            let verified = Verifier::unsigned().verify(webhook).unwrap();
            // The request path builds only the parts the source's paths read: its cards must
            // be exactly those of the whole payload.
            let pruned = verified
                .clone()
                .parse_with(|b| mapping.footprint.parse(b))
                .unwrap();
            let verified = verified.parse().unwrap();
            let render = |payload| {
                fxhook::pipeline::render(
                    &mapping.mapping,
                    payload,
                    &groups,
                    chrono_tz::Asia::Shanghai,
                )
            };
            let routed = render(&verified);
            if render(&pruned) != routed {
                report.push(format!(
                    "{source}/{file}: the card of the parts read ({:?}) differs from the whole payload's",
                    mapping.footprint
                ));
            }
            checked += 1;
            for p in problems(source, &payload, &routed) {
                report.push(format!("{source}/{file}: {p}"));
            }
        }
    }
    assert!(checked >= 60, "only {checked} fixtures");
    assert!(
        report.is_empty(),
        "{} problems:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn the_checker_itself_finds_what_it_looks_for() {
    let front = |u: &str| is_front_page(u);
    assert!(
        front("https://sentry.io/")
            && front("https://sentry.io")
            && !front("https://sentry.io/x/1")
    );
    let payload: Value = serde_json::json!({
        "repository": {"full_name": "octo/repo"},
        "html_url": "https://github.com/octo/repo/pull/1"
    });
    let card = serde_json::json!({
        "toUser": ["1"], "msgType": "composite",
        "composite": {
            "head": {"title": "Something happened"},
            "form": [
                {"label": "A", "value": "null"},
                {"label": "B", "value": " "},
                {"label": "C", "value": "x"},
                {"label": "C", "value": "x"},
                {"label": "D", "value": format!("{{{}}}", "\"k\": 1, ".repeat(40))}
            ],
            "link": {"title": "Open", "url": "https://github.com/"}
        }
    });
    let routed = Routed::Rendered {
        rule: "r".into(),
        messages: vec![serde_json::from_value(card).unwrap()],
        storm: Default::default(),
    };
    let found = problems("github", &payload, &routed);
    for want in [
        "names none",
        "says null",
        "empty row",
        "repeated row",
        "raw JSON",
        "front page",
    ] {
        assert!(
            found.iter().any(|p| p.contains(want)),
            "{want} not found in {found:#?}"
        );
    }
}
