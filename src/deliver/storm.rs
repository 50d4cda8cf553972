//! Storms. The vendor takes 100 calls per 20 s for the whole app, so during an incident the
//! queue backs up; what is still queued when the sender gets to it goes out merged. When the
//! worker claims a message, the store shows it here with its companions — queued messages of
//! the same rule and recipients within the rule's `coalesce.window`, and of the same alert —
//! and this module writes the card it goes out as:
//!
//! - a firing alert whose resolution is queued too goes out once, as the resolved card saying
//!   when it fired and when it was resolved (`fold`);
//! - the rest go out as one digest card counting them, a row each (`coalesce`);
//! - repeats held back before it (`repeat`) are counted on the card.
//!
//! Nothing waits for a storm: a message with no companions goes out at once, as it is. The
//! merged messages become `coalesced` into the one sent, in the claim's transaction, so a
//! message is never sent twice and a digest that fails is retried whole.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::card::digest::{self, DigestStyle, Part};
use crate::card::{CardLimits, Composite, Locale, SendBody};
use crate::store::{Composed, Queued};

/// How a digest or fold of a message is written, as its rule said (stored with it).
#[derive(Debug, Deserialize)]
struct MergeSpec {
    #[serde(default = "default_rows")]
    max_rows: usize,
    #[serde(default)]
    noun: String,
    #[serde(default)]
    locale: Option<Locale>,
}

fn default_rows() -> usize {
    20
}

/// Writes merged cards.
#[derive(Debug, Clone)]
pub struct Merger {
    /// Whether messages are merged at all (`delivery.coalesce`); repeats are counted anyway.
    pub merging: bool,
    /// The zone of the times on merged cards (`mappings.timezone`).
    pub tz: chrono_tz::Tz,
    /// How cards are fitted (`cards.*`).
    pub limits: CardLimits,
}

/// What one merge took along, for the metrics.
#[derive(Debug, Default)]
pub struct Taken {
    /// Messages merged, by (source, rule).
    pub by_rule: BTreeMap<(String, String), u64>,
}

impl Merger {
    fn time(&self, unix_ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(unix_ms).map_or_else(
            || "--:--".into(),
            |t| t.with_timezone(&self.tz).format("%H:%M").to_string(),
        )
    }

    /// The card `carrier` goes out as, and the companions it takes along.
    pub fn compose(&self, carrier: &Queued, companions: &[Queued], taken: &mut Taken) -> Composed {
        let Ok(mut body) = serde_json::from_str::<SendBody>(&carrier.body) else {
            return Composed::default();
        };
        let spec: MergeSpec = carrier
            .merge
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or(MergeSpec {
                max_rows: default_rows(),
                noun: String::new(),
                locale: None,
            });
        let locale = spec.locale.unwrap_or(self.limits.locale);
        let card_of = |q: &Queued| {
            serde_json::from_str::<SendBody>(&q.body)
                .ok()
                .map(|b| b.composite)
        };
        let mut merged: Vec<&Queued> = Vec::new();
        let mut card = body.composite.clone();
        let mut changed = false;

        // An alert whose latest queued card is its resolution, with a firing card of it queued
        // too: one card, the resolution, saying when it fired. (When it fired again after the
        // resolution, nothing folds: the digest below tells each card in order.)
        if self.merging && carrier.fold_key.is_some() {
            let same_alert: Vec<&Queued> = companions
                .iter()
                .filter(|q| q.fold_key == carrier.fold_key)
                .collect();
            let all = || std::iter::once(carrier).chain(same_alert.iter().copied());
            let latest = all().max_by_key(|q| (q.created_at, q.id));
            let first_firing = all()
                .filter(|q| q.fold_state.as_deref() == Some("firing"))
                .min_by_key(|q| (q.created_at, q.id));
            if let (Some(latest), Some(fired)) = (latest, first_firing)
                && latest.fold_state.as_deref() == Some("resolved")
                && let Some(resolved_card) = card_of(latest)
                && let Ok(folded) = digest::fold(
                    &resolved_card,
                    &self.time(fired.created_at),
                    &self.time(latest.created_at),
                    locale,
                    &self.limits,
                )
            {
                card = folded;
                changed = true;
                // Every queued card of this alert is told by this one.
                merged.extend(same_alert.iter().copied());
            }
        }

        // The others of the same rule and recipients: one digest.
        let members: Vec<(&Queued, Composite)> = if self.merging {
            companions
                .iter()
                .filter(|q| q.coalesce_key.is_some() && q.coalesce_key == carrier.coalesce_key)
                .filter(|q| !merged.iter().any(|m| m.id == q.id))
                .filter_map(|q| card_of(q).map(|c| (q, c)))
                .collect()
        } else {
            Vec::new()
        };
        let held_back: i64 = std::iter::once(carrier)
            .chain(merged.iter().copied())
            .chain(members.iter().map(|(q, _)| *q))
            .map(|q| q.suppressed_before)
            .sum();
        let held_back = u64::try_from(held_back).unwrap_or(0);
        if !members.is_empty() {
            let mut parts = vec![Part {
                card: &card,
                at: self.time(carrier.created_at),
            }];
            parts.extend(members.iter().map(|(q, c)| Part {
                card: c,
                at: self.time(q.created_at),
            }));
            let noun = match spec.noun.trim() {
                "" => digest::default_noun(locale),
                n => n,
            };
            let style = DigestStyle {
                noun,
                max_rows: spec.max_rows,
                locale,
            };
            if let Ok(d) = digest::digest(&parts, &style, held_back, &self.limits) {
                card = d;
                changed = true;
                merged.extend(members.iter().map(|(q, _)| *q));
            }
        } else if held_back > 0
            && let Ok(c) = digest::with_held_back(&card, held_back, locale, &self.limits)
        {
            card = c;
            changed = true;
        }

        for q in &merged {
            *taken
                .by_rule
                .entry((q.source.clone(), q.rule.clone()))
                .or_default() += 1;
        }
        body.composite = card;
        Composed {
            body: changed.then(|| serde_json::to_string(&body).unwrap_or_default()),
            merged: merged.iter().map(|q| q.id).collect(),
        }
    }
}

/// Whether a storm is being coalesced now: merges of the last minute, for `/readyz` and the
/// console.
#[derive(Debug, Default)]
pub struct StormWatch {
    merges: Mutex<Vec<(Instant, u64)>>,
}

/// How long a merge counts as "now".
const RECENT: Duration = Duration::from_secs(60);

impl StormWatch {
    /// `n` messages were merged into one card just now.
    pub fn merged(&self, n: u64) {
        if let Ok(mut merges) = self.merges.lock() {
            let now = Instant::now();
            merges.retain(|(at, _)| now.duration_since(*at) < RECENT);
            merges.push((now, n));
        }
    }

    /// Messages merged in the last minute (0: no storm being coalesced).
    pub fn merged_last_minute(&self) -> u64 {
        self.merges.lock().map_or(0, |merges| {
            let now = Instant::now();
            merges
                .iter()
                .filter(|(at, _)| now.duration_since(*at) < RECENT)
                .map(|(_, n)| n)
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{Card, Link};

    fn body(title: &str, to: &str) -> String {
        let card = Card::new(
            title.into(),
            Some("first".into()),
            vec![],
            None,
            Link {
                title: "Open".into(),
                url: format!("https://example.com/{}", title.len()),
            },
        )
        .unwrap();
        serde_json::to_string(&SendBody::new(vec![to.into()], &card)).unwrap()
    }

    fn queued(id: i64, title: &str, at_min: i64) -> Queued {
        Queued {
            id,
            source: "alertmanager".into(),
            rule: "alert-group".into(),
            body: body(title, "1000"),
            created_at: 1_700_000_000_000 + at_min * 60_000,
            coalesce_key: Some("k".into()),
            fold_key: None,
            fold_state: None,
            suppressed_before: 0,
            merge: Some(r#"{"max_rows":20,"noun":"alerts","locale":"en"}"#.into()),
        }
    }

    fn merger(merging: bool) -> Merger {
        Merger {
            merging,
            tz: chrono_tz::UTC,
            limits: CardLimits::default(),
        }
    }

    fn sent(composed: &Composed) -> SendBody {
        serde_json::from_str(composed.body.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn queued_cards_of_one_rule_and_recipients_go_out_as_one_digest() {
        let carrier = queued(1, "[FIRING:1] Disk", 0);
        let others = [
            queued(2, "[FIRING:1] CPU", 1),
            queued(3, "[FIRING:1] Net", 2),
        ];
        let mut taken = Taken::default();
        let composed = merger(true).compose(&carrier, &others, &mut taken);
        assert_eq!(composed.merged, [2, 3]);
        let d = sent(&composed);
        assert_eq!(d.to_user, ["1000"]);
        assert!(
            d.composite
                .head
                .title
                .starts_with("3 alerts: [FIRING:1] Disk, [FIRING:1] CPU")
        );
        assert_eq!(d.composite.form.len(), 3);
        assert_eq!(
            taken.by_rule[&("alertmanager".into(), "alert-group".into())],
            2
        );
    }

    #[test]
    fn alone_or_with_merging_off_a_card_goes_out_as_it_is() {
        let carrier = queued(1, "[FIRING:1] Disk", 0);
        let mut taken = Taken::default();
        let alone = merger(true).compose(&carrier, &[], &mut taken);
        assert!(alone.body.is_none() && alone.merged.is_empty());
        let off = merger(false).compose(&carrier, &[queued(2, "x", 1)], &mut taken);
        assert!(off.body.is_none() && off.merged.is_empty());
    }

    #[test]
    fn a_firing_alert_whose_resolution_is_queued_goes_out_once_resolved() {
        let mut firing = queued(1, "[FIRING:1] Disk", 0);
        firing.coalesce_key = None;
        firing.fold_key = Some("alert".into());
        firing.fold_state = Some("firing".into());
        let mut resolved = queued(2, "[RESOLVED] Disk", 3);
        resolved.coalesce_key = None;
        resolved.fold_key = Some("alert".into());
        resolved.fold_state = Some("resolved".into());
        let composed = merger(true).compose(&firing, &[resolved], &mut Taken::default());
        assert_eq!(composed.merged, [2]);
        let card = sent(&composed).composite;
        assert_eq!(card.head.title, "[RESOLVED] Disk");
        let first = card.first.unwrap().content;
        assert!(
            first.starts_with("fired at 22:13, resolved at 22:16"),
            "{first}"
        );
    }

    #[test]
    fn an_alert_that_fired_again_after_its_resolution_is_not_folded_away() {
        let alert = |id, title: &str, state: &str, at| {
            let mut q = queued(id, title, at);
            q.coalesce_key = None;
            q.fold_key = Some("alert".into());
            q.fold_state = Some(state.into());
            q
        };
        let firing = alert(1, "[FIRING:1] Disk", "firing", 0);
        let companions = [
            alert(2, "[RESOLVED] Disk", "resolved", 5),
            alert(3, "[FIRING:1] Disk", "firing", 7),
        ];
        let composed = merger(true).compose(&firing, &companions, &mut Taken::default());
        assert!(
            composed.merged.is_empty(),
            "the alert fires: nothing is folded away"
        );
        // A resolution that is the latest card folds everything before it, even a carrier that
        // is itself the resolution with older firings still queued (they backed off).
        let resolved = alert(4, "[RESOLVED] Disk", "resolved", 9);
        let older = [alert(5, "[FIRING:1] Disk", "firing", 1)];
        let composed = merger(true).compose(&resolved, &older, &mut Taken::default());
        assert_eq!(composed.merged, [5]);
        let first = sent(&composed).composite.first.unwrap().content;
        assert!(
            first.starts_with("fired at 22:14, resolved at 22:22"),
            "{first}"
        );
    }

    #[test]
    fn repeats_held_back_are_counted_on_the_next_card() {
        let mut carrier = queued(1, "[FIRING:1] Disk", 0);
        carrier.suppressed_before = 7;
        let composed = merger(true).compose(&carrier, &[], &mut Taken::default());
        let remark = sent(&composed).composite.remark.unwrap().content;
        assert_eq!(remark, "7 repeat(s) held back since the previous card");
    }
}
