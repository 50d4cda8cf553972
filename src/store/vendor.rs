//! What the delivery side must remember about the vendor across restarts: the time of every
//! call (written *before* the call, so a SIGKILL cannot lose it), the cached access token, and a
//! pause (rate-limit back-off, daily quota). The vendor's limits are per app, so a restarted
//! process — and later a second replica — must see the calls the previous one made.
//!
//! [`VendorLedger`] is the interface the vendor client and the worker use; each backend keeps
//! it (`store::sqlite::vendor` for the embedded store). The stored access token is a secret at rest: only the vendor
//! client reads it, and nothing prints it.

use std::fmt;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use secrecy::SecretString;

/// How long call times are kept: longer than any window they are counted in.
pub const KEEP_CALLS: Duration = Duration::from_secs(3600);

/// A kind of vendor call, each with its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `/cgi/message/send` (100 per 20 s per app; we pace under it).
    Send,
    /// `/oauth2.0/token` (10 a minute).
    Token,
}

impl CallKind {
    /// The text form, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Send => "send",
            CallKind::Token => "token",
        }
    }
}

/// An access token as stored.
#[derive(Clone)]
pub struct StoredToken {
    /// A fingerprint of the credentials it was issued to: a token of other credentials (another
    /// app or enterprise, a rotated secret) is never used.
    pub owner: String,
    /// The token itself (a secret).
    pub access: SecretString,
    /// The enterprise account it belongs to.
    pub ea: String,
    /// When it was fetched (wall clock: it must mean the same after a restart).
    pub fetched_at: SystemTime,
    /// How long the vendor said it lives.
    pub lifetime: Duration,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredToken(ea={}, [REDACTED])", self.ea)
    }
}

/// Every send held until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// When sending may resume.
    pub until: SystemTime,
    /// Why (for logs and readiness).
    pub reason: String,
}

/// The store's side of the vendor's limits.
pub trait VendorLedger: Send + Sync {
    /// Records a call about to be made at `at`.
    ///
    /// # Errors
    /// A database error: the caller must not make the call.
    fn record_call(&self, kind: CallKind, at: SystemTime) -> anyhow::Result<()>;

    /// The times of the calls of `kind` made at or after `since`, oldest first.
    ///
    /// # Errors
    /// A database error.
    fn calls_since(&self, kind: CallKind, since: SystemTime) -> anyhow::Result<Vec<SystemTime>>;

    /// Keeps `token` as the current one.
    ///
    /// # Errors
    /// A database error.
    fn save_token(&self, token: &StoredToken) -> anyhow::Result<()>;

    /// The current token, if one was kept for the credentials `owner`.
    ///
    /// # Errors
    /// A database error.
    fn load_token(&self, owner: &str) -> anyhow::Result<Option<StoredToken>>;

    /// Forgets the kept token if it is still `access` (another process may have replaced it).
    ///
    /// # Errors
    /// A database error.
    fn forget_token(&self, access: &SecretString) -> anyhow::Result<()>;

    /// Holds every send until `pause.until`, unless a longer pause is already kept.
    ///
    /// # Errors
    /// A database error.
    fn save_pause(&self, pause: &Pause) -> anyhow::Result<()>;

    /// The kept pause, if it has not ended by `now`.
    ///
    /// # Errors
    /// A database error.
    fn load_pause(&self, now: SystemTime) -> anyhow::Result<Option<Pause>>;
}

/// Runs a ledger call on tokio's blocking threads (the ledger does disk I/O).
///
/// # Errors
/// The call's own error, or the task failed.
pub async fn off_thread<T: Send + 'static>(
    ledger: &std::sync::Arc<dyn VendorLedger>,
    f: impl FnOnce(&dyn VendorLedger) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let ledger = std::sync::Arc::clone(ledger);
    tokio::task::spawn_blocking(move || f(ledger.as_ref()))
        .await
        .context("vendor ledger task failed")?
}
