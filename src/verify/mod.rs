//! Verify: the second step of the pipeline. A [`Webhook`] as received is checked against its
//! source's scheme over the raw bytes, before anything parses it; only this module can produce a
//! [`Verified`] value, so an unverified body cannot reach the mapping.
//!
//! Layout, leaves first (no two files import each other):
//! - [`spec`]: what a mapping file writes under `verify:`; [`secrets`]: where secrets come from.
//! - [`crypto`]: HMACs, constant-time comparison, timestamps, `whsec_` decoding; bytes only.
//! - [`keys`]: a source's secrets prepared once, at load, in the form its scheme uses.
//! - the schemes: [`hmac`] (the generic HMAC most presets are made of), [`standard_webhooks`],
//!   [`token`] (shared tokens, `Authorization`), [`special`] (Stripe, a token anywhere, a
//!   choice among headers); [`presets`] is the table of named presets built from them.
//! - [`Verifier`]: a source's scheme and keys, the one door to [`Verified`] for requests, and
//!   the debug narration of each verification.
//! - `offline`: the two doors for payloads whose trust was settled elsewhere (crate only).

pub mod crypto;
pub mod hmac;
pub mod keys;
pub(crate) mod offline;
pub mod presets;
pub mod secrets;
pub mod spec;
pub mod special;
pub mod standard_webhooks;
pub mod token;
mod verifier;

use std::fmt;
use std::time::{Duration, SystemTime};

use actix_web::http::header::HeaderMap;
use bytes::Bytes;

use crypto::Tried;
use keys::{KeyKind, Keys};
pub use secrets::{Secret, SecretRef};
pub use token::bearer_matches;
pub use verifier::{Readiness, Verifier};

/// How the body arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// `application/json` (or `+json`): the body is the payload.
    Json,
    /// `application/x-www-form-urlencoded`: the payload is the `payload` field.
    Form,
}

/// A request as received, not yet trusted.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The request headers.
    pub headers: HeaderMap,
    /// The raw body bytes, exactly as received.
    pub body: Bytes,
    /// How the body is encoded.
    pub content: ContentKind,
    /// The raw query string of the URL (some senders put a token there).
    pub query: String,
    /// When it arrived.
    pub received_at: SystemTime,
}

impl Webhook {
    /// The value of a header as text, when present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON payload's bytes: the body itself, or the decoded `payload=` form field.
    ///
    /// # Errors
    /// A form body without a `payload` field.
    pub fn payload_bytes(&self) -> Result<Bytes, PayloadError> {
        match self.content {
            ContentKind::Json => Ok(self.body.clone()),
            ContentKind::Form => serde_urlencoded::from_bytes::<Vec<(String, String)>>(&self.body)
                .map_err(|_| PayloadError::Malformed("form body is not URL-encoded".into()))?
                .into_iter()
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| Bytes::from(v))
                .ok_or_else(|| PayloadError::Malformed("form body has no payload field".into())),
        }
    }
}

/// A value that went through verification. Only this module constructs it: [`Verifier::verify`]
/// for requests, and the crate's `offline` doors for payloads trusted for a stated reason.
#[derive(Debug, Clone)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    /// The verified value.
    pub fn inner(&self) -> &T {
        &self.0
    }
}

/// A verified webhook with its payload parsed.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The request it came from.
    pub webhook: Webhook,
    /// The JSON payload: on the request path only the parts its source's paths can read
    /// (the rest is checked, not built); elsewhere the whole of it.
    pub json: serde_json::Value,
    /// Its canonical bytes as stored (the body, or the decoded form field).
    pub bytes: Bytes,
}

impl Verified<Webhook> {
    /// Parses the verified payload.
    ///
    /// # Errors
    /// A body that is not JSON (or a form without a JSON `payload`).
    pub fn parse(self) -> Result<Verified<Payload>, PayloadError> {
        self.parse_with(|bytes| serde_json::from_slice(bytes))
    }

    /// Parses the verified payload with `parse`, which builds the parts of it that will be
    /// read (a source's footprint: receive's one parse of a request).
    ///
    /// # Errors
    /// A body that is not JSON (or a form without a JSON `payload`).
    pub fn parse_with(
        self,
        parse: impl FnOnce(&[u8]) -> serde_json::Result<serde_json::Value>,
    ) -> Result<Verified<Payload>, PayloadError> {
        let bytes = self.0.payload_bytes()?;
        let json = parse(&bytes)
            .map_err(|e| PayloadError::Malformed(format!("body is not valid JSON: {e}")))?;
        Ok(Verified(Payload {
            webhook: self.0,
            json,
            bytes,
        }))
    }
}

/// Why a verified body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not a form with a `payload` field.
    #[error("{0}")]
    Malformed(String),
}

/// Why a request was refused. The text is safe to send back: it never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header carrying the signature or token is absent.
    #[error("missing {0} header")]
    MissingHeader(String),
    /// The header is there but cannot be read (wrong prefix, not hex, …).
    #[error("malformed {0} header")]
    Malformed(String),
    /// No configured secret produces this signature or token.
    #[error("signature does not match")]
    Mismatch,
    /// The signed timestamp is outside the replay window.
    #[error("timestamp outside the replay window")]
    Stale,
}

/// One verification algorithm, fixed by the mapping file (never chosen by the request).
pub trait Scheme: Send + Sync + fmt::Debug {
    /// What the scheme makes of each secret; a [`Verifier`] prepares them so, once, at load.
    fn key_kind(&self) -> KeyKind {
        KeyKind::Text
    }

    /// Checks `webhook` against the source's prepared keys, noting in `trace` what it looked
    /// at (header names and counts, never a value).
    ///
    /// # Errors
    /// See [`VerifyError`].
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError>;

    /// The headers that carry this scheme's signature or token (lower-case names). They are
    /// never stored with an event, whatever they are called.
    fn credential_headers(&self) -> Vec<String>;

    /// Checks `webhook` against plain secrets, for tests and tools: the secrets are prepared on
    /// every call and those the scheme cannot use are left out. Sources go through a
    /// [`Verifier`], which prepares them once and reports the unusable ones.
    ///
    /// # Errors
    /// See [`VerifyError`].
    fn check(
        &self,
        webhook: &Webhook,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let (keys, _) = Keys::prepare(secrets.iter().cloned(), self.key_kind());
        self.check_keys(webhook, &keys, now, &mut Trace::default())
    }
}

/// What a scheme looked at while checking one request, for the debug narration: names and
/// counts only, so it can be logged whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace<'a> {
    /// The header the outcome is about (the signature's, or the one found missing).
    pub header: Option<&'a str>,
    /// How many of the source's secrets were compared.
    pub secrets_tried: usize,
    /// Seconds between the signed timestamp and the clock, when the scheme read one.
    pub skew_secs: Option<u64>,
}

impl<'a> Trace<'a> {
    /// Notes the header being read.
    pub fn at(&mut self, header: &'a str) {
        self.header = Some(header);
    }

    /// Notes how many secrets were tried.
    ///
    /// # Errors
    /// [`VerifyError::Mismatch`] when none matched.
    pub fn matched(&mut self, tried: Tried) -> Result<(), VerifyError> {
        self.secrets_tried = tried.count;
        tried.matched.then_some(()).ok_or(VerifyError::Mismatch)
    }

    /// Reads the unix-seconds timestamp `text` of header `header` against `now`, noting the skew.
    ///
    /// # Errors
    /// Not a number, or outside the tolerance.
    pub fn timestamp(
        &mut self,
        text: &str,
        header: &'a str,
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), VerifyError> {
        self.at(header);
        let skew = crypto::skew_secs(text, now)
            .ok_or_else(|| VerifyError::Malformed(header.to_string()))?;
        self.skew_secs = Some(skew);
        if skew > tolerance.as_secs() {
            return Err(VerifyError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::crypto::DEFAULT_TOLERANCE;
    use super::*;

    fn check_timestamp(
        text: &str,
        now: SystemTime,
        tolerance: Duration,
        header: &str,
    ) -> Result<(), VerifyError> {
        Trace::default().timestamp(text, header, now, tolerance)
    }

    #[test]
    fn a_timestamp_outside_the_window_is_stale() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(check_timestamp("1000000", now, DEFAULT_TOLERANCE, "t").is_ok());
        assert!(check_timestamp("999701", now, DEFAULT_TOLERANCE, "t").is_ok());
        assert_eq!(
            check_timestamp("999000", now, DEFAULT_TOLERANCE, "t"),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check_timestamp("1000400", now, DEFAULT_TOLERANCE, "t"),
            Err(VerifyError::Stale)
        );
        assert!(matches!(
            check_timestamp("soon", now, DEFAULT_TOLERANCE, "t"),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn the_trace_keeps_the_header_the_skew_and_the_count_of_secrets_tried() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut trace = Trace::default();
        let tried = Tried {
            count: 2,
            matched: true,
        };
        assert_eq!(trace.matched(tried), Ok(()));
        assert_eq!(
            trace.timestamp("999000", "X-Ts", now, DEFAULT_TOLERANCE),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            trace,
            Trace {
                header: Some("X-Ts"),
                secrets_tried: 2,
                skew_secs: Some(1000),
            }
        );
    }
}
