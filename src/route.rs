//! Route: the fourth step. Turns a rule's recipients (group names, literal ids, payload lookups)
//! into a de-duplicated list of employee ids, and a card into send bodies of at most
//! [`MAX_RECIPIENTS`] recipients each.

use std::collections::{BTreeMap, HashSet};

use crate::card::{Card, SendBody};

/// The vendor's limit of recipients in one `/cgi/message/send` request.
pub const MAX_RECIPIENTS: usize = 500;

/// A Fxiaoke employee id: an opaque, non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecipientId(String);

impl TryFrom<String> for RecipientId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            Err("an employee id cannot be empty".into())
        } else {
            Ok(RecipientId(trimmed.to_string()))
        }
    }
}

impl RecipientId {
    /// The id as sent in `toUser`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

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
