//! Standard Webhooks (and Svix, which uses `svix-` header names): HMAC-SHA256 over
//! `{id}.{timestamp}.{body}`, base64, keyed by the base64 text after `whsec_`, in a header that
//! lists several `v1,<sig>` entries; the timestamp must be within the tolerance.

use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::hmac::{DEFAULT_TOLERANCE, Key, check_timestamp, mac_matches};
use super::spec::Algorithm;
use super::{Scheme, Secret, VerifyError, Webhook};

/// The Standard Webhooks scheme.
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    /// Replay window.
    pub tolerance: Duration,
}

impl Default for StandardWebhooks {
    fn default() -> Self {
        StandardWebhooks {
            tolerance: DEFAULT_TOLERANCE,
        }
    }
}

/// The three headers, in whichever family the request used.
struct Headers<'a> {
    id: &'a str,
    timestamp: &'a str,
    signature: &'a str,
    timestamp_name: &'static str,
    signature_name: &'static str,
}

fn headers(webhook: &Webhook) -> Result<Headers<'_>, VerifyError> {
    let family = if webhook.header("webhook-signature").is_some() {
        "webhook"
    } else if webhook.header("svix-signature").is_some() {
        "svix"
    } else {
        return Err(VerifyError::MissingHeader("webhook-signature".into()));
    };
    let get = |suffix: &str| {
        let name = format!("{family}-{suffix}");
        webhook
            .header(&name)
            .ok_or(VerifyError::MissingHeader(name))
    };
    Ok(Headers {
        id: get("id")?,
        timestamp: get("timestamp")?,
        signature: get("signature")?,
        signature_name: if family == "svix" {
            "svix-signature"
        } else {
            "webhook-signature"
        },
        timestamp_name: if family == "svix" {
            "svix-timestamp"
        } else {
            "webhook-timestamp"
        },
    })
}

/// The signing key of a `whsec_…` secret (base64 after the prefix); a secret without the prefix
/// is taken as base64 too, and one that is not base64 as raw bytes.
pub fn key_bytes(secret: &str) -> Vec<u8> {
    let text = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|_| text.as_bytes().to_vec())
}

impl Scheme for StandardWebhooks {
    fn check(
        &self,
        webhook: &Webhook,
        secrets: &[Secret],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let h = headers(webhook)?;
        let candidates: Vec<Vec<u8>> = h
            .signature
            .split_ascii_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|sig| base64::engine::general_purpose::STANDARD.decode(sig).ok())
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(h.signature_name.into()));
        }
        let parts: [&[u8]; 5] = [
            h.id.as_bytes(),
            b".",
            h.timestamp.as_bytes(),
            b".",
            &webhook.body,
        ];
        mac_matches(Algorithm::Sha256, secrets, Key::Whsec, &parts, &candidates)?;
        check_timestamp(h.timestamp, now, self.tolerance, h.timestamp_name)
    }

    fn credential_headers(&self) -> Vec<String> {
        vec!["webhook-signature".into(), "svix-signature".into()]
    }
}
