//! The pure checks of the fake: every rule of `shared/docs/fxiaoke-api.md` a request can break,
//! and the card limits the gateway documents (docs/mapping.md), each recorded as a sentence with
//! the code the vendor would answer.

use std::collections::HashSet;

use actix_web::HttpRequest;
use actix_web::web;
use serde_json::{Map, Value};

use super::{Account, FAKE_REJECT_CODE};

/// The manual's limit of recipients in one send.
pub(super) const MAX_RECIPIENTS: usize = 500;

// Vendor codes, as the manual's table names them.
pub(super) const APP_SECRET_INVALID: i64 = 10006;
pub(super) const RATE_LIMITED: i64 = 14001;
pub(super) const TOKEN_INVALID: i64 = 20016;
pub(super) const NO_AUTH: i64 = 20017;
pub(super) const TO_USER_MISSING: i64 = 10015;
pub(super) const TO_USER_INVALID: i64 = 11016;
pub(super) const MSG_TYPE_INVALID: i64 = 11017;

/// The broken rules of one request and the codes to answer with, in the order they were checked.
#[derive(Default)]
pub(super) struct Outcome {
    /// The rules broken, each said in a sentence.
    pub(super) violations: Vec<String>,
    /// The codes to answer with, in the order they were found.
    pub(super) codes: Vec<i64>,
}

impl Outcome {
    /// A broken rule, answered with `code`.
    pub(super) fn reject(&mut self, code: i64, why: impl Into<String>) {
        self.violations.push(why.into());
        self.codes.push(code);
    }

    /// An error answer that breaks no rule (an expired token).
    pub(super) fn answer(&mut self, code: i64) {
        self.codes.push(code);
    }

    pub(super) fn extend(&mut self, other: Outcome) {
        self.violations.extend(other.violations);
        self.codes.extend(other.codes);
    }

    /// The first code the manual names, else the first code at all.
    pub(super) fn error_code(&self) -> Option<i64> {
        let named = self.codes.iter().find(|c| **c != FAKE_REJECT_CODE);
        named.or(self.codes.first()).copied()
    }
}

/// The `thirdTraceId` ("" when absent), checked to be one hyphenated RFC 4122 UUID v4.
pub(super) fn check_query(req: &HttpRequest, out: &mut Outcome) -> String {
    let Ok(pairs) = web::Query::<Vec<(String, String)>>::from_query(req.query_string()) else {
        out.reject(FAKE_REJECT_CODE, "the query string does not parse");
        return String::new();
    };
    let ids: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "thirdTraceId")
        .map(|(_, v)| v)
        .collect();
    let Some(id) = ids.first() else {
        out.reject(FAKE_REJECT_CODE, "missing query parameter thirdTraceId");
        return String::new();
    };
    if ids.len() > 1 {
        out.reject(FAKE_REJECT_CODE, "thirdTraceId is given more than once");
    }
    if let Some(problem) = uuid_v4_problem(id) {
        out.reject(FAKE_REJECT_CODE, format!("thirdTraceId {id:?} {problem}"));
    }
    (*id).clone()
}

fn uuid_v4_problem(s: &str) -> Option<&'static str> {
    let shaped = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !shaped {
        return Some("is not a hyphenated UUID");
    }
    match uuid::Uuid::try_parse(s) {
        Err(_) => Some("is not a UUID"),
        Ok(u) if u.get_version_num() != 4 => Some("is not a version 4 UUID"),
        Ok(u) if u.get_variant() != uuid::Variant::RFC4122 => Some("is not an RFC 4122 variant"),
        Ok(_) => None,
    }
}

/// Checks method, content type and encoding; the body as JSON, or `Null` when it is not JSON.
pub(super) fn check_envelope(req: &HttpRequest, body: &[u8], out: &mut Outcome) -> Value {
    if req.method() != actix_web::http::Method::POST {
        out.reject(
            FAKE_REJECT_CODE,
            format!("method {} (only POST)", req.method()),
        );
    }
    match single_header(req, "content-type", out) {
        None => out.reject(FAKE_REJECT_CODE, "missing header content-type"),
        Some(ct) => {
            let mut parts = ct.split(';').map(str::trim);
            let essence = parts.next().unwrap_or_default();
            let bad_charset = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("charset")
                        && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                })
            });
            if !essence.eq_ignore_ascii_case("application/json") || bad_charset {
                out.reject(
                    FAKE_REJECT_CODE,
                    format!("content-type {ct:?} (only application/json, UTF-8)"),
                );
            }
        }
    }
    let Ok(text) = std::str::from_utf8(body) else {
        out.reject(FAKE_REJECT_CODE, "the body is not UTF-8");
        return Value::Null;
    };
    match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            out.reject(FAKE_REJECT_CODE, format!("the body is not JSON: {e}"));
            Value::Null
        }
    }
}

/// The header's value when it appears once; a repeat or a non-text value is a violation.
pub(super) fn single_header(req: &HttpRequest, name: &str, out: &mut Outcome) -> Option<String> {
    let values: Vec<_> = req.headers().get_all(name).collect();
    if values.len() > 1 {
        out.reject(
            FAKE_REJECT_CODE,
            format!("header {name} is given more than once"),
        );
    }
    let value = values.first()?;
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    if value.to_str().is_err() {
        out.reject(
            FAKE_REJECT_CODE,
            format!("header {name} is not visible ASCII"),
        );
    }
    Some(text)
}

/// The bearer token, when the header has exactly the shape `Bearer <token>`.
pub(super) fn check_authorization(req: &HttpRequest, out: &mut Outcome) -> Option<String> {
    let Some(value) = single_header(req, "authorization", &mut Outcome::default()) else {
        out.reject(NO_AUTH, "missing header authorization");
        return None;
    };
    if req.headers().get_all("authorization").count() > 1 {
        out.reject(
            TOKEN_INVALID,
            "header authorization is given more than once",
        );
    }
    match value.strip_prefix("Bearer ") {
        Some(token) if !token.is_empty() && !token.contains(char::is_whitespace) => {
            Some(token.to_owned())
        }
        _ => {
            out.reject(
                TOKEN_INVALID,
                "authorization is not exactly \"Bearer <token>\" (one space)",
            );
            None
        }
    }
}

/// The two headers of every business call besides `authorization`: `x-fs-ea` must be the
/// enterprise the token call answered, `x-fs-userid` the employee the gateway is configured with.
pub(super) fn check_business_headers(
    req: &HttpRequest,
    ea: &str,
    user_id: &str,
    out: &mut Outcome,
) {
    match single_header(req, "x-fs-ea", out) {
        None => out.reject(FAKE_REJECT_CODE, "missing header x-fs-ea"),
        Some(got) if got != ea => {
            out.reject(FAKE_REJECT_CODE, format!("x-fs-ea is {got:?}, not {ea:?}"))
        }
        Some(_) => {}
    }
    match single_header(req, "x-fs-userid", out) {
        None => out.reject(FAKE_REJECT_CODE, "missing header x-fs-userid"),
        Some(id) if id != user_id => out.reject(
            FAKE_REJECT_CODE,
            format!("x-fs-userid is {id:?}, not the configured employee {user_id:?}"),
        ),
        Some(_) => {}
    }
}

pub(super) fn check_token_body(body: &Value, account: &Account, out: &mut Outcome) {
    let Some(obj) = body.as_object() else {
        out.reject(
            APP_SECRET_INVALID,
            format!("the body is {}, not an object", kind(body)),
        );
        return;
    };
    for key in obj.keys() {
        if !["appId", "appSecret", "permanentCode", "grantType"].contains(&key.as_str()) {
            out.reject(
                FAKE_REJECT_CODE,
                format!("unknown key {key:?} in the token body"),
            );
        }
    }
    // Values are compared, never printed: they are secrets.
    let fields = [
        ("appId", account.app_id.as_str(), FAKE_REJECT_CODE),
        ("appSecret", account.app_secret.as_str(), APP_SECRET_INVALID),
        (
            "permanentCode",
            account.permanent_code.as_str(),
            FAKE_REJECT_CODE,
        ),
        ("grantType", "app_secret", FAKE_REJECT_CODE),
    ];
    for (key, want, code) in fields {
        match obj.get(key) {
            None => out.reject(code, format!("{key} is missing")),
            Some(Value::String(s)) if s == want => {}
            Some(Value::String(_)) => {
                out.reject(code, format!("{key} is not the configured value"))
            }
            Some(v) => out.reject(code, format!("{key} is {}, not a string", kind(v))),
        }
    }
}

pub(super) fn check_send_body(body: &Value, limits: &DocumentedLimits, out: &mut Outcome) {
    let Some(obj) = body.as_object() else {
        out.reject(
            TO_USER_MISSING,
            format!("the body is {}, not an object", kind(body)),
        );
        return;
    };
    check_to_user(obj.get("toUser"), out);
    match obj.get("msgType") {
        Some(Value::String(s)) if s == "composite" => {}
        None => out.reject(MSG_TYPE_INVALID, "msgType is missing"),
        Some(v) => out.reject(
            MSG_TYPE_INVALID,
            format!("msgType is {v}, not \"composite\""),
        ),
    }
    for key in obj.keys() {
        if !["toUser", "msgType", "composite"].contains(&key.as_str()) {
            out.reject(FAKE_REJECT_CODE, format!("unknown top-level key {key:?}"));
        }
    }
    match obj.get("composite") {
        Some(Value::Object(c)) => check_composite(c, limits, out),
        None => out.reject(FAKE_REJECT_CODE, "composite is missing"),
        Some(v) => out.reject(
            FAKE_REJECT_CODE,
            format!("composite is {}, not an object", kind(v)),
        ),
    }
}

fn check_to_user(to_user: Option<&Value>, out: &mut Outcome) {
    let users = match to_user {
        None | Some(Value::Null) => return out.reject(TO_USER_MISSING, "toUser is missing"),
        Some(Value::Array(a)) if a.is_empty() => {
            return out.reject(TO_USER_MISSING, "toUser is empty");
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return out.reject(
                TO_USER_INVALID,
                format!("toUser is {}, not an array", kind(v)),
            );
        }
    };
    if users.len() > MAX_RECIPIENTS {
        out.reject(
            TO_USER_INVALID,
            format!(
                "toUser has {} recipients (at most {MAX_RECIPIENTS})",
                users.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    // One message per kind of fault, naming its first occurrence, keeps 500 bad ids readable.
    let mut faults: Vec<(&str, String)> = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let fault = match user {
            Value::String(s) if s.trim().is_empty() => {
                Some(("empty", format!("toUser[{i}] is empty")))
            }
            Value::String(s) if !seen.insert(s) => Some((
                "dup",
                format!("toUser[{i}] {s:?} repeats an earlier recipient"),
            )),
            Value::String(_) => None,
            v => Some(("type", format!("toUser[{i}] is {}, not a string", kind(v)))),
        };
        if let Some((tag, why)) = fault
            && !faults.iter().any(|(t, _)| *t == tag)
        {
            faults.push((tag, why));
        }
    }
    for (_, why) in faults {
        out.reject(TO_USER_INVALID, why);
    }
}

fn check_composite(c: &Map<String, Value>, limits: &DocumentedLimits, out: &mut Outcome) {
    required_text(c, "head", "title", out);
    required_text(c, "link", "title", out);
    required_text(c, "link", "url", out);
    optional_text(c, "first", "content", out);
    optional_text(c, "remark", "content", out);
    let rows = match c.get("form") {
        None => &Vec::new(),
        Some(Value::Array(rows)) => rows,
        Some(v) => {
            let why = format!("composite.form is {}, not an array", kind(v));
            return out.reject(FAKE_REJECT_CODE, why);
        }
    };
    for (i, row) in rows.iter().enumerate() {
        let Some(row) = row.as_object() else {
            let why = format!("composite.form[{i}] is {}, not an object", kind(row));
            out.reject(FAKE_REJECT_CODE, why);
            continue;
        };
        for key in ["label", "value"] {
            match row.get(key) {
                Some(Value::String(_)) => {}
                None => out.reject(
                    FAKE_REJECT_CODE,
                    format!("composite.form[{i}].{key} is missing"),
                ),
                Some(v) => out.reject(
                    FAKE_REJECT_CODE,
                    format!("composite.form[{i}].{key} is {}, not a string", kind(v)),
                ),
            }
        }
    }
    check_documented_limits(c, rows, limits, out);
}

/// What the gateway promises never to send, beyond the manual: the `cards.*` limits of
/// docs/mapping.md ("Fitting the phone"), whose defaults are `CardLimits::default()` in
/// src/card/fit.rs. The vendor names no code for these, so each is answered [`FAKE_REJECT_CODE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedLimits {
    /// Characters of `head.title` (`cards.title_max`, 64) and of `link.title` (fit.rs cuts the
    /// link text at `title_max` too).
    pub title_max: usize,
    /// Characters of `first.content` (`cards.first_max`, 128).
    pub first_max: usize,
    /// Characters of a row label (`cards.label_max`, 32).
    pub label_max: usize,
    /// Characters of a row value (`cards.value_max`, 256).
    pub value_max: usize,
    /// Characters of `remark.content` (`cards.remark_max`, 256).
    pub remark_max: usize,
    /// Rows of `form`, the "+N more" row included (`cards.max_rows`, 20).
    pub max_rows: usize,
    /// Bytes of the serialised `composite` object (`cards.body_max_bytes`, 4096: "the whole card
    /// is kept under body_max_bytes").
    pub body_max_bytes: usize,
}

impl Default for DocumentedLimits {
    fn default() -> Self {
        DocumentedLimits {
            title_max: 64,
            first_max: 128,
            label_max: 32,
            value_max: 256,
            remark_max: 256,
            max_rows: 20,
            body_max_bytes: 4096,
        }
    }
}

/// Lengths, rows, bytes, one-line texts and the link scheme (docs/mapping.md: "texts are folded
/// to one line and cut at …"; "A link must be `http://`, `https://` or `fs://`").
fn check_documented_limits(
    c: &Map<String, Value>,
    rows: &[Value],
    limits: &DocumentedLimits,
    out: &mut Outcome,
) {
    let text = |part: &str, field: &str| {
        c.get(part)
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
    };
    let mut texts = vec![
        (
            "composite.head.title".to_string(),
            text("head", "title"),
            "title_max",
            limits.title_max,
        ),
        (
            "composite.link.title".to_string(),
            text("link", "title"),
            "title_max",
            limits.title_max,
        ),
        (
            "composite.first.content".to_string(),
            text("first", "content"),
            "first_max",
            limits.first_max,
        ),
        (
            "composite.remark.content".to_string(),
            text("remark", "content"),
            "remark_max",
            limits.remark_max,
        ),
    ];
    for (i, row) in rows.iter().enumerate() {
        let cell = |key: &str| row.get(key).and_then(Value::as_str);
        texts.push((
            format!("composite.form[{i}].label"),
            cell("label"),
            "label_max",
            limits.label_max,
        ));
        texts.push((
            format!("composite.form[{i}].value"),
            cell("value"),
            "value_max",
            limits.value_max,
        ));
    }
    for (at, text, key, max) in texts {
        let Some(text) = text else { continue };
        let chars = text.chars().count();
        if chars > max {
            out.reject(
                FAKE_REJECT_CODE,
                format!("{at} has {chars} characters (cards.{key} is {max})"),
            );
        }
        if text.chars().any(|ch| ch.is_whitespace() && ch != ' ') {
            out.reject(
                FAKE_REJECT_CODE,
                format!("{at} is not folded to one line: {text:?}"),
            );
        }
    }
    if rows.len() > limits.max_rows {
        let (n, max) = (rows.len(), limits.max_rows);
        out.reject(
            FAKE_REJECT_CODE,
            format!("composite.form has {n} rows (cards.max_rows is {max})"),
        );
    }
    let bytes = Value::Object(c.clone()).to_string().len();
    if bytes > limits.body_max_bytes {
        let max = limits.body_max_bytes;
        out.reject(
            FAKE_REJECT_CODE,
            format!("composite is {bytes} bytes (cards.body_max_bytes is {max})"),
        );
    }
    if let Some(url) = text("link", "url") {
        let lower = url.to_ascii_lowercase();
        let scheme = ["http://", "https://", "fs://"]
            .iter()
            .any(|s| lower.starts_with(s));
        if !scheme || url.chars().any(char::is_whitespace) {
            out.reject(
                FAKE_REJECT_CODE,
                format!("composite.link.url {url:?} is not an http(s) or fs:// link"),
            );
        }
    }
}

/// `composite.<part>.<field>` must be a non-blank string.
fn required_text(c: &Map<String, Value>, part: &str, field: &str, out: &mut Outcome) {
    let why = match c.get(part) {
        None => format!("composite.{part} is missing"),
        Some(Value::Object(o)) => match o.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => return,
            Some(Value::String(_)) => format!("composite.{part}.{field} is empty"),
            None => format!("composite.{part}.{field} is missing"),
            Some(v) => format!("composite.{part}.{field} is {}, not a string", kind(v)),
        },
        Some(v) => format!("composite.{part} is {}, not an object", kind(v)),
    };
    out.reject(FAKE_REJECT_CODE, why);
}

/// `composite.<part>` may be absent; when present it is an object whose `<field>`, if any, is a string.
fn optional_text(c: &Map<String, Value>, part: &str, field: &str, out: &mut Outcome) {
    let why = match c.get(part) {
        None => return,
        Some(Value::Object(o)) => match o.get(field) {
            None | Some(Value::String(_)) => return,
            Some(v) => format!("composite.{part}.{field} is {}, not a string", kind(v)),
        },
        Some(v) => format!(
            "composite.{part} is {}, not an object (omit it instead)",
            kind(v)
        ),
    };
    out.reject(FAKE_REJECT_CODE, why);
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
