//! The fake vendor's own tests: a call made exactly as `fxiaoke-api.md` says passes, each broken
//! rule (the manual's and our documented card limits) is recorded as a violation answered with
//! the right code, the rate limits hold, and an expired token is answered 20016 without blame.
//! A fake that let a rule slip would make every delivery test prove less than it claims.

use serde_json::{Value, json};

use crate::fake_fxiaoke::{FAKE_REJECT_CODE, FakeFxiaoke, Received, Scripted};

const USER: &str = "1000";

/// A client that speaks to the fake the way the manual says, unless a test bends a part.
struct Caller {
    fake: FakeFxiaoke,
    http: reqwest::Client,
}

/// One request: path, headers (name, value) and the raw body.
struct Call {
    path: &'static str,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Call {
    /// Replaces (or, with `None`, removes) a header.
    fn header(mut self, name: &str, value: Option<&str>) -> Call {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_string(), v.to_string()));
        }
        self
    }

    /// Edits the JSON body.
    fn body(mut self, edit: impl FnOnce(&mut Value)) -> Call {
        let mut json: Value = serde_json::from_str(&self.body).unwrap();
        edit(&mut json);
        self.body = json.to_string();
        self
    }
}

fn fresh_trace() -> String {
    format!("thirdTraceId={}", uuid::Uuid::new_v4())
}

fn token_body() -> Value {
    json!({"appId": "app", "appSecret": "secret", "permanentCode": "perm", "grantType": "app_secret"})
}

/// The manual's example card, to two recipients.
fn send_body() -> Value {
    json!({
        "toUser": ["1000", "1001"],
        "msgType": "composite",
        "composite": {
            "head": {"title": "Operation Daily Report"},
            "first": {"content": "Red Packet Data"},
            "form": [{"label": "CRM (Daily Clicks)", "value": "100000"}],
            "remark": {"content": "remark"},
            "link": {"title": "Details", "url": "http://www.fxiaoke.com"}
        }
    })
}

impl Caller {
    fn new() -> Caller {
        Caller {
            fake: FakeFxiaoke::start("app", "secret", "perm", USER),
            http: reqwest::Client::new(),
        }
    }

    fn token_call(&self) -> Call {
        Call {
            path: "/oauth2.0/token",
            query: fresh_trace(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: token_body().to_string(),
        }
    }

    fn send_call(&self, token: &str) -> Call {
        Call {
            path: "/cgi/message/send",
            query: fresh_trace(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), format!("Bearer {token}")),
                ("x-fs-ea".into(), "fs-ea-1".into()),
                ("x-fs-userid".into(), USER.into()),
            ],
            body: send_body().to_string(),
        }
    }

    /// Makes the call; the answer's JSON (`Null` when it is not JSON).
    async fn call(&self, call: Call) -> Value {
        let url = format!("{}{}?{}", self.fake.base_url(), call.path, call.query);
        let mut req = self.http.post(url).body(call.body);
        for (n, v) in &call.headers {
            req = req.header(n, v);
        }
        let res = req.send().await.expect("the fake answers");
        res.json().await.unwrap_or(Value::Null)
    }

    /// A token from a valid token call.
    async fn token(&self) -> String {
        let answer = self.call(self.token_call()).await;
        answer["accessToken"].as_str().expect("a token").to_string()
    }

    /// The request the fake received last.
    fn last(&self) -> Received {
        self.fake.received().pop().expect("a request")
    }
}

#[actix_rt::test]
async fn a_token_call_and_a_send_made_as_the_manual_says_pass_and_the_send_is_delivered() {
    let caller = Caller::new();

    let token = caller.call(caller.token_call()).await;
    let sent = caller
        .call(caller.send_call(token["accessToken"].as_str().unwrap()))
        .await;

    assert_eq!(token["errorCode"], 0, "{token}");
    assert_eq!(token["accessToken"], "tok-1");
    assert_eq!(token["ea"], "fs-ea-1");
    assert_eq!(token["expiresIn"], 7200);
    assert_eq!(sent["errorCode"], 0, "{sent}");
    assert!(sent["traceId"].as_str().unwrap().starts_with("E-"));
    caller.fake.assert_no_violations();
    let sends = caller.fake.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body, send_body());
    assert_eq!(sends[0].error_code, Some(0));
    assert_eq!(caller.fake.token_calls(), 1);
}

/// A broken rule: what to bend, the code the vendor answers, a phrase of the violation.
type Bend = Box<dyn Fn(Call) -> Call>;

fn bend(f: impl Fn(Call) -> Call + 'static) -> Bend {
    Box::new(f)
}

/// Sets `composite.<part>.<field>` to `text`.
fn card_text(part: &'static str, field: &'static str, text: String) -> Bend {
    bend(move |c| {
        let text = text.clone();
        c.body(move |b| b["composite"][part][field] = json!(text))
    })
}

/// Replaces `composite.form` with `n` rows, each with this value.
fn rows(n: usize, value: String) -> Bend {
    bend(move |c| {
        let value = value.clone();
        c.body(move |b| {
            b["composite"]["form"] = (0..n)
                .map(|i| json!({"label": format!("row {i}"), "value": value}))
                .collect()
        })
    })
}

#[actix_rt::test]
async fn each_broken_rule_of_a_send_is_recorded_as_a_violation_answered_with_its_code() {
    let caller = Caller::new();
    let token = caller.token().await;
    let ids = |n: usize| -> Value { (0..n).map(|i| json!(format!("{}", 2000 + i))).collect() };
    let cases: Vec<(&str, Bend, i64, &str)> = vec![
        // The manual: headers.
        (
            "no authorization",
            bend(|c| c.header("authorization", None)),
            20017,
            "missing header authorization",
        ),
        (
            "two spaces after Bearer",
            bend(|c| c.header("authorization", Some("Bearer  tok-1"))),
            20016,
            "one space",
        ),
        (
            "a token never issued",
            bend(|c| c.header("authorization", Some("Bearer tok-99"))),
            20016,
            "never issued",
        ),
        (
            "no x-fs-ea",
            bend(|c| c.header("x-fs-ea", None)),
            FAKE_REJECT_CODE,
            "missing header x-fs-ea",
        ),
        (
            "another x-fs-ea",
            bend(|c| c.header("x-fs-ea", Some("fs-ea-2"))),
            FAKE_REJECT_CODE,
            "x-fs-ea is \"fs-ea-2\"",
        ),
        (
            "no x-fs-userid",
            bend(|c| c.header("x-fs-userid", None)),
            FAKE_REJECT_CODE,
            "missing header x-fs-userid",
        ),
        (
            "another employee as x-fs-userid",
            bend(|c| c.header("x-fs-userid", Some("1001"))),
            FAKE_REJECT_CODE,
            "not the configured employee \"1000\"",
        ),
        (
            "a text/plain body",
            bend(|c| c.header("content-type", Some("text/plain"))),
            FAKE_REJECT_CODE,
            "only application/json",
        ),
        // The manual: the query.
        (
            "no thirdTraceId",
            bend(|c| Call {
                query: String::new(),
                ..c
            }),
            FAKE_REJECT_CODE,
            "missing query parameter thirdTraceId",
        ),
        (
            "a thirdTraceId that is no UUID v4",
            bend(|c| Call {
                query: format!("thirdTraceId={}", uuid::Uuid::now_v7()),
                ..c
            }),
            FAKE_REJECT_CODE,
            "not a version 4 UUID",
        ),
        // The manual: the body.
        (
            "no toUser",
            bend(|c| {
                c.body(|b| {
                    b.as_object_mut().unwrap().remove("toUser");
                })
            }),
            10015,
            "toUser is missing",
        ),
        (
            "an empty toUser",
            bend(|c| c.body(|b| b["toUser"] = json!([]))),
            10015,
            "toUser is empty",
        ),
        (
            "501 recipients",
            bend(move |c| c.body(|b| b["toUser"] = ids(501))),
            11016,
            "501 recipients (at most 500)",
        ),
        (
            "a recipient twice",
            bend(|c| c.body(|b| b["toUser"] = json!(["1000", "1000"]))),
            11016,
            "repeats an earlier recipient",
        ),
        (
            "a recipient as a number",
            bend(|c| c.body(|b| b["toUser"] = json!([1000]))),
            11016,
            "toUser[0] is a number",
        ),
        (
            "msgType text",
            bend(|c| c.body(|b| b["msgType"] = json!("text"))),
            11017,
            "not \"composite\"",
        ),
        (
            "an unknown top-level key",
            bend(|c| c.body(|b| b["data"] = json!({}))),
            FAKE_REJECT_CODE,
            "unknown top-level key \"data\"",
        ),
        (
            "no head",
            bend(|c| {
                c.body(|b| {
                    b["composite"].as_object_mut().unwrap().remove("head");
                })
            }),
            FAKE_REJECT_CODE,
            "composite.head is missing",
        ),
        (
            "a blank link title",
            card_text("link", "title", " ".into()),
            FAKE_REJECT_CODE,
            "composite.link.title is empty",
        ),
        (
            "no link url",
            bend(|c| {
                c.body(|b| {
                    b["composite"]["link"]
                        .as_object_mut()
                        .unwrap()
                        .remove("url");
                })
            }),
            FAKE_REJECT_CODE,
            "composite.link.url is missing",
        ),
        (
            "a row value as a number",
            bend(|c| c.body(|b| b["composite"]["form"][0]["value"] = json!(100000))),
            FAKE_REJECT_CODE,
            "composite.form[0].value is a number, not a string",
        ),
        (
            "a first part that is text",
            bend(|c| c.body(|b| b["composite"]["first"] = json!("x"))),
            FAKE_REJECT_CODE,
            "composite.first is a string, not an object",
        ),
        // Our documented card limits (docs/mapping.md, "Fitting the phone").
        (
            "a 65-character title",
            card_text("head", "title", "界".repeat(65)),
            FAKE_REJECT_CODE,
            "composite.head.title has 65 characters (cards.title_max is 64)",
        ),
        (
            "a 65-character link title",
            card_text("link", "title", "x".repeat(65)),
            FAKE_REJECT_CODE,
            "composite.link.title has 65 characters (cards.title_max is 64)",
        ),
        (
            "a 129-character first line",
            card_text("first", "content", "x".repeat(129)),
            FAKE_REJECT_CODE,
            "(cards.first_max is 128)",
        ),
        (
            "a 257-character remark",
            card_text("remark", "content", "x".repeat(257)),
            FAKE_REJECT_CODE,
            "(cards.remark_max is 256)",
        ),
        (
            "a 33-character label",
            bend(|c| c.body(|b| b["composite"]["form"][0]["label"] = json!("x".repeat(33)))),
            FAKE_REJECT_CODE,
            "composite.form[0].label has 33 characters (cards.label_max is 32)",
        ),
        (
            "a 257-character value",
            rows(1, "x".repeat(257)),
            FAKE_REJECT_CODE,
            "composite.form[0].value has 257 characters (cards.value_max is 256)",
        ),
        (
            "21 rows",
            rows(21, "v".into()),
            FAKE_REJECT_CODE,
            "composite.form has 21 rows (cards.max_rows is 20)",
        ),
        (
            "a composite over 4096 bytes",
            rows(16, "x".repeat(250)),
            FAKE_REJECT_CODE,
            "(cards.body_max_bytes is 4096)",
        ),
        (
            "a title on two lines",
            card_text("head", "title", "Fix\nthe build".into()),
            FAKE_REJECT_CODE,
            "not folded to one line",
        ),
        (
            "an ftp link",
            card_text("link", "url", "ftp://x".into()),
            FAKE_REJECT_CODE,
            "is not an http(s) or fs:// link",
        ),
    ];
    for (what, bend, code, phrase) in cases {
        let answer = caller.call(bend(caller.send_call(&token))).await;

        let last = caller.last();
        assert_eq!(answer["errorCode"], code, "{what}: {answer}");
        assert!(
            last.violations.iter().any(|v| v.contains(phrase)),
            "{what}: no violation saying {phrase:?} in {:?}",
            last.violations
        );
        assert_eq!(last.error_code, Some(code), "{what}");
    }
    assert!(
        caller.fake.sends().is_empty(),
        "a broken send was delivered"
    );
}

#[actix_rt::test]
async fn the_card_limits_themselves_pass_and_an_fs_link_is_a_link() {
    let caller = Caller::new();
    let token = caller.token().await;
    let at_the_limits = [
        card_text("head", "title", "界".repeat(64)),
        card_text("first", "content", "x".repeat(128)),
        card_text("remark", "content", "x".repeat(256)),
        rows(20, "v".into()),
        rows(1, "😀".repeat(256)),
        card_text(
            "link",
            "url",
            r#"fs://CRM/udobj?{"objDescApiName":"AccountObj","objDataId":"5ff2780b7132bb0001bade16"}"#
                .into(),
        ),
    ];
    for bend in at_the_limits {
        let answer = caller.call(bend(caller.send_call(&token))).await;
        assert_eq!(answer["errorCode"], 0, "{answer}");
    }
    caller.fake.assert_no_violations();
    assert_eq!(caller.fake.sends().len(), 6);
}

#[actix_rt::test]
async fn each_broken_rule_of_a_token_call_is_recorded_with_its_code() {
    let caller = Caller::new();
    let cases: Vec<(&str, Bend, i64, &str)> = vec![
        (
            "a wrong appSecret",
            bend(|c| c.body(|b| b["appSecret"] = json!("wrong"))),
            10006,
            "appSecret is not the configured value",
        ),
        (
            "no permanentCode",
            bend(|c| {
                c.body(|b| {
                    b.as_object_mut().unwrap().remove("permanentCode");
                })
            }),
            FAKE_REJECT_CODE,
            "permanentCode is missing",
        ),
        (
            "another grantType",
            bend(|c| c.body(|b| b["grantType"] = json!("password"))),
            FAKE_REJECT_CODE,
            "grantType is not the configured value",
        ),
        (
            "the old corpId style",
            bend(|c| c.body(|b| b["corpId"] = json!("x"))),
            FAKE_REJECT_CODE,
            "unknown key \"corpId\"",
        ),
        (
            "an authorization header",
            bend(|c| c.header("authorization", Some("Bearer tok-1"))),
            FAKE_REJECT_CODE,
            "carries a authorization header",
        ),
        (
            "an x-fs-userid header",
            bend(|c| c.header("x-fs-userid", Some(USER))),
            FAKE_REJECT_CODE,
            "carries a x-fs-userid header",
        ),
    ];
    for (what, bend, code, phrase) in cases {
        let answer = caller.call(bend(caller.token_call())).await;

        let last = caller.last();
        assert_eq!(answer["errorCode"], code, "{what}: {answer}");
        assert!(
            answer.get("accessToken").is_none(),
            "{what}: a token was issued"
        );
        assert!(
            last.violations.iter().any(|v| v.contains(phrase)),
            "{what}: no violation saying {phrase:?} in {:?}",
            last.violations
        );
    }
}

#[actix_rt::test]
async fn a_reused_third_trace_id_is_a_violation() {
    let caller = Caller::new();
    let token = caller.token().await;
    let first = caller.send_call(&token);
    let query = first.query.clone();
    caller.call(first).await;

    let again = caller
        .call(Call {
            query,
            ..caller.send_call(&token)
        })
        .await;

    assert_eq!(again["errorCode"], FAKE_REJECT_CODE);
    assert!(caller.last().violations[0].contains("was already used"));
    assert_eq!(caller.fake.sends().len(), 1);
}

#[actix_rt::test]
async fn the_eleventh_token_call_in_a_minute_is_refused_as_over_the_rate() {
    let caller = Caller::new();
    for _ in 0..10 {
        caller.token().await;
    }
    caller.fake.assert_no_violations();

    let eleventh = caller.call(caller.token_call()).await;

    assert_eq!(eleventh["errorCode"], 14001, "{eleventh}");
    assert!(caller.last().violations[0].contains("11 calls within 60s (the limit is 10)"));
}

#[actix_rt::test]
async fn the_101st_send_in_twenty_seconds_is_refused_as_over_the_rate() {
    let caller = Caller::new();
    let token = caller.token().await;
    for _ in 0..100 {
        let answer = caller.call(caller.send_call(&token)).await;
        assert_eq!(answer["errorCode"], 0, "{answer}");
    }
    caller.fake.assert_no_violations();

    let over = caller.call(caller.send_call(&token)).await;

    assert_eq!(over["errorCode"], 14001, "{over}");
    assert!(caller.last().violations[0].contains("101 calls within 20s (the limit is 100)"));
    assert_eq!(caller.fake.sends().len(), 100);
    assert_eq!(
        caller
            .fake
            .max_sends_in_window(std::time::Duration::from_secs(20)),
        101
    );
}

#[actix_rt::test]
async fn overlapping_token_calls_are_a_violation() {
    let caller = Caller::new();

    // The fake holds each token call 50 ms: two made at once overlap.
    let (a, b) = tokio::join!(
        caller.call(caller.token_call()),
        caller.call(caller.token_call())
    );

    let refused = [&a, &b]
        .iter()
        .filter(|x| x["errorCode"] == FAKE_REJECT_CODE)
        .count();
    assert_eq!(refused, 1, "{a} {b}");
    assert_eq!(caller.fake.max_concurrent_token_calls(), 2);
    assert!(caller.fake.violations()[0].contains("other token call(s) were in progress"));
}

#[actix_rt::test]
async fn a_token_is_reissued_unchanged_and_once_expired_is_answered_20016_without_blame() {
    let caller = Caller::new();
    let first = caller.token().await;
    assert_eq!(caller.token().await, first, "within 6600 s the same token");

    caller.fake.expire_token();
    let stale = caller.call(caller.send_call(&first)).await;
    let renewed = caller.token().await;
    let sent = caller.call(caller.send_call(&renewed)).await;

    assert_eq!(stale["errorCode"], 20016, "{stale}");
    assert_eq!(caller.fake.send_calls()[0].error_code, Some(20016));
    assert_ne!(renewed, first);
    assert_eq!(sent["errorCode"], 0, "{sent}");
    caller.fake.assert_no_violations();
    assert_eq!(caller.fake.sends().len(), 1);
}

#[actix_rt::test]
async fn scripted_answers_go_to_valid_sends_only_in_order_then_success() {
    let caller = Caller::new();
    let token = caller.token().await;
    caller.fake.script([
        Scripted::ErrorCode(30002),
        Scripted::HttpStatus(429),
        Scripted::Html,
    ]);

    let invalid = caller
        .call(caller.send_call(&token).header("x-fs-userid", Some("9")))
        .await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        caller.call(caller.send_call(&token)).await;
        let last = caller.last();
        answers.push((last.error_code, last.http_status));
    }

    assert_eq!(
        invalid["errorCode"], FAKE_REJECT_CODE,
        "it left the script alone"
    );
    assert_eq!(
        answers,
        [(Some(30002), 200), (None, 429), (None, 200), (Some(0), 200)]
    );
    assert_eq!(caller.fake.sends().len(), 1);
}
