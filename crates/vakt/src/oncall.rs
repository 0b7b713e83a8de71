//! Users and on-call schedules: the directory built from `[[users]]` and `[[schedules]]`,
//! and the `/api/v1/users` and `/api/v1/schedules` endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vakt_core::config::ConfigError;
use vakt_core::oncall::{OverrideConfig, Schedule, ScheduleConfig, Shift, UserConfig};

use crate::http::{ApiError, ErrorBody, Params, parse_json};
use crate::live::Live;

/// What the on-call endpoints need: the directory in force and the stored overrides.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub directory: Live<Directory>,
}

impl Deps {
    fn directory(&self) -> Arc<Directory> {
        self.directory.get()
    }
}

/// `/api/v1/users` and `/api/v1/schedules/...`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    deps: Arc<Deps>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(list_schedules))
        .routes(routes!(get_on_call))
        .routes(routes!(get_shifts))
        .routes(routes!(get_calendar))
        .routes(routes!(list_overrides, create_override))
        .routes(routes!(delete_override))
        .with_state(deps)
}

/// Most weeks one calendar export covers.
pub const CALENDAR_WEEKS_MAX: i64 = 52;

/// The users and compiled schedules of the configuration in force.
#[derive(Debug, Default)]
pub struct Directory {
    pub users: Vec<UserConfig>,
    pub schedules: BTreeMap<String, Schedule>,
}

impl Directory {
    pub fn build(
        users: &[UserConfig],
        schedules: &[ScheduleConfig],
    ) -> Result<Directory, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut ids: Vec<&str> = Vec::new();
        for user in users {
            if user.id.is_empty()
                || !user
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                errors.push(ConfigError {
                    span: None,
                    message: format!(
                        "users.{}: id {:?} must be letters, digits, '-', '_' or '.'",
                        user.id, user.id
                    ),
                });
            }
            if let Some(slack) = &user.slack_id
                && !(slack.len() >= 3
                    && slack.starts_with(['U', 'W'])
                    && slack
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
            {
                errors.push(ConfigError {
                    span: None,
                    message: format!(
                        "users.{}: slack_id {slack:?} is not a Slack member id like U024BE7LH (Slack: profile, ⋮, Copy member ID)",
                        user.id
                    ),
                });
            }
            if let Some(name) = &user.mattermost
                && (name.is_empty()
                    || name.starts_with('@')
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
            {
                errors.push(ConfigError {
                    span: None,
                    message: format!(
                        "users.{}: mattermost {name:?} is not a Mattermost username (lowercase letters, digits, '.', '_', '-'; no '@')",
                        user.id
                    ),
                });
            }
            if let Some(role) = &user.role
                && vakt_core::access::role_scopes(role).is_none()
            {
                let roles: Vec<&str> = vakt_core::access::ROLES.iter().map(|(r, _)| *r).collect();
                errors.push(ConfigError {
                    span: None,
                    message: format!(
                        "users.{}: role {role:?} is not one of {}",
                        user.id,
                        roles.join(", ")
                    ),
                });
            }
            if let Some(hash) = &user.password_hash
                && !crate::auth::is_password_hash(hash)
            {
                errors.push(ConfigError {
                    span: None,
                    message: format!(
                        "users.{}: password_hash is not an argon2id hash ($argon2id$v=19$...); make one with `vakt user hash`",
                        user.id
                    ),
                });
            }
            if ids.contains(&user.id.as_str()) {
                errors.push(ConfigError {
                    span: None,
                    message: format!("users.{}: id {:?} is defined twice", user.id, user.id),
                });
            }
            ids.push(&user.id);
        }
        let mut compiled = BTreeMap::new();
        for config in schedules {
            match Schedule::build(config, &ids) {
                Ok(schedule) if compiled.contains_key(&schedule.name) => {
                    errors.push(ConfigError::at(
                        config.name.span(),
                        format!("schedule {:?} is defined twice", schedule.name),
                    ))
                }
                Ok(schedule) => {
                    compiled.insert(schedule.name.clone(), schedule);
                }
                Err(found) => errors.extend(found),
            }
        }
        if errors.is_empty() {
            Ok(Directory {
                users: users.to_vec(),
                schedules: compiled,
            })
        } else {
            Err(errors)
        }
    }

    pub fn user(&self, id: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.id == id)
    }
}

/// A configured schedule with its stored overrides that end after `from` applied; `None`
/// when no schedule has that name.
pub async fn with_stored_overrides(
    store: &dyn vakt_store::Store,
    directory: &Directory,
    name: &str,
    from: DateTime<Utc>,
) -> Result<Option<Schedule>, vakt_store::StoreError> {
    let Some(schedule) = directory.schedules.get(name) else {
        return Ok(None);
    };
    let stored = store.overrides(name, from).await?;
    Ok(Some(schedule.with_overrides(&stored)))
}

/// A schedule with its stored overrides applied, or 404.
async fn schedule(state: &Deps, name: &str, from: DateTime<Utc>) -> Result<Schedule, ApiError> {
    with_stored_overrides(&*state.store, &state.directory(), name, from)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no schedule named {name:?}")))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub items: Vec<UserConfig>,
    pub next_cursor: Option<String>,
}

/// Every user, as configured.
#[utoipa::path(get, path = "/api/v1/users", tag = "on-call", responses((status = 200, body = UserPage)))]
pub async fn list_users(State(state): State<Arc<Deps>>) -> Json<UserPage> {
    // A phone gateway URL is the gateway's credential: it is a `Secret`, shown as such.
    let items = state.directory().users.clone();
    Json(UserPage {
        items,
        next_cursor: None,
    })
}

/// Who is on call in a schedule at a time.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OnCallNow {
    pub schedule: String,
    pub at: DateTime<Utc>,
    /// The user on call; null when nobody is (outside every layer's restrictions).
    pub user: Option<UserConfig>,
    /// The layer's name, or `override`.
    pub source: Option<String>,
}

async fn on_call_at(state: &Deps, name: &str, at: DateTime<Utc>) -> Result<OnCallNow, ApiError> {
    let schedule = schedule(state, name, at).await?;
    let who = schedule.on_call(at);
    let directory = state.directory();
    Ok(OnCallNow {
        schedule: name.to_owned(),
        at,
        user: who.as_ref().and_then(|w| directory.user(&w.user).cloned()),
        source: who.map(|w| w.source),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SchedulePage {
    pub items: Vec<ScheduleView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub name: String,
    pub description: String,
    pub timezone: String,
    pub on_call_now: OnCallNow,
}

/// Every schedule with who is on call now.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "on-call", responses((status = 200, body = SchedulePage)))]
pub async fn list_schedules(
    State(state): State<Arc<Deps>>,
) -> Result<Json<SchedulePage>, ApiError> {
    let now = Utc::now();
    let directory = state.directory();
    let mut items = Vec::new();
    for schedule in directory.schedules.values() {
        items.push(ScheduleView {
            name: schedule.name.clone(),
            description: schedule.description.clone(),
            timezone: schedule.timezone.name().to_owned(),
            on_call_now: on_call_at(&state, &schedule.name, now).await?,
        });
    }
    Ok(Json(SchedulePage {
        items,
        next_cursor: None,
    }))
}

/// Who is on call now, or at `at` (RFC 3339).
#[utoipa::path(
    get,
    path = "/api/v1/schedules/{name}/oncall",
    tag = "on-call",
    params(("name" = String, Path), ("at" = Option<String>, Query, description = "RFC 3339; default now")),
    responses((status = 200, body = OnCallNow), (status = 404, body = ErrorBody))
)]
pub async fn get_on_call(
    State(state): State<Arc<Deps>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OnCallNow>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["at"])?;
    let at = params.time("at")?.unwrap_or_else(Utc::now);
    Ok(Json(on_call_at(&state, &name, at).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ShiftPage {
    pub items: Vec<Shift>,
    pub next_cursor: Option<String>,
}

fn span(params: &Params) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let from = params.time("from")?.unwrap_or_else(Utc::now);
    let weeks = params.parsed("weeks", |w| {
        w.parse::<i64>()
            .ok()
            .filter(|w| (1..=CALENDAR_WEEKS_MAX).contains(w))
            .ok_or_else(|| format!("must be 1 to {CALENDAR_WEEKS_MAX}"))
    })?;
    let to = match (params.time("to")?, weeks) {
        (Some(_), Some(_)) => return Err(ApiError::field("weeks", "give to or weeks, not both")),
        (Some(to), None) => to,
        (None, Some(weeks)) => from + Duration::weeks(weeks),
        (None, None) => from + Duration::weeks(4),
    };
    Ok((from, to))
}

/// The shifts from `from` (default now) to `to` (or `weeks` ahead; default 4 weeks).
#[utoipa::path(
    get,
    path = "/api/v1/schedules/{name}/shifts",
    tag = "on-call",
    params(("name" = String, Path), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("weeks" = Option<u32>, Query)),
    responses((status = 200, body = ShiftPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn get_shifts(
    State(state): State<Arc<Deps>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ShiftPage>, ApiError> {
    let params = Params::parse(raw.as_deref(), &["from", "to", "weeks"])?;
    let (from, to) = span(&params)?;
    let schedule = schedule(&state, &name, from).await?;
    let items = schedule
        .shifts(from, to)
        .map_err(|e| ApiError::field("to", e))?;
    Ok(Json(ShiftPage {
        items,
        next_cursor: None,
    }))
}

/// The next weeks as an iCalendar file (`text/calendar`), for calendar apps.
#[utoipa::path(
    get,
    path = "/api/v1/schedules/{name}/calendar.ics",
    tag = "on-call",
    params(("name" = String, Path), ("weeks" = Option<u32>, Query, description = "1-52, default 4")),
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = ErrorBody))
)]
pub async fn get_calendar(
    State(state): State<Arc<Deps>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw.as_deref(), &["from", "weeks"])?;
    let (from, to) = span(&params)?;
    let schedule = schedule(&state, &name, from).await?;
    let shifts = schedule
        .shifts(from, to)
        .map_err(|e| ApiError::field("weeks", e))?;
    let body = schedule.icalendar(&shifts, Utc::now());
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_owned(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.ics\"",
                    name.replace(
                        |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                        "_"
                    )
                ),
            ),
        ],
        body,
    )
        .into_response())
}

/// An override: someone covers a span.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOverride {
    pub user: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Who makes it, where auth is off; otherwise the signed-in identity.
    #[serde(default)]
    pub by: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OverridePage {
    pub items: Vec<OverrideConfig>,
    pub next_cursor: Option<String>,
}

/// Overrides of a schedule that have not ended, configured and stored.
#[utoipa::path(
    get,
    path = "/api/v1/schedules/{name}/overrides",
    tag = "on-call",
    params(("name" = String, Path)),
    responses((status = 200, body = OverridePage), (status = 404, body = ErrorBody))
)]
pub async fn list_overrides(
    State(state): State<Arc<Deps>>,
    Path(name): Path<String>,
) -> Result<Json<OverridePage>, ApiError> {
    let now = Utc::now();
    let schedule = schedule(&state, &name, now).await?;
    Ok(Json(OverridePage {
        items: schedule
            .overrides()
            .iter()
            .filter(|o| o.end > now)
            .cloned()
            .collect(),
        next_cursor: None,
    }))
}

/// Put someone on call for a span (a swap, a sick day, a holiday).
#[utoipa::path(
    post,
    path = "/api/v1/schedules/{name}/overrides",
    tag = "on-call",
    params(("name" = String, Path)),
    request_body = NewOverride,
    responses((status = 201, body = OverrideConfig), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn create_override(
    State(state): State<Arc<Deps>>,
    Path(name): Path<String>,
    caller: crate::auth::Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<OverrideConfig>), ApiError> {
    let mut new: NewOverride = parse_json(&body)?;
    new.by = caller.by(&new.by);
    let item = add_override(&*state.store, &state.directory(), &name, new).await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// Checks and stores an override someone asked for (the API's and the console's).
pub async fn add_override(
    store: &dyn vakt_store::Store,
    directory: &Directory,
    name: &str,
    new: NewOverride,
) -> Result<OverrideConfig, ApiError> {
    if !directory.schedules.contains_key(name) {
        return Err(ApiError::not_found(format!("no schedule named {name:?}")));
    }
    if directory.user(&new.user).is_none() {
        return Err(ApiError::field(
            "user",
            format!("unknown user {:?}", new.user),
        ));
    }
    if new.end <= new.start {
        return Err(ApiError::field("end", "must be after start"));
    }
    if new.by.trim().is_empty() {
        return Err(ApiError::field("by", "must name who makes the override"));
    }
    let item = OverrideConfig {
        id: Some(ulid::Ulid::new().to_string()),
        user: new.user,
        start: new.start,
        end: new.end,
        created_by: Some(new.by),
    };
    store.put_override(name, &item).await?;
    tracing::info!(schedule = %name, user = %item.user, "on-call override created");
    Ok(item)
}

/// Remove an override made through the API.
#[utoipa::path(
    delete,
    path = "/api/v1/schedules/{name}/overrides/{id}",
    tag = "on-call",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody))
)]
pub async fn delete_override(
    State(state): State<Arc<Deps>>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_override(&name, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no stored override {id} in schedule {name:?}"
        )))
    }
}
