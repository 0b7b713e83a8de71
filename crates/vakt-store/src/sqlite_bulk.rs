//! The SQLite writer's bulk path: a batch's rows through SQLite's own C API.
//!
//! sqlx binds every value of a statement by copying it into owned arguments, sends them to
//! its worker thread and copies them again into SQLite; for the multi-row statements of an
//! ingest batch that was a third of the writer's time. Here each table gets one prepared
//! single-row statement per batch, and every row is bound straight from the batch (SQLite
//! reads the bytes in place: `SQLITE_STATIC`, cleared before the row's call returns), stepped
//! and reset. It runs on sqlx's own writer connection, locked out of its worker with
//! `lock_handle`, inside the transaction the store opened, so atomicity and durability are
//! the transaction's as before.

use std::ffi::{CStr, c_int};
use std::ptr::NonNull;

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

use crate::StoreError;
use crate::sql::Value;

/// A prepared statement of a locked connection, finalized on drop. It borrows the lock, so
/// the connection is live and ours for as long as the statement is.
pub(crate) struct Statement<'c> {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
    sql: &'c str,
    _lock: std::marker::PhantomData<&'c mut ()>,
}

/// A locked connection that several statements may be prepared on at once: it borrows the
/// lock, and every statement borrows it.
pub(crate) struct Locked<'c> {
    db: NonNull<ffi::sqlite3>,
    _lock: std::marker::PhantomData<&'c mut ()>,
}

impl<'c> Locked<'c> {
    pub(crate) fn new(handle: &'c mut LockedSqliteHandle<'_>) -> Locked<'c> {
        Locked {
            db: handle.as_raw_handle(),
            _lock: std::marker::PhantomData,
        }
    }
}

impl<'c> Statement<'c> {
    /// Prepares `sql` on the locked connection.
    pub(crate) fn prepare(
        handle: &'c mut LockedSqliteHandle<'_>,
        sql: &'c str,
    ) -> Result<Statement<'c>, StoreError> {
        Statement::prepare_in(&Locked::new(handle), sql)
    }

    /// Prepares `sql` on a locked connection other statements may also use.
    pub(crate) fn prepare_in(
        locked: &Locked<'c>,
        sql: &'c str,
    ) -> Result<Statement<'c>, StoreError> {
        let db = locked.db;
        let length = c_int::try_from(sql.len()).map_err(|_| {
            StoreError::Other(format!("statement of {} bytes is too long", sql.len()))
        })?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `db` is a live connection handle, locked for 'c by `handle`; `sql` is valid
        // for `length` bytes; `stmt` receives the new statement or stays null.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                db.as_ptr(),
                sql.as_ptr().cast(),
                length,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc, sql));
        }
        let stmt = NonNull::new(stmt)
            .ok_or_else(|| StoreError::Other(format!("SQLite prepared nothing for {sql:?}")))?;
        Ok(Statement {
            db,
            stmt,
            sql,
            _lock: std::marker::PhantomData,
        })
    }

    /// Binds `values` as parameters 1.. and runs the statement once.
    pub(crate) fn run<'v>(
        &mut self,
        values: impl IntoIterator<Item = Value<'v>>,
    ) -> Result<(), StoreError> {
        let stmt = self.stmt.as_ptr();
        let bound = self.bind(values);
        // SAFETY: `stmt` is a live statement of the locked connection.
        let rc = if bound.is_ok() {
            unsafe { ffi::sqlite3_step(stmt) }
        } else {
            ffi::SQLITE_DONE
        };
        let failed =
            (rc != ffi::SQLITE_DONE && rc != ffi::SQLITE_ROW).then(|| error(self.db, rc, self.sql));
        // SAFETY: as above. Resetting and clearing drops every pointer to the values bound
        // with SQLITE_STATIC before they can go out of scope.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        bound?;
        failed.map_or(Ok(()), Err)
    }

    fn bind<'v>(&mut self, values: impl IntoIterator<Item = Value<'v>>) -> Result<(), StoreError> {
        let stmt = self.stmt.as_ptr();
        for (i, value) in values.into_iter().enumerate() {
            let index = c_int::try_from(i + 1)
                .map_err(|_| StoreError::Other("too many parameters".into()))?;
            // SAFETY: `stmt` is live. A borrowed text points into data that lives for 'v,
            // beyond `run`, which clears the bindings before it returns (SQLITE_STATIC); an
            // owned text is dropped at the end of its arm, so SQLite copies it
            // (SQLITE_TRANSIENT).
            let rc = unsafe {
                match value {
                    Value::Text(None) | Value::Int(None) => ffi::sqlite3_bind_null(stmt, index),
                    Value::Text(Some(std::borrow::Cow::Borrowed(text))) => ffi::sqlite3_bind_text(
                        stmt,
                        index,
                        text.as_ptr().cast(),
                        text_len(text)?,
                        ffi::SQLITE_STATIC(),
                    ),
                    Value::Text(Some(std::borrow::Cow::Owned(text))) => ffi::sqlite3_bind_text(
                        stmt,
                        index,
                        text.as_ptr().cast(),
                        text_len(&text)?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                    Value::Int(Some(number)) => ffi::sqlite3_bind_int64(stmt, index, number),
                    Value::Bool(flag) => ffi::sqlite3_bind_int64(stmt, index, i64::from(flag)),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(self.db, rc, self.sql));
            }
        }
        Ok(())
    }
}

/// The current row of a query, read in place: valid until the statement steps again.
pub(crate) struct RowView<'s> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    sql: &'s str,
}

impl RowView<'_> {
    /// Column `i` as an integer; `None` when NULL.
    pub(crate) fn column_int(&self, i: c_int) -> Option<i64> {
        // SAFETY: `stmt` is live and on a row (the caller is inside `query`'s loop).
        unsafe {
            (ffi::sqlite3_column_type(self.stmt.as_ptr(), i) != ffi::SQLITE_NULL)
                .then(|| ffi::sqlite3_column_int64(self.stmt.as_ptr(), i))
        }
    }

    /// Column `i` as text; `None` when NULL; an error naming the column when not UTF-8.
    pub(crate) fn column_text(&self, i: c_int) -> Result<Option<&str>, StoreError> {
        let stmt = self.stmt.as_ptr();
        // SAFETY: as in `column_int`. `sqlite3_column_text` returns a pointer valid until the next
        // step, reset or finalize, which cannot happen while `self` is borrowed;
        // `sqlite3_column_bytes` (called after it, as SQLite documents) is its length.
        unsafe {
            if ffi::sqlite3_column_type(stmt, i) == ffi::SQLITE_NULL {
                return Ok(None);
            }
            let text = ffi::sqlite3_column_text(stmt, i);
            let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
            if text.is_null() {
                return Ok(Some(""));
            }
            let bytes = std::slice::from_raw_parts(text, len);
            std::str::from_utf8(bytes).map(Some).map_err(|e| {
                StoreError::Corrupt(format!("column {i} of {:?} is not UTF-8: {e}", self.sql))
            })
        }
    }
}

/// By position: the mappings of stored rows read SQLite's rows in place with the same code
/// as sqlx's (`crate::db::Columns`).
impl crate::db::Columns for RowView<'_> {
    fn text(&self, at: usize, name: &str) -> Result<Option<&str>, StoreError> {
        self.column_text(position(at, name)?)
    }

    fn int(&self, at: usize, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.column_int(position(at, name)?))
    }

    fn flag(&self, at: usize, name: &str) -> Result<bool, StoreError> {
        Ok(crate::db::Columns::required_int(self, at, name)? != 0)
    }
}

/// A column's position as SQLite's C API takes it.
fn position(at: usize, name: &str) -> Result<c_int, StoreError> {
    c_int::try_from(at).map_err(|_| StoreError::Other(format!("column {name} at {at}")))
}

impl Statement<'_> {
    /// Binds `values` as parameters 1.., steps through every row of the result and calls
    /// `each` with it; the statement is reset afterwards, whatever happened.
    pub(crate) fn query<'v>(
        &mut self,
        values: impl IntoIterator<Item = Value<'v>>,
        mut each: impl FnMut(&RowView<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let stmt = self.stmt.as_ptr();
        let mut result = self.bind(values);
        while result.is_ok() {
            // SAFETY: `stmt` is a live statement of the locked connection.
            let rc = unsafe { ffi::sqlite3_step(stmt) };
            if rc == ffi::SQLITE_ROW {
                result = each(&RowView {
                    stmt: self.stmt,
                    sql: self.sql,
                });
            } else if rc == ffi::SQLITE_DONE {
                break;
            } else {
                result = Err(error(self.db, rc, self.sql));
            }
        }
        // SAFETY: as above; see `run`.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement is live and finalized exactly once, here.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

fn text_len(text: &str) -> Result<c_int, StoreError> {
    c_int::try_from(text.len()).map_err(|_| {
        StoreError::Other(format!(
            "a value of {} bytes is too long for SQLite",
            text.len()
        ))
    })
}

/// The connection's error in the words sqlx would use, classified the same way (busy,
/// read-only, I/O, disk full and cannot-open are "unavailable").
fn error(db: NonNull<ffi::sqlite3>, rc: c_int, sql: &str) -> StoreError {
    // SAFETY: `db` is live; sqlite3_errmsg returns a NUL-terminated string it owns, copied
    // out at once.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    let statement: String = sql.chars().take(60).collect();
    let text = format!("error returned from database: (code: {rc}) {message} (in {statement}...)");
    match rc & 0xff {
        ffi::SQLITE_BUSY
        | ffi::SQLITE_READONLY
        | ffi::SQLITE_IOERR
        | ffi::SQLITE_FULL
        | ffi::SQLITE_CANTOPEN => StoreError::Unavailable(text),
        _ => StoreError::Other(text),
    }
}

/// Inserts `items` with one single-row statement: `INSERT INTO {table} ({columns}) VALUES
/// (?1, ...){tail}`.
pub(crate) fn insert<T, const N: usize>(
    handle: &mut LockedSqliteHandle<'_>,
    table: &str,
    columns: &str,
    tail: &str,
    items: &[T],
    to_row: impl for<'a> Fn(&'a T) -> [Value<'a>; N],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    each(handle, &insert_sql(table, columns, tail, N), items, to_row)
}

/// `INSERT INTO {table} ({columns}) VALUES (?1, ..., ?{n}){tail}`.
pub(crate) fn insert_sql(table: &str, columns: &str, tail: &str, n: usize) -> String {
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({}){tail}",
        parameters(n)
    )
}

/// SQLite's numbered parameters `?1, ..., ?{n}`, for a statement's list of `n` values.
pub(crate) fn parameters(n: usize) -> String {
    let numbered: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    numbered.join(", ")
}

/// Runs one statement (`sql`, parameters `?1`..) once per item.
pub(crate) fn each<T, const N: usize>(
    handle: &mut LockedSqliteHandle<'_>,
    sql: &str,
    items: &[T],
    to_row: impl for<'a> Fn(&'a T) -> [Value<'a>; N],
) -> Result<(), StoreError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut statement = Statement::prepare(handle, sql)?;
    for item in items {
        statement.run(to_row(item))?;
    }
    Ok(())
}

/// Runs one statement without parameters (`BEGIN IMMEDIATE`, `COMMIT`) on the locked
/// connection, on the calling thread.
pub(crate) fn execute(handle: &mut LockedSqliteHandle<'_>, sql: &str) -> Result<(), StoreError> {
    Statement::prepare(handle, sql)?.run(std::iter::empty())
}

/// Runs blocking work (SQLite calls, a page of a replay) from async code: on a
/// multi-threaded runtime the worker hands its other tasks to its peers meanwhile; on a
/// single-threaded one (tests) it just runs.
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Whether a short blocking step (the journal's write and `fdatasync`: a fraction of a
/// millisecond on a healthy disk) may run on the calling worker: when the runtime has
/// other workers to run the rest meanwhile. `block_in_place` hands the worker's queue to
/// another thread and takes it back: thread wake-ups that cost more than such a step
/// (issue 18, BENCHMARKS.md: single-alert requests 20-60% faster without them). A task the
/// worker woke last waits in its LIFO slot (no other worker can take it) for the whole
/// step, so the caller steps aside with `blocking` while the disk is slow. With one worker
/// it always steps aside, so a slow disk cannot stall everything else.
pub fn may_block_worker() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|handle| {
        handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            && handle.metrics().num_workers() >= 2
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::{Connection, SqliteConnection};

    use super::*;

    type Row = (&'static str, i64, Option<String>);

    fn values(row: &Row) -> [Value<'_>; 3] {
        [
            Value::Text(Some(Cow::Borrowed(row.0))),
            Value::Int(Some(row.1)),
            Value::Text(row.2.clone().map(Cow::Owned)),
        ]
    }

    #[tokio::test]
    async fn rows_go_in_and_a_failure_says_which_statement_and_why() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("open");
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT)")
            .execute(&mut conn)
            .await
            .expect("create");
        {
            let mut handle = conn.lock_handle().await.expect("lock");
            let db = &mut handle;
            let rows: Vec<Row> = vec![("a", 1, Some("first".into())), ("b", 2, None)];
            insert(db, "t", "id, n, note", "", &rows, values).expect("insert");
            // A duplicate id fails at its row; the rows before it stay, the one after is not run.
            let more: Vec<Row> = vec![("c", 3, None), ("a", 4, None), ("d", 5, None)];
            match insert(db, "t", "id, n, note", "", &more, values) {
                Err(StoreError::Other(message)) => {
                    assert!(
                        message.contains("UNIQUE constraint failed: t.id"),
                        "{message}"
                    );
                    assert!(message.contains("INSERT INTO t (id, n, note)"), "{message}");
                }
                other => panic!("expected a constraint error, got {other:?}"),
            }
            // The conflict clause is passed through.
            let again: Vec<Row> = vec![("a", 9, None), ("e", 6, Some("last".into()))];
            insert(
                db,
                "t",
                "id, n, note",
                " ON CONFLICT (id) DO NOTHING",
                &again,
                values,
            )
            .expect("insert or ignore");
        }
        let stored: Vec<(String, i64, Option<String>)> =
            sqlx::query_as("SELECT id, n, note FROM t ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .expect("read");
        assert_eq!(
            stored,
            vec![
                ("a".into(), 1, Some("first".into())),
                ("b".into(), 2, None),
                ("c".into(), 3, None),
                ("e".into(), 6, Some("last".into())),
            ]
        );
    }
}
