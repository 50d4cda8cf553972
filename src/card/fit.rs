//! Card fitting: cards must read well on a phone and stay within the vendor's limits, whatever
//! the payload holds — long commit messages, alert storms, Chinese text and emoji. Every text is
//! folded to one line and cut on a character boundary with an ellipsis; rows beyond the cap
//! become one "+N more" row; the whole body is kept under a byte budget; the link must be
//! http(s) or `fs://`, else the configured fallback is used.

use serde::Deserialize;

use super::{Link, Row};

/// The limits of `cards.*` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardLimits {
    /// Characters of the head title.
    pub title_max: usize,
    /// Characters of the first line.
    pub first_max: usize,
    /// Characters of a row label.
    pub label_max: usize,
    /// Characters of a row value.
    pub value_max: usize,
    /// Characters of the remark.
    pub remark_max: usize,
    /// Rows of a card, the "+N more" row included.
    pub max_rows: usize,
    /// Bytes of the serialised `composite` object.
    pub body_max_bytes: usize,
    /// Link used when the rendered one is not http(s) or `fs://` (unset: such a card fails).
    pub fallback_link: Option<String>,
    /// The language of the built-in mappings' titles, labels and status words (`en` or
    /// `zh-CN`); a mapping file may pin its own with `locale:`.
    pub locale: super::Locale,
}

impl Default for CardLimits {
    fn default() -> Self {
        CardLimits {
            title_max: 64,
            first_max: 128,
            label_max: 32,
            value_max: 256,
            remark_max: 256,
            max_rows: 20,
            body_max_bytes: 4096,
            fallback_link: None,
            locale: super::Locale::En,
        }
    }
}

impl CardLimits {
    /// Checks the limits are usable.
    ///
    /// # Errors
    /// A limit too small to hold anything, or a fallback link that is not a link.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, min) in [
            ("title_max", self.title_max, 8),
            ("first_max", self.first_max, 8),
            ("label_max", self.label_max, 4),
            ("value_max", self.value_max, 8),
            ("remark_max", self.remark_max, 8),
            ("max_rows", self.max_rows, 1),
            ("body_max_bytes", self.body_max_bytes, 512),
        ] {
            if v < min {
                return Err(format!("cards.{name} must be at least {min}"));
            }
        }
        match &self.fallback_link {
            Some(link) if !is_valid_link(link) => Err(format!(
                "cards.fallback_link {link:?} is not an http(s) or fs:// link"
            )),
            _ => Ok(()),
        }
    }
}

/// Folds a text to one line: line breaks and runs of white space become one space.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// At most `max` characters, the last one `…` when the text was cut.
pub fn ellipsize(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            let mut cut = text[..end].trim_end().to_string();
            cut.push('…');
            cut
        }
    }
}

/// http://, https:// or fs://, with no white space.
pub fn is_valid_link(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("fs://"))
        && url.len() > "fs://".len()
        && !url.chars().any(char::is_whitespace)
}

/// The fitted parts of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// Head title.
    pub title: String,
    /// First line.
    pub first: Option<String>,
    /// Rows.
    pub rows: Vec<Row>,
    /// Remark.
    pub remark: Option<String>,
    /// Link (URL validated or replaced by the fallback).
    pub link: Link,
}

/// How many rows a "+N more" row (in either language) stands for.
fn hidden_by(row: &Row) -> Option<usize> {
    if row.label != "…" {
        return None;
    }
    let v = row.value.as_str();
    v.strip_prefix('+')
        .and_then(|n| n.strip_suffix(" more"))
        .or_else(|| v.strip_prefix("另有 ").and_then(|n| n.strip_suffix(" 条")))?
        .parse()
        .ok()
}

/// Caps `rows` at `max` rows, folding the rest (and any "+N more" rows already there) into one
/// "+N more" row in `locale`.
fn cap_rows(mut rows: Vec<Row>, max: usize, locale: super::Locale) -> Vec<Row> {
    let hidden_before: usize = rows.iter().filter_map(hidden_by).sum();
    if rows.len() <= max {
        return rows;
    }
    rows.retain(|r| r.label != "…");
    let keep = max.saturating_sub(1);
    let hidden = rows.len().saturating_sub(keep) + hidden_before;
    rows.truncate(keep);
    rows.push(super::digest::more_row(hidden, locale));
    rows
}

/// Applies every limit. The link keeps its text if valid; the URL is not cut (a cut URL is a
/// broken link).
pub fn fit(
    title: &str,
    first: Option<&str>,
    rows: Vec<Row>,
    remark: Option<&str>,
    link: Link,
    limits: &CardLimits,
) -> Result<Fitted, String> {
    let text = |t: &str, max| ellipsize(fold(t), max);
    let optional = |t: Option<&str>, max| t.map(|t| text(t, max)).filter(|t| !t.is_empty());
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|r| Row {
            label: text(&r.label, limits.label_max),
            value: text(&r.value, limits.value_max),
        })
        .filter(|r| !r.value.is_empty())
        .collect();
    let url = link.url.trim().to_string();
    let url = if is_valid_link(&url) {
        url
    } else {
        match &limits.fallback_link {
            Some(fallback) => fallback.clone(),
            None if url.is_empty() => url,
            None => {
                return Err(format!(
                    "link url {url:?} is not http(s) or fs:// (set cards.fallback_link)"
                ));
            }
        }
    };
    let mut fitted = Fitted {
        title: text(title, limits.title_max),
        first: optional(first, limits.first_max),
        rows: cap_rows(rows, limits.max_rows, limits.locale),
        remark: optional(remark, limits.remark_max),
        link: Link {
            title: text(&link.title, limits.title_max),
            url,
        },
    };
    shrink_to_budget(&mut fitted, limits.body_max_bytes, limits.locale);
    Ok(fitted)
}

/// The bytes `text` takes inside a JSON string, as serde_json writes it: `"` and `\\` take two,
/// control characters two (`\\n`, `\\t`, …) or six (`\\u001f`), anything else its UTF-8 length.
fn json_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

/// The size of the card as sent: every text as its JSON string, plus the fixed overhead of each
/// part's keys and punctuation.
fn size(f: &Fitted) -> usize {
    let rows: usize = f
        .rows
        .iter()
        .map(|r| json_len(&r.label) + json_len(&r.value) + 24)
        .sum();
    80 + json_len(&f.title)
        + f.first.as_ref().map_or(0, |t| json_len(t) + 24)
        + rows
        + f.remark.as_ref().map_or(0, |t| json_len(t) + 24)
        + json_len(&f.link.title)
        + json_len(&f.link.url)
}

/// Drops rows from the end (counted in the "+N more" row), then shortens the remark and the
/// first line, until the card fits the budget.
fn shrink_to_budget(f: &mut Fitted, budget: usize, locale: super::Locale) {
    while size(f) > budget && f.rows.len() > 1 {
        let target = f.rows.len() - 1;
        f.rows = cap_rows(std::mem::take(&mut f.rows), target.max(1), locale);
        if target <= 1 {
            break;
        }
    }
    for _ in 0..2 {
        let over = size(f).saturating_sub(budget);
        if over == 0 {
            return;
        }
        for part in [&mut f.remark, &mut f.first] {
            if let Some(t) = part.take() {
                let chars = t.chars().count();
                let keep = chars.saturating_sub(over / 2 + 2);
                *part = (keep >= 8).then(|| ellipsize(t, keep));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            title: "Open".into(),
            url: "https://example.com/x".into(),
        }
    }

    fn row(label: &str, value: &str) -> Row {
        Row {
            label: label.into(),
            value: value.into(),
        }
    }

    #[test]
    fn long_texts_are_cut_on_character_boundaries_with_an_ellipsis() {
        assert_eq!(ellipsize("abcdef".into(), 4), "abc…");
        assert_eq!(ellipsize("abc".into(), 3), "abc");
        assert_eq!(ellipsize("你好世界你好".into(), 3), "你好…");
        assert_eq!(ellipsize("😀😀😀😀".into(), 2), "😀…");
        assert_eq!(ellipsize("ab  cdef".into(), 4), "ab…");
    }

    #[test]
    fn text_is_measured_as_its_json_string() {
        for text in ["plain", "say \"hi\"", "a\\b", "tab\there", "\u{1}", "界😀"] {
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(json_len(text), json.len() - 2, "{text:?} as {json}");
        }
    }

    #[test]
    fn multi_line_values_are_folded_to_one_line() {
        assert_eq!(
            fold("Fix the build\r\n\n  and tests\tnow "),
            "Fix the build and tests now"
        );
    }

    #[test]
    fn a_card_at_the_limits_keeps_everything_and_one_over_is_cut() {
        let limits = CardLimits::default();
        let title64 = "界".repeat(64);
        let f = fit(&title64, None, vec![], None, link(), &limits).unwrap();
        assert_eq!(f.title, title64);
        let f = fit(&"界".repeat(65), None, vec![], None, link(), &limits).unwrap();
        assert_eq!(f.title.chars().count(), 64);
        assert!(f.title.ends_with('…'));
    }

    #[test]
    fn empty_rows_are_dropped_and_many_rows_end_in_one_more_row() {
        let limits = CardLimits::default();
        let rows: Vec<Row> = (0..30)
            .map(|i| row(&format!("r{i}"), if i == 3 { " " } else { "v" }))
            .collect();
        let f = fit("t", None, rows, None, link(), &limits).unwrap();
        assert_eq!(f.rows.len(), 20);
        assert_eq!(f.rows[19], row("…", "+10 more"));
        assert!(f.rows.iter().all(|r| r.label != "r3"));
    }

    #[test]
    fn an_existing_more_row_is_counted_when_rows_are_capped_again() {
        let mut rows: Vec<Row> = (0..25).map(|i| row(&format!("r{i}"), "v")).collect();
        rows.push(row("…", "+475 more"));
        let f = fit("t", None, rows, None, link(), &CardLimits::default()).unwrap();
        assert_eq!(f.rows.last(), Some(&row("…", "+481 more")));
    }

    #[test]
    fn a_storm_of_long_rows_stays_under_the_byte_budget() {
        let limits = CardLimits::default();
        let rows: Vec<Row> = (0..500)
            .map(|i| row(&format!("alert {i}"), &"告警内容".repeat(100)))
            .collect();
        let f = fit(
            "t",
            Some(&"x".repeat(500)),
            rows,
            Some(&"y".repeat(5000)),
            link(),
            &limits,
        )
        .unwrap();
        let body = serde_json::json!({"head": {"title": f.title}, "first": {"content": f.first}, "form": f.rows,
            "remark": {"content": f.remark}, "link": f.link});
        assert!(
            body.to_string().len() <= limits.body_max_bytes,
            "{} bytes",
            body.to_string().len()
        );
        assert!(f.rows.last().unwrap().value.ends_with("more"));
    }

    #[test]
    fn links_must_be_http_or_fs_else_the_fallback_is_used_or_the_card_fails() {
        assert!(is_valid_link(
            "fs://CRM/udobj?{\"objDescApiName\":\"AccountObj\"}"
        ));
        assert!(is_valid_link("HTTPS://x.y"));
        assert!(!is_valid_link("javascript:alert(1)"));
        assert!(!is_valid_link("https://a b"));
        let bad = Link {
            title: "Open".into(),
            url: "ftp://x".into(),
        };
        assert!(fit("t", None, vec![], None, bad.clone(), &CardLimits::default()).is_err());
        let limits = CardLimits {
            fallback_link: Some("https://fallback".into()),
            ..CardLimits::default()
        };
        assert_eq!(
            fit("t", None, vec![], None, bad, &limits).unwrap().link.url,
            "https://fallback"
        );
    }
}
