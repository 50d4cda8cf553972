//! Compiles the rules of a mapping file: every JSONPath and template is parsed here, once, and
//! every problem is reported at its `line:col` in the file.

use serde_saphyr::Spanned;

use super::GroupDirectory;
use super::jsonpath::JsonPath;
use super::spec::{CardSpec, IgnoreSpec, LText, Localized, RowSpec, RuleSpec, Text, WhenSpec};
use super::template::{CompileOptions, Template};
use super::{Action, CardTemplate, Condition, Mapping, Recipient, RowTemplate, Rule, StormRules};
use crate::card::{Locale, RecipientId};
use crate::diagnostic::Reporter;

/// Default cap of a row list.
pub const DEFAULT_MAX_ROWS: usize = 10;

const TOP: CompileOptions = CompileOptions {
    allow_element: false,
};
const ELEMENT: CompileOptions = CompileOptions {
    allow_element: true,
};

/// The languages of a file's texts, and the one its cards are compiled in.
#[derive(Debug, Clone)]
pub struct Lang {
    /// The language the cards speak (`cards.locale`, or the file's `locale:`).
    pub effective: Locale,
    /// The languages every `{ en: …, zh-CN: … }` text must give.
    pub declared: Vec<Locale>,
}

impl Lang {
    /// Every language in one: a file of plain texts.
    pub fn only(locale: Locale) -> Lang {
        Lang {
            effective: locale,
            declared: Vec::new(),
        }
    }

    /// The text of `field` in the effective language (else English, else the first given);
    /// reports a declared language it lacks and a tag that is no language.
    fn pick(&self, field: &LText, report: &mut Reporter) -> Option<Text> {
        let by = match &field.value {
            Localized::One(text) => {
                return Some(Spanned::new(text.clone(), field.referenced, field.defined));
            }
            Localized::ByLocale(by) => by,
        };
        let mut ok = true;
        let mut given = Vec::new();
        for (tag, text) in by {
            match tag.parse::<Locale>() {
                Ok(l) => given.push((l, text)),
                Err(e) => {
                    report.error(&text.referenced, e);
                    ok = false;
                }
            }
        }
        for want in &self.declared {
            if !given.iter().any(|(l, _)| l == want) {
                let all: Vec<&str> = self.declared.iter().map(|l| l.as_str()).collect();
                report.error(
                    &field.referenced,
                    format!(
                        "no {want} text here (the file's locales are {})",
                        all.join(", ")
                    ),
                );
                ok = false;
            }
        }
        let chosen = [self.effective, Locale::En]
            .iter()
            .find_map(|want| given.iter().find(|(l, _)| l == want))
            .or(given.first());
        match (ok, chosen) {
            (true, Some((_, text))) => Some((*text).clone()),
            (true, None) => {
                report.error(
                    &field.referenced,
                    "an empty map of languages: give en or zh-CN",
                );
                None
            }
            (false, _) => None,
        }
    }

    /// Every language's template of `field` compiled (so that `check` finds an error in any),
    /// and the effective one returned.
    fn template(
        &self,
        field: &LText,
        opts: &CompileOptions,
        report: &mut Reporter,
    ) -> Option<Template> {
        if let Localized::ByLocale(by) = &field.value {
            for text in by.values() {
                template(text, opts, report);
            }
        }
        let chosen = self.pick(field, report)?;
        template(&chosen, opts, report)
    }
}

/// The language tags a set of rules uses in its `{ en: …, zh-CN: … }` texts.
pub fn locales_used(rules: &[Spanned<RuleSpec>]) -> Vec<Locale> {
    let mut used = Vec::new();
    let mut add = |field: &LText| {
        if let Localized::ByLocale(by) = &field.value {
            for tag in by.keys() {
                if let Ok(l) = tag.parse::<Locale>()
                    && !used.contains(&l)
                {
                    used.push(l);
                }
            }
        }
    };
    for rule in rules {
        let Some(card) = &rule.value.card else {
            continue;
        };
        let c = &card.value;
        add(&c.title);
        c.first.iter().chain(c.remark.iter()).for_each(&mut add);
        add(&c.link.value.title);
        add(&c.link.value.url);
        for row in &c.rows {
            add(&row.value.label);
            add(&row.value.value);
        }
    }
    used.sort();
    used
}

/// Compiles `rules` in `lang`; problems go to `report`. The result is only meaningful when
/// `report` has no errors.
pub fn compile_rules(
    rules: &[Spanned<RuleSpec>],
    groups: &dyn GroupDirectory,
    lang: &Lang,
    report: &mut Reporter,
) -> Mapping {
    let mut unreachable = Vec::new();
    let rules = rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| compile_rule(i, r, groups, lang, report, &mut unreachable))
        .collect();
    // One warning for the file, not one per rule: the usual cause is one empty `default` group.
    if let Some((_, at)) = unreachable.first() {
        let names: Vec<&str> = unreachable.iter().map(|(n, _)| n.as_str()).collect();
        report.warning(
            at,
            format!(
                "rule(s) {} can reach only empty groups: their messages are stored as failed (no recipients) until a group is filled (groups.default in the config)",
                names.join(", ")
            ),
        );
    }
    Mapping {
        rules,
        limits: crate::card::CardLimits::default(),
        locale: lang.effective,
    }
}

fn template(text: &Text, opts: &CompileOptions, report: &mut Reporter) -> Option<Template> {
    Template::compile(&text.value, opts)
        .map_err(|e| report.error_in_scalar(&text.referenced, e.offset, e.message))
        .ok()
}

fn path(text: &Text, report: &mut Reporter) -> Option<JsonPath> {
    let compiled = JsonPath::compile(text.value.trim())
        .map_err(|e| {
            report.error_in_scalar(
                &text.referenced,
                e.offset,
                format!("invalid JSONPath: {}", e.message),
            )
        })
        .ok()?;
    if compiled.is_relative() {
        report.error(
            &text.referenced,
            "@ is only allowed inside a row list (each:)",
        );
        return None;
    }
    Some(compiled)
}

fn compile_rule(
    index: usize,
    spanned: &Spanned<RuleSpec>,
    groups: &dyn GroupDirectory,
    lang: &Lang,
    report: &mut Reporter,
    unreachable: &mut Vec<(String, serde_saphyr::Location)>,
) -> Option<Rule> {
    let spec = &spanned.value;
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| format!("rule {}", index + 1));
    let when = match &spec.when {
        Some(w) => compile_when(w, report),
        None => Some(Condition::default()),
    };
    let ignore = match &spec.ignore {
        None | Some(IgnoreSpec::Flag(false)) => None,
        Some(IgnoreSpec::Flag(true)) => Some(format!("ignored by rule {name}")),
        Some(IgnoreSpec::Reason(r)) => Some(r.clone()),
    };
    let action = match (ignore, &spec.card) {
        (Some(_), Some(card)) => {
            report.error(
                &card.referenced,
                format!("rule {name} both ignores and has a card: choose one"),
            );
            None
        }
        (Some(reason), None) => Some(Action::Ignore(reason)),
        (None, None) => {
            report.error(
                &spanned.referenced,
                format!("rule {name} needs a `card` or `ignore`"),
            );
            None
        }
        (None, Some(card)) => {
            let card = compile_card(&card.value, lang, report);
            let to = compile_recipients(&name, spec, groups, report);
            let fallback = match &spec.fallback {
                Some(f) if groups.size(&f.value).is_none() => {
                    report.error(
                        &f.referenced,
                        format!("unknown group {:?} (known: {})", f.value, known(groups)),
                    );
                    None
                }
                Some(f) => Some(f.value.clone()),
                None => Some("default".to_string()),
            };
            match (card, to, fallback) {
                (Some(card), Some(to), Some(fallback)) => {
                    if !reaches_someone(&to, &fallback, groups) {
                        unreachable.push((name.clone(), spanned.referenced));
                    }
                    Some(Action::Send {
                        to,
                        fallback,
                        card: Box::new(card),
                    })
                }
                _ => None,
            }
        }
    };
    let storm = compile_storm(&name, spec, lang, report);
    Some(Rule {
        name,
        when: when?,
        action: action?,
        storm: storm?,
    })
}

/// A rule's `priority`, `coalesce`, `fold` and `repeat` (only on a rule with a card).
fn compile_storm(
    name: &str,
    spec: &RuleSpec,
    lang: &Lang,
    report: &mut Reporter,
) -> Option<StormRules> {
    let mut ok = true;
    let mut storm = StormRules::default();
    if spec.card.is_none() {
        let keys = [
            spec.priority.as_ref().map(|p| p.referenced),
            spec.coalesce.as_ref().map(|c| c.referenced),
            spec.fold.as_ref().map(|f| f.referenced),
            spec.repeat.as_ref().map(|r| r.referenced),
        ];
        for at in keys.into_iter().flatten() {
            report.error(
                &at,
                format!(
                    "rule {name} sends no card: priority, coalesce, fold and repeat apply to cards"
                ),
            );
            ok = false;
        }
        return ok.then_some(storm);
    }
    if let Some(p) = &spec.priority {
        storm.priority = template(p, &TOP, report);
        ok &= storm.priority.is_some();
    }
    if let Some(c) = &spec.coalesce {
        let c_spec = &c.value;
        if c_spec.window.is_zero() || c_spec.max_rows == 0 {
            report.error(
                &c.referenced,
                "coalesce needs a window longer than 0 and max_rows ≥ 1",
            );
            ok = false;
        }
        let noun = match &c_spec.noun {
            Some(n) => match lang.template(n, &TOP, report) {
                Some(t) => Some(t),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        storm.coalesce = Some((c_spec.window, c_spec.max_rows, noun));
    }
    if let Some(f) = &spec.fold {
        let key = template(&f.value.key, &TOP, report);
        let state = template(&f.value.state, &TOP, report);
        match (key, state) {
            (Some(k), Some(s)) => storm.fold = Some((k, s)),
            _ => ok = false,
        }
    }
    if let Some(r) = &spec.repeat {
        if r.value.every.is_zero() {
            report.error(&r.referenced, "repeat.every must be longer than 0");
            ok = false;
        }
        match template(&r.value.key, &TOP, report) {
            Some(k) => storm.repeat = Some((k, r.value.every)),
            None => ok = false,
        }
    }
    ok.then_some(storm)
}

fn known(groups: &dyn GroupDirectory) -> String {
    groups.names().join(", ")
}

fn compile_recipients(
    rule: &str,
    spec: &RuleSpec,
    groups: &dyn GroupDirectory,
    report: &mut Reporter,
) -> Option<Vec<Recipient>> {
    let mut ok = true;
    let mut out = Vec::new();
    for entry in &spec.to {
        let text = entry.value.trim();
        if let Some(id) = text.strip_prefix("id:") {
            match RecipientId::try_from(id.to_string()) {
                Ok(id) => out.push(Recipient::Id(id)),
                Err(e) => {
                    report.error(&entry.referenced, format!("rule {rule}: {e}"));
                    ok = false;
                }
            }
        } else if text.contains('{') {
            match template(entry, &TOP, report) {
                Some(t) => out.push(Recipient::Lookup(t)),
                None => ok = false,
            }
        } else if groups.size(text).is_some() {
            out.push(Recipient::Group(text.to_string()));
        } else {
            report.error(
                &entry.referenced,
                format!(
                    "unknown group {text:?} (known: {}; write id:{text} for an employee id)",
                    known(groups)
                ),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}

/// False when every recipient is an empty (or missing) group.
fn reaches_someone(to: &[Recipient], fallback: &str, groups: &dyn GroupDirectory) -> bool {
    let empty = |g: &str| groups.size(g).is_none_or(|n| n == 0);
    to.iter().any(|r| match r {
        Recipient::Group(g) => !empty(g),
        Recipient::Id(_) => true,
        Recipient::Lookup(_) => groups.names().into_iter().any(|g| !empty(g)),
    }) || !empty(fallback)
}

fn compile_when(when: &Spanned<WhenSpec>, report: &mut Reporter) -> Option<Condition> {
    let w = &when.value;
    let mut ok = true;
    let mut cond = Condition::default();
    for (key, values) in &w.header {
        // `A|B` names alternatives: the first of them that the request carries is tested.
        let mut names = Vec::new();
        let mut at = 0;
        for part in key.split('|') {
            let name = part.trim();
            if actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                let leading = part.chars().take_while(|c| c.is_whitespace()).count();
                report.error_in_key(
                    &values.referenced,
                    key,
                    at + leading,
                    format!("{name:?} is not a valid header name"),
                );
                ok = false;
            }
            names.push(name.to_ascii_lowercase());
            at += part.chars().count() + 1;
        }
        cond.headers.push((names, values.value.values()));
    }
    for (expr, values) in &w.matches {
        let trimmed = expr.trim();
        if !trimmed.starts_with('$') {
            report.error_in_key(
                &values.referenced,
                expr,
                0,
                "a match key is a JSONPath starting with $",
            );
            ok = false;
            continue;
        }
        match Template::compile(&format!("{{{trimmed}}}"), &TOP) {
            Ok(t) => cond.matches.push((t, values.value.values())),
            Err(e) => {
                let offset = e.offset.saturating_sub(1);
                report.error_in_key(&values.referenced, trimmed, offset, e.message);
                ok = false;
            }
        }
    }
    for (list, target) in [
        (&w.exists, &mut cond.exists),
        (&w.missing, &mut cond.missing),
    ] {
        for p in list {
            match path(p, report) {
                Some(p) => target.push(p),
                None => ok = false,
            }
        }
    }
    ok.then_some(cond)
}

fn compile_card(card: &CardSpec, lang: &Lang, report: &mut Reporter) -> Option<CardTemplate> {
    let title = lang.template(&card.title, &TOP, report);
    let first = card.first.as_ref().map(|t| lang.template(t, &TOP, report));
    let remark = card.remark.as_ref().map(|t| lang.template(t, &TOP, report));
    let link_title = lang.template(&card.link.value.title, &TOP, report);
    let link_url = lang.template(&card.link.value.url, &TOP, report);
    let rows: Vec<Option<RowTemplate>> = card
        .rows
        .iter()
        .map(|r| compile_row(r, lang, report))
        .collect();
    Some(CardTemplate {
        title: title?,
        first: first.transpose_all()?,
        rows: rows.into_iter().collect::<Option<Vec<_>>>()?,
        remark: remark.transpose_all()?,
        link_title: link_title?,
        link_url: link_url?,
    })
}

/// `Some(None)` → failed, `None` → absent, `Some(Some(t))` → present.
trait TransposeAll<T> {
    fn transpose_all(self) -> Option<Option<T>>;
}

impl<T> TransposeAll<T> for Option<Option<T>> {
    fn transpose_all(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(t)) => Some(Some(t)),
        }
    }
}

fn compile_row(row: &Spanned<RowSpec>, lang: &Lang, report: &mut Reporter) -> Option<RowTemplate> {
    let spec = &row.value;
    match &spec.each {
        None => {
            if spec.max.is_some() || spec.entries {
                report.error(
                    &row.referenced,
                    "`max` and `entries` only apply to a row list: add `each`",
                );
            }
            let label = lang.template(&spec.label, &TOP, report);
            let value = lang.template(&spec.value, &TOP, report);
            Some(RowTemplate::One {
                label: label?,
                value: value?,
            })
        }
        Some(each) => {
            let p = path(each, report);
            let max = spec.max.unwrap_or(DEFAULT_MAX_ROWS);
            if max == 0 {
                report.error(&row.referenced, "`max` must be at least 1");
            }
            let label = lang.template(&spec.label, &ELEMENT, report);
            let value = lang.template(&spec.value, &ELEMENT, report);
            Some(RowTemplate::Each {
                by_entry: spec.entries,
                path: p?,
                max,
                label: label?,
                value: value?,
            })
        }
    }
}
