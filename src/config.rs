//! Configuration: one YAML file, then `FXHOOK__SECTION__KEY` environment variables, on top of the
//! embedded defaults of `product.md`. Everything is checked here, at start-up, so that a bad value
//! stops the process with a message naming its key instead of failing at the first request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::Deserialize;

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

/// `server.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes; larger ones get 413 before they are buffered.
    pub max_body_bytes: usize,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` is believed.
    #[serde(deserialize_with = "ip_ranges")]
    pub trusted_proxies: Vec<IpRange>,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Serve every route under this prefix (e.g. `/fxhook` behind a shared host); empty: none.
    pub path_prefix: String,
    /// Deadline for a request body once its headers are in: a client that stalls mid-body gets
    /// `408` and its connection is closed, so stalled uploads cannot pile up.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Most open client connections (all workers together); unset: sized to the process's
    /// open-file limit (see [`ServerSettings::connection_budget`]).
    pub max_connections: Option<usize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            trusted_proxies: Vec::new(),
            workers: 0,
            path_prefix: String::new(),
            body_timeout: Duration::from_secs(10),
            max_connections: None,
        }
    }
}

/// File descriptors kept out of the connection budget: the store and its WAL, the listener, the
/// mappings watcher, the vendor client's connections, logs.
const RESERVED_FILES: usize = 64;

/// How many connections the server may hold open, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// Connections per HTTP worker (actix's limit is per worker).
    pub per_worker: usize,
    /// `per_worker` × workers.
    pub total: usize,
    /// Set when `server.max_connections` asked for more than the file limit allows.
    pub clamped_from: Option<usize>,
}

impl ServerSettings {
    /// The connection bound for `workers` HTTP workers under an open-file limit of
    /// `file_limit`: `server.max_connections` when it fits, else what the limit leaves after
    /// `RESERVED_FILES` (64). Never less than one connection a worker.
    pub fn connection_budget(&self, workers: usize, file_limit: u64) -> ConnectionBudget {
        let workers = workers.max(1);
        let fits = usize::try_from(file_limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVED_FILES)
            .max(workers);
        let (wanted, clamped_from) = match self.max_connections {
            Some(n) if n > fits => (fits, Some(n)),
            Some(n) => (n.max(workers), None),
            None => (fits, None),
        };
        let per_worker = wanted / workers;
        ConnectionBudget {
            per_worker,
            total: per_worker * workers,
            clamped_from,
        }
    }
}

/// `store.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The SQLite database file; its directory is created when missing.
    pub path: PathBuf,
    /// How long a delivery id is remembered: a second request with it inside the window is a duplicate.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Most events committed in one transaction (group commit).
    pub commit_batch: usize,
    /// Accepted events waiting for their commit before new requests get 503 + Retry-After.
    pub pending_limit: usize,
    /// Queued messages beyond which new webhooks get 503 + Retry-After (the vendor is not
    /// keeping up and the backlog would only grow).
    pub max_queued: u64,
    /// Store file size in bytes beyond which new webhooks get 503 + Retry-After.
    pub max_bytes: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("data/fxhook.db"),
            dedup_window: Duration::from_secs(24 * 3600),
            commit_batch: 64,
            pending_limit: 10_000,
            max_queued: 1_000_000,
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
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

/// `fxiaoke.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FxiaokeSettings {
    /// API host: `https://open.fxiaoke.com` or a dedicated cloud's host.
    pub base_url: String,
    /// The self-built app's id.
    pub app_id: Option<String>,
    /// The self-built app's secret.
    pub app_secret: Option<SecretString>,
    /// The enterprise's permanent code.
    pub permanent_code: Option<SecretString>,
    /// The acting employee id sent as `x-fs-userid`.
    pub user_id: Option<String>,
    /// Log and mark delivered instead of sending.
    pub dry_run: bool,
}

impl Default for FxiaokeSettings {
    fn default() -> Self {
        Self {
            base_url: "https://open.fxiaoke.com".into(),
            app_id: None,
            app_secret: None,
            permanent_code: None,
            user_id: None,
            dry_run: false,
        }
    }
}

/// The app credentials of a live send, all four present.
pub struct Credentials {
    /// The self-built app's id.
    pub app_id: String,
    /// The app's secret.
    pub app_secret: SecretString,
    /// The enterprise's permanent code.
    pub permanent_code: SecretString,
    /// The acting employee id (`x-fs-userid`).
    pub user_id: String,
}

/// How messages leave, as the `fxiaoke` section decides it.
pub enum DeliveryMode {
    /// Logged and marked delivered: `dry_run: true`, or no credential at all.
    DryRun,
    /// Sent with these credentials.
    Live(Credentials),
}

impl FxiaokeSettings {
    /// The delivery mode: dry run when asked for or when no credential is set; live with all
    /// four; an error naming the missing keys when some but not all are set (a typo must not
    /// turn into a dry run that sends nothing).
    ///
    /// # Errors
    /// Some credentials but not all.
    pub fn mode(&self) -> Result<DeliveryMode, String> {
        use secrecy::ExposeSecret;
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let secret = |v: &Option<SecretString>| {
            v.as_ref()
                .map(|s| s.expose_secret().trim().to_string())
                .filter(|s| !s.is_empty())
                .map(SecretString::from)
        };
        let (app_id, app_secret) = (text(&self.app_id), secret(&self.app_secret));
        let (permanent_code, user_id) = (secret(&self.permanent_code), text(&self.user_id));
        if self.dry_run {
            return Ok(DeliveryMode::DryRun);
        }
        let missing: Vec<&str> = [
            ("app_id", app_id.is_none()),
            ("app_secret", app_secret.is_none()),
            ("permanent_code", permanent_code.is_none()),
            ("user_id", user_id.is_none()),
        ]
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(k, _)| *k)
        .collect();
        match (app_id, app_secret, permanent_code, user_id) {
            (Some(app_id), Some(app_secret), Some(permanent_code), Some(user_id)) => {
                Ok(DeliveryMode::Live(Credentials {
                    app_id,
                    app_secret,
                    permanent_code,
                    user_id,
                }))
            }
            _ if missing.len() == 4 => Ok(DeliveryMode::DryRun),
            _ => Err(format!(
                "fxiaoke.{} missing (set all four credentials, or none for dry run, or fxiaoke.dry_run: true)",
                missing.join(", fxiaoke.")
            )),
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
    /// How long delivered events and their payloads are kept.
    #[serde(with = "humantime_serde")]
    pub keep_delivered: Duration,
    /// How long dead events are kept.
    #[serde(with = "humantime_serde")]
    pub keep_dead: Duration,
    /// How often the worker looks for due messages when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// A message older than this is given up (dead) instead of retried.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Sends in progress at once (all share the rate limit and the token).
    pub concurrency: usize,
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
            keep_dead: Duration::from_secs(30 * 24 * 3600),
            poll_interval: Duration::from_secs(1),
            max_age: Duration::from_secs(48 * 3600),
            concurrency: 4,
        }
    }
}

/// `admin.*`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token of `/admin/*`; unset turns the admin API off.
    pub token: Option<SecretString>,
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

fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(ListOrText::deserialize(d)?.into_vec())
}

/// `IP:PORT`.
fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP:PORT address such as 127.0.0.1:8080"
        ))
    })
}

/// Addresses or CIDR ranges, as a list or one comma-separated string.
fn ip_ranges<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpRange>, D::Error> {
    string_list(d)?
        .iter()
        .map(|p| {
            parse_ip_range(p).map_err(|_| {
                serde::de::Error::custom(format!("{p:?} is not an IP address or CIDR range"))
            })
        })
        .collect()
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

/// An IP address or a CIDR range, as written in `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    /// True when `ip` is inside the range.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map(V4).unwrap_or(V6(v6)),
            v4 => v4,
        };
        match (self.network, ip) {
            (V4(net), V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (V6(net), V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Parses `10.0.0.1` or `10.0.0.0/8` or `::1`.
///
/// # Errors
/// When the text is neither.
pub fn parse_ip_range(text: &str) -> anyhow::Result<IpRange> {
    let (addr, prefix) = match text.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text.trim(), None),
    };
    let network: std::net::IpAddr = addr.parse().context("not an IP address")?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .context("bad prefix length")?,
        None => max,
    };
    Ok(IpRange { network, prefix })
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
        assert_eq!((b.per_worker, b.total, b.clamped_from), (480, 960, None));
        // Asked for less: exactly that, rounded down to a multiple of the workers.
        s.max_connections = Some(101);
        let b = s.connection_budget(2, 1024);
        assert_eq!((b.per_worker, b.total, b.clamped_from), (50, 100, None));
        // Asked for more than the limit allows: clamped, and said so.
        s.max_connections = Some(50_000);
        let b = s.connection_budget(4, 1024);
        assert_eq!(
            (b.per_worker, b.total, b.clamped_from),
            (240, 960, Some(50_000))
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
