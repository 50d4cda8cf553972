//! The named presets of `webhook-senders.md`. Each preset is one entry of [`PRESETS`]: its name,
//! the headers that name the event type and the delivery id, and a function that builds its
//! scheme from the mapping file's `verify:` section. Adding a sender is adding one entry.

use std::sync::Arc;

use super::hmac::{DEFAULT_TOLERANCE, HmacScheme, parse_signed};
use super::spec::{Algorithm, Encoding, VerifySpec};
use super::standard_webhooks::StandardWebhooks;
use super::token::{AuthorizationHeader, HeaderToken};
use super::{Scheme, Secret, VerifyError, Webhook};

/// A named verification preset.
pub struct Preset {
    /// The name written as `verify.preset`.
    pub name: &'static str,
    /// The header that names the event type, if the sender sends one.
    pub event_header: Option<&'static str>,
    /// Headers that carry a delivery id stable across the sender's retries, in order of preference.
    pub dedup_headers: &'static [&'static str],
    /// Builds the scheme from the `verify:` section.
    pub build: fn(&VerifySpec) -> Result<Arc<dyn Scheme>, String>,
}

/// Every preset, by name.
pub static PRESETS: &[Preset] = &[
    Preset {
        name: "github",
        event_header: Some("X-GitHub-Event"),
        dedup_headers: &["X-GitHub-Delivery"],
        build: |spec| {
            no_generic_fields("github", spec)?;
            Ok(Arc::new(HmacScheme::of_body(
                "X-Hub-Signature-256",
                Algorithm::Sha256,
                Encoding::Hex,
                "sha256=",
            )))
        },
    },
    Preset {
        name: "gitlab",
        event_header: Some("X-Gitlab-Event"),
        dedup_headers: &["Idempotency-Key", "X-Gitlab-Event-UUID", "webhook-id"],
        build: |spec| {
            no_generic_fields("gitlab", spec)?;
            Ok(Arc::new(GitLab {
                token: HeaderToken {
                    header: "X-Gitlab-Token".into(),
                },
                signing: StandardWebhooks {
                    tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
                },
            }))
        },
    },
    Preset {
        name: "standard-webhooks",
        event_header: None,
        dedup_headers: &["webhook-id", "svix-id"],
        build: |spec| {
            no_generic_fields("standard-webhooks", spec)?;
            Ok(Arc::new(StandardWebhooks {
                tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
            }))
        },
    },
    Preset {
        name: "alertmanager",
        event_header: None,
        dedup_headers: &[],
        build: |spec| {
            no_generic_fields("alertmanager", spec)?;
            Ok(Arc::new(AuthorizationHeader))
        },
    },
    Preset {
        name: "hmac",
        event_header: None,
        dedup_headers: &[],
        build: generic,
    },
];

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names of every preset, for error messages.
pub fn names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_generic_fields(preset: &str, spec: &VerifySpec) -> Result<(), String> {
    match spec.generic_fields_set().first() {
        None => Ok(()),
        Some(field) => Err(format!(
            "preset {preset} fixes its own algorithm: remove `{field}` (only preset hmac is described field by field)"
        )),
    }
}

/// The generic scheme, described field by field.
fn generic(spec: &VerifySpec) -> Result<Arc<dyn Scheme>, String> {
    let header = spec
        .header
        .clone()
        .ok_or("preset hmac needs `header`: the header that carries the signature")?;
    let signed = parse_signed(spec.signed.as_deref().unwrap_or("{body}"))?;
    if signed.contains(&super::hmac::Part::Timestamp) && spec.timestamp_header.is_none() {
        return Err("signed uses {timestamp}: set `timestamp_header`".into());
    }
    if signed.contains(&super::hmac::Part::Id) && spec.id_header.is_none() {
        return Err("signed uses {id}: set `id_header`".into());
    }
    Ok(Arc::new(HmacScheme {
        header,
        algorithm: spec.algorithm.unwrap_or(Algorithm::Sha256),
        encoding: spec.encoding.unwrap_or(Encoding::Hex),
        prefix: spec.prefix.clone().unwrap_or_default(),
        signed,
        timestamp_header: spec.timestamp_header.clone(),
        id_header: spec.id_header.clone(),
        tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
        list_separator: None,
        sign_payload: false,
    }))
}

/// GitLab: the shared `X-Gitlab-Token`, or (GitLab 19+) a Standard Webhooks signing token.
#[derive(Debug)]
struct GitLab {
    token: HeaderToken,
    signing: StandardWebhooks,
}

impl Scheme for GitLab {
    fn check(
        &self,
        webhook: &Webhook,
        secrets: &[Secret],
        now: std::time::SystemTime,
    ) -> Result<(), VerifyError> {
        if webhook.header("webhook-signature").is_some() {
            self.signing.check(webhook, secrets, now)
        } else {
            self.token.check(webhook, secrets, now)
        }
    }
}
