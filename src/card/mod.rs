//! The Fxiaoke composite card and the exact `/cgi/message/send` body it travels in. A [`Card`]
//! can only be built with the fields the vendor requires (head title, link title and URL), so
//! an invalid card never reaches the queue.

pub mod digest;
pub mod fit;
pub mod locale;

use serde::{Deserialize, Serialize};

pub use fit::CardLimits;
pub use locale::Locale;

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

/// One form row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Left-hand text.
    pub label: String,
    /// Right-hand text (always a string: the vendor wants text).
    pub value: String,
}

/// The click-through link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Link text.
    pub title: String,
    /// Target: http(s) or an internal `fs://` address.
    pub url: String,
}

/// A composite card with its required fields present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    title: String,
    first: Option<String>,
    rows: Vec<Row>,
    remark: Option<String>,
    link: Link,
}

/// Why a card could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// A field the vendor requires rendered empty.
    #[error("card {0} rendered empty")]
    Empty(&'static str),
    /// The link is not http(s) or `fs://` and no fallback is configured.
    #[error("card {0}")]
    BadLink(String),
}

fn non_empty(text: String, field: &'static str) -> Result<String, CardError> {
    if text.trim().is_empty() {
        Err(CardError::Empty(field))
    } else {
        Ok(text)
    }
}

impl Card {
    /// Builds a card fitted with the default limits.
    ///
    /// # Errors
    /// An empty title, link title or link URL, or a link that is not http(s) or `fs://`.
    pub fn new(
        title: String,
        first: Option<String>,
        rows: Vec<Row>,
        remark: Option<String>,
        link: Link,
    ) -> Result<Card, CardError> {
        Card::fitted(title, first, rows, remark, link, &CardLimits::default())
    }

    /// Builds a card within `limits` (see [`fit`]); empty optional parts are dropped rather than
    /// sent blank.
    ///
    /// # Errors
    /// An empty title, link title or link URL, or a link that is not http(s) or `fs://` with no
    /// fallback configured.
    pub fn fitted(
        title: String,
        first: Option<String>,
        rows: Vec<Row>,
        remark: Option<String>,
        link: Link,
        limits: &CardLimits,
    ) -> Result<Card, CardError> {
        let f = fit::fit(
            &title,
            first.as_deref(),
            rows,
            remark.as_deref(),
            link,
            limits,
        )
        .map_err(CardError::BadLink)?;
        Ok(Card {
            title: non_empty(f.title, "title")?,
            first: f.first,
            rows: f.rows,
            remark: f.remark,
            link: Link {
                title: non_empty(f.link.title, "link title")?,
                url: non_empty(f.link.url, "link url")?,
            },
        })
    }

    /// The card as the `composite` object of a send body.
    pub fn composite(&self) -> Composite {
        Composite {
            head: Head {
                title: self.title.clone(),
            },
            first: self.first.clone().map(|content| Content { content }),
            form: self.rows.clone(),
            remark: self.remark.clone().map(|content| Content { content }),
            link: self.link.clone(),
        }
    }
}

/// `composite.head`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Header title.
    pub title: String,
}

/// `composite.first` and `composite.remark`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The text.
    pub content: String,
}

/// The `composite` object of `/cgi/message/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composite {
    /// Header.
    pub head: Head,
    /// Content title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<Content>,
    /// Rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form: Vec<Row>,
    /// Summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<Content>,
    /// Click-through link.
    pub link: Link,
}

/// The exact body of one `/cgi/message/send` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendBody {
    /// Recipients, at most 500, unique.
    #[serde(rename = "toUser")]
    pub to_user: Vec<String>,
    /// Always `composite`.
    #[serde(rename = "msgType")]
    pub msg_type: String,
    /// The card.
    pub composite: Composite,
}

impl SendBody {
    /// A composite message to `to_user`.
    pub fn new(to_user: Vec<String>, card: &Card) -> Self {
        SendBody {
            to_user,
            msg_type: "composite".into(),
            composite: card.composite(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link {
            title: "View".into(),
            url: "https://example.com".into(),
        }
    }

    #[test]
    fn a_card_without_a_title_cannot_exist() {
        let err = Card::new(" ".into(), None, vec![], None, link()).unwrap_err();
        assert_eq!(err, CardError::Empty("title"));
    }

    #[test]
    fn empty_optional_parts_are_left_out_of_the_body() {
        let card = Card::new("T".into(), Some("".into()), vec![], None, link()).unwrap();
        let body = serde_json::to_value(SendBody::new(vec!["1000".into()], &card)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"toUser": ["1000"], "msgType": "composite",
                "composite": {"head": {"title": "T"}, "link": {"title": "View", "url": "https://example.com"}}})
        );
    }
}
