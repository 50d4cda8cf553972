//! `store.*`: which store (an SQLite file, or Postgres by URL) and its bounds.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// `store.*`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The SQLite database file; its directory is created when missing. Default
    /// `data/fxhook.db`; not with `url`.
    pub path: Option<PathBuf>,
    /// A `postgres://…` URL: the Postgres store instead of SQLite (a secret: it may hold a
    /// password, and is never logged with it).
    pub url: Option<SecretString>,
    /// Most connections to Postgres at once.
    pub pool_size: usize,
    /// How long to wait for a Postgres connection (from the pool, or a new one).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
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
            path: None,
            url: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            dedup_window: Duration::from_secs(24 * 3600),
            commit_batch: 64,
            pending_limit: 10_000,
            max_queued: 1_000_000,
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// Which store the settings select.
#[derive(Debug, Clone)]
pub enum StoreKind {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A Postgres database, by URL.
    Postgres(SecretString),
}

impl StoreSettings {
    /// The SQLite file when no URL is set (default `data/fxhook.db`).
    pub fn sqlite_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from("data/fxhook.db"))
    }

    /// The store these settings select.
    ///
    /// # Errors
    /// Both `store.path` and `store.url` are set, or the URL is not a `postgres://` one.
    pub fn kind(&self) -> Result<StoreKind, String> {
        use secrecy::ExposeSecret;
        let url = self
            .url
            .as_ref()
            .filter(|u| !u.expose_secret().trim().is_empty());
        match (url, &self.path) {
            (Some(_), Some(_)) => Err(
                "store.path and store.url are both set: choose one (store.url selects Postgres)"
                    .into(),
            ),
            (Some(url), None) => {
                let text = url.expose_secret().trim();
                if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                    Ok(StoreKind::Postgres(SecretString::from(text.to_string())))
                } else {
                    Err("store.url must be a postgres://… URL".into())
                }
            }
            (None, _) => Ok(StoreKind::Sqlite(self.sqlite_path())),
        }
    }

    /// Where the store is, for logs: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self.kind() {
            Ok(StoreKind::Sqlite(path)) => path.display().to_string(),
            Ok(StoreKind::Postgres(url)) => redact_url(secrecy::ExposeSecret::expose_secret(&url)),
            Err(_) => "(invalid)".into(),
        }
    }
}

/// A URL with its password (and any `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail: String = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}
