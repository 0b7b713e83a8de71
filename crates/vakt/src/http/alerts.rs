//! `/api/v1/alerts`: list and read alerts (with timeline and trace), and the operators' actions on them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vakt_core::alert::{OperatorAction, OperatorRequest};
use vakt_core::{Alert, AlertStatus, Category, Severity, TimelineEntry, TraceEntry};
use vakt_store::{AlertQuery, Page};

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use super::query::{Params, capped_page};
use crate::auth::Caller;

/// Events whose traces the alert detail shows, newest first.
pub const TRACE_EVENTS_MAX: u32 = 50;

pub const ALERT_FILTERS: &[&str] = &[
    "status",
    "severity",
    "category",
    "resource",
    "check",
    "service",
    "environment",
    "fingerprint",
    "cursor",
    "limit",
];

/// A page of alerts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    pub items: Vec<Alert>,
    pub next_cursor: Option<String>,
}

impl From<Page<Alert>> for AlertPage {
    fn from(page: Page<Alert>) -> Self {
        AlertPage {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

/// List alerts, newest first.
///
/// `status` takes a comma-separated list (`open,acknowledged`). Page with `limit` (1-1000,
/// default 50) and the `next_cursor` of the previous page.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(
        ("status" = Option<String>, Query, description = "open, acknowledged, resolved; comma-separated"),
        ("severity" = Option<Severity>, Query), ("category" = Option<Category>, Query),
        ("resource" = Option<String>, Query), ("check" = Option<String>, Query),
        ("service" = Option<String>, Query), ("environment" = Option<String>, Query),
        ("fingerprint" = Option<String>, Query), ("cursor" = Option<String>, Query),
        ("limit" = Option<u32>, Query),
    ),
    responses((status = 200, body = AlertPage), (status = 400, body = ErrorBody))
)]
pub async fn list_alerts(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let p = Params::parse(raw.as_deref(), ALERT_FILTERS)?;
    let query = AlertQuery {
        status: p.list("status", AlertStatus::parse)?,
        severity: p.parsed("severity", Severity::parse)?,
        category: p.parsed("category", Category::parse)?,
        resource: p.string("resource"),
        check: p.string("check"),
        service: p.string("service"),
        environment: p.string("environment"),
        fingerprint: p.string("fingerprint"),
        cursor: p.cursor()?,
        limit: p.limit()?,
    };
    capped_page(
        query.limit,
        query.cursor.clone(),
        state.list_bytes_max,
        |cursor, limit| {
            let chunk = AlertQuery {
                cursor,
                limit,
                ..query.clone()
            };
            let store = Arc::clone(&state.store);
            async move { store.alerts(&chunk).await }
        },
        |a: &Alert| &a.id,
    )
    .await
}

/// The decisions the pipeline made about one of the alert's events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTrace {
    pub event_id: String,
    pub received_at: DateTime<Utc>,
    pub severity: Severity,
    pub category: Category,
    pub summary: String,
    pub trace: Vec<TraceEntry>,
}

/// An alert with everything that explains it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: Alert,
    /// Every change, oldest first: who, when, what, why.
    pub timeline: Vec<TimelineEntry>,
    /// The stage decisions for its most recent events, newest first.
    pub trace: Vec<EventTrace>,
    /// Actions decided for it and what became of them, oldest first.
    pub actions: Vec<vakt_store::ActionRecord>,
}

/// One alert with its timeline, the rule trace of its recent events, and its actions.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    tag = "alerts",
    params(("id" = String, Path)),
    responses((status = 200, body = AlertDetail), (status = 404, body = ErrorBody))
)]
pub async fn get_alert(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, ApiError> {
    let store = &state.store;
    let alert = store
        .alert(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no alert with id {id}")))?;
    let (timeline, events, actions) = tokio::try_join!(
        store.timeline(&id),
        store.alert_events(&id, TRACE_EVENTS_MAX),
        store.alert_actions(&id),
    )?;
    let trace = events
        .into_iter()
        .map(|record| EventTrace {
            event_id: record.id,
            received_at: record.event.received_at,
            severity: record.event.severity,
            category: record.category,
            summary: record.event.summary,
            trace: record.trace,
        })
        .collect();
    Ok(Json(AlertDetail {
        alert,
        timeline,
        trace,
        actions: actions.into_iter().map(super::actions::shown).collect(),
    }))
}

/// Who acts, and why. `by` is the signed-in identity; only where auth is off does the
/// body's `by` name who acts.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorBody {
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub comment: Option<String>,
}

/// An assignment: `assignee` null or absent unassigns.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Applies an operator's request (the API's and the console's), wakes the dispatcher for
/// a resolve's notices and tells live pages.
pub(in crate::http) async fn operate(
    state: &AppState,
    id: &str,
    action: OperatorAction,
    by: String,
    comment: Option<String>,
) -> Result<Json<Alert>, ApiError> {
    let request = OperatorRequest {
        action,
        by,
        comment,
    };
    let alert = state
        .store
        .operate(&state.pipeline(), &state.silences.get(), id, &request)
        .await?;
    // A resolve may have decided resolution notices.
    state.wake_dispatcher();
    state.console.open.apply(&alert);
    state.console.changes.bump();
    tracing::info!(alert = %id, action = request.action.name(), by = %request.by, "operator action");
    Ok(Json(alert))
}

macro_rules! operator_endpoint {
    ($name:ident, $path:literal, $action:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(
            post,
            path = $path,
            tag = "alerts",
            params(("id" = String, Path)),
            request_body = OperatorBody,
            responses(
                (status = 200, description = "The alert after the change", body = Alert),
                (status = 400, body = ErrorBody),
                (status = 404, body = ErrorBody),
                (status = 409, description = "The alert's status does not allow it", body = ErrorBody),
            )
        )]
        pub async fn $name(
            State(state): State<Arc<AppState>>,
            Path(id): Path<String>,
            caller: Caller,
            body: Bytes,
        ) -> Result<Json<Alert>, ApiError> {
            let body: OperatorBody = parse_json(&body)?;
            operate(&state, &id, $action, caller.by(&body.by), body.comment).await
        }
    };
}

operator_endpoint!(
    ack,
    "/api/v1/alerts/{id}/ack",
    OperatorAction::Ack,
    "Acknowledge: someone is on it. Repeats keep the alert acknowledged until it clears."
);
operator_endpoint!(
    unack,
    "/api/v1/alerts/{id}/unack",
    OperatorAction::Unack,
    "Take an acknowledgement back: the alert is open again."
);
operator_endpoint!(
    resolve,
    "/api/v1/alerts/{id}/resolve",
    OperatorAction::Resolve,
    "Resolve by hand."
);
operator_endpoint!(
    comment,
    "/api/v1/alerts/{id}/comment",
    OperatorAction::Comment,
    "Add a comment to the timeline (`comment` is required)."
);

/// Assign to someone (`assignee`), or unassign (`assignee` null).
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/assign",
    tag = "alerts",
    params(("id" = String, Path)),
    request_body = AssignBody,
    responses(
        (status = 200, description = "The alert after the change", body = Alert),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn assign(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Alert>, ApiError> {
    let body: AssignBody = parse_json(&body)?;
    let by = caller.by(&body.by);
    operate(
        &state,
        &id,
        OperatorAction::Assign {
            assignee: body.assignee,
        },
        by,
        body.comment,
    )
    .await
}
