//! Helpers for tests of mapping files: load one, map a payload offline, and check that a send
//! body is what the vendor accepts.

use std::collections::BTreeMap;
use std::path::Path;

use fxhook::card::SendBody;
use fxhook::pipeline::Routed;
use fxhook::route::Groups;
use fxhook::source::{Source, load_file};
use fxhook::verify::{ContentKind, Verifier, Webhook};

/// Groups from `(name, ids)` pairs.
pub fn groups(pairs: &[(&str, &[&str])]) -> Groups {
    let map: BTreeMap<String, Vec<String>> = pairs
        .iter()
        .map(|(g, ids)| (g.to_string(), ids.iter().map(|s| s.to_string()).collect()))
        .collect();
    Groups::new(&map).unwrap()
}

/// Loads a mapping file, panicking with its diagnostics when it does not load.
pub fn load(path: &Path, groups: &Groups) -> Source {
    let (source, diagnostics) = load_file(path, groups);
    source.unwrap_or_else(|| panic!("{} does not load: {diagnostics:?}", path.display()))
}

/// Maps a payload with these headers, offline.
pub fn map(source: &Source, groups: &Groups, headers: &[(&str, &str)], body: &[u8]) -> Routed {
    let mut map = actix_web::http::header::HeaderMap::new();
    for (n, v) in headers {
        map.insert(
            actix_web::http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            actix_web::http::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    let webhook = Webhook {
        headers: map,
        body: body.to_vec().into(),
        content: ContentKind::Json,
        query: String::new(),
        received_at: std::time::SystemTime::now(),
    };
    // Through the public door, as an unsigned source would take it.
    let payload = Verifier::unsigned()
        .verify(webhook)
        .expect("an unsigned source accepts every request")
        .parse()
        .expect("fixture is JSON");
    fxhook::pipeline::render(&source.mapping, &payload, groups, chrono_tz::Asia::Shanghai)
}

/// What the vendor requires of every send body.
pub fn assert_valid_composite(body: &SendBody) {
    let json = serde_json::to_value(body).unwrap();
    let to = json["toUser"].as_array().unwrap();
    assert!(!to.is_empty() && to.len() <= 500);
    let unique: std::collections::HashSet<_> = to.iter().collect();
    assert_eq!(unique.len(), to.len(), "toUser has repeats");
    assert_eq!(json["msgType"], "composite");
    let c = &json["composite"];
    for field in [&c["head"]["title"], &c["link"]["title"], &c["link"]["url"]] {
        assert!(
            field.as_str().is_some_and(|s| !s.trim().is_empty()),
            "empty required field in {json}"
        );
    }
    for row in c["form"].as_array().map(Vec::as_slice).unwrap_or_default() {
        assert!(
            row["label"].is_string() && row["value"].is_string(),
            "row {row} is not text"
        );
    }
}
