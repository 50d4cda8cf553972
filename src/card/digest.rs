//! Cards made of other cards during a storm: a digest of several queued cards, an alert's
//! firing card folded with its resolution, and the count of repeats held back. Their fixed
//! words follow the card's language; every text that came from the original cards is kept.

use super::{Card, CardError, CardLimits, Composite, Link, Locale, Row};

/// What a digest's title counts when the rule names nothing.
pub fn default_noun(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "cards",
        Locale::ZhCn => "条通知",
    }
}

/// How many distinct titles a digest's title names at most.
const NAMED: usize = 8;

/// One card of a digest.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    /// Its card.
    pub card: &'a Composite,
    /// When it was queued, as the reader's clock says (`10:02`).
    pub at: String,
}

/// How a digest is written.
#[derive(Debug, Clone)]
pub struct DigestStyle<'a> {
    /// What the title counts (`alerts`, `条告警`).
    pub noun: &'a str,
    /// Rows before "+N more".
    pub max_rows: usize,
    /// The language of the fixed words.
    pub locale: Locale,
}

fn join(locale: Locale, items: &[&str]) -> String {
    match locale {
        Locale::En => items.join(", "),
        Locale::ZhCn => items.join("、"),
    }
}

fn build(c: Composite, limits: &CardLimits) -> Result<Composite, CardError> {
    Card::fitted(
        c.head.title,
        c.first.map(|f| f.content),
        c.form,
        c.remark.map(|r| r.content),
        c.link,
        limits,
    )
    .map(|card| card.composite())
}

fn content(text: String) -> Option<super::Content> {
    (!text.trim().is_empty()).then_some(super::Content { content: text })
}

/// One card for `parts` (oldest first, at least one): a title that counts them and names the
/// first distinct titles, when they were queued, a row per card (its time and title) up to
/// `max_rows` then "+N more", the repeats held back, and the newest card's link.
///
/// # Errors
/// The newest card's link is not valid (it was when that card was made).
pub fn digest(
    parts: &[Part<'_>],
    style: &DigestStyle<'_>,
    suppressed: u64,
    limits: &CardLimits,
) -> Result<Composite, CardError> {
    let Some((newest, oldest)) = parts.last().zip(parts.first()) else {
        return Err(CardError::Empty("digest"));
    };
    let n = parts.len();
    // The first few distinct titles (the title is cut at its limit anyway).
    let mut seen = std::collections::HashSet::new();
    let titles: Vec<&str> = parts
        .iter()
        .map(|p| p.card.head.title.as_str())
        .filter(|t| seen.insert(*t))
        .take(NAMED)
        .collect();
    let named = join(style.locale, &titles);
    let title = match style.locale {
        Locale::En => format!("{n} {}: {named}", style.noun),
        Locale::ZhCn => format!("{n} {}：{named}", style.noun),
    };
    let span = if oldest.at == newest.at {
        oldest.at.clone()
    } else {
        format!("{}–{}", oldest.at, newest.at)
    };
    let first = match style.locale {
        Locale::En => format!("{span}: sent as one card while sending was rate-limited"),
        Locale::ZhCn => format!("{span}：发送受限期间合并为一张卡片"),
    };
    // The fitter keeps `limits.max_rows`; this digest's own "+N more" counts as one of them.
    let shown = style.max_rows.min(limits.max_rows.saturating_sub(1)).max(1);
    let mut rows: Vec<Row> = parts
        .iter()
        .take(shown)
        .map(|p| Row {
            label: p.at.clone(),
            value: p.card.head.title.clone(),
        })
        .collect();
    if n > shown {
        rows.push(more_row(n - shown, style.locale));
    }
    let remark = (suppressed > 0).then(|| held_back(suppressed, style.locale));
    build(
        Composite {
            head: super::Head { title },
            first: content(first),
            form: rows,
            remark: remark.and_then(content),
            link: Link {
                title: newest.card.link.title.clone(),
                url: newest.card.link.url.clone(),
            },
        },
        limits,
    )
}

/// The resolved card of an alert whose firing card had not gone out yet: one card saying when
/// it fired and when it was resolved.
///
/// # Errors
/// The resolved card's link is not valid (it was when that card was made).
pub fn fold(
    resolved: &Composite,
    fired_at: &str,
    resolved_at: &str,
    locale: Locale,
    limits: &CardLimits,
) -> Result<Composite, CardError> {
    let when = match locale {
        Locale::En => format!("fired at {fired_at}, resolved at {resolved_at}"),
        Locale::ZhCn => format!("{fired_at} 告警，{resolved_at} 已恢复"),
    };
    let first = match &resolved.first {
        Some(f) => format!("{when} · {}", f.content),
        None => when,
    };
    let mut card = resolved.clone();
    card.first = content(first);
    build(card, limits)
}

/// `card` with the count of repeats held back since the previous card of its key.
///
/// # Errors
/// The card's link is not valid (it was when that card was made).
pub fn with_held_back(
    card: &Composite,
    suppressed: u64,
    locale: Locale,
    limits: &CardLimits,
) -> Result<Composite, CardError> {
    let note = held_back(suppressed, locale);
    let remark = match &card.remark {
        Some(r) => format!("{note} · {}", r.content),
        None => note,
    };
    let mut card = card.clone();
    card.remark = content(remark);
    build(card, limits)
}

fn held_back(n: u64, locale: Locale) -> String {
    match locale {
        Locale::En => format!("{n} repeat(s) held back since the previous card"),
        Locale::ZhCn => format!("上一张卡片之后已抑制 {n} 条重复通知"),
    }
}

/// The row that stands for `n` rows left out.
pub fn more_row(n: usize, locale: Locale) -> Row {
    Row {
        label: "…".into(),
        value: match locale {
            Locale::En => format!("+{n} more"),
            Locale::ZhCn => format!("另有 {n} 条"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{Content, Head};

    fn card(title: &str, url: &str) -> Composite {
        Composite {
            head: Head {
                title: title.into(),
            },
            first: Some(Content {
                content: "first".into(),
            }),
            form: vec![],
            remark: None,
            link: Link {
                title: "Open".into(),
                url: url.into(),
            },
        }
    }

    #[test]
    fn a_digest_counts_its_cards_names_each_once_and_links_to_the_newest() {
        let (a, b) = (
            card("[FIRING:1] Disk", "https://a"),
            card("[FIRING:1] CPU", "https://b"),
        );
        let parts = [
            Part {
                card: &a,
                at: "10:02".into(),
            },
            Part {
                card: &b,
                at: "10:03".into(),
            },
            Part {
                card: &a,
                at: "10:04".into(),
            },
        ];
        let style = DigestStyle {
            noun: "alerts",
            max_rows: 2,
            locale: Locale::En,
        };
        let d = digest(&parts, &style, 0, &CardLimits::default()).unwrap();
        assert_eq!(d.head.title, "3 alerts: [FIRING:1] Disk, [FIRING:1] CPU");
        assert_eq!(
            d.first.unwrap().content,
            "10:02–10:04: sent as one card while sending was rate-limited"
        );
        let rows: Vec<(&str, &str)> = d
            .form
            .iter()
            .map(|r| (r.label.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("10:02", "[FIRING:1] Disk"),
                ("10:03", "[FIRING:1] CPU"),
                ("…", "+1 more")
            ]
        );
        assert_eq!(d.link.url, "https://a");
        assert!(d.remark.is_none());
        let zh = DigestStyle {
            noun: "条告警",
            max_rows: 20,
            locale: Locale::ZhCn,
        };
        let d = digest(&parts, &zh, 4, &CardLimits::default()).unwrap();
        assert_eq!(d.head.title, "3 条告警：[FIRING:1] Disk、[FIRING:1] CPU");
        assert_eq!(
            d.remark.unwrap().content,
            "上一张卡片之后已抑制 4 条重复通知"
        );
    }

    #[test]
    fn a_folded_alert_says_when_it_fired_and_when_it_was_resolved() {
        let resolved = card("[RESOLVED] Disk", "https://a");
        let f = fold(
            &resolved,
            "10:02",
            "10:05",
            Locale::En,
            &CardLimits::default(),
        )
        .unwrap();
        assert_eq!(f.head.title, "[RESOLVED] Disk");
        assert_eq!(
            f.first.unwrap().content,
            "fired at 10:02, resolved at 10:05 · first"
        );
        let f = fold(
            &resolved,
            "10:02",
            "10:05",
            Locale::ZhCn,
            &CardLimits::default(),
        )
        .unwrap();
        assert_eq!(f.first.unwrap().content, "10:02 告警，10:05 已恢复 · first");
    }
}
