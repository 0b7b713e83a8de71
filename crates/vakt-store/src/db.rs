//! The connection the store's SQL runs on: a SQLite or a PostgreSQL connection, a query with
//! its bound values, and a row read by column name (`Columns`: the one way the mappings of
//! stored rows read it, or a SQLite row read in place by position).
//!
//! Both schemas share table and column names, keep times as Unix milliseconds and maps as
//! JSON text, and sqlx understands `$N` placeholders on both, so each query is written once,
//! as a plain function over [`Conn`] (in `sql`, `dispatch` and `escalate`), and rustfmt,
//! clippy and go-to-definition see it. The few places where the backends' SQL differs are
//! methods of [`Conn`] ([`Conn::lock`], [`Conn::skip_locked`], [`Conn::newest_first`],
//! [`Conn::key_lock`]); a batch's rows take each backend's fastest bulk path
//! ([`Conn::write_rows`]). The cost is one `match` per statement, nothing next to the
//! statement itself.

use std::borrow::Cow;
use std::fmt::Write as _;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Row as _};

use crate::StoreError;
use crate::sql::{BatchRows, Value};

/// A connection (or a transaction's connection) of either backend.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(conn: &'c mut SqliteConnection) -> Self {
        Conn::Sqlite(conn)
    }
}

impl<'c> From<&'c mut PgConnection> for Conn<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        Conn::Postgres(conn)
    }
}

impl Conn<'_> {
    /// What a read that is about to change the rows it selects appends: PostgreSQL locks
    /// them for the transaction; on SQLite the one writer already serialises every write.
    pub(crate) fn lock(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "",
            Conn::Postgres(_) => " FOR UPDATE",
        }
    }

    /// What a claim's sub-select appends so that concurrent claimers take different rows.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "",
            Conn::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// What a dispatch query on `decided_actions` names after the table so that it walks
    /// the partial `index` of the rows it wants: SQLite's planner, without statistics,
    /// takes `decided_actions_status` instead and reads every pending action (every group
    /// member waiting for its message) in each claim and each look for due work.
    /// PostgreSQL's planner knows the partial index is the small one.
    pub(crate) fn indexed_by(&self, index: &str) -> String {
        match self {
            Conn::Sqlite(_) => sqlite_indexed_by(index),
            Conn::Postgres(_) => String::new(),
        }
    }

    /// The ORDER BY that lists an alert's events newest first along its index. SQLite's one
    /// writer inserts in id order, so rowid order is id order and cheaper to walk.
    pub(crate) fn newest_first(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "events.rowid DESC",
            Conn::Postgres(_) => "id DESC",
        }
    }

    /// A statement taking a text key (`$1`) that serialises transactions on that key until
    /// they end: PostgreSQL's advisory locks. `None` where one writer serialises everything.
    pub(crate) fn key_lock(&self) -> Option<&'static str> {
        match self {
            Conn::Sqlite(_) => None,
            Conn::Postgres(_) => Some("SELECT pg_advisory_xact_lock(hashtext($1))"),
        }
    }

    /// Writes a batch's rows: through SQLite's C API on SQLite (`sqlite_bulk`), as multi-row
    /// statements on PostgreSQL.
    pub(crate) async fn write_rows(&mut self, rows: &BatchRows<'_>) -> Result<(), StoreError> {
        if let Conn::Sqlite(conn) = self {
            return crate::sqlite::write_rows(conn, rows).await;
        }
        crate::queries::write_rows_generic(self, rows).await
    }
}

/// What a statement did.
pub(crate) struct Done {
    rows_affected: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement and the values bound to its placeholders, in order. [`Query::bind`] fills
/// placeholders written into the SQL (`$1`, `$2`, ...); [`Query::push_bind`] appends the next
/// placeholder itself, for statements built piece by piece.
pub(crate) struct Query<'a> {
    /// Static SQL stays borrowed, so sqlx sees the same `&'static str` it would be given
    /// directly; pieces pushed onto it make it owned.
    sql: Cow<'static, str>,
    args: Vec<Value<'a>>,
}

/// A statement with placeholders written in (`query("... WHERE id = $1").bind(id)`).
pub(crate) fn query<'a>(sql: impl Into<Cow<'static, str>>) -> Query<'a> {
    Query::new(sql)
}

impl<'a> Query<'a> {
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Query {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Binds the next placeholder written into the SQL.
    pub(crate) fn bind(mut self, value: impl Into<Value<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, sql: impl AsRef<str>) -> &mut Self {
        self.sql.to_mut().push_str(sql.as_ref());
        self
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn push_bind(&mut self, value: impl Into<Value<'a>>) -> &mut Self {
        self.args.push(value.into());
        // Writing to a String cannot fail.
        let _ = write!(self.sql.to_mut(), "${}", self.args.len());
        self
    }

    /// Appends placeholders separated by `separator` (`IN (...)` lists, a row's values).
    pub(crate) fn separated<'q>(&'q mut self, separator: &'static str) -> Separated<'q, 'a> {
        Separated {
            query: self,
            separator,
            first: true,
        }
    }

    /// Appends `VALUES (...), (...)` with one row per item.
    pub(crate) fn push_values<T, I>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        row: impl Fn(T) -> I,
    ) where
        I: IntoIterator<Item = Value<'a>>,
    {
        self.push("VALUES ");
        for (n, item) in items.into_iter().enumerate() {
            self.push(if n == 0 { "(" } else { ", (" });
            let mut values = self.separated(", ");
            for value in row(item) {
                values.push_bind(value);
            }
            self.push(")");
        }
    }

    fn sqlite(self) -> sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        let mut query = match self.sql {
            Cow::Borrowed(sql) => sqlx::query(sql),
            Cow::Owned(sql) => sqlx::query(AssertSqlSafe(sql)),
        };
        for value in self.args {
            query = match value {
                Value::Text(None) => query.bind(None::<&str>),
                Value::Text(Some(Cow::Borrowed(text))) => query.bind(text),
                Value::Text(Some(Cow::Owned(text))) => query.bind(text),
                Value::Int(number) => query.bind(number),
                Value::Bool(flag) => query.bind(flag),
            };
        }
        query
    }

    fn postgres(self) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let mut query = match self.sql {
            Cow::Borrowed(sql) => sqlx::query(sql),
            Cow::Owned(sql) => sqlx::query(AssertSqlSafe(sql)),
        };
        for value in self.args {
            query = match value {
                Value::Text(None) => query.bind(None::<&str>),
                Value::Text(Some(Cow::Borrowed(text))) => query.bind(text),
                Value::Text(Some(Cow::Owned(text))) => query.bind(text),
                Value::Int(number) => query.bind(number),
                Value::Bool(flag) => query.bind(flag),
            };
        }
        query
    }

    pub(crate) async fn execute(self, conn: &mut Conn<'_>) -> Result<Done, sqlx::Error> {
        let rows_affected = match conn {
            Conn::Sqlite(c) => self.sqlite().execute(&mut **c).await?.rows_affected(),
            Conn::Postgres(c) => self.postgres().execute(&mut **c).await?.rows_affected(),
        };
        Ok(Done { rows_affected })
    }

    pub(crate) async fn fetch_all(self, conn: &mut Conn<'_>) -> Result<Vec<Row>, sqlx::Error> {
        Ok(match conn {
            Conn::Sqlite(c) => self
                .sqlite()
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
            Conn::Postgres(c) => self
                .postgres()
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
        })
    }

    pub(crate) async fn fetch_optional(
        self,
        conn: &mut Conn<'_>,
    ) -> Result<Option<Row>, sqlx::Error> {
        Ok(match conn {
            Conn::Sqlite(c) => self
                .sqlite()
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Sqlite),
            Conn::Postgres(c) => self
                .postgres()
                .fetch_optional(&mut **c)
                .await?
                .map(Row::Postgres),
        })
    }

    pub(crate) async fn fetch_one(self, conn: &mut Conn<'_>) -> Result<Row, sqlx::Error> {
        Ok(match conn {
            Conn::Sqlite(c) => Row::Sqlite(self.sqlite().fetch_one(&mut **c).await?),
            Conn::Postgres(c) => Row::Postgres(self.postgres().fetch_one(&mut **c).await?),
        })
    }
}

/// Placeholders appended with a separator between them (`Query::separated`).
pub(crate) struct Separated<'q, 'a> {
    query: &'q mut Query<'a>,
    separator: &'static str,
    first: bool,
}

impl<'a> Separated<'_, 'a> {
    pub(crate) fn push_bind(&mut self, value: impl Into<Value<'a>>) -> &mut Self {
        if !self.first {
            self.query.push(self.separator);
        }
        self.first = false;
        self.query.push_bind(value);
        self
    }
}

/// SQLite's hint that a statement walks `index` (`Conn::indexed_by`'s; also for statements
/// run on a locked SQLite connection, which has no `Conn`).
pub(crate) fn sqlite_indexed_by(index: &str) -> String {
    format!(" INDEXED BY {index}")
}

/// A row of either backend.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    /// The value of the column `name`, decoded as `T`.
    pub(crate) fn try_get<'r, T: Column<'r>>(&'r self, name: &str) -> Result<T, sqlx::Error> {
        match self {
            Row::Sqlite(row) => T::sqlite(row, name),
            Row::Postgres(row) => T::postgres(row, name),
        }
    }
}

/// A row as the mappings of stored rows read it (`queries::alert_from_row`,
/// `queries::event_from_row`, `dispatch::record_from_row`): sqlx's rows of either backend by
/// column name, or a SQLite row read in place (`sqlite_bulk::RowView`) by position. A
/// mapping gives every column both, from its statement's column list, so one mapping serves
/// both ways of reading and a column added to the list is read the same way by each.
pub(crate) trait Columns {
    /// Column `at` of the statement's column list, named `name`, as text; `None` when NULL.
    fn text(&self, at: usize, name: &str) -> Result<Option<&str>, StoreError>;
    /// The same as an integer.
    fn int(&self, at: usize, name: &str) -> Result<Option<i64>, StoreError>;
    /// The same as a flag (PostgreSQL's `BOOLEAN`, SQLite's 0 or 1).
    fn flag(&self, at: usize, name: &str) -> Result<bool, StoreError>;

    /// Text a row always has: an error naming the column when NULL.
    fn required_text(&self, at: usize, name: &str) -> Result<&str, StoreError> {
        self.text(at, name)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {name} is NULL")))
    }

    /// An integer a row always has: an error naming the column when NULL.
    fn required_int(&self, at: usize, name: &str) -> Result<i64, StoreError> {
        self.int(at, name)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {name} is NULL")))
    }

    /// Text that may be NULL, owned.
    fn owned_text(&self, at: usize, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.text(at, name)?.map(str::to_owned))
    }
}

impl Columns for Row {
    fn text(&self, _at: usize, name: &str) -> Result<Option<&str>, StoreError> {
        Ok(self.try_get(name)?)
    }

    fn int(&self, _at: usize, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }

    fn flag(&self, _at: usize, name: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(name)?)
    }
}

/// A Rust type a column decodes to on both backends.
pub(crate) trait Column<'r>: Sized {
    fn sqlite(row: &'r SqliteRow, name: &str) -> Result<Self, sqlx::Error>;
    fn postgres(row: &'r PgRow, name: &str) -> Result<Self, sqlx::Error>;
}

macro_rules! column {
    ($($t:ty),*) => {$(
        impl<'r> Column<'r> for $t {
            fn sqlite(row: &'r SqliteRow, name: &str) -> Result<Self, sqlx::Error> {
                row.try_get(name)
            }
            fn postgres(row: &'r PgRow, name: &str) -> Result<Self, sqlx::Error> {
                row.try_get(name)
            }
        }
    )*};
}

column!(
    &'r str,
    Option<&'r str>,
    String,
    Option<String>,
    i64,
    Option<i64>,
    i32,
    Option<i32>,
    bool,
    Option<bool>
);

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(text)))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(text: &'a String) -> Self {
        Value::Text(Some(Cow::Borrowed(text)))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Value::Text(Some(Cow::Owned(text)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(text: Option<&'a str>) -> Self {
        Value::Text(text.map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(text: Option<String>) -> Self {
        Value::Text(text.map(Cow::Owned))
    }
}

impl From<i64> for Value<'_> {
    fn from(number: i64) -> Self {
        Value::Int(Some(number))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(number: Option<i64>) -> Self {
        Value::Int(number)
    }
}

impl From<bool> for Value<'_> {
    fn from(flag: bool) -> Self {
        Value::Bool(flag)
    }
}
