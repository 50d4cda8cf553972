//! What a source's paths can read of a payload, and the parse that builds only that.
//!
//! A push from GitHub is 7.5 KB, most of it URLs of the repository and the sender that no rule
//! reads; building all of it into a [`Value`] was the largest cost of an accepted request. Every
//! `$` path a source compiles adds its leading run of member names (`$.repository.full_name`)
//! to the source's [`Footprint`]; where a path goes on with anything else (an index, a
//! wildcard, a filter, `..`), the whole subtree at that point is kept. [`Footprint::parse`]
//! then builds those subtrees and skips everything else (still checking it is valid JSON), so
//! every path of the source finds exactly what it would find in the whole payload.
//!
//! The paths are recorded while a source compiles ([`recording`]), not gathered afterwards from
//! the compiled rules: a path added to any part of the mapping language is in the footprint
//! without anyone having to remember it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use jsonpath_rust::parser::model::{
    Comparable, Comparison, Filter, FilterAtom, FnArg, JpQuery, Segment, Selector, SingularQuery,
    SingularQuerySegment, Test, TestFunction,
};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The parts of a payload a source's paths can read.
#[derive(Clone, PartialEq, Eq)]
pub struct Footprint {
    root: Node,
}

#[derive(Clone, PartialEq, Eq)]
enum Node {
    /// The whole value.
    Whole,
    /// Parts of an object or an array (any other value is kept whole).
    Parts {
        /// These members of an object. Once recorded, each also holds what `every` reads.
        members: BTreeMap<String, Node>,
        /// What is read of every member of an object and every element of an array (a
        /// wildcard, an index, a slice or a filter was here); `None`: nothing.
        every: Option<Box<Node>>,
    },
}

impl Node {
    fn nothing() -> Node {
        Node::Parts {
            members: BTreeMap::new(),
            every: None,
        }
    }

    /// Adds what the path `segments`, run from this node, reads.
    fn add(&mut self, segments: &[Segment]) {
        let Node::Parts { members, every } = self else {
            return;
        };
        let Some((first, rest)) = segments.split_first() else {
            *self = Node::Whole;
            return;
        };
        match first {
            Segment::Selector(Selector::Name(name)) => members
                .entry(name.clone())
                .or_insert_with(Node::nothing)
                .add(rest),
            Segment::Selector(selector) => {
                let every = every.get_or_insert_with(|| Box::new(Node::nothing()));
                if let Selector::Filter(filter) = selector {
                    every.add_filter(filter);
                }
                every.add(rest);
            }
            Segment::Selectors(selectors) => {
                for selector in selectors {
                    let mut one = vec![Segment::Selector(selector.clone())];
                    one.extend_from_slice(rest);
                    self.add(&one);
                }
            }
            // Any depth below: all of it.
            Segment::Descendant(_) => *self = Node::Whole,
        }
    }

    /// Adds what a filter reads of the value it tests (its `@` queries; a `$` inside a filter
    /// made the whole payload read before this is reached).
    fn add_filter(&mut self, filter: &Filter) {
        match filter {
            Filter::Or(all) | Filter::And(all) => all.iter().for_each(|f| self.add_filter(f)),
            Filter::Atom(FilterAtom::Filter { expr, .. }) => self.add_filter(expr),
            Filter::Atom(FilterAtom::Test { expr, .. }) => self.add_test(expr),
            Filter::Atom(FilterAtom::Comparison(comparison)) => {
                let (a, b) = match comparison.as_ref() {
                    Comparison::Eq(a, b)
                    | Comparison::Ne(a, b)
                    | Comparison::Gt(a, b)
                    | Comparison::Gte(a, b)
                    | Comparison::Lt(a, b)
                    | Comparison::Lte(a, b) => (a, b),
                };
                self.add_comparable(a);
                self.add_comparable(b);
            }
        }
    }

    fn add_test(&mut self, test: &Test) {
        match test {
            Test::RelQuery(segments) => self.add(segments),
            Test::AbsQuery(_) => {}
            Test::Function(function) => self.add_function(function),
        }
    }

    fn add_comparable(&mut self, comparable: &Comparable) {
        match comparable {
            Comparable::Literal(_) => {}
            Comparable::Function(function) => self.add_function(function),
            Comparable::SingularQuery(SingularQuery::Current(segments)) => {
                let segments: Vec<Segment> = segments
                    .iter()
                    .map(|s| match s {
                        SingularQuerySegment::Name(name) => {
                            Segment::Selector(Selector::Name(name.clone()))
                        }
                        SingularQuerySegment::Index(i) => Segment::Selector(Selector::Index(*i)),
                    })
                    .collect();
                self.add(&segments);
            }
            Comparable::SingularQuery(SingularQuery::Root(_)) => {}
        }
    }

    fn add_function(&mut self, function: &TestFunction) {
        let args: Vec<&FnArg> = match function {
            TestFunction::Custom(_, args) => args.iter().collect(),
            TestFunction::Length(arg) => vec![arg.as_ref()],
            TestFunction::Value(arg) | TestFunction::Count(arg) => vec![arg],
            TestFunction::Search(a, b) | TestFunction::Match(a, b) => vec![a, b],
        };
        for arg in args {
            match arg {
                FnArg::Literal(_) => {}
                FnArg::Test(test) => self.add_test(test),
                FnArg::Filter(filter) => self.add_filter(filter),
            }
        }
    }

    /// Adds all that `other` reads.
    fn merge(&mut self, other: &Node) {
        match (&mut *self, other) {
            (Node::Whole, _) => {}
            (_, Node::Whole) => *self = Node::Whole,
            (
                Node::Parts { members, every },
                Node::Parts {
                    members: more,
                    every: more_every,
                },
            ) => {
                for (name, node) in more {
                    members
                        .entry(name.clone())
                        .or_insert_with(Node::nothing)
                        .merge(node);
                }
                if let Some(more_every) = more_every {
                    every
                        .get_or_insert_with(|| Box::new(Node::nothing()))
                        .merge(more_every);
                }
            }
        }
    }

    /// Makes each named member also read what every member reads, so that a parse finds all
    /// it needs for a member in one place.
    fn settle(&mut self) {
        if let Node::Parts { members, every } = self {
            if let Some(every) = every {
                every.settle();
                for node in members.values_mut() {
                    node.merge(every);
                }
            }
            members.values_mut().for_each(Node::settle);
        }
    }

    /// What is read of the member `name`: `None` when nothing.
    fn member(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Whole => Some(self),
            Node::Parts { members, every } => members.get(name).or(every.as_deref()),
        }
    }
}

impl Footprint {
    /// The whole payload: what a source compiled without recording reads.
    pub fn whole() -> Self {
        Footprint { root: Node::Whole }
    }

    /// Nothing yet (paths are added to it).
    fn nothing() -> Self {
        Footprint {
            root: Node::nothing(),
        }
    }

    /// True when every part of a payload is read.
    #[cfg(test)]
    fn is_whole(&self) -> bool {
        self.root == Node::Whole
    }

    /// Parses `bytes` (a complete JSON document) into the parts this footprint reads; every
    /// other part is checked but not built.
    ///
    /// # Errors
    /// `bytes` is not one valid JSON value (the same errors as `serde_json::from_slice`).
    pub fn parse(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        // A skipped string is not checked for UTF-8 by the parser: the whole text is checked
        // first (and then read as text, which is not checked again). The rare refusal is
        // worded by a whole parse, as it always was.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return serde_json::from_slice(bytes);
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let value = (&self.root).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

impl fmt::Debug for Footprint {
    /// The paths read, as `$["a"]["b"]` (`[*]`: every member or element).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn write(node: &Node, path: &mut String, out: &mut Vec<String>) {
            match node {
                Node::Whole => out.push(format!("${path}")),
                Node::Parts { members, every } => {
                    let every = every.as_deref().map(|n| ("*".to_string(), n));
                    for (step, child) in members
                        .iter()
                        .map(|(k, n)| (format!("{k:?}"), n))
                        .chain(every)
                    {
                        let len = path.len();
                        path.push_str(&format!("[{step}]"));
                        write(child, path, out);
                        path.truncate(len);
                    }
                }
            }
        }
        let mut out = Vec::new();
        write(&self.root, &mut String::new(), &mut out);
        f.debug_tuple("Footprint").field(&out).finish()
    }
}

thread_local! {
    /// The footprint being recorded on this thread, while a source compiles.
    static RECORDING: RefCell<Option<Footprint>> = const { RefCell::new(None) };
}

/// Runs `compile` and returns what it gave with the footprint of every `$` path compiled
/// meanwhile on this thread (compiling is synchronous: nothing else runs on it). Recordings
/// nest: an inner one's paths are also the outer one's.
pub fn recording<T>(compile: impl FnOnce() -> T) -> (T, Footprint) {
    let outer = RECORDING.with(|r| r.borrow_mut().replace(Footprint::nothing()));
    let value = compile();
    let mut recorded = RECORDING
        .with(|r| std::mem::replace(&mut *r.borrow_mut(), outer))
        .unwrap_or_else(Footprint::whole);
    RECORDING.with(|r| {
        if let Some(outer) = r.borrow_mut().as_mut() {
            outer.root.merge(&recorded.root);
        }
    });
    recorded.root.settle();
    (value, recorded)
}

/// Called by [`super::JsonPath::compile`] for a `$` path: adds it to the recording, if any.
/// `reads_root_inside` — the path has another `$` in it (a filter comparing with the root):
/// it may read anything.
pub(super) fn record(query: &JpQuery, reads_root_inside: bool) {
    RECORDING.with(|r| {
        if let Some(footprint) = r.borrow_mut().as_mut() {
            if reads_root_inside {
                footprint.root = Node::Whole;
            } else {
                footprint.root.add(&query.segments);
            }
        }
    });
}

/// A value read and checked as a whole parse checks it (nesting depth, string escapes and
/// surrogates, numbers in range), and not built. (serde's `IgnoredAny` lets serde_json skip
/// those checks: a body a whole parse refuses would be accepted.)
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_none<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> DeserializeSeed<'de> for &Node {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Node::Whole => Value::deserialize(deserializer),
            parts => deserializer.deserialize_any(Pruned(parts)),
        }
    }
}

/// Builds what a [`Node::Parts`] reads of an object or an array and skips the rest; any other
/// value is built whole, as `serde_json`'s own `Value` does.
struct Pruned<'a>(&'a Node);

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(name)) = map.next_key::<Key>()? {
            match self.0.member(&name) {
                // A repeated member: the last one counts, as in serde_json's Value.
                Some(node) => {
                    out.insert(name.into_owned(), map.next_value_seed(node)?);
                }
                // Skipped; a later repeat of a kept name still replaces the kept one.
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        match self.0 {
            // Elements are read by position: each is kept, as much of it as every one needs.
            Node::Parts {
                every: Some(every), ..
            } => {
                while let Some(v) = seq.next_element_seed(every.as_ref())? {
                    out.push(v);
                }
            }
            _ => {
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
            }
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{JsonPath, Scope};
    use super::*;
    use serde_json::json;

    fn footprint_of(paths: &[&str]) -> Footprint {
        let ((), footprint) = recording(|| {
            for p in paths {
                JsonPath::compile(p).unwrap();
            }
        });
        footprint
    }

    fn payload() -> String {
        json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "ada/fxhook", "owner": {"login": "ada", "url": "u"},
                           "urls": ["a", "b"], "size": 12.5},
            "commits": [{"id": "a1", "message": "one"}, {"id": "b2", "message": "two"}],
            "sender": {"login": "bob", "avatar": "x"},
            "list": [1, 2],
            "name with \"quotes\"": {"a\u{e9}": 1}
        })
        .to_string()
    }

    /// Every path finds in the pruned payload what it finds in the whole one.
    fn same_answers(paths: &[&str]) -> Value {
        let text = payload();
        let whole: Value = serde_json::from_str(&text).unwrap();
        let footprint = footprint_of(paths);
        let pruned = footprint.parse(text.as_bytes()).unwrap();
        for p in paths {
            let path = JsonPath::compile(p).unwrap();
            let utc = chrono_tz::UTC;
            assert_eq!(
                path.query(&Scope::new(&pruned, utc)),
                path.query(&Scope::new(&whole, utc)),
                "{p}"
            );
        }
        pruned
    }

    #[test]
    fn a_member_path_keeps_only_that_member() {
        let pruned = same_answers(&["$.repository.full_name", "$.ref"]);
        assert_eq!(
            pruned,
            json!({"ref": "refs/heads/main", "repository": {"full_name": "ada/fxhook"}})
        );
    }

    #[test]
    fn a_wildcard_index_or_filter_reads_its_rest_in_every_member_or_element() {
        let pruned = same_answers(&[
            "$.commits[*].message",
            "$.repository.urls[0]",
            "$.sender[?@.login == 'bob']",
        ]);
        assert_eq!(
            pruned["commits"],
            json!([{"message": "one"}, {"message": "two"}])
        );
        assert_eq!(pruned["repository"], json!({"urls": ["a", "b"]}));
        // The filter tests the sender's members (strings here): they are kept.
        assert_eq!(pruned["sender"], json!({"login": "bob", "avatar": "x"}));
    }

    #[test]
    fn a_filter_at_the_root_reads_only_what_it_tests_in_each_member() {
        let paths = [
            "$[?@.owner.login != @.name].full_name",
            "$[?length(@.urls) > 1 && match(@.full_name, 'ada/.*')].size",
            "$.commits[?@.id == 'a1' || !@.missing].id",
        ];
        let pruned = same_answers(&paths);
        assert_eq!(
            pruned["repository"],
            json!({"full_name": "ada/fxhook", "owner": {"login": "ada"}, "urls": ["a", "b"], "size": 12.5})
        );
        assert_eq!(pruned["sender"], json!({}));
        assert_eq!(pruned["commits"], json!([{"id": "a1"}, {"id": "b2"}]));
        assert_eq!(pruned["ref"], json!("refs/heads/main"));
    }

    #[test]
    fn a_member_named_and_read_through_a_wildcard_reads_both() {
        let pruned = same_answers(&["$.*.login", "$.repository.full_name"]);
        assert_eq!(pruned["repository"], json!({"full_name": "ada/fxhook"}));
        assert_eq!(pruned["sender"], json!({"login": "bob"}));
    }

    #[test]
    fn a_descendant_path_a_bare_root_or_a_root_inside_a_filter_keeps_everything() {
        let whole: Value = serde_json::from_str(&payload()).unwrap();
        for paths in [&["$..login"][..], &["$"], &["$.commits[?@.id == $.ref]"]] {
            assert!(footprint_of(paths).is_whole(), "{paths:?}");
            assert_eq!(same_answers(paths), whole, "{paths:?}");
        }
        // Every member whole is the whole payload too.
        assert_eq!(same_answers(&["$.*"]), whole);
        assert_eq!(same_answers(&["$[?@..login]"]), whole);
    }

    #[test]
    fn quoted_and_escaped_member_names_are_kept() {
        let pruned = same_answers(&["$['name with \"quotes\"']['a\u{e9}']"]);
        assert_eq!(pruned, json!({"name with \"quotes\"": {"a\u{e9}": 1}}));
    }

    #[test]
    fn a_member_that_is_not_an_object_is_kept_whole() {
        let pruned = same_answers(&["$.list.length", "$.ref.x"]);
        assert_eq!(pruned, json!({"list": [1, 2], "ref": "refs/heads/main"}));
    }

    #[test]
    fn relative_paths_add_nothing() {
        assert_eq!(footprint_of(&["@.id", "@"]), Footprint::nothing());
    }

    #[test]
    fn the_last_of_repeated_members_counts_as_in_a_whole_parse() {
        let text = r#"{"a": {"b": 1}, "c": 2, "a": {"b": 3}}"#;
        let pruned = footprint_of(&["$.a.b"]).parse(text.as_bytes()).unwrap();
        assert_eq!(pruned, json!({"a": {"b": 3}}));
    }

    #[test]
    fn invalid_json_is_refused_even_where_nothing_is_read() {
        let footprint = footprint_of(&["$.a"]);
        let deep = format!(
            "{{\"a\": 1, \"b\": {}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        for bad in [
            r#"{"a": 1, "b": [1,}"#,
            r#"{"a": 1} x"#,
            r#"{"b": "\x"}"#,
            "",
            r#"{"a": 1, "b": "\ud800"}"#,
            r#"{"a": 1, "b": 1e400}"#,
            &deep,
        ] {
            let err = footprint.parse(bad.as_bytes()).unwrap_err();
            let whole = serde_json::from_str::<Value>(bad).unwrap_err();
            assert_eq!(err.to_string(), whole.to_string(), "{bad}");
        }
    }

    #[test]
    fn invalid_utf8_is_refused_even_where_nothing_is_read() {
        let footprint = footprint_of(&["$.a"]);
        let bad = b"{\"a\": 1, \"b\": \"\xff\"}";
        let err = footprint.parse(bad).unwrap_err();
        let whole = serde_json::from_slice::<Value>(bad).unwrap_err();
        assert_eq!(err.to_string(), whole.to_string());
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_kept_whole() {
        let footprint = footprint_of(&["$.a"]);
        assert_eq!(
            footprint.parse(b"[1, {\"b\": 2}]").unwrap(),
            json!([1, {"b": 2}])
        );
        assert_eq!(footprint.parse(b"\"text\"").unwrap(), json!("text"));
    }

    #[test]
    fn recordings_nest_and_outside_one_nothing_is_recorded() {
        let (inner, outer) = recording(|| {
            JsonPath::compile("$.a").unwrap();
            recording(|| JsonPath::compile("$.b.c").unwrap()).1
        });
        assert_eq!(format!("{inner:?}"), r#"Footprint(["$[\"b\"][\"c\"]"])"#);
        assert_eq!(
            format!("{outer:?}"),
            r#"Footprint(["$[\"a\"]", "$[\"b\"][\"c\"]"])"#
        );
        JsonPath::compile("$.d").unwrap();
        assert_eq!(recording(|| ()).1, Footprint::nothing());
    }
}
