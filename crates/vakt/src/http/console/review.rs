//! The console's review pages under Reports (the guide's step 9): replay a changed
//! configuration over stored events (`/reports/replay`, the form posting to the same
//! replay as `POST /api/v1/replay`) and the tuning advisor's suggestions (`/reports/tune`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::Value;
use minijinja::value::Serde;

use super::pages::first;
use super::{Posted, View};
use crate::http::AppState;
use crate::http::replay::ReplayRequest;

/// The periods the pages offer.
const REPLAY_PERIODS: [&str; 3] = ["1d", "7d", "30d"];
const TUNE_PERIODS: [&str; 3] = ["1d", "7d", "30d"];
/// Differences a replay page lists.
const LISTED: usize = 50;
/// A configuration pasted into the form, at most.
const CONFIG_BYTES_MAX: usize = 256 * 1024;

/// The form as it was filled in, to show again with the result or the error.
fn form_values(
    config: &str,
    base: &str,
    since: &str,
    filter: &str,
) -> BTreeMap<&'static str, Value> {
    let mut values = BTreeMap::new();
    values.insert("config", Value::from(config));
    values.insert("base", Value::from(base));
    values.insert("since", Value::from(since));
    values.insert("filter", Value::from(filter));
    values.insert("periods", Value::from(REPLAY_PERIODS.to_vec()));
    values
}

/// `GET /reports/replay`: the form.
pub async fn replay_form(State(state): State<Arc<AppState>>, view: View) -> Response {
    state
        .console
        .render("replay.html", &view, form_values("", "current", "7d", ""))
}

/// `POST /reports/replay`: runs the replay and shows its summary and differences under the
/// form; a refused configuration or period is shown there too, with 400.
pub async fn replay_run(
    State(state): State<Arc<AppState>>,
    Posted { view, form }: Posted,
) -> Response {
    let config = form.get("config").unwrap_or_default().to_owned();
    let base = match form.get("base") {
        Some("record") => "record",
        _ => "current",
    };
    let since = form
        .get("since")
        .filter(|s| REPLAY_PERIODS.contains(s))
        .unwrap_or("7d")
        .to_owned();
    let filter = form.get("filter").unwrap_or_default().trim().to_owned();
    let mut values = form_values(&config, base, &since, &filter);
    if config.len() > CONFIG_BYTES_MAX {
        values.insert(
            "error",
            Value::from(format!(
                "config: {} bytes, at most {CONFIG_BYTES_MAX}",
                config.len()
            )),
        );
        let mut response = state.console.render("replay.html", &view, values);
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return response;
    }
    let asked = ReplayRequest {
        config: config.clone(),
        base: Some(base.to_owned()),
        since: Some(since.clone()),
        from: None,
        to: None,
        filter: (!filter.is_empty()).then(|| filter.clone()),
        list: Some(LISTED),
        event: None,
    };
    match crate::http::replay::run(&state, asked).await {
        Ok(mut report) => {
            // Against the record, each listed event's stored trace stands beside the new one.
            if report.base_is_record {
                let ids: Vec<String> = report
                    .differences
                    .iter()
                    .map(|d| d.event_id.clone())
                    .collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                match state.store.events_by_id(&ids).await {
                    Ok(stored) => {
                        for difference in &mut report.differences {
                            if let Some(event) = stored.iter().find(|e| e.id == difference.event_id)
                            {
                                difference.base_trace = event.trace.clone();
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the stored traces of a replay's events could not be read")
                    }
                }
            }
            values.insert("report", Value::from(Serde(&report)));
            state.console.render("replay.html", &view, values)
        }
        Err(error) if error.status == StatusCode::BAD_REQUEST => {
            let mut lines = vec![error.error.clone()];
            lines.extend(error.details.iter().map(|d| d.message.clone()));
            values.insert("error", Value::from(lines.join("\n")));
            let mut response = state.console.render("replay.html", &view, values);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}

/// `GET /reports/tune?since=7d`: the advisor's suggestions for the period.
pub async fn tune(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let since = first(&pairs, "since")
        .filter(|s| TUNE_PERIODS.contains(s))
        .unwrap_or("7d")
        .to_owned();
    match crate::http::reports::advise(&state, &since).await {
        Ok(advice) => {
            let mut values = BTreeMap::new();
            values.insert("advice", Value::from(Serde(&advice)));
            values.insert("since", Value::from(since));
            values.insert("periods", Value::from(TUNE_PERIODS.to_vec()));
            state.console.render("tune.html", &view, values)
        }
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}
