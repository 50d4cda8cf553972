//! Tests of the filters added for the cards of issues 16 and 17 (durations, tails, addresses,
//! fallbacks, captures, wraps); the older filters' tests are in `tests.rs`.

use super::tests::{TOP, error, render, render_with};
use super::*;
use serde_json::json;

#[test]
fn the_time_between_two_dates_reads_as_a_duration_in_the_cards_language() {
    let root = json!({
        "started": "2024-03-01T08:30:00Z",
        "ended": "2024-03-01T09:35:20Z",
        "ms": 192_000,
        "words": "n/a"
    });
    let text = "{$.ended | since($.started) | duration}";
    let template = Template::compile(text, &TOP).unwrap();
    let utc = chrono_tz::UTC;
    assert_eq!(template.render(&Scope::new(&root, utc)), "1 h 5 min");
    let zh = Scope {
        locale: crate::card::Locale::ZhCn,
        ..Scope::new(&root, utc)
    };
    assert_eq!(template.render(&zh), "1 小时 5 分钟");
    assert_eq!(
        render_with("{$.ms | duration('ms')}", &root, utc),
        "3 min 12 s"
    );
    assert_eq!(render_with("{$.words | duration}", &root, utc), "n/a");
    assert_eq!(
        render_with("{$.started | since($.ended) | default('-')}", &root, utc),
        "-",
        "a later `earlier` gives no duration"
    );
    assert!(Template::compile("{$.x | duration('h')}", &TOP).is_err());
}

#[test]
fn tail_keeps_the_end_of_a_long_text_behind_an_ellipsis() {
    let root = json!({"log": "Started by user\nBuilding…\nERROR: script returned exit code 1\nFinished: FAILURE\n"});
    let t = |text: &str| render_with(text, &root, chrono_tz::UTC);
    assert_eq!(t("{$.log | trim | tail(18)}"), "…Finished: FAILURE");
    assert_eq!(t("{$.log | trim | tail(19)}"), "…\nFinished: FAILURE");
    assert_eq!(t("{$.log | trim | tail(3)}"), "…RE");
    assert_eq!(render("{$.cjk | tail(3)}"), "…😀😀");
    assert_eq!(render("{$.ref | tail(100)}"), "refs/heads/feature/x");
    assert_eq!(render("{$.none | tail(3) | default('-')}"), "-");
    assert_eq!(error("{$.ref | tail(0)}").offset, 14);
}

#[test]
fn url_join_makes_a_relative_address_absolute_against_a_base() {
    let root = json!({"url": "job/team/job/api/12/", "abs": "https://ci.example.com/job/x/1/",
                      "site": "https://ci.example.com/jenkins", "empty": ""});
    let t = |text: &str| render_with(text, &root, chrono_tz::UTC);
    assert_eq!(
        t("{$.url | url_join('https://ci.example.com/')}"),
        "https://ci.example.com/job/team/job/api/12/"
    );
    assert_eq!(
        t("{$.url | url_join($.site)}"),
        "https://ci.example.com/jenkins/job/team/job/api/12/",
        "the base is a folder"
    );
    assert_eq!(
        t("{$.abs | url_join('https://other.example/')}"),
        "https://ci.example.com/job/x/1/",
        "an absolute address is kept"
    );
    assert_eq!(t("{$.url | url_join('') | default('none')}"), "none");
    assert_eq!(t("{$.url | url_join($.missing) | default('none')}"), "none");
    assert_eq!(t("{$.empty | url_join($.site) | default('none')}"), "none");
    assert_eq!(
        error("{$.url | url_join('ci.example.com')}").message,
        "url_join base \"ci.example.com\" is not an http(s) address (write '' for none)"
    );
    assert_eq!(error("{$.url | url_join(3)}").offset, 18);
}

#[test]
fn otherwise_renders_its_template_only_when_the_value_is_blank() {
    assert_eq!(
        render("{$.none | otherwise('{$.commits[0].id}-{$.labels | join(\"+\")}')}"),
        "a1-bug+ui"
    );
    assert_eq!(
        render("{$.empty | otherwise('x {$.ref | upper}')}"),
        "x REFS/HEADS/FEATURE/X"
    );
    assert_eq!(render("{$.no_labels | otherwise('none')}"), "none");
    assert_eq!(
        render("{$.ref | otherwise('unused {$.title}')}"),
        "refs/heads/feature/x"
    );
    assert_eq!(
        render("{$.none | otherwise('{$.missing}') | default('still blank')}"),
        "still blank",
        "a fallback that renders empty stays missing"
    );
    let err = error("{$.none | otherwise('{$.a | nope}')}");
    assert_eq!(err.offset, 20);
    assert!(
        err.message
            .starts_with("in the template of otherwise: unknown filter 'nope'"),
        "{}",
        err.message
    );
}

#[test]
fn capture_keeps_what_the_first_group_matches() {
    let root =
        json!({"url": "https://sentry.io/api/0/projects/acme/front-end/events/e1/", "n": 42});
    let t = |text: &str| render_with(text, &root, chrono_tz::UTC);
    assert_eq!(
        t("{$.url | capture('/projects/[^/]+/([^/]+)/')}"),
        "front-end"
    );
    assert_eq!(
        t("{$.url | capture('https?://[^/]+')}"),
        "https://sentry.io"
    );
    assert_eq!(
        t("{$.url | capture('/issues/(\\d+)/') | default('-')}"),
        "-"
    );
    assert_eq!(t("{$.n | capture('\\d')}"), "4");
    assert_eq!(t("{$.none | capture('.') | default('-')}"), "-");
    assert!(
        error("{$.url | capture('(')}")
            .message
            .contains("invalid regex")
    );
}

#[test]
fn wrap_surrounds_a_present_value_and_leaves_a_blank_one_out() {
    assert_eq!(render("MR{$.zero | wrap(' !', '')} merged"), "MR !0 merged");
    assert_eq!(render("MR{$.none | wrap(' !', '')} merged"), "MR merged");
    assert_eq!(render("[{$.empty | wrap('<', '>')}]"), "[]");
    assert_eq!(render("[{$.no_labels | wrap('<', '>')}]"), "[]");
    assert_eq!(render("[{$.missing | wrap('<', '>')}]"), "[]");
    assert_eq!(render("{$.labels | wrap('', ':')}x"), "bug, ui:x");
    assert_eq!(
        render("{$.flag | wrap('(', ')') | default('none')}"),
        "(true)"
    );
    assert_eq!(
        render("{$.none | wrap('(', ')') | default('none')}"),
        "none"
    );
}
