//! `fxhook store copy`: moves a stopped SQLite store into an empty Postgres store — events,
//! messages, attempts, delivery ids, and the vendor ledger (pacing, token, pause) — in one
//! Postgres transaction, then checks that every table holds as many rows as the source. A
//! failure leaves the target as empty as it was; a target that is not empty is refused.

use std::time::Instant;

use anyhow::{Context, bail};
use rusqlite::Connection;
use tokio_postgres::types::ToSql;

use super::postgres::Postgres;
use super::sqlite::Sqlite;

/// The tables copied, in an order that keeps every reference valid, with their columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "events",
        &[
            ("id", Kind::Text),
            ("source", Kind::Text),
            ("event_type", Kind::Text),
            ("delivery_id", Kind::Text),
            ("received_at", Kind::Int),
            ("headers", Kind::Text),
            // Copied encoded, codec and all: both stores read every codec.
            ("payload", Kind::Bytes),
            ("payload_codec", Kind::Text),
            ("state", Kind::Text),
            ("rule", Kind::Text),
            ("error", Kind::Text),
        ],
    ),
    (
        "messages",
        &[
            ("id", Kind::Int),
            ("event_id", Kind::Text),
            ("seq", Kind::Int),
            ("body", Kind::Text),
            ("state", Kind::Text),
            ("attempts", Kind::Int),
            ("next_attempt_at", Kind::Int),
            ("last_error", Kind::Text),
            ("created_at", Kind::Int),
            ("updated_at", Kind::Int),
            ("send_order", Kind::Int4),
            ("coalesce_key", Kind::Text),
            ("coalesce_window_ms", Kind::Int),
            ("fold_key", Kind::Text),
            ("fold_state", Kind::Text),
            ("suppressed_before", Kind::Int),
            ("digest_id", Kind::Int),
            ("own_body", Kind::Text),
            ("merge_spec", Kind::Text),
        ],
    ),
    (
        "repeats",
        &[
            ("source", Kind::Text),
            ("rule", Kind::Text),
            ("key", Kind::Text),
            ("until", Kind::Int),
            ("suppressed", Kind::Int),
        ],
    ),
    (
        "attempts",
        &[
            ("id", Kind::Int),
            ("message_id", Kind::Int),
            ("started_at", Kind::Int),
            ("finished_at", Kind::Int),
            ("outcome", Kind::Text),
            ("http_status", Kind::Int4),
            ("error_code", Kind::Int),
            ("error_message", Kind::Text),
            ("trace_id", Kind::Text),
            ("third_trace_id", Kind::Text),
        ],
    ),
    (
        "dedup",
        &[
            ("source", Kind::Text),
            ("delivery_id", Kind::Text),
            ("event_id", Kind::Text),
            ("seen_at", Kind::Int),
        ],
    ),
    ("vendor_calls", &[("kind", Kind::Text), ("at", Kind::Int)]),
    (
        "vendor_token",
        &[
            ("id", Kind::Int4),
            ("owner", Kind::Text),
            ("access", Kind::Text),
            ("ea", Kind::Text),
            ("fetched_at", Kind::Int),
            ("lifetime_s", Kind::Int),
        ],
    ),
    (
        "vendor_pause",
        &[
            ("id", Kind::Int4),
            ("until", Kind::Int),
            ("reason", Kind::Text),
        ],
    ),
    ("meta", &[("key", Kind::Text), ("value", Kind::Text)]),
];

/// A column's type on both sides.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// TEXT.
    Text,
    /// INTEGER in SQLite, BIGINT in Postgres.
    Int,
    /// INTEGER in both.
    Int4,
    /// BLOB / BYTEA.
    Bytes,
}

/// One column of a chunk, as the Postgres array `unnest` takes.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Int4(Vec<Option<i32>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Column {
    fn new(kind: Kind) -> Column {
        match kind {
            Kind::Text => Column::Text(Vec::new()),
            Kind::Int => Column::Int(Vec::new()),
            Kind::Int4 => Column::Int4(Vec::new()),
            Kind::Bytes => Column::Bytes(Vec::new()),
        }
    }

    fn push(&mut self, row: &rusqlite::Row, i: usize) -> rusqlite::Result<()> {
        match self {
            Column::Text(v) => v.push(row.get(i)?),
            Column::Int(v) => v.push(row.get(i)?),
            Column::Int4(v) => v.push(row.get(i)?),
            Column::Bytes(v) => v.push(row.get(i)?),
        }
        Ok(())
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Text(v) => v,
            Column::Int(v) => v,
            Column::Int4(v) => v,
            Column::Bytes(v) => v,
        }
    }

    fn pg_array(kind: Kind) -> &'static str {
        match kind {
            Kind::Text => "TEXT[]",
            Kind::Int => "BIGINT[]",
            Kind::Int4 => "INTEGER[]",
            Kind::Bytes => "BYTEA[]",
        }
    }
}

/// What a copy moved, table by table.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// (table, rows) in copy order.
    pub tables: Vec<(String, u64)>,
    /// How long it took.
    pub seconds: f64,
}

/// Rows read and written per statement.
const CHUNK: usize = 1000;

/// Copies every row of `from` into `to`, which must be empty. Call it off the async threads.
///
/// # Errors
/// The target is not empty, a read or write fails, or the counts differ after the copy (then
/// nothing is committed).
pub fn sqlite_to_postgres(from: &Sqlite, to: &Postgres) -> anyhow::Result<CopyReport> {
    let started = Instant::now();
    let source = from.conn()?;
    to.run(async {
        let mut client = to.client().await?;
        let tx = client.transaction().await?;
        for (table, _) in TABLES {
            let n: i64 = tx
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await?
                .get(0);
            if n > 0 {
                bail!(
                    "the target store is not empty ({table} has {n} rows): copy into a new database"
                );
            }
        }
        let mut report = CopyReport::default();
        for (table, columns) in TABLES {
            let copied = copy_table(&source, &tx, table, columns).await?;
            let counted: i64 = tx
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
                .await?
                .get(0);
            if counted as u64 != copied {
                bail!("{table}: {copied} rows read, {counted} in the target: nothing committed");
            }
            report.tables.push((table.to_string(), copied));
        }
        // New messages and attempts continue after the copied ids.
        for table in ["messages", "attempts"] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                   COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )
            .await?;
        }
        tx.commit().await.context("cannot commit the copy")?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    })
}

async fn copy_table(
    source: &Connection,
    tx: &deadpool_postgres::Transaction<'_>,
    table: &str,
    columns: &[(&str, Kind)],
) -> anyhow::Result<u64> {
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let select = format!(
        "SELECT rowid, {} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT {CHUNK}",
        names.join(", ")
    );
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, k))| format!("${}::{}", i + 1, Column::pg_array(*k)))
        .collect();
    let insert = format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({})",
        names.join(", "),
        arrays.join(", ")
    );
    let mut stmt = source
        .prepare(&select)
        .with_context(|| format!("cannot read {table} from the SQLite store"))?;
    let (mut after, mut total) = (0i64, 0u64);
    loop {
        let mut chunk: Vec<Column> = columns.iter().map(|(_, k)| Column::new(*k)).collect();
        let mut last = None;
        let mut rows = stmt.query([after])?;
        while let Some(row) = rows.next()? {
            last = Some(row.get::<_, i64>(0)?);
            for (i, column) in chunk.iter_mut().enumerate() {
                column.push(row, i + 1)?;
            }
        }
        let Some(last) = last else {
            return Ok(total);
        };
        drop(rows);
        let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().map(Column::param).collect();
        total += tx
            .execute(&insert, &params)
            .await
            .with_context(|| format!("cannot write {table} to the Postgres store"))?;
        after = last;
    }
}
