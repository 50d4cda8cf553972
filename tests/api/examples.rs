//! The built-in mappings carry examples (real payloads with the result they must give), and
//! `fxhook check` runs them and passes.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use fxhook::diagnostic::Severity;
use serde_json::Value;

use crate::helpers::repo_file;

/// The shipped mapping files: the `*.yaml` at the top of mappings/, as the loader reads them.
fn shipped_mappings(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no mapping files in {}", dir.display());
    files
}

#[test]
fn every_shipped_mapping_carries_examples_that_check_runs_and_passes() {
    let dir = repo_file("mappings");
    let files = shipped_mappings(&dir);

    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let yaml: Value = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        let examples = yaml["examples"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(
            examples.len() >= 2,
            "{} carries {} example(s); every built-in mapping needs at least two",
            file.display(),
            examples.len()
        );
        for example in examples {
            let payload = example["payload"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: an example without a payload", file.display()));
            // Inside mappings/ (so the Dockerfile's `COPY mappings …` carries it) and present.
            assert!(
                Path::new(payload)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_))),
                "{}: payload {payload} must be a relative path inside mappings/",
                file.display()
            );
            assert!(
                dir.join(payload).is_file(),
                "{}: payload {payload} does not exist",
                file.display()
            );
        }
    }

    // What `fxhook check` does: examples' mismatches are errors.
    let groups =
        fxhook::route::Groups::new(&BTreeMap::from([("default".into(), vec!["1000".into()])]))
            .unwrap();
    let options = fxhook::source::LoadOptions {
        examples: Severity::Error,
        ..Default::default()
    };
    let set = fxhook::source::load_dir_with(&dir, &groups, &options).unwrap();
    let errors: Vec<String> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    // Every file is a source, and nothing under mappings/examples/ is taken for one.
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        set.sources.keys().cloned().collect::<Vec<_>>(),
        names,
        "the loaded sources are exactly the top-level mapping files"
    );
}
