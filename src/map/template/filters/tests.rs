//! The filter table against itself and against its documentation.

use std::collections::BTreeSet;

use super::FILTERS;

/// The filter names in the first column of the filter table of `docs/mapping.md`'s
/// "Templates" section: each backticked `name` or `name(args)` there.
fn documented_filters() -> BTreeSet<String> {
    let doc = include_str!("../../../../docs/mapping.md");
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Templates\n"))
        .expect("docs/mapping.md has a Templates section");
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split(" | ").next().unwrap_or_default();
        for code in first_cell.split('`').skip(1).step_by(2) {
            let name: String = code
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn every_filter_of_the_table_is_documented_in_the_mapping_reference() {
    let documented = documented_filters();
    let missing: Vec<&str> = FILTERS
        .iter()
        .map(|f| f.name)
        .filter(|name| !documented.contains(*name))
        .collect();
    assert!(missing.is_empty(), "not in docs/mapping.md: {missing:?}");
}

#[test]
fn every_filter_the_mapping_reference_documents_is_in_the_table() {
    let unknown: Vec<String> = documented_filters()
        .into_iter()
        .filter(|name| !FILTERS.iter().any(|f| f.name == name))
        .collect();
    assert!(
        unknown.is_empty(),
        "documented but not filters: {unknown:?}"
    );
}

#[test]
fn filter_names_are_unique_and_optional_arguments_come_last() {
    let names: BTreeSet<&str> = FILTERS.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), FILTERS.len());
    for filter in FILTERS {
        let first_optional = filter.args.iter().position(|p| p.optional);
        let required_after =
            first_optional.is_some_and(|i| filter.args[i..].iter().any(|p| !p.optional));
        assert!(
            !required_after,
            "{}: a required argument after an optional one",
            filter.name
        );
    }
}

#[test]
fn a_duration_reads_in_its_largest_unit_and_the_next_in_the_cards_language() {
    use super::short_duration;
    use crate::card::Locale::{En, ZhCn};
    let table = [
        (0, "0 s", "0 秒"),
        (45, "45 s", "45 秒"),
        (180, "3 min", "3 分钟"),
        (3_900, "1 h 5 min", "1 小时 5 分钟"),
        (3_605, "1 h", "1 小时"),
        (183_600, "2 d 3 h", "2 天 3 小时"),
    ];
    for (seconds, en, zh) in table {
        assert_eq!(short_duration(seconds, En), en);
        assert_eq!(short_duration(seconds, ZhCn), zh);
    }
}
