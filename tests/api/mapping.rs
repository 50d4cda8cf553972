//! The mapping language on real payloads, and `file:line:col` for every kind of broken file.

use std::path::Path;

use fxhook::card::SendBody;
use fxhook::pipeline::Routed;
use fxhook::source::load_file;

use crate::cards::{assert_valid_composite, groups, load, map};
use crate::helpers::repo_file;

fn fixture_event(path: &Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.split('.').next().unwrap().to_string()
}

#[test]
fn every_vendored_github_payload_renders_a_valid_card_or_is_ignored_with_a_reason() {
    let groups = groups(&[("default", &["1000", "1001", "1000"])]);
    let source = load(&repo_file("mappings/github.yaml"), &groups);
    let dir = repo_file("tests/fixtures/github");
    let mut rendered = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let event = fixture_event(&path);
        let body = std::fs::read(&path).unwrap();
        match map(&source, &groups, &[("X-GitHub-Event", &event)], &body) {
            Routed::Rendered { messages, .. } => {
                rendered += 1;
                assert_eq!(messages.len(), 1);
                assert_eq!(messages[0].to_user, vec!["1000", "1001"]);
                assert_valid_composite(&messages[0]);
            }
            Routed::Ignored { reason } => assert!(!reason.is_empty()),
            Routed::Failed { reason, .. } => panic!("{}: {reason}", path.display()),
        }
    }
    assert!(rendered >= 15, "only {rendered} fixtures rendered");
}

#[test]
fn every_example_of_octokit_webhooks_examples_renders_or_is_ignored_never_an_error() {
    let index =
        repo_file("tests/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&index).unwrap_or_else(|_| {
        panic!(
            "missing test dependency: the npm package @octokit/webhooks-examples ({}); run scripts/test.sh, which installs it",
            index.display()
        )
    });
    let events: serde_json::Value = serde_json::from_str(&text).unwrap();
    let groups = groups(&[("default", &["1000"])]);
    let source = load(&repo_file("mappings/github.yaml"), &groups);
    let (mut rendered, mut ignored) = (0, 0);
    for event in events.as_array().unwrap() {
        let name = event["name"].as_str().unwrap();
        for example in event["examples"].as_array().unwrap() {
            let body = serde_json::to_vec(example).unwrap();
            match map(&source, &groups, &[("X-GitHub-Event", name)], &body) {
                Routed::Rendered { messages, .. } => {
                    rendered += 1;
                    messages.iter().for_each(assert_valid_composite);
                }
                Routed::Ignored { .. } => ignored += 1,
                Routed::Failed { reason, rule } => {
                    panic!("{name} {:?}: rule {rule}: {reason}", example["action"])
                }
            }
        }
    }
    assert!(
        rendered >= 30 && ignored >= 30,
        "rendered {rendered}, ignored {ignored}"
    );
}

#[test]
fn every_push_renders_a_card_including_branch_and_tag_deletions() {
    let groups = groups(&[("default", &["1000"])]);
    let source = load(&repo_file("mappings/github.yaml"), &groups);
    for i in 0..7 {
        let body =
            std::fs::read(repo_file(&format!("tests/fixtures/github/push.{i}.json"))).unwrap();
        let push = serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        // A tag pushed and a branch created each say so (push.0 is a tag, push.4 and push.5
        // create master with a commit).
        let expected = if push["deleted"] == true {
            "push-delete"
        } else if push["ref"].as_str().unwrap().starts_with("refs/tags/") {
            "push-tag"
        } else if push["created"] == true {
            "push-new-branch"
        } else {
            "push"
        };
        match map(&source, &groups, &[("X-GitHub-Event", "push")], &body) {
            Routed::Rendered { rule, messages, .. } => {
                assert_eq!(rule, expected, "push.{i}");
                assert_valid_composite(&messages[0]);
            }
            other => panic!("push.{i}: {other:?}"),
        }
    }
}

#[test]
fn a_push_with_many_commits_shows_each_first_line_capped_with_a_more_row() {
    let groups = groups(&[("default", &["1000"])]);
    let source = load(&repo_file("mappings/github.yaml"), &groups);
    let commits: Vec<_> = (0..15)
        .map(|i| serde_json::json!({"id": format!("{i:040}"), "message": format!("commit {i}\n\nbody")}))
        .collect();
    let body = serde_json::json!({
        "ref": "refs/heads/main", "deleted": false, "forced": false, "compare": "https://x/compare",
        "commits": commits, "pusher": {"name": "ada"}, "repository": {"full_name": "o/r", "html_url": "https://x"}
    });
    let Routed::Rendered { messages, .. } = map(
        &source,
        &groups,
        &[("X-GitHub-Event", "push")],
        body.to_string().as_bytes(),
    ) else {
        panic!("not rendered")
    };
    let form = &messages[0].composite.form;
    assert_eq!(form.len(), 11);
    assert_eq!(form[0].label, "0000000");
    assert_eq!(form[0].value, "commit 0");
    assert_eq!(
        (form[10].label.as_str(), form[10].value.as_str()),
        ("…", "+5 more")
    );
    assert_eq!(
        messages[0].composite.head.title,
        "o/r: 15 commit(s) to main"
    );
}

#[test]
fn the_real_alertmanager_webhook_makes_one_card_with_a_row_per_alert_and_the_generator_link() {
    let groups = groups(&[("default", &["1000"])]);
    let source = load(&repo_file("mappings/alertmanager.yaml"), &groups);
    let body = std::fs::read(repo_file(
        "tests/fixtures/alertmanager-0.25-firing.body.json",
    ))
    .unwrap();
    let Routed::Rendered { messages, .. } = map(&source, &groups, &[], &body) else {
        panic!("not rendered")
    };
    let card = &messages[0].composite;
    assert_eq!(card.head.title, "[FIRING:1] WebhookGatewayPerfTest WARNING");
    assert_eq!(card.form[0].label, "WebhookGatewayPerfTest gw-1:9000");
    assert_eq!(
        card.form[0].value,
        "firing: Synthetic alert fired to capture a real Alertmanager webhook"
    );
    assert_eq!(card.link.url, "http://127.0.0.1:9090/graph?g0.expr=up");
    assert_valid_composite(&messages[0]);
}

#[test]
fn an_alert_without_a_generator_links_to_the_alertmanager() {
    let groups = groups(&[("default", &["1000"])]);
    let source = load(&repo_file("mappings/alertmanager.yaml"), &groups);
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_file(
            "tests/fixtures/alertmanager-0.25-firing.body.json",
        ))
        .unwrap(),
    )
    .unwrap();
    body["alerts"][0]["generatorURL"] = "".into();
    // A resolved group, as Alertmanager sends one: every alert in it resolved (the title
    // counts the alerts by their own status).
    body["alerts"][0]["status"] = "resolved".into();
    body["status"] = "resolved".into();
    let Routed::Rendered { messages, .. } = map(&source, &groups, &[], body.to_string().as_bytes())
    else {
        panic!()
    };
    assert_eq!(messages[0].composite.link.url, "http://vm:9093");
    assert!(messages[0].composite.head.title.starts_with("[RESOLVED:1]"));
}

fn write_mapping(dir: &Path, yaml: &str) -> std::path::PathBuf {
    let path = dir.join("src1.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn first_error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_mapping(dir.path(), yaml);
    let (_, diagnostics) = load_file(&path, &groups(&[("ops", &["1"])]));
    let error = diagnostics
        .iter()
        .find(|d| d.severity == fxhook::diagnostic::Severity::Error)
        .unwrap_or_else(|| panic!("no error in {diagnostics:?}"));
    format!("{}:{}: {}", error.line, error.col, error.message)
}

const HEAD: &str = "verify: { unsigned: true }\nrules:\n";

#[test]
fn bad_yaml_is_reported_at_its_line_and_column() {
    let e = first_error(&format!("{HEAD}  - name: x\n    card: {{ title: \"a\n"));
    assert!(e.starts_with("4:"), "{e}");
}

#[test]
fn an_unknown_key_is_reported_where_it_is_written() {
    let e = first_error(&format!(
        "{HEAD}  - name: x\n    card:\n      titel: T\n      link: {{ title: a, url: \"https://b\" }}\n"
    ));
    assert!(e.starts_with("5:7: unknown field `titel`"), "{e}");
}

#[test]
fn a_bad_jsonpath_inside_a_template_points_at_the_bad_character() {
    let e = first_error(&format!(
        "{HEAD}  - card:\n      title: \"Push {{$.a[?@.b ==]}} done\"\n      link: {{ title: a, url: \"https://b\" }}\n"
    ));
    assert!(
        e.starts_with("4:32: invalid JSONPath: unexpected ']'"),
        "{e}"
    );
}

#[test]
fn an_unknown_filter_points_at_its_name() {
    let e = first_error(&format!(
        "{HEAD}  - card:\n      title: \"{{$.a | uper}}\"\n      link: {{ title: a, url: \"https://b\" }}\n"
    ));
    assert!(e.starts_with("4:22: unknown filter 'uper'"), "{e}");
}

#[test]
fn an_unknown_group_is_reported_at_the_recipient() {
    let e = first_error(&format!(
        "{HEAD}  - to: [ops, devs]\n    card:\n      title: T\n      link: {{ title: a, url: \"https://b\" }}\n"
    ));
    assert!(e.starts_with("3:15: unknown group \"devs\""), "{e}");
}

#[test]
fn a_bad_match_path_is_reported_at_the_key() {
    let e = first_error(&format!(
        "{HEAD}  - when:\n      match: {{ \"$.a[?@ ==]\": x }}\n    ignore: true\n"
    ));
    assert!(
        e.starts_with("4:26: invalid JSONPath: unexpected ']'"),
        "{e}"
    );
}

#[test]
fn a_header_condition_may_name_alternatives_and_tests_the_first_one_present() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_mapping(
        dir.path(),
        &format!(
            "{HEAD}  - when: {{ header: {{ \"X-A-Event|X-B-Event\": push }} }}\n    card: {{ title: T, link: {{ title: a, url: \"https://b\" }} }}\n"
        ),
    );
    let groups = groups(&[("default", &["1"])]);
    let source = load(&path, &groups);
    let rendered = |headers: &[(&str, &str)]| {
        matches!(
            map(&source, &groups, headers, b"{}"),
            Routed::Rendered { .. }
        )
    };
    assert!(rendered(&[("X-A-Event", "push")]));
    assert!(rendered(&[("X-B-Event", "push")]));
    assert!(!rendered(&[("X-A-Event", "issues"), ("X-B-Event", "push")]));
    assert!(!rendered(&[]));

    let e = first_error(&format!(
        "{HEAD}  - when: {{ header: {{ \"X-A|bad header\": push }} }}\n    ignore: true\n"
    ));
    assert!(
        e.starts_with("3:28: \"bad header\" is not a valid header name"),
        "{e}"
    );
}

#[test]
fn recipients_come_from_groups_ids_and_payload_lookups_with_a_fallback_and_no_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_mapping(
        dir.path(),
        &format!(
            "{HEAD}  - to: [ops, 'id:42', '{{$.team}}']\n    fallback: oncall\n    card:\n      title: T\n      link: {{ title: a, url: \"https://b\" }}\n"
        ),
    );
    let groups = groups(&[
        ("ops", &["1", "2"]),
        ("db", &["2", "3"]),
        ("oncall", &["9"]),
    ]);
    let source = load(&path, &groups);
    let to = |body: &str| match map(&source, &groups, &[], body.as_bytes()) {
        Routed::Rendered { messages, .. } => messages[0].to_user.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(to(r#"{"team":"db"}"#), vec!["1", "2", "42", "3"]);
    assert_eq!(to(r#"{"team":"nobody"}"#), vec!["1", "2", "42", "9"]);
}

#[actix_rt::test]
async fn a_signed_push_through_the_shipped_mapping_is_stored_as_a_valid_composite_body() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        crate::helpers::shipped_mapping_with_secret_file(dir.path(), "github", "github", "e2e");
    let app = crate::helpers::spawn_app(crate::helpers::Options {
        mappings: vec![("github".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let body = std::fs::read(repo_file("tests/fixtures/github/push.4.json")).unwrap();
    let sig = format!(
        "sha256={}",
        crate::helpers::python_hmac_hex("sha256", "e2e", &body)
    );
    let res = app
        .post_hook(
            "github",
            body,
            &[
                ("X-Hub-Signature-256", sig),
                ("X-GitHub-Event", "push".into()),
            ],
        )
        .await;
    assert_eq!(res.status(), 202);
    let stored = app.message_bodies().remove(0);
    let body: SendBody = serde_json::from_value(stored).unwrap();
    assert_valid_composite(&body);
    assert_eq!(
        body.composite.head.title,
        "Codertocat/Hello-World: 1 commit(s) to master"
    );
}

#[test]
fn check_fails_on_a_wrong_example_at_its_position_and_serving_only_warns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), r#"{"n": 7}"#).unwrap();
    std::fs::write(
        dir.path().join("ex.yaml"),
        "verify: { unsigned: true }\nrules:\n  - card: { title: \"N {$.n}\", link: { title: a, url: 'https://x' } }\nexamples:\n  - payload: p.json\n    expect: { title: N 7 }\n  - payload: p.json\n    expect: { title: N 8, status: rendered }\n",
    )
    .unwrap();
    let groups = groups(&[("default", &["1"])]);
    let limits = fxhook::card::CardLimits::default();
    let checked = fxhook::source::load_dir_with(
        dir.path(),
        &groups,
        &fxhook::source::LoadOptions {
            limits: limits.clone(),
            examples: fxhook::diagnostic::Severity::Error,
            ..Default::default()
        },
    )
    .unwrap();
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == fxhook::diagnostic::Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].ends_with("ex.yaml:7:5: example 2: title: expected \"N 8\", got \"N 7\""),
        "{}",
        errors[0]
    );
    assert!(checked.sources.is_empty());

    let served = fxhook::source::load_dir_with(
        dir.path(),
        &groups,
        &fxhook::source::LoadOptions {
            limits: limits.clone(),
            examples: fxhook::diagnostic::Severity::Warning,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        served.sources.contains_key("ex"),
        "a failing example never blocks an otherwise valid file"
    );
    assert!(
        served
            .diagnostics
            .iter()
            .any(|d| d.to_string().contains("warning: example 2"))
    );
}

#[test]
fn a_storm_of_500_alerts_in_one_webhook_makes_one_card_that_fits() {
    let groups = groups(&[("default", &["1000"])]);
    let source = load(&repo_file("mappings/alertmanager.yaml"), &groups);
    let mut body: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo_file(
            "tests/fixtures/alertmanager-0.25-firing.body.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let alert = body["alerts"][0].clone();
    body["alerts"] = (0..500)
        .map(|i| {
            let mut a = alert.clone();
            a["labels"]["instance"] = format!("节点-{i}:9100").into();
            a["annotations"]["summary"] =
                format!("第{i}号实例延迟过高 😱 {}", "详细说明".repeat(40)).into();
            a
        })
        .collect();
    let Routed::Rendered { messages, .. } = map(&source, &groups, &[], body.to_string().as_bytes())
    else {
        panic!()
    };
    let card = &messages[0].composite;
    assert!(
        card.head.title.starts_with("[FIRING:500]"),
        "{}",
        card.head.title
    );
    assert!(card.form.len() <= 20);
    let more = card
        .form
        .iter()
        .find(|r| r.label == "…")
        .expect("a +N more row");
    assert!(
        more.value.starts_with('+') && more.value.ends_with(" more"),
        "{}",
        more.value
    );
    assert!(serde_json::to_string(card).unwrap().len() <= 4096);
    assert!(card.form.iter().all(|r| r.value.chars().count() <= 256));
    assert_valid_composite(&messages[0]);
}
