//! `/api/v1/actions`: decided actions, their attempts, and retrying a failed one.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use serde::{Deserialize, Serialize};
use vakt_store::{ActionQuery, ActionRecord, ActionStatus, Attempt};

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use super::query::Params;
use crate::auth::Caller;

/// A page of actions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionPage {
    pub items: Vec<ActionRecord>,
    pub next_cursor: Option<String>,
}

/// List decided actions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/actions",
    tag = "actions",
    params(
        ("status" = Option<String>, Query, description = "pending, running, succeeded, failed, skipped, suppressed"),
        ("action" = Option<String>, Query, description = "the configured action's name"),
        ("alert_id" = Option<String>, Query),
        ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query),
    ),
    responses((status = 200, body = ActionPage), (status = 400, body = ErrorBody))
)]
pub async fn list_actions(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActionPage>, ApiError> {
    let p = Params::parse(
        raw.as_deref(),
        &["status", "action", "alert_id", "cursor", "limit"],
    )?;
    let query = ActionQuery {
        status: p.parsed("status", ActionStatus::parse)?,
        action: p.string("action"),
        alert_id: p.string("alert_id"),
        cursor: p.cursor()?,
        limit: p.limit()?,
    };
    let page = state.store.actions(&query).await?;
    Ok(Json(ActionPage {
        items: page.items.into_iter().map(shown).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// An action with every attempt.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionDetail {
    #[serde(flatten)]
    pub action: ActionRecord,
    pub attempts: Vec<Attempt>,
}

/// One action and all its attempts, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/actions/{id}",
    tag = "actions",
    params(("id" = String, Path)),
    responses((status = 200, body = ActionDetail), (status = 404, body = ErrorBody))
)]
pub async fn get_action(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ActionDetail>, ApiError> {
    let (action, attempts) = state
        .store
        .action(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no action with id {id}")))?;
    Ok(Json(ActionDetail {
        action: shown(action),
        attempts,
    }))
}

/// Who asks for the retry.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Who asks, where auth is off; otherwise the signed-in identity.
    #[serde(default)]
    pub by: String,
}

/// Run a failed or skipped action again (its attempts so far are kept).
#[utoipa::path(
    post,
    path = "/api/v1/actions/{id}/retry",
    tag = "actions",
    params(("id" = String, Path)),
    request_body = RetryBody,
    responses((status = 200, body = ActionRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
pub async fn retry_action(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<ActionRecord>, ApiError> {
    let mut body: RetryBody = parse_json(&body)?;
    body.by = caller.by(&body.by);
    if body.by.trim().is_empty() {
        return Err(ApiError::field("by", "must name who asks"));
    }
    match state
        .store
        .retry_action(&id, &body.by, chrono::Utc::now())
        .await?
    {
        Some(record) => {
            state.wake_dispatcher();
            tracing::info!(action = %id, by = %body.by, "action retry requested");
            Ok(Json(shown(record)))
        }
        None => match state.store.action(&id).await? {
            None => Err(ApiError::not_found(format!("no action with id {id}"))),
            Some((record, _)) => Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "action {id} is {}; only failed or skipped actions can be retried",
                    record.status.as_str()
                ),
            )),
        },
    }
}

/// A record as answers show it: a page's phone gateway URL (its credential) shows only
/// where it points.
pub(super) fn shown(mut record: ActionRecord) -> ActionRecord {
    if let Some(vakt_core::escalation::Page {
        via: vakt_core::escalation::Via::Phone { url },
        ..
    }) = record.decided.target.as_deref_mut()
    {
        *url = crate::redact::url(url);
    }
    record
}
