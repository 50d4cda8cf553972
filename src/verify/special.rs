//! Schemes that are neither a plain HMAC header nor Standard Webhooks: Stripe's
//! `t=…,v1=…` header, a shared token that may come in a header, the query string or the
//! `Authorization` header (Jenkins and other senders that sign nothing), and a choice among
//! several signature headers (Gitea and Forgejo send more than one).

use std::time::{Duration, SystemTime};

use super::crypto::{mac_matches, token_matches};
use super::hmac::HmacScheme;
use super::keys::Keys;
use super::spec::Algorithm;
use super::token::AuthorizationHeader;
use super::{Scheme, Trace, VerifyError, Webhook};

const STRIPE_SIGNATURE: &str = "Stripe-Signature";

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]`, HMAC-SHA256 of `{t}.{body}` keyed by the
/// whole `whsec_…` text (not base64-decoded).
#[derive(Debug, Clone)]
pub struct Stripe {
    /// Replay window.
    pub tolerance: Duration,
}

impl Scheme for Stripe {
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        trace.at(STRIPE_SIGNATURE);
        let header = webhook
            .header(STRIPE_SIGNATURE)
            .ok_or_else(|| VerifyError::MissingHeader(STRIPE_SIGNATURE.into()))?;
        let mut timestamp = None;
        let mut candidates = Vec::new();
        for item in header.split(',') {
            match item.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t),
                Some(("v1", sig)) => candidates.extend(hex::decode(sig).ok()),
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or_else(|| VerifyError::Malformed(STRIPE_SIGNATURE.into()))?;
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(STRIPE_SIGNATURE.into()));
        }
        let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", &webhook.body];
        // Stripe keys with the whole `whsec_…` text, not its base64 decoding.
        trace.matched(mac_matches(
            Algorithm::Sha256,
            keys.texts(),
            &parts,
            &candidates,
        ))?;
        trace.timestamp(timestamp, STRIPE_SIGNATURE, now, self.tolerance)
    }

    fn credential_headers(&self) -> Vec<String> {
        vec!["stripe-signature".into()]
    }
}

/// A shared secret token: in a header, as `?token=` in the URL, or in `Authorization`
/// (`Bearer <token>`, or Basic credentials equal to `user:password`).
#[derive(Debug, Clone)]
pub struct SharedToken {
    /// The header that may carry the token.
    pub header: String,
}

impl Scheme for SharedToken {
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        trace.at(&self.header);
        let presented: Option<Vec<u8>> = webhook
            .header(&self.header)
            .map(|t| t.trim().as_bytes().to_vec())
            .or_else(|| {
                let token = serde_urlencoded::from_str::<Vec<(String, String)>>(&webhook.query)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == "token")?;
                trace.at("?token=");
                Some(token.1.into_bytes())
            });
        match presented {
            Some(token) => trace.matched(token_matches(&token, keys.texts())),
            None if webhook.header("authorization").is_some() => {
                let authorization: &'static AuthorizationHeader = &AuthorizationHeader;
                authorization.check_keys(webhook, keys, now, trace)
            }
            None => Err(VerifyError::MissingHeader(self.header.clone())),
        }
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![self.header.to_ascii_lowercase(), "authorization".into()]
    }
}

/// The first of several signature headers that is present decides (Gitea sends its own header
/// and GitHub's; Forgejo adds a third).
#[derive(Debug, Clone)]
pub struct FirstPresent(pub Vec<HmacScheme>);

impl Scheme for FirstPresent {
    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        match self.0.iter().find(|s| webhook.header(&s.header).is_some()) {
            Some(scheme) => scheme.check_keys(webhook, keys, now, trace),
            None => {
                let first = self
                    .0
                    .first()
                    .map(|s| s.header.as_str())
                    .unwrap_or_default();
                trace.at(first);
                Err(VerifyError::MissingHeader(first.to_string()))
            }
        }
    }

    fn credential_headers(&self) -> Vec<String> {
        self.0.iter().flat_map(|s| s.credential_headers()).collect()
    }
}

/// Shopify-style base64 HMAC of the body (kept here so the table stays one line per preset).
pub fn base64_of_body(header: &str) -> HmacScheme {
    HmacScheme::of_body(header, Algorithm::Sha256, super::spec::Encoding::Base64, "")
}
