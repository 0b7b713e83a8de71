//! The console's other pages: incidents with their status moves, who is on call with
//! overrides, the monitors, and the rules with "try an event".

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, NaiveDateTime, SecondsFormat, Utc};
use minijinja::Value;
use minijinja::value::Serde;
use serde::Serialize;
use vakt_core::EventInput;
use vakt_core::incident::IncidentStatus;

use super::pages::{first, with_done};
use super::{Posted, View, see_other};
use crate::auth::Caller;
use crate::http::AppState;

/// Incidents a list page shows.
const INCIDENTS_PAGE: u32 = 50;
/// On-call shifts shown per schedule (from now, at most a week ahead).
const SHIFTS_SHOWN: usize = 6;
/// An event tried on the rules page, at most.
const TRY_EVENT_BYTES_MAX: usize = 64 * 1024;

fn rfc3339(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn unavailable(state: &AppState, view: &View, error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, page = view.page, "a console page could not read what it shows");
    state.console.error(
        view,
        StatusCode::SERVICE_UNAVAILABLE,
        "what this page shows could not be read; try again",
    )
}

/// `GET /incidents` (`?status=`, `?cursor=`).
pub async fn incidents(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let status = first(&pairs, "status").and_then(|s| IncidentStatus::parse(s).ok());
    let query = vakt_store::IncidentQuery {
        status,
        correlation_key: None,
        cursor: first(&pairs, "cursor").map(str::to_owned),
        limit: INCIDENTS_PAGE,
    };
    let page = match state.store.incidents(&query).await {
        Ok(page) => page,
        Err(error) => return unavailable(&state, &view, error),
    };
    let next_href = page.next_cursor.map(|cursor| {
        let mut pairs = vec![("cursor", cursor)];
        if let Some(s) = status {
            pairs.push(("status", s.as_str().to_owned()));
        }
        format!(
            "/incidents?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    });
    let mut values = BTreeMap::new();
    values.insert("incidents", Value::from(Serde(&page.items)));
    values.insert("status", Value::from(status.map(IncidentStatus::as_str)));
    values.insert("next_href", Value::from(next_href));
    state.console.render("incidents.html", &view, values)
}

/// `GET /incidents/{id}`: the incident, its alerts and timeline, the allowed moves.
pub async fn incident(
    State(state): State<Arc<AppState>>,
    view: View,
    Path(id): Path<String>,
) -> Response {
    let found = match state.store.incident(&id).await {
        Ok(found) => found,
        Err(error) => return unavailable(&state, &view, error),
    };
    let Some((incident, timeline)) = found else {
        return state
            .console
            .error(&view, StatusCode::NOT_FOUND, format!("no incident {id}"));
    };
    let moves: Vec<&str> = IncidentStatus::ALL
        .into_iter()
        .filter(|to| incident.status.can_move_to(*to).is_ok())
        .map(IncidentStatus::as_str)
        .collect();
    let mut values = BTreeMap::new();
    values.insert("i", Value::from(Serde(&incident)));
    values.insert("timeline", Value::from(Serde(&timeline)));
    values.insert("moves", Value::from(Serde(&moves)));
    values.insert("can_write", Value::from(view.can("write:incidents")));
    state.console.render("incident.html", &view, values)
}

/// `POST /incidents/{id}`: a status move (with its resolution) or a note.
pub async fn change_incident(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Posted { view, form }: Posted,
) -> Response {
    let text = |name: &str| {
        form.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let change = crate::http::incidents::IncidentChangeBody {
        status: text("status"),
        resolution: text("resolution"),
        note: text("note"),
        by: super::pages::actor(&view),
        ..Default::default()
    };
    let done = if change.status.is_some() {
        "incident"
    } else {
        "comment"
    };
    match crate::http::incidents::update(&state, &id, change).await {
        Ok(incident) => see_other(&with_done(
            &format!("/incidents/{}", incident.id),
            done,
            None,
        )),
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}

/// Opens an incident for an alert (its summary as the title, its severity as the
/// urgency) and goes to it.
pub async fn open_incident(state: &AppState, view: &View, alert_id: &str) -> Response {
    if !view.can("write:incidents") {
        return state.console.error(
            view,
            StatusCode::FORBIDDEN,
            "opening an incident needs the scope write:incidents",
        );
    }
    let alert = match state.store.alert(alert_id).await {
        Ok(Some(alert)) => alert,
        Ok(None) => {
            return state.console.error(
                view,
                StatusCode::NOT_FOUND,
                format!("no alert with id {alert_id}"),
            );
        }
        Err(error) => return unavailable(state, view, error),
    };
    let title: String = alert
        .summary
        .chars()
        .take(crate::http::incidents::TITLE_CHARS_MAX)
        .collect();
    let new = crate::http::incidents::NewIncidentBody {
        title,
        description: format!("{} {} ({})", alert.resource, alert.check, alert.source),
        impact: None,
        urgency: Some(vakt_core::incident::urgency_of(alert.severity)),
        assignee: None,
        alerts: vec![alert.id.clone()],
        by: super::pages::actor(view),
    };
    match crate::http::incidents::create(state, new).await {
        Ok(incident) => see_other(&with_done(
            &format!("/incidents/{}", incident.id),
            "incident",
            None,
        )),
        Err(error) => state.console.error(view, error.status, error.error),
    }
}

#[derive(Serialize)]
struct ShiftRow {
    start: String,
    end: String,
    user: Option<String>,
    source: Option<String>,
}

#[derive(Serialize)]
struct ScheduleRow {
    name: String,
    description: String,
    timezone: String,
    now: Option<String>,
    source: Option<String>,
    shifts: Vec<ShiftRow>,
}

/// `GET /oncall`: every schedule, who is on call now, the next shifts, an override form.
pub async fn oncall(State(state): State<Arc<AppState>>, view: View) -> Response {
    let directory = state.console.directory.get();
    let now = Utc::now();
    let mut schedules = Vec::new();
    for name in directory.schedules.keys() {
        let schedule = match crate::oncall::with_stored_overrides(
            &*state.store,
            &directory,
            name,
            now,
        )
        .await
        {
            Ok(Some(schedule)) => schedule,
            Ok(None) => continue,
            Err(error) => return unavailable(&state, &view, error),
        };
        let who = schedule.on_call(now);
        let shifts = schedule
            .shifts(now, now + Duration::days(7))
            .unwrap_or_default()
            .into_iter()
            .take(SHIFTS_SHOWN)
            .map(|s| ShiftRow {
                start: rfc3339(s.start),
                end: rfc3339(s.end),
                user: s.user,
                source: s.source,
            })
            .collect();
        schedules.push(ScheduleRow {
            name: name.clone(),
            description: schedule.description.clone(),
            timezone: schedule.timezone.to_string(),
            now: who.as_ref().map(|w| w.user.clone()),
            source: who.map(|w| w.source),
            shifts,
        });
    }
    let users: Vec<&str> = directory.users.iter().map(|u| u.id.as_str()).collect();
    let mut values = BTreeMap::new();
    values.insert("schedules", Value::from(Serde(&schedules)));
    values.insert("users", Value::from(Serde(&users)));
    values.insert("can_override", Value::from(view.can("write:schedules")));
    state.console.render("oncall.html", &view, values)
}

/// `POST /oncall/{name}/overrides`: someone takes over from `start` (UTC) for `hours`.
pub async fn add_override(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Posted { view, form }: Posted,
) -> Response {
    let start = form
        .get("start")
        .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").ok())
        .map(|s| s.and_utc());
    let hours = form
        .get("hours")
        .and_then(|h| h.parse::<i64>().ok())
        .filter(|h| (1..=720).contains(h));
    let (Some(start), Some(hours)) = (start, hours) else {
        return state.console.error(
            &view,
            StatusCode::BAD_REQUEST,
            "start: a date and time (YYYY-MM-DDTHH:MM, UTC); hours: 1 to 720",
        );
    };
    let new = crate::oncall::NewOverride {
        user: form.get("user").unwrap_or_default().to_owned(),
        start,
        end: start + Duration::hours(hours),
        by: super::pages::actor(&view),
    };
    let directory = state.console.directory.get();
    match crate::oncall::add_override(&*state.store, &directory, &name, new).await {
        Ok(_) => see_other(&with_done("/oncall", "override", None)),
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}

/// `GET /reports`: the report of the last day, week or month (`since=1d|7d|30d`), in the
/// console's frame; the full report as a file is linked.
pub async fn reports(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pairs = view.query();
    let since = match first(&pairs, "since") {
        Some(s @ ("1d" | "7d" | "30d")) => s.to_owned(),
        _ => "7d".to_owned(),
    };
    let request = match crate::report::request(
        &crate::report::Asked {
            since: Some(&since),
            ..crate::report::Asked::default()
        },
        chrono::Utc::now(),
    ) {
        Ok(request) => request,
        Err(error) => return unavailable(&state, &view, error),
    };
    let pipeline = state.pipeline();
    let report = match crate::report::build(&*state.store, &pipeline, &request, &mut |_| {}).await {
        Ok(report) => report,
        Err(error) => return unavailable(&state, &view, error),
    };
    let chart = crate::report::volume_chart(&report, "");
    let mut values = BTreeMap::new();
    values.insert("report", Value::from(Serde(&report)));
    values.insert("chart", Value::from_safe_string(chart));
    values.insert("since", Value::from(since));
    values.insert("can_review", Value::from(view.can("admin:config")));
    state.console.render("reports.html", &view, values)
}

/// `GET /monitors`: probes, agents and their probes, heartbeats.
pub async fn monitors(State(state): State<Arc<AppState>>, view: View) -> Response {
    let (monitors, heartbeats) = match tokio::try_join!(
        crate::probes::monitors(&state.console.probes),
        state.store.heartbeats()
    ) {
        Ok(found) => found,
        Err(error) => return unavailable(&state, &view, error),
    };
    let mut rows: Vec<serde_json::Value> = monitors
        .iter()
        .filter_map(|m| serde_json::to_value(m).ok())
        .collect();
    for heartbeat in heartbeats.iter().filter(|h| !h.name.starts_with("agent-")) {
        rows.push(serde_json::json!({
            "name": heartbeat.name,
            "type": "heartbeat",
            "by": "",
            "resource": heartbeat.resource,
            "status": if heartbeat.missing { "critical" } else { "ok" },
            "summary": format!("every {} s", heartbeat.interval_secs),
            "last_seen": rfc3339(heartbeat.last_seen),
        }));
    }
    let mut values = BTreeMap::new();
    values.insert("monitors", Value::from(Serde(&rows)));
    state.console.render("monitors.html", &view, values)
}

#[derive(Serialize)]
struct RuleRow {
    name: String,
    enabled: bool,
    when: Option<String>,
    does: String,
    /// Events it matched in the last hour and day on this node.
    hour: u64,
    day: u64,
}

/// What a rule does, in a line.
fn does(rule: &vakt_core::rules::Rule) -> String {
    let mut parts = Vec::new();
    if rule.drop {
        parts.push("drop".to_owned());
    }
    if let Some(category) = rule.category {
        parts.push(format!("category {}", category.as_str()));
    }
    if let Some(severity) = rule.severity {
        parts.push(format!("severity {}", severity.as_str()));
    }
    for (k, v) in &rule.labels {
        parts.push(format!("{k}={v}"));
    }
    if !rule.actions.is_empty() {
        let names: Vec<&str> = rule.actions.iter().map(|a| &**a).collect();
        parts.push(format!("actions {}", names.join(", ")));
    }
    if let Some(policy) = &rule.escalate {
        parts.push(format!("escalate {policy}"));
    }
    if rule.incident {
        parts.push("incident".to_owned());
    }
    if rule.continue_ {
        parts.push("continue".to_owned());
    }
    parts.join("; ")
}

/// `GET /rules` (`?event=JSON` tries an event): the rules in order and what every stage
/// would decide for the event, with nothing stored or sent (`vakt rules test`).
pub async fn rules(State(state): State<Arc<AppState>>, view: View) -> Response {
    let pipeline = state.pipeline();
    let now = Utc::now();
    let rows: Vec<RuleRow> = pipeline
        .rules()
        .rules()
        .iter()
        .map(|r| {
            let (hour, day) = state.console.hits.counts(&r.name, now);
            RuleRow {
                name: r.name.to_string(),
                enabled: r.enabled,
                when: r.when.as_deref().map(str::to_owned),
                does: does(r),
                hour,
                day,
            }
        })
        .collect();
    let pairs = view.query();
    let event = first(&pairs, "event").unwrap_or_default();
    let mut values = BTreeMap::new();
    if !event.trim().is_empty() {
        match try_event(&pipeline, event) {
            Ok(outcome) => {
                values.insert("outcome", outcome);
            }
            Err(error) => {
                values.insert("try_error", Value::from(error));
            }
        }
    }
    values.insert("rules", Value::from(Serde(&rows)));
    values.insert(
        "event",
        Value::from(if event.is_empty() {
            r#"{"resource": "db01", "check": "disk_usage", "severity": "warning", "summary": "/var is 97% full", "metrics": {"used_pct": 97}}"#
        } else {
            event
        }),
    );
    state.console.render("rules.html", &view, values)
}

/// Runs one event through the stages against no stored state.
fn try_event(pipeline: &vakt_core::Pipeline, text: &str) -> Result<Value, String> {
    if text.len() > TRY_EVENT_BYTES_MAX {
        return Err(format!(
            "the event is {} bytes; at most {TRY_EVENT_BYTES_MAX}",
            text.len()
        ));
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let input = EventInput::from_json(0, json).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let now = Utc::now();
    let prepared = pipeline.prepare(input, "console", now);
    let mut ids = 0;
    let mut new_id = || {
        ids += 1;
        format!("try-{ids}")
    };
    let outcome = pipeline.correlate(
        prepared,
        "try".to_owned(),
        None,
        &vakt_core::silence::ActiveSilences::default(),
        &mut new_id,
    );
    let record = &outcome.record;
    let actions: Vec<&str> = outcome.actions.iter().map(|a| &*a.action).collect();
    let summary = format!(
        "{}: category {}, severity {}, {}, actions: {}",
        if record.dropped { "dropped" } else { "kept" },
        record.category.as_str(),
        record.event.severity.as_str(),
        outcome.transition.as_str(),
        if actions.is_empty() {
            "none".to_owned()
        } else {
            actions.join(", ")
        }
    );
    Ok(minijinja::context! {
        summary => summary,
        trace => Value::from(Serde(&record.trace)),
    })
}

/// The tokens page: the signed-in user's tokens (every token for `admin:tokens`), a form
/// for a new one, which is shown once. Uses the API's own token handlers.
async fn tokens_page(
    state: &AppState,
    view: &View,
    caller: Caller,
    created: Option<String>,
) -> Response {
    let auth = Arc::clone(&state.console.auth);
    let list = match crate::auth::list_tokens(State(auth), caller).await {
        Ok(list) => list.0.items,
        Err(error) => return state.console.error(view, error.status, error.error),
    };
    let mut values = BTreeMap::new();
    values.insert("tokens", Value::from(Serde(&list)));
    values.insert("created", Value::from(created));
    state.console.render("tokens.html", view, values)
}

/// `GET /tokens`.
pub async fn tokens(State(state): State<Arc<AppState>>, view: View) -> Response {
    let caller = view.caller();
    tokens_page(&state, &view, caller, None).await
}

/// `POST /tokens`: a new token, shown on the answer page once.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    Posted { view, form }: Posted,
) -> Response {
    let caller = view.caller();
    let days = form
        .get("days")
        .and_then(|d| d.parse::<i64>().ok())
        .filter(|d| (1..=3650).contains(d));
    let request = serde_json::json!({
        "name": form.get("name").unwrap_or_default().trim(),
        "scopes": form.get("scopes").unwrap_or_default().split_whitespace().collect::<Vec<_>>(),
        "expires_at": days.map(|d| rfc3339(Utc::now() + Duration::days(d))),
    });
    let auth = Arc::clone(&state.console.auth);
    let created = crate::auth::create_token(
        State(auth),
        caller.clone(),
        Bytes::from(request.to_string()),
    )
    .await;
    match created {
        Ok((_, created)) => tokens_page(&state, &view, caller, Some(created.0.token)).await,
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}

/// `POST /tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Posted { view, .. }: Posted,
) -> Response {
    let auth = Arc::clone(&state.console.auth);
    match crate::auth::revoke_token(State(auth), view.caller(), Path(id)).await {
        Ok(_) => see_other(&with_done("/tokens", "revoke", None)),
        Err(error) => state.console.error(&view, error.status, error.error),
    }
}
