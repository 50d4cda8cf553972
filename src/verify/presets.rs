//! The named presets of `webhook-senders.md`. Each preset is one entry of [`PRESETS`]: its name,
//! the headers that name the event type and the delivery id, and a function that builds its
//! scheme from the mapping file's `verify:` section. Adding a sender is adding one entry.

use std::sync::Arc;

use super::crypto::DEFAULT_TOLERANCE;
use super::hmac::{HmacScheme, Part, parse_signed};
use super::keys::{KeyKind, Keys};
use super::spec::{Algorithm, Encoding, VerifySpec};
use super::special::{FirstPresent, SharedToken, Stripe, base64_of_body};
use super::standard_webhooks::StandardWebhooks;
use super::token::{AuthorizationHeader, HeaderToken};
use super::{Scheme, Trace, VerifyError, Webhook};

/// A named verification preset.
pub struct Preset {
    /// The name written as `verify.preset`.
    pub name: &'static str,
    /// The header that names the event type, if the sender sends one; `A|B` names alternatives,
    /// the first present one is read (as in a mapping's `when.header`).
    pub event_header: Option<&'static str>,
    /// Headers that carry a delivery id stable across the sender's retries, in order of preference.
    pub dedup_headers: &'static [&'static str],
    /// Else a JSONPath to the delivery id in the payload.
    pub dedup_path: Option<&'static str>,
    /// Builds the scheme from the `verify:` section.
    pub build: fn(&VerifySpec) -> Result<Arc<dyn Scheme>, String>,
}

/// Every preset, by name.
pub static PRESETS: &[Preset] = &[
    Preset {
        name: "github",
        event_header: Some("X-GitHub-Event"),
        dedup_headers: &["X-GitHub-Delivery"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("github", spec)?;
            let sha256 = hmac_body("X-Hub-Signature-256", Algorithm::Sha256, "sha256=");
            if spec.legacy_sha1 {
                // Opt-in only: the legacy header, used when the sha256 one is absent.
                let sha1 = hmac_body("X-Hub-Signature", Algorithm::Sha1, "sha1=");
                Ok(Arc::new(FirstPresent(vec![sha256, sha1])))
            } else {
                Ok(Arc::new(sha256))
            }
        },
    },
    Preset {
        name: "gitlab",
        event_header: Some("X-Gitlab-Event"),
        dedup_headers: &["Idempotency-Key", "X-Gitlab-Event-UUID", "webhook-id"],
        dedup_path: None,
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
        dedup_path: None,
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
        dedup_path: None,
        build: |spec| {
            no_generic_fields("alertmanager", spec)?;
            Ok(Arc::new(AuthorizationHeader))
        },
    },
    Preset {
        name: "svix",
        event_header: None,
        dedup_headers: &["svix-id", "webhook-id"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("svix", spec)?;
            Ok(Arc::new(StandardWebhooks {
                tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
            }))
        },
    },
    Preset {
        name: "gitea",
        event_header: Some("X-Gitea-Event|X-Forgejo-Event"),
        dedup_headers: &["X-Gitea-Delivery", "X-Forgejo-Delivery"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("gitea", spec)?;
            Ok(Arc::new(gitea_family(&[
                "X-Gitea-Signature",
                "X-Forgejo-Signature",
            ])))
        },
    },
    Preset {
        name: "forgejo",
        event_header: Some("X-Forgejo-Event|X-Gitea-Event"),
        dedup_headers: &["X-Forgejo-Delivery", "X-Gitea-Delivery"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("forgejo", spec)?;
            Ok(Arc::new(gitea_family(&[
                "X-Forgejo-Signature",
                "X-Gitea-Signature",
            ])))
        },
    },
    Preset {
        name: "gogs",
        event_header: Some("X-Gogs-Event"),
        dedup_headers: &["X-Gogs-Delivery"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("gogs", spec)?;
            Ok(Arc::new(gitea_family(&["X-Gogs-Signature"])))
        },
    },
    Preset {
        name: "bitbucket",
        event_header: Some("X-Event-Key"),
        dedup_headers: &["X-Request-UUID", "X-Request-Id"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("bitbucket", spec)?;
            Ok(Arc::new(hmac_body(
                "X-Hub-Signature",
                Algorithm::Sha256,
                "sha256=",
            )))
        },
    },
    Preset {
        name: "circleci",
        event_header: Some("circleci-event-type"),
        dedup_headers: &[],
        dedup_path: Some("$.id"),
        build: |spec| {
            no_generic_fields("circleci", spec)?;
            let mut scheme = hmac_body("circleci-signature", Algorithm::Sha256, "v1=");
            scheme.list_separator = Some(',');
            Ok(Arc::new(scheme))
        },
    },
    Preset {
        name: "sentry",
        event_header: Some("Sentry-Hook-Resource"),
        dedup_headers: &[],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("sentry", spec)?;
            Ok(Arc::new(hmac_body(
                "Sentry-Hook-Signature",
                Algorithm::Sha256,
                "",
            )))
        },
    },
    Preset {
        name: "grafana",
        event_header: None,
        dedup_headers: &[],
        dedup_path: None,
        build: grafana,
    },
    Preset {
        name: "slack",
        event_header: None,
        dedup_headers: &[],
        dedup_path: Some("$.event_id"),
        build: |spec| {
            no_generic_fields("slack", spec)?;
            let mut scheme = hmac_body("X-Slack-Signature", Algorithm::Sha256, "v0=");
            scheme.signed = parse_signed("v0:{timestamp}:{body}")?;
            scheme.timestamp_header = Some("X-Slack-Request-Timestamp".into());
            scheme.tolerance = spec.tolerance.unwrap_or(DEFAULT_TOLERANCE);
            Ok(Arc::new(scheme))
        },
    },
    Preset {
        name: "stripe",
        event_header: None,
        dedup_headers: &[],
        dedup_path: Some("$.id"),
        build: |spec| {
            no_generic_fields("stripe", spec)?;
            Ok(Arc::new(Stripe {
                tolerance: spec.tolerance.unwrap_or(DEFAULT_TOLERANCE),
            }))
        },
    },
    Preset {
        name: "shopify",
        event_header: Some("X-Shopify-Topic"),
        dedup_headers: &["X-Shopify-Webhook-Id"],
        dedup_path: None,
        build: |spec| {
            no_generic_fields("shopify", spec)?;
            Ok(Arc::new(base64_of_body("X-Shopify-Hmac-Sha256")))
        },
    },
    Preset {
        name: "jenkins",
        event_header: None,
        dedup_headers: &[],
        dedup_path: None,
        build: token,
    },
    Preset {
        name: "token",
        event_header: None,
        dedup_headers: &[],
        dedup_path: None,
        build: token,
    },
    Preset {
        name: "azure-devops",
        event_header: None,
        dedup_headers: &[],
        dedup_path: Some("$.id"),
        build: |spec| {
            no_generic_fields("azure-devops", spec)?;
            Ok(Arc::new(AuthorizationHeader))
        },
    },
    Preset {
        name: "hmac",
        event_header: None,
        dedup_headers: &[],
        dedup_path: None,
        build: generic,
    },
];

fn hmac_body(header: &str, algorithm: Algorithm, prefix: &str) -> HmacScheme {
    HmacScheme::of_body(header, algorithm, Encoding::Hex, prefix)
}

/// Gitea, Forgejo and Gogs sign the JSON payload (in form mode, the decoded `payload=` field)
/// in their own header(s), and Gitea/Forgejo also send GitHub's header.
fn gitea_family(headers: &[&str]) -> FirstPresent {
    let mut schemes: Vec<HmacScheme> = headers
        .iter()
        .map(|h| hmac_body(h, Algorithm::Sha256, ""))
        .collect();
    schemes.push(hmac_body(
        "X-Hub-Signature-256",
        Algorithm::Sha256,
        "sha256=",
    ));
    for s in &mut schemes {
        s.sign_payload = true;
    }
    FirstPresent(schemes)
}

/// Grafana: the header is configurable (its docs and its code disagree on the name, so both are
/// tried by default) and a timestamp header, when configured, makes it sign `{timestamp}:{body}`.
fn grafana(spec: &VerifySpec) -> Result<Arc<dyn Scheme>, String> {
    if let Some(field) = spec
        .generic_fields_set()
        .into_iter()
        .find(|f| !matches!(*f, "header" | "timestamp_header"))
    {
        return Err(format!(
            "preset grafana takes only `header` and `timestamp_header`: remove `{field}`"
        ));
    }
    let headers: Vec<String> = match &spec.header {
        Some(h) => vec![h.clone()],
        None => vec![
            "X-Grafana-Alerting-Signature".into(),
            "X-Grafana-Alert-Signature".into(),
        ],
    };
    let schemes = headers
        .iter()
        .map(|h| {
            let mut s = hmac_body(h, Algorithm::Sha256, "");
            if let Some(ts) = &spec.timestamp_header {
                s.signed = vec![Part::Timestamp, Part::Lit(":".into()), Part::Body];
                s.timestamp_header = Some(ts.clone());
                s.tolerance = spec.tolerance.unwrap_or(DEFAULT_TOLERANCE);
            }
            s
        })
        .collect();
    Ok(Arc::new(FirstPresent(schemes)))
}

/// A shared token (`header`, default `X-Webhook-Token`; or `?token=`; or `Authorization`).
fn token(spec: &VerifySpec) -> Result<Arc<dyn Scheme>, String> {
    if let Some(field) = spec
        .generic_fields_set()
        .into_iter()
        .find(|f| *f != "header")
    {
        return Err(format!(
            "token presets take only `header`: remove `{field}`"
        ));
    }
    Ok(Arc::new(SharedToken {
        header: spec
            .header
            .clone()
            .unwrap_or_else(|| "X-Webhook-Token".into()),
    }))
}

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
    if signed.contains(&Part::Timestamp) && spec.timestamp_header.is_none() {
        return Err("signed uses {timestamp}: set `timestamp_header`".into());
    }
    if spec.timestamp_header.is_some() && !signed.contains(&Part::Timestamp) {
        // Otherwise the replay window would check a time anyone can change.
        return Err("timestamp_header is set but signed does not include {timestamp}: sign it (e.g. signed: \"{timestamp}.{body}\")".into());
    }
    if signed.contains(&Part::Id) && spec.id_header.is_none() {
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
/// A secret written `whsec_…` is a signing token, any other a secret token.
#[derive(Debug)]
struct GitLab {
    token: HeaderToken,
    signing: StandardWebhooks,
}

impl Scheme for GitLab {
    fn key_kind(&self) -> KeyKind {
        KeyKind::TokenOrWhsec
    }

    fn check_keys<'s>(
        &'s self,
        webhook: &Webhook,
        keys: &Keys,
        now: std::time::SystemTime,
        trace: &mut Trace<'s>,
    ) -> Result<(), VerifyError> {
        if webhook.header("webhook-signature").is_some() {
            self.signing.check_keys(webhook, keys, now, trace)
        } else {
            self.token.check_keys(webhook, keys, now, trace)
        }
    }

    fn credential_headers(&self) -> Vec<String> {
        let mut names = self.token.credential_headers();
        names.extend(self.signing.credential_headers());
        names
    }
}
