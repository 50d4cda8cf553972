//! Map: the third step. A verified payload goes through the source's rules (first match wins);
//! the matching rule either ignores it with a reason or renders a composite card and says whom
//! it is for ([`RecipientSpec`]), which the route step resolves against the configured groups.
//!
//! Layout: [`spec`] is the YAML as admins write it; [`compile`] checks it and builds the
//! run-time [`Mapping`] (every JSONPath and template compiled once, at load); [`jsonpath`] wraps
//! the JSONPath engine; [`template`] is the one-line template language of card fields;
//! [`examples`] compares a mapping's result with what a mapping file's example expects.

pub mod compile;
pub mod examples;
pub mod jsonpath;
pub mod spec;
pub mod template;

use chrono_tz::Tz;
use serde_json::Value;

use crate::card::{Card, Link, RecipientId, Row};
use crate::verify::{Payload, Verified};
use jsonpath::{JsonPath, Scope};
use template::Template;

/// A compiled mapping: the ordered rules of one source.
#[derive(Debug, Default)]
pub struct Mapping {
    /// The rules, first match wins.
    pub rules: Vec<Rule>,
    /// How cards are fitted.
    pub limits: crate::card::CardLimits,
    /// The language its texts were compiled in (`cards.locale`, or the file's own `locale:`).
    pub locale: crate::card::Locale,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// When it applies.
    pub when: Condition,
    /// What it does.
    pub action: Action,
    /// How its cards behave in a storm.
    pub storm: StormRules,
}

/// What a rule says about storms (see [`Storm`] for what one card gets of it).
#[derive(Debug, Default)]
pub struct StormRules {
    /// Renders `high` for a card sent first.
    pub priority: Option<Template>,
    /// Window, rows and the noun of a digest.
    pub coalesce: Option<(std::time::Duration, usize, Option<Template>)>,
    /// The alert's key and state.
    pub fold: Option<(Template, Template)>,
    /// The repeat key and period.
    pub repeat: Option<(Template, std::time::Duration)>,
}

/// What one rendered card gets of its rule's storm handling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storm {
    /// Sent first when the queue is backed up.
    pub high_priority: bool,
    /// Coalesced: the window, the digest's rows, and what its title counts.
    pub coalesce: Option<Coalesce>,
    /// The alert this card is about and whether it is resolved.
    pub fold: Option<(String, FoldState)>,
    /// The repeat key and period.
    pub repeat: Option<(String, std::time::Duration)>,
    /// The language the digest and fold texts are written in.
    pub locale: crate::card::Locale,
}

/// How a card joins a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coalesce {
    /// Cards queued within this long of the oldest go into one digest.
    pub window: std::time::Duration,
    /// Rows before "+N more".
    pub max_rows: usize,
    /// What the title counts.
    pub noun: String,
}

/// An alert card's state, for folding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldState {
    /// The alert fires.
    Firing,
    /// The alert is resolved.
    Resolved,
}

impl FoldState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FoldState::Firing => "firing",
            FoldState::Resolved => "resolved",
        }
    }
}

/// Every test must hold.
#[derive(Debug, Default)]
pub struct Condition {
    /// Lower-cased header names (alternatives: the first present one is tested) → accepted
    /// values.
    pub headers: Vec<(Vec<String>, Vec<String>)>,
    /// A value (as text) → accepted values.
    pub matches: Vec<(Template, Vec<String>)>,
    /// Paths that must match something non-null.
    pub exists: Vec<JsonPath>,
    /// Paths that must match nothing non-null.
    pub missing: Vec<JsonPath>,
}

/// What a matching rule does.
#[derive(Debug)]
pub enum Action {
    /// Answer `200 ignored` with this reason.
    Ignore(String),
    /// Render the card for these recipients.
    Send {
        /// Recipients.
        to: Vec<Recipient>,
        /// Group used when lookups select no existing group.
        fallback: String,
        /// The card (boxed: it is much larger than an ignore reason).
        card: Box<CardTemplate>,
    },
}

/// One entry of `to:`.
#[derive(Debug)]
pub enum Recipient {
    /// A configured group.
    Group(String),
    /// A literal employee id.
    Id(RecipientId),
    /// A template whose text names a group (several separated by commas).
    Lookup(Template),
}

/// The compiled card of a rule.
#[derive(Debug)]
pub struct CardTemplate {
    /// Head title.
    pub title: Template,
    /// First line.
    pub first: Option<Template>,
    /// Rows.
    pub rows: Vec<RowTemplate>,
    /// Remark.
    pub remark: Option<Template>,
    /// Link title.
    pub link_title: Template,
    /// Link URL.
    pub link_url: Template,
}

/// A row or a row list.
#[derive(Debug)]
pub enum RowTemplate {
    /// One row.
    One {
        /// Label.
        label: Template,
        /// Value.
        value: Template,
    },
    /// One row per element of an array, capped.
    Each {
        /// The array.
        path: JsonPath,
        /// Most rows before "+N more".
        max: usize,
        /// Iterate an object's entries (`@.key`, `@.value`) instead of an array.
        by_entry: bool,
        /// Label, `@` being the element.
        label: Template,
        /// Value, `@` being the element.
        value: Template,
    },
}

/// What the configured groups look like, as compiling a mapping needs to know them (which
/// names exist, which are empty). Route's `Groups` is the one implementation.
pub trait GroupDirectory {
    /// How many members the group has, when it exists.
    fn size(&self, group: &str) -> Option<usize>;
    /// Every group name.
    fn names(&self) -> Vec<&str>;
}

/// Whom a rendered card is for, before the groups are looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientSpec {
    /// What the rule's `to:` named, evaluated against the payload.
    pub targets: Vec<Target>,
    /// The group used when the rule names nobody or its lookups name no existing group.
    pub fallback: String,
}

/// One entry of a rule's `to:`, evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A configured group.
    Group(String),
    /// A literal employee id.
    Id(RecipientId),
    /// Group names a template read from the payload.
    Lookup(Vec<String>),
}

/// What mapping made of a payload. (Rendered is the large variant and the usual one: boxing
/// it would cost an allocation per event to shrink the rare ones.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Mapped {
    /// No rule wants it, or a rule ignores it.
    Ignored {
        /// Why, for the sender and the logs.
        reason: String,
    },
    /// Rendered into a card for some recipients.
    Rendered {
        /// The rule.
        rule: String,
        /// The card.
        card: Card,
        /// Whom it is for.
        to: RecipientSpec,
        /// How it behaves in a storm.
        storm: Storm,
    },
    /// The matching rule could not render a valid card.
    Failed {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

impl Mapping {
    /// Runs the rules over a verified payload.
    pub fn map(&self, payload: &Verified<Payload>, tz: Tz) -> Mapped {
        let payload = payload.inner();
        let scope = Scope {
            locale: self.locale,
            ..Scope::new(&payload.json, tz)
        };
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.when.holds(&payload.webhook, &scope))
        else {
            tracing::debug!(rules = self.rules.len(), "no rule matches");
            return Mapped::Ignored {
                reason: "no rule matches this event".into(),
            };
        };
        tracing::debug!(rule = %rule.name, "rule matched");
        match &rule.action {
            Action::Ignore(reason) => Mapped::Ignored {
                reason: reason.clone(),
            },
            Action::Send { to, fallback, card } => match card.render(&scope, &self.limits) {
                Ok(card) => Mapped::Rendered {
                    rule: rule.name.clone(),
                    card,
                    to: RecipientSpec {
                        targets: to.iter().map(|r| r.evaluate(&scope)).collect(),
                        fallback: fallback.clone(),
                    },
                    storm: rule.storm.render(&scope, self.locale),
                },
                Err(e) => {
                    tracing::debug!(rule = %rule.name, error = %e, "the card does not render");
                    Mapped::Failed {
                        rule: rule.name.clone(),
                        reason: e.to_string(),
                    }
                }
            },
        }
    }
}

impl StormRules {
    /// What this payload's card gets of these rules. A fold whose state is neither `firing`
    /// nor `resolved`, or whose key renders empty, never folds; an empty repeat key is never a
    /// repeat.
    fn render(&self, scope: &Scope, locale: crate::card::Locale) -> Storm {
        let high_priority = self
            .priority
            .as_ref()
            .is_some_and(|t| t.render(scope).trim().eq_ignore_ascii_case("high"));
        let coalesce = self
            .coalesce
            .as_ref()
            .map(|(window, max_rows, noun)| Coalesce {
                window: *window,
                max_rows: *max_rows,
                noun: noun
                    .as_ref()
                    .map(|t| t.render(scope).trim().to_string())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| crate::card::digest::default_noun(locale).to_string()),
            });
        let fold = self.fold.as_ref().and_then(|(key, state)| {
            let key = key.render(scope);
            let state = match state.render(scope).trim().to_ascii_lowercase().as_str() {
                "firing" | "alerting" => FoldState::Firing,
                "resolved" | "ok" => FoldState::Resolved,
                _ => return None,
            };
            (!key.trim().is_empty()).then_some((key, state))
        });
        let repeat = self.repeat.as_ref().and_then(|(key, every)| {
            let key = key.render(scope);
            (!key.trim().is_empty()).then_some((key, *every))
        });
        Storm {
            high_priority,
            coalesce,
            fold,
            repeat,
            locale,
        }
    }
}

impl Recipient {
    /// What this entry names for this payload.
    fn evaluate(&self, scope: &Scope) -> Target {
        match self {
            Recipient::Group(name) => Target::Group(name.clone()),
            Recipient::Id(id) => Target::Id(id.clone()),
            Recipient::Lookup(t) => Target::Lookup(
                t.render(scope)
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        }
    }
}

impl Condition {
    fn holds(&self, webhook: &crate::verify::Webhook, scope: &Scope) -> bool {
        let non_null = |p: &JsonPath| p.query(scope).iter().any(|v| !v.is_null());
        self.headers.iter().all(|(names, accepted)| {
            names
                .iter()
                .find_map(|name| webhook.header(name))
                .is_some_and(|v| accepted.iter().any(|a| a == v))
        }) && self.matches.iter().all(|(value, accepted)| {
            let text = value.render(scope);
            accepted.contains(&text)
        }) && self.exists.iter().all(non_null)
            && !self.missing.iter().any(non_null)
    }
}

impl CardTemplate {
    fn render(
        &self,
        scope: &Scope,
        limits: &crate::card::CardLimits,
    ) -> Result<Card, crate::card::CardError> {
        let optional = |t: &Option<Template>| t.as_ref().map(|t| t.render(scope));
        let mut rows = Vec::new();
        for row in &self.rows {
            match row {
                RowTemplate::One { label, value } => push_row(&mut rows, label, value, scope),
                RowTemplate::Each {
                    path,
                    max,
                    by_entry,
                    label,
                    value,
                } => {
                    let found = path.query(scope);
                    // With `entries`, an object is iterated as `{"key": …, "value": …}` pairs.
                    let entries: Vec<Value>;
                    let elements: Vec<&Value> = match found.as_slice() {
                        [Value::Array(items)] => items.iter().collect(),
                        [Value::Object(map)] if *by_entry => {
                            entries = map
                                .iter()
                                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                                .collect();
                            entries.iter().collect()
                        }
                        _ => found,
                    };
                    for element in elements.iter().take(*max) {
                        let inner = Scope {
                            element: Some(element),
                            ..*scope
                        };
                        push_row(&mut rows, label, value, &inner);
                    }
                    if elements.len() > *max {
                        rows.push(crate::card::digest::more_row(
                            elements.len() - max,
                            scope.locale,
                        ));
                    }
                }
            }
        }
        Card::fitted(
            self.title.render(scope),
            optional(&self.first),
            rows,
            optional(&self.remark),
            Link {
                title: self.link_title.render(scope),
                url: self.link_url.render(scope),
            },
            limits,
        )
    }
}

/// Rows whose value renders empty are dropped, not sent blank.
fn push_row(rows: &mut Vec<Row>, label: &Template, value: &Template, scope: &Scope) {
    let value = value.render(scope);
    if !value.trim().is_empty() {
        rows.push(Row {
            label: label.render(scope),
            value,
        });
    }
}
