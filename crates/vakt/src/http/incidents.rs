//! `/api/v1/incidents`, `/api/v1/escalation-policies`, `/api/v1/escalations`: incident
//! records and the escalations alerts climb.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vakt_core::escalation::Policy;
use vakt_core::incident::{Incident, IncidentEntry, IncidentStatus};
use vakt_store::{
    Escalation, EscalationStatus, IncidentChange, IncidentError, IncidentQuery, NewIncident,
};

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use super::query::Params;
use crate::auth::Caller;

/// An incident's title: one line, at most this many characters.
pub(in crate::http) const TITLE_CHARS_MAX: usize = 200;
/// An incident's description, at most.
const DESCRIPTION_BYTES_MAX: usize = 65_536;

/// Maps the store's refusal to HTTP: a missing incident 404, a field problem (`field: ...`)
/// 400, a change the status rules forbid 409.
pub fn incident_error(error: IncidentError) -> ApiError {
    match error {
        IncidentError::NotFound(_) => ApiError::not_found(error.to_string()),
        IncidentError::Refused(message) => match message.split_once(": ") {
            Some((field, rest))
                if !field.is_empty()
                    && field.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
            {
                ApiError::field(field, rest)
            }
            _ => ApiError::new(StatusCode::CONFLICT, message),
        },
        IncidentError::Store(error) => error.into(),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IncidentPage {
    pub items: Vec<Incident>,
    pub next_cursor: Option<String>,
}

/// List incidents, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/incidents",
    tag = "incidents",
    params(
        ("status" = Option<String>, Query, description = "new, in_progress, on_hold, resolved, closed"),
        ("correlation_key" = Option<String>, Query, description = "e.g. service=api"),
        ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)
    ),
    responses((status = 200, body = IncidentPage), (status = 400, body = ErrorBody))
)]
pub async fn list_incidents(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<IncidentPage>, ApiError> {
    let p = Params::parse(
        raw.as_deref(),
        &["status", "correlation_key", "cursor", "limit"],
    )?;
    let page = state
        .store
        .incidents(&IncidentQuery {
            status: p.parsed("status", IncidentStatus::parse)?,
            correlation_key: p.string("correlation_key"),
            cursor: p.cursor()?,
            limit: p.limit()?,
        })
        .await?;
    Ok(Json(IncidentPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// An incident opened by hand.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIncidentBody {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// 1 (high) .. 3 (low); default 2.
    #[serde(default)]
    pub impact: Option<u8>,
    /// 1 (high) .. 3 (low); default 2.
    #[serde(default)]
    pub urgency: Option<u8>,
    #[serde(default)]
    pub assignee: Option<String>,
    /// Alert ids to link.
    #[serde(default)]
    pub alerts: Vec<String>,
    /// Who, where auth is off; otherwise the signed-in identity.
    #[serde(default)]
    pub by: String,
}

/// Open an incident; its priority follows the configured impact x urgency matrix.
#[utoipa::path(
    post,
    path = "/api/v1/incidents",
    tag = "incidents",
    request_body = NewIncidentBody,
    responses((status = 201, body = Incident), (status = 400, body = ErrorBody))
)]
pub async fn create_incident(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    let mut body: NewIncidentBody = parse_json(&body)?;
    body.by = caller.by(&body.by);
    let incident = create(&state, body).await?;
    Ok((StatusCode::CREATED, Json(incident)))
}

/// Opens an incident from a checked request (the API's and the console's).
pub(in crate::http) async fn create(
    state: &AppState,
    body: NewIncidentBody,
) -> Result<Incident, ApiError> {
    if body.title.trim().is_empty() {
        return Err(ApiError::field("title", "must not be empty"));
    }
    if body.title.trim().chars().count() > TITLE_CHARS_MAX
        || body.title.chars().any(char::is_control)
    {
        return Err(ApiError::field(
            "title",
            format!("one line of at most {TITLE_CHARS_MAX} characters"),
        ));
    }
    if body.description.len() > DESCRIPTION_BYTES_MAX {
        return Err(ApiError::field(
            "description",
            format!("at most {DESCRIPTION_BYTES_MAX} bytes"),
        ));
    }
    if body.by.trim().is_empty() {
        return Err(ApiError::field("by", "say who opens the incident"));
    }
    let level = |field: &str, value: Option<u8>| match value {
        None => Ok(2),
        Some(v @ 1..=3) => Ok(v),
        Some(v) => Err(ApiError::field(
            field,
            format!("{v} is not 1 (high), 2 or 3 (low)"),
        )),
    };
    let new = NewIncident {
        title: body.title.trim().to_owned(),
        description: body.description,
        impact: level("impact", body.impact)?,
        urgency: level("urgency", body.urgency)?,
        assignee: body.assignee.filter(|a| !a.trim().is_empty()),
        alerts: body.alerts,
        by: body.by.trim().to_owned(),
    };
    let incident = state
        .store
        .create_incident(&state.pipeline(), &new)
        .await
        .map_err(incident_error)?;
    state.console.changes.bump();
    Ok(incident)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    pub incident: Incident,
    pub timeline: Vec<IncidentEntry>,
}

/// One incident with its linked alerts and timeline; `id` is its id or number (INC-000123).
#[utoipa::path(
    get,
    path = "/api/v1/incidents/{id}",
    tag = "incidents",
    params(("id" = String, Path)),
    responses((status = 200, body = IncidentDetail), (status = 404, body = ErrorBody))
)]
pub async fn get_incident(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetail>, ApiError> {
    let (incident, timeline) = state
        .store
        .incident(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    Ok(Json(IncidentDetail { incident, timeline }))
}

/// A change to an incident; every field given changes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentChangeBody {
    /// new -> in_progress -> on_hold -> resolved -> closed (see docs/incidents.md).
    #[serde(default)]
    pub status: Option<String>,
    /// A user id; an empty string unassigns.
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub impact: Option<u8>,
    #[serde(default)]
    pub urgency: Option<u8>,
    /// Required when resolving.
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
    /// Alert ids to link.
    #[serde(default)]
    pub link: Vec<String>,
    /// Who, where auth is off; otherwise the signed-in identity.
    #[serde(default)]
    pub by: String,
}

/// Change an incident's status, assignee, impact/urgency, notes, or link alerts.
#[utoipa::path(
    patch,
    path = "/api/v1/incidents/{id}",
    tag = "incidents",
    params(("id" = String, Path)),
    request_body = IncidentChangeBody,
    responses(
        (status = 200, body = Incident),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the status rules forbid the change")
    )
)]
pub async fn update_incident(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Incident>, ApiError> {
    let mut body: IncidentChangeBody = parse_json(&body)?;
    body.by = caller.by(&body.by);
    let incident = update(&state, &id, body).await?;
    Ok(Json(incident))
}

/// Applies a checked change to an incident (the API's and the console's).
pub(in crate::http) async fn update(
    state: &AppState,
    id: &str,
    body: IncidentChangeBody,
) -> Result<Incident, ApiError> {
    if body.by.trim().is_empty() {
        return Err(ApiError::field("by", "say who changes the incident"));
    }
    let status = body
        .status
        .as_deref()
        .map(IncidentStatus::parse)
        .transpose()
        .map_err(|e| ApiError::field("status", e.to_string()))?;
    let change = IncidentChange {
        status,
        assignee: body
            .assignee
            .map(|a| Some(a.trim().to_owned()).filter(|a| !a.is_empty())),
        impact: body.impact,
        urgency: body.urgency,
        resolution: body.resolution,
        note: body.note,
        link: body.link,
        by: body.by.trim().to_owned(),
        from_itsm: false,
    };
    let incident = state
        .store
        .update_incident(&state.pipeline(), id, &change)
        .await
        .map_err(incident_error)?;
    state.console.changes.bump();
    Ok(incident)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyPage {
    pub items: Vec<Policy>,
}

/// The configured escalation policies.
#[utoipa::path(
    get,
    path = "/api/v1/escalation-policies",
    tag = "incidents",
    responses((status = 200, body = PolicyPage))
)]
pub async fn list_policies(State(state): State<Arc<AppState>>) -> Json<PolicyPage> {
    Json(PolicyPage {
        items: state
            .pipeline()
            .escalation_policies()
            .values()
            .cloned()
            .collect(),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EscalationPage {
    pub items: Vec<Escalation>,
}

/// Escalations, most recently changed first (at most 1000).
#[utoipa::path(
    get,
    path = "/api/v1/escalations",
    tag = "incidents",
    params(
        ("status" = Option<String>, Query, description = "active, paused or done"),
        ("limit" = Option<u32>, Query)
    ),
    responses((status = 200, body = EscalationPage), (status = 400, body = ErrorBody))
)]
pub async fn list_escalations(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<EscalationPage>, ApiError> {
    let p = Params::parse(raw.as_deref(), &["status", "limit"])?;
    let status = p.parsed("status", |s| {
        EscalationStatus::parse(s)
            .ok_or_else(|| format!("unknown status {s:?}, expected active, paused or done"))
    })?;
    Ok(Json(EscalationPage {
        items: state.store.escalations(status, p.limit()?).await?,
    }))
}

/// The escalation an alert climbs, if any.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}/escalation",
    tag = "incidents",
    params(("id" = String, Path)),
    responses((status = 200, body = Escalation), (status = 404, body = ErrorBody))
)]
pub async fn get_escalation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Escalation>, ApiError> {
    state
        .store
        .escalation(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("alert {id} has no escalation")))
}
