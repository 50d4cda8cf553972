//! The built-in Alertmanager and Grafana mappings on real payloads (issue 16): cards an on-call
//! engineer can trust. Each payload's source is in `tests/fixtures/alertmanager/README.md` or
//! `tests/fixtures/grafana/README.md`; where a test changes one, it says what and why.

use serde_json::{Value, json};

use crate::catalogue_ops::{Card, Sender, bytes, fixture, fixture_json, fixtures_of};

const ALERTMANAGER_DOCS: &str = "https://prometheus.io/docs/alerting/latest/alertmanager/";

fn alertmanager(body: &Value) -> Card {
    Sender::shipped("alertmanager").card(&[], &bytes(body))
}

fn grafana(body: &Value) -> Card {
    Sender::shipped("grafana").card(&[], &bytes(body))
}

fn rows(card: &Card) -> Vec<(&str, &str)> {
    card.rows
        .iter()
        .map(|(l, v)| (l.as_str(), v.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Alertmanager: links

#[test]
fn an_alert_whose_generator_url_is_relative_links_to_prometheus_through_the_external_url() {
    let body = fixture_json("alertmanager/relative-generator-url.ns8-metrics.json");
    let generator = body["alerts"][0]["generatorURL"].as_str().unwrap();
    assert!(generator.starts_with("/prometheus/graph?"), "{generator}");

    let card = alertmanager(&body);

    assert_eq!(card.rule, "alert-group");
    assert_eq!(card.link_title, "Open in Prometheus");
    assert_eq!(
        card.link,
        format!("http://rl1.leader.cluster0.gs.nethserver.net:9093{generator}")
    );
    assert_eq!(card.title, "[FIRING:1] disk_full WARNING");
}

#[test]
fn open_in_prometheus_points_to_the_rules_page_not_to_alertmanager() {
    let body = fixture_json("alertmanager-0.25-firing.body.json");

    let card = alertmanager(&body);

    assert_eq!(card.link_title, "Open in Prometheus");
    assert_eq!(
        card.link,
        body["alerts"][0]["generatorURL"].as_str().unwrap()
    );
    assert_ne!(card.link, body["externalURL"].as_str().unwrap());
}

#[test]
fn an_alert_without_a_usable_generator_url_links_to_alertmanager_and_the_card_is_never_lost() {
    // Alerts posted to Alertmanager's API without a generatorURL arrive with "".
    let mut posted = fixture_json("alertmanager-0.25-firing.body.json");
    posted["alerts"][0]["generatorURL"] = "".into();
    let card = alertmanager(&posted);
    assert_eq!(card.rule, "alert-group-without-source");
    assert_eq!(
        (card.link_title.as_str(), card.link.as_str()),
        ("Open in Alertmanager", "http://vm:9093")
    );
    assert_eq!(card.title, "[FIRING:1] WebhookGatewayPerfTest WARNING");

    // A relative generatorURL and no externalURL to resolve it against.
    let mut relative = fixture_json("alertmanager/relative-generator-url.ns8-metrics.json");
    relative.as_object_mut().unwrap().remove("externalURL");
    let card = alertmanager(&relative);
    assert_eq!(card.link_title, "Open in Alertmanager");
    assert_eq!(card.link, ALERTMANAGER_DOCS);

    // An externalURL without a host (`http://:9093`, as alertmonitor's Alertmanager sent it).
    let mut hostless = fixture_json("alertmanager/summary-in-labels.alertmonitor.json");
    for alert in hostless["alerts"].as_array_mut().unwrap() {
        alert["generatorURL"] = "/graph?g0.expr=up".into();
    }
    assert_eq!(alertmanager(&hostless).link, ALERTMANAGER_DOCS);
}

// ---------------------------------------------------------------------------------------------
// Alertmanager: the first line

#[test]
fn the_first_line_is_the_lead_alerts_annotation_then_its_labels_then_its_name_never_the_group_key()
{
    let mut body = fixture_json("alertmanager/summary-in-labels.alertmonitor.json");
    let group_key = body["groupKey"].as_str().unwrap().to_string();

    // No common annotation; the alerts carry a description annotation and a summary label.
    let card = alertmanager(&body);
    assert_eq!(
        card.first.as_deref(),
        Some("172.29.254.30 does not reply to ICMP pings")
    );

    // Without annotations, the summary in the labels.
    for alert in body["alerts"].as_array_mut().unwrap() {
        alert["annotations"] = json!({});
    }
    let card = alertmanager(&body);
    assert_eq!(
        card.first.as_deref(),
        Some("No physical connection to 172.29.254.30")
    );

    // Without either, the alert's name.
    for alert in body["alerts"].as_array_mut().unwrap() {
        alert["labels"].as_object_mut().unwrap().remove("summary");
    }
    let card = alertmanager(&body);
    assert_eq!(card.first.as_deref(), Some("ICMP ping failed"));
    assert!(!card.first.unwrap().contains(&group_key));
}

#[test]
fn a_multi_line_description_gives_its_first_line_and_the_remark_keeps_the_rest() {
    let mut body = fixture_json("alertmanager/relative-generator-url.ns8-metrics.json");
    body["alerts"][0]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("summary");
    body["commonAnnotations"]
        .as_object_mut()
        .unwrap()
        .remove("summary");

    let card = alertmanager(&body);

    assert_eq!(
        card.first.as_deref(),
        Some("Disk is almost full (< 10% left)")
    );
    assert!(
        card.remark
            .as_deref()
            .is_some_and(|r| r.contains("VALUE = 0.009680310021459396")),
        "{card:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Alertmanager: rows

#[test]
fn alerts_that_differ_only_in_annotations_get_rows_that_say_what_is_their_own() {
    let card = alertmanager(&fixture_json(
        "alertmanager/same-labels-differing-annotations.zulip.json",
    ));

    assert_eq!(
        card.first.as_deref(),
        Some("High CPU core temperature"),
        "the common summary leads"
    );
    assert_eq!(
        rows(&card)[..2],
        [
            (
                "High CPU Temperature",
                "firing (host=andromeda): CPU core temperature is 34.75C"
            ),
            (
                "High CPU Temperature",
                "firing (host=andromeda): CPU core temperature is 17.625C"
            ),
        ],
        "each row says its own description, not the summary they share"
    );
}

#[test]
fn alerts_that_share_their_text_are_told_apart_by_the_labels_not_common_to_the_group() {
    // The zulip fixture with both alerts saying the same and on different hosts.
    let mut body = fixture_json("alertmanager/same-labels-differing-annotations.zulip.json");
    body["alerts"][1]["labels"]["host"] = "betelgeuse".into();
    body["alerts"][1]["annotations"] = body["alerts"][0]["annotations"].clone();
    body["commonAnnotations"] = body["alerts"][0]["annotations"].clone();

    let card = alertmanager(&body);

    assert_eq!(
        rows(&card)[..2],
        [
            (
                "High CPU Temperature",
                "firing (host=andromeda): High CPU core temperature"
            ),
            (
                "High CPU Temperature",
                "firing (host=betelgeuse): High CPU core temperature"
            ),
        ]
    );
}

#[test]
fn a_row_without_an_instance_is_named_by_its_alert_alone_with_no_stray_separator() {
    let mut body = fixture_json("alertmanager-0.25-firing.body.json");
    body["alerts"][0]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("instance");
    body["commonLabels"]
        .as_object_mut()
        .unwrap()
        .remove("instance");
    body["alerts"][0]["annotations"] = json!({});
    body["commonAnnotations"] = json!({});

    let card = alertmanager(&body);

    assert_eq!(
        card.rows[0],
        (
            "WebhookGatewayPerfTest".into(),
            "firing: webhook-gateway".into()
        ),
        "without any text the row names the job, as before"
    );
    for (label, value) in rows(&card) {
        for text in [label, value] {
            assert!(
                !text.starts_with([':', ' ', '(']) && !text.ends_with([':', ' ']),
                "{text:?} in {card:?}"
            );
        }
    }
}

#[test]
fn an_alertmanager_group_with_firing_and_resolved_alerts_counts_them_apart_and_leads_with_what_fires()
 {
    // alertmonitor's group, its first alert resolved since.
    let mut body = fixture_json("alertmanager/summary-in-labels.alertmonitor.json");
    body["alerts"][0]["status"] = "resolved".into();
    body["alerts"][0]["endsAt"] = "2019-09-27T16:40:00Z".into();

    let card = alertmanager(&body);

    assert_eq!(card.title, "[FIRING:2, RESOLVED:1] ICMP ping failed MAJOR");
    assert_eq!(
        card.first.as_deref(),
        Some("172.29.254.50 does not reply to ICMP pings"),
        "the first firing alert leads"
    );
    assert_eq!(
        rows(&card)[..3],
        [
            (
                "ICMP ping failed 172.29.254.50",
                "firing: 172.29.254.50 does not reply to ICMP pings"
            ),
            (
                "ICMP ping failed 172.29.254.66",
                "firing: 172.29.254.66 does not reply to ICMP pings"
            ),
            (
                "ICMP ping failed 172.29.254.30",
                "resolved: 172.29.254.30 does not reply to ICMP pings"
            ),
        ]
    );
    assert_eq!(card.row("Ended"), None, "the group still fires");
}

// ---------------------------------------------------------------------------------------------
// Grafana

#[test]
fn a_grafana_group_with_one_firing_and_two_resolved_alerts_is_counted_as_grafana_counts_it() {
    let body = fixture_json("grafana/mixed-firing-resolved.zulip.json");
    assert_eq!(body["title"], "[FIRING:1, RESOLVED:2]  (true)");

    let card = grafana(&body);

    assert_eq!(
        card.title, "[FIRING:1, RESOLVED:2] Second webhook test, Test alert",
        "counted apart, each name once"
    );
    assert_eq!(
        card.first.as_deref(),
        Some("Testing **another** failing alert"),
        "the firing alert leads, not the resolved one listed first"
    );
    assert_eq!(
        rows(&card)[..3],
        [
            (
                "Second webhook test",
                "firing: Testing **another** failing alert — B0=1"
            ),
            (
                "Test alert badhost.example.com",
                "resolved (deploy=prod, job=rabbitmq): This is a summary field, failure on badhost.example.com — B=17, C=1"
            ),
            (
                "Test alert otherhost.example.com",
                "resolved (deploy=prod, job=rabbitmq): This is a summary field, failure on otherhost.example.com — B=24, C=1"
            ),
        ]
    );
    assert_eq!(card.row("Ended"), None, "a firing card has not ended");
    assert_eq!(
        card.row("Started"),
        Some("2022-06-17 09:03"),
        "when the firing alert started"
    );
    assert_eq!(
        card.link, "https://grafana.example.com/alerting/grafana/_0rkK_C7z/view",
        "the firing alert's rule"
    );
    assert!(
        card.labels()
            .iter()
            .all(|l| !l.starts_with("Silence Test alert")),
        "no silence link for what is resolved: {card:?}"
    );
}

#[test]
fn grafana_values_read_as_short_a_equals_text_in_the_alerts_own_row() {
    let body = fixture_json("grafana/values.zulip.json");
    assert!(body["alerts"][0]["valueString"].as_str().unwrap().len() > 200);

    let card = grafana(&body);

    assert_eq!(
        card.rows[0],
        (
            "Memory (copy)".into(),
            "firing: High memory usage — A=2473545728, B=0, C=1, minute=9".into()
        )
    );
    assert!(
        card.labels().iter().all(|l| !l.starts_with("Values")),
        "no row of raw values: {card:?}"
    );

    // Grafana 9 sends only valueString: cut down to the same form.
    let mut older = body.clone();
    older["alerts"][0].as_object_mut().unwrap().remove("values");
    assert_eq!(
        grafana(&older).rows[0].1,
        "firing: High memory usage — A=2.473545728e+09, B=0, C=1, minute=9"
    );
}

#[test]
fn a_grafana_alert_without_labels_uses_grafanas_own_title_and_message() {
    let body = fixture_json("grafana/no-labels.zulip.json");

    let card = grafana(&body);

    assert_eq!(card.rule, "alert-group-unnamed");
    assert_eq!(card.title, "[RESOLVED:1] (TestAlert Grafana)");
    assert_eq!(card.first.as_deref(), Some("Webhook test message."));
    assert_eq!(
        card.labels(),
        ["Started", "Ended"],
        "no row of an alert that says nothing"
    );
    assert_eq!(card.link, "https://zuliptestingwh2.grafana.net/");
}

#[test]
fn grafanas_default_message_is_not_taken_for_the_first_line() {
    let body = fixture_json("grafana/values.zulip.json");
    assert!(body["message"].as_str().unwrap().starts_with("**Firing**"));

    let card = grafana(&body);

    assert_eq!(card.first.as_deref(), Some("High memory usage"));
    assert_eq!(card.remark, None);
}

#[test]
fn a_relative_grafana_rule_address_is_resolved_against_its_external_url() {
    // Grafana's docs show `?orgId=1` as the generator URL of some alerts.
    let mut body = fixture_json("grafana/values.zulip.json");
    body["alerts"][0]["generatorURL"] = "?orgId=1".into();

    assert_eq!(grafana(&body).link, "https://play.grafana.org/?orgId=1");
}

// ---------------------------------------------------------------------------------------------
// Every alert card

#[test]
fn every_alert_card_has_a_subject_no_empty_or_repeated_rows_no_null_and_no_long_raw_json() {
    let mut cases: Vec<(&str, String, Vec<u8>)> = vec![(
        "alertmanager",
        "alertmanager-0.25-firing.body.json".into(),
        fixture("alertmanager-0.25-firing.body.json"),
    )];
    for (file, body) in fixtures_of("alertmanager") {
        cases.push(("alertmanager", file, body));
    }
    for (file, body) in fixtures_of("grafana") {
        // The alert-shaped bodies; custom templates are the custom-body rules' business.
        if serde_json::from_slice::<Value>(&body).unwrap()["alerts"][0].is_object() {
            cases.push(("grafana", file, body));
        }
    }
    assert!(cases.len() >= 9, "{} cases", cases.len());

    for (mapping, file, body) in &cases {
        let card = Sender::shipped(mapping).card(&[], body);
        let context = format!("{mapping} on {file}: {card:#?}");
        assert!(card.title.len() > "[FIRING:1] ".len(), "{context}");
        assert!(card.link.starts_with("http"), "{context}");
        let mut texts = vec![card.title.as_str(), card.link.as_str()];
        texts.extend(card.first.as_deref());
        texts.extend(card.remark.as_deref());
        for (label, value) in &card.rows {
            assert!(
                !label.trim().is_empty() && !value.trim().is_empty(),
                "{context}"
            );
            assert!(
                !(value.len() > 200 && value.starts_with(['{', '['])),
                "raw JSON in {context}"
            );
            texts.extend([label.as_str(), value.as_str()]);
        }
        for text in texts {
            assert!(
                !text
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|w| w == "null"),
                "a literal null in {context}"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for row in &card.rows {
            assert!(seen.insert(row), "repeated row {row:?} in {context}");
        }
    }
}
