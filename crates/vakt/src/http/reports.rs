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

const REPORT_PARAMS: &[&str] = &["since", "from", "to", "tz", "ack_target", "format"];

/// A report of a period compared with the one before it.
///
/// Volumes (over time, by hour of the day and day of the week in `tz`), the
/// noise-reduction funnel, time to acknowledge and resolve by service, team, category and
/// severity, actions and automation, the noisiest sources and checks, standing and
/// flapping alerts, incidents by priority. `format=html` is one page with SVG charts and no
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
    let request = crate::report::request(
        p.string("since").as_deref(),
        p.string("from").as_deref(),
        p.string("to").as_deref(),
        p.string("tz").as_deref(),
        p.string("ack_target").as_deref(),
        chrono::Utc::now(),
    )
    .map_err(ApiError::bad_request)?;
    let pipeline = state.pipeline();
    let report = crate::report::build(&*state.store, &pipeline, &request, &mut |_| {}).await?;
    let body = format
        .render(&report)
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}
