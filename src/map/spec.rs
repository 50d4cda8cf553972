//! What admins write in a mapping file, exactly as read from YAML (with positions). Nothing here
//! is usable at run time: [`super::compile`] turns it into a [`super::Mapping`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::verify::spec::VerifySpec;

/// A text with the position where it was written.
pub type Text = Spanned<String>;

/// A card text: one template for every language, or one per language
/// (`{ en: "Branch", zh-CN: "分支" }`), with its position.
pub type LText = Spanned<Localized>;

/// What a card text field holds.
#[derive(Debug)]
pub enum Localized {
    /// The same template in every language.
    One(String),
    /// A template per language tag, each with its own position.
    ByLocale(BTreeMap<String, Text>),
}

impl<'de> Deserialize<'de> for Localized {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Localized;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a template, or a map of language tags (en, zh-CN) to templates")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Localized, E> {
                Ok(Localized::One(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Localized, E> {
                Ok(Localized::One(v))
            }
            // A bare number or boolean in YAML is its text, as a plain string field takes it.
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Localized, E> {
                Ok(Localized::One(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Localized, E> {
                Ok(Localized::One(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Localized, E> {
                Ok(Localized::One(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Localized, E> {
                Ok(Localized::One(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Localized, A::Error> {
                let mut by = BTreeMap::new();
                while let Some((tag, text)) = map.next_entry::<String, Text>()? {
                    by.insert(tag, text);
                }
                Ok(Localized::ByLocale(by))
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole mapping file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// How requests are verified.
    pub verify: Spanned<VerifySpec>,
    /// Where the delivery id is; default: the preset's header.
    #[serde(default)]
    pub dedup: Option<Spanned<DedupSpec>>,
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Spanned<RuleSpec>>,
    /// A per-source rate limit (off when absent): requests over it get 429 + Retry-After.
    #[serde(default)]
    pub rate_limit: Option<Spanned<RateLimitSpec>>,
    /// Payloads with their expected result, run by `fxhook check`.
    #[serde(default)]
    pub examples: Vec<Spanned<super::examples::ExampleSpec>>,
    /// The languages the file's texts are written in (every `{ en: …, zh-CN: … }` text must
    /// give each); default: the languages its texts use.
    #[serde(default)]
    pub locales: Option<Spanned<Vec<String>>>,
    /// The language this source's cards speak, whatever `cards.locale` says.
    #[serde(default)]
    pub locale: Option<Text>,
}

/// `rate_limit:`: at most `requests` per `per`, with bursts up to `requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period (`1s`, `1m`, …).
    #[serde(with = "humantime_serde")]
    pub per: std::time::Duration,
}

/// `dedup:`: a header or a JSONPath (exactly one), or `false` to turn dedup off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// A header carrying the delivery id.
    pub header: Option<Text>,
    /// A JSONPath into the payload.
    pub path: Option<Text>,
    /// `false` turns dedup off even when the preset has a delivery id.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `ignore:` — `true`, or the reason to answer.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum IgnoreSpec {
    /// `ignore: true` / `ignore: false`.
    Flag(bool),
    /// `ignore: "why"`.
    Reason(String),
}

/// A value or a list of accepted values.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One accepted value.
    One(String),
    /// Any of these values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The accepted values.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A rule's condition: every listed test must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    /// Header name (or alternatives `A|B`, the first present one tested) → accepted value(s).
    #[serde(default)]
    pub header: BTreeMap<String, Spanned<OneOrMany>>,
    /// JSONPath → accepted value(s), compared as text.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, Spanned<OneOrMany>>,
    /// JSONPaths that must match something non-null.
    #[serde(default)]
    pub exists: Vec<Text>,
    /// JSONPaths that must match nothing (or null).
    #[serde(default)]
    pub missing: Vec<Text>,
}

/// One rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Name shown in `render`, logs and the store; default `rule N`.
    pub name: Option<String>,
    /// Condition; absent: always.
    #[serde(default)]
    pub when: Option<Spanned<WhenSpec>>,
    /// Ignore matching events.
    pub ignore: Option<IgnoreSpec>,
    /// Recipients: group names, `id:<employee id>`, or templates whose text names a group.
    #[serde(default)]
    pub to: Vec<Text>,
    /// Group used when every template recipient names no existing group; default `default`.
    pub fallback: Option<Text>,
    /// The card to build.
    pub card: Option<Spanned<CardSpec>>,
    /// `high` (or a template rendering `high`): sent first when the queue is backed up.
    pub priority: Option<Text>,
    /// Cards of this rule to the same recipients still queued together while sending is
    /// rate-limited go out as one digest card.
    pub coalesce: Option<Spanned<CoalesceSpec>>,
    /// A resolved card replaces its firing card while that one is still queued.
    pub fold: Option<Spanned<FoldSpec>>,
    /// The same key at most once per period; what is held back is counted on the next card.
    pub repeat: Option<Spanned<RepeatSpec>>,
}

/// `coalesce:` of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoalesceSpec {
    /// Cards queued within this long of the oldest go into one digest (default 30 s).
    #[serde(default = "default_coalesce_window", with = "humantime_serde")]
    pub window: std::time::Duration,
    /// Rows of the digest before "+N more" (default 20).
    #[serde(default = "default_coalesce_rows")]
    pub max_rows: usize,
    /// What the digest's title counts (default `cards` / `条通知`): `12 alerts: …`.
    pub noun: Option<LText>,
}

fn default_coalesce_window() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_coalesce_rows() -> usize {
    20
}

/// `fold:` of a rule: which alert a card is about, and whether it fires or is resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldSpec {
    /// The alert's identity (its fingerprint, its group key, or its labels).
    pub key: Text,
    /// `firing` or `resolved` (anything else never folds).
    pub state: Text,
}

/// `repeat:` of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatSpec {
    /// What counts as the same card.
    pub key: Text,
    /// At most one card of a key per this long.
    #[serde(with = "humantime_serde")]
    pub every: std::time::Duration,
}

/// The card of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// Head title (required).
    pub title: LText,
    /// First line.
    pub first: Option<LText>,
    /// Form rows.
    #[serde(default)]
    pub rows: Vec<Spanned<RowSpec>>,
    /// Remark.
    pub remark: Option<LText>,
    /// Click-through link (required).
    pub link: Spanned<LinkSpec>,
}

/// A row, or with `each` a list of rows over an array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSpec {
    /// Label template.
    pub label: LText,
    /// Value template.
    pub value: LText,
    /// JSONPath of the array to expand over (`@` is the element inside label and value).
    pub each: Option<Text>,
    /// Most rows of the list before a "+N more" row (default 10).
    pub max: Option<usize>,
    /// Expand over the entries of an object instead (`@.key`, `@.value`).
    #[serde(default)]
    pub entries: bool,
}

/// The link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Link text.
    pub title: LText,
    /// Link target.
    pub url: LText,
}
