//! Who may do what, as stored: API tokens (only their SHA-256) and the audit log of every
//! change made through the API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::{Conn, Row, query};
use crate::sql::{ms, opt_time, time};
use crate::{Page, StoreError};

/// An API token as stored. The token itself is never stored: `hash` is its SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    /// The identity the token acts as (a user name, or a source's name for ingest tokens).
    pub owner: String,
    /// `verb:resource` scopes.
    pub scopes: Vec<String>,
    #[serde(skip)]
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One change made through the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: String,
    pub at: DateTime<Utc>,
    /// Who: a user, a token's owner and name, or `anonymous` where auth is off.
    pub actor: String,
    pub method: String,
    pub path: String,
    /// The HTTP status the change was answered with.
    pub status: i64,
    /// The client's address.
    pub remote: Option<String>,
    /// What was asked (the request's query, or a short description).
    pub detail: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub cursor: Option<String>,
    pub limit: u32,
}

const TOKEN_SELECT: &str = "SELECT id, name, owner, scopes, hash, created_at, created_by, \
     expires_at, last_used_at, revoked_at FROM api_tokens";

fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        hash: row.try_get("hash")?,
        created_at: time(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        expires_at: opt_time(row.try_get("expires_at")?)?,
        last_used_at: opt_time(row.try_get("last_used_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
    })
}

fn audit_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: time(row.try_get("at")?)?,
        actor: row.try_get("actor")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        status: row.try_get("status")?,
        remote: row.try_get("remote")?,
        detail: row.try_get("detail")?,
    })
}

pub(crate) async fn insert_token(
    conn: &mut Conn<'_>,
    token: &TokenRecord,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO api_tokens (id, name, owner, scopes, hash, created_at, created_by, \
         expires_at, last_used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(token.id.as_str())
    .bind(token.name.as_str())
    .bind(token.owner.as_str())
    .bind(token.scopes.join(" "))
    .bind(token.hash.as_str())
    .bind(ms(token.created_at))
    .bind(token.created_by.as_str())
    .bind(token.expires_at.map(ms))
    .bind(token.last_used_at.map(ms))
    .bind(token.revoked_at.map(ms))
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn token_by_hash(
    conn: &mut Conn<'_>,
    hash: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    query(format!("{TOKEN_SELECT} WHERE hash = $1"))
        .bind(hash)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(token_from_row)
        .transpose()
}

pub(crate) async fn list_tokens(conn: &mut Conn<'_>) -> Result<Vec<TokenRecord>, StoreError> {
    query(format!("{TOKEN_SELECT} ORDER BY created_at, id"))
        .fetch_all(conn)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
}

/// Revokes a token by id or by name; the revoked token, or `None` when no live one matched.
pub(crate) async fn revoke_token(
    conn: &mut Conn<'_>,
    id_or_name: &str,
    at_ms: i64,
) -> Result<Option<TokenRecord>, StoreError> {
    let done = query(
        "UPDATE api_tokens SET revoked_at = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL",
    )
    .bind(at_ms)
    .bind(id_or_name)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    query(format!(
        "{TOKEN_SELECT} WHERE (id = $1 OR name = $1) AND revoked_at = $2"
    ))
    .bind(id_or_name)
    .bind(at_ms)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(token_from_row)
    .transpose()
}

pub(crate) async fn touch_token(
    conn: &mut Conn<'_>,
    id: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(at_ms)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Tokens that can still be used at `now_ms` (neither revoked nor expired).
pub(crate) async fn live_tokens(conn: &mut Conn<'_>, now_ms: i64) -> Result<i64, StoreError> {
    let row = query(
        "SELECT COUNT(*) AS n FROM api_tokens WHERE revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $1)",
    )
    .bind(now_ms)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get("n")?)
}

pub(crate) async fn insert_audit(
    conn: &mut Conn<'_>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO audit_log (id, at, actor, method, path, status, remote, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.id.as_str())
    .bind(ms(entry.at))
    .bind(entry.actor.as_str())
    .bind(entry.method.as_str())
    .bind(entry.path.as_str())
    .bind(entry.status)
    .bind(entry.remote.as_deref())
    .bind(entry.detail.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn list_audit(
    conn: &mut Conn<'_>,
    q: &AuditQuery,
) -> Result<Page<AuditEntry>, StoreError> {
    let mut query = crate::db::Query::new(
        "SELECT id, at, actor, method, path, status, remote, detail FROM audit_log WHERE 1 = 1",
    );
    crate::queries::filter_eq(&mut query, "actor", q.actor.clone());
    crate::queries::fetch_page(
        conn,
        query,
        q.cursor.as_deref(),
        q.limit,
        audit_from_row,
        |e| &e.id,
    )
    .await
}

/// A console session as stored: known by the SHA-256 of its cookie value.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub hash: String,
    pub user: String,
    /// What the session's pages send with every write (`X-CSRF-Token`).
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end, whatever the activity.
    pub expires_at: DateTime<Utc>,
    pub remote: Option<String>,
}

fn session_from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        hash: row.try_get("hash")?,
        user: row.try_get("user_id")?,
        csrf: row.try_get("csrf")?,
        created_at: time(row.try_get("created_at")?)?,
        last_seen_at: time(row.try_get("last_seen_at")?)?,
        expires_at: time(row.try_get("expires_at")?)?,
        remote: row.try_get("remote")?,
    })
}

/// Stores a new session, dropping sessions that ended before `now_ms` on the way.
pub(crate) async fn insert_session(
    conn: &mut Conn<'_>,
    session: &SessionRecord,
    now_ms: i64,
) -> Result<(), StoreError> {
    query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    query(
        "INSERT INTO sessions (hash, user_id, csrf, created_at, last_seen_at, expires_at, remote) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(session.hash.as_str())
    .bind(session.user.as_str())
    .bind(session.csrf.as_str())
    .bind(ms(session.created_at))
    .bind(ms(session.last_seen_at))
    .bind(ms(session.expires_at))
    .bind(session.remote.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn session_by_hash(
    conn: &mut Conn<'_>,
    hash: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    query(
        "SELECT hash, user_id, csrf, created_at, last_seen_at, expires_at, remote \
         FROM sessions WHERE hash = $1",
    )
    .bind(hash)
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(session_from_row)
    .transpose()
}

pub(crate) async fn touch_session(
    conn: &mut Conn<'_>,
    hash: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    query("UPDATE sessions SET last_seen_at = $1 WHERE hash = $2")
        .bind(at_ms)
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends a session; `false` when there was none.
pub(crate) async fn delete_session(conn: &mut Conn<'_>, hash: &str) -> Result<bool, StoreError> {
    let done = query("DELETE FROM sessions WHERE hash = $1")
        .bind(hash)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Sets (or replaces) a user's stored password hash.
pub(crate) async fn upsert_password(
    conn: &mut Conn<'_>,
    user: &str,
    hash: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    query(
        "INSERT INTO user_passwords (user_id, hash, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
    )
    .bind(user)
    .bind(hash)
    .bind(at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn password_of(
    conn: &mut Conn<'_>,
    user: &str,
) -> Result<Option<String>, StoreError> {
    Ok(query("SELECT hash FROM user_passwords WHERE user_id = $1")
        .bind(user)
        .fetch_optional(conn)
        .await?
        .map(|row| row.try_get("hash"))
        .transpose()?)
}

/// The users with a stored password.
pub(crate) async fn password_users(conn: &mut Conn<'_>) -> Result<Vec<String>, StoreError> {
    query("SELECT user_id FROM user_passwords ORDER BY user_id")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|row| Ok(row.try_get("user_id")?))
        .collect()
}
