//! Every preset of `fxhook::verify::presets::PRESETS`, built through its public builder as a
//! mapping file would build it: the published vectors (GitHub, Standard Webhooks, Slack),
//! signatures made by an independent implementation (Python's `hmac`, one process per test), and
//! every way a request can fail: a tampered body, a wrong secret, a missing header, a wrong
//! prefix, a weaker algorithm, a timestamp outside the window, a secret rotated out.
//!
//! The table tests collect every failing case before asserting, so one run names them all.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use fxhook::verify::presets::{self, PRESETS};
use fxhook::verify::spec::{Algorithm, Encoding, VerifySpec};
use fxhook::verify::{ContentKind, Scheme, Secret, Verifier, VerifyError, Webhook};

use crate::helpers::{ACCEPT_ALL, Options, mapping_with_secret_file, spawn_app};

/// The clock of these tests (2023-11-14T22:13:20Z); timestamps are relative to it.
const NOW: u64 = 1_700_000_000;
/// The secret in use, and the one a rotation retires.
const NEW: &str = "svc:n3w-s3cret";
const OLD: &str = "svc:0ld-s3cret";
/// A body with multi-byte UTF-8, so both signers must agree on bytes, not characters.
const BODY: &[u8] = "{\"action\":\"opened\",\"id\":42,\"text\":\"h\u{e9}llo \u{2713}\"}".as_bytes();
const TAMPERED: &[u8] =
    "{\"action\":\"opened\",\"id\":43,\"text\":\"h\u{e9}llo \u{2713}\"}".as_bytes();

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The scheme a mapping file with this `verify:` section gets.
fn build(preset: &str, spec: &VerifySpec) -> Arc<dyn Scheme> {
    let found = presets::find(preset).unwrap_or_else(|| panic!("no preset {preset}"));
    (found.build)(spec).unwrap_or_else(|e| panic!("preset {preset} does not build: {e}"))
}

/// Verifies through a [`Verifier`] holding exactly these secrets, as a source would.
fn via_verifier(
    scheme: &Arc<dyn Scheme>,
    secrets: Vec<Secret>,
    hook: Webhook,
) -> Result<(), VerifyError> {
    Verifier::new(scheme.clone(), secrets)
        .verify(hook)
        .map(|_| ())
}

fn secrets(values: &[&str]) -> Vec<Secret> {
    values.iter().map(|v| Secret::new(*v, "test")).collect()
}

/// A JSON request with these headers, as the receiver builds it.
fn hook(headers: &[(&str, &str)], body: &[u8]) -> Webhook {
    let mut map = actix_web::http::header::HeaderMap::new();
    for (n, v) in headers {
        map.append(
            actix_web::http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            actix_web::http::header::HeaderValue::from_str(v).unwrap(),
        );
    }
    Webhook {
        headers: map,
        body: bytes::Bytes::copy_from_slice(body),
        content: ContentKind::Json,
        query: String::new(),
        received_at: at(NOW),
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One HMAC for Python to compute.
struct Job {
    algorithm: &'static str,
    key: String,
    /// The key is a `whsec_` secret whose text after the prefix is base64 (Standard Webhooks).
    whsec: bool,
    message: Vec<u8>,
    base64: bool,
}

/// HMAC-`algorithm` of `message` keyed by the secret's UTF-8 bytes, in hex.
fn hex_job(algorithm: &'static str, key: &str, message: &[u8]) -> Job {
    Job {
        algorithm,
        key: key.into(),
        whsec: false,
        message: message.to_vec(),
        base64: false,
    }
}

/// The same in base64.
fn b64_job(algorithm: &'static str, key: &str, message: &[u8]) -> Job {
    Job {
        base64: true,
        ..hex_job(algorithm, key, message)
    }
}

/// A Standard Webhooks signature (without its `v1,`): HMAC-SHA256 of `{id}.{ts}.{body}`.
fn whsec_job(key: &str, id: &str, ts: u64, body: &[u8]) -> Job {
    Job {
        algorithm: "sha256",
        key: key.into(),
        whsec: true,
        message: concat(&[format!("{id}.{ts}.").as_bytes(), body]),
        base64: true,
    }
}

/// Computes every job in one `python3` process (each start costs ~90 ms).
fn python_sign_all(jobs: Vec<Job>) -> Vec<String> {
    use std::io::Write;
    const SCRIPT: &str = r#"
import base64, hashlib, hmac, json, sys
for alg, key, whsec, msg, as_b64 in json.load(sys.stdin):
    k = base64.b64decode(key[len("whsec_"):]) if whsec else key.encode()
    d = hmac.new(k, base64.b64decode(msg), getattr(hashlib, alg)).digest()
    print(base64.b64encode(d).decode() if as_b64 else d.hex())
"#;
    let input: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| serde_json::json!([j.algorithm, j.key, j.whsec, b64(&j.message), j.base64]))
        .collect();
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to sign test requests independently (install python3)");
    let stdin = serde_json::to_vec(&input).unwrap();
    child.stdin.take().unwrap().write_all(&stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 signing failed");
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), jobs.len(), "python3 signed {lines:?}");
    lines
}

fn python_sign<const N: usize>(jobs: [Job; N]) -> [String; N] {
    python_sign_all(jobs.into()).try_into().unwrap()
}

/// Compares a result with the wanted one, noting a mismatch in `failures`.
fn tally(
    failures: &mut Vec<String>,
    case: &str,
    what: &str,
    got: Result<(), VerifyError>,
    want: Result<(), VerifyError>,
) {
    if got != want {
        failures.push(format!("{case}: {what}: got {got:?}, want {want:?}"));
    }
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn missing(header: &str) -> Result<(), VerifyError> {
    Err(VerifyError::MissingHeader(header.into()))
}

fn malformed(header: &str) -> Result<(), VerifyError> {
    Err(VerifyError::Malformed(header.into()))
}

const MISMATCH: Result<(), VerifyError> = Err(VerifyError::Mismatch);
const STALE: Result<(), VerifyError> = Err(VerifyError::Stale);

#[test]
fn every_preset_in_the_table_is_exercised_by_these_tests() {
    const COVERED: &[&str] = &[
        "github",
        "gitlab",
        "standard-webhooks",
        "alertmanager",
        "svix",
        "gitea",
        "forgejo",
        "gogs",
        "bitbucket",
        "circleci",
        "sentry",
        "grafana",
        "slack",
        "stripe",
        "shopify",
        "jenkins",
        "token",
        "azure-devops",
        "hmac",
    ];
    let untested: Vec<&str> = PRESETS
        .iter()
        .map(|p| p.name)
        .filter(|n| !COVERED.contains(n))
        .collect();
    assert!(
        untested.is_empty(),
        "presets without tests here: {untested:?}"
    );
    for name in COVERED {
        assert!(presets::find(name).is_some(), "{name} is not a preset");
    }
}

// ---------------------------------------------------------------------------------------------
// Published vectors
// ---------------------------------------------------------------------------------------------

const GITHUB_VECTOR: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[test]
fn the_published_github_vector_verifies_with_and_without_legacy_sha1() {
    let secrets = secrets(&["It's a Secret to Everybody"]);
    let hook = hook(&[("X-Hub-Signature-256", GITHUB_VECTOR)], b"Hello, World!");
    for legacy_sha1 in [false, true] {
        let spec = VerifySpec {
            legacy_sha1,
            ..VerifySpec::default()
        };
        let scheme = build("github", &spec);
        assert_eq!(scheme.check(&hook, &secrets, at(NOW)), Ok(()));
        let mut tampered = hook.clone();
        tampered.body = bytes::Bytes::from_static(b"Hello, World?");
        assert_eq!(scheme.check(&tampered, &secrets, at(NOW)), MISMATCH);
    }
}

const SW_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TS: u64 = 1_614_265_330;
const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// The Standard Webhooks vector in the header family `family` (`webhook` or `svix`).
fn standard_vector(family: &str) -> Webhook {
    let ts = SW_TS.to_string();
    hook(
        &[
            (&format!("{family}-id"), SW_ID),
            (&format!("{family}-timestamp"), &ts),
            (&format!("{family}-signature"), SW_SIG),
        ],
        SW_BODY,
    )
}

#[test]
fn the_published_standard_webhooks_vector_verifies_in_every_preset_that_speaks_it() {
    let secrets = secrets(&[SW_KEY]);
    let then = at(SW_TS);
    let mut failures = Vec::new();
    for (preset, family) in [
        ("standard-webhooks", "webhook"),
        ("standard-webhooks", "svix"),
        ("svix", "svix"),
        ("svix", "webhook"),
        ("gitlab", "webhook"),
    ] {
        let scheme = build(preset, &VerifySpec::default());
        let case = format!("{preset} with {family}-* headers");
        let vector = standard_vector(family);
        tally(
            &mut failures,
            &case,
            "at its time",
            scheme.check(&vector, &secrets, then),
            Ok(()),
        );
        let later = then + Duration::from_secs(301);
        tally(
            &mut failures,
            &case,
            "301 s later",
            scheme.check(&vector, &secrets, later),
            STALE,
        );
        let mut tampered = vector.clone();
        tampered.body = bytes::Bytes::from_static(br#"{"test": 2432232315}"#);
        tally(
            &mut failures,
            &case,
            "tampered",
            scheme.check(&tampered, &secrets, then),
            MISMATCH,
        );
    }
    assert_no_failures(failures);
}

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TS: u64 = 1_531_420_618;
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

#[test]
fn the_published_slack_vector_verifies_at_its_time_and_is_stale_five_minutes_later() {
    let scheme = build("slack", &VerifySpec::default());
    let ts = SLACK_TS.to_string();
    let mut vector = hook(
        &[
            ("X-Slack-Signature", SLACK_SIG),
            ("X-Slack-Request-Timestamp", &ts),
        ],
        SLACK_BODY.as_bytes(),
    );
    vector.content = ContentKind::Form;
    let secrets = secrets(&[SLACK_SECRET]);
    assert_eq!(scheme.check(&vector, &secrets, at(SLACK_TS)), Ok(()));
    assert_eq!(scheme.check(&vector, &secrets, at(SLACK_TS + 300)), Ok(()));
    assert_eq!(scheme.check(&vector, &secrets, at(SLACK_TS + 301)), STALE);
    assert_eq!(scheme.check(&vector, &secrets, at(SLACK_TS - 301)), STALE);
    let wrong = Secret::new("8f742231b10e8888abcd99yyyzzz85a6", "t");
    assert_eq!(scheme.check(&vector, &[wrong], at(SLACK_TS)), MISMATCH);
}

#[test]
fn the_python_signer_of_these_tests_reproduces_the_published_vectors() {
    let slack_message = concat(&[format!("v0:{SLACK_TS}:").as_bytes(), SLACK_BODY.as_bytes()]);
    let [github, standard, slack] = python_sign([
        hex_job("sha256", "It's a Secret to Everybody", b"Hello, World!"),
        whsec_job(SW_KEY, SW_ID, SW_TS, SW_BODY),
        hex_job("sha256", SLACK_SECRET, &slack_message),
    ]);
    assert_eq!(format!("sha256={github}"), GITHUB_VECTOR);
    assert_eq!(format!("v1,{standard}"), SW_SIG);
    assert_eq!(format!("v0={slack}"), SLACK_SIG);
}

// ---------------------------------------------------------------------------------------------
// Presets that sign the body in one header
// ---------------------------------------------------------------------------------------------

/// A preset (or one of its headers) that carries an HMAC of the body.
struct BodyCase {
    preset: &'static str,
    spec: VerifySpec,
    /// Where the signature is put.
    header: &'static str,
    /// Python's name of the expected hash function, and of a weaker one a forger might try.
    algorithm: &'static str,
    weaker: &'static str,
    base64: bool,
    prefix: &'static str,
    /// A prefix the preset does not take.
    wrong_prefix: &'static str,
    /// The header named when no signature header is present.
    missing: &'static str,
}

impl BodyCase {
    fn new(preset: &'static str, header: &'static str, prefix: &'static str) -> Self {
        BodyCase {
            preset,
            spec: VerifySpec::default(),
            header,
            algorithm: "sha256",
            weaker: "sha1",
            base64: false,
            prefix,
            wrong_prefix: if prefix.is_empty() {
                "sha256="
            } else {
                "sha1="
            },
            missing: header,
        }
    }

    fn missing(self, header: &'static str) -> Self {
        BodyCase {
            missing: header,
            ..self
        }
    }

    fn job(&self, algorithm: &'static str, key: &str, message: &[u8]) -> Job {
        if self.base64 {
            b64_job(algorithm, key, message)
        } else {
            hex_job(algorithm, key, message)
        }
    }

    fn name(&self) -> String {
        format!("{} via {}", self.preset, self.header)
    }
}

fn body_cases() -> Vec<BodyCase> {
    let generic =
        |header: &str, algorithm: Algorithm, encoding: Encoding, prefix: &str| VerifySpec {
            preset: Some("hmac".into()),
            header: Some(header.into()),
            algorithm: Some(algorithm),
            encoding: Some(encoding),
            prefix: Some(prefix.into()),
            ..VerifySpec::default()
        };
    vec![
        BodyCase::new("github", "X-Hub-Signature-256", "sha256="),
        BodyCase {
            spec: VerifySpec {
                legacy_sha1: true,
                ..VerifySpec::default()
            },
            ..BodyCase::new("github", "X-Hub-Signature-256", "sha256=")
        },
        BodyCase::new("gitea", "X-Gitea-Signature", ""),
        BodyCase::new("gitea", "X-Forgejo-Signature", "").missing("X-Gitea-Signature"),
        BodyCase::new("gitea", "X-Hub-Signature-256", "sha256=").missing("X-Gitea-Signature"),
        BodyCase::new("forgejo", "X-Forgejo-Signature", ""),
        BodyCase::new("forgejo", "X-Gitea-Signature", "").missing("X-Forgejo-Signature"),
        BodyCase::new("forgejo", "X-Hub-Signature-256", "sha256=").missing("X-Forgejo-Signature"),
        BodyCase::new("gogs", "X-Gogs-Signature", ""),
        BodyCase::new("bitbucket", "X-Hub-Signature", "sha256="),
        BodyCase::new("circleci", "circleci-signature", "v1="),
        BodyCase::new("sentry", "Sentry-Hook-Signature", ""),
        BodyCase::new("grafana", "X-Grafana-Alerting-Signature", ""),
        BodyCase::new("grafana", "X-Grafana-Alert-Signature", "")
            .missing("X-Grafana-Alerting-Signature"),
        BodyCase {
            spec: VerifySpec {
                header: Some("X-Alert-Hmac".into()),
                ..VerifySpec::default()
            },
            ..BodyCase::new("grafana", "X-Alert-Hmac", "")
        },
        BodyCase {
            base64: true,
            ..BodyCase::new("shopify", "X-Shopify-Hmac-Sha256", "")
        },
        BodyCase {
            spec: generic("X-Signature", Algorithm::Sha256, Encoding::Hex, ""),
            ..BodyCase::new("hmac", "X-Signature", "")
        },
        BodyCase {
            spec: generic("X-Sig-512", Algorithm::Sha512, Encoding::Base64, "sha512="),
            algorithm: "sha512",
            weaker: "sha256",
            base64: true,
            ..BodyCase::new("hmac", "X-Sig-512", "sha512=")
        },
        BodyCase {
            // A sender that still signs with SHA-1 can be described, but only explicitly.
            spec: generic("X-Legacy", Algorithm::Sha1, Encoding::Hex, "sha1="),
            algorithm: "sha1",
            weaker: "md5",
            wrong_prefix: "sha256=",
            ..BodyCase::new("hmac", "X-Legacy", "sha1=")
        },
    ]
}

#[test]
fn body_signing_presets_accept_python_signatures_and_refuse_every_forgery() {
    let cases = body_cases();
    let mut jobs = Vec::new();
    for c in &cases {
        jobs.push(c.job(c.algorithm, NEW, BODY));
        jobs.push(c.job(c.algorithm, OLD, BODY));
        jobs.push(c.job(c.algorithm, "not-the-secret", BODY));
        jobs.push(c.job(c.weaker, NEW, BODY));
    }
    let sigs = python_sign_all(jobs);
    let mut failures = Vec::new();
    for (c, sig) in cases.iter().zip(sigs.chunks(4)) {
        let [good, old, wrong, weaker] = [&sig[0], &sig[1], &sig[2], &sig[3]];
        let scheme = build(c.preset, &c.spec);
        let signed =
            |sig: &str, body: &[u8]| hook(&[(c.header, &format!("{}{sig}", c.prefix))], body);
        let new_only = secrets(&[NEW]);
        let check = |hook: Webhook, secrets: &[Secret]| scheme.check(&hook, secrets, at(NOW));
        let mut outcomes = vec![
            (
                "signed by python".to_string(),
                check(signed(good, BODY), &new_only),
                Ok(()),
            ),
            (
                "tampered body".into(),
                check(signed(good, TAMPERED), &new_only),
                MISMATCH,
            ),
            (
                "empty body".into(),
                check(signed(good, b""), &new_only),
                MISMATCH,
            ),
            (
                "wrong secret".into(),
                check(signed(wrong, BODY), &new_only),
                MISMATCH,
            ),
            (
                "no secret configured".into(),
                check(signed(good, BODY), &[]),
                MISMATCH,
            ),
            (
                "previous secret during a rotation".into(),
                via_verifier(&scheme, secrets(&[NEW, OLD]), signed(old, BODY)),
                Ok(()),
            ),
            (
                "previous secret after the rotation".into(),
                via_verifier(&scheme, new_only.clone(), signed(old, BODY)),
                MISMATCH,
            ),
            (
                format!("{} instead of {}", c.weaker, c.algorithm),
                check(signed(weaker, BODY), &new_only),
                MISMATCH,
            ),
            (
                "no signature header".into(),
                check(hook(&[], BODY), &new_only),
                missing(c.missing),
            ),
            (
                format!("wrong prefix {}", c.wrong_prefix),
                check(
                    hook(&[(c.header, &format!("{}{good}", c.wrong_prefix))], BODY),
                    &new_only,
                ),
                malformed(c.header),
            ),
            (
                "truncated signature".into(),
                check(signed(&good[..good.len() - 4], BODY), &new_only),
                MISMATCH,
            ),
        ];
        if !c.base64 {
            let upper = check(signed(&good.to_uppercase(), BODY), &new_only);
            outcomes.push(("upper-case hex".into(), upper, Ok(())));
        }
        for (what, got, want) in outcomes {
            tally(&mut failures, &c.name(), &what, got, want);
        }
        if check(hook(&[(c.header, "")], BODY), &new_only).is_ok() {
            failures.push(format!(
                "{}: an empty signature header is accepted",
                c.name()
            ));
        }
    }
    assert_no_failures(failures);
}

#[test]
fn github_accepts_sha1_only_with_legacy_sha1_and_never_in_place_of_sha256() {
    let [sha1, sha256, sha1_old] = python_sign([
        hex_job("sha1", NEW, BODY),
        hex_job("sha256", NEW, BODY),
        hex_job("sha1", OLD, BODY),
    ]);
    let modern = build("github", &VerifySpec::default());
    let legacy = build(
        "github",
        &VerifySpec {
            legacy_sha1: true,
            ..VerifySpec::default()
        },
    );
    let new_only = secrets(&[NEW]);
    let sha1_only = hook(&[("X-Hub-Signature", &format!("sha1={sha1}"))], BODY);
    // Without the opt-in, the legacy header does not count at all.
    assert_eq!(
        modern.check(&sha1_only, &new_only, at(NOW)),
        missing("X-Hub-Signature-256")
    );
    assert_eq!(legacy.check(&sha1_only, &new_only, at(NOW)), Ok(()));
    // The sha1 value in the sha256 header, with either prefix, is refused by both.
    for scheme in [&modern, &legacy] {
        let smuggled = hook(&[("X-Hub-Signature-256", &format!("sha1={sha1}"))], BODY);
        assert_eq!(
            scheme.check(&smuggled, &new_only, at(NOW)),
            malformed("X-Hub-Signature-256")
        );
        let relabelled = hook(&[("X-Hub-Signature-256", &format!("sha256={sha1}"))], BODY);
        assert_eq!(scheme.check(&relabelled, &new_only, at(NOW)), MISMATCH);
    }
    // When both headers come, the sha256 one decides: a good sha1 cannot rescue a bad sha256.
    let both = hook(
        &[
            ("X-Hub-Signature-256", &format!("sha256={}", "0".repeat(64))),
            ("X-Hub-Signature", &format!("sha1={sha1}")),
        ],
        BODY,
    );
    assert_eq!(legacy.check(&both, &new_only, at(NOW)), MISMATCH);
    // The legacy header takes only sha1, and checks the body and the secret.
    let sha256_in_legacy = hook(&[("X-Hub-Signature", &format!("sha256={sha256}"))], BODY);
    assert_eq!(
        legacy.check(&sha256_in_legacy, &new_only, at(NOW)),
        malformed("X-Hub-Signature")
    );
    let mut tampered = sha1_only.clone();
    tampered.body = bytes::Bytes::from_static(TAMPERED);
    assert_eq!(legacy.check(&tampered, &new_only, at(NOW)), MISMATCH);
    let retired = hook(&[("X-Hub-Signature", &format!("sha1={sha1_old}"))], BODY);
    assert_eq!(legacy.check(&retired, &new_only, at(NOW)), MISMATCH);
    assert_eq!(
        legacy.check(&retired, &secrets(&[NEW, OLD]), at(NOW)),
        Ok(())
    );
}

#[test]
fn gitea_forgejo_and_gogs_sign_the_decoded_payload_of_a_form_body() {
    let form =
        serde_urlencoded::to_string([("payload", std::str::from_utf8(BODY).unwrap())]).unwrap();
    let [of_payload, of_raw_form] = python_sign([
        hex_job("sha256", NEW, BODY),
        hex_job("sha256", NEW, form.as_bytes()),
    ]);
    let new_only = secrets(&[NEW]);
    let mut failures = Vec::new();
    for (preset, header, prefix) in [
        ("gitea", "X-Gitea-Signature", ""),
        ("gitea", "X-Hub-Signature-256", "sha256="),
        ("forgejo", "X-Forgejo-Signature", ""),
        ("forgejo", "X-Hub-Signature-256", "sha256="),
        ("gogs", "X-Gogs-Signature", ""),
    ] {
        let scheme = build(preset, &VerifySpec::default());
        let case = format!("{preset} via {header}");
        let form_hook = |sig: &str, body: &[u8]| {
            let mut h = hook(&[(header, &format!("{prefix}{sig}"))], body);
            h.content = ContentKind::Form;
            h
        };
        let mut check = |what: &str, hook: Webhook, want| {
            tally(
                &mut failures,
                &case,
                what,
                scheme.check(&hook, &new_only, at(NOW)),
                want,
            );
        };
        check(
            "payload signed",
            form_hook(&of_payload, form.as_bytes()),
            Ok(()),
        );
        check(
            "raw form signed",
            form_hook(&of_raw_form, form.as_bytes()),
            MISMATCH,
        );
        let other =
            serde_urlencoded::to_string([("payload", std::str::from_utf8(TAMPERED).unwrap())])
                .unwrap();
        check(
            "tampered payload",
            form_hook(&of_payload, other.as_bytes()),
            MISMATCH,
        );
        check(
            "form without a payload field",
            form_hook(&of_payload, b"other=1"),
            malformed("payload"),
        );
    }
    assert_no_failures(failures);
}

#[test]
fn github_and_bitbucket_sign_the_raw_form_body_not_its_payload_field() {
    let form =
        serde_urlencoded::to_string([("payload", std::str::from_utf8(BODY).unwrap())]).unwrap();
    let [of_raw_form, of_payload] = python_sign([
        hex_job("sha256", NEW, form.as_bytes()),
        hex_job("sha256", NEW, BODY),
    ]);
    for (preset, header) in [
        ("github", "X-Hub-Signature-256"),
        ("bitbucket", "X-Hub-Signature"),
    ] {
        let scheme = build(preset, &VerifySpec::default());
        let form_hook = |sig: &str| {
            let mut h = hook(&[(header, &format!("sha256={sig}"))], form.as_bytes());
            h.content = ContentKind::Form;
            h
        };
        let new_only = secrets(&[NEW]);
        assert_eq!(
            scheme.check(&form_hook(&of_raw_form), &new_only, at(NOW)),
            Ok(()),
            "{preset}"
        );
        assert_eq!(
            scheme.check(&form_hook(&of_payload), &new_only, at(NOW)),
            MISMATCH,
            "{preset}"
        );
    }
}

#[test]
fn for_gitea_and_forgejo_the_first_signature_header_present_decides() {
    let [good] = python_sign([hex_job("sha256", NEW, BODY)]);
    let bad = "0".repeat(64);
    let new_only = secrets(&[NEW]);
    for (preset, own) in [
        ("gitea", "X-Gitea-Signature"),
        ("forgejo", "X-Forgejo-Signature"),
    ] {
        let scheme = build(preset, &VerifySpec::default());
        // A bad value in the sender's own header is not rescued by a good GitHub-style one.
        let forged = hook(
            &[
                (own, &bad),
                ("X-Hub-Signature-256", &format!("sha256={good}")),
            ],
            BODY,
        );
        assert_eq!(
            scheme.check(&forged, &new_only, at(NOW)),
            MISMATCH,
            "{preset}"
        );
        let real = hook(
            &[
                (own, &good),
                ("X-Hub-Signature-256", &format!("sha256={good}")),
            ],
            BODY,
        );
        assert_eq!(scheme.check(&real, &new_only, at(NOW)), Ok(()), "{preset}");
    }
}

#[test]
fn circleci_accepts_any_of_several_v1_signatures_and_skips_other_versions() {
    let [good, old, wrong] = python_sign([
        hex_job("sha256", NEW, BODY),
        hex_job("sha256", OLD, BODY),
        hex_job("sha256", "not-the-secret", BODY),
    ]);
    let scheme = build("circleci", &VerifySpec::default());
    let new_only = secrets(&[NEW]);
    let check = |value: String| {
        let h = hook(&[("circleci-signature", &value)], BODY);
        scheme.check(&h, &new_only, at(NOW))
    };
    assert_eq!(check(format!("v1={wrong},v1={good}")), Ok(()));
    assert_eq!(check(format!("v1={old}, v1={good}")), Ok(()));
    assert_eq!(check(format!("v2={wrong},v1={good},v0=zz")), Ok(()));
    assert_eq!(check(format!("v1={wrong},v1={old}")), MISMATCH);
    // The right value under another version does not count.
    assert_eq!(check(format!("v2={good}")), malformed("circleci-signature"));
    assert_eq!(check(format!("v2={good},v1={wrong}")), MISMATCH);
}

// ---------------------------------------------------------------------------------------------
// Presets with a signed timestamp
// ---------------------------------------------------------------------------------------------

/// A scheme that signs a timestamp: how to sign, and where the signature and timestamp go.
struct TimedCase {
    name: &'static str,
    preset: &'static str,
    spec: VerifySpec,
    /// The secret in use and the one retired (Standard Webhooks keys are `whsec_` base64).
    new: &'static str,
    old: &'static str,
    sign: fn(key: &str, ts: u64, body: &[u8]) -> Job,
    request: fn(ts: u64, body: &[u8], signature: &str) -> Webhook,
}

const WHSEC_NEW: &str = "whsec_bmV3LXN0YW5kYXJkLXdlYmhvb2tzLWtleQ==";
const WHSEC_OLD: &str = "whsec_b2xkLXN0YW5kYXJkLXdlYmhvb2tzLWtleQ==";
const MSG_ID: &str = "msg_2bX4pQ";

fn standard_request(family: &str, ts: u64, body: &[u8], signature: &str) -> Webhook {
    let ts = ts.to_string();
    hook(
        &[
            (&format!("{family}-id"), MSG_ID),
            (&format!("{family}-timestamp"), &ts),
            (&format!("{family}-signature"), &format!("v1,{signature}")),
        ],
        body,
    )
}

fn timed_cases() -> Vec<TimedCase> {
    let standard_sign: fn(&str, u64, &[u8]) -> Job =
        |key, ts, body| whsec_job(key, MSG_ID, ts, body);
    let standard = |name, preset| TimedCase {
        name,
        preset,
        spec: VerifySpec::default(),
        new: WHSEC_NEW,
        old: WHSEC_OLD,
        sign: standard_sign,
        request: |ts, body, sig| standard_request("webhook", ts, body, sig),
    };
    vec![
        standard("standard-webhooks", "standard-webhooks"),
        TimedCase {
            request: |ts, body, sig| standard_request("svix", ts, body, sig),
            ..standard("svix", "svix")
        },
        standard("gitlab signing token", "gitlab"),
        TimedCase {
            name: "slack",
            preset: "slack",
            spec: VerifySpec::default(),
            new: NEW,
            old: OLD,
            sign: |key, ts, body| {
                hex_job(
                    "sha256",
                    key,
                    &concat(&[format!("v0:{ts}:").as_bytes(), body]),
                )
            },
            request: |ts, body, sig| {
                hook(
                    &[
                        ("X-Slack-Signature", &format!("v0={sig}")),
                        ("X-Slack-Request-Timestamp", &ts.to_string()),
                    ],
                    body,
                )
            },
        },
        TimedCase {
            name: "stripe",
            preset: "stripe",
            spec: VerifySpec::default(),
            // Stripe keys the HMAC with the whole `whsec_…` text, not its base64 decoding.
            new: "whsec_stripeNewSecret0123456789",
            old: "whsec_stripeOldSecret0123456789",
            sign: |key, ts, body| {
                hex_job("sha256", key, &concat(&[format!("{ts}.").as_bytes(), body]))
            },
            request: |ts, body, sig| {
                hook(&[("Stripe-Signature", &format!("t={ts},v1={sig}"))], body)
            },
        },
        TimedCase {
            name: "grafana with a timestamp header",
            preset: "grafana",
            spec: VerifySpec {
                timestamp_header: Some("X-Grafana-Alerting-Signature-Timestamp".into()),
                ..VerifySpec::default()
            },
            new: NEW,
            old: OLD,
            sign: |key, ts, body| {
                hex_job("sha256", key, &concat(&[format!("{ts}:").as_bytes(), body]))
            },
            request: |ts, body, sig| {
                hook(
                    &[
                        ("X-Grafana-Alerting-Signature", sig),
                        ("X-Grafana-Alerting-Signature-Timestamp", &ts.to_string()),
                    ],
                    body,
                )
            },
        },
        TimedCase {
            name: "hmac over {id}:{timestamp}:{body}",
            preset: "hmac",
            spec: VerifySpec {
                header: Some("X-Sig".into()),
                prefix: Some("t1=".into()),
                signed: Some("{id}:{timestamp}:{body}".into()),
                timestamp_header: Some("X-Ts".into()),
                id_header: Some("X-Id".into()),
                ..VerifySpec::default()
            },
            new: NEW,
            old: OLD,
            sign: |key, ts, body| {
                hex_job(
                    "sha256",
                    key,
                    &concat(&[format!("{MSG_ID}:{ts}:").as_bytes(), body]),
                )
            },
            request: |ts, body, sig| {
                hook(
                    &[
                        ("X-Sig", &format!("t1={sig}")),
                        ("X-Ts", &ts.to_string()),
                        ("X-Id", MSG_ID),
                    ],
                    body,
                )
            },
        },
    ]
}

#[test]
fn timestamped_presets_accept_python_signatures_within_the_window_and_refuse_the_rest() {
    // (offset from NOW, wanted) for signatures that are otherwise right.
    let window: [(i64, Result<(), VerifyError>); 7] = [
        (0, Ok(())),
        (-300, Ok(())),
        (300, Ok(())),
        (-301, STALE),
        (301, STALE),
        (-86_400, STALE),
        (86_400 * 365, STALE),
    ];
    let cases = timed_cases();
    let mut jobs = Vec::new();
    for c in &cases {
        for (offset, _) in &window {
            jobs.push((c.sign)(
                c.new,
                NOW.checked_add_signed(*offset).unwrap(),
                BODY,
            ));
        }
        jobs.push((c.sign)(c.old, NOW, BODY));
        jobs.push((c.sign)(c.new, NOW - 3_600, BODY));
    }
    let sigs = python_sign_all(jobs);
    let mut failures = Vec::new();
    for (c, sigs) in cases.iter().zip(sigs.chunks(window.len() + 2)) {
        let scheme = build(c.preset, &c.spec);
        let new_only = secrets(&[c.new]);
        // Through a Verifier holding exactly these secrets (its clock: the request's arrival).
        let mut check = |what: &str, hook: Webhook, secrets: &[Secret], want| {
            let got = via_verifier(&scheme, secrets.to_vec(), hook);
            tally(&mut failures, c.name, what, got, want);
        };
        for ((offset, want), sig) in window.iter().zip(sigs) {
            let ts = NOW.checked_add_signed(*offset).unwrap();
            check(
                &format!("signed {offset:+} s"),
                (c.request)(ts, BODY, sig),
                &new_only,
                want.clone(),
            );
        }
        let good = &sigs[0];
        check(
            "tampered body",
            (c.request)(NOW, TAMPERED, good),
            &new_only,
            MISMATCH,
        );
        check(
            "wrong secret",
            (c.request)(NOW, BODY, good),
            &secrets(&["whsec_d3Jvbmc="]),
            MISMATCH,
        );
        let old = &sigs[window.len()];
        check(
            "previous secret during a rotation",
            (c.request)(NOW, BODY, old),
            &secrets(&[c.new, c.old]),
            Ok(()),
        );
        check(
            "previous secret after the rotation",
            (c.request)(NOW, BODY, old),
            &new_only,
            MISMATCH,
        );
        // An old signature replayed under a fresh timestamp: the timestamp is signed.
        let hour_old = &sigs[window.len() + 1];
        check(
            "old signature with a fresh timestamp",
            (c.request)(NOW, BODY, hour_old),
            &new_only,
            MISMATCH,
        );
    }
    assert_no_failures(failures);
}

#[test]
fn a_configured_tolerance_narrows_the_replay_window_of_every_timestamped_preset() {
    let cases = timed_cases();
    let mut jobs = Vec::new();
    for c in &cases {
        jobs.push((c.sign)(c.new, NOW - 59, BODY));
        jobs.push((c.sign)(c.new, NOW - 61, BODY));
    }
    let sigs = python_sign_all(jobs);
    let mut failures = Vec::new();
    for (c, sigs) in cases.iter().zip(sigs.chunks(2)) {
        let spec = VerifySpec {
            tolerance: Some(Duration::from_secs(60)),
            ..c.spec.clone()
        };
        let scheme = build(c.preset, &spec);
        let secrets = secrets(&[c.new]);
        let recent = (c.request)(NOW - 59, BODY, &sigs[0]);
        let late = (c.request)(NOW - 61, BODY, &sigs[1]);
        tally(
            &mut failures,
            c.name,
            "59 s old",
            scheme.check(&recent, &secrets, at(NOW)),
            Ok(()),
        );
        tally(
            &mut failures,
            c.name,
            "61 s old",
            scheme.check(&late, &secrets, at(NOW)),
            STALE,
        );
    }
    assert_no_failures(failures);
}

#[test]
fn timestamped_presets_name_the_header_that_is_missing_or_unreadable() {
    let new_only = secrets(&[NEW]);
    let ts = NOW.to_string();
    let mut failures = Vec::new();
    let mut check = |case: &str, preset: &str, spec: VerifySpec, headers: &[(&str, &str)], want| {
        let got = build(preset, &spec).check(&hook(headers, BODY), &new_only, at(NOW));
        tally(&mut failures, case, &format!("{headers:?}"), got, want);
    };
    let sig = "ab".repeat(32);
    let slack_sig = format!("v0={sig}");
    check(
        "slack",
        "slack",
        VerifySpec::default(),
        &[],
        missing("X-Slack-Signature"),
    );
    check(
        "slack",
        "slack",
        VerifySpec::default(),
        &[("X-Slack-Signature", &slack_sig)],
        missing("X-Slack-Request-Timestamp"),
    );
    check(
        "slack",
        "slack",
        VerifySpec::default(),
        &[
            ("X-Slack-Signature", &sig),
            ("X-Slack-Request-Timestamp", &ts),
        ],
        malformed("X-Slack-Signature"),
    );
    check(
        "stripe",
        "stripe",
        VerifySpec::default(),
        &[],
        missing("Stripe-Signature"),
    );
    check(
        "stripe",
        "stripe",
        VerifySpec::default(),
        &[("Stripe-Signature", &format!("v1={sig}"))],
        malformed("Stripe-Signature"),
    );
    check(
        "stripe",
        "stripe",
        VerifySpec::default(),
        &[("Stripe-Signature", &format!("t={ts},v0={sig}"))],
        malformed("Stripe-Signature"),
    );
    let grafana_ts = VerifySpec {
        timestamp_header: Some("X-Ts".into()),
        ..VerifySpec::default()
    };
    check(
        "grafana",
        "grafana",
        grafana_ts,
        &[("X-Grafana-Alerting-Signature", &sig)],
        missing("X-Ts"),
    );
    for preset in ["standard-webhooks", "svix", "gitlab"] {
        let sw = format!("v1,{}", b64([0u8; 32]));
        check(
            preset,
            preset,
            VerifySpec::default(),
            &[("webhook-signature", &sw)],
            missing("webhook-id"),
        );
        check(
            preset,
            preset,
            VerifySpec::default(),
            &[("webhook-signature", &sw), ("webhook-id", MSG_ID)],
            missing("webhook-timestamp"),
        );
    }
    for preset in ["standard-webhooks", "svix"] {
        check(
            preset,
            preset,
            VerifySpec::default(),
            &[],
            missing("webhook-signature"),
        );
        let sw = format!("v1,{}", b64([0u8; 32]));
        check(
            preset,
            preset,
            VerifySpec::default(),
            &[("svix-signature", &sw), ("svix-id", MSG_ID)],
            missing("svix-timestamp"),
        );
    }
    assert_no_failures(failures);
}

#[test]
fn standard_webhooks_takes_any_v1_entry_skips_other_versions_and_never_mixes_header_families() {
    let ts = NOW.to_string();
    let [good, old] = python_sign([
        whsec_job(WHSEC_NEW, MSG_ID, NOW, BODY),
        whsec_job(WHSEC_OLD, MSG_ID, NOW, BODY),
    ]);
    let new_only = secrets(&[WHSEC_NEW]);
    for preset in ["standard-webhooks", "svix"] {
        let scheme = build(preset, &VerifySpec::default());
        let with_signature = |value: &str| {
            hook(
                &[
                    ("webhook-id", MSG_ID),
                    ("webhook-timestamp", &ts),
                    ("webhook-signature", value),
                ],
                BODY,
            )
        };
        let check = |value: String| scheme.check(&with_signature(&value), &new_only, at(NOW));
        assert_eq!(check(format!("v1,{old} v1,{good}")), Ok(()), "{preset}");
        assert_eq!(
            check(format!("v1a,{old} v2,{old} v1,{good}")),
            Ok(()),
            "{preset}"
        );
        assert_eq!(check(format!("v1,{old}")), MISMATCH, "{preset}");
        // The right signature labelled with another version does not count.
        assert_eq!(
            check(format!("v1a,{good} v2,{good}")),
            malformed("webhook-signature")
        );
        assert_eq!(check(good.clone()), malformed("webhook-signature"));
        // A signature over another message id does not verify.
        let mut other_id = with_signature(&format!("v1,{good}"));
        other_id.headers.insert(
            actix_web::http::header::HeaderName::from_static("webhook-id"),
            actix_web::http::header::HeaderValue::from_static("msg_other"),
        );
        assert_eq!(
            scheme.check(&other_id, &new_only, at(NOW)),
            MISMATCH,
            "{preset}"
        );
        // The id and timestamp come from the same family as the signature.
        let mixed = hook(
            &[
                ("svix-id", MSG_ID),
                ("svix-timestamp", &ts),
                ("webhook-signature", &format!("v1,{good}")),
            ],
            BODY,
        );
        assert_eq!(
            scheme.check(&mixed, &new_only, at(NOW)),
            missing("webhook-id")
        );
    }
}

#[test]
fn a_svix_signature_header_without_a_v1_entry_is_reported_under_its_own_name() {
    // A Svix sender must be told about the header it sent, not the Standard Webhooks name.
    let ts = NOW.to_string();
    let sig = format!("v1a,{}", b64([0u8; 32]));
    let svix = hook(
        &[
            ("svix-id", MSG_ID),
            ("svix-timestamp", &ts),
            ("svix-signature", &sig),
        ],
        BODY,
    );
    for preset in ["svix", "standard-webhooks"] {
        let got =
            build(preset, &VerifySpec::default()).check(&svix, &secrets(&[WHSEC_NEW]), at(NOW));
        assert_eq!(got, malformed("svix-signature"), "{preset}");
    }
}

#[test]
fn stripe_keys_with_the_whole_whsec_text_and_accepts_any_of_several_v1_entries() {
    // The text after `whsec_` is base64 of "stripe-secret-key": a verifier that decoded it (as
    // Standard Webhooks does) would key with those bytes instead.
    let key = "whsec_c3RyaXBlLXNlY3JldC1rZXk=";
    let message = concat(&[format!("{NOW}.").as_bytes(), BODY]);
    let [good, wrong, decoded] = python_sign([
        hex_job("sha256", key, &message),
        hex_job("sha256", "whsec_other", &message),
        hex_job("sha256", "stripe-secret-key", &message),
    ]);
    let scheme = build("stripe", &VerifySpec::default());
    let secrets = secrets(&[key]);
    let check = |value: String| {
        scheme.check(
            &hook(&[("Stripe-Signature", &value)], BODY),
            &secrets,
            at(NOW),
        )
    };
    assert_eq!(check(format!("t={NOW},v1={wrong},v1={good}")), Ok(()));
    assert_eq!(check(format!("t={NOW}, v0={wrong}, v1={good}")), Ok(()));
    assert_eq!(check(format!("v1={good},t={NOW}")), Ok(()));
    assert_eq!(check(format!("t={NOW},v1={wrong}")), MISMATCH);
    assert_eq!(check(format!("t={NOW},v1={decoded}")), MISMATCH);
    assert_eq!(
        check(format!("t={NOW},v0={good}")),
        malformed("Stripe-Signature")
    );
}

// ---------------------------------------------------------------------------------------------
// Presets with a shared token (no body signature)
// ---------------------------------------------------------------------------------------------

/// A token preset and how a request presents a token to it.
struct TokenCase {
    name: &'static str,
    preset: &'static str,
    spec: VerifySpec,
    present: fn(&str) -> Webhook,
    missing: &'static str,
}

fn with_header(name: &'static str) -> fn(&str) -> Webhook {
    match name {
        "X-Gitlab-Token" => |t| hook(&[("X-Gitlab-Token", t)], BODY),
        "X-Webhook-Token" => |t| hook(&[("X-Webhook-Token", t)], BODY),
        "X-Jenkins-Token" => |t| hook(&[("X-Jenkins-Token", t)], BODY),
        _ => unreachable!("add the header here"),
    }
}

fn bearer(token: &str) -> Webhook {
    hook(&[("Authorization", &format!("Bearer {token}"))], BODY)
}

fn basic(credentials: &str) -> Webhook {
    hook(
        &[("Authorization", &format!("Basic {}", b64(credentials)))],
        BODY,
    )
}

fn query(token: &str) -> Webhook {
    let mut h = hook(&[], BODY);
    h.query = serde_urlencoded::to_string([("job", "deploy"), ("token", token)]).unwrap();
    h
}

fn case(
    name: &'static str,
    preset: &'static str,
    present: fn(&str) -> Webhook,
    missing: &'static str,
) -> TokenCase {
    TokenCase {
        name,
        preset,
        spec: VerifySpec::default(),
        present,
        missing,
    }
}

fn token_cases() -> Vec<TokenCase> {
    let jenkins_header = VerifySpec {
        header: Some("X-Jenkins-Token".into()),
        ..VerifySpec::default()
    };
    vec![
        case(
            "gitlab token",
            "gitlab",
            with_header("X-Gitlab-Token"),
            "X-Gitlab-Token",
        ),
        case(
            "jenkins header",
            "jenkins",
            with_header("X-Webhook-Token"),
            "X-Webhook-Token",
        ),
        case("jenkins ?token=", "jenkins", query, "X-Webhook-Token"),
        case("jenkins bearer", "jenkins", bearer, "X-Webhook-Token"),
        case("jenkins basic", "jenkins", basic, "X-Webhook-Token"),
        TokenCase {
            spec: jenkins_header.clone(),
            ..case(
                "jenkins own header",
                "jenkins",
                with_header("X-Jenkins-Token"),
                "X-Jenkins-Token",
            )
        },
        TokenCase {
            spec: jenkins_header,
            ..case(
                "token own header, via query",
                "token",
                query,
                "X-Jenkins-Token",
            )
        },
        case(
            "token header",
            "token",
            with_header("X-Webhook-Token"),
            "X-Webhook-Token",
        ),
        case("token bearer", "token", bearer, "X-Webhook-Token"),
        case(
            "alertmanager bearer",
            "alertmanager",
            bearer,
            "Authorization",
        ),
        case("alertmanager basic", "alertmanager", basic, "Authorization"),
        case("azure-devops basic", "azure-devops", basic, "Authorization"),
        case(
            "azure-devops bearer",
            "azure-devops",
            bearer,
            "Authorization",
        ),
    ]
}

#[test]
fn token_presets_accept_the_configured_token_and_nothing_near_it() {
    let mut failures = Vec::new();
    for c in token_cases() {
        let scheme = build(c.preset, &c.spec);
        let new_only = secrets(&[NEW]);
        let check = |hook: Webhook, secrets: &[Secret]| scheme.check(&hook, secrets, at(NOW));
        let outcomes = [
            ("the token", check((c.present)(NEW), &new_only), Ok(())),
            (
                "previous token during a rotation",
                via_verifier(&scheme, secrets(&[NEW, OLD]), (c.present)(OLD)),
                Ok(()),
            ),
            (
                "previous token after the rotation",
                via_verifier(&scheme, new_only.clone(), (c.present)(OLD)),
                MISMATCH,
            ),
            (
                "wrong token",
                check((c.present)("svc:guess"), &new_only),
                MISMATCH,
            ),
            (
                "a prefix of the token",
                check((c.present)(&NEW[..NEW.len() - 1]), &new_only),
                MISMATCH,
            ),
            (
                "the token and more",
                check((c.present)(&format!("{NEW}x")), &new_only),
                MISMATCH,
            ),
            (
                "no secret configured",
                check((c.present)(NEW), &[]),
                MISMATCH,
            ),
            (
                "nothing presented",
                check(hook(&[], BODY), &new_only),
                missing(c.missing),
            ),
        ];
        for (what, got, want) in outcomes {
            tally(&mut failures, c.name, what, got, want);
        }
    }
    assert_no_failures(failures);
}

#[test]
fn an_authorization_header_with_another_scheme_or_bad_base64_is_malformed() {
    let new_only = secrets(&[NEW]);
    for preset in ["alertmanager", "azure-devops", "jenkins", "token"] {
        let scheme = build(preset, &VerifySpec::default());
        for value in [
            format!("Token {NEW}"),
            format!("Bearer{NEW}"),
            "Basic !!!not-base64!!!".to_string(),
        ] {
            let got = scheme.check(
                &hook(&[("Authorization", &value)], BODY),
                &new_only,
                at(NOW),
            );
            assert_eq!(got, malformed("Authorization"), "{preset}: {value}");
        }
        // The scheme name is case-insensitive, as HTTP says.
        let lower = hook(&[("Authorization", &format!("bearer {NEW}"))], BODY);
        assert_eq!(scheme.check(&lower, &new_only, at(NOW)), Ok(()), "{preset}");
    }
}

#[test]
fn presets_that_fix_their_algorithm_refuse_generic_fields_and_hmac_needs_its_header() {
    let with_algorithm = VerifySpec {
        algorithm: Some(Algorithm::Sha1),
        ..VerifySpec::default()
    };
    for preset in PRESETS.iter().filter(|p| p.name != "hmac") {
        assert!(
            (preset.build)(&with_algorithm).is_err(),
            "{} takes `algorithm: sha1`",
            preset.name
        );
    }
    assert!((presets::find("hmac").unwrap().build)(&VerifySpec::default()).is_err());
    let needs_ts = VerifySpec {
        header: Some("X-Sig".into()),
        signed: Some("{timestamp}.{body}".into()),
        ..VerifySpec::default()
    };
    assert!((presets::find("hmac").unwrap().build)(&needs_ts).is_err());
}

// ---------------------------------------------------------------------------------------------
// Through HTTP: the answers a sender sees
// ---------------------------------------------------------------------------------------------

async fn one_source(source: &str, verify_yaml: &str, secret: &str) -> crate::helpers::TestApp {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join(format!("{source}.secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let yaml = format!(
        "verify:\n{verify_yaml}  secrets: [{{file: {}}}]\n{ACCEPT_ALL}",
        secret_file.display()
    );
    spawn_app(Options {
        mappings: vec![(source.into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await
}

async fn error_of(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let json: serde_json::Value = res.json().await.unwrap_or_default();
    (
        status,
        json["error"].as_str().unwrap_or_default().to_string(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[actix_rt::test]
async fn a_stale_stripe_event_is_a_401_saying_so_and_nothing_is_stored() {
    let key = "whsec_stripeHttpSecret";
    let app = one_source("stripe", "  preset: stripe\n", key).await;
    let now = unix_now();
    let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    let sign = |ts: u64| hex_job("sha256", key, &concat(&[format!("{ts}.").as_bytes(), body]));
    let [fresh, stale] = python_sign([sign(now), sign(now - 600)]);
    let res = app
        .post_hook(
            "stripe",
            &body[..],
            &[("Stripe-Signature", format!("t={},v1={stale}", now - 600))],
        )
        .await;
    assert_eq!(
        error_of(res).await,
        (401, "timestamp outside the replay window".into())
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events"), 0);
    let res = app
        .post_hook(
            "stripe",
            &body[..],
            &[("Stripe-Signature", format!("t={now},v1={fresh}"))],
        )
        .await;
    assert_eq!(res.status(), 202);
}

#[actix_rt::test]
async fn a_slack_signature_without_its_v0_prefix_is_a_401_naming_the_header() {
    let app = one_source("slack", "  preset: slack\n", SLACK_SECRET).await;
    let ts = unix_now().to_string();
    let body = br#"{"event_id":"Ev1","type":"event_callback"}"#;
    let [sig] = python_sign([hex_job(
        "sha256",
        SLACK_SECRET,
        &concat(&[format!("v0:{ts}:").as_bytes(), body]),
    )]);
    let headers = |sig: String| {
        vec![
            ("X-Slack-Signature", sig),
            ("X-Slack-Request-Timestamp", ts.clone()),
        ]
    };
    let res = app
        .post_hook("slack", &body[..], &headers(sig.clone()))
        .await;
    assert_eq!(
        error_of(res).await,
        (401, "malformed X-Slack-Signature header".into())
    );
    let res = app
        .post_hook("slack", &body[..], &headers(format!("v0={sig}")))
        .await;
    assert_eq!(res.status(), 202);
}

#[actix_rt::test]
async fn a_jenkins_token_in_the_query_string_is_accepted_and_a_wrong_one_is_a_401() {
    let app = one_source("jenkins", "  preset: jenkins\n", "jenkins-query-token").await;
    let post = |query: &'static str| {
        app.client
            .post(format!("{}/hooks/jenkins?{query}", app.address))
            .header("content-type", "application/json")
            .body(r#"{"id":"build-7"}"#)
            .send()
    };
    let res = post("job=x&token=jenkins-query-token").await.unwrap();
    assert_eq!(res.status(), 202);
    let res = post("token=jenkins-query-toke").await.unwrap();
    assert_eq!(
        error_of(res).await,
        (401, "signature does not match".into())
    );
    let res = post("job=x").await.unwrap();
    assert_eq!(
        error_of(res).await,
        (401, "missing X-Webhook-Token header".into())
    );
}

#[actix_rt::test]
async fn a_gitea_form_post_is_verified_over_its_decoded_payload() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = mapping_with_secret_file(dir.path(), "gitea", "gitea", NEW, ACCEPT_ALL);
    let app = spawn_app(Options {
        mappings: vec![("gitea".into(), yaml)],
        tweak: None,
        dir: Some(dir),
    })
    .await;
    let json = r#"{"action":"opened","id":"5"}"#;
    let form = serde_urlencoded::to_string([("payload", json)]).unwrap();
    let [sig] = python_sign([hex_job("sha256", NEW, json.as_bytes())]);
    let form_headers = |sig: &str| {
        vec![
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("X-Gitea-Signature", sig.to_string()),
            ("X-Gitea-Event", "issues".to_string()),
        ]
    };
    let res = app
        .post_hook("gitea", form.clone(), &form_headers(&sig))
        .await;
    assert_eq!(res.status(), 202);
    let res = app
        .post_hook("gitea", form, &form_headers(&"0".repeat(64)))
        .await;
    assert_eq!(
        error_of(res).await,
        (401, "signature does not match".into())
    );
}

#[actix_rt::test]
async fn a_github_source_without_legacy_sha1_answers_a_sha1_only_request_with_the_header_it_wants()
{
    let app = one_source("github", "  preset: github\n", NEW).await;
    let body = br#"{"action":"opened"}"#;
    let [sha1] = python_sign([hex_job("sha1", NEW, body)]);
    let res = app
        .post_hook(
            "github",
            &body[..],
            &[("X-Hub-Signature", format!("sha1={sha1}"))],
        )
        .await;
    assert_eq!(
        error_of(res).await,
        (401, "missing X-Hub-Signature-256 header".into())
    );
    let legacy = one_source("github", "  preset: github\n  legacy_sha1: true\n", NEW).await;
    let res = legacy
        .post_hook(
            "github",
            &body[..],
            &[("X-Hub-Signature", format!("sha1={sha1}"))],
        )
        .await;
    assert_eq!(res.status(), 202);
}
