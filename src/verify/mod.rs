//! Verify: the second step of the pipeline. A [`Webhook`] as received is checked against its
//! source's scheme over the raw bytes, before anything parses it; only this module can produce a
//! [`Verified`] value, so an unverified body cannot reach the mapping.
//!
//! Layout: [`spec`] is what a mapping file writes under `verify:`; [`presets`] is the table of
//! named presets, each a few lines; [`hmac`] is the generic HMAC scheme most presets are made of;
//! [`standard_webhooks`] and [`token`] are the schemes that are not a plain HMAC.

pub mod hmac;
pub mod presets;
pub mod secrets;
pub mod spec;
pub mod special;
pub mod standard_webhooks;
pub mod token;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::header::HeaderMap;
use bytes::Bytes;

pub use secrets::{Secret, SecretRef};

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

/// A value that went through verification. Only this module constructs it.
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
    /// The JSON payload.
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
        let bytes = self.0.payload_bytes()?;
        let json = serde_json::from_slice(&bytes)
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
    /// Checks `webhook` against the source's secrets.
    ///
    /// # Errors
    /// See [`VerifyError`].
    fn check(
        &self,
        webhook: &Webhook,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Result<(), VerifyError>;

    /// The headers that carry this scheme's signature or token (lower-case names). They are
    /// never stored with an event, whatever they are called.
    fn credential_headers(&self) -> Vec<String>;
}

/// A source's verification, compiled from its mapping file: the scheme plus the secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Option<Arc<dyn Scheme>>,
    secrets: Vec<Secret>,
}

/// Whether a source can take requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Secrets are configured (or the mapping says the source is unsigned).
    Active,
    /// No secret is set: every request is refused with this reason.
    Inactive(String),
}

impl Verifier {
    /// A verifier with a scheme and the secrets found for it.
    pub fn new(scheme: Arc<dyn Scheme>, secrets: Vec<Secret>) -> Self {
        Verifier {
            scheme: Some(scheme),
            secrets,
        }
    }

    /// A source the mapping file explicitly declares unsigned.
    pub fn unsigned() -> Self {
        Verifier {
            scheme: None,
            secrets: Vec::new(),
        }
    }

    /// True when the mapping file declared the source unsigned.
    pub fn is_unsigned(&self) -> bool {
        self.scheme.is_none()
    }

    /// Active, or inactive for want of a secret.
    pub fn readiness(&self, source: &str) -> Readiness {
        if self.scheme.is_some() && self.secrets.is_empty() {
            Readiness::Inactive(format!("source {source} has no secret configured"))
        } else {
            Readiness::Active
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
        named || self.secrets.iter().any(|s| s.appears_in(value))
    }

    /// The one door to [`Verified`].
    ///
    /// # Errors
    /// See [`VerifyError`]; a source without secrets refuses everything.
    pub fn verify(&self, webhook: Webhook) -> Result<Verified<Webhook>, VerifyError> {
        match &self.scheme {
            None => Ok(Verified(webhook)),
            Some(_) if self.secrets.is_empty() => Err(VerifyError::Mismatch),
            Some(scheme) => {
                scheme.check(&webhook, &self.secrets, webhook.received_at)?;
                Ok(Verified(webhook))
            }
        }
    }
}

/// An event restored from the store, which verified it when it was received (for re-mapping).
///
/// # Errors
/// A stored payload that is not JSON.
pub fn restore_verified(
    headers: HeaderMap,
    payload: Bytes,
    received_at: SystemTime,
) -> Result<Verified<Payload>, PayloadError> {
    Verified(Webhook {
        headers,
        body: payload,
        content: ContentKind::Json,
        query: String::new(),
        received_at,
    })
    .parse()
}

/// For offline tools (`fxhook render`) that map a payload with no signature at all.
pub fn trust_offline(webhook: Webhook) -> Verified<Webhook> {
    Verified(webhook)
}

/// `Ok` when `presented` equals one of the secrets, compared in constant time.
///
/// # Errors
/// [`VerifyError::Mismatch`] otherwise.
pub fn token_matches(presented: &[u8], secrets: &[Secret]) -> Result<(), VerifyError> {
    secrets
        .iter()
        .any(|s| constant_time_eq(presented, s.expose().as_bytes()))
        .then_some(())
        .ok_or(VerifyError::Mismatch)
}

/// An `Authorization` value split into its scheme and its credentials (`Bearer abc` →
/// `("Bearer", "abc")`). Callers compare the scheme case-insensitively, as RFC 7235 says.
pub fn authorization(value: &str) -> Option<(&str, &str)> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    Some((scheme, credentials.trim()))
}

/// True when the headers carry `Authorization: Bearer <token>` (the scheme in any case, the
/// token compared in constant time); for the admin API and `/metrics`.
pub fn bearer_matches(headers: &HeaderMap, token: &secrecy::SecretString) -> bool {
    use secrecy::ExposeSecret;
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(authorization)
        .is_some_and(|(scheme, presented)| {
            scheme.eq_ignore_ascii_case("bearer")
                && constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes())
        })
}

/// Compares two byte strings in constant time (for tokens of any length: both sides are
/// hashed first, so not even the length leaks).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.as_slice().ct_eq(hb.as_slice()).into()
}
