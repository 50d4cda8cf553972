//! What a mapping file writes under `verify:`. A preset name fixes the algorithm; the generic
//! `hmac` preset is described field by field. Presets turn this into a [`super::Scheme`].

use std::time::Duration;

use serde::Deserialize;

use super::secrets::SecretRef;

/// The `verify:` section of a mapping file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// A preset name from `webhook-senders.md`, or `hmac` for the generic scheme.
    pub preset: Option<String>,
    /// Where the secrets are; default `FXHOOK_SECRET_<SOURCE>` and `…_PREVIOUS`.
    pub secrets: Option<Vec<SecretRef>>,
    /// Declares the source unsigned: every request is accepted. Must be said explicitly.
    #[serde(default)]
    pub unsigned: bool,
    /// GitHub only: also accept the legacy `X-Hub-Signature: sha1=` when the sha256 header is
    /// absent. Off by default (a verifier that trusts `sha1=` can be downgraded).
    #[serde(default)]
    pub legacy_sha1: bool,
    /// Generic scheme: the signature header.
    pub header: Option<String>,
    /// Generic scheme: `sha1`, `sha256` or `sha512`.
    pub algorithm: Option<Algorithm>,
    /// Generic scheme: `hex` or `base64`.
    pub encoding: Option<Encoding>,
    /// Generic scheme: text before the signature in the header, such as `sha256=`.
    pub prefix: Option<String>,
    /// Generic scheme: what is signed, `{body}` by default; may use `{timestamp}` and `{id}`.
    pub signed: Option<String>,
    /// Generic scheme: the header with the unix timestamp, which enables the replay window.
    pub timestamp_header: Option<String>,
    /// Generic scheme: the header whose value `{id}` stands for.
    pub id_header: Option<String>,
    /// Replay window for schemes with a timestamp (default 5 minutes).
    #[serde(default, with = "humantime_serde")]
    pub tolerance: Option<Duration>,
}

/// HMAC hash functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA1 (legacy senders only).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How the signature bytes are written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lower- or upper-case hexadecimal.
    Hex,
    /// Standard base64.
    Base64,
}

impl VerifySpec {
    /// The names of the generic-scheme fields that are set (for presets that accept none).
    pub fn generic_fields_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut note = |present: bool, name| {
            if present {
                set.push(name);
            }
        };
        note(self.header.is_some(), "header");
        note(self.algorithm.is_some(), "algorithm");
        note(self.encoding.is_some(), "encoding");
        note(self.prefix.is_some(), "prefix");
        note(self.signed.is_some(), "signed");
        note(self.timestamp_header.is_some(), "timestamp_header");
        note(self.id_header.is_some(), "id_header");
        set
    }
}
