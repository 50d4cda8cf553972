//! Map: the third step. A verified payload goes through the source's rules (first match wins);
//! the matching rule either ignores it with a reason or renders a composite card, which the
//! route step addresses to its recipients.
//!
//! Layout: [`spec`] is the YAML as admins write it; [`compile`] checks it and builds the
//! run-time [`Mapping`] (every JSONPath and template compiled once, at load); [`jsonpath`] wraps
//! the JSONPath engine; [`template`] is the one-line template language of card fields.

pub mod compile;
pub mod examples;
pub mod jsonpath;
pub mod spec;
pub mod template;

use chrono_tz::Tz;
use serde_json::Value;

use crate::card::{Card, Link, Row, SendBody};
use crate::route::{self, Groups, RecipientId, RecipientSet};
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
}

/// Every test must hold.
#[derive(Debug, Default)]
pub struct Condition {
    /// Lower-cased header name → accepted values.
    pub headers: Vec<(String, Vec<String>)>,
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

/// What mapping made of a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// No rule wants it, or a rule ignores it.
    Ignored {
        /// Why, for the sender and the logs.
        reason: String,
    },
    /// Rendered into send bodies.
    Rendered {
        /// The rule.
        rule: String,
        /// One body per ≤500 recipients (one with `toUser: []` when there are none).
        messages: Vec<SendBody>,
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
    pub fn map(&self, payload: &Verified<Payload>, groups: &Groups, tz: Tz) -> Mapped {
        let payload = payload.inner();
        let scope = Scope {
            root: &payload.json,
            element: None,
            tz,
        };
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.when.holds(&payload.webhook, &scope))
        else {
            return Mapped::Ignored {
                reason: "no rule matches this event".into(),
            };
        };
        match &rule.action {
            Action::Ignore(reason) => Mapped::Ignored {
                reason: reason.clone(),
            },
            Action::Send { to, fallback, card } => match card.render(&scope, &self.limits) {
                Ok(card) => {
                    let recipients = resolve(to, fallback, groups, &scope);
                    Mapped::Rendered {
                        rule: rule.name.clone(),
                        messages: route::split(&card, &recipients),
                    }
                }
                Err(e) => Mapped::Failed {
                    rule: rule.name.clone(),
                    reason: e.to_string(),
                },
            },
        }
    }
}

impl Mapped {
    /// The document of `fxhook render` and `POST /admin/render`: `{"status":"rendered",…}` or
    /// `{"status":"ignored",…}`.
    ///
    /// # Errors
    /// The mapping failed: the rule and the reason.
    pub fn render_document(&self) -> Result<serde_json::Value, String> {
        match self {
            Mapped::Ignored { reason } => {
                Ok(serde_json::json!({"status": "ignored", "reason": reason}))
            }
            Mapped::Rendered { rule, messages } => {
                Ok(serde_json::json!({"status": "rendered", "rule": rule, "messages": messages}))
            }
            Mapped::Failed { rule, reason } => Err(format!("rule {rule}: {reason}")),
        }
    }
}

impl Condition {
    fn holds(&self, webhook: &crate::verify::Webhook, scope: &Scope) -> bool {
        let non_null = |p: &JsonPath| p.query(scope).iter().any(|v| !v.is_null());
        self.headers.iter().all(|(name, accepted)| {
            webhook
                .header(name)
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
                        rows.push(Row {
                            label: "…".into(),
                            value: format!("+{} more", elements.len() - max),
                        });
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

fn resolve(to: &[Recipient], fallback: &str, groups: &Groups, scope: &Scope) -> Vec<RecipientId> {
    let mut set = RecipientSet::default();
    let mut lookups = 0;
    let mut selected = 0;
    for r in to {
        match r {
            Recipient::Group(name) => set.extend(groups.get(name).unwrap_or_default()),
            Recipient::Id(id) => set.extend([id]),
            Recipient::Lookup(t) => {
                lookups += 1;
                for name in t.render(scope).split(',').map(str::trim) {
                    if let Some(members) = groups.get(name) {
                        selected += 1;
                        set.extend(members);
                    }
                }
            }
        }
    }
    if to.is_empty() || (lookups > 0 && selected == 0) {
        set.extend(groups.get(fallback).unwrap_or_default());
    }
    set.into_vec()
}
