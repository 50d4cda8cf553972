//! Standard Webhooks (and Svix, which uses `svix-` header names): HMAC-SHA256 over
//! `{id}.{timestamp}.{body}`, base64, keyed by the base64 text after `whsec_` (decoded once, at
//! load: see [`super::keys`]), in a header that lists several `v1,<sig>` entries; the timestamp
//! must be within the tolerance.

use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::crypto::{DEFAULT_TOLERANCE, mac_matches};
use super::keys::{KeyKind, Keys};
use super::spec::Algorithm;
use super::{Scheme, Trace, VerifyError, Webhook};

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

/// The header names of one family.
struct Family {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const WEBHOOK: Family = Family {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};

const SVIX: Family = Family {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};

fn headers<'w>(webhook: &'w Webhook, trace: &mut Trace<'_>) -> Result<Headers<'w>, VerifyError> {
    let family = if webhook.header(WEBHOOK.signature).is_some() {
        WEBHOOK
    } else if webhook.header(SVIX.signature).is_some() {
        SVIX
    } else {
        trace.at(WEBHOOK.signature);
        return Err(VerifyError::MissingHeader(WEBHOOK.signature.into()));
    };
    let mut get = |name: &'static str| {
        trace.at(name);
        webhook
            .header(name)
            .ok_or_else(|| VerifyError::MissingHeader(name.into()))
    };
    let id = get(family.id)?;
    let timestamp = get(family.timestamp)?;
    let signature = get(family.signature)?;
    Ok(Headers {
        id,
        timestamp,
        signature,
        timestamp_name: family.timestamp,
        signature_name: family.signature,
    })
}

impl Scheme for StandardWebhooks {
    fn key_kind(&self) -> KeyKind {
        KeyKind::Whsec
    }

    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        let h = headers(webhook, trace)?;
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
        trace.matched(mac_matches(
            Algorithm::Sha256,
            keys.whsec(),
            &parts,
            &candidates,
        ))?;
        trace.timestamp(h.timestamp, h.timestamp_name, now, self.tolerance)
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![WEBHOOK.signature.into(), SVIX.signature.into()]
    }
}
