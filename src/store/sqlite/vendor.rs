//! The vendor ledger in the embedded store: call times, the kept token, the pause.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use secrecy::{ExposeSecret, SecretString};

use super::Sqlite;
use crate::store::vendor::{CallKind, KEEP_CALLS, Pause, StoredToken, VendorLedger};
use crate::store::{from_unix_ms, unix_ms};

impl Sqlite {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        f(&*self.conn()?).context("vendor ledger")
    }
}

/// The ledger needs no process lock: `fxhook send-test` may share it (and so the token and the
/// limits) with a running gateway.
impl VendorLedger for Sqlite {
    fn record_call(&self, kind: CallKind, at: SystemTime) -> anyhow::Result<()> {
        let mut conn = self.conn()?;
        // One transaction, and the time taken once the write lock is held: a call waits for
        // this write, so it cannot start before the time written (a busy store may make the
        // wait long).
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let at = unix_ms(at.max(SystemTime::now()));
        tx.prepare_cached("DELETE FROM vendor_calls WHERE kind = ?1 AND at < ?2")?
            .execute(params![kind.as_str(), at - KEEP_CALLS.as_millis() as i64])?;
        tx.prepare_cached("INSERT INTO vendor_calls (kind, at) VALUES (?1, ?2)")?
            .execute(params![kind.as_str(), at])?;
        tx.commit().context("vendor ledger")?;
        Ok(())
    }

    fn calls_since(&self, kind: CallKind, since: SystemTime) -> anyhow::Result<Vec<SystemTime>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at FROM vendor_calls WHERE kind = ?1 AND at >= ?2 ORDER BY at",
            )?;
            stmt.query_map(params![kind.as_str(), unix_ms(since)], |r| {
                r.get::<_, i64>(0).map(from_unix_ms)
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
                        fetched_at: from_unix_ms(r.get(2)?),
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
                        until: from_unix_ms(r.get(0)?),
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
    use std::time::{Duration, UNIX_EPOCH};

    fn ledger() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Sqlite::open(&dir.path().join("fx.db")).unwrap();
        (dir, ledger)
    }

    #[test]
    fn calls_are_kept_by_kind_and_read_back_from_a_moment_on() {
        let (_dir, ledger) = ledger();
        // In the future: a call is never written earlier than the moment it is written.
        let t0 = from_unix_ms(unix_ms(SystemTime::now() + Duration::from_secs(3600)));
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
