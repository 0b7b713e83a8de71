//! PagerDuty Events API v2 (`POST /v2/enqueue`): trigger, acknowledge and resolve, answered as PagerDuty answers.
//!
//! A `dedup_key` is scoped to its routing key: the alert's fingerprint is
//! `pagerduty:INTEGRATION:DEDUP_KEY`. A trigger without a key gets a generated one, returned
//! in the answer. A trigger becomes an event; a resolve becomes an `ok` event for the same
//! fingerprint; an acknowledge acknowledges the open alert. Acknowledging or resolving a key
//! vakt does not know is accepted and changes nothing.
//!
//! **Boundary:** request bodies, at most 512 KB.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use vakt_core::alert::{OperatorAction, OperatorRequest};
use vakt_core::event::{LABEL_VALUE_LEN_MAX, NAME_LEN_MAX, SUMMARY_LEN_MAX};
use vakt_core::{AlertStatus, EventInput, Severity};
use vakt_store::AlertQuery;

use super::{clean, cut};
use crate::ingest::Channel;
use crate::ingest::{SubmitError, WhenFull};
use crate::live::Live;
use crate::silences::SilenceBoard;

/// What the PagerDuty Events API needs from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// `[sources.pagerduty]` in force (its integrations and their routing keys).
    pub config: Live<PagerDutyConfig>,
    /// The `pagerduty` channel.
    pub channel: Channel,
    pub silences: Arc<SilenceBoard>,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }

    /// Queues one event and waits until it is stored (PagerDuty answers only then).
    async fn store_one(&self, input: EventInput) -> Result<(), SubmitError> {
        crate::ingest::store(
            &self.channel,
            self.pipeline(),
            vec![input],
            WhenFull::Refuse,
        )
        .await
    }

    /// The integration a routing key belongs to.
    fn pagerduty_integration(&self, routing_key: &str) -> Option<Integration> {
        self.config
            .get()
            .integrations
            .iter()
            .find(|i| i.routing_key.expose() == routing_key)
            .cloned()
    }
}

/// `POST /v2/enqueue`, with PagerDuty's own body limit.
pub fn routes<S: Clone + Send + Sync + 'static>(
    deps: Arc<Deps>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(enqueue))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(deps)
}

/// The channel name: default `source` of the events and `channel` label of the metrics.
pub const CHANNEL: &str = "pagerduty";
/// PagerDuty's limit on one event.
pub const BODY_BYTES_MAX: usize = 512 * 1024;

/// `[sources.pagerduty]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// One entry per integration key senders use.
    #[serde(default)]
    pub integrations: Vec<Integration>,
    /// Events of this channel queued at most; beyond it senders get 429.
    #[serde(default)]
    pub queue_events_max: Option<usize>,
}

/// `[[sources.pagerduty.integrations]]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// Scopes dedup keys and labels events (`integration`).
    pub name: String,
    /// The integration (routing) key senders put in `routing_key` (a secret: `${ENV}`,
    /// `{ env = "NAME" }` and `{ file = "/path" }` work).
    pub routing_key: vakt_core::secret::Secret,
    /// `service` given to this integration's events.
    #[serde(default)]
    pub service: Option<String>,
    /// `environment` given to this integration's events.
    #[serde(default)]
    pub environment: Option<String>,
}

/// PagerDuty's answer shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub status: &'static str,
    pub message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

fn invalid(errors: Vec<String>) -> Response {
    reply(
        StatusCode::BAD_REQUEST,
        Answer {
            status: "invalid event",
            message: "Event object is invalid",
            dedup_key: None,
            errors,
        },
    )
}

fn reply(status: StatusCode, answer: Answer) -> Response {
    (status, Json(answer)).into_response()
}

#[derive(Debug, Deserialize)]
struct Request {
    routing_key: Option<String>,
    event_action: Option<String>,
    dedup_key: Option<String>,
    payload: Option<Payload>,
    client: Option<String>,
    client_url: Option<String>,
    #[serde(default)]
    links: Vec<Value>,
    #[serde(default)]
    images: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    summary: Option<String>,
    source: Option<String>,
    severity: Option<String>,
    timestamp: Option<String>,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    custom_details: Option<Value>,
}

/// Receive a PagerDuty Events API v2 event (trigger, acknowledge or resolve).
#[utoipa::path(
    post,
    path = "/v2/enqueue",
    tag = "peer protocols",
    request_body(content = Object, description = "A PagerDuty Events API v2 event"),
    responses(
        (status = 202, description = "Event processed", body = Answer),
        (status = 400, description = "Event object is invalid", body = Answer),
        (status = 413, description = "Larger than 512 KB", body = Answer),
        (status = 429, description = "Queue full; retry later", body = Answer),
    )
)]
pub async fn enqueue(
    State(state): State<Arc<Deps>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let channel = &state.channel;
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            channel.count_rejected(1, "too_large");
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                Answer {
                    status: "invalid event",
                    message: "Event object is invalid",
                    dedup_key: None,
                    errors: vec!["Event is larger than 512 KB".into()],
                },
            );
        }
        Err(rejection) => {
            return invalid(vec![format!("Cannot read the request body: {rejection}")]);
        }
    };
    channel.count_received(1, body.len());
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            channel.count_rejected(1, "invalid");
            return invalid(vec![format!("Event is not valid JSON: {error}")]);
        }
    };
    match handle(&state, request).await {
        Ok(dedup_key) => reply(
            StatusCode::ACCEPTED,
            Answer {
                status: "success",
                message: "Event processed",
                dedup_key: Some(dedup_key),
                errors: Vec::new(),
            },
        ),
        Err(Refusal::Invalid(errors)) => {
            channel.count_rejected(1, "invalid");
            invalid(errors)
        }
        Err(Refusal::Submit(SubmitError::QueueFull { .. })) => {
            channel.count_rejected(1, "queue_full");
            reply(
                StatusCode::TOO_MANY_REQUESTS,
                Answer {
                    status: "throttle event",
                    message: "Requests for this service are arriving too quickly. Please retry later.",
                    dedup_key: None,
                    errors: Vec::new(),
                },
            )
        }
        Err(Refusal::Submit(error)) => {
            tracing::warn!(%error, "PagerDuty event not stored");
            channel.count_rejected(1, "store_error");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                Answer {
                    status: "unavailable",
                    message: "The event could not be stored. Please retry later.",
                    dedup_key: None,
                    errors: Vec::new(),
                },
            )
        }
    }
}

enum Refusal {
    Invalid(Vec<String>),
    Submit(SubmitError),
}

impl From<SubmitError> for Refusal {
    fn from(error: SubmitError) -> Self {
        Refusal::Submit(error)
    }
}

impl From<vakt_store::StoreError> for Refusal {
    fn from(error: vakt_store::StoreError) -> Self {
        Refusal::Submit(SubmitError::Store(error))
    }
}

/// The integration whose routing key came with the event is its sender (the trace says so).
fn signed(mut input: EventInput, integration: &Integration) -> EventInput {
    input.sender = Some(format!("PagerDuty integration {}", integration.name));
    input
}

async fn handle(state: &Arc<Deps>, request: Request) -> Result<String, Refusal> {
    let mut errors = Vec::new();
    let integration = match request.routing_key.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push("'routing_key' is missing or blank".to_owned());
            None
        }
        Some(key) => {
            let found = state.pagerduty_integration(key);
            if found.is_none() {
                errors.push("'routing_key' is not a known integration key".to_owned());
            }
            found
        }
    };
    let action = request.event_action.as_deref().unwrap_or("");
    if !matches!(action, "trigger" | "acknowledge" | "resolve") {
        errors.push("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')".to_owned());
    }
    let dedup_key = request
        .dedup_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if dedup_key.is_some_and(|k| k.len() > 255) {
        errors.push("'dedup_key' is longer than 255 characters".to_owned());
    }
    if action != "trigger" && dedup_key.is_none() && matches!(action, "acknowledge" | "resolve") {
        errors.push("'dedup_key' is required for acknowledge and resolve events".to_owned());
    }
    let trigger = if action == "trigger" {
        Some(trigger_fields(&request, &mut errors))
    } else {
        None
    };
    let Some(integration) = integration.filter(|_| errors.is_empty()) else {
        return Err(Refusal::Invalid(errors));
    };
    let dedup_key = dedup_key.map_or_else(
        || ulid::Ulid::new().to_string().to_lowercase(),
        str::to_owned,
    );
    let fingerprint = fingerprint(&integration.name, &dedup_key);
    match (action, trigger) {
        ("trigger", Some(fields)) => {
            let input = trigger_event(&request, fields, &integration, &dedup_key, fingerprint);
            state.store_one(signed(input, &integration)).await?;
        }
        ("acknowledge", _) => {
            let open = state
                .store
                .alerts(&AlertQuery {
                    fingerprint: Some(fingerprint),
                    status: vec![AlertStatus::Open],
                    limit: 1,
                    ..AlertQuery::default()
                })
                .await?;
            if let Some(alert) = open.items.first() {
                let by = format!(
                    "pagerduty:{}",
                    request.client.as_deref().unwrap_or(&integration.name)
                );
                let ack = OperatorRequest {
                    action: OperatorAction::Ack,
                    by,
                    comment: Some("acknowledged through the PagerDuty Events API".into()),
                };
                // Someone may have acknowledged it meanwhile: that is the same outcome.
                if let Err(error) = state
                    .store
                    .operate(&state.pipeline(), &state.silences.get(), &alert.id, &ack)
                    .await
                {
                    tracing::debug!(%error, alert = %alert.id, "PagerDuty acknowledge changed nothing");
                }
            }
        }
        _ => {
            // resolve: an ok event for the same fingerprint, through the whole pipeline.
            let known = state
                .store
                .alerts(&AlertQuery {
                    fingerprint: Some(fingerprint.clone()),
                    limit: 1,
                    ..AlertQuery::default()
                })
                .await?;
            let (resource, check) = known.items.first().map_or_else(
                || (integration.name.clone(), CHANNEL.to_owned()),
                |a| (a.resource.clone(), a.check.clone()),
            );
            let input = EventInput {
                resource,
                check,
                severity: Some(Severity::Ok),
                summary: "resolved through the PagerDuty Events API".to_owned(),
                service: integration.service.clone(),
                environment: integration.environment.clone(),
                labels: BTreeMap::from([
                    (
                        "dedup_key".to_owned(),
                        super::printable(&dedup_key, LABEL_VALUE_LEN_MAX),
                    ),
                    ("integration".to_owned(), integration.name.clone()),
                ]),
                fingerprint: Some(fingerprint),
                ..EventInput::default()
            };
            state.store_one(signed(input, &integration)).await?;
        }
    }
    Ok(dedup_key)
}

/// `pagerduty:INTEGRATION:KEY`, hashed when it would not fit a fingerprint.
fn fingerprint(integration: &str, dedup_key: &str) -> String {
    let plain = format!("pagerduty:{integration}:{dedup_key}");
    if plain.len() <= vakt_core::event::FINGERPRINT_LEN_MAX && !plain.chars().any(char::is_control)
    {
        return plain;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(plain.as_bytes());
    format!(
        "pagerduty:{}:{}",
        cut(integration, 64),
        hex::encode(&digest[..16])
    )
}

struct TriggerFields {
    summary: String,
    /// The source as the event's resource: control characters removed, trimmed, bounded.
    source: String,
    severity: Severity,
    timestamp: Option<DateTime<Utc>>,
}

fn trigger_fields(request: &Request, errors: &mut Vec<String>) -> TriggerFields {
    let payload = request.payload.as_ref();
    let text =
        |value: Option<&String>| value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let summary = text(payload.and_then(|p| p.summary.as_ref()));
    if summary.is_none() {
        errors.push("'payload.summary' is missing or blank".to_owned());
    }
    // The event's resource is the source without control characters (cleaned here, once):
    // one made of them alone is blank too.
    let source = payload
        .and_then(|p| p.source.as_deref())
        .map(|s| clean(s, NAME_LEN_MAX))
        .filter(|s| !s.is_empty());
    if source.is_none() {
        errors.push("'payload.source' is missing or blank".to_owned());
    }
    let severity = match payload.and_then(|p| p.severity.as_deref()) {
        Some("critical") => Some(Severity::Critical),
        Some("error") => Some(Severity::Major),
        Some("warning") => Some(Severity::Warning),
        Some("info") => Some(Severity::Info),
        _ => {
            errors.push("'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')".to_owned());
            None
        }
    };
    let timestamp = match payload.and_then(|p| p.timestamp.as_deref()) {
        None => None,
        Some(text) => {
            let parsed = DateTime::parse_from_rfc3339(text)
                .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"));
            match parsed {
                Ok(time) => Some(time.with_timezone(&Utc)),
                Err(_) => {
                    errors.push("'payload.timestamp' is not an ISO 8601 timestamp".to_owned());
                    None
                }
            }
        }
    };
    TriggerFields {
        summary: summary.unwrap_or_default(),
        source: source.unwrap_or_default(),
        severity: severity.unwrap_or(Severity::Info),
        timestamp,
    }
}

fn trigger_event(
    request: &Request,
    fields: TriggerFields,
    integration: &Integration,
    dedup_key: &str,
    fingerprint: String,
) -> EventInput {
    let payload = request.payload.as_ref();
    let mut labels = BTreeMap::from([
        (
            "dedup_key".to_owned(),
            super::printable(dedup_key, LABEL_VALUE_LEN_MAX),
        ),
        ("integration".to_owned(), integration.name.clone()),
    ]);
    for (key, value) in [
        ("component", payload.and_then(|p| p.component.as_ref())),
        ("group", payload.and_then(|p| p.group.as_ref())),
        ("class", payload.and_then(|p| p.class.as_ref())),
        ("client", request.client.as_ref()),
    ] {
        if let Some(value) = value
            .map(|v| clean(v, LABEL_VALUE_LEN_MAX))
            .filter(|v| !v.is_empty())
        {
            labels.insert(key.to_owned(), value);
        }
    }
    let check = payload
        .and_then(|p| p.component.as_ref().or(p.class.as_ref()))
        .map(|c| clean(c, NAME_LEN_MAX))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| CHANNEL.to_owned());
    let mut details = Map::new();
    if let Some(custom) = payload.and_then(|p| p.custom_details.clone()) {
        details.insert("custom_details".into(), custom);
    }
    if let Some(url) = &request.client_url {
        details.insert("client_url".into(), json!(url));
    }
    if !request.links.is_empty() {
        details.insert("links".into(), json!(request.links));
    }
    if !request.images.is_empty() {
        details.insert("images".into(), json!(request.images));
    }
    if !super::details_fit(&details) {
        details = Map::from_iter([(
            "note".to_owned(),
            json!("custom_details, links and images were larger than 64 KiB and were left out"),
        )]);
    }
    EventInput {
        resource: fields.source,
        check,
        severity: Some(fields.severity),
        summary: super::one_line(&fields.summary, SUMMARY_LEN_MAX),
        service: integration.service.clone(),
        environment: integration.environment.clone(),
        labels,
        occurred_at: fields.timestamp,
        fingerprint: Some(fingerprint),
        details,
        ..EventInput::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration() -> Integration {
        Integration {
            name: "i".into(),
            routing_key: vakt_core::secret::Secret::new("k"),
            service: Some("s".into()),
            environment: None,
        }
    }

    proptest::proptest! {
        #[test]
        fn any_trigger_is_a_valid_event_or_listed_errors(
            summary in proptest::option::of(".{0,300}"),
            source in proptest::option::of(".{0,300}"),
            severity in proptest::option::of("critical|error|warning|info|bogus"),
            component in proptest::option::of(".{0,50}"),
            timestamp in proptest::option::of(".{0,30}"),
            dedup in ".{1,255}",
        ) {
            let request = Request {
                routing_key: Some("k".into()), event_action: Some("trigger".into()), dedup_key: Some(dedup.clone()),
                payload: Some(Payload { summary, source, severity, timestamp, component, group: None, class: None, custom_details: None }),
                client: None, client_url: None, links: vec![], images: vec![],
            };
            let mut errors = Vec::new();
            let fields = trigger_fields(&request, &mut errors);
            if errors.is_empty() {
                let event = trigger_event(&request, fields, &integration(), &dedup, fingerprint("i", &dedup));
                let value = serde_json::to_value(&event).expect("serialises");
                proptest::prop_assert!(EventInput::from_json(0, value).is_ok(), "{:?}", event);
            }
        }
    }

    #[test]
    fn a_source_of_control_characters_is_blank() {
        let request = Request {
            routing_key: Some("k".into()),
            event_action: Some("trigger".into()),
            dedup_key: Some("d".into()),
            payload: Some(Payload {
                summary: Some("disk full".into()),
                source: Some("\0\u{7}".into()),
                severity: Some("critical".into()),
                timestamp: None,
                component: None,
                group: None,
                class: None,
                custom_details: None,
            }),
            client: None,
            client_url: None,
            links: vec![],
            images: vec![],
        };
        let mut errors = Vec::new();
        trigger_fields(&request, &mut errors);
        assert_eq!(errors, ["'payload.source' is missing or blank"]);
    }

    #[test]
    fn long_keys_are_hashed_into_a_fingerprint() {
        assert_eq!(fingerprint("i", "k1"), "pagerduty:i:k1");
        let long = fingerprint("i", &"k".repeat(255));
        assert!(
            long.len() <= vakt_core::event::FINGERPRINT_LEN_MAX && long.starts_with("pagerduty:i:")
        );
    }
}
