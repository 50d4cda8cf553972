//! Route: the fourth step. Resolves the recipients a rule named (group names, literal ids, group
//! names looked up from the payload) against the configured groups into a de-duplicated list of
//! employee ids, and splits a card into send bodies of at most [`MAX_RECIPIENTS`] recipients.

use std::collections::{BTreeMap, HashSet};

pub use crate::card::RecipientId;
use crate::card::{Card, SendBody};
use crate::map::{GroupDirectory, RecipientSpec, Target};

/// The vendor's limit of recipients in one `/cgi/message/send` request.
pub const MAX_RECIPIENTS: usize = 500;

/// The configured groups; `default` always exists.
#[derive(Debug, Clone, Default)]
pub struct Groups(BTreeMap<String, Vec<RecipientId>>);

impl Groups {
    /// Builds the groups from the configuration, adding an empty `default` when absent.
    ///
    /// # Errors
    /// An empty id (the configuration check rejects those first).
    pub fn new(config: &BTreeMap<String, Vec<String>>) -> Result<Groups, String> {
        let mut groups = BTreeMap::new();
        for (name, ids) in config {
            let ids = ids
                .iter()
                .map(|id| RecipientId::try_from(id.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("groups.{name}: {e}"))?;
            groups.insert(name.clone(), ids);
        }
        groups.entry("default".to_string()).or_default();
        Ok(Groups(groups))
    }

    /// The members of a group, when it exists.
    pub fn get(&self, name: &str) -> Option<&[RecipientId]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// True when the group exists.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Every group name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Collects ids in order, dropping repeats.
#[derive(Debug, Default)]
pub struct RecipientSet {
    seen: HashSet<RecipientId>,
    ordered: Vec<RecipientId>,
}

impl RecipientSet {
    /// Adds ids not seen yet.
    pub fn extend<'a>(&mut self, ids: impl IntoIterator<Item = &'a RecipientId>) {
        for id in ids {
            if self.seen.insert(id.clone()) {
                self.ordered.push(id.clone());
            }
        }
    }

    /// The unique ids, in first-seen order.
    pub fn into_vec(self) -> Vec<RecipientId> {
        self.ordered
    }
}

impl GroupDirectory for Groups {
    fn size(&self, group: &str) -> Option<usize> {
        self.get(group).map(<[RecipientId]>::len)
    }

    fn names(&self) -> Vec<&str> {
        Groups::names(self).collect()
    }
}

/// The employee ids `spec` names: groups' members, literal ids, and the members of every group
/// a lookup named, in order, each once. When the rule names nobody, or its lookups name no
/// existing group, the fallback group's members.
pub fn resolve(spec: &RecipientSpec, groups: &Groups) -> Vec<RecipientId> {
    let mut set = RecipientSet::default();
    let (mut lookups, mut selected) = (0, 0);
    for target in &spec.targets {
        match target {
            Target::Group(name) => set.extend(groups.get(name).unwrap_or_default()),
            Target::Id(id) => set.extend([id]),
            Target::Lookup(names) => {
                lookups += 1;
                for name in names {
                    if let Some(members) = groups.get(name) {
                        selected += 1;
                        set.extend(members);
                    }
                }
            }
        }
    }
    let fell_back = spec.targets.is_empty() || (lookups > 0 && selected == 0);
    if fell_back {
        set.extend(groups.get(&spec.fallback).unwrap_or_default());
    }
    let ids = set.into_vec();
    tracing::debug!(
        recipients = ids.len(),
        fallback = fell_back.then_some(spec.fallback.as_str()),
        "recipients resolved"
    );
    ids
}

/// One send body per [`MAX_RECIPIENTS`] recipients; with no recipient at all, one body with an
/// empty `toUser` (stored as failed "no recipients", shown by `render`).
pub fn split(card: &Card, recipients: &[RecipientId]) -> Vec<SendBody> {
    if recipients.is_empty() {
        return vec![SendBody::new(Vec::new(), card)];
    }
    recipients
        .chunks(MAX_RECIPIENTS)
        .map(|chunk| {
            SendBody::new(
                chunk.iter().map(|id| id.as_str().to_string()).collect(),
                card,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::Link;

    fn ids(n: usize) -> Vec<RecipientId> {
        (0..n)
            .map(|i| RecipientId::try_from(format!("{}", 1000 + i)).unwrap())
            .collect()
    }

    #[test]
    fn twelve_hundred_recipients_make_three_messages_with_no_id_twice() {
        let card = Card::new(
            "t".into(),
            None,
            vec![],
            None,
            Link {
                title: "l".into(),
                url: "https://x".into(),
            },
        )
        .unwrap();
        let bodies = split(&card, &ids(1200));
        assert_eq!(
            bodies.iter().map(|b| b.to_user.len()).collect::<Vec<_>>(),
            vec![500, 500, 200]
        );
        let all: HashSet<_> = bodies.iter().flat_map(|b| b.to_user.iter()).collect();
        assert_eq!(all.len(), 1200);
    }

    #[test]
    fn repeated_ids_are_kept_once_in_first_seen_order() {
        let mut set = RecipientSet::default();
        let a = ids(3);
        set.extend(&a);
        set.extend(a.iter().rev());
        assert_eq!(set.into_vec(), a);
    }

    #[test]
    fn the_default_group_always_exists() {
        let groups = Groups::new(&BTreeMap::new()).unwrap();
        assert_eq!(groups.get("default"), Some(&[][..]));
    }
}
