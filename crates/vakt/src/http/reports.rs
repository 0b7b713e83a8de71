//! `GET /api/v1/reports/summary`: the report `vakt report` writes, for a period, as JSON,
//! CSV or a self-contained HTML page.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::query::Params;
use crate::report::Format;

const REPORT_PARAMS: &[&str] = &[
    "since",
    "from",
    "to",
    "tz",
    "ack_target",
    "business_hours",
    "sleep_hours",
    "format",
];

/// A report of a period compared with the one before it.
///
/// Volumes (over time, by hour of the day and day of the week in `tz`), the
/// noise-reduction funnel, time to acknowledge and resolve by service, team, category and
/// severity, escalations and the step they were acknowledged at, pages per person in
/// business, off and sleep hours, actions and automation, the noisiest sources and checks,
/// standing, flapping and re-opened alerts, sources gone silent and missing heartbeats,
/// incidents by priority. `format=html` is one page with SVG charts and no
/// scripts; `csv` is one long table (`section,name,key,value,previous`).
#[utoipa::path(
    get,
    path = "/api/v1/reports/summary",
    tag = "reports",
    params(
        ("since" = Option<String>, Query, description = "a duration back from now: 24h, 7d, 30d (default 30d)"),
        ("from" = Option<String>, Query, description = "RFC 3339 start, instead of since"),
        ("to" = Option<String>, Query, description = "RFC 3339 end, exclusive (default now)"),
        ("tz" = Option<String>, Query, description = "IANA time zone for days and hours (default UTC)"),
        ("ack_target" = Option<String>, Query, description = "acknowledged within this is on target (default 15m)"),
        ("business_hours" = Option<String>, Query, description = "weekday hours that are business hours, in tz (default 9-17)"),
        ("sleep_hours" = Option<String>, Query, description = "hours that are sleep hours, any day, in tz (default 22-7)"),
        ("format" = Option<String>, Query, description = "json (default), csv or html"),
    ),
    responses(
        (status = 200, description = "the report in the format asked for"),
        (status = 400, body = ErrorBody)
    )
)]
pub async fn summary(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::parse(raw.as_deref(), REPORT_PARAMS)?;
    let format = match p.string("format") {
        Some(text) => Format::parse(&text).map_err(|e| ApiError::field("format", e))?,
        None => Format::Json,
    };
    let texts = [
        "since",
        "from",
        "to",
        "tz",
        "ack_target",
        "business_hours",
        "sleep_hours",
    ]
    .map(|name| p.string(name));
    let [since, from, to, tz, ack_target, business_hours, sleep_hours] =
        texts.each_ref().map(Option::as_deref);
    let asked = crate::report::Asked {
        since,
        from,
        to,
        tz,
        ack_target,
        business_hours,
        sleep_hours,
    };
    let request =
        crate::report::request(&asked, chrono::Utc::now()).map_err(ApiError::bad_request)?;
    let pipeline = state.pipeline();
    let report = crate::report::build(&*state.store, &pipeline, &request, &mut |_| {}).await?;
    let body = format
        .render(&report)
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// The longest period the tuning advisor looks at over HTTP (it replays the period's
/// events in record mode: `vakt tune` on the host for more).
const TUNE_MAX_DAYS: i64 = 31;

/// Suggestions from a period's history: `vakt tune` on the server's store.
///
/// Rules that never matched or match most events (every stored event of the period run
/// through the configuration in force, nothing written), self-resolving and flapping
/// checks, unattended sources, escalation steps that page before an earlier step's person
/// acknowledges, silences renewed again and again; each with its evidence and the command
/// that checks the change. `since` is at most 31 days.
#[utoipa::path(
    get,
    path = "/api/v1/reports/tune",
    tag = "reports",
    params(
        ("since" = Option<String>, Query, description = "a duration back from now: 1d, 7d (default), at most 31d"),
    ),
    responses(
        (status = 200, description = "the suggestions, with the period's event and alert counts"),
        (status = 400, body = ErrorBody)
    )
)]
pub async fn tune(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<crate::tune::Advice>, ApiError> {
    let p = Params::parse(raw.as_deref(), &["since"])?;
    Ok(axum::Json(
        advise(&state, p.string("since").as_deref().unwrap_or("7d")).await?,
    ))
}

/// The advisor over `since` (a duration, at most 31 days) on the server's store, for the
/// API and the console.
pub(crate) async fn advise(state: &AppState, since: &str) -> Result<crate::tune::Advice, ApiError> {
    let (from, until) = crate::report::period(
        Some(since),
        None,
        None,
        chrono::Duration::days(7),
        chrono::Utc::now(),
    )
    .map_err(ApiError::bad_request)?;
    if until - from > chrono::Duration::days(TUNE_MAX_DAYS) {
        return Err(ApiError::field(
            "since",
            format!("at most {TUNE_MAX_DAYS} days; use vakt tune on the host for more"),
        ));
    }
    let pipeline = state.pipeline();
    Ok(crate::tune::advise(
        &state.store,
        &pipeline,
        "vakt.toml",
        &format!("--since {since}"),
        from,
        until,
        &mut |_| {},
    )
    .await?)
}
