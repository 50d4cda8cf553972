//! The Postgres schema, as an ordered list of forward migrations, applied at start-up in one
//! transaction under an advisory lock: two processes starting together never race, and a store
//! written by a newer version is refused. Never edit a released migration: append a new one.
//!
//! The tables mirror the SQLite store's (times as unix milliseconds in `BIGINT`), so that both
//! backends answer the admin API alike and `fxhook store copy` moves rows as they are.

use anyhow::Context;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store has after its second migration.
    r#"
    CREATE TABLE events (
        id           TEXT PRIMARY KEY,
        source       TEXT NOT NULL,
        event_type   TEXT,
        delivery_id  TEXT,
        received_at  BIGINT NOT NULL,
        headers      TEXT NOT NULL,
        payload      BYTEA NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('mapped', 'failed')),
        rule         TEXT,
        error        TEXT
    );
    CREATE INDEX events_by_time ON events (received_at);
    CREATE INDEX events_by_state ON events (state, received_at);

    CREATE TABLE messages (
        id               BIGSERIAL PRIMARY KEY,
        event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        seq              BIGINT NOT NULL,
        body             TEXT NOT NULL,
        state            TEXT NOT NULL
                         CHECK (state IN ('queued', 'in-flight', 'delivered', 'failed', 'dead')),
        attempts         BIGINT NOT NULL DEFAULT 0,
        next_attempt_at  BIGINT NOT NULL,
        last_error       TEXT,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL,
        UNIQUE (event_id, seq)
    );
    CREATE INDEX messages_due ON messages (state, next_attempt_at);
    CREATE INDEX messages_by_event ON messages (event_id);

    CREATE TABLE attempts (
        id              BIGSERIAL PRIMARY KEY,
        message_id      BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        started_at      BIGINT NOT NULL,
        finished_at     BIGINT NOT NULL,
        outcome         TEXT NOT NULL,
        http_status     INTEGER,
        error_code      BIGINT,
        error_message   TEXT,
        trace_id        TEXT,
        third_trace_id  TEXT
    );
    CREATE INDEX attempts_by_message ON attempts (message_id);

    CREATE TABLE dedup (
        source       TEXT NOT NULL,
        delivery_id  TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        seen_at      BIGINT NOT NULL,
        PRIMARY KEY (source, delivery_id)
    );
    CREATE INDEX dedup_by_time ON dedup (seen_at);

    CREATE TABLE vendor_calls (
        kind  TEXT NOT NULL CHECK (kind IN ('send', 'token')),
        at    BIGINT NOT NULL
    );
    CREATE INDEX vendor_calls_by_kind ON vendor_calls (kind, at);

    CREATE TABLE vendor_token (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        owner       TEXT NOT NULL,
        access      TEXT NOT NULL,
        ea          TEXT NOT NULL,
        fetched_at  BIGINT NOT NULL,
        lifetime_s  BIGINT NOT NULL
    );

    CREATE TABLE vendor_pause (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        until   BIGINT NOT NULL,
        reason  TEXT NOT NULL
    );

    CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    "#,
    // 2: the delivery lease: the replica that sends, until when (the database's clock).
    r#"
    CREATE TABLE delivery_lease (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        holder      TEXT NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL
    );
    "#,
    // 3: alert storms (as SQLite's migration 4): merged and suppressed messages, what the
    //    worker needs to merge, priorities, and the repeat windows.
    r#"
    ALTER TABLE messages DROP CONSTRAINT messages_state_check;
    ALTER TABLE messages ADD CONSTRAINT messages_state_check
        CHECK (state IN ('queued', 'in-flight', 'delivered', 'failed', 'dead', 'coalesced', 'suppressed'));
    ALTER TABLE messages
        ADD COLUMN send_order          INTEGER NOT NULL DEFAULT 1,
        ADD COLUMN coalesce_key        TEXT,
        ADD COLUMN coalesce_window_ms  BIGINT,
        ADD COLUMN fold_key            TEXT,
        ADD COLUMN fold_state          TEXT,
        ADD COLUMN suppressed_before   BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN digest_id           BIGINT,
        ADD COLUMN own_body            TEXT,
        ADD COLUMN merge_spec          TEXT;
    DROP INDEX messages_due;
    CREATE INDEX messages_due ON messages (state, send_order, next_attempt_at);
    CREATE INDEX messages_coalescing ON messages (coalesce_key, state) WHERE coalesce_key IS NOT NULL;
    CREATE INDEX messages_folding ON messages (fold_key, state) WHERE fold_key IS NOT NULL;
    CREATE INDEX messages_by_digest ON messages (digest_id) WHERE digest_id IS NOT NULL;

    CREATE TABLE repeats (
        source      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        key         TEXT NOT NULL,
        until       BIGINT NOT NULL,
        suppressed  BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (source, rule, key)
    );
    "#,
    // 4: a cheaper ingest (as SQLite's migration 5). Payloads stored zstd-compressed:
    //    `payload_codec` says how each row's payload is encoded; rows written before stay
    //    `identity`. A frame is stored as it is: Postgres would only try (and fail) to compress
    //    it again. `messages_by_event` (the unique (event_id, seq) index serves every lookup by
    //    event and the cascade) and `events_by_state` (no plan needs it) are dropped;
    //    `dedup_by_time` stays, as Postgres rows have no insertion order to forget delivery ids
    //    by.
    r#"
    ALTER TABLE events ADD COLUMN payload_codec TEXT NOT NULL DEFAULT 'identity'
        CHECK (payload_codec IN ('identity', 'zstd'));
    ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL;
    DROP INDEX messages_by_event;
    DROP INDEX events_by_state;
    "#,
    // 5: dropping payloads after `delivery.keep_payloads` reads only the events that still
    //    hold one (as SQLite's migration 6): through `events_by_time` every batch read every
    //    older event again, payload dropped or not.
    r#"
    CREATE INDEX events_with_payload ON events (received_at)
        WHERE state = 'mapped' AND octet_length(payload) > 0;
    "#,
];

/// The schema version this build writes.
pub fn schema_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// The advisory-lock key of migrations (any fixed number; fxhook's own).
const MIGRATION_LOCK: i64 = 0x6678_686f_6f6b_0001;

/// Brings the schema forward, under an advisory lock held for the transaction.
///
/// # Errors
/// A store from a newer build, or a failed migration.
pub async fn migrate(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // Created only when missing (IF NOT EXISTS would log a notice at every start).
    let exists: bool = tx
        .query_one("SELECT to_regclass('fxhook_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        tx.batch_execute("CREATE TABLE fxhook_schema (version INTEGER NOT NULL)")
            .await?;
    }
    let current: i32 = tx
        .query_opt("SELECT version FROM fxhook_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    let target = schema_version();
    anyhow::ensure!(
        current <= target,
        "the store has schema version {current}, newer than this build's {target}: upgrade fxhook"
    );
    if current == target {
        return Ok(());
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {} failed", i + 1))?;
    }
    tx.execute("DELETE FROM fxhook_schema", &[]).await?;
    tx.execute(
        "INSERT INTO fxhook_schema (version) VALUES ($1)",
        &[&target],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(from = current, to = target, "store migrated");
    Ok(())
}
