//! The vendor ledger on Postgres: call times, the kept token, the pause.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::Postgres;
use crate::store::vendor::{CallKind, KEEP_CALLS, Pause, StoredToken, VendorLedger};
use crate::store::{from_unix_ms, unix_ms};

impl VendorLedger for Postgres {
    fn record_call(&self, kind: CallKind, at: SystemTime) -> anyhow::Result<()> {
        self.run(async {
            let client = self.client().await?;
            // One statement (one commit); the time taken when it runs, never before `at`.
            let at = unix_ms(at.max(SystemTime::now()));
            client
                .execute(
                    "WITH old AS (DELETE FROM vendor_calls WHERE kind = $1 AND at < $3)
                     INSERT INTO vendor_calls (kind, at) VALUES ($1, $2)",
                    &[&kind.as_str(), &at, &(at - KEEP_CALLS.as_millis() as i64)],
                )
                .await?;
            Ok(())
        })
    }

    fn calls_since(&self, kind: CallKind, since: SystemTime) -> anyhow::Result<Vec<SystemTime>> {
        self.run(async {
            let rows = self
                .client()
                .await?
                .query(
                    "SELECT at FROM vendor_calls WHERE kind = $1 AND at >= $2 ORDER BY at",
                    &[&kind.as_str(), &unix_ms(since)],
                )
                .await?;
            Ok(rows.iter().map(|r| from_unix_ms(r.get(0))).collect())
        })
    }

    fn save_token(&self, token: &StoredToken) -> anyhow::Result<()> {
        self.run(async {
            self.client()
                .await?
                .execute(
                    "INSERT INTO vendor_token (id, owner, access, ea, fetched_at, lifetime_s)
                     VALUES (1, $1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO UPDATE SET owner = $1, access = $2, ea = $3,
                                                    fetched_at = $4, lifetime_s = $5",
                    &[
                        &token.owner,
                        &token.access.expose_secret(),
                        &token.ea,
                        &unix_ms(token.fetched_at),
                        &(token.lifetime.as_secs() as i64),
                    ],
                )
                .await?;
            Ok(())
        })
    }

    fn load_token(&self, owner: &str) -> anyhow::Result<Option<StoredToken>> {
        self.run(async {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT access, ea, fetched_at, lifetime_s, owner FROM vendor_token
                     WHERE id = 1 AND owner = $1",
                    &[&owner],
                )
                .await?;
            Ok(row.map(|r| StoredToken {
                access: SecretString::from(r.get::<_, String>(0)),
                ea: r.get(1),
                fetched_at: from_unix_ms(r.get(2)),
                lifetime: Duration::from_secs(r.get::<_, i64>(3).max(0) as u64),
                owner: r.get(4),
            }))
        })
    }

    fn forget_token(&self, access: &SecretString) -> anyhow::Result<()> {
        self.run(async {
            self.client()
                .await?
                .execute(
                    "DELETE FROM vendor_token WHERE id = 1 AND access = $1",
                    &[&access.expose_secret()],
                )
                .await?;
            Ok(())
        })
    }

    fn save_pause(&self, pause: &Pause) -> anyhow::Result<()> {
        self.run(async {
            self.client()
                .await?
                .execute(
                    "INSERT INTO vendor_pause (id, until, reason) VALUES (1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET until = $1, reason = $2
                     WHERE vendor_pause.until < $1",
                    &[&unix_ms(pause.until), &pause.reason],
                )
                .await?;
            Ok(())
        })
    }

    fn load_pause(&self, now: SystemTime) -> anyhow::Result<Option<Pause>> {
        self.run(async {
            let row = self
                .client()
                .await?
                .query_opt(
                    "SELECT until, reason FROM vendor_pause WHERE id = 1 AND until > $1",
                    &[&unix_ms(now)],
                )
                .await?;
            Ok(row.map(|r| Pause {
                until: from_unix_ms(r.get(0)),
                reason: r.get(1),
            }))
        })
    }
}
