//! A Postgres database of its own for each test: [`TestDb::new`] creates `fxhook_t_<uuid>` on
//! the server at `FXHOOK_TEST_DATABASE_URL` and drops it (with its sessions) when dropped.
//!
//! Every statement runs on a thread of its own with a runtime of its own, so the helper works
//! the same from a plain `#[test]`, an `#[actix_rt::test]` and from inside a gateway's runtime.
//! No server is never a skip: the test fails and says how to start one.

use std::time::Duration;

/// The server the tests use when `FXHOOK_TEST_DATABASE_URL` is not set.
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The URL of the server the tests create their databases on.
pub fn server_url() -> String {
    std::env::var("FXHOOK_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string())
}

/// A database of one test, dropped with it.
pub struct TestDb {
    /// Its name (`fxhook_t_<uuid>`).
    pub name: String,
    /// Its URL: the server's, naming this database.
    pub url: String,
    /// The server's URL (statements about the database run there).
    server: String,
}

impl TestDb {
    /// Creates a fresh, empty database.
    ///
    /// Panics, naming `FXHOOK_TEST_DATABASE_URL` and how to start a server, when none answers.
    pub fn new() -> TestDb {
        let server = server_url();
        let name = format!("fxhook_t_{}", uuid::Uuid::new_v4().simple());
        if let Err(e) = simple_query(&server, &format!("CREATE DATABASE {name}")) {
            panic!(
                "no Postgres to test with at FXHOOK_TEST_DATABASE_URL={server} ({e}). Start one: \
                 scripts/test.sh installs and starts Debian's postgresql when none answers, or run \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`; or set \
                 FXHOOK_TEST_DATABASE_URL to a server where this user may CREATE DATABASE"
            );
        }
        let url = with_database(&server, &name);
        TestDb { name, url, server }
    }

    /// Runs `sql` (one or more statements) in this database.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = simple_query(&self.url, sql) {
            panic!("{sql}: {e}");
        }
    }

    /// The first column of the first row of `sql`, as an integer.
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.query_strings(sql)
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{sql} gave no integer"))
    }

    /// The first column of every row of `sql`, as text (`NULL` as an empty string).
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        simple_query(&self.url, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .map(|row| row.into_iter().next().flatten().unwrap_or_default())
            .collect()
    }

    /// Ends every session connected to this database (as a failover or an operator would),
    /// waiting until each has exited; returns how many there were.
    pub fn terminate_sessions(&self) -> usize {
        let rows = simple_query(
            &self.server,
            &format!(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ),
        )
        .unwrap_or_else(|e| panic!("cannot end the sessions of {}: {e}", self.name));
        rows.len()
    }

    /// How many sessions are connected to this database.
    pub fn sessions(&self) -> i64 {
        let rows = simple_query(
            &self.server,
            &format!(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ),
        )
        .unwrap_or_else(|e| panic!("cannot count the sessions of {}: {e}", self.name));
        rows.first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    /// Lets new sessions connect to this database, or refuses them (the database as
    /// unreachable to its clients while the server itself still answers).
    pub fn allow_connections(&self, allow: bool) {
        let sql = format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", self.name);
        if let Err(e) = simple_query(&self.server, &sql) {
            panic!("{sql}: {e}");
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = simple_query(&self.server, &sql) {
            eprintln!("the test database {} is left behind: {e}", self.name);
        }
    }
}

/// `url` naming the database `name` instead of its own (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// Rows as text, by column (`None` for `NULL`).
type Rows = Vec<Vec<Option<String>>>;

/// Every row of every statement of `sql`, as text, on a connection of its own made on a
/// thread of its own.
fn simple_query(url: &str, sql: &str) -> Result<Rows, String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || -> Result<Rows, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime for the test database: {e}"))?;
        rt.block_on(async move {
            let mut config: tokio_postgres::Config = url
                .parse()
                .map_err(|e| format!("not a Postgres URL: {e}"))?;
            config.connect_timeout(Duration::from_secs(5));
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("{e}"))?;
            let driver = tokio::spawn(connection);
            let messages = client.simple_query(&sql).await.map_err(|e| {
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_string())
            });
            drop(client);
            let _ = driver.await;
            Ok(messages?
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the test database thread panicked".into()))
}

#[test]
fn a_test_database_is_created_empty_and_dropped_with_the_sessions_still_on_it() {
    let db = TestDb::new();
    assert!(db.url.ends_with(&format!("/{}", db.name)), "{}", db.url);
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'"),
        0
    );
    db.execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2)");
    assert_eq!(db.query_i64("SELECT SUM(n) FROM t"), 3);
    let url = db.url.clone();
    let session = std::thread::spawn(move || simple_query(&url, "SELECT pg_sleep(60)"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while db.sessions() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never began"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (name, other) = (db.name.clone(), TestDb::new());

    drop(db);

    assert!(session.join().unwrap().is_err(), "its session was ended");
    let left = other.query_strings(&format!(
        "SELECT datname FROM pg_database WHERE datname = '{name}'"
    ));
    assert!(left.is_empty(), "{name} is dropped");
}

#[test]
fn a_database_url_keeps_its_server_user_and_parameters() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@db:5433/test?sslmode=disable", "x"),
        "postgres://u:p@db:5433/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://db", "x"), "postgres://db/x");
}
