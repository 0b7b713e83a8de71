//! `/api/v1/silences`: vakt's own view of the silences the Alertmanager API shares.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vakt_core::matcher::Matcher;
use vakt_core::silence::{Silence, SilenceState};

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use super::query::Params;
use crate::auth::Caller;

/// A silence as vakt shows it: matchers in Prometheus' text form.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SilenceView {
    pub id: String,
    /// `pending`, `active` or `expired`.
    pub state: String,
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
    pub updated_at: DateTime<Utc>,
}

impl SilenceView {
    fn of(silence: &Silence, now: DateTime<Utc>) -> SilenceView {
        SilenceView {
            id: silence.id.clone(),
            state: silence.state(now).as_str().to_owned(),
            matchers: silence.matchers.iter().map(ToString::to_string).collect(),
            starts_at: silence.starts_at,
            ends_at: silence.ends_at,
            created_by: silence.created_by.clone(),
            comment: silence.comment.clone(),
            updated_at: silence.updated_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SilencePage {
    pub items: Vec<SilenceView>,
    pub next_cursor: Option<String>,
}

/// List silences, newest first: those in force or pending; `state` keeps one state, and
/// `expired` or `all` lists the ended ones too (kept for `[retention] silences_days`).
#[utoipa::path(
    get,
    path = "/api/v1/silences",
    tag = "silences",
    params(("state" = Option<String>, Query, description = "pending, active, expired or all (default: pending and active)")),
    responses((status = 200, body = SilencePage), (status = 400, body = ErrorBody))
)]
pub async fn list_silences(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SilencePage>, ApiError> {
    let p = Params::parse(raw.as_deref(), &["state"])?;
    let wanted = p.parsed("state", |s| match s {
        "pending" | "active" | "expired" | "all" => Ok(s.to_owned()),
        other => Err(format!(
            "unknown state {other:?}, expected pending, active, expired or all"
        )),
    })?;
    let now = Utc::now();
    // Expired silences are history: read only when asked for.
    let set = match wanted.as_deref() {
        Some("expired") => vakt_store::SilenceSet::Expired,
        Some("all") => vakt_store::SilenceSet::All,
        _ => vakt_store::SilenceSet::InForce,
    };
    let query = vakt_store::SilenceQuery {
        set,
        now,
        changed_since: None,
    };
    let items = state
        .store
        .silences(&query)
        .await?
        .iter()
        .map(|s| SilenceView::of(s, now))
        .filter(|s| match wanted.as_deref() {
            Some(w @ ("pending" | "active" | "expired")) => s.state == w,
            _ => true,
        })
        .collect();
    Ok(Json(SilencePage {
        items,
        next_cursor: None,
    }))
}

/// A new silence: matchers in Prometheus' form, an end (or a duration), who and why.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// `["service=\"billing\"", "severity=~\"critical|major\""]`; a bare `name=value` works too.
    pub matchers: Vec<String>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// Seconds from the start, instead of `ends_at`.
    #[serde(default)]
    pub duration_secs: Option<u64>,
    /// Who makes it, where auth is off; otherwise the signed-in identity.
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

/// Create a silence. Matching alerts still record every event; their actions are suppressed.
#[utoipa::path(
    post,
    path = "/api/v1/silences",
    tag = "silences",
    request_body = NewSilence,
    responses((status = 201, body = SilenceView), (status = 400, body = ErrorBody))
)]
pub async fn create_silence(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> Result<(axum::http::StatusCode, Json<SilenceView>), ApiError> {
    let mut new: NewSilence = parse_json(&body)?;
    new.created_by = caller.by(&new.created_by);
    let now = Utc::now();
    let silence = build(new, now)?;
    put(&state, &silence).await?;
    tracing::info!(silence = %silence.id, by = %silence.created_by, "silence created");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(SilenceView::of(&silence, now)),
    ))
}

/// One silence.
/// A silence from what a client asked for, validated as Alertmanager validates; the error
/// names the field. Starts no earlier than `now`.
pub(in crate::http) fn build(new: NewSilence, now: DateTime<Utc>) -> Result<Silence, ApiError> {
    let mut matchers = Vec::with_capacity(new.matchers.len());
    for (i, text) in new.matchers.iter().enumerate() {
        let matcher = Matcher::parse(text)
            .map_err(|e| ApiError::field(&format!("matchers[{i}]"), e.to_string()))?;
        matchers.push(matcher.spec);
    }
    let starts_at = new.starts_at.unwrap_or(now).max(now);
    let ends_at = match (new.ends_at, new.duration_secs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "duration_secs",
                "give ends_at or duration_secs, not both",
            ));
        }
        (Some(end), None) => end,
        (None, Some(secs)) => i64::try_from(secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|length| starts_at.checked_add_signed(length))
            .ok_or_else(|| {
                ApiError::field(
                    "duration_secs",
                    format!("{secs} s is too large: the silence would end after the last representable time"),
                )
            })?,
        (None, None) => {
            return Err(ApiError::field(
                "ends_at",
                "a silence needs an end: ends_at or duration_secs",
            ));
        }
    };
    let silence = Silence {
        id: crate::sources::alertmanager::new_silence_id(),
        matchers,
        starts_at,
        ends_at,
        created_by: new.created_by,
        comment: new.comment,
        updated_at: now,
    };
    silence
        .validate()
        .map_err(|e| ApiError::bad_request(format!("invalid silence: {e}")))?;
    Ok(silence)
}

/// Stores a silence the console or the API made, puts it in force and tells live pages.
pub(in crate::http) async fn put(state: &AppState, silence: &Silence) -> Result<(), ApiError> {
    state.put_silence(silence).await?;
    state.console.changes.bump();
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/silences/{id}",
    tag = "silences",
    params(("id" = String, Path)),
    responses((status = 200, body = SilenceView), (status = 404, body = ErrorBody))
)]
pub async fn get_silence(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    let silence = state
        .store
        .silence(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no silence with id {id}")))?;
    Ok(Json(SilenceView::of(&silence, Utc::now())))
}

/// Expire a silence now (it stays listed, as history).
#[utoipa::path(
    delete,
    path = "/api/v1/silences/{id}",
    tag = "silences",
    params(("id" = String, Path)),
    responses((status = 200, body = SilenceView), (status = 404, body = ErrorBody))
)]
pub async fn expire_silence(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<SilenceView>, ApiError> {
    let mut silence = state
        .store
        .silence(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no silence with id {id}")))?;
    let now = Utc::now();
    if silence.state(now) != SilenceState::Expired {
        silence.expire(now);
        put(&state, &silence).await?;
        tracing::info!(silence = %id, "silence expired");
    }
    Ok(Json(SilenceView::of(&silence, now)))
}
