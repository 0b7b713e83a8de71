//! `POST /api/v1/replay`: `vakt replay` on the server's own store, for a configuration sent
//! in the request, compared with the configuration in force (or with the record).
//!
//! The configuration comes from a client, so it may not make the server read anything:
//! secrets written as `{ env = "..." }`, `{ file = "..." }` or `${NAME}` are refused (a
//! replay decides actions, it never runs them, so it needs no credential), and the period is
//! bounded.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ErrorBody, parse_json};
use crate::config::{Config, Overrides};
use crate::replay::{Base, Report, Request};

/// The longest period one request replays.
const PERIOD_MAX_DAYS: i64 = 31;

/// What to replay.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The configuration to replay through, as TOML text (a whole vakt.toml; only its
    /// pipeline is used). Secrets must be written inline or left out.
    pub config: String,
    /// `current` (default): compare with the configuration in force; `record`: with the
    /// events as stored.
    #[serde(default)]
    pub base: Option<String>,
    /// A duration back from now (`7d`, at most 31d), or `from`/`to` (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    /// Prometheus matchers over the events' labels and fields.
    #[serde(default)]
    pub filter: Option<String>,
    /// Differences to list (default 100, at most 10,000).
    #[serde(default)]
    pub list: Option<usize>,
    /// List only this event, with both traces.
    #[serde(default)]
    pub event: Option<String>,
}

/// Replay stored events through a configuration sent in the request.
///
/// Nothing is written and nothing is sent. The answer counts what each side did and lists
/// the events whose outcome differs, with both traces. 400 names what is wrong with the
/// request or the configuration (`file:line:column` lines in `details`).
#[utoipa::path(
    post,
    path = "/api/v1/replay",
    tag = "reports",
    request_body = ReplayRequest,
    responses((status = 200, description = "the replay's report"), (status = 400, body = ErrorBody))
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Report>, ApiError> {
    let asked: ReplayRequest = parse_json(&body)?;
    Ok(Json(run(&state, asked).await?))
}

/// The replay a request asks for, on the server's store: for the API and the console's
/// replay page. Errors name the field.
pub(crate) async fn run(state: &AppState, asked: ReplayRequest) -> Result<Report, ApiError> {
    refuse_secret_references(&asked.config).map_err(|e| ApiError::field("config", e))?;
    let new = Config::parse("config", &asked.config, None, &Overrides::default())
        .map_err(|errors| ApiError::field("config", errors.lines.join("\n")))?;
    let now = chrono::Utc::now();
    let (since, until) = crate::report::period(
        asked.since.as_deref(),
        asked.from.as_deref(),
        asked.to.as_deref(),
        chrono::Duration::days(7),
        now,
    )
    .map_err(ApiError::bad_request)?;
    if until - since > chrono::Duration::days(PERIOD_MAX_DAYS) {
        return Err(ApiError::bad_request(format!(
            "the period is longer than {PERIOD_MAX_DAYS} days; use vakt replay on the host for more"
        )));
    }
    let filter = match &asked.filter {
        Some(text) => vakt_core::matcher::Matcher::parse_list(text)
            .map_err(|e| ApiError::field("filter", e.to_string()))?,
        None => Vec::new(),
    };
    let list = asked.list.unwrap_or(crate::replay::LIST_DEFAULT);
    if list > crate::replay::LIST_MAX {
        return Err(ApiError::field(
            "list",
            format!("at most {}", crate::replay::LIST_MAX),
        ));
    }
    let current = state.pipeline();
    let base = match asked.base.as_deref().unwrap_or("current") {
        "current" => Base::Config(&current),
        "record" => Base::Record,
        other => {
            return Err(ApiError::field(
                "base",
                format!("{other:?}: expected current or record"),
            ));
        }
    };
    let request = Request {
        since: Some(since),
        until: Some(until),
        filter,
        list,
        event: asked.event,
    };
    Ok(crate::replay::replay(&state.store, base, &new.pipeline, &request, &mut |_| {}).await?)
}

/// **Boundary:** configuration text from a client: no value may name an environment
/// variable or a file for the server to read.
fn refuse_secret_references(text: &str) -> Result<(), String> {
    let value: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
    fn walk(value: &toml::Value, path: &mut Vec<String>) -> Result<(), String> {
        match value {
            toml::Value::String(s) if s.contains("${") => Err(format!(
                "{}: a ${{NAME}} reference; a replay takes no secrets, write the value inline or leave it out",
                path.join(".")
            )),
            toml::Value::Table(table) => {
                if table.contains_key("env") || table.contains_key("file") {
                    return Err(format!(
                        "{}: an env or file reference; a replay takes no secrets, write the value inline or leave it out",
                        path.join(".")
                    ));
                }
                for (key, value) in table {
                    path.push(key.clone());
                    walk(value, path)?;
                    path.pop();
                }
                Ok(())
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(item, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(&value, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::refuse_secret_references;

    #[test]
    fn configurations_that_name_secrets_are_refused() {
        assert!(refuse_secret_references("[[rules]]\nname = \"a\"\n").is_ok());
        let refused = |text: &str| refuse_secret_references(text).err().unwrap_or_default();
        assert!(
            refused("[channels.c]\nurl = { file = \"/etc/shadow\" }\n")
                .starts_with("channels.c.url: an env or file")
        );
        assert!(refused("[channels.c]\npassword = { env = \"HOME\" }\n").contains("env or file"));
        assert!(
            refused("[actions.a]\nurl = \"https://x/${TOKEN}\"\n")
                .starts_with("actions.a.url: a ${NAME}")
        );
        assert!(!refused("not toml = = =").is_empty());
    }
}
