//! The pipeline's work for one verified payload, in one place: map it with its source's rules,
//! route the card to its recipients, and say what to store — the event with its delivery id,
//! type, the headers that may be kept, and its messages. Pure: no I/O, no clock but the
//! payload's own arrival time. Every caller uses it: the HTTP handler (then commits the event),
//! the admin API's re-map and render, `fxhook render`, and the benches.
//!
//! (Mapping files' examples state what the map step gives, not whom it reaches, so they run the
//! map step alone: see `map::examples`.)

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::http::header::HeaderMap;
use aho_corasick::AhoCorasick;
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::card::SendBody;
use crate::map::jsonpath::Scope;
use crate::map::{Mapped, Mapping, Storm};
use crate::route::{self, Groups};
use crate::source::{Dedup, Source};
use crate::store::{EventOutcome, MessageStorm, NewEvent, NewMessage};
use crate::verify::{Payload, Verified, Verifier, Webhook};

/// What map and route made of a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// No rule wants it, or a rule ignores it: nothing is stored.
    Ignored {
        /// Why, for the sender and the logs.
        reason: String,
    },
    /// Rendered into send bodies.
    Rendered {
        /// The rule that matched.
        rule: String,
        /// One body per ≤500 recipients (one with `toUser: []` when there are none).
        messages: Vec<SendBody>,
        /// How they behave in a storm.
        storm: Storm,
    },
    /// The matching rule could not render a valid card: stored as failed, for a re-map.
    Failed {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

/// Maps `payload` with `mapping` and routes the card through `groups`.
pub fn render(mapping: &Mapping, payload: &Verified<Payload>, groups: &Groups, tz: Tz) -> Routed {
    match mapping.map(payload, tz) {
        Mapped::Ignored { reason } => Routed::Ignored { reason },
        Mapped::Failed { rule, reason } => Routed::Failed { rule, reason },
        Mapped::Rendered {
            rule,
            card,
            to,
            storm,
        } => Routed::Rendered {
            rule,
            messages: route::split(&card, &route::resolve(&to, groups)),
            storm,
        },
    }
}

impl Routed {
    /// The document of `fxhook render` and `POST /admin/render`: `{"status":"rendered",…}` or
    /// `{"status":"ignored",…}`.
    ///
    /// # Errors
    /// The mapping failed: the rule and the reason.
    pub fn document(&self) -> Result<Value, String> {
        match self {
            Routed::Ignored { reason } => Ok(json!({"status": "ignored", "reason": reason})),
            Routed::Rendered { rule, messages, .. } => {
                Ok(json!({"status": "rendered", "rule": rule, "messages": messages}))
            }
            Routed::Failed { rule, reason } => Err(format!("rule {rule}: {reason}")),
        }
    }

    /// What the store keeps of this result for `source`; `Err(reason)` for an ignored event
    /// (nothing).
    ///
    /// # Errors
    /// The event is ignored.
    pub fn outcome(&self, source: &str) -> Result<EventOutcome, String> {
        match self {
            Routed::Ignored { reason } => Err(reason.clone()),
            Routed::Rendered {
                rule,
                messages,
                storm,
            } => Ok(EventOutcome::Mapped {
                rule: rule.clone(),
                messages: messages
                    .iter()
                    .map(|m| NewMessage {
                        // Serialising a struct of strings cannot fail.
                        body: serde_json::to_string(m).unwrap_or_default(),
                        failed: m.to_user.is_empty().then(|| "no recipients".to_string()),
                        storm: message_storm(source, rule, &m.to_user, storm),
                    })
                    .collect(),
            }),
            Routed::Failed { rule, reason } => Ok(EventOutcome::Failed {
                rule: Some(rule.clone()),
                reason: reason.clone(),
            }),
        }
    }
}

/// What the store keeps of a card's storm handling: its coalesce key is its source, rule and
/// recipients (only cards to the same people merge), its fold key the alert's key with its
/// source and recipients (a firing card and its resolution may come from different rules).
fn message_storm(source: &str, rule: &str, to: &[String], storm: &Storm) -> MessageStorm {
    let recipients = {
        use sha2::Digest;
        let mut ids: Vec<&str> = to.iter().map(String::as_str).collect();
        ids.sort_unstable();
        hex::encode(&sha2::Sha256::digest(ids.join(",").as_bytes())[..12])
    };
    let merge = (storm.coalesce.is_some() || storm.fold.is_some()).then(|| {
        let (rows, noun) = storm
            .coalesce
            .as_ref()
            .map_or((20, String::new()), |c| (c.max_rows, c.noun.clone()));
        json!({"max_rows": rows, "noun": noun, "locale": storm.locale.as_str()}).to_string()
    });
    MessageStorm {
        high_priority: storm.high_priority,
        coalesce: storm
            .coalesce
            .as_ref()
            .map(|c| (format!("{source}\u{1f}{rule}\u{1f}{recipients}"), c.window)),
        fold: storm.fold.as_ref().map(|(key, state)| {
            (
                format!("{source}\u{1f}{recipients}\u{1f}{key}"),
                state.as_str().to_string(),
            )
        }),
        repeat: storm.repeat.clone(),
        merge,
    }
}

/// What to do with one verified webhook.
#[derive(Debug, Clone)]
pub enum Processed {
    /// Nothing to store: answer `200 ignored` with the reason.
    Ignored(String),
    /// Store this event (its messages queued, or the event kept as failed).
    Store(Box<NewEvent>),
}

/// The whole pipeline for a verified webhook of `source`: map, route, and the event to store.
pub fn process(source: &Source, payload: &Verified<Payload>, groups: &Groups, tz: Tz) -> Processed {
    let routed = render(&source.mapping, payload, groups, tz);
    let outcome = match routed.outcome(source.name.as_str()) {
        Ok(outcome) => outcome,
        Err(reason) => return Processed::Ignored(reason),
    };
    let p = payload.inner();
    Processed::Store(Box::new(NewEvent {
        id: uuid::Uuid::now_v7().to_string(),
        source: source.name.to_string(),
        event_type: source
            .event_header
            .as_deref()
            .and_then(|h| h.split('|').find_map(|name| p.webhook.header(name.trim())))
            .map(str::to_string),
        delivery_id: delivery_id(&source.dedup, p, tz),
        received_at: p.webhook.received_at,
        headers: headers_json(&p.webhook.headers, &source.verifier),
        payload: p.bytes.clone(),
        stored_payload: None,
        outcome,
    }))
}

/// The delivery id a request's headers carry, when its source takes the id from a header:
/// known before the body is parsed.
pub fn header_delivery_id<'w>(dedup: &Dedup, webhook: &'w Webhook) -> Option<&'w str> {
    match dedup {
        Dedup::Headers(names) => names
            .iter()
            .find_map(|h| webhook.header(h))
            .filter(|s| !s.trim().is_empty()),
        Dedup::Off | Dedup::Path(_) => None,
    }
}

/// The delivery id of a payload, per the source's dedup setting.
pub fn delivery_id(dedup: &Dedup, payload: &Payload, tz: Tz) -> Option<String> {
    let id = match dedup {
        Dedup::Off => None,
        Dedup::Headers(_) => header_delivery_id(dedup, &payload.webhook).map(str::to_string),
        Dedup::Path(path) => {
            let scope = Scope::new(&payload.json, tz);
            path.query(&scope).first().and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        }
    };
    id.filter(|s| !s.trim().is_empty())
}

/// Headers whose names say they carry credentials (whatever the source's scheme). Not `key`
/// alone: Bitbucket names its event `X-Event-Key`, which re-mapping needs. Names come
/// lowercase (as `HeaderMap` keeps them, and as [`scrub_stored_headers`] makes them).
fn is_sensitive(name: &str) -> bool {
    /// The words, found in one pass over a name (a dozen headers on every request).
    static WORDS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
        AhoCorasick::new([
            "token",
            "signature",
            "secret",
            "hmac",
            "auth",
            "password",
            "credential",
            "api-key",
            "apikey",
        ])
        .ok()
    });
    matches!(name, "authorization" | "proxy-authorization" | "cookie")
        // Without the automaton (it cannot fail to build on these words), keep nothing.
        || WORDS.as_ref().is_none_or(|words| words.is_match(name))
}

/// True when a header may be stored: never one that carries the source's signature or token
/// (the scheme names them, whatever they are called), never one whose value contains a secret
/// of the source, and none whose name says it holds credentials. Without a verifier (the
/// source's mapping is not loaded) only the names are judged.
fn keeps_header(name: &str, value: &[u8], verifier: Option<&Verifier>) -> bool {
    !is_sensitive(name) && !verifier.is_some_and(|v| v.is_credential(name, value))
}

/// The headers worth keeping with an event (for re-mapping and inspection), as a JSON object.
pub fn headers_json(headers: &HeaderMap, verifier: &Verifier) -> String {
    // By name (the order a JSON object of them always had); repeated headers joined by ", ".
    let mut kept: BTreeMap<&str, Cow<'_, str>> = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !keeps_header(name, value.as_bytes(), Some(verifier)) {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        match kept.get_mut(name) {
            Some(existing) => {
                let joined = existing.to_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => {
                kept.insert(name, value);
            }
        }
    }
    serde_json::to_string(&kept).unwrap_or_else(|_| "{}".into())
}

/// The stored headers of an event (a JSON object) with what [`headers_json`] would not keep
/// removed; `None` when nothing is removed. For stores written by versions that kept more.
pub fn scrub_stored_headers(json: &str, verifier: Option<&Verifier>) -> Option<String> {
    let Value::Object(mut map) = serde_json::from_str(json).ok()? else {
        return None;
    };
    let before = map.len();
    map.retain(|name, value| {
        let text = value.as_str().unwrap_or_default();
        keeps_header(&name.to_ascii_lowercase(), text.as_bytes(), verifier)
    });
    (map.len() != before).then(|| Value::Object(map).to_string())
}
