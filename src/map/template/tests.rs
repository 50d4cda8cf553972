//! The template language, tested through `Template::compile` and `Template::render`.

use super::*;
use serde_json::json;

const ROW: CompileOptions = CompileOptions {
    allow_element: true,
};
pub(super) const TOP: CompileOptions = CompileOptions {
    allow_element: false,
};

pub(super) fn payload() -> Value {
    json!({
        "ref": "refs/heads/feature/x",
        "title": "  Fix the build  ",
        "message": "First line   \r\nsecond line\nthird",
        "empty": "",
        "none": null,
        "zero": 0,
        "ratio": 2.5,
        "whole": 3.0,
        "flag": true,
        "labels": ["bug", "ui"],
        "no_labels": [],
        "meta": {"a": 1, "b": "x"},
        "cjk": "你好世界，这是一个很长的标题😀😀",
        "created": "2024-03-01T08:30:00Z",
        "epoch": 1709281800,
        "epoch_ms": 1709281800123i64,
        "commits": [
            {"id": "a1", "msg": "add x|y support", "author": {"name": "ada"}},
            {"id": "b2", "msg": "fix }", "author": {"name": "bob"}}
        ]
    })
}

pub(super) fn render_with(text: &str, root: &Value, tz: chrono_tz::Tz) -> String {
    let template = Template::compile(text, &TOP).unwrap();
    template.render(&Scope::new(root, tz))
}

pub(super) fn render(text: &str) -> String {
    render_with(text, &payload(), chrono_tz::UTC)
}

pub(super) fn error(text: &str) -> TemplateError {
    Template::compile(text, &TOP).unwrap_err()
}

#[test]
fn plain_text_renders_unchanged() {
    assert_eq!(render("hello, world"), "hello, world");
}

#[test]
fn a_path_is_replaced_by_its_value() {
    assert_eq!(render("branch: {$.ref}!"), "branch: refs/heads/feature/x!");
}

#[test]
fn whitespace_around_tokens_is_allowed() {
    assert_eq!(
        render("{  $.ref |  trim_prefix ( 'refs/heads/' )   |upper  }"),
        "FEATURE/X"
    );
}

#[test]
fn filters_are_applied_left_to_right() {
    assert_eq!(
        render("{$.ref | trim_prefix('refs/heads/') | upper}"),
        "FEATURE/X"
    );
}

#[test]
fn a_missing_value_renders_as_nothing() {
    assert_eq!(render("[{$.nope.deeper}]"), "[]");
}

#[test]
fn a_missing_value_falls_back_to_the_default() {
    assert_eq!(render("{$.nope | default('n/a')}"), "n/a");
    assert_eq!(render("{$.none | default('n/a')}"), "n/a");
}

#[test]
fn an_empty_string_or_empty_list_also_falls_back_to_the_default() {
    assert_eq!(render("{$.empty | default('-')}"), "-");
    assert_eq!(render("{$.no_labels | default('-')}"), "-");
}

#[test]
fn a_present_value_ignores_the_default() {
    assert_eq!(render("{$.zero | default('-')}"), "0");
    assert_eq!(render("{$.flag | default(\"-\")}"), "true");
}

#[test]
fn default_accepts_an_integer() {
    assert_eq!(render("{$.nope | default(0) | count}"), "1");
    assert_eq!(render("{$.nope | default(-5)}"), "-5");
}

#[test]
fn count_measures_lists_objects_and_missing_values() {
    assert_eq!(render("{$.labels | count}"), "2");
    assert_eq!(render("{$.meta | count}"), "2");
    assert_eq!(render("{$.nope | count}"), "0");
    assert_eq!(render("{$.ref | count}"), "1");
    assert_eq!(render("{$.commits[*].id | count}"), "2");
}

#[test]
fn several_matches_become_a_list() {
    assert_eq!(render("{$.commits[*].id}"), "a1, b2");
    assert_eq!(render("{$.commits[*].id | json}"), r#"["a1","b2"]"#);
}

#[test]
fn a_single_wildcard_match_is_the_value_itself() {
    let root = json!({"items": [{"n": "only"}]});
    assert_eq!(
        render_with("{$.items[*].n | json}", &root, chrono_tz::UTC),
        "\"only\""
    );
}

#[test]
fn truncate_keeps_short_text_whole() {
    assert_eq!(render("{$.labels[0] | truncate(3)}"), "bug");
    assert_eq!(render("{$.labels[0] | truncate(10)}"), "bug");
}

#[test]
fn truncate_cuts_long_text_and_ends_with_an_ellipsis() {
    assert_eq!(render("{'abcdef' | truncate(4)}"), "abc…");
    assert_eq!(render("{'abcdef' | truncate(1)}"), "…");
}

#[test]
fn truncate_counts_chinese_characters_and_emoji_as_one_char_each() {
    let out = render("{$.cjk | truncate(5)}");
    assert_eq!(out, "你好世界…");
    assert_eq!(out.chars().count(), 5);
    let out = render("{$.cjk | truncate(16)}");
    assert_eq!(out, "你好世界，这是一个很长的标题😀😀");
    let out = render("{$.cjk | truncate(15)}");
    assert_eq!(out, "你好世界，这是一个很长的标题…");
    assert_eq!(render("{'ab😀😀cd' | truncate(4)}"), "ab😀…");
    assert_eq!(render("{'😀😀😀' | truncate(2)}"), "😀…");
}

#[test]
fn truncate_renders_non_text_values_first() {
    assert_eq!(render("{$.labels | truncate(5)}"), "bug,…");
}

#[test]
fn first_line_stops_at_the_first_line_break_and_trims_its_end() {
    assert_eq!(render("<{$.message | first_line}>"), "<First line>");
    assert_eq!(render("<{'one line  ' | first_line}>"), "<one line>");
}

#[test]
fn join_uses_a_comma_by_default_and_a_given_separator_otherwise() {
    assert_eq!(render("{$.labels | join}"), "bug, ui");
    assert_eq!(render("{$.labels | join(' / ')}"), "bug / ui");
    assert_eq!(render("{$.commits[*].author.name | join('+')}"), "ada+bob");
}

#[test]
fn join_renders_a_non_list_as_text() {
    assert_eq!(render("{$.zero | join('-')}"), "0");
    assert_eq!(render("{$.ref | join('-')}"), "refs/heads/feature/x");
}

#[test]
fn trim_prefix_and_trim_suffix_remove_only_what_matches() {
    assert_eq!(render("{$.ref | trim_prefix('refs/heads/')}"), "feature/x");
    assert_eq!(
        render("{$.ref | trim_prefix('refs/tags/')}"),
        "refs/heads/feature/x"
    );
    assert_eq!(render("{$.ref | trim_suffix('/x')}"), "refs/heads/feature");
    assert_eq!(
        render("{$.ref | trim_suffix('/y')}"),
        "refs/heads/feature/x"
    );
}

#[test]
fn replace_substitutes_every_occurrence() {
    assert_eq!(
        render("{$.ref | replace('/', ' > ')}"),
        "refs > heads > feature > x"
    );
    assert_eq!(
        render("{$.ref | replace('zzz', '!')}"),
        "refs/heads/feature/x"
    );
}

#[test]
fn upper_lower_and_trim_change_case_and_whitespace() {
    assert_eq!(render("{'MiXed' | upper}"), "MIXED");
    assert_eq!(render("{'MiXed' | lower}"), "mixed");
    assert_eq!(render("[{$.title | trim}]"), "[Fix the build]");
}

#[test]
fn string_filters_keep_a_missing_value_missing() {
    assert_eq!(render("{$.nope | upper | count}"), "0");
    assert_eq!(render("{$.nope | trim | default('none')}"), "none");
}

#[test]
fn date_formats_rfc3339_text_in_the_scope_time_zone() {
    let root = payload();
    assert_eq!(
        render_with("{$.created | date}", &root, chrono_tz::Asia::Shanghai),
        "2024-03-01 16:30"
    );
    assert_eq!(
        render_with(
            "{$.created | date('%Y-%m-%d %H:%M')}",
            &root,
            chrono_tz::UTC
        ),
        "2024-03-01 08:30"
    );
}

#[test]
fn date_accepts_unix_seconds_and_milliseconds() {
    let root = payload();
    let tz = chrono_tz::Asia::Shanghai;
    assert_eq!(
        render_with("{$.epoch | date}", &root, tz),
        "2024-03-01 16:30"
    );
    assert_eq!(
        render_with("{$.epoch_ms | date('%H:%M:%S%.3f')}", &root, tz),
        "16:30:00.123"
    );
}

#[test]
fn date_accepts_fractional_seconds() {
    let root = json!({"t": 1709281800.5});
    assert_eq!(
        render_with("{$.t | date('%H:%M:%S%.3f')}", &root, chrono_tz::UTC),
        "08:30:00.500"
    );
}

#[test]
fn a_value_that_is_not_a_date_passes_through_unchanged() {
    assert_eq!(render("{$.ref | date}"), "refs/heads/feature/x");
    assert_eq!(render("{$.flag | date}"), "true");
    assert_eq!(render("[{$.nope | date}]"), "[]");
    let huge = json!({"t": 1e300, "n": -99999999999999999i64});
    assert_eq!(render_with("{$.t | date}", &huge, chrono_tz::UTC), "1e+300");
    assert_eq!(
        render_with("{$.n | date}", &huge, chrono_tz::UTC),
        "-99999999999999999"
    );
}

#[test]
fn json_prints_compact_json() {
    assert_eq!(render("{$.meta | json}"), r#"{"a":1,"b":"x"}"#);
    assert_eq!(render("{$.ref | json}"), r#""refs/heads/feature/x""#);
    assert_eq!(render("{$.nope | json}"), "null");
}

#[test]
fn values_render_as_text_by_type() {
    assert_eq!(
        render("{$.zero}|{$.ratio}|{$.whole}|{$.flag}"),
        "0|2.5|3|true"
    );
    assert_eq!(render("{$.labels}"), "bug, ui");
    assert_eq!(render("{$.meta}"), r#"{"a":1,"b":"x"}"#);
    assert_eq!(render("[{$.none}]"), "[]");
}

#[test]
fn doubled_braces_are_literal_braces() {
    assert_eq!(render("{{literal}} {{{$.zero}}}"), "{literal} {0}");
}

#[test]
fn a_quoted_literal_can_be_the_primary() {
    assert_eq!(render("{'it\\'s' | upper}"), "IT'S");
    assert_eq!(render("{\"a}b|c\"}"), "a}b|c");
    assert_eq!(render("{'back\\\\slash'}"), "back\\slash");
}

#[test]
fn a_jsonpath_filter_may_contain_pipes_and_braces_inside_quotes() {
    assert_eq!(render("{$.commits[?@.msg == 'add x|y support'].id}"), "a1");
    assert_eq!(render("{$.commits[?@.msg == 'fix }'].id | upper}"), "B2");
    assert_eq!(
        render("{$.commits[?(@.id == 'a1' || @.id == 'b2')].author.name | join('|')}"),
        "ada|bob"
    );
}

#[test]
fn a_relative_path_reads_from_the_current_row() {
    let root = payload();
    let template =
        Template::compile("{@.id}: {@.msg | first_line} by {@.author.name}", &ROW).unwrap();
    let rows: Vec<String> = root["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| template.render(&Scope::new(&root, chrono_tz::UTC).with_element(row)))
        .collect();
    assert_eq!(rows, ["a1: add x|y support by ada", "b2: fix } by bob"]);
}

#[test]
fn a_bare_at_sign_renders_the_row_itself() {
    let root = payload();
    let row = json!("label-1");
    let template = Template::compile("<{@ | upper}>", &ROW).unwrap();
    assert_eq!(
        template.render(&Scope::new(&root, chrono_tz::UTC).with_element(&row)),
        "<LABEL-1>"
    );
}

#[test]
fn a_relative_path_without_a_row_renders_as_missing() {
    let root = payload();
    let template = Template::compile("{@.id | default('?')}", &ROW).unwrap();
    assert_eq!(template.render(&Scope::new(&root, chrono_tz::UTC)), "?");
}

#[test]
fn an_empty_template_is_an_empty_literal() {
    assert!(Template::compile("", &TOP).unwrap().parts.is_empty());
    assert!(!Template::compile(" ", &TOP).unwrap().parts.is_empty());
    assert!(
        !Template::compile("{$.nope}", &TOP)
            .unwrap()
            .parts
            .is_empty()
    );
}

#[test]
fn a_template_keeps_its_text_as_written_and_debug_shows_it() {
    let text = "{$.ref | upper} x";
    let template = Template::compile(text, &TOP).unwrap();
    assert_eq!(template.source, text);
    assert_eq!(format!("{template:?}"), format!("Template({text:?})"));
}

#[test]
fn an_unknown_filter_is_reported_at_its_name() {
    let err = error("ab {$.ref | uper}");
    assert_eq!(err.offset, 12);
    assert!(
        err.message
            .starts_with("unknown filter 'uper' (known: default, count,"),
        "{}",
        err.message
    );
}

#[test]
fn a_bad_jsonpath_is_reported_at_the_bad_char() {
    let err = error("x {$.repo.#name}");
    assert_eq!(err.offset, 10, "{err:?}");
    assert!(
        err.message.starts_with("invalid JSONPath"),
        "{}",
        err.message
    );
}

#[test]
fn a_bad_jsonpath_offset_counts_chars_before_it() {
    let err = error("分支 {$.名字.#}");
    assert_eq!(err.offset, 9, "{err:?}");
}

#[test]
fn an_unclosed_brace_is_reported_at_the_brace() {
    let err = error("ab {$.ref | upper");
    assert_eq!((err.offset, err.message.as_str()), (3, "unclosed '{'"));
    assert_eq!(error("你好{$.a").offset, 2);
    assert_eq!(error("{").offset, 0);
    assert_eq!(error("x {$.a[?@.b == 'y}").offset, 2);
}

#[test]
fn a_lone_closing_brace_is_an_error() {
    let err = error("a } b");
    assert_eq!(err.offset, 2);
    assert_eq!(
        err.message,
        "unmatched '}' (write '}}' for a literal brace)"
    );
}

#[test]
fn an_element_path_is_rejected_outside_a_row_list() {
    let err = error("title: {@.name}");
    assert_eq!(err.offset, 8);
    assert_eq!(err.message, "@ is only allowed inside a row list (each:)");
}

#[test]
fn filter_arguments_are_checked_at_compile_time() {
    let err = error("{$.a | truncate}");
    assert_eq!(
        (err.offset, err.message.as_str()),
        (7, "truncate takes one integer argument")
    );
    let err = error("{$.a | truncate('x')}");
    assert_eq!(
        (err.offset, err.message.as_str()),
        (16, "truncate takes one integer argument")
    );
    let err = error("{$.a | truncate(0)}");
    assert_eq!(err.offset, 16);
    let err = error("{$.a | truncate(3, 4)}");
    assert_eq!(err.offset, 19);
    let err = error("{$.a | upper('x')}");
    assert_eq!(
        (err.offset, err.message.as_str()),
        (13, "upper takes no arguments")
    );
    let err = error("{$.a | replace('x')}");
    assert_eq!(err.offset, 7);
    let err = error("{$.a | replace('x', 1)}");
    assert_eq!(err.offset, 20);
    let err = error("{$.a | default}");
    assert_eq!(err.offset, 7);
    let err = error("{$.a | trim_prefix(1)}");
    assert_eq!(err.offset, 19);
    let err = error("{$.a | join(',', ',')}");
    assert_eq!(err.offset, 17);
    let err = error("{$.a | truncate(x)}");
    assert_eq!(err.offset, 16);
    let err = error("{$.a | truncate(99999999999999999999)}");
    assert_eq!(err.offset, 16);
}

#[test]
fn an_invalid_date_format_is_rejected_at_compile_time() {
    let err = error("{$.created | date('%Q')}");
    assert_eq!(err.offset, 18);
    assert!(
        err.message.contains("invalid date format"),
        "{}",
        err.message
    );
}

#[test]
fn malformed_expressions_are_reported_where_they_go_wrong() {
    assert_eq!(error("a {} b").offset, 2);
    assert_eq!(error("{ref}").offset, 1);
    assert_eq!(error("{$.a |}").offset, 6);
    assert_eq!(error("{'abc}").offset, 1);
    assert_eq!(error("{'abc' x}").offset, 7);
    assert_eq!(error("{$.a | truncate(3 x)}").offset, 18);
}

#[test]
fn rendering_never_fails_on_odd_payloads() {
    let template = Template::compile(
        "{$.a | date | truncate(2) | first_line | join | count | json}{$..* | count}",
        &TOP,
    )
    .unwrap();
    for root in [
        json!(null),
        json!([]),
        json!("x"),
        json!({"a": {"b": [1, {"c": 2}]}}),
        json!({"a": 1e300}),
        json!({"a": u64::MAX}),
    ] {
        let _ = template.render(&Scope::new(&root, chrono_tz::UTC));
    }
}

#[test]
fn default_can_fall_back_to_another_path() {
    assert_eq!(render("{$.none | default($.ref)}"), "refs/heads/feature/x");
    assert_eq!(render("{$.empty | default($.meta.b) | upper}"), "X");
    assert_eq!(render("{$.title | default($.ref)}"), "  Fix the build  ");
    assert_eq!(render("{$.none | default($.missing)}"), "");
}

#[test]
fn left_keeps_the_first_characters_without_an_ellipsis() {
    assert_eq!(render("{$.commits[0].msg | left(3)}"), "add");
    assert_eq!(render("{$.cjk | left(2)}"), "你好");
    assert_eq!(render("{$.zero | left(5)}"), "0");
}

#[test]
fn a_path_argument_is_refused_where_the_filter_row_takes_none() {
    let err = Template::compile("{$.a | join($.b)}", &TOP).unwrap_err();
    assert_eq!(err.offset, 12);
    let err = Template::compile("{$.a | default(@.b)}", &TOP).unwrap_err();
    assert!(err.message.contains("@ is only allowed"), "{}", err.message);
}

#[test]
fn first_takes_the_first_of_several_matches_and_scalar_drops_lists_and_objects() {
    assert_eq!(render("{$.labels | first}"), "bug");
    assert_eq!(render("{$.commits[*].id | first}"), "a1");
    assert_eq!(render("{$.no_labels | first | default('none')}"), "none");
    assert_eq!(render("{$.ref | first}"), "refs/heads/feature/x");
    assert_eq!(render("{$.meta | scalar}"), "");
    assert_eq!(render("{$.zero | scalar}"), "0");
}

#[test]
fn first_url_finds_the_shallowest_address_and_skips_the_excluded_ones() {
    let root = json!({"a": {"deep": "https://deep/x"}, "img": "https://x/logo.png", "top": "http://top/y", "n": 1});
    let t = |text: &str| {
        Template::compile(text, &TOP)
            .unwrap()
            .render(&Scope::new(&root, chrono_tz::UTC))
    };
    assert_eq!(t("{$ | first_url('[.]png$')}"), "http://top/y");
    assert_eq!(t("{$.a | first_url}"), "https://deep/x");
    assert_eq!(t("{$.n | first_url | default('none')}"), "none");
    assert!(Template::compile("{$ | first_url('(')}", &TOP).is_err());
}
