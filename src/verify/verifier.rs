//! A source's verification as loaded: its scheme and its keys, prepared once. [`Verifier::verify`]
//! is the one door from a received [`Webhook`] to [`Verified`], and it narrates each
//! verification at debug level so that an admin whose webhook gets 401 can read why: which source
//! and preset, which header (its name), how many secrets were tried, and the outcome. It never
//! logs a secret, a signature or a token.

use std::sync::Arc;

use super::keys::{Keys, Unusable};
use super::secrets::Secret;
use super::{Scheme, Trace, Verified, VerifyError, Webhook};

/// A source's verification, compiled from its mapping file: the scheme plus the keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The source's name, for the narration.
    source: String,
    /// The preset the mapping file names, for the narration.
    preset: &'static str,
    /// `None` when the mapping file declares the source unsigned.
    scheme: Option<Arc<dyn Scheme>>,
    /// The secrets in the form the scheme uses.
    keys: Keys,
    /// The secrets the scheme cannot use, kept to say why and to keep them out of stored headers.
    unusable: Vec<Unusable>,
}

/// Whether a source can take requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Secrets are configured (or the mapping says the source is unsigned).
    Active,
    /// No usable secret is set: every request is refused with this reason.
    Inactive(String),
}

impl Verifier {
    /// A verifier with a scheme and the secrets found for it, prepared here, once: the ones
    /// the scheme cannot use are set aside ([`Verifier::unusable_secrets`]), never used in
    /// another form.
    pub fn new(scheme: Arc<dyn Scheme>, secrets: Vec<Secret>) -> Self {
        let (keys, unusable) = Keys::prepare(secrets, scheme.key_kind());
        Verifier {
            source: "-".into(),
            preset: "-",
            scheme: Some(scheme),
            keys,
            unusable,
        }
    }

    /// A source the mapping file explicitly declares unsigned.
    pub fn unsigned() -> Self {
        Verifier {
            source: "-".into(),
            preset: "unsigned",
            scheme: None,
            keys: Keys::default(),
            unusable: Vec::new(),
        }
    }

    /// Names the source and its preset in the debug narration.
    pub fn named(mut self, source: &str, preset: &'static str) -> Self {
        self.source = source.to_string();
        self.preset = preset;
        self
    }

    /// True when the mapping file declared the source unsigned.
    pub fn is_unsigned(&self) -> bool {
        self.scheme.is_none()
    }

    /// The configured secrets the scheme cannot use, with the reason (for load-time warnings
    /// that name each one's origin, never its value).
    pub fn unusable_secrets(&self) -> &[Unusable] {
        &self.unusable
    }

    /// Active, or inactive for want of a usable secret. The reason is answered to senders, so it
    /// says what is wrong without naming where secrets are kept.
    pub fn readiness(&self, source: &str) -> Readiness {
        if self.scheme.is_none() || !self.keys.is_empty() {
            Readiness::Active
        } else if self.unusable.is_empty() {
            Readiness::Inactive(format!("source {source} has no secret configured"))
        } else {
            let which = match self.unusable.len() {
                1 => "its secret is not one".to_string(),
                n => format!("none of its {n} secrets is one"),
            };
            Readiness::Inactive(format!(
                "source {source} has no usable secret: its preset needs {}, and {which}",
                self.unusable[0].problem.needed(),
            ))
        }
    }

    /// True when a header must not be stored with an event: it carries this source's
    /// signature or token (by the scheme's own header names), or its value contains one of the
    /// source's secrets (a proxy's `X-Original-URI` with `?token=…`, say).
    pub fn is_credential(&self, name: &str, value: &[u8]) -> bool {
        let named = self.scheme.as_ref().is_some_and(|s| {
            s.credential_headers()
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
        });
        let mut secrets = self
            .keys
            .secrets()
            .chain(self.unusable.iter().map(|u| &u.secret));
        named || secrets.any(|s| s.appears_in(value))
    }

    /// The one door to [`Verified`] for a request.
    ///
    /// # Errors
    /// See [`VerifyError`]; a source without a usable secret refuses everything.
    pub fn verify(&self, webhook: Webhook) -> Result<Verified<Webhook>, VerifyError> {
        let Some(scheme) = &self.scheme else {
            tracing::debug!(
                source = %self.source,
                outcome = "unsigned",
                "webhook accepted without verification: the source is declared unsigned"
            );
            return Ok(Verified(webhook));
        };
        let mut trace = Trace::default();
        let result = if self.keys.is_empty() {
            Err(VerifyError::Mismatch)
        } else {
            scheme.check_keys(&webhook, &self.keys, webhook.received_at, &mut trace)
        };
        self.narrate(&trace, &result);
        result.map(|()| Verified(webhook))
    }

    fn narrate(&self, trace: &Trace<'_>, result: &Result<(), VerifyError>) {
        let (outcome, why) = match result {
            Ok(()) => ("ok", "webhook verified"),
            Err(_) if self.keys.is_empty() => (
                "no_usable_secret",
                "webhook refused: the source has no usable secret",
            ),
            Err(VerifyError::MissingHeader(_)) => (
                "missing_header",
                "webhook refused: a header the scheme needs is missing",
            ),
            Err(VerifyError::Malformed(_)) => (
                "malformed",
                "webhook refused: a header cannot be read as the scheme writes it",
            ),
            Err(VerifyError::Mismatch) => (
                "no_secret_matched",
                "webhook refused: no configured secret matches the signature or token",
            ),
            Err(VerifyError::Stale) => (
                "stale",
                "webhook refused: the signed timestamp is outside the replay window",
            ),
        };
        tracing::debug!(
            source = %self.source,
            preset = self.preset,
            header = trace.header.unwrap_or("-"),
            secrets_tried = trace.secrets_tried,
            skew_secs = trace.skew_secs,
            outcome,
            "{why}"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
    use base64::Engine as _;

    use super::*;
    use crate::verify::crypto::mac;
    use crate::verify::keys::Problem;
    use crate::verify::presets;
    use crate::verify::spec::{Algorithm, VerifySpec};
    use crate::verify::{ContentKind, Readiness};

    const NOW: u64 = 1_700_000_000;
    const GOOD: &str = "whsec_bmV3LXN0YW5kYXJkLXdlYmhvb2tzLWtleQ==";
    /// `whsec_` then text that is not base64: once used as raw bytes, now never a key.
    const MALFORMED: &str = "whsec_not-base64!";

    fn hook(headers: &[(&str, &str)], body: &[u8]) -> Webhook {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Webhook {
            headers: map,
            body: bytes::Bytes::copy_from_slice(body),
            content: ContentKind::Json,
            query: String::new(),
            received_at: UNIX_EPOCH + Duration::from_secs(NOW),
        }
    }

    fn verifier(preset: &'static str, secrets: &[(&str, &str)]) -> Verifier {
        let scheme = (presets::find(preset).unwrap().build)(&VerifySpec::default()).unwrap();
        let secrets = secrets.iter().map(|(v, o)| Secret::new(*v, *o)).collect();
        Verifier::new(scheme, secrets).named("billing", preset)
    }

    /// A Standard Webhooks request signed with `key` (HMAC key bytes) at `ts`.
    fn standard_request(key: &[u8], ts: u64) -> Webhook {
        let body = br#"{"type":"invoice.paid"}"#;
        let ts = ts.to_string();
        let sig = mac(
            Algorithm::Sha256,
            key,
            &[b"msg_1.", ts.as_bytes(), b".", body],
        );
        let sig = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(sig)
        );
        hook(
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sig),
            ],
            body,
        )
    }

    #[test]
    fn a_malformed_whsec_secret_is_set_aside_with_its_origin_and_a_valid_one_is_used() {
        let v = verifier(
            "standard-webhooks",
            &[
                (MALFORMED, "$FXHOOK_SECRET_BILLING"),
                (GOOD, "file /run/good"),
            ],
        );
        let unusable = v.unusable_secrets();
        assert_eq!(unusable.len(), 1);
        assert_eq!(unusable[0].secret.origin(), "$FXHOOK_SECRET_BILLING");
        assert_eq!(unusable[0].problem, Problem::NotWhsec);
        assert_eq!(v.readiness("billing"), Readiness::Active);
        let good_key = crate::verify::crypto::decode_whsec(GOOD).unwrap();
        assert!(v.verify(standard_request(&good_key, NOW)).is_ok());
        // The old fallback keyed the HMAC with the malformed text's raw bytes: no longer.
        let raw = MALFORMED.strip_prefix("whsec_").unwrap().as_bytes();
        assert_eq!(
            v.verify(standard_request(raw, NOW)).map(|_| ()),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn a_source_whose_only_secret_is_malformed_is_inactive_and_says_why() {
        for preset in ["standard-webhooks", "svix"] {
            let v = verifier(preset, &[(MALFORMED, "$FXHOOK_SECRET_BILLING")]);
            let Readiness::Inactive(reason) = v.readiness("billing") else {
                panic!("{preset}: active with no usable secret");
            };
            assert!(reason.contains("no usable secret"), "{reason}");
            assert!(reason.contains("Standard Webhooks key"), "{reason}");
            assert!(!reason.contains("not-base64"), "{reason}");
            let raw = MALFORMED.strip_prefix("whsec_").unwrap().as_bytes();
            assert_eq!(
                v.verify(standard_request(raw, NOW)).map(|_| ()),
                Err(VerifyError::Mismatch)
            );
        }
    }

    #[test]
    fn a_gitlab_token_stays_a_token_and_a_malformed_signing_token_is_set_aside() {
        let v = verifier(
            "gitlab",
            &[("gl-token", "$A"), ("whsec_%%", "$B"), (GOOD, "$C")],
        );
        assert_eq!(v.unusable_secrets().len(), 1);
        assert_eq!(v.unusable_secrets()[0].secret.origin(), "$B");
        let token = hook(&[("X-Gitlab-Token", "gl-token")], b"{}");
        assert!(v.verify(token).is_ok());
        let good_key = crate::verify::crypto::decode_whsec(GOOD).unwrap();
        assert!(v.verify(standard_request(&good_key, NOW)).is_ok());
    }

    /// A writer into a shared buffer, for a scoped test subscriber.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The debug lines `f` logs.
    fn debug_log(f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_debug_narration_of_a_401_names_the_header_and_the_count_of_secrets_but_no_value() {
        let (new, old) = ("gh-secret-new", "gh-secret-old");
        let v = verifier("github", &[(new, "$NEW"), (old, "$OLD")]);
        let forged = hex::encode(mac(Algorithm::Sha256, b"guess", &[b"{}"]));
        let header = format!("sha256={forged}");
        let log = debug_log(|| {
            let refused = v.verify(hook(&[("X-Hub-Signature-256", &header)], b"{}"));
            assert_eq!(refused.map(|_| ()), Err(VerifyError::Mismatch));
        });
        for wanted in [
            "source=billing",
            "preset=\"github\"",
            "header=\"X-Hub-Signature-256\"",
            "secrets_tried=2",
            "outcome=\"no_secret_matched\"",
        ] {
            assert!(log.contains(wanted), "{wanted} missing from {log}");
        }
        for secret in [new, old, forged.as_str()] {
            assert!(!log.contains(secret), "{secret} leaked into {log}");
        }
    }

    #[test]
    fn the_debug_narration_of_a_stale_request_gives_the_skew_in_seconds() {
        let v = verifier("standard-webhooks", &[(GOOD, "$GOOD")]);
        let key = crate::verify::crypto::decode_whsec(GOOD).unwrap();
        let log = debug_log(|| {
            let stale = v.verify(standard_request(&key, NOW - 600));
            assert_eq!(stale.map(|_| ()), Err(VerifyError::Stale));
            let missing = v.verify(hook(&[], b"{}"));
            assert!(matches!(missing, Err(VerifyError::MissingHeader(_))));
        });
        for wanted in [
            "header=\"webhook-timestamp\"",
            "secrets_tried=1",
            "skew_secs=600",
            "outcome=\"stale\"",
            "header=\"webhook-signature\"",
            "outcome=\"missing_header\"",
        ] {
            assert!(log.contains(wanted), "{wanted} missing from {log}");
        }
        assert!(!log.contains(GOOD) && !log.contains("v1,"), "{log}");
    }

    #[test]
    fn an_unsigned_source_is_narrated_as_accepted_unverified() {
        let v = Verifier::unsigned().named("open", "unsigned");
        let log = debug_log(|| assert!(v.verify(hook(&[], b"{}")).is_ok()));
        assert!(
            log.contains("source=open") && log.contains("unsigned"),
            "{log}"
        );
    }
}
