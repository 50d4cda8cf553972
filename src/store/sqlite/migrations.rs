//! The schema, as an ordered list of forward migrations. `PRAGMA user_version` records how many
//! have run; start-up applies the rest in one transaction. Never edit a released migration:
//! append a new one.

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: events, the messages rendered from them, every delivery attempt, and delivery ids.
    r#"
    CREATE TABLE events (
        id           TEXT PRIMARY KEY,          -- returned to the sender in the 202
        source       TEXT NOT NULL,
        event_type   TEXT,
        delivery_id  TEXT,
        received_at  INTEGER NOT NULL,          -- unix milliseconds
        headers      TEXT NOT NULL,             -- JSON object, credentials removed
        payload      BLOB NOT NULL,             -- the verified JSON payload, as received
        state        TEXT NOT NULL CHECK (state IN ('mapped', 'failed')),
        rule         TEXT,                      -- the mapping rule that matched
        error        TEXT                       -- why mapping failed
    );
    CREATE INDEX events_by_time ON events (received_at);
    CREATE INDEX events_by_state ON events (state, received_at);

    CREATE TABLE messages (
        id               INTEGER PRIMARY KEY,
        event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        seq              INTEGER NOT NULL,      -- position among the event's messages
        body             TEXT NOT NULL,         -- the exact /cgi/message/send body
        state            TEXT NOT NULL
                         CHECK (state IN ('queued', 'in-flight', 'delivered', 'failed', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,      -- unix milliseconds
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        UNIQUE (event_id, seq)
    );
    CREATE INDEX messages_due ON messages (state, next_attempt_at);
    CREATE INDEX messages_by_event ON messages (event_id);

    CREATE TABLE attempts (
        id              INTEGER PRIMARY KEY,
        message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER NOT NULL,
        outcome         TEXT NOT NULL,          -- delivered, dry-run, retry, dead, …
        http_status     INTEGER,
        error_code      INTEGER,
        error_message   TEXT,
        trace_id        TEXT,                   -- the vendor's
        third_trace_id  TEXT                    -- ours
    );
    CREATE INDEX attempts_by_message ON attempts (message_id);

    CREATE TABLE dedup (
        source       TEXT NOT NULL,
        delivery_id  TEXT NOT NULL,
        event_id     TEXT NOT NULL,
        seen_at      INTEGER NOT NULL,          -- unix milliseconds
        PRIMARY KEY (source, delivery_id)
    );
    CREATE INDEX dedup_by_time ON dedup (seen_at);
    "#,
    // 2: what the delivery worker must remember across restarts (the vendor's limits are per
    //    app, not per process), the cached access token (a secret at rest: read only by the
    //    vendor client, never by the admin API), and small facts about the store itself.
    r#"
    CREATE TABLE vendor_calls (
        kind  TEXT NOT NULL CHECK (kind IN ('send', 'token')),
        at    INTEGER NOT NULL                  -- unix milliseconds, written before the call
    );
    CREATE INDEX vendor_calls_by_kind ON vendor_calls (kind, at);

    CREATE TABLE vendor_token (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        owner       TEXT NOT NULL,              -- fingerprint of the credentials it was issued to
        access      TEXT NOT NULL,
        ea          TEXT NOT NULL,
        fetched_at  INTEGER NOT NULL,           -- unix milliseconds
        lifetime_s  INTEGER NOT NULL
    );

    CREATE TABLE vendor_pause (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        until   INTEGER NOT NULL,               -- unix milliseconds
        reason  TEXT NOT NULL
    );

    CREATE TABLE meta (
        key    TEXT PRIMARY KEY,
        value  TEXT NOT NULL
    );
    "#,
    // 3: message and attempt ids are never given twice (AUTOINCREMENT): an id an admin saw, or a
    //    log line named, must not come to mean another message after a re-map or a prune.
    r#"
    CREATE TABLE messages_v3 (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id         TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        seq              INTEGER NOT NULL,
        body             TEXT NOT NULL,
        state            TEXT NOT NULL
                         CHECK (state IN ('queued', 'in-flight', 'delivered', 'failed', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        UNIQUE (event_id, seq)
    );
    INSERT INTO messages_v3 (id, event_id, seq, body, state, attempts, next_attempt_at,
                             last_error, created_at, updated_at)
        SELECT id, event_id, seq, body, state, attempts, next_attempt_at,
               last_error, created_at, updated_at FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v3 RENAME TO messages;
    CREATE INDEX messages_due ON messages (state, next_attempt_at);
    CREATE INDEX messages_by_event ON messages (event_id);

    CREATE TABLE attempts_v3 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER NOT NULL,
        outcome         TEXT NOT NULL,
        http_status     INTEGER,
        error_code      INTEGER,
        error_message   TEXT,
        trace_id        TEXT,
        third_trace_id  TEXT
    );
    INSERT INTO attempts_v3 SELECT * FROM attempts;
    DROP TABLE attempts;
    ALTER TABLE attempts_v3 RENAME TO attempts;
    CREATE INDEX attempts_by_message ON attempts (message_id);
    "#,
    // 4: alert storms. A message may be merged into another one's digest (`coalesced`, with
    //    `digest_id`) or held back as a repeat (`suppressed`); it carries what the worker needs
    //    to merge it (`coalesce_key`, `coalesce_window_ms`, `fold_key`/`fold_state`), its
    //    priority, how many repeats were held back before it, and its own card when its body
    //    became a digest (`own_body`). `repeats` keeps the repeat windows across restarts.
    r#"
    CREATE TABLE messages_v4 (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id            TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        seq                 INTEGER NOT NULL,
        body                TEXT NOT NULL,
        state               TEXT NOT NULL
                            CHECK (state IN ('queued', 'in-flight', 'delivered', 'failed', 'dead',
                                             'coalesced', 'suppressed')),
        attempts            INTEGER NOT NULL DEFAULT 0,
        next_attempt_at     INTEGER NOT NULL,
        last_error          TEXT,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        send_order          INTEGER NOT NULL DEFAULT 1,  -- 0: priority high, sent first
        coalesce_key        TEXT,
        coalesce_window_ms  INTEGER,
        fold_key            TEXT,
        fold_state          TEXT,
        suppressed_before   INTEGER NOT NULL DEFAULT 0,
        digest_id           INTEGER,
        own_body            TEXT,
        merge_spec          TEXT,
        UNIQUE (event_id, seq)
    );
    INSERT INTO messages_v4 (id, event_id, seq, body, state, attempts, next_attempt_at,
                             last_error, created_at, updated_at)
        SELECT id, event_id, seq, body, state, attempts, next_attempt_at,
               last_error, created_at, updated_at FROM messages;
    -- Ids are never given twice: the new table goes on from the old one's sequence, not from
    -- the highest id left (pruned or re-mapped messages may have had higher ones).
    DELETE FROM sqlite_sequence WHERE name = 'messages_v4';
    INSERT INTO sqlite_sequence (name, seq) SELECT 'messages_v4', seq FROM sqlite_sequence
        WHERE name = 'messages';
    DROP TABLE messages;
    ALTER TABLE messages_v4 RENAME TO messages;
    CREATE INDEX messages_due ON messages (state, send_order, next_attempt_at);
    CREATE INDEX messages_by_event ON messages (event_id);
    CREATE INDEX messages_coalescing ON messages (coalesce_key, state) WHERE coalesce_key IS NOT NULL;
    CREATE INDEX messages_folding ON messages (fold_key, state) WHERE fold_key IS NOT NULL;
    CREATE INDEX messages_by_digest ON messages (digest_id) WHERE digest_id IS NOT NULL;

    CREATE TABLE repeats (
        source      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        key         TEXT NOT NULL,
        until       INTEGER NOT NULL,           -- unix ms: the end of the window a card opened
        suppressed  INTEGER NOT NULL DEFAULT 0, -- repeats held back in it
        PRIMARY KEY (source, rule, key)
    );
    "#,
    // 5: a cheaper ingest (issue 20). Payloads are stored zstd-compressed: `payload_codec`
    //    says how each row's payload is encoded; rows written before stay `identity`, as they
    //    are. Indexes no query needs are dropped, one B-tree insert fewer each:
    //    `messages_by_event` (the unique (event_id, seq) index serves every lookup by event and
    //    the cascade), `events_by_state` (retention reads `events_by_time` instead; the admin
    //    list never used it) and `dedup_by_time` (delivery ids are forgotten oldest rowid
    //    first, see `forget_delivery_ids`).
    r#"
    ALTER TABLE events ADD COLUMN payload_codec TEXT NOT NULL DEFAULT 'identity'
        CHECK (payload_codec IN ('identity', 'zstd'));
    DROP INDEX messages_by_event;
    DROP INDEX events_by_state;
    DROP INDEX dedup_by_time;
    "#,
    // 6: dropping payloads after `delivery.keep_payloads` reads only the events that still
    //    hold one. Through `events_by_time` every batch of 500 read every older event again,
    //    payload dropped or not: with the defaults (payloads 24 h, events 7 days) six days of
    //    events a batch, with the write lock held (found by bench/soak: the drop fell behind at
    //    6k events/s).
    r#"
    CREATE INDEX events_with_payload ON events (received_at)
        WHERE state = 'mapped' AND length(payload) > 0;
    "#,
];
