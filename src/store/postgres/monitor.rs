//! Readiness and gauges on Postgres. The size is what the database itself counts for
//! fxhook's tables (`pg_total_relation_size`: rows, indexes and TOAST), so that
//! `store.max_bytes` means the same as on SQLite even in a database shared with others.

use super::Postgres;
use crate::store::{Monitor, QueueStats, from_unix_ms};

const TABLES: &[&str] = &[
    "events",
    "messages",
    "attempts",
    "dedup",
    "vendor_calls",
    "vendor_token",
    "vendor_pause",
    "meta",
];

impl Monitor for Postgres {
    fn ping(&self) -> anyhow::Result<()> {
        self.run(async {
            self.client().await?.query_one("SELECT 1", &[]).await?;
            Ok(())
        })
    }

    fn queue_stats(&self) -> anyhow::Result<QueueStats> {
        self.run(async {
            let row = self
                .client()
                .await?
                .query_one(
                    "SELECT COUNT(*) FILTER (WHERE state = 'queued'),
                            COUNT(*) FILTER (WHERE state = 'in-flight'),
                            MIN(created_at) FILTER (WHERE state = 'queued')
                     FROM messages WHERE state IN ('queued', 'in-flight')",
                    &[],
                )
                .await?;
            Ok(QueueStats {
                queued: row.get::<_, i64>(0).max(0) as u64,
                in_flight: row.get::<_, i64>(1).max(0) as u64,
                oldest_queued: row.get::<_, Option<i64>>(2).map(from_unix_ms),
            })
        })
    }

    fn size_bytes(&self) -> anyhow::Result<u64> {
        self.run(async {
            let bytes: i64 = self
                .client()
                .await?
                .query_one(
                    "SELECT COALESCE(SUM(pg_total_relation_size(t::regclass)), 0)::BIGINT
                     FROM unnest($1::TEXT[]) AS t",
                    &[&TABLES],
                )
                .await?
                .get(0);
            Ok(bytes.max(0) as u64)
        })
    }

    fn integrity_check(&self) -> anyhow::Result<Option<String>> {
        // Postgres checks its own pages (checksums, WAL); a read that fails says so itself.
        self.ping().map(|()| None)
    }
}
