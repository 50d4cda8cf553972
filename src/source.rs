//! Sources: one per mapping file in `mappings.dir`, named after the file. Loading a file
//! compiles everything in it (verification, dedup, rules, cards) and reports every problem as
//! `file:line:col`; a file with errors is not served.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Spanned;

use crate::card::CardLimits;
use crate::diagnostic::{Diagnostic, Reporter, Severity};
use crate::map::Mapping;
use crate::map::jsonpath::{self, Footprint, JsonPath};
use crate::map::spec::{DedupSpec, MappingFile};
use crate::route::Groups;
use crate::verify::spec::VerifySpec;
use crate::verify::{Verifier, presets, secrets};

/// A source name: the mapping file's stem, `[a-z0-9][a-z0-9_-]*`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceName(String);

impl TryFrom<&str> for SourceName {
    type Error = String;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
            });
        if ok {
            Ok(SourceName(value.to_string()))
        } else {
            Err(format!(
                "{value:?} is not a source name: use lower-case letters, digits, - and _"
            ))
        }
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SourceName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a source's delivery id is.
#[derive(Debug, Clone, Default)]
pub enum Dedup {
    /// No delivery id: never a duplicate.
    #[default]
    Off,
    /// The first of these headers that is present.
    Headers(Vec<String>),
    /// A JSONPath into the payload.
    Path(Arc<JsonPath>),
}

/// A loaded, compiled source.
#[derive(Debug)]
pub struct Source {
    /// Its name (the file stem).
    pub name: SourceName,
    /// The file it came from.
    pub file: PathBuf,
    /// How requests are verified.
    pub verifier: Verifier,
    /// The header naming the event type, from the preset (`A|B`: the first present one).
    pub event_header: Option<String>,
    /// Where the delivery id is.
    pub dedup: Dedup,
    /// The rules.
    pub mapping: Mapping,
    /// The source's own rate limit, when its mapping sets one.
    pub limiter: Option<Arc<governor::DefaultDirectRateLimiter>>,
    /// The parts of a payload its paths can read: all the request path parses.
    pub footprint: Footprint,
}

/// Every source of the mappings directory, plus what went wrong loading it.
#[derive(Debug, Default)]
pub struct SourceSet {
    /// Sources by name.
    pub sources: BTreeMap<String, Arc<Source>>,
    /// Problems (errors and warnings) by file.
    pub diagnostics: Vec<Diagnostic>,
    /// Files that were rejected and have no good version, by source name, with their first error.
    pub rejected: BTreeMap<String, String>,
    /// Files whose last edit was rejected while their last good version keeps serving, with
    /// the edit's first error.
    pub stale: BTreeMap<String, String>,
}

impl SourceSet {
    /// Merges a fresh load into the set it replaces: a file whose new version is rejected keeps
    /// serving its last good version (and is listed in `stale`); a removed file is gone.
    pub fn keeping_last_good(mut self, previous: &SourceSet) -> SourceSet {
        let rejected = std::mem::take(&mut self.rejected);
        for (name, error) in rejected {
            match previous.sources.get(&name) {
                Some(good) => {
                    self.sources.insert(name.clone(), Arc::clone(good));
                    self.stale.insert(name, error);
                }
                None => {
                    self.rejected.insert(name, error);
                }
            }
        }
        self
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Source>> {
        self.sources.get(name)
    }
}

/// How mapping files are loaded.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// How cards are fitted.
    pub limits: CardLimits,
    /// How an example's mismatch is reported: an error for `check`, a warning when serving.
    pub examples: Severity,
    /// The zone of the `date` filter (`mappings.timezone`), for the examples.
    pub tz: chrono_tz::Tz,
}

impl LoadOptions {
    /// The options the configuration gives, with examples' mismatches reported as `examples`.
    pub fn from_settings(settings: &crate::config::Settings, examples: Severity) -> LoadOptions {
        LoadOptions {
            limits: settings.cards.clone(),
            examples,
            tz: settings.mappings.timezone,
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            limits: CardLimits::default(),
            examples: Severity::Warning,
            tz: chrono_tz::Asia::Shanghai,
        }
    }
}

/// Loads every `*.yaml` / `*.yml` file of `dir`.
///
/// # Errors
/// The directory cannot be read (a file that cannot be read is a diagnostic).
pub fn load_dir_with(
    dir: &Path,
    groups: &Groups,
    options: &LoadOptions,
) -> anyhow::Result<SourceSet> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read mappings directory {}: {e} (set mappings.dir)",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    let mut set = SourceSet::default();
    for file in files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let (source, diagnostics) = load_file_with(&file, groups, options);
        let first_error = diagnostics
            .iter()
            .find(|d| d.severity == crate::diagnostic::Severity::Error)
            .map(ToString::to_string);
        set.diagnostics.extend(diagnostics);
        match (source, first_error) {
            (Some(source), None) => {
                set.sources.insert(stem, Arc::new(source));
            }
            (_, error) => {
                set.rejected
                    .insert(stem, error.unwrap_or_else(|| "file rejected".into()));
            }
        }
    }
    Ok(set)
}

/// Loads and compiles one mapping file with the default options.
pub fn load_file(file: &Path, groups: &Groups) -> (Option<Source>, Vec<Diagnostic>) {
    load_file_with(file, groups, &LoadOptions::default())
}

/// Loads and compiles one mapping file.
pub fn load_file_with(
    file: &Path,
    groups: &Groups,
    options: &LoadOptions,
) -> (Option<Source>, Vec<Diagnostic>) {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            let mut r = Reporter::new(file, "");
            r.error_at(1, 1, format!("cannot read file: {e}"));
            return (None, r.found);
        }
    };
    compile_text(file, &text, groups, options)
}

/// Compiles the text of a mapping file that would live at `file` (named after it, its
/// examples' payloads read beside it), as `fxhook check` and the console's editor do.
pub fn compile_text(
    file: &Path,
    text: &str,
    groups: &Groups,
    options: &LoadOptions,
) -> (Option<Source>, Vec<Diagnostic>) {
    let mut report = Reporter::new(file, text);
    let (source, footprint) =
        jsonpath::recording(|| compile_source(file, text, groups, options, &mut report));
    let ok = !report.has_errors();
    let source = source.filter(|_| ok).map(|s| Source { footprint, ..s });
    (source, report.found)
}

fn compile_source(
    file: &Path,
    text: &str,
    groups: &Groups,
    options: &LoadOptions,
    report: &mut Reporter,
) -> Option<Source> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let name = match SourceName::try_from(stem) {
        Ok(n) => n,
        Err(e) => {
            report.error_at(1, 1, format!("the file name makes the source name: {e}"));
            return None;
        }
    };
    let spec: MappingFile = match serde_saphyr::from_str(text) {
        Ok(spec) => spec,
        Err(e) => {
            report.yaml_error(&e);
            return None;
        }
    };
    let verify = compile_verify(&name, &spec.verify, report);
    let dedup = compile_dedup(&name, spec.dedup.as_ref(), &spec.verify.value, report);
    let lang = compile_lang(&spec, options.limits.locale, report)?;
    let mut mapping = crate::map::compile::compile_rules(&spec.rules, groups, &lang, report);
    mapping.limits = options.limits.clone();
    if !report.has_errors() {
        let (tz, severity) = (options.tz, options.examples);
        let pinned = spec.locale.as_ref().and_then(|t| t.value.parse().ok());
        let languages = crate::map::examples::locales(
            &spec.examples,
            pinned.unwrap_or(crate::card::Locale::En),
            report,
        );
        // The rules in another language compile as they did above (their problems are
        // reported once, there).
        let compile_in = |locale: crate::card::Locale| {
            let mut quiet = Reporter::new(file, text);
            let other = crate::map::compile::Lang {
                effective: locale,
                declared: lang.declared.clone(),
            };
            let mut m = crate::map::compile::compile_rules(&spec.rules, groups, &other, &mut quiet);
            m.limits = options.limits.clone();
            (!quiet.has_errors()).then_some(m)
        };
        crate::map::examples::run(
            &spec.examples,
            &languages,
            (&mapping, lang.effective),
            &compile_in,
            file,
            tz,
            severity,
            report,
        );
    }
    if spec.rules.is_empty() {
        report.warning(
            &spec.verify.referenced,
            "no rules: every event of this source is ignored",
        );
    }
    let limiter = match &spec.rate_limit {
        None => Some(None),
        Some(r) => {
            let quota = std::num::NonZeroU32::new(r.value.requests).and_then(|n| {
                governor::Quota::with_period(r.value.per / n.get()).map(|q| q.allow_burst(n))
            });
            match quota {
                Some(q) => Some(Some(Arc::new(governor::RateLimiter::direct(q)))),
                None => {
                    report.error(
                        &r.referenced,
                        "rate_limit needs requests ≥ 1 and a period longer than 0",
                    );
                    None
                }
            }
        }
    };
    let (verifier, event_header) = verify?;
    Some(Source {
        limiter: limiter?,
        name,
        file: file.to_path_buf(),
        verifier,
        event_header,
        dedup: dedup?,
        mapping,
        footprint: Footprint::whole(),
    })
}

/// The file's languages: `locales:` (else the tags its texts use) and the one its cards speak
/// (`locale:`, else `cards.locale`).
fn compile_lang(
    spec: &MappingFile,
    configured: crate::card::Locale,
    report: &mut Reporter,
) -> Option<crate::map::compile::Lang> {
    use crate::card::Locale;
    let mut ok = true;
    let declared = match &spec.locales {
        Some(list) => list
            .value
            .iter()
            .filter_map(|tag| {
                tag.parse::<Locale>()
                    .map_err(|e| {
                        report.error(&list.referenced, e);
                        ok = false;
                    })
                    .ok()
            })
            .collect(),
        None => crate::map::compile::locales_used(&spec.rules),
    };
    let effective = match &spec.locale {
        Some(tag) => match tag.value.parse::<Locale>() {
            Ok(l) => l,
            Err(e) => {
                report.error(&tag.referenced, e);
                ok = false;
                configured
            }
        },
        None => configured,
    };
    ok.then_some(crate::map::compile::Lang {
        effective,
        declared,
    })
}

fn compile_verify(
    name: &SourceName,
    spec: &Spanned<VerifySpec>,
    report: &mut Reporter,
) -> Option<(Verifier, Option<String>)> {
    let v = &spec.value;
    let at = &spec.referenced;
    let Some(preset_name) = &v.preset else {
        if v.unsigned {
            report.warning(
                at,
                format!("source {name} is unsigned: anyone who knows its URL can post to it"),
            );
            return Some((Verifier::unsigned().named(name.as_str(), "unsigned"), None));
        }
        report.error(
            at,
            format!(
                "verify needs a `preset` ({}), or `unsigned: true`",
                presets::names()
            ),
        );
        return None;
    };
    if v.unsigned {
        report.error(at, "`unsigned: true` cannot go with a preset: choose one");
        return None;
    }
    let Some(preset) = presets::find(preset_name) else {
        report.error(
            at,
            format!(
                "unknown preset {preset_name:?} (known: {})",
                presets::names()
            ),
        );
        return None;
    };
    let scheme = match (preset.build)(v) {
        Ok(s) => s,
        Err(e) => {
            report.error(at, e);
            return None;
        }
    };
    let refs = v
        .secrets
        .clone()
        .unwrap_or_else(|| secrets::conventional_refs(name.as_str()));
    let mut problems = Vec::new();
    let found = secrets::resolve(&refs, &mut problems);
    for p in problems {
        report.warning(at, p);
    }
    // The secrets are prepared for the scheme here, once; one it cannot use is named by its
    // origin (never its value) and left out, never used in some other form.
    let verifier = Verifier::new(scheme, found).named(name.as_str(), preset.name);
    for unusable in verifier.unusable_secrets() {
        report.warning(
            at,
            format!(
                "source {name}: secret {} {}; it is not used",
                unusable.secret.origin(),
                unusable.problem
            ),
        );
    }
    if let crate::verify::Readiness::Inactive(reason) = verifier.readiness(name.as_str()) {
        let places = refs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        report.warning(
            at,
            format!("{reason}: set {places}; until then it answers 401"),
        );
    }
    Some((verifier, preset.event_header.map(str::to_string)))
}

fn compile_dedup(
    name: &SourceName,
    spec: Option<&Spanned<DedupSpec>>,
    verify: &VerifySpec,
    report: &mut Reporter,
) -> Option<Dedup> {
    let preset_default = || {
        verify
            .preset
            .as_deref()
            .and_then(presets::find)
            .and_then(|p| {
                if !p.dedup_headers.is_empty() {
                    Some(Dedup::Headers(
                        p.dedup_headers.iter().map(|h| h.to_string()).collect(),
                    ))
                } else {
                    let path = JsonPath::compile(p.dedup_path?).ok()?;
                    Some(Dedup::Path(Arc::new(path)))
                }
            })
            .unwrap_or(Dedup::Off)
    };
    let Some(spanned) = spec else {
        return Some(preset_default());
    };
    let d = &spanned.value;
    match (&d.header, &d.path, d.enabled) {
        (_, _, false) => Some(Dedup::Off),
        (Some(_), Some(_), _) => {
            report.error(
                &spanned.referenced,
                "dedup takes `header` or `path`, not both",
            );
            None
        }
        (Some(h), None, _) => Some(Dedup::Headers(vec![h.value.clone()])),
        (None, Some(p), _) => match JsonPath::compile(p.value.trim()) {
            Ok(path) if !path.is_relative() => Some(Dedup::Path(Arc::new(path))),
            Ok(_) => {
                report.error(&p.referenced, "dedup path must start with $");
                None
            }
            Err(e) => {
                report.error_in_scalar(
                    &p.referenced,
                    e.offset,
                    format!("invalid JSONPath: {}", e.message),
                );
                None
            }
        },
        (None, None, true) => {
            report.error(
                &spanned.referenced,
                format!("dedup of source {name} needs `header` or `path` (or `enabled: false`)"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `svix.yaml` whose secrets are these files' contents, in this order.
    fn load_with_secrets(secrets: &[&str]) -> (Option<Source>, Vec<Diagnostic>, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = secrets
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let path = dir.path().join(format!("secret-{i}"));
                std::fs::write(&path, format!("{value}\n")).unwrap();
                path
            })
            .collect();
        let refs: Vec<String> = files
            .iter()
            .map(|f| format!("{{file: {}}}", f.display()))
            .collect();
        let file = dir.path().join("svix.yaml");
        let yaml = format!(
            "verify:\n  preset: svix\n  secrets: [{}]\nrules: []\n",
            refs.join(", ")
        );
        std::fs::write(&file, yaml).unwrap();
        let groups = Groups::new(&BTreeMap::new()).unwrap();
        let (source, diagnostics) = load_file(&file, &groups);
        (source, diagnostics, files)
    }

    fn warnings(diagnostics: &[Diagnostic]) -> Vec<&str> {
        diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| d.message.as_str())
            .collect()
    }

    #[test]
    fn a_malformed_whsec_secret_is_a_load_warning_naming_the_source_and_its_file_and_is_unused() {
        let malformed = "whsec_this is not base64";
        let good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (source, diagnostics, files) = load_with_secrets(&[malformed, good]);
        let source = source.expect("the file loads: a bad secret is a warning");
        let warnings = warnings(&diagnostics);
        let about_secret: Vec<&&str> = warnings
            .iter()
            .filter(|w| w.contains("Standard Webhooks key"))
            .collect();
        assert_eq!(about_secret.len(), 1, "{warnings:?}");
        let warning = about_secret[0];
        assert!(warning.contains("source svix"), "{warning}");
        assert!(
            warning.contains(&files[0].display().to_string()),
            "{warning}"
        );
        assert!(
            !warning.contains("not base64"),
            "the value leaked: {warning}"
        );
        assert!(!warnings.iter().any(|w| w.contains(good)), "{warnings:?}");
        assert_eq!(source.verifier.unusable_secrets().len(), 1);
        assert_eq!(
            source.verifier.readiness("svix"),
            crate::verify::Readiness::Active
        );
    }

    #[test]
    fn a_source_whose_only_secret_is_malformed_loads_inactive_with_the_reason() {
        let (source, diagnostics, _) = load_with_secrets(&["whsec_%%%"]);
        let source = source.expect("the file loads");
        let crate::verify::Readiness::Inactive(reason) = source.verifier.readiness("svix") else {
            panic!("active with no usable secret");
        };
        assert!(reason.contains("no usable secret"), "{reason}");
        let warnings = warnings(&diagnostics);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("no usable secret") && w.contains("answers 401")),
            "{warnings:?}"
        );
        assert!(!warnings.iter().any(|w| w.contains("%%%")), "{warnings:?}");
    }
}
