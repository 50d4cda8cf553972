//! Configuration: one YAML file, then `FXHOOK__SECTION__KEY` environment variables, on top of the
//! embedded defaults of `product.md`. Everything is checked here, at start-up, so that a bad value
//! stops the process with a message naming its key instead of failing at the first request.

mod fxiaoke;
mod server;
mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Deserialize;

pub use fxiaoke::{Credentials, DeliveryMode, FxiaokeSettings};
pub use server::{ConnectionBudget, IpRange, ServerSettings, parse_ip_range};
pub use store::{StoreKind, StoreSettings, redact_url};

/// Bearer tokens shorter than this are warned about at start-up.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The whole configuration, as read from the file and the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerSettings,
    /// The embedded database.
    #[serde(default)]
    pub store: StoreSettings,
    /// Where the mapping files are and how they are read.
    #[serde(default)]
    pub mappings: MappingSettings,
    /// The vendor account used for delivery.
    #[serde(default)]
    pub fxiaoke: FxiaokeSettings,
    /// Retry schedule, pacing and retention of the delivery worker.
    #[serde(default)]
    pub delivery: DeliverySettings,
    /// Named recipient groups: group name → Fxiaoke employee ids.
    #[serde(default, deserialize_with = "groups")]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The admin API.
    #[serde(default)]
    pub admin: AdminSettings,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// How cards are fitted to a phone and the vendor's limits.
    #[serde(default)]
    pub cards: crate::card::CardLimits,
    /// Log output.
    #[serde(default)]
    pub log: LogSettings,
}

/// `log.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `mappings.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingSettings {
    /// Directory of `<source>.yaml` files.
    pub dir: PathBuf,
    /// Reload mapping files when they change.
    pub watch: bool,
    /// Time zone of the `date` filter (an IANA name such as `Asia/Shanghai`).
    #[serde(deserialize_with = "time_zone")]
    pub timezone: chrono_tz::Tz,
}

impl Default for MappingSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("mappings"),
            watch: true,
            timezone: chrono_tz::Asia::Shanghai,
        }
    }
}

/// `delivery.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySettings {
    /// Delays between attempts (each with ±20% jitter).
    #[serde(deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Sends allowed per `rate_window`.
    pub rate_limit: u32,
    /// The window of `rate_limit`.
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
    /// Connection timeout towards the vendor.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout towards the vendor.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long delivered events are kept (their card, attempts and ids).
    #[serde(with = "humantime_serde")]
    pub keep_delivered: Duration,
    /// How long the payloads of delivered events are kept (dropped before the rows, so that a
    /// busy store holds about a day of payloads).
    #[serde(with = "humantime_serde")]
    pub keep_payloads: Duration,
    /// How long dead events are kept.
    #[serde(with = "humantime_serde")]
    pub keep_dead: Duration,
    /// How often the worker looks for due messages when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A message older than this is given up (dead) instead of retried.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long the sending replica's lease lasts without renewal: another replica takes
    /// over delivery within about this long after the sender dies.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Sends in progress at once (all share the rate limit and the token).
    pub concurrency: usize,
    /// Cards of rules with `coalesce`/`fold` still queued together go out merged (off: every
    /// card on its own, as the storm benchmark's baseline).
    pub coalesce: bool,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        Self {
            retry_schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                m(2),
                m(10),
                m(30),
                m(60),
                m(120),
                m(240),
                m(480),
            ],
            rate_limit: 90,
            rate_window: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            keep_delivered: Duration::from_secs(7 * 24 * 3600),
            keep_payloads: Duration::from_secs(24 * 3600),
            keep_dead: Duration::from_secs(30 * 24 * 3600),
            poll_interval: Duration::from_secs(1),
            max_age: Duration::from_secs(48 * 3600),
            lease: Duration::from_secs(15),
            concurrency: 4,
            coalesce: true,
        }
    }
}

/// `admin.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token of `/admin/*`; unset turns the admin API and the console off.
    pub token: Option<SecretString>,
    /// How long a console sign-in lasts.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            token: None,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// `metrics.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Bearer token of `/metrics`; unset leaves it open.
    pub token: Option<SecretString>,
}

/// A YAML list, or (from an environment variable) one comma-separated string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrText {
    List(Vec<String>),
    Text(String),
}

impl ListOrText {
    fn into_vec(self) -> Vec<String> {
        match self {
            ListOrText::List(v) => v,
            ListOrText::Text(t) => t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

pub(crate) fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(ListOrText::deserialize(d)?.into_vec())
}

/// An IANA zone name.
fn time_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IANA time zone such as Asia/Shanghai"
        ))
    })
}

fn groups<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let raw: BTreeMap<String, ListOrText> = BTreeMap::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.into_vec())).collect())
}

/// A list of durations written as `5s`, `2m`, `1h`.
fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let texts = string_list(d)?;
    texts
        .iter()
        .map(|t| {
            humantime::parse_duration(t.trim()).map_err(|e| {
                serde::de::Error::custom(format!("{t:?} is not a duration such as 30s or 2m: {e}"))
            })
        })
        .collect()
}

impl Settings {
    /// Reads the configuration: `file` if given, else `fxhook.yaml` when present, else the
    /// embedded defaults; then the `FXHOOK__SECTION__KEY` variables.
    ///
    /// # Errors
    /// A missing explicit file, YAML that does not parse, an unknown key or a bad value; the
    /// message names the key.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder();
        match file {
            Some(path) => {
                if !path.exists() {
                    bail!("config file {} does not exist", path.display());
                }
                builder = builder.add_source(
                    config::File::from(path.to_path_buf()).format(config::FileFormat::Yaml),
                );
            }
            None => {
                let default = Path::new("fxhook.yaml");
                if default.exists() {
                    builder = builder.add_source(
                        config::File::from(default.to_path_buf()).format(config::FileFormat::Yaml),
                    );
                }
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("FXHOOK")
                .prefix_separator("__")
                .separator("__"),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: addresses, ranges, names.
    fn validate(&self) -> anyhow::Result<()> {
        let prefix = &self.server.path_prefix;
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
            bail!(
                "invalid configuration: server.path_prefix {prefix:?} must start with / and not end with / (e.g. /fxhook)"
            );
        }
        if self.server.body_timeout.is_zero() {
            bail!("invalid configuration: server.body_timeout must be greater than 0 (e.g. 10s)");
        }
        if self.server.max_connections == Some(0) {
            bail!("invalid configuration: server.max_connections must be at least 1");
        }
        if self.server.max_body_bytes == 0 {
            bail!("invalid configuration: server.max_body_bytes must be greater than 0");
        }
        if let Err(e) = self.store.kind() {
            bail!("invalid configuration: {e}");
        }
        if self.store.pool_size == 0 {
            bail!("invalid configuration: store.pool_size must be at least 1");
        }
        if self.store.commit_batch == 0 {
            bail!("invalid configuration: store.commit_batch must be greater than 0");
        }
        if self.store.pending_limit == 0 {
            bail!("invalid configuration: store.pending_limit must be greater than 0");
        }
        if self.delivery.rate_limit == 0 || self.delivery.rate_window.is_zero() {
            bail!(
                "invalid configuration: delivery.rate_limit and delivery.rate_window must be greater than 0"
            );
        }
        if self.delivery.lease < Duration::from_secs(1) {
            bail!("invalid configuration: delivery.lease must be at least 1s");
        }
        if self.delivery.concurrency == 0 {
            bail!("invalid configuration: delivery.concurrency must be at least 1");
        }
        if self.delivery.retry_schedule.is_empty() {
            bail!("invalid configuration: delivery.retry_schedule must list at least one delay");
        }
        if let Err(e) = self.fxiaoke.mode() {
            bail!("invalid configuration: {e}");
        }
        let base = self.fxiaoke.base_url.trim();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            bail!(
                "invalid configuration: fxiaoke.base_url must start with https:// (got {base:?})"
            );
        }
        self.cards
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        for (group, ids) in &self.groups {
            if let Some(pos) = ids.iter().position(|id| id.trim().is_empty()) {
                bail!("invalid configuration: groups.{group}[{pos}] is an empty employee id");
            }
        }
        Ok(())
    }

    /// What start-up warns about without refusing to start: bearer tokens short enough to
    /// guess. Each text names the key, never the token.
    pub fn warnings(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        [
            ("admin.token", &self.admin.token),
            ("metrics.token", &self.metrics.token),
        ]
        .into_iter()
        .filter(|(_, token)| {
            token.as_ref().is_some_and(|t| {
                let t = t.expose_secret().trim();
                // Empty turns the admin API off: nothing to guess.
                !t.is_empty() && t.chars().count() < MIN_TOKEN_CHARS
            })
        })
        .map(|(key, _)| {
            format!(
                "{key} is shorter than {MIN_TOKEN_CHARS} characters and can be guessed: use a long random one (e.g. openssl rand -hex 32)"
            )
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cidr_range_contains_its_addresses_and_not_others() {
        let range = parse_ip_range("10.1.0.0/16").unwrap();
        assert!(range.contains("10.1.200.3".parse().unwrap()));
        assert!(!range.contains("10.2.0.1".parse().unwrap()));
        let one = parse_ip_range("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(parse_ip_range("10.0.0.0/33").is_err());
        assert!(parse_ip_range("nonsense").is_err());
    }

    #[test]
    fn the_connection_bound_fits_the_file_limit_and_is_shared_by_the_workers() {
        let mut s = ServerSettings::default();
        // Unset: what the file limit leaves, split over the workers.
        let b = s.connection_budget(2, 1024);
        assert_eq!((b.per_worker, b.total, b.clamped_from), (476, 952, None));
        // Asked for less: exactly that, rounded down to a multiple of the workers.
        s.max_connections = Some(101);
        let b = s.connection_budget(2, 1024);
        assert_eq!((b.per_worker, b.total, b.clamped_from), (50, 100, None));
        // Asked for more than the limit allows: clamped, and said so.
        s.max_connections = Some(50_000);
        let b = s.connection_budget(4, 1024);
        assert_eq!(
            (b.per_worker, b.total, b.clamped_from),
            (236, 944, Some(50_000))
        );
        // A tiny limit still leaves each worker one connection.
        let b = s.connection_budget(4, 10);
        assert_eq!(b.per_worker, 1);
    }

    #[test]
    fn a_short_admin_or_metrics_token_is_warned_about_by_its_key_and_never_its_value() {
        let mut settings = Settings::default();
        assert!(settings.warnings().is_empty());
        settings.admin.token = Some("short-admin".into());
        settings.metrics.token = Some("0123456789abcdef".into());
        let warnings = settings.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("admin.token is shorter than 16 characters"));
        assert!(!warnings[0].contains("short-admin"));
        settings.metrics.token = Some("tiny".into());
        settings.admin.token = Some("  ".into());
        let warnings = settings.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("metrics.token"));
    }

    #[test]
    fn a_store_url_selects_postgres_and_is_logged_without_its_password() {
        let mut s = StoreSettings::default();
        assert!(matches!(s.kind(), Ok(StoreKind::Sqlite(p)) if p == Path::new("data/fxhook.db")));
        s.url = Some("postgres://fx:s3cret@db.example:5432/fx?sslmode=require".into());
        assert!(matches!(s.kind(), Ok(StoreKind::Postgres(_))));
        assert_eq!(
            s.describe(),
            "postgres://fx:***@db.example:5432/fx?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/fx?user=a&password=pw"),
            "postgres://db/fx?user=a&password=***"
        );
        s.path = Some("x.db".into());
        assert!(s.kind().unwrap_err().contains("store.path and store.url"));
        s.path = None;
        s.url = Some("mysql://x".into());
        assert!(s.kind().is_err());
    }

    #[test]
    fn no_credentials_mean_dry_run_all_four_live_and_some_an_error_naming_the_rest() {
        let mut s = FxiaokeSettings::default();
        assert!(matches!(s.mode(), Ok(DeliveryMode::DryRun)));
        s.app_id = Some("app".into());
        s.app_secret = Some("secret".into());
        let err = s.mode().err().unwrap();
        assert!(
            err.starts_with("fxiaoke.permanent_code, fxiaoke.user_id missing"),
            "{err}"
        );
        s.permanent_code = Some("perm".into());
        s.user_id = Some(" 1000 ".into());
        match s.mode() {
            Ok(DeliveryMode::Live(c)) => assert_eq!(c.user_id, "1000"),
            _ => panic!("all four make a live mode"),
        }
        s.dry_run = true;
        assert!(matches!(s.mode(), Ok(DeliveryMode::DryRun)));
    }
}
