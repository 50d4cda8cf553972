//! Examples inside mapping files: a payload (a file, relative to the mapping file), headers,
//! and the expected result or parts of it. `fxhook check` runs them and fails on a mismatch,
//! reported at the example's position; at load and reload a mismatch is only a warning, so an
//! otherwise valid file is never blocked by its examples.
//!
//! An example states what the map step gives (status, rule, card), not whom it reaches, so it
//! runs the map step alone, in `mappings.timezone`, and in its own language (`locale:`, else
//! the file's `locale:`, else English): what it states does not depend on `cards.locale`.

use std::collections::BTreeMap;
use std::path::Path;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Mapped, Mapping};
use crate::card::{Locale, Row};
use crate::diagnostic::{Reporter, Severity};
use crate::verify::offline;

/// One example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleSpec {
    /// The payload file, relative to the mapping file.
    pub payload: Spanned<String>,
    /// Request headers (e.g. the event type).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The language the card is rendered in (`en` or `zh-CN`).
    #[serde(default)]
    pub locale: Option<Spanned<String>>,
    /// What mapping it must give; only the listed parts are compared.
    pub expect: Spanned<Expect>,
}

/// The expected result.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `rendered` or `ignored`.
    pub status: Option<String>,
    /// The rule that matches.
    pub rule: Option<String>,
    /// The ignore reason (exact).
    pub reason: Option<String>,
    /// Head title (exact).
    pub title: Option<String>,
    /// First line (exact).
    pub first: Option<String>,
    /// Remark (exact).
    pub remark: Option<String>,
    /// Link URL (exact).
    pub link: Option<String>,
    /// Rows that must appear, in this order (others may be between them).
    pub rows: Option<Vec<Row>>,
}

fn headers(spec: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in spec {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let value = HeaderValue::from_str(v).map_err(|_| format!("bad value of header {k}"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The language each example runs in: its `locale:`, else `default`; a tag that is no language
/// is reported at it.
pub fn locales(
    examples: &[Spanned<ExampleSpec>],
    default: Locale,
    report: &mut Reporter,
) -> Vec<Option<Locale>> {
    examples
        .iter()
        .map(|e| match &e.value.locale {
            None => Some(default),
            Some(tag) => tag
                .value
                .parse::<Locale>()
                .map_err(|err| report.error(&tag.referenced, err))
                .ok(),
        })
        .collect()
}

/// Runs every example with the rules in its language: `compiled` (the rules and their
/// language), else those `compile_in` gives for it (each compiled once); mismatches are
/// reported with `severity` at the example.
#[allow(clippy::too_many_arguments)]
pub fn run(
    examples: &[Spanned<ExampleSpec>],
    languages: &[Option<Locale>],
    compiled: (&Mapping, Locale),
    compile_in: &dyn Fn(Locale) -> Option<Mapping>,
    file: &Path,
    tz: chrono_tz::Tz,
    severity: Severity,
    report: &mut Reporter,
) {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut others: Vec<(Locale, Option<Mapping>)> = Vec::new();
    for (i, (example, locale)) in examples.iter().zip(languages).enumerate() {
        let Some(locale) = *locale else {
            continue;
        };
        if locale != compiled.1 && !others.iter().any(|(l, _)| *l == locale) {
            others.push((locale, compile_in(locale)));
        }
        let mapping = if locale == compiled.1 {
            compiled.0
        } else {
            match others.iter().find(|(l, _)| *l == locale) {
                Some((_, Some(m))) => m,
                _ => continue,
            }
        };
        let at = example.referenced;
        let n = i + 1;
        let problem = |report: &mut Reporter, message: String| match severity {
            Severity::Error => report.error(&at, format!("example {n}: {message}")),
            Severity::Warning => report.warning(&at, format!("example {n}: {message}")),
        };
        let spec = &example.value;
        let path = base.join(&spec.payload.value);
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                problem(
                    report,
                    format!("cannot read payload {}: {e}", path.display()),
                );
                continue;
            }
        };
        let headers = match headers(&spec.headers) {
            Ok(h) => h,
            Err(e) => {
                problem(report, e);
                continue;
            }
        };
        let now = std::time::SystemTime::now();
        let payload = match offline::trust_admin_supplied(headers, body.into(), now) {
            Ok(p) => p,
            Err(e) => {
                problem(report, format!("payload {}: {e}", path.display()));
                continue;
            }
        };
        let mapped = mapping.map(&payload, tz);
        for mismatch in compare(&spec.expect.value, &mapped) {
            problem(report, mismatch);
        }
    }
}

fn differ(what: &str, want: &Option<String>, got: Option<&str>, out: &mut Vec<String>) {
    if let Some(want) = want
        && Some(want.as_str()) != got
    {
        out.push(format!(
            "{what}: expected {want:?}, got {:?}",
            got.unwrap_or("(none)")
        ));
    }
}

/// The differences between what an example expects and what mapping gave.
pub fn compare(expect: &Expect, mapped: &Mapped) -> Vec<String> {
    let mut out = Vec::new();
    let (status, rule, reason) = match mapped {
        Mapped::Ignored { reason } => ("ignored", None, Some(reason.as_str())),
        Mapped::Rendered { rule, .. } => ("rendered", Some(rule.as_str()), None),
        Mapped::Failed { rule, reason } => ("failed", Some(rule.as_str()), Some(reason.as_str())),
    };
    differ("status", &expect.status, Some(status), &mut out);
    differ("rule", &expect.rule, rule, &mut out);
    differ("reason", &expect.reason, reason, &mut out);
    let composite = match mapped {
        Mapped::Rendered { card, .. } => Some(card.composite()),
        _ => None,
    };
    let card = composite.as_ref();
    let wants_card = expect.title.is_some()
        || expect.first.is_some()
        || expect.remark.is_some()
        || expect.link.is_some()
        || expect.rows.is_some();
    match card {
        None if wants_card => out.push(format!(
            "expected a card, got {status}{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
        None => {}
        Some(c) => {
            differ("title", &expect.title, Some(&c.head.title), &mut out);
            differ(
                "first",
                &expect.first,
                c.first.as_ref().map(|f| f.content.as_str()),
                &mut out,
            );
            differ(
                "remark",
                &expect.remark,
                c.remark.as_ref().map(|f| f.content.as_str()),
                &mut out,
            );
            differ("link", &expect.link, Some(&c.link.url), &mut out);
            if let Some(rows) = &expect.rows {
                let mut rest = c.form.iter();
                for want in rows {
                    if !rest.any(|r| r == want) {
                        out.push(format!(
                            "row {:?}: {:?} not found (in order) among {:?}",
                            want.label,
                            want.value,
                            c.form
                                .iter()
                                .map(|r| format!("{}: {}", r.label, r.value))
                                .collect::<Vec<_>>()
                        ));
                        break;
                    }
                }
            }
        }
    }
    out
}
