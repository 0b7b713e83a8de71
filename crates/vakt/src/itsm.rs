//! External Incident Management sync: incidents go out to an ITSM tool over HTTP, and the
//! tool's status changes come back on a webhook.
//!
//! Outbound, a loop claims incidents with changes the tool has not seen (each incident has a
//! version; the store keeps the version last synced), creates the record (or updates it
//! once it has an external id) and stores the external id and link. Presets speak the
//! ServiceNow Table API and the Jira REST API v2; `generic` posts vakt's incident JSON and
//! reads the id from a JSON pointer. Inbound, `POST /api/v1/itsm/webhook` takes the tool's
//! update, finds the incident by its external id, and applies the status once: the same
//! update again changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vakt_core::config::ConfigError;
use vakt_core::incident::{Incident, IncidentStatus};
use vakt_core::secret::Secret;
use vakt_store::{IncidentChange, SyncResult};

use crate::http::{ApiError, ErrorBody};
use crate::live::Live;

/// What the ITSM sync loop and webhook need from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// `[itsm]` in force (`None`: no integration).
    pub config: Live<Option<ItsmConfig>>,
    /// Where links in tickets point (`dispatch.console_url`).
    pub console_url: Live<String>,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }
}

/// `POST /api/v1/itsm/webhook`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    deps: Arc<Deps>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(webhook))
        .with_state(deps)
}

/// Which tool's API the sync speaks.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// ServiceNow Table API: `POST /api/now/table/incident`, `PATCH .../{sys_id}`.
    Servicenow,
    /// Jira REST API v2: `POST /rest/api/2/issue`, `PUT .../{key}`.
    Jira,
    /// vakt's incident JSON to `url`, `PUT url/{id}` for updates.
    Generic,
}

/// `[itsm]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ItsmConfig {
    pub preset: Preset,
    /// ServiceNow instance or Jira site base URL (`https://example.service-now.com`), or
    /// the generic endpoint that creates incidents.
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    /// A string, `${ENV}`, `{ env = "NAME" }` or `{ file = "/path" }`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sent as `Authorization: Bearer ...` (instead of username and password).
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Jira: the project key issues are created in.
    #[serde(default)]
    pub project: Option<String>,
    /// Jira: the issue type.
    #[serde(default = "default_issue_type")]
    pub issue_type: String,
    /// Generic: where the created record's id is in the response (JSON pointer).
    #[serde(default = "default_id_pointer")]
    pub id_pointer: String,
    /// Generic: where the record's link is in the response, if anywhere.
    #[serde(default)]
    pub url_pointer: Option<String>,
    /// The token the tool must send on the inbound webhook (`Authorization: Bearer ...`).
    /// Without it the webhook refuses every update.
    #[serde(default)]
    pub webhook_token: Option<Secret>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Seconds before a failed sync is tried again.
    #[serde(default = "default_retry")]
    pub retry_secs: u64,
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
}

fn default_issue_type() -> String {
    "Incident".into()
}
fn default_id_pointer() -> String {
    "/id".into()
}
fn default_timeout() -> u64 {
    10
}
fn default_retry() -> u64 {
    30
}
fn default_poll() -> u64 {
    1000
}

impl ItsmConfig {
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let error = |message: String| ConfigError {
            span: None,
            message,
        };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            errors.push(error(format!(
                "itsm.url: {:?} must start with http:// or https://",
                self.url
            )));
        }
        if self.preset == Preset::Jira && self.project.as_deref().unwrap_or("").is_empty() {
            errors.push(error(
                "itsm.project: the jira preset needs the project key issues go to".into(),
            ));
        }
        if !self.id_pointer.starts_with('/') {
            errors.push(error(format!(
                "itsm.id_pointer: {:?} is not a JSON pointer like /id",
                self.id_pointer
            )));
        }
        errors
    }
}

/// One call to the tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: &'static str,
    pub url: String,
    pub body: Value,
}

/// ServiceNow's incident states.
fn servicenow_state(status: IncidentStatus) -> &'static str {
    match status {
        IncidentStatus::New => "1",
        IncidentStatus::InProgress => "2",
        IncidentStatus::OnHold => "3",
        IncidentStatus::Resolved => "6",
        IncidentStatus::Closed => "7",
    }
}

fn jira_priority(priority: u8) -> &'static str {
    match priority {
        1 => "Highest",
        2 => "High",
        3 => "Medium",
        4 => "Low",
        _ => "Lowest",
    }
}

/// The call that creates (no external id yet) or updates the incident in the tool.
pub fn call_for(config: &ItsmConfig, incident: &Incident, console_url: &str) -> Call {
    let base = config.url.trim_end_matches('/');
    let link = format!(
        "{}/incidents/{}",
        console_url.trim_end_matches('/'),
        incident.number
    );
    let description = format!(
        "{}\n\nvakt incident {} ({} linked alert(s)): {link}",
        incident.description, incident.number, incident.alert_count
    );
    match config.preset {
        Preset::Servicenow => {
            let mut body = json!({
                "short_description": incident.title,
                "description": description,
                "impact": incident.impact.to_string(),
                "urgency": incident.urgency.to_string(),
                "state": servicenow_state(incident.status),
                "correlation_id": incident.number,
                "correlation_display": "vakt",
                "category": "software",
            });
            if let Some(assignee) = &incident.assignee {
                body["assigned_to"] = json!(assignee);
            }
            if incident.status == IncidentStatus::OnHold {
                // "Awaiting Caller" is the one hold reason every instance has.
                body["hold_reason"] = json!("1");
            }
            if matches!(
                incident.status,
                IncidentStatus::Resolved | IncidentStatus::Closed
            ) {
                body["close_code"] = json!("Solution provided");
                body["close_notes"] = json!(incident.resolution.clone().unwrap_or_default());
            }
            match &incident.external_id {
                None => Call {
                    method: "POST",
                    url: format!("{base}/api/now/table/incident"),
                    body,
                },
                Some(sys_id) => Call {
                    method: "PATCH",
                    url: format!("{base}/api/now/table/incident/{sys_id}"),
                    body,
                },
            }
        }
        Preset::Jira => {
            let mut fields = json!({
                "summary": incident.title,
                "description": format!("{description}\n\nStatus in vakt: {}", incident.status),
                "priority": {"name": jira_priority(incident.priority)},
            });
            match &incident.external_id {
                None => {
                    fields["project"] = json!({"key": config.project.clone().unwrap_or_default()});
                    fields["issuetype"] = json!({"name": config.issue_type});
                    fields["labels"] = json!(["vakt", incident.number]);
                    Call {
                        method: "POST",
                        url: format!("{base}/rest/api/2/issue"),
                        body: json!({ "fields": fields }),
                    }
                }
                Some(key) => Call {
                    method: "PUT",
                    url: format!("{base}/rest/api/2/issue/{key}"),
                    body: json!({ "fields": fields }),
                },
            }
        }
        Preset::Generic => {
            let body = json!({"version": "1", "incident": incident, "link": link});
            match &incident.external_id {
                None => Call {
                    method: "POST",
                    url: base.to_owned(),
                    body,
                },
                Some(id) => Call {
                    method: "PUT",
                    url: format!("{base}/{id}"),
                    body,
                },
            }
        }
    }
}

/// The external id and link in the tool's answer to a create.
pub fn created(config: &ItsmConfig, answer: &Value) -> Result<(String, Option<String>), String> {
    let base = config.url.trim_end_matches('/');
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match config.preset {
        Preset::Servicenow => {
            let sys_id = answer
                .pointer("/result/sys_id")
                .and_then(text)
                .ok_or("the answer has no result.sys_id")?;
            let url = format!("{base}/nav_to.do?uri=incident.do?sys_id={sys_id}");
            Ok((sys_id, Some(url)))
        }
        Preset::Jira => {
            let key = answer
                .pointer("/key")
                .and_then(text)
                .ok_or("the answer has no key")?;
            let url = format!("{base}/browse/{key}");
            Ok((key, Some(url)))
        }
        Preset::Generic => {
            let id = answer
                .pointer(&config.id_pointer)
                .and_then(text)
                .ok_or_else(|| format!("the answer has nothing at {}", config.id_pointer))?;
            let url = config
                .url_pointer
                .as_deref()
                .and_then(|p| answer.pointer(p))
                .and_then(text);
            Ok((id, url))
        }
    }
}

/// Starts the sync loop (when `[itsm]` is configured at the time of each round).
pub fn spawn(
    state: Arc<Deps>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        loop {
            if *stop.borrow() {
                break;
            }
            let config = (*state.config.get()).clone();
            let poll = config.as_ref().map_or(1000, |c| c.poll_interval_ms.max(10));
            if let Some(config) = config
                && let Err(error) = sync_round(&state, &client, &config).await
            {
                tracing::warn!(%error, "ITSM sync round failed; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(poll)) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

async fn sync_round(
    state: &Deps,
    client: &reqwest::Client,
    config: &ItsmConfig,
) -> Result<(), vakt_store::StoreError> {
    let now = Utc::now();
    let lease =
        now + chrono::Duration::seconds(i64::try_from(config.timeout_secs).unwrap_or(10) + 60);
    let claimed = state.store.claim_incident_syncs(now, lease, 20).await?;
    let console_url = (*state.console_url.get()).clone();
    for (incident, version) in claimed {
        let call = call_for(config, &incident, &console_url);
        let result = match send(client, config, &call).await {
            Ok(answer) => match &incident.external_id {
                Some(id) => SyncResult::Synced {
                    external_id: id.clone(),
                    external_url: None,
                },
                None => match created(config, &answer) {
                    Ok((external_id, external_url)) => SyncResult::Synced {
                        external_id,
                        external_url,
                    },
                    Err(error) => SyncResult::Failed {
                        error: format!("{} {}: {error}", call.method, call.url),
                        retry_at: Utc::now() + retry(config),
                    },
                },
            },
            Err(error) => SyncResult::Failed {
                error,
                retry_at: Utc::now() + retry(config),
            },
        };
        if let SyncResult::Failed { error, .. } = &result {
            tracing::warn!(incident = %incident.number, %error, "ITSM sync failed; will retry");
        }
        state
            .store
            .finish_incident_sync(&incident.id, version, &result)
            .await?;
    }
    Ok(())
}

fn retry(config: &ItsmConfig) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(config.retry_secs.max(1)).unwrap_or(30))
}

async fn send(client: &reqwest::Client, config: &ItsmConfig, call: &Call) -> Result<Value, String> {
    let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = client
        .request(method, &call.url)
        .timeout(Duration::from_secs(config.timeout_secs))
        .header("accept", "application/json")
        .json(&call.body);
    if let Some(token) = &config.token {
        request = request.bearer_auth(token.expose());
    } else if let Some(user) = &config.username {
        request = request.basic_auth(user, config.password.as_ref().map(Secret::expose));
    }
    for (k, v) in &config.headers {
        request = request.header(k, v.expose());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("{} {}: {e}", call.method, call.url))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{} {}: reading the answer: {e}", call.method, call.url))?;
    if !status.is_success() {
        let mut excerpt: String = text.chars().take(300).collect();
        if excerpt.len() < text.len() {
            excerpt.push_str("...");
        }
        return Err(format!(
            "{} {}: HTTP {status}: {excerpt}",
            call.method, call.url
        ));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| format!("{} {}: the answer is not JSON: {e}", call.method, call.url))
}

/// What the tool said about one of its records.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub external_id: String,
    pub status: Option<IncidentStatus>,
    pub resolution: Option<String>,
    pub note: Option<String>,
}

/// Reads the tool's webhook body (the preset's shape).
pub fn parse_inbound(preset: Preset, body: &Value) -> Result<Inbound, String> {
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
    };
    match preset {
        Preset::Servicenow => {
            let external_id = text("/sys_id").ok_or("sys_id: missing")?;
            let status = match body.get("state").map(|s| match s {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }) {
                None => None,
                Some(state) => Some(match state.as_str() {
                    "1" => IncidentStatus::New,
                    "2" => IncidentStatus::InProgress,
                    "3" => IncidentStatus::OnHold,
                    "6" => IncidentStatus::Resolved,
                    "7" | "8" => IncidentStatus::Closed,
                    other => {
                        return Err(format!(
                            "state: {other:?} is not a ServiceNow incident state (1, 2, 3, 6, 7, 8)"
                        ));
                    }
                }),
            };
            Ok(Inbound {
                external_id,
                status,
                resolution: text("/close_notes"),
                note: text("/comments"),
            })
        }
        Preset::Jira => {
            let external_id = text("/issue/key").ok_or("issue.key: missing")?;
            let status = match text("/issue/fields/status/name") {
                None => None,
                Some(name) => Some(match name.to_lowercase().as_str() {
                    "to do" | "open" | "new" | "backlog" => IncidentStatus::New,
                    "in progress" | "work in progress" => IncidentStatus::InProgress,
                    "on hold" | "pending" | "waiting for customer" => IncidentStatus::OnHold,
                    "done" | "resolved" | "fixed" => IncidentStatus::Resolved,
                    "closed" | "canceled" | "cancelled" => IncidentStatus::Closed,
                    other => {
                        return Err(format!(
                            "issue.fields.status.name: {other:?} has no vakt status"
                        ));
                    }
                }),
            };
            Ok(Inbound {
                external_id,
                status,
                resolution: text("/issue/fields/resolution/name")
                    .map(|r| format!("resolved in Jira: {r}")),
                note: text("/comment/body"),
            })
        }
        Preset::Generic => {
            let external_id = text("/external_id").ok_or("external_id: missing")?;
            let status = text("/status")
                .map(|s| IncidentStatus::parse(&s))
                .transpose()
                .map_err(|e| format!("status: {e}"))?;
            Ok(Inbound {
                external_id,
                status,
                resolution: text("/resolution"),
                note: text("/note"),
            })
        }
    }
}

/// Who the ITSM tool's changes are by, on the incident's timeline.
const ITSM_ACTOR: &str = "itsm";

/// Whether the tool's latest note on the incident is `note` (the update is a repeat).
fn last_itsm_note_is(entries: &[vakt_core::incident::IncidentEntry], note: &str) -> bool {
    entries
        .iter()
        .rev()
        .find(|e| e.kind == "note" && e.by == ITSM_ACTOR)
        .is_some_and(|e| e.message == format!("{ITSM_ACTOR}: {note}"))
}

/// What the webhook did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboundResult {
    pub incident: Incident,
    /// False when the update was already applied (a repeat).
    pub changed: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/itsm/webhook",
    tag = "incidents",
    request_body(content = Object, description = "The ITSM tool's update, in the preset's shape"),
    responses(
        (status = 200, body = InboundResult),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)
    )
)]
pub async fn webhook(
    State(state): State<Arc<Deps>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<InboundResult>, ApiError> {
    let config = state.config.get();
    let Some(itsm) = config.as_ref() else {
        return Err(ApiError::not_found("no [itsm] integration is configured"));
    };
    let expected = itsm.webhook_token.as_ref().map_or("", Secret::expose);
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if expected.is_empty() || given != expected {
        return Err(ApiError::unauthorized(
            "the ITSM webhook needs Authorization: Bearer <itsm.webhook_token>",
        ));
    }
    let value: Value = crate::http::parse_json(&body)?;
    let inbound = parse_inbound(itsm.preset, &value).map_err(ApiError::bad_request)?;
    let Some(id) = state
        .store
        .incident_by_external(&inbound.external_id)
        .await?
    else {
        return Err(ApiError::not_found(format!(
            "no incident is synced as {:?}",
            inbound.external_id
        )));
    };
    let Some((current, entries)) = state.store.incident(&id).await? else {
        return Err(ApiError::not_found(format!("no incident {id}")));
    };
    let status = inbound.status.filter(|s| *s != current.status);
    // The same update sent again (webhooks are retried) adds its note once.
    let note = inbound
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !last_itsm_note_is(&entries, n))
        .map(str::to_owned);
    if status.is_none() && note.is_none() {
        return Ok(Json(InboundResult {
            incident: current,
            changed: false,
        }));
    }
    let change = IncidentChange {
        status,
        resolution: match status {
            Some(IncidentStatus::Resolved) => {
                Some(inbound.resolution.clone().unwrap_or_else(|| {
                    format!("resolved in the ITSM tool ({})", inbound.external_id)
                }))
            }
            _ => None,
        },
        note,
        by: ITSM_ACTOR.into(),
        from_itsm: true,
        ..IncidentChange::default()
    };
    let incident = state
        .store
        .update_incident(&state.pipeline(), &id, &change)
        .await
        .map_err(crate::http::incidents::incident_error)?;
    Ok(Json(InboundResult {
        incident,
        changed: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            id: "01J".into(),
            number: "INC-000007".into(),
            title: "service=api: http on web1".into(),
            description: "api is down".into(),
            impact: 2,
            urgency: 1,
            priority: 2,
            status: IncidentStatus::New,
            assignee: None,
            correlation_key: Some("service=api".into()),
            opened_by: "rule r".into(),
            opened_at: Utc::now(),
            updated_at: Utc::now(),
            resolved_at: None,
            closed_at: None,
            resolution: None,
            external_id: None,
            external_url: None,
            alerts: Vec::new(),
            alert_count: 50,
        }
    }

    fn config(preset: Preset) -> ItsmConfig {
        ItsmConfig {
            preset,
            url: "https://example.service-now.com/".into(),
            username: None,
            password: None,
            token: None,
            headers: BTreeMap::new(),
            project: Some("OPS".into()),
            issue_type: default_issue_type(),
            id_pointer: default_id_pointer(),
            url_pointer: None,
            webhook_token: None,
            timeout_secs: 10,
            retry_secs: 30,
            poll_interval_ms: 1000,
        }
    }

    #[test]
    fn jira_create_and_update_shapes() {
        let c = config(Preset::Jira);
        let mut i = incident();
        let call = call_for(&c, &i, "http://vakt");
        assert_eq!(call.method, "POST");
        assert!(call.url.ends_with("/rest/api/2/issue"));
        assert_eq!(call.body["fields"]["project"]["key"], "OPS");
        assert_eq!(call.body["fields"]["issuetype"]["name"], "Incident");
        assert_eq!(call.body["fields"]["priority"]["name"], "High");
        assert_eq!(
            created(&c, &json!({"id": "10000", "key": "OPS-1", "self": "x"})),
            Ok((
                "OPS-1".into(),
                Some("https://example.service-now.com/browse/OPS-1".into())
            ))
        );
        i.external_id = Some("OPS-1".into());
        let call = call_for(&c, &i, "http://vakt");
        assert_eq!(call.method, "PUT");
        assert!(call.url.ends_with("/rest/api/2/issue/OPS-1"));
        assert!(call.body["fields"].get("project").is_none());
    }

    #[test]
    fn inbound_shapes_and_their_errors() {
        assert_eq!(
            parse_inbound(
                Preset::Servicenow,
                &json!({"sys_id": "abc", "state": 6, "close_notes": "fixed"})
            ),
            Ok(Inbound {
                external_id: "abc".into(),
                status: Some(IncidentStatus::Resolved),
                resolution: Some("fixed".into()),
                note: None
            })
        );
        assert!(
            parse_inbound(Preset::Servicenow, &json!({"sys_id": "abc", "state": "5"})).is_err()
        );
        assert_eq!(
            parse_inbound(
                Preset::Jira,
                &json!({"issue": {"key": "OPS-1", "fields": {"status": {"name": "In Progress"}}}})
            )
            .map(|i| i.status),
            Ok(Some(IncidentStatus::InProgress))
        );
        assert_eq!(
            parse_inbound(Preset::Generic, &json!({"status": "resolved"})),
            Err("external_id: missing".into())
        );
    }
}
