//! The admin API answers from either backend alike: the same story played on both stores gives
//! the same JSON, key for key and value for value, once the numeric ids and the times the
//! store takes from its own clock are replaced by placeholders.

use crate::store_contract::as_is;
use std::time::Duration;

use fxhook::store::{
    AttemptOutcome, AttemptRecord, EventState, MessageState, NewEvent, Transition, from_unix_ms,
};
use serde_json::{Value, json};

use super::{
    Backend, Fresh, Store, mapped, no_recipients, queued, record, store_event, unmapped,
    with_delivery,
};

/// Values the store takes from its own clock, or numbers it allocates.
const NORMALISED: &[&str] = &["id", "updated_at", "finished_at"];

/// The same story on any store, at fixed times.
fn play(store: &mut dyn Store) {
    let t0 = from_unix_ms(1_700_000_000_000);
    let s = Duration::from_secs;
    let rich = NewEvent {
        headers: r#"{"x-request-id":"r-1","user-agent":"GitHub-Hookshot/«ü»"}"#.into(),
        payload: br#"{"n":1.5,"text":"caf\u00e9 \u2603","nested":{"list":[1,null,true]},"big":12345678901234}"#
            .to_vec()
            .into(),
        ..with_delivery(mapped("e-1", t0, vec![queued("a"), no_recipients("b"), queued("c")]), "d-1")
    };
    store_event(store, &rich);
    store_event(
        store,
        &NewEvent {
            event_type: None,
            ..unmapped("e-2", t0 + s(1))
        },
    );
    store_event(store, &mapped("e-3", t0 + s(2), vec![queued("d")]));
    store_event(
        store,
        &mapped("e-4", t0 + s(3), vec![queued("e"), queued("f")]),
    );

    let a = store
        .claim_next(t0 + s(10), false, &mut as_is)
        .unwrap()
        .unwrap();
    let refresh = AttemptRecord {
        outcome: AttemptOutcome::TokenRefresh,
        http_status: Some(200),
        error_code: Some(20016),
        error_message: Some("token invalid".into()),
        trace_id: Some("E-1".into()),
        third_trace_id: None,
    };
    let delivered = Transition {
        state: MessageState::Delivered,
        next_attempt_at: None,
        last_error: None,
        counts: true,
    };
    store
        .finish_attempt(
            a.id,
            t0 + s(10),
            &[refresh, record(AttemptOutcome::Delivered)],
            &delivered,
        )
        .unwrap();
    let c = store
        .claim_next(t0 + s(11), false, &mut as_is)
        .unwrap()
        .unwrap();
    let retry = Transition {
        state: MessageState::Queued,
        next_attempt_at: Some(t0 + s(60)),
        last_error: Some("HTTP 503".into()),
        counts: true,
    };
    let unavailable = AttemptRecord {
        http_status: Some(503),
        error_code: None,
        error_message: Some("HTTP 503".into()),
        trace_id: None,
        ..record(AttemptOutcome::Retry)
    };
    store
        .finish_attempt(c.id, t0 + s(11), &[unavailable], &retry)
        .unwrap();
    let d = store
        .claim_next(t0 + s(12), false, &mut as_is)
        .unwrap()
        .unwrap();
    let dead = Transition {
        state: MessageState::Dead,
        next_attempt_at: None,
        last_error: Some("refused: 10001".into()),
        counts: true,
    };
    let refused = AttemptRecord {
        error_code: Some(10001),
        ..record(AttemptOutcome::Refused)
    };
    store
        .finish_attempt(d.id, t0 + s(12), &[refused], &dead)
        .unwrap();
    store
        .claim_next(t0 + s(13), false, &mut as_is)
        .unwrap()
        .unwrap();
    store.deliver_dry_run(t0 + s(14), 10, &mut |_| {}).unwrap();
    store.replay_message(d.id, t0 + s(20)).unwrap();
}

/// Everything the admin API can ask of `store`.
fn answers(store: &dyn Store) -> Value {
    let mut all = json!({
        "events": store.list_events(None, 100).unwrap(),
        "failed events": store.list_events(Some(EventState::Failed), 100).unwrap(),
        "two events": store.list_events(None, 2).unwrap(),
        "messages": store.list_messages(None, 100).unwrap(),
        "queued messages": store.list_messages(Some(MessageState::Queued), 100).unwrap(),
        "no such event": store.event_detail("nope").unwrap(),
    });
    for id in ["e-1", "e-2", "e-3", "e-4"] {
        all[format!("event {id}")] = store.event_detail(id).unwrap().unwrap();
        let stored = store.stored_event(id).unwrap().unwrap();
        all[format!("stored {id}")] = json!({
            "source": stored.source,
            "headers": stored.headers,
            "payload": String::from_utf8(stored.payload).unwrap(),
            "received_at": stored.received_at,
        });
    }
    let mut ids: Vec<i64> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    for (n, id) in ids.iter().enumerate() {
        all[format!("message {n}")] = store.message_detail(*id).unwrap().unwrap();
    }
    normalise(&mut all);
    all
}

fn normalise(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if NORMALISED.contains(&key.as_str()) && value.is_number() {
                    *value = json!(format!("<{key}>"));
                } else {
                    normalise(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// Where `a` and `b` differ, as JSON paths.
fn differences(path: &str, a: &Value, b: &Value, found: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => differences(&format!("{path}.{k}"), p, q, found),
                    (p, q) => found.push(format!("{path}.{k}: {p:?} vs {q:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, found);
            }
        }
        _ if a != b => found.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}

#[test]
fn both_stores_answer_the_admin_queries_with_the_same_json() {
    let [sqlite, postgres] = [Backend::Sqlite, Backend::Postgres].map(|backend| {
        let fresh = Fresh::new(backend);
        let mut store = fresh.open();
        play(&mut *store);
        answers(&*store)
    });

    let mut found = Vec::new();
    differences("", &sqlite, &postgres, &mut found);
    assert!(
        found.is_empty(),
        "SQLite vs Postgres:\n{}",
        found.join("\n")
    );
    assert_eq!(sqlite["messages"].as_array().map(Vec::len), Some(6));
    assert_eq!(sqlite["event e-1"]["payload"]["text"], "café ☃");
    assert_eq!(
        sqlite["message 0"]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
}
