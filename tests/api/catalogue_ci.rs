//! Issue 16: the built-in mappings of Sentry, Jenkins and CircleCI and the generic one, on real
//! payloads found in the senders' docs and in other receivers' test suites
//! (`tests/fixtures/<sender>/README.md` names each one's source): links to the event's own page,
//! titles that name their subject and keep it, no empty or meaningless rows.
//!
//! The helpers (`Sender`, `fixture`, …) are those of `catalogue_ops.rs`.

use serde_json::{Value, json};

use crate::catalogue_ops::{Card, Sender, bytes, fixture, fixture_json};
use crate::helpers::repo_file;

const ISSUE: (&str, &str) = ("Sentry-Hook-Resource", "issue");

/// The card of a Sentry issue delivery.
fn sentry_issue(body: &Value) -> Card {
    Sender::shipped("sentry").card(&[ISSUE], &bytes(body))
}

/// The shipped jenkins.yaml with its jenkins_url set, as an admin would: `url_join('')` in the
/// link written `url_join('<url>')`.
fn jenkins_with_url(url: &str) -> Sender {
    let shipped = std::fs::read_to_string(repo_file("mappings/jenkins.yaml")).unwrap();
    assert_eq!(
        shipped.matches("url_join('')").count(),
        1,
        "jenkins.yaml writes jenkins_url once, empty"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jenkins.yaml");
    std::fs::write(
        &path,
        shipped.replace("url_join('')", &format!("url_join('{url}')")),
    )
    .unwrap();
    Sender::from_file(&path)
}

/// A CircleCI card for this event type.
fn circleci(event: &str, body: &Value) -> Card {
    Sender::shipped("circleci").card(&[("circleci-event-type", event)], &bytes(body))
}

// ---------------------------------------------------------------------------------------------
// Sentry

#[test]
fn a_sentry_issue_delivered_without_web_url_links_to_the_issue_not_to_sentrys_home_page() {
    let delivered = fixture_json("sentry/issue.created.zulip.json");
    assert_eq!(
        sentry_issue(&delivered).link,
        "https://sentry.io/issues/1635244907/",
        "no address at all in this 2020 delivery: the issue's own, without the organization"
    );

    let with = |field: &str, url: &str| {
        let mut body = delivered.clone();
        body["data"]["issue"][field] = url.into();
        body
    };
    let permalink = "https://sentry.io/organizations/hypro999/issues/1635244907/";
    assert_eq!(sentry_issue(&with("permalink", permalink)).link, permalink);
    let page = "https://hypro999.sentry.io/issues/1635244907/";
    assert_eq!(sentry_issue(&with("url", page)).link, page);

    let mut api_only = with("url", "https://sentry.io/api/0/issues/1635244907/");
    api_only["data"]["issue"]["project_url"] =
        "https://sentry.io/organizations/hypro999/projects/zulip-integration-testing/".into();
    assert_eq!(
        sentry_issue(&api_only).link,
        "https://sentry.io/organizations/hypro999/projects/zulip-integration-testing/",
        "an API address is no page for a phone: the project's page instead"
    );

    let mut everything = api_only;
    everything["data"]["issue"]["permalink"] = permalink.into();
    everything["data"]["issue"]["web_url"] =
        "https://sentry.io/organizations/hypro999/issues/1635244907/?web".into();
    assert_eq!(
        sentry_issue(&everything).link,
        "https://sentry.io/organizations/hypro999/issues/1635244907/?web"
    );
}

#[test]
fn a_sentry_issue_no_user_has_seen_has_no_users_row() {
    let mut body = fixture_json("sentry/issue.created.zulip.json");
    let card = sentry_issue(&body);
    assert_eq!(card.row("Users"), None, "{card:?}");
    assert_eq!(card.row("Events"), Some("1"));

    body["data"]["issue"]["userCount"] = 3.into();
    assert_eq!(sentry_issue(&body).row("Users"), Some("3"));
}

#[test]
fn a_long_sentry_exception_keeps_project_and_kind_in_the_title_and_is_whole_in_the_first_line() {
    let body = fixture_json("sentry/issue.assigned.zulip-team.json");
    let issue = &body["data"]["issue"];
    let old_title = format!(
        "[ASSIGNED] {}: {}",
        issue["shortId"].as_str().unwrap(),
        issue["title"].as_str().unwrap()
    );
    assert!(
        old_title.chars().count() > 64,
        "the old title was cut mid-exception"
    );

    let card = sentry_issue(&body);
    assert_eq!(
        card.title,
        "[ASSIGNED] zulip-integration-testing: Exception"
    );
    assert_eq!(
        card.first.as_deref(),
        Some("Exception: program has entered an invalid state.")
    );
    assert_eq!(card.row("Issue"), Some("ZULIP-INTEGRATION-TESTING-E"));
    assert_eq!(card.row("Location"), Some("__main__ in <module>"));
    assert_eq!(card.row("Assigned to"), Some("lone-wolf"));
    assert_eq!(card.row("By"), Some("Hemanth V. Alluri"));
}

#[test]
fn a_sentry_event_without_its_addresses_is_titled_by_the_project_id_and_links_to_its_event() {
    let mut body = fixture_json("sentry/event_alert.triggered.json");
    let event = body["data"]["event"].as_object_mut().unwrap();
    event.remove("url");
    event.remove("web_url");
    let card =
        Sender::shipped("sentry").card(&[("Sentry-Hook-Resource", "event_alert")], &bytes(&body));
    assert_eq!(
        card.title,
        "[TRIGGERED] project 1: Very Important Alert Rule!"
    );
    assert_eq!(
        card.link,
        "https://sentry.io/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/"
    );
}

#[test]
fn a_post_of_sentrys_legacy_webhooks_plugin_is_ignored_saying_why_and_how_to_set_up_an_integration()
{
    let reason =
        Sender::shipped("sentry").ignored(&[], &fixture("sentry/legacy-plugin.sample-event.json"));
    for says in [
        "legacy Sentry WebHooks plugin",
        "no Sentry-Hook-Resource header",
        "signs nothing",
        "Internal Integration",
        "/hooks/sentry",
        "FXHOOK_SECRET_SENTRY",
    ] {
        assert!(reason.contains(says), "{says:?} missing from: {reason}");
    }
    assert_eq!(
        Sender::shipped("sentry").ignored(&[("Sentry-Hook-Resource", "seer")], b"{}"),
        "this Sentry resource is not mapped (see mappings/sentry.yaml)",
        "an integration's unmapped resource is not taken for the legacy plugin"
    );
}

// ---------------------------------------------------------------------------------------------
// Jenkins

#[test]
fn a_build_finished_by_a_notification_plugin_before_1_6_makes_one_card() {
    let jenkins = Sender::shipped("jenkins");
    let finished = fixture_json("jenkins/finished-failure.build-status-server.json");
    let card = jenkins.card(&[], &bytes(&finished));
    assert_eq!(card.rule, "build-failed");
    assert_eq!(card.title, "❌ test-master #20 FAILURE");
    assert_eq!(card.link, "http://cronus.local:3001/job/test/20/");

    // The same plugin sent COMPLETED a moment before: still no card for it.
    let mut completed = finished.clone();
    completed["build"]["phase"] = "COMPLETED".into();
    assert!(
        jenkins
            .ignored(&[], &bytes(&completed))
            .starts_with("build COMPLETED")
    );

    for (status, rule) in [
        ("UNSTABLE", "build-unstable"),
        ("SUCCESS", "build-finished"),
    ] {
        let mut other = finished.clone();
        other["build"]["status"] = status.into();
        assert_eq!(jenkins.card(&[], &bytes(&other)).rule, rule);
    }
}

#[test]
fn a_failed_jenkins_build_shows_the_end_of_its_console_log_where_the_failure_is() {
    let log = std::fs::read_to_string(repo_file(
        "tests/fixtures/jenkins/console.pipeline-failure.txt",
    ))
    .unwrap();
    let mut body = fixture_json("jenkins/finished-failure.build-status-server.json");
    body["build"]["log"] = log.into();
    let card = Sender::shipped("jenkins").card(&[], &bytes(&body));
    let remark = card.remark.expect("a remark");
    assert!(
        remark.ends_with("ERROR: script returned exit code 1 Finished: FAILURE"),
        "{remark}"
    );
    assert!(remark.starts_with('…'), "{remark}");
    assert!(!remark.contains("Started by user"), "{remark}");
    assert!(remark.chars().count() <= 256);
}

#[test]
fn without_full_url_a_jenkins_build_links_to_its_page_under_the_jenkins_url_the_admin_sets() {
    let body = fixture("jenkins/finalized-failure.no-root-url.json");
    let card = jenkins_with_url("https://ci.example.com/jenkins").card(&[], &body);
    assert_eq!(card.link, "https://ci.example.com/jenkins/job/assembla/4/");

    let mut in_a_folder = fixture_json("jenkins/finalized-failure.no-root-url.json");
    in_a_folder["url"] = "job/team/job/assembla/".into();
    in_a_folder["build"]["url"] = "job/team/job/assembla/4/".into();
    let card = jenkins_with_url("https://ci.example.com/").card(&[], &bytes(&in_a_folder));
    assert_eq!(card.link, "https://ci.example.com/job/team/job/assembla/4/");
    assert_eq!(card.row("Job"), Some("team/assembla"));

    // full_url, when Jenkins sends it, wins over the mapping's jenkins_url.
    let card = jenkins_with_url("https://other.example/")
        .card(&[], &fixture("jenkins/finalized-success.matrix-neb.json"));
    assert_eq!(card.link, "http://localhost:9009/job/Synapse/8/");
}

// ---------------------------------------------------------------------------------------------
// CircleCI

#[test]
fn a_circleci_project_behind_an_opaque_slug_is_shown_by_its_name_and_organization() {
    let card = circleci(
        "workflow-completed",
        &fixture_json("circleci/workflow-completed.gitlab-zulip.json"),
    );
    assert_eq!(card.title, "circleci-webhook-test: sample passed");
    assert_eq!(card.row("Project"), Some("circleci-webhook-test"));
    assert_eq!(card.row("Organization"), Some("zulip-testing"));
    assert!(
        card.rows
            .iter()
            .all(|(_, v)| !v.contains("89xcrx7UvWQfzcUPAEmu5Q")),
        "{card:?}"
    );
    assert_eq!(
        card.first.as_deref(),
        Some("app: Enhance message within hello().")
    );
}

#[test]
fn a_circleci_tag_pipeline_has_a_first_line_and_a_tag_row_and_no_branch() {
    let delivered = fixture_json("circleci/workflow-completed.github-tag.json");
    let card = circleci("workflow-completed", &delivered);
    assert_eq!(card.first.as_deref(), Some("Tag at 0e6e66c"));
    assert_eq!(card.row("Branch"), None);
    assert_eq!(card.row("Commit"), Some("0e6e66c"));

    // CircleCI's reference documents vcs.tag, "mutually exclusive with branch".
    let mut named = delivered.clone();
    named["pipeline"]["vcs"]["tag"] = "v1.4.0".into();
    let card = circleci("workflow-completed", &named);
    assert_eq!(card.first.as_deref(), Some("Tag v1.4.0 at 0e6e66c"));
    assert_eq!(card.row("Tag"), Some("v1.4.0"));
    assert_eq!(card.row("Branch"), None);

    // A branch pipeline without a subject (run through the API) names its branch.
    let mut branch = delivered;
    branch["pipeline"]["vcs"]["branch"] = "main".into();
    assert_eq!(
        circleci("workflow-completed", &branch).first.as_deref(),
        Some("main at 0e6e66c")
    );

    // GitLab: the tag in trigger_parameters.git, the branch there empty.
    let mut gitlab = fixture_json("circleci/workflow-completed.gitlab-zulip.json");
    let git = &mut gitlab["pipeline"]["trigger_parameters"]["git"];
    git["tag"] = "v2.0".into();
    git["branch"] = "".into();
    let card = circleci("workflow-completed", &gitlab);
    assert_eq!(card.row("Tag"), Some("v2.0"));
    assert_eq!(card.row("Branch"), None);
}

#[test]
fn a_circleci_workflow_with_an_empty_url_links_to_the_page_made_from_its_ids() {
    let delivered = fixture_json("circleci/workflow-completed.github-app-no-url.json");
    let card = circleci("workflow-completed", &delivered);
    let workflow = "https://app.circleci.com/pipelines/circleci/9z8PamRuKaKWrW91o7Kqvn/AHWysFUuUfBgs6VeUqm6tg/5/workflows/7acc6aa9-aac0-40ac-8cf1-48fca8d8455d";
    assert_eq!(card.link, workflow);
    assert_eq!(card.title, "pipeline #5: say-hello-workflow passed");
    assert_eq!(card.first.as_deref(), Some("CircleCI Commit"));
    assert_eq!(card.row("Branch"), Some("circleci-project-setup"));
    assert_eq!(card.row("Project"), None, "empty names make no row");
    assert_eq!(card.row("Organization"), None);

    // A failed job of that workflow links to the job on the same page.
    let mut job = delivered;
    job["type"] = "job-completed".into();
    job["job"] = json!({"id": "j", "name": "say-hello", "number": 7, "status": "failed",
                        "started_at": "2024-12-18T18:44:21Z", "stopped_at": "2024-12-18T18:44:37Z"});
    let card = circleci("job-completed", &job);
    assert_eq!(card.rule, "job-failed");
    assert_eq!(card.link, format!("{workflow}/jobs/7"));
}

// ---------------------------------------------------------------------------------------------
// Generic

#[test]
fn an_azure_devops_event_reads_by_its_message_and_links_to_the_repository_not_a_rest_address() {
    let card = Sender::shipped("generic").card(&[], &fixture("generic/azure-devops.git-push.json"));
    assert_eq!(card.title, "Yuro Itaki pushed updates to test-zulip:main");
    assert!(
        card.remark.as_deref().is_some_and(|r| r
            .starts_with("Yuro Itaki pushed a commit to test-zulip:main - Modify readme b0ce2f20")),
        "{card:?}"
    );
    assert_eq!(card.row("eventType"), Some("git.push"));
    assert_eq!(card.row("id"), None, "a UUID is no news");
    assert_eq!(card.row("subscriptionId"), None);
    assert_eq!(
        card.link,
        "https://dev.azure.com/ttchong/test-zulip/_git/test-zulip"
    );

    // A resource.url that is a page, not the REST API, is the event's page.
    let mut build = fixture_json("generic/azure-devops.git-push.json");
    build["resource"]["url"] =
        "https://dev.azure.com/ttchong/test-zulip/_build/results?buildId=12".into();
    assert_eq!(
        Sender::shipped("generic").card(&[], &bytes(&build)).link,
        "https://dev.azure.com/ttchong/test-zulip/_build/results?buildId=12"
    );
}

#[test]
fn a_docker_hub_push_is_titled_by_its_repository_and_links_to_its_page_not_the_callback() {
    let card = Sender::shipped("generic").card(&[], &fixture("generic/dockerhub.push.json"));
    assert_eq!(card.title, "svendowideit/testhook");
    assert_eq!(
        card.link,
        "https://registry.hub.docker.com/u/svendowideit/testhook/"
    );
}

#[test]
fn the_generic_title_reads_the_human_text_of_the_common_fields() {
    let generic = Sender::shipped("generic");
    let title = |body: Value| generic.card(&[], &bytes(&body)).title;
    assert_eq!(
        title(
            json!({"message": {"text": "Build 20150407.2 succeeded\r\n(https://x)"}, "eventType": "build.complete"})
        ),
        "Build 20150407.2 succeeded"
    );
    assert_eq!(
        title(json!({"text": "Disk full", "type": "alert"})),
        "Disk full"
    );
    assert_eq!(
        title(json!({"description": "Deploy done", "id": 3})),
        "Deploy done"
    );
    assert_eq!(
        title(json!({"detailedMessage": {"text": "Details\nmore"}})),
        "Details"
    );
    assert_eq!(
        title(json!({"eventType": "build.complete"})),
        "build.complete"
    );
    assert_eq!(title(json!({"repository": {"repo_name": "o/r"}})), "o/r");
}

// ---------------------------------------------------------------------------------------------
// Every card of these senders

#[test]
fn no_card_of_these_senders_has_an_empty_duplicated_null_or_raw_json_row() {
    let cases: [(&str, Option<&str>); 4] = [
        ("sentry", Some("Sentry-Hook-Resource")),
        ("jenkins", None),
        ("circleci", Some("circleci-event-type")),
        ("generic", None),
    ];
    let mut cards = 0;
    for (sender, header) in cases {
        let mapping = Sender::shipped(sender);
        let dir = repo_file(&format!("tests/fixtures/{sender}"));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let event = name.split('.').next().unwrap();
            let headers: Vec<(&str, &str)> = header.map(|h| vec![(h, event)]).unwrap_or_default();
            let body = std::fs::read(&path).unwrap();
            let fxhook::pipeline::Routed::Rendered { .. } = mapping.mapped(&headers, &body) else {
                continue;
            };
            let card = mapping.card(&headers, &body);
            cards += 1;
            let texts = [Some(&card.title), card.first.as_ref()];
            for text in texts.into_iter().flatten() {
                assert!(!text.contains("null"), "{sender}/{name}: {text}");
            }
            for (i, (label, value)) in card.rows.iter().enumerate() {
                assert!(
                    !value.trim().is_empty(),
                    "{sender}/{name}: empty row {label}"
                );
                assert_ne!(value, "null", "{sender}/{name}: row {label}");
                assert!(
                    !(value.starts_with(['{', '[']) && value.chars().count() > 200),
                    "{sender}/{name}: row {label} is raw JSON"
                );
                assert!(
                    !card.rows[..i].contains(&(label.clone(), value.clone())),
                    "{sender}/{name}: row {label} twice"
                );
            }
        }
    }
    assert!(cards >= 18, "only {cards} cards");
}
