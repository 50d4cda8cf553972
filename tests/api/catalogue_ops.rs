//! The built-in mappings of monitoring and CI senders — Grafana, Sentry, Jenkins, CircleCI,
//! Alertmanager — and the generic one, on real payloads (`tests/fixtures/<sender>/README.md`
//! names each one's source); and a real Alertmanager process delivering to a spawned gateway.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fxhook::card::SendBody;
use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::Source;
use serde_json::{Value, json};

use crate::cards::{assert_valid_composite, groups, load, map};
use crate::helpers::{Options, mapping_with_secret_file, repo_file, spawn_app};

// ---------------------------------------------------------------------------------------------
// Helpers (the first four as in mapping.rs; catalogue_ci.rs uses them too)

/// A card as the tests read it (catalogue_alerts reads them too).
#[derive(Debug)]
pub(crate) struct Card {
    pub(crate) rule: String,
    pub(crate) title: String,
    pub(crate) first: Option<String>,
    pub(crate) rows: Vec<(String, String)>,
    pub(crate) remark: Option<String>,
    pub(crate) link_title: String,
    pub(crate) link: String,
}

impl Card {
    /// The value of the first row with this label.
    pub(crate) fn row(&self, label: &str) -> Option<&str> {
        self.rows
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn labels(&self) -> Vec<&str> {
        self.rows.iter().map(|(l, _)| l.as_str()).collect()
    }
}

/// The shipped mapping `mappings/<sender>.yaml`, routing to a group `default`.
pub(crate) struct Sender {
    source: Source,
    groups: Groups,
}

impl Sender {
    pub(crate) fn shipped(name: &str) -> Sender {
        Sender::from_file(&repo_file(&format!("mappings/{name}.yaml")))
    }

    /// The mapping file at `path`, routing to a group `default`.
    pub(crate) fn from_file(path: &Path) -> Sender {
        let groups = groups(&[("default", &["1000", "1001"])]);
        let source = load(path, &groups);
        Sender { source, groups }
    }

    pub(crate) fn mapped(&self, headers: &[(&str, &str)], body: &[u8]) -> Routed {
        map(&self.source, &self.groups, headers, body)
    }

    /// Renders one valid composite for the group `default`, or panics.
    pub(crate) fn card(&self, headers: &[(&str, &str)], body: &[u8]) -> Card {
        match self.mapped(headers, body) {
            Routed::Rendered { rule, messages, .. } => {
                assert_eq!(messages.len(), 1);
                assert_valid_composite(&messages[0]);
                assert_eq!(messages[0].to_user, vec!["1000", "1001"]);
                let c = &messages[0].composite;
                Card {
                    rule,
                    title: c.head.title.clone(),
                    first: c.first.as_ref().map(|f| f.content.clone()),
                    rows: c
                        .form
                        .iter()
                        .map(|r| (r.label.clone(), r.value.clone()))
                        .collect(),
                    remark: c.remark.as_ref().map(|r| r.content.clone()),
                    link_title: c.link.title.clone(),
                    link: c.link.url.clone(),
                }
            }
            other => panic!("not rendered: {other:?}"),
        }
    }

    /// The reason of an ignored event, or panics.
    pub(crate) fn ignored(&self, headers: &[(&str, &str)], body: &[u8]) -> String {
        match self.mapped(headers, body) {
            Routed::Ignored { reason } => {
                assert!(!reason.trim().is_empty(), "ignored without a reason");
                reason
            }
            other => panic!("not ignored: {other:?}"),
        }
    }
}

pub(crate) fn fixture(rel: &str) -> Vec<u8> {
    let path = repo_file(&format!("tests/fixtures/{rel}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&fixture(rel)).unwrap()
}

pub(crate) fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Every `.json` file of `tests/fixtures/<dir>`, by file name.
pub(crate) fn fixtures_of(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(repo_file(&format!("tests/fixtures/{dir}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    files
}

/// The event a fixture is named after: `issue.created.json` → `issue`.
fn event_of(file: &str) -> &str {
    file.split('.').next().unwrap()
}

const GRAFANA_DOCS: &str = "https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/";

// ---------------------------------------------------------------------------------------------
// Every fixture

#[test]
fn every_fixture_of_every_sender_renders_a_valid_card_or_is_ignored_with_a_reason() {
    let cases: [(&str, &str, Option<&str>); 5] = [
        ("grafana", "grafana", None),
        ("sentry", "sentry", Some("Sentry-Hook-Resource")),
        ("jenkins", "jenkins", None),
        ("circleci", "circleci", Some("circleci-event-type")),
        ("generic", "generic", None),
    ];
    let mut rendered = 0;
    let mut ignored = 0;
    for (mapping, dir, event_header) in cases {
        let sender = Sender::shipped(mapping);
        for (file, body) in fixtures_of(dir) {
            let headers: Vec<(&str, &str)> = event_header
                .map(|h| vec![(h, event_of(&file))])
                .unwrap_or_default();
            match sender.mapped(&headers, &body) {
                Routed::Rendered { messages, .. } => {
                    rendered += 1;
                    messages.iter().for_each(assert_valid_composite);
                }
                Routed::Ignored { reason } => {
                    ignored += 1;
                    assert!(!reason.is_empty(), "{dir}/{file}: ignored without a reason");
                }
                Routed::Failed { rule, reason } => panic!("{dir}/{file}: rule {rule}: {reason}"),
            }
        }
    }
    assert!(
        rendered >= 18 && ignored >= 4,
        "rendered {rendered}, ignored {ignored}"
    );
}

// ---------------------------------------------------------------------------------------------
// Grafana

#[test]
fn a_grafana_alert_group_reads_like_an_alertmanager_one_with_grafanas_urls_and_values() {
    let card = Sender::shipped("grafana").card(&[], &fixture("grafana/docs-webhook-firing.json"));
    assert_eq!(card.rule, "alert-group");
    assert_eq!(card.title, "[FIRING:2] High memory usage, High CPU usage");
    assert_eq!(
        card.first.as_deref(),
        Some("This alert was triggered for zone us-1")
    );
    assert_eq!(
        card.rows[..2],
        [
            (
                "High memory usage".to_string(),
                "firing (zone=us-1): This alert was triggered for zone us-1 — B=44.23943737541908, C=1"
                    .to_string()
            ),
            (
                "High CPU usage".to_string(),
                "firing (zone=eu-1): This alert was triggered for zone eu-1 — B=44.23943737541908, C=1"
                    .to_string()
            ),
        ],
        "each alert's row says what sets it apart and what its rule evaluated"
    );
    assert_eq!(
        card.row("Values High memory usage"),
        None,
        "values are in the alert's row, not raw JSON in a row of their own"
    );
    assert_eq!(
        card.row("Silence High CPU usage"),
        Some(
            "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1"
        )
    );
    assert_eq!(
        card.row("Runbook"),
        Some("https://myrunbook.com/runbook/1234")
    );
    assert_eq!(card.row("Receiver"), Some("My Super Webhook"));
    assert_eq!(card.row("Started"), Some("2021-10-12 15:51"));
    assert_eq!(card.row("Ended"), None, "a firing alert has not ended");
    assert_eq!(card.row("Dashboard"), None, "empty URLs make no row");
    assert_eq!(card.link_title, "Open in Grafana");
    assert_eq!(
        card.link,
        "https://play.grafana.org/alerting/1afz29v7z/edit"
    );
}

#[test]
fn an_alert_reads_the_same_from_grafana_as_from_alertmanager() {
    let body = fixture("alertmanager-0.25-firing.body.json");
    let from_alertmanager = Sender::shipped("alertmanager").card(&[], &body);
    let from_grafana = Sender::shipped("grafana").card(&[], &body);
    assert_eq!(
        from_alertmanager.title,
        "[FIRING:1] WebhookGatewayPerfTest WARNING"
    );
    assert_eq!(from_grafana.title, from_alertmanager.title);
    assert_eq!(from_grafana.first, from_alertmanager.first);
    assert_eq!(from_grafana.rows[0], from_alertmanager.rows[0]);
    assert_eq!(from_grafana.link, from_alertmanager.link);
}

#[test]
fn a_resolved_grafana_alert_shows_when_it_ended_and_its_dashboard_panel_and_screenshot() {
    let mut body = fixture_json("grafana/docs-webhook-firing.json");
    body["status"] = "resolved".into();
    body["state"] = "ok".into();
    body["commonLabels"]["severity"] = "critical".into();
    let alert = &mut body["alerts"][0];
    alert["status"] = "resolved".into();
    alert["endsAt"] = "2021-10-12T10:01:03+02:00".into();
    alert["dashboardURL"] = "https://play.grafana.org/d/abcd?orgId=1".into();
    alert["panelURL"] = "https://play.grafana.org/d/abcd?orgId=1&viewPanel=2".into();
    alert["imageURL"] = "https://play.grafana.org/public/img/attachments/x.png".into();
    body["alerts"].as_array_mut().unwrap().truncate(1);
    let card = Sender::shipped("grafana").card(&[], &bytes(&body));
    assert_eq!(card.title, "[RESOLVED:1] High memory usage CRITICAL");
    assert_eq!(
        card.rows[0].1,
        "resolved (zone=us-1): This alert was triggered for zone us-1 — B=44.23943737541908, C=1"
    );
    assert_eq!(card.row("Ended"), Some("2021-10-12 16:01"));
    assert_eq!(
        card.row("Dashboard"),
        Some("https://play.grafana.org/d/abcd?orgId=1")
    );
    assert_eq!(
        card.row("Panel"),
        Some("https://play.grafana.org/d/abcd?orgId=1&viewPanel=2")
    );
    assert_eq!(
        card.row("Image"),
        Some("https://play.grafana.org/public/img/attachments/x.png")
    );
    assert_eq!(
        card.link,
        "https://play.grafana.org/alerting/1afz29v7z/edit"
    );
}

#[test]
fn grafanas_default_payload_template_renders_the_alert_card_with_its_annotations() {
    let card =
        Sender::shipped("grafana").card(&[], &fixture("grafana/default-payload-template.json"));
    assert_eq!(card.rule, "alert-group");
    assert_eq!(card.title, "[FIRING:1] alert1");
    assert_eq!(card.rows[0], ("alert1".into(), "firing: annv1".into()));
    assert_eq!(card.row("Started"), None, "a zero time is no start time");
    assert_eq!(card.link, "http://localhost/test?orgId=1");
}

#[test]
fn a_custom_templated_grafana_body_still_makes_a_card_from_what_it_holds() {
    let grafana = Sender::shipped("grafana");

    let kafka = grafana.card(&[], &fixture("grafana/custom-kafka.json"));
    assert_eq!(kafka.rule, "custom-body");
    assert_eq!(kafka.title, "[FIRING:1] (val1)");
    assert_eq!(kafka.row("alert_state"), Some("firing"));
    assert_eq!(kafka.row("client"), Some("Grafana"));
    assert_eq!(kafka.link, "http://localhost/alerting/list");

    let list = grafana.card(&[], &fixture("grafana/custom-alertmanager-like.json"));
    assert_eq!(list.title, "alert1");
    assert_eq!(list.rows, [("alert1".into(), "2025-01-01 08:00".into())]);
    assert_eq!(list.link, "http://localhost/generator");

    let legacy = grafana.card(&[], &fixture("grafana/legacy-test-notification.json"));
    assert_eq!(legacy.title, "[Alerting] Test notification");
    assert_eq!(
        legacy.row("message"),
        Some("Someone is testing the alert notification within grafana.")
    );
    assert_eq!(
        legacy.link, "https://localhost:3000/",
        "the rule's page, not the screenshot"
    );
}

#[test]
fn a_custom_grafana_body_without_any_http_link_still_makes_a_card_that_says_so() {
    let grafana = Sender::shipped("grafana");

    let vars = grafana.card(&[], &fixture("grafana/custom-vars.json"));
    assert_eq!(vars.rule, "custom-body-without-link");
    assert_eq!(vars.title, "Grafana notification");
    assert_eq!(
        vars.rows,
        [
            ("var1".into(), "val1".into()),
            ("var2".into(), "val2".into())
        ]
    );
    assert_eq!(vars.link_title, "No link in this notification");
    assert_eq!(vars.link, GRAFANA_DOCS);

    let chat = grafana.card(&[], &fixture("grafana/custom-dingding.json"));
    assert_eq!(chat.title, "[FIRING:1] (val1)");
    assert!(
        chat.remark
            .as_deref()
            .is_some_and(|r| r.starts_with("**Firing** Value: [no value] Labels:")),
        "{chat:?}"
    );
    assert_eq!(chat.link, GRAFANA_DOCS, "a dingtalk:// address is no link");
}

#[test]
fn any_json_at_all_from_grafana_makes_a_card_never_an_error() {
    let grafana = Sender::shipped("grafana");
    for body in [
        json!({}),
        json!([]),
        json!("text"),
        json!(42),
        json!({"alerts": []}),
        json!({"alerts": "x", "status": "firing"}),
        json!({"status": "firing", "externalURL": "https://g.example/"}),
        json!({"alerts": [{"labels": {"alertname": "NoUrls"}}]}),
    ] {
        let card = grafana.card(&[], &bytes(&body));
        assert!(!card.title.is_empty(), "{body}");
    }
    let card = grafana.card(
        &[],
        &bytes(&json!({"status": "firing", "externalURL": "https://g.example/"})),
    );
    assert_eq!(
        (card.title.as_str(), card.link.as_str()),
        ("firing", "https://g.example/")
    );
}

// ---------------------------------------------------------------------------------------------
// Sentry

#[test]
fn a_new_sentry_issue_shows_the_error_where_it_happened_and_how_often() {
    let card = Sender::shipped("sentry").card(
        &[("Sentry-Hook-Resource", "issue")],
        &fixture("sentry/issue.created.json"),
    );
    assert_eq!(card.rule, "issue");
    assert_eq!(card.title, "[CREATED] front-end: ReferenceError");
    assert_eq!(
        card.first.as_deref(),
        Some("ReferenceError: blooopy is not defined")
    );
    assert_eq!(
        card.labels(),
        [
            "Issue",
            "Location",
            "Level",
            "Status",
            "Events",
            "Users",
            "First seen",
            "Last seen"
        ]
    );
    assert_eq!(card.row("Issue"), Some("FRONT-END-9"));
    assert_eq!(card.row("Location"), Some("?(runner)"));
    assert_eq!(card.row("Level"), Some("ERROR"));
    assert_eq!(card.row("Status"), Some("escalating"));
    assert_eq!(card.row("First seen"), Some("2019-08-20 04:58"));
    assert_eq!(card.link_title, "Open issue");
    assert_eq!(
        card.link, "https://sentry.io/issues/1170820242/",
        "the documented example has no web_url: the issue's address without the organization"
    );
}

#[test]
fn a_sentry_issue_links_to_its_page_and_names_who_resolved_it() {
    let mut body = fixture_json("sentry/issue.created.json");
    body["action"] = "resolved".into();
    body["actor"] = json!({"type": "user", "id": 1, "name": "Meredith Heller"});
    body["data"]["issue"]["status"] = "resolved".into();
    body["data"]["issue"]["substatus"] = Value::Null;
    body["data"]["issue"]["web_url"] =
        "https://sentry.io/organizations/test-org/issues/1170820242/".into();
    let card = Sender::shipped("sentry").card(&[("Sentry-Hook-Resource", "issue")], &bytes(&body));
    assert_eq!(card.title, "[RESOLVED] front-end: ReferenceError");
    assert_eq!(card.row("Status"), Some("resolved"));
    assert_eq!(card.row("By"), Some("Meredith Heller"));
    assert_eq!(
        card.link,
        "https://sentry.io/organizations/test-org/issues/1170820242/"
    );
}

#[test]
fn a_sentry_issue_alert_names_the_rule_and_links_to_the_event() {
    let card = Sender::shipped("sentry").card(
        &[("Sentry-Hook-Resource", "event_alert")],
        &fixture("sentry/event_alert.triggered.json"),
    );
    assert_eq!(card.rule, "event-alert");
    assert_eq!(
        card.title,
        "[TRIGGERED] front-end: Very Important Alert Rule!"
    );
    assert_eq!(card.row("Level"), Some("ERROR"));
    assert_eq!(
        card.first.as_deref(),
        Some("ReferenceError: heck is not defined")
    );
    assert_eq!(card.row("Location"), Some("?(<anonymous>)"));
    assert_eq!(card.row("URL"), Some("https://null.jsbin.com/runner"));
    assert_eq!(card.row("Time"), Some("2019-08-20 05:06"));
    assert_eq!(card.link_title, "Open event");
    assert_eq!(
        card.link,
        "https://sentry.io/organizations/test-org/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/"
    );
}

#[test]
fn a_sentry_event_shows_its_environment_and_release_from_its_tags() {
    let mut body = fixture_json("sentry/event_alert.triggered.json");
    let tags = body["data"]["event"]["tags"].as_array_mut().unwrap();
    tags.push(json!(["environment", "production"]));
    tags.push(json!(["server_name", "web-3"]));
    body["data"]["event"]["release"] = "frontend@2.4.1".into();
    let card =
        Sender::shipped("sentry").card(&[("Sentry-Hook-Resource", "event_alert")], &bytes(&body));
    assert_eq!(card.row("Environment"), Some("production"));
    assert_eq!(card.row("Server"), Some("web-3"));
    assert_eq!(card.row("Release"), Some("frontend@2.4.1"));
}

#[test]
fn a_sentry_metric_alert_reads_like_an_alert_with_its_description() {
    let card = Sender::shipped("sentry").card(
        &[("Sentry-Hook-Resource", "metric_alert")],
        &fixture("sentry/metric_alert.resolved.json"),
    );
    assert_eq!(card.rule, "metric-alert");
    assert_eq!(card.title, "[RESOLVED] bar: Too many errors");
    assert_eq!(card.first.as_deref(), Some("Resolved: Too many errors"));
    assert_eq!(
        card.row("Description"),
        Some("1000 events in the last 10 minutes; Filter: level:error")
    );
    assert_eq!(card.row("Query"), Some("level:error"));
    assert_eq!(card.link, "https://sentry.io/organizations/baz/alerts/1/");

    let mut critical = fixture_json("sentry/metric_alert.resolved.json");
    critical["action"] = "critical".into();
    let card = Sender::shipped("sentry").card(
        &[("Sentry-Hook-Resource", "metric_alert")],
        &bytes(&critical),
    );
    assert_eq!(card.title, "[CRITICAL] bar: Too many errors");
}

#[test]
fn a_sentry_error_event_shows_the_error_and_links_to_it() {
    let card = Sender::shipped("sentry").card(
        &[("Sentry-Hook-Resource", "error")],
        &fixture("sentry/error.created.json"),
    );
    assert_eq!(card.rule, "error");
    assert_eq!(card.title, "[ERROR] front-end: ReferenceError");
    assert_eq!(
        card.first.as_deref(),
        Some("ReferenceError: blooopy is not defined")
    );
    assert_eq!(card.row("Culprit"), Some("?(runner)"));
    assert_eq!(card.row("Location"), Some("/runner"));
    assert_eq!(card.row("Issue"), Some("1170820242"));
    assert_eq!(
        card.link,
        "https://sentry.io/organizations/test-org/issues/1170820242/events/bb78c1407cea4519aa397afc059c793d/"
    );
}

#[test]
fn sentry_comments_installations_and_unknown_resources_are_ignored_with_a_reason() {
    let sentry = Sender::shipped("sentry");
    assert_eq!(
        sentry.ignored(
            &[("Sentry-Hook-Resource", "comment")],
            &fixture("sentry/comment.created.json")
        ),
        "comment: comments on issues are not sent (see mappings/sentry.yaml)"
    );
    assert_eq!(
        sentry.ignored(
            &[("Sentry-Hook-Resource", "installation")],
            &fixture("sentry/installation.created.json")
        ),
        "installation: the integration was installed or uninstalled; nothing to send"
    );
    for resource in ["seer", "preprod_artifact", "activity_alert"] {
        assert_eq!(
            sentry.ignored(&[("Sentry-Hook-Resource", resource)], b"{}"),
            "this Sentry resource is not mapped (see mappings/sentry.yaml)"
        );
    }
    assert!(
        !sentry
            .ignored(&[], &fixture("sentry/issue.created.json"))
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Jenkins

#[test]
fn a_finished_jenkins_build_shows_job_branch_and_commit_and_links_to_the_build() {
    let card =
        Sender::shipped("jenkins").card(&[], &fixture("jenkins/finalized-success.matrix-neb.json"));
    assert_eq!(card.rule, "build-finished");
    assert_eq!(card.title, "Synapse #8 SUCCESS");
    assert_eq!(
        card.rows,
        [
            ("Job".into(), "Synapse".into()),
            ("Branch".into(), "origin/develop".into()),
            ("Commit".into(), "72aef114ab12".into()),
        ]
    );
    assert_eq!(card.link_title, "Open build");
    assert_eq!(card.link, "http://localhost:9009/job/Synapse/8/");
}

#[test]
fn a_failed_jenkins_build_leads_with_a_cross_and_says_when_jenkins_sent_no_build_url() {
    let card = Sender::shipped("jenkins")
        .card(&[], &fixture("jenkins/finalized-failure.no-root-url.json"));
    assert_eq!(card.rule, "build-failed");
    assert_eq!(card.title, "❌ assembla #4 FAILURE");
    assert_eq!(card.row("Culprits"), Some("alek-mou"));
    assert_eq!(
        card.row("Build URL"),
        Some("not sent: set Manage Jenkins → System → Jenkins URL")
    );
    assert_eq!(card.link, "https://plugins.jenkins.io/notification/");

    let mut with_url = fixture_json("jenkins/finalized-failure.no-root-url.json");
    with_url["build"]["full_url"] = "https://ci.example.com/job/assembla/4/".into();
    let card = Sender::shipped("jenkins").card(&[], &bytes(&with_url));
    assert_eq!(card.row("Build URL"), None);
    assert_eq!(card.link, "https://ci.example.com/job/assembla/4/");
}

#[test]
fn an_unstable_jenkins_build_is_flagged_and_lists_its_failed_tests() {
    let mut body = fixture_json("jenkins/finalized-success.matrix-neb.json");
    body["url"] = "job/matrix/job/Synapse/".into();
    body["build"]["status"] = "UNSTABLE".into();
    body["build"]["test_summary"] = json!({"total": 120, "failed": 2, "passed": 117, "skipped": 1,
        "failed_tests": ["tests.rest.test_login", "tests.storage.test_purge"]});
    let card = Sender::shipped("jenkins").card(&[], &bytes(&body));
    assert_eq!(card.rule, "build-unstable");
    assert_eq!(card.title, "⚠️ Synapse #8 UNSTABLE");
    assert_eq!(card.row("Job"), Some("matrix/Synapse"));
    assert_eq!(card.row("Tests"), Some("2 failed, 117 passed, 1 skipped"));
    let failed: Vec<&str> = card
        .rows
        .iter()
        .filter(|(l, _)| l == "Failed")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        failed,
        ["tests.rest.test_login", "tests.storage.test_purge"]
    );
}

#[test]
fn an_aborted_jenkins_build_is_reported_plainly() {
    let mut body = fixture_json("jenkins/finalized-success.matrix-neb.json");
    body["build"]["status"] = "ABORTED".into();
    let card = Sender::shipped("jenkins").card(&[], &bytes(&body));
    assert_eq!(card.title, "Synapse #8 ABORTED");
}

#[test]
fn jenkins_started_and_completed_phases_are_ignored_because_finalized_follows() {
    let jenkins = Sender::shipped("jenkins");
    assert_eq!(
        jenkins.ignored(
            &[],
            &fixture("jenkins/completed-success.plugin-readme.json")
        ),
        "build COMPLETED: the card is sent at FINALIZED, after the post-build steps (set the endpoint's Event to \"Job Finalized\" or \"All Events\")"
    );
    let mut started = fixture_json("jenkins/finalized-success.matrix-neb.json");
    started["build"]["phase"] = "STARTED".into();
    started["build"].as_object_mut().unwrap().remove("status");
    assert_eq!(
        jenkins.ignored(&[], &bytes(&started)),
        "build started: the card is sent when the build is FINALIZED"
    );
    assert_eq!(
        jenkins.ignored(&[], br#"{"text": "not from the Notification plugin"}"#),
        "not a finished build of the Jenkins Notification plugin (no build.phase FINALIZED, or FINISHED from plugin versions before 1.6)"
    );
}

// ---------------------------------------------------------------------------------------------
// CircleCI

#[test]
fn a_circleci_workflow_shows_branch_pipeline_and_commit_and_links_to_the_workflow() {
    let card = Sender::shipped("circleci").card(
        &[("circleci-event-type", "workflow-completed")],
        &fixture("circleci/workflow-completed.github.json"),
    );
    assert_eq!(card.rule, "workflow-completed");
    assert_eq!(card.title, "webhook-service: build-test-deploy passed");
    assert_eq!(card.first.as_deref(), Some("Description of change"));
    assert_eq!(
        card.rows,
        [
            ("Project".into(), "github/circleci/webhook-service".into()),
            ("Branch".into(), "main".into()),
            ("Pipeline".into(), "#130".into()),
            ("Commit".into(), "1dc6aa6".into()),
            ("Author".into(), "Author Name".into()),
            ("Trigger".into(), "webhook".into()),
            ("Stopped".into(), "2021-09-02 06:49".into()),
        ]
    );
    assert_eq!(card.link_title, "Open workflow");
    assert_eq!(
        card.link,
        "https://app.circleci.com/pipelines/github/circleci/webhook-service/130/workflows/fda08377-fe7e-46b1-8992-3a7aaecac9c3"
    );
}

#[test]
fn a_failed_circleci_workflow_leads_with_a_cross_even_from_gitlab() {
    let card = Sender::shipped("circleci").card(
        &[("circleci-event-type", "workflow-completed")],
        &fixture("circleci/workflow-completed.gitlab.json"),
    );
    assert_eq!(card.rule, "workflow-failed");
    assert_eq!(card.title, "❌ hello-world: build failed");
    assert_eq!(card.first.as_deref(), Some("Update README.md"));
    assert_eq!(card.row("Branch"), Some("main"));
    assert_eq!(card.row("Commit"), Some("850a151"));
    assert_eq!(card.row("Author"), Some("Commit Author"));
}

#[test]
fn a_failed_circleci_job_links_to_the_job_and_a_successful_one_is_left_to_its_workflow() {
    let circleci = Sender::shipped("circleci");
    let headers = [("circleci-event-type", "job-completed")];
    assert_eq!(
        circleci.ignored(&headers, &fixture("circleci/job-completed.github.json")),
        "job-completed: only failed jobs are sent; the workflow-completed card reports the rest"
    );
    let mut failed = fixture_json("circleci/job-completed.github.json");
    failed["job"]["status"] = "infrastructure_fail".into();
    let card = circleci.card(&headers, &bytes(&failed));
    assert_eq!(card.rule, "job-failed");
    assert_eq!(
        card.title,
        "❌ webhook-service: job test infrastructure fail"
    );
    assert_eq!(card.row("Workflow"), Some("welcome"));
    assert_eq!(card.link_title, "Open job");
    assert_eq!(
        card.link,
        "https://app.circleci.com/pipelines/github/circleci/webhook-service/130/workflows/fda08377-fe7e-46b1-8992-3a7aaecac9c3/jobs/136"
    );
}

#[test]
fn other_circleci_events_are_ignored_with_a_reason() {
    assert_eq!(
        Sender::shipped("circleci").ignored(
            &[("circleci-event-type", "ping")],
            br#"{"id": "x", "type": "ping"}"#
        ),
        "this CircleCI event type is not mapped (see mappings/circleci.yaml)"
    );
}

// ---------------------------------------------------------------------------------------------
// Generic

#[test]
fn a_standard_webhooks_event_is_titled_by_its_type_with_a_row_per_scalar() {
    let card = Sender::shipped("generic").card(
        &[],
        &fixture("generic/standard-webhooks.contact-created.json"),
    );
    assert_eq!(card.rule, "no-link");
    assert_eq!(card.title, "contact.created");
    assert_eq!(card.row("timestamp"), Some("2022-11-03T20:26:10.344522Z"));
    assert_eq!(card.row("fullName"), Some("John Smith"));
    assert_eq!(card.row("occupation"), Some("Engineer, ACME"));
    assert!(
        !card.labels().contains(&"data"),
        "an object is no row: {card:?}"
    );
    assert_eq!(card.link_title, "No link in this event");
    assert_eq!(card.link, "https://www.standardwebhooks.com/");
}

#[test]
fn a_generic_card_links_to_the_events_page_not_to_an_unsubscribe_link() {
    let card = Sender::shipped("generic").card(&[], &fixture("generic/betterstack.incident.json"));
    assert_eq!(card.rule, "with-link");
    assert_eq!(card.title, "incident");
    assert_eq!(card.first.as_deref(), Some("Database Connection Issues"));
    assert_eq!(card.rows, [("event_type".into(), "incident".into())]);
    assert_eq!(card.link_title, "Open");
    assert_eq!(card.link, "https://status.example.com/incidents/98765");
}

#[test]
fn a_generic_card_leaves_out_lists_objects_and_nulls() {
    let card = Sender::shipped("generic").card(
        &[],
        &fixture("generic/statuspal.service-monitored-status.json"),
    );
    assert_eq!(card.title, "service.monitored_status.updated");
    assert_eq!(
        card.rows,
        [
            ("event".into(), "service.monitored_status.updated".into()),
            ("monitored_status".into(), "up".into()),
        ]
    );
}

#[test]
fn a_payload_without_a_title_like_field_gets_a_fixed_title_and_its_url_as_link() {
    let card = Sender::shipped("generic").card(
        &[],
        &fixture("generic/jenkins-global-build-notification.json"),
    );
    assert_eq!(card.title, "Webhook event");
    assert_eq!(card.row("result"), Some("SUCCESS"));
    assert_eq!(card.row("jobName"), Some("test"));
    assert_eq!(card.row("annotation"), None);
    assert_eq!(card.link, "http://localhost:8080/jenkins/job/test/32/");
}

#[test]
fn the_generic_title_comes_from_the_first_common_field_present() {
    let generic = Sender::shipped("generic");
    let title = |body: Value| generic.card(&[], &bytes(&body)).title;
    assert_eq!(
        title(json!({"title": "T", "summary": "S", "type": "x"})),
        "T"
    );
    assert_eq!(title(json!({"summary": "S", "message": "M"})), "S");
    assert_eq!(
        title(json!({"message": "Disk full\non db-1", "event": "E"})),
        "Disk full"
    );
    assert_eq!(title(json!({"event": "E", "type": "x"})), "E");
    assert_eq!(
        title(json!({"title": {"nested": true}, "type": "x"})),
        "x",
        "an object is no title"
    );
    assert_eq!(title(json!([1, 2, 3])), "Webhook event");
    assert_eq!(title(json!("just text")), "Webhook event");
}

#[test]
fn generic_rows_are_capped_with_a_more_row() {
    let mut body = serde_json::Map::new();
    for i in 0..30 {
        body.insert(format!("k{i:02}"), json!(i));
    }
    let card = Sender::shipped("generic").card(&[], &bytes(&Value::Object(body)));
    assert_eq!(card.rows.len(), 13);
    assert_eq!(card.rows[0], ("k00".into(), "0".into()));
    assert_eq!(card.rows[12], ("…".into(), "+18 more".into()));
}

// ---------------------------------------------------------------------------------------------
// Alertmanager (the built-in file)

#[test]
fn an_alertmanager_group_without_a_common_name_lists_its_alerts_names() {
    let mut body = fixture_json("alertmanager-0.25-firing.body.json");
    let mut second = body["alerts"][0].clone();
    second["labels"]["alertname"] = "DiskFull".into();
    second["labels"]["instance"] = "db-1:9100".into();
    second["annotations"] = json!({"runbook_url": "https://runbooks.example/disk"});
    body["alerts"].as_array_mut().unwrap().push(second);
    body["commonLabels"] = json!({"job": "webhook-gateway", "severity": "warning"});
    body["groupLabels"] = json!({"job": "webhook-gateway"});
    let card = Sender::shipped("alertmanager").card(&[], &bytes(&body));
    assert_eq!(
        card.title,
        "[FIRING:2] WebhookGatewayPerfTest, DiskFull WARNING"
    );
    assert_eq!(
        card.rows[1],
        (
            "DiskFull db-1:9100".into(),
            "firing: webhook-gateway".into()
        )
    );
    assert_eq!(
        Sender::shipped("alertmanager").ignored(&[], br#"{"status": "firing"}"#),
        "not an Alertmanager webhook (no alerts)"
    );
}

// ---------------------------------------------------------------------------------------------
// A real Alertmanager delivering to a spawned gateway

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A running `prometheus-alertmanager`, stopped when dropped.
struct AlertmanagerProcess {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for AlertmanagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl AlertmanagerProcess {
    /// Starts Alertmanager on loopback (no clustering) with one webhook receiver.
    fn start(webhook_url: &str, token: &str) -> AlertmanagerProcess {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing: install the Debian package prometheus-alertmanager (apt-get install -y prometheus-alertmanager; scripts/test.sh does it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: fxhook\n  group_by: [job]\n  group_wait: 1s\n  group_interval: 1m\n  repeat_interval: 1h\nreceivers:\n  - name: fxhook\n    webhook_configs:\n      - url: {webhook_url}\n        send_resolved: true\n        http_config:\n          authorization: {{ credentials: {token} }}\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{ALERTMANAGER} does not start: {e}"));
        AlertmanagerProcess {
            child,
            address: format!("http://{address}"),
            _dir: dir,
        }
    }

    /// Waits until its API answers.
    async fn ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client
                .get(format!("{}/-/ready", self.address))
                .send()
                .await
                .is_ok_and(|res| res.status().is_success());
            if ready {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("alertmanager exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager at {} never became ready",
                self.address
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[actix_rt::test]
async fn a_real_alertmanager_delivers_two_alerts_as_one_card_with_a_row_per_alert() {
    const TOKEN: &str = "am-bearer-token";
    let dir = tempfile::tempdir().unwrap();
    // The shipped file, with its secret read from a file instead of the environment.
    let shipped = std::fs::read_to_string(repo_file("mappings/alertmanager.yaml")).unwrap();
    let rules = &shipped[shipped
        .find("\ndedup:")
        .expect("the file has a dedup section")
        + 1..];
    let yaml = mapping_with_secret_file(dir.path(), "alertmanager", "alertmanager", TOKEN, rules);
    let app = spawn_app(Options {
        mappings: vec![("alertmanager".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;

    let mut alertmanager =
        AlertmanagerProcess::start(&format!("{}/hooks/alertmanager", app.address), TOKEN);
    let client = reqwest::Client::new();
    alertmanager.ready(&client).await;

    let alerts = json!([
        {"labels": {"alertname": "HighLatency", "job": "api", "instance": "api-1:9100", "severity": "critical"},
         "annotations": {"summary": "p99 latency above 1s"},
         "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency"},
        {"labels": {"alertname": "DiskFull", "job": "api", "instance": "api-2:9100", "severity": "critical"},
         "annotations": {"summary": "/var is 97% full"},
         "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk"}
    ]);
    let res = client
        .post(format!("{}/api/v2/alerts", alertmanager.address))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_success(),
        "alerts refused: {}",
        res.status()
    );

    // Alertmanager groups them (group_by job, group_wait 1s) and posts one webhook.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body: SendBody = loop {
        let stored: Option<String> = app
            .db()
            .query_row("SELECT body FROM messages ORDER BY id LIMIT 1", [], |r| {
                r.get(0)
            })
            .ok();
        if let Some(text) = stored {
            break serde_json::from_str(&text).unwrap();
        }
        let events: i64 = app.count("SELECT COUNT(*) FROM events");
        assert!(
            Instant::now() < deadline,
            "no message stored within 30 s ({events} event(s) received)"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_valid_composite(&body);
    let card = &body.composite;
    assert!(
        card.head.title.starts_with("[FIRING:2] ") && card.head.title.ends_with(" CRITICAL"),
        "{}",
        card.head.title
    );
    let mut rows: Vec<(&str, &str)> = card
        .form
        .iter()
        .filter(|r| r.value.starts_with("firing: "))
        .map(|r| (r.label.as_str(), r.value.as_str()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("DiskFull api-2:9100", "firing: /var is 97% full"),
            ("HighLatency api-1:9100", "firing: p99 latency above 1s"),
        ],
        "one row per alert"
    );
    assert_eq!(
        card.form
            .iter()
            .find(|r| r.label == "Receiver")
            .map(|r| r.value.as_str()),
        Some("fxhook")
    );
    assert!(
        card.link
            .url
            .starts_with("http://prometheus.example:9090/graph?g0.expr="),
        "{}",
        card.link.url
    );
    drop(alertmanager);
    app.stop().await;
}
