//! What the delivery side must remember about the vendor across restarts: the time of every
//! call (written *before* the call, so a SIGKILL cannot lose it), the cached access token, and a
//! pause (rate-limit back-off, daily quota). The vendor's limits are per app, so a restarted
//! process — and later a second replica — must see the calls the previous one made.
//!
//! [`VendorLedger`] is the interface the vendor client and the worker use; [`SqliteLedger`]
//! keeps it in the embedded store. The stored access token is a secret at rest: only the vendor
//! client reads it, and nothing prints it.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use secrecy::{ExposeSecret, SecretString};

use super::unix_ms;

/// How long call times are kept: longer than any window they are counted in.
const KEEP_CALLS: Duration = Duration::from_secs(3600);

/// A kind of vendor call, each with its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// `/cgi/message/send` (100 per 20 s per app; we pace under it).
    Send,
    /// `/oauth2.0/token` (10 a minute).
    Token,
}

impl CallKind {
    fn as_sql(self) -> &'static str {
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

/// The ledger in the embedded SQLite store, on a connection of its own.
pub struct SqliteLedger {
    conn: Mutex<Connection>,
}

impl SqliteLedger {
    /// Opens the store at `path` for the ledger. It takes no process lock: `fxhook send-test`
    /// may share the ledger (and so the token and the limits) with a running gateway.
    ///
    /// # Errors
    /// The store cannot be opened.
    pub fn open(path: &Path) -> anyhow::Result<SqliteLedger> {
        Ok(SqliteLedger {
            conn: Mutex::new(super::open(path)?),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| anyhow::anyhow!("vendor ledger connection poisoned"))?;
        f(&conn).context("vendor ledger")
    }
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl VendorLedger for SqliteLedger {
    fn record_call(&self, kind: CallKind, at: SystemTime) -> anyhow::Result<()> {
        let old = unix_ms(at) - KEEP_CALLS.as_millis() as i64;
        self.with(|c| {
            c.prepare_cached("DELETE FROM vendor_calls WHERE kind = ?1 AND at < ?2")?
                .execute(params![kind.as_sql(), old])?;
            c.prepare_cached("INSERT INTO vendor_calls (kind, at) VALUES (?1, ?2)")?
                .execute(params![kind.as_sql(), unix_ms(at)])?;
            Ok(())
        })
    }

    fn calls_since(&self, kind: CallKind, since: SystemTime) -> anyhow::Result<Vec<SystemTime>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at FROM vendor_calls WHERE kind = ?1 AND at >= ?2 ORDER BY at",
            )?;
            stmt.query_map(params![kind.as_sql(), unix_ms(since)], |r| {
                r.get::<_, i64>(0).map(time)
            })?
            .collect()
        })
    }

    fn save_token(&self, token: &StoredToken) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO vendor_token (id, owner, access, ea, fetched_at, lifetime_s)
                 VALUES (1, ?5, ?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET owner = ?5, access = ?1, ea = ?2, fetched_at = ?3, lifetime_s = ?4",
                params![
                    token.access.expose_secret(),
                    token.ea,
                    unix_ms(token.fetched_at),
                    token.lifetime.as_secs() as i64,
                    token.owner
                ],
            )?;
            Ok(())
        })
    }

    fn load_token(&self, owner: &str) -> anyhow::Result<Option<StoredToken>> {
        self.with(|c| {
            c.query_row(
                "SELECT access, ea, fetched_at, lifetime_s, owner FROM vendor_token
                 WHERE id = 1 AND owner = ?1",
                [owner],
                |r| {
                    Ok(StoredToken {
                        access: SecretString::from(r.get::<_, String>(0)?),
                        ea: r.get(1)?,
                        fetched_at: time(r.get(2)?),
                        lifetime: Duration::from_secs(r.get::<_, i64>(3)?.max(0) as u64),
                        owner: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    fn forget_token(&self, access: &SecretString) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM vendor_token WHERE id = 1 AND access = ?1",
                params![access.expose_secret()],
            )?;
            Ok(())
        })
    }

    fn save_pause(&self, pause: &Pause) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO vendor_pause (id, until, reason) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET until = ?1, reason = ?2 WHERE until < ?1",
                params![unix_ms(pause.until), pause.reason],
            )?;
            Ok(())
        })
    }

    fn load_pause(&self, now: SystemTime) -> anyhow::Result<Option<Pause>> {
        self.with(|c| {
            c.query_row(
                "SELECT until, reason FROM vendor_pause WHERE id = 1 AND until > ?1",
                params![unix_ms(now)],
                |r| {
                    Ok(Pause {
                        until: time(r.get(0)?),
                        reason: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, SqliteLedger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("fx.db")).unwrap();
        (dir, ledger)
    }

    #[test]
    fn calls_are_kept_by_kind_and_read_back_from_a_moment_on() {
        let (_dir, ledger) = ledger();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        for s in 0..5 {
            ledger
                .record_call(CallKind::Send, t0 + Duration::from_secs(s))
                .unwrap();
        }
        ledger.record_call(CallKind::Token, t0).unwrap();
        let since = ledger
            .calls_since(CallKind::Send, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(
            since,
            [t0 + Duration::from_secs(3), t0 + Duration::from_secs(4)]
        );
        assert_eq!(ledger.calls_since(CallKind::Token, t0).unwrap(), [t0]);
        // An hour later the old ones are gone.
        ledger
            .record_call(CallKind::Send, t0 + Duration::from_secs(7200))
            .unwrap();
        assert_eq!(ledger.calls_since(CallKind::Send, t0).unwrap().len(), 1);
    }

    #[test]
    fn a_token_is_kept_and_forgotten_only_while_it_is_still_the_current_one() {
        let (_dir, ledger) = ledger();
        let token = |s: &str| StoredToken {
            owner: "app-1".into(),
            access: SecretString::from(s.to_string()),
            ea: "ea".into(),
            fetched_at: UNIX_EPOCH + Duration::from_secs(42),
            lifetime: Duration::from_secs(7200),
        };
        ledger.save_token(&token("tok-1")).unwrap();
        ledger.save_token(&token("tok-2")).unwrap();
        ledger.forget_token(&SecretString::from("tok-1")).unwrap();
        assert!(
            ledger.load_token("app-2").unwrap().is_none(),
            "never another app's token"
        );
        let kept = ledger.load_token("app-1").unwrap().expect("tok-2 kept");
        assert_eq!(kept.access.expose_secret(), "tok-2");
        assert_eq!(kept.fetched_at, UNIX_EPOCH + Duration::from_secs(42));
        assert!(!format!("{kept:?}").contains("tok-2"), "Debug hides it");
        ledger.forget_token(&SecretString::from("tok-2")).unwrap();
        assert!(ledger.load_token("app-1").unwrap().is_none());
    }

    #[test]
    fn a_pause_only_grows_and_ends_on_its_own() {
        let (_dir, ledger) = ledger();
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let pause = |s: u64, why: &str| Pause {
            until: at(s),
            reason: why.into(),
        };
        ledger.save_pause(&pause(100, "slow down")).unwrap();
        ledger.save_pause(&pause(50, "shorter")).unwrap();
        assert_eq!(
            ledger.load_pause(at(10)).unwrap(),
            Some(pause(100, "slow down"))
        );
        ledger.save_pause(&pause(200, "quota")).unwrap();
        assert_eq!(
            ledger.load_pause(at(10)).unwrap(),
            Some(pause(200, "quota"))
        );
        assert_eq!(ledger.load_pause(at(200)).unwrap(), None);
    }
}
