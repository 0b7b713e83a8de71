//! Alertmanager, spoken as Alertmanager speaks it: the API v2 (Prometheus and amtool use vakt unchanged) and the webhook receiver.
//!
//! Posted alerts become events: the alert's fingerprint is Alertmanager's (FNV-1a over the
//! sorted label set), every label is kept, labels map onto vakt fields by
//! `[sources.alertmanager.fields]`, and `endsAt` (or now + `resolve_timeout_secs` when
//! absent) becomes the time the alert resolves by itself unless Prometheus sends it again.
//! Silences created here are vakt's silences; alerts they match are listed as suppressed.
//!
//! **Boundary:** request bodies and query strings from Prometheus, amtool and Alertmanager.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use vakt_core::event::{LABEL_VALUE_LEN_MAX, LABELS_MAX, NAME_LEN_MAX, SUMMARY_LEN_MAX};
use vakt_core::matcher::{Matcher, MatcherSpec, valid_label_name};
use vakt_core::silence::{Silence, SilenceState};
use vakt_core::{Alert, AlertStatus, EventInput, Severity};
use vakt_store::AlertQuery;

use super::clean;
use crate::ingest::Channel;
use crate::ingest::{SubmitError, WhenFull};
use crate::live::Live;
use crate::silences::SilenceBoard;

/// What the Alertmanager API and webhook receiver need from the rest of vakt.
pub struct Deps {
    pub store: Arc<dyn vakt_store::Store>,
    pub pipeline: Live<vakt_core::Pipeline>,
    /// The handling stage in force (inhibition shows in listings as it is applied).
    pub handling: Live<crate::actions::HandlingConfig>,
    /// `[sources.alertmanager]` in force.
    pub config: Live<AlertmanagerConfig>,
    /// The configuration's name, shown by `/api/v2/status`.
    pub config_name: Live<String>,
    /// `POST /api/v2/alerts` and the webhook receiver.
    pub channel: Channel,
    pub webhook_channel: Channel,
    pub silences: Arc<SilenceBoard>,
    pub started_at: DateTime<Utc>,
    /// Alerts one request may carry (`ingest.request_events_max`), as for every channel.
    pub request_events_max: usize,
}

impl Deps {
    fn pipeline(&self) -> Arc<vakt_core::Pipeline> {
        self.pipeline.get()
    }

    fn handling(&self) -> Arc<crate::actions::HandlingConfig> {
        self.handling.get()
    }

    fn alertmanager_config(&self) -> Arc<AlertmanagerConfig> {
        self.config.get()
    }

    fn config_name(&self) -> Arc<String> {
        self.config_name.get()
    }

    async fn put_silence(&self, silence: &Silence) -> Result<(), vakt_store::StoreError> {
        self.silences.put(silence).await
    }
}

/// Alertmanager's API v2 and its webhook receiver.
pub fn routes<S: Clone + Send + Sync + 'static>(
    deps: Arc<Deps>,
) -> utoipa_axum::router::OpenApiRouter<S> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(post_alerts, get_alerts))
        .routes(routes!(get_groups))
        .routes(routes!(post_silences, get_silences))
        .routes(routes!(get_silence, delete_silence))
        .routes(routes!(get_status))
        .routes(routes!(get_receivers))
        .routes(routes!(webhook))
        .with_state(deps)
}

/// Channel of `POST /api/v2/alerts`.
pub const CHANNEL: &str = "alertmanager";
/// Channel of the webhook receiver.
pub const WEBHOOK_CHANNEL: &str = "alertmanager-webhook";
/// The one receiver vakt reports.
pub const RECEIVER: &str = "vakt";
/// Alerts one listing returns at most.
const LIST_ALERTS_MAX: usize = 100_000;

/// `[sources.alertmanager]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// An alert posted without `endsAt` resolves this long after it was last posted.
    pub resolve_timeout_secs: u64,
    /// Severity of alerts whose severity label is missing or unknown.
    pub default_severity: Severity,
    /// Which labels fill vakt's fields.
    pub fields: FieldMap,
    /// Events of these channels queued at most; beyond it senders get 429.
    pub queue_events_max: Option<usize>,
    /// The Alertmanager version `GET /api/v2/status` answers with (vakt's own version is
    /// added as build metadata: `0.25.0+vakt.0.1.0`). amtool compares its own major.minor
    /// with it and warns when they differ: set the version of the amtool your team runs.
    pub api_version: String,
}

/// The Alertmanager release whose API vakt speaks and is tested against (amtool 0.25).
pub const API_VERSION_DEFAULT: &str = "0.25.0";

impl AlertmanagerConfig {
    /// Checks what serde cannot: the version is `MAJOR.MINOR.PATCH`.
    pub fn validate(&self) -> Vec<vakt_core::config::ConfigError> {
        let parts: Vec<&str> = self.api_version.split('.').collect();
        if parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        {
            return Vec::new();
        }
        vec![vakt_core::config::ConfigError {
            span: None,
            message: format!(
                "sources.alertmanager.api_version: {:?} is not a version like {API_VERSION_DEFAULT}",
                self.api_version
            ),
        }]
    }
}

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            resolve_timeout_secs: 300,
            default_severity: Severity::Warning,
            fields: FieldMap::default(),
            queue_events_max: None,
            api_version: API_VERSION_DEFAULT.to_owned(),
        }
    }
}

/// `[sources.alertmanager.fields]`: label names for vakt's fields.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FieldMap {
    pub check: String,
    /// Tried in order; the first present label is the resource.
    pub resource: Vec<String>,
    pub severity: String,
    pub service: String,
    pub environment: String,
    /// Annotations tried in order for the summary.
    pub summary: Vec<String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        FieldMap {
            check: "alertname".into(),
            resource: vec!["instance".into(), "job".into()],
            severity: "severity".into(),
            service: "service".into(),
            environment: "environment".into(),
            summary: vec!["summary".into(), "description".into(), "message".into()],
        }
    }
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over sorted names and values, each
/// followed by byte 255, as 16 hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[255]);
        add(value.as_bytes());
        add(&[255]);
    }
    // `hex`, not `format!`, which costs every posted alert several hundred instructions.
    hex::encode(hash.to_be_bytes())
}

/// An alert as Prometheus and Alertmanager post it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "time")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

/// An alert's `startsAt` or `endsAt`: an RFC 3339 time, or null. Read with chrono's strict
/// RFC 3339 parser first, which takes the times Prometheus and Alertmanager write for a
/// fraction of what the relaxed one (chrono's `Deserialize`) costs, and with the relaxed
/// one when it refuses: every time accepted before is accepted, with the same value, and a
/// time neither takes is refused with the relaxed parser's message, as before.
fn time<'de, D: serde::Deserializer<'de>>(from: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    struct Time;
    impl<'de> serde::de::Visitor<'de> for Time {
        type Value = Option<DateTime<Utc>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 time or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, from: D) -> Result<Self::Value, D::Error> {
            from.deserialize_str(self)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match DateTime::parse_from_rfc3339(text) {
                Ok(time) => Ok(Some(time.to_utc())),
                Err(_) => text.parse::<DateTime<Utc>>().map(Some).map_err(E::custom),
            }
        }
    }
    from.deserialize_option(Time)
}

/// Alertmanager answers 400s with a JSON string.
/// 413 for a batch larger than `ingest.request_events_max`, counted as rejected.
fn too_many(channel: &Channel, count: usize, max: usize) -> Response {
    channel.count_rejected(count, "too_large");
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(Value::String(format!(
            "{count} alerts in one request; the limit is {max} (ingest.request_events_max)"
        ))),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(Value::String(message.into()))).into_response()
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "Alertmanager API: storage unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Value::String(format!("storage unavailable: {error}"))),
    )
        .into_response()
}

impl AlertmanagerConfig {
    /// Turns one posted alert into an event; `now` decides firing or resolved.
    pub fn to_event(&self, alert: PostableAlert, now: DateTime<Utc>) -> Result<EventInput, String> {
        if alert.labels.is_empty() {
            return Err("at least one label pair required".into());
        }
        if alert.labels.len() > LABELS_MAX {
            return Err(format!(
                "{} labels, vakt keeps at most {LABELS_MAX}",
                alert.labels.len()
            ));
        }
        for (name, value) in &alert.labels {
            if !valid_label_name(name) {
                return Err(format!("invalid label name {name:?}"));
            }
            if value.len() > LABEL_VALUE_LEN_MAX {
                return Err(format!(
                    "label {name} is longer than {LABEL_VALUE_LEN_MAX} bytes"
                ));
            }
        }
        // Go clients send the zero time (0001-01-01) for "not set".
        let set = |time: Option<DateTime<Utc>>| time.filter(|t| t.timestamp() > 0);
        let starts_at = set(alert.starts_at).unwrap_or(now);
        let ends_at = set(alert.ends_at);
        if ends_at.is_some_and(|end| end < starts_at) {
            return Err("start time must be before end time".into());
        }
        let firing = ends_at.is_none_or(|end| end > now);
        let label = |name: &str| {
            alert
                .labels
                .get(name)
                .map(|v| clean(v, NAME_LEN_MAX))
                .filter(|v| !v.is_empty())
        };
        let check = label(&self.fields.check).unwrap_or_else(|| "alert".to_owned());
        let resource = self
            .fields
            .resource
            .iter()
            .find_map(|name| label(name))
            .unwrap_or_else(|| "prometheus".to_owned());
        let severity = if firing {
            label(&self.fields.severity).map_or(self.default_severity, |s| {
                severity(&s).unwrap_or(self.default_severity)
            })
        } else {
            Severity::Ok
        };
        let summary = self
            .fields
            .summary
            .iter()
            .find_map(|name| {
                alert
                    .annotations
                    .get(name)
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
            })
            .map_or_else(|| check.clone(), |s| super::one_line(s, SUMMARY_LEN_MAX));
        let service = label(&self.fields.service);
        let environment = label(&self.fields.environment);
        let fingerprint = fingerprint(&alert.labels);
        let mut details = Map::new();
        if !alert.annotations.is_empty() {
            let annotations = alert.annotations.into_iter();
            let annotations = annotations.map(|(name, text)| (name, Value::String(text)));
            details.insert("annotations".into(), Value::Object(annotations.collect()));
        }
        if let Some(url) = alert.generator_url {
            details.insert("generatorURL".into(), Value::String(url));
        }
        details.insert(
            "startsAt".into(),
            json!(starts_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        if !super::details_fit(&details) {
            details = Map::from_iter([(
                "note".to_owned(),
                json!("annotations were larger than 64 KiB and were left out"),
            )]);
        }
        let resolve_timeout =
            Duration::seconds(i64::try_from(self.resolve_timeout_secs).unwrap_or(i64::MAX / 1000));
        Ok(EventInput {
            resource,
            check,
            severity: Some(severity),
            summary,
            service,
            environment,
            labels: super::printable_labels(alert.labels),
            occurred_at: Some(if firing {
                starts_at
            } else {
                ends_at.unwrap_or(now)
            }),
            fingerprint: Some(fingerprint),
            details,
            expires_at: firing.then(|| ends_at.unwrap_or(now + resolve_timeout)),
            ..EventInput::default()
        })
    }
}

/// Alertmanager's and Prometheus' severity words.
fn severity(text: &str) -> Option<Severity> {
    const WORDS: [(&[&str], Severity); 6] = [
        (
            &["critical", "crit", "emergency", "fatal", "page"],
            Severity::Critical,
        ),
        (&["major", "error", "high"], Severity::Major),
        (&["minor", "medium"], Severity::Minor),
        (&["warning", "warn"], Severity::Warning),
        (&["info", "informational", "low", "none"], Severity::Info),
        (&["ok", "resolved"], Severity::Ok),
    ];
    WORDS
        .iter()
        .find(|(words, _)| words.iter().any(|w| w.eq_ignore_ascii_case(text)))
        .map(|(_, severity)| *severity)
}

/// Create alerts (Prometheus posts here).
#[utoipa::path(post, path = "/api/v2/alerts", tag = "peer protocols", request_body(content = Object, description = "postableAlerts"), responses((status = 200), (status = 400, body = String)))]
pub async fn post_alerts(
    State(state): State<Arc<Deps>>,
    caller: crate::auth::Caller,
    body: Bytes,
) -> Response {
    let channel = &state.channel;
    let alerts: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(alerts) => alerts,
        Err(error) => {
            channel.count_rejected(1, "invalid");
            return bad_request(format!("invalid alerts: {error}"));
        }
    };
    channel.count_received(alerts.len(), body.len());
    if alerts.len() > state.request_events_max {
        return too_many(channel, alerts.len(), state.request_events_max);
    }
    let config = state.alertmanager_config();
    let now = Utc::now();
    let mut inputs = Vec::with_capacity(alerts.len());
    let count = alerts.len();
    for (index, alert) in alerts.into_iter().enumerate() {
        match config.to_event(alert, now) {
            Ok(input) => inputs.push(input),
            Err(error) => {
                channel.count_rejected(count, "invalid");
                return bad_request(format!("alert {index}: {error}"));
            }
        }
    }
    caller.sign(&mut inputs);
    submit(&state, channel, inputs).await
}

async fn submit(
    state: &Deps,
    channel: &crate::ingest::Channel,
    inputs: Vec<EventInput>,
) -> Response {
    let count = inputs.len();
    let result = crate::ingest::store(channel, state.pipeline(), inputs, WhenFull::Refuse).await;
    match result {
        Ok(_) => StatusCode::OK.into_response(),
        Err(SubmitError::QueueFull { .. }) => {
            channel.count_rejected(count, "queue_full");
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                Json(Value::String(
                    "the ingest queue is full; retry later".into(),
                )),
            )
                .into_response()
        }
        Err(error) => {
            channel.count_rejected(count, "store_error");
            unavailable(error)
        }
    }
}

/// Alertmanager's webhook payload (version 4).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookPayload {
    version: String,
    #[serde(default)]
    receiver: Option<String>,
    #[serde(default)]
    external_url: Option<String>,
    alerts: Vec<WebhookAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "time")]
    starts_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "time")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

/// Receive notifications from an existing Alertmanager (webhook payload version 4).
#[utoipa::path(post, path = "/api/v1/integrations/alertmanager", tag = "peer protocols", request_body(content = Object, description = "Alertmanager webhook payload, version 4"), responses((status = 200), (status = 400, body = String)))]
pub async fn webhook(
    State(state): State<Arc<Deps>>,
    caller: crate::auth::Caller,
    body: Bytes,
) -> Response {
    let channel = &state.webhook_channel;
    let payload: WebhookPayload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(error) => {
            channel.count_rejected(1, "invalid");
            return bad_request(format!("invalid webhook payload: {error}"));
        }
    };
    channel.count_received(payload.alerts.len(), body.len());
    if payload.version != "4" {
        channel.count_rejected(payload.alerts.len(), "invalid");
        return bad_request(format!(
            "webhook payload version {:?}; vakt understands version 4",
            payload.version
        ));
    }
    if payload.alerts.len() > state.request_events_max {
        return too_many(channel, payload.alerts.len(), state.request_events_max);
    }
    if let Some((index, alert)) = payload
        .alerts
        .iter()
        .enumerate()
        .find(|(_, a)| a.status != "firing" && a.status != "resolved")
    {
        channel.count_rejected(payload.alerts.len(), "invalid");
        return bad_request(format!(
            "alerts[{index}].status: {:?} is neither \"firing\" nor \"resolved\"",
            alert.status
        ));
    }
    let config = state.alertmanager_config();
    let now = Utc::now();
    let mut inputs = Vec::with_capacity(payload.alerts.len());
    for (index, alert) in payload.alerts.iter().enumerate() {
        // Alertmanager re-sends firing alerts every repeat_interval and sends resolved ones:
        // a firing alert keeps its own endsAt only when that is in the future.
        let resolved = alert.status == "resolved";
        let postable = PostableAlert {
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at: alert.starts_at,
            ends_at: if resolved {
                Some(
                    alert
                        .ends_at
                        .filter(|t| t.timestamp() > 0)
                        .unwrap_or(now)
                        .min(now),
                )
            } else {
                alert.ends_at.filter(|t| *t > now)
            },
            generator_url: alert.generator_url.clone(),
        };
        match config.to_event(postable, now) {
            Ok(mut input) => {
                if let Some(receiver) = &payload.receiver {
                    input.details.insert("receiver".into(), json!(receiver));
                }
                if let Some(url) = &payload.external_url {
                    input.details.insert("externalURL".into(), json!(url));
                }
                inputs.push(input);
            }
            Err(error) => {
                channel.count_rejected(payload.alerts.len(), "invalid");
                return bad_request(format!("alert {index}: {error}"));
            }
        }
    }
    caller.sign(&mut inputs);
    submit(&state, channel, inputs).await
}

/// Query parameters of the alert listings.
struct AlertFilter {
    active: bool,
    silenced: bool,
    inhibited: bool,
    unprocessed: bool,
    matchers: Vec<Matcher>,
    receiver: Option<regex::Regex>,
}

fn alert_filter(raw: Option<&str>) -> Result<AlertFilter, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| format!("invalid query string: {e}"))?;
    let mut filter = AlertFilter {
        active: true,
        silenced: true,
        inhibited: true,
        unprocessed: true,
        matchers: Vec::new(),
        receiver: None,
    };
    for (name, value) in pairs {
        let flag = || match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("{name}: expected true or false, got {other:?}")),
        };
        match name.as_str() {
            "active" => filter.active = flag()?,
            "silenced" => filter.silenced = flag()?,
            "inhibited" => filter.inhibited = flag()?,
            "unprocessed" => filter.unprocessed = flag()?,
            "filter" => filter
                .matchers
                .extend(Matcher::parse_list(&value).map_err(|e| format!("filter: {e}"))?),
            "receiver" => {
                filter.receiver = Some(
                    regex::Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| format!("receiver: {e}"))?,
                )
            }
            other => return Err(format!("unknown query parameter {other:?}")),
        }
    }
    Ok(filter)
}

/// Labels of a vakt alert as Alertmanager shows them: an alert from Prometheus keeps exactly
/// its labels; any other gets `alertname`, `instance` and `severity` from its fields.
fn label_view(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels = alert.labels.clone();
    if !alert.source.starts_with(CHANNEL) {
        let mut add = |name: &str, value: &str| {
            labels
                .entry(name.to_owned())
                .or_insert_with(|| value.to_owned());
        };
        add("alertname", &alert.check);
        add("instance", &alert.resource);
        add("severity", alert.severity.as_str());
        if let Some(service) = &alert.service {
            add("service", service);
        }
        if let Some(environment) = &alert.environment {
            add("environment", environment);
        }
        labels.retain(|name, _| valid_label_name(name));
    }
    labels
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The annotations to show for an alert: those its last event was posted with (all of
/// them, as Alertmanager keeps them), else its summary as `summary`.
fn annotations(alert: &Alert, last_event: Option<&vakt_core::pipeline::EventRecord>) -> Value {
    match last_event.and_then(|e| e.event.details.get("annotations")) {
        Some(Value::Object(posted)) => Value::Object(posted.clone()),
        _ => json!({"summary": alert.summary}),
    }
}

/// Alertmanager's `gettableAlert`.
fn gettable(
    alert: &Alert,
    labels: BTreeMap<String, String>,
    annotations: Value,
    silenced_by: Vec<String>,
    inhibited_by: Vec<String>,
    resolve_timeout: Duration,
) -> Value {
    let ends_at = alert
        .expires_at
        .unwrap_or(alert.last_seen + resolve_timeout);
    json!({
        "annotations": annotations,
        "endsAt": rfc3339(ends_at),
        "fingerprint": alert.fingerprint.as_str(),
        "receivers": [{"name": RECEIVER}],
        "startsAt": rfc3339(alert.first_seen),
        "status": {
            "state": if silenced_by.is_empty() && inhibited_by.is_empty() { "active" } else { "suppressed" },
            "inhibitedBy": inhibited_by,
            "silencedBy": silenced_by,
        },
        "updatedAt": rfc3339(alert.last_seen),
        "labels": labels,
    })
}

/// The open and acknowledged alerts that pass `filter`, in Alertmanager's shape.
async fn listed(state: &Deps, filter: &AlertFilter) -> Result<Vec<Value>, vakt_store::StoreError> {
    if filter
        .receiver
        .as_ref()
        .is_some_and(|r| !r.is_match(RECEIVER))
    {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let silences = state.silences.get();
    let resolve_timeout = Duration::seconds(
        i64::try_from(state.alertmanager_config().resolve_timeout_secs).unwrap_or(300),
    );
    let mut active = Vec::new();
    let mut query = AlertQuery {
        status: vec![AlertStatus::Open, AlertStatus::Acknowledged],
        limit: vakt_store::PAGE_LIMIT_MAX,
        ..AlertQuery::default()
    };
    loop {
        let page = state.store.alerts(&query).await?;
        active.extend(page.items);
        match page.next_cursor {
            Some(cursor) if active.len() < LIST_ALERTS_MAX => query.cursor = Some(cursor),
            _ => break,
        }
    }
    // Inhibition as the dispatcher applies it: an active source alert mutes its targets.
    let handling = state.handling();
    let mut shown = Vec::new();
    for alert in &active {
        let labels = label_view(alert);
        if !filter.matchers.iter().all(|m| m.matches(&labels)) {
            continue;
        }
        let silenced_by = silences.silencing_at(&labels, now);
        let inhibited_by: Vec<String> = handling
            .inhibitor(alert, &active)
            .map(|(_, source)| source.fingerprint.as_str().to_owned())
            .into_iter()
            .collect();
        // `unprocessed` never applies: every alert is processed before it is listed.
        let wanted = if !silenced_by.is_empty() {
            filter.silenced
        } else if !inhibited_by.is_empty() {
            filter.inhibited
        } else {
            filter.active
        };
        if wanted {
            shown.push((alert, labels, silenced_by, inhibited_by));
        }
    }
    // The annotations came with the alerts' events: read the last event of each, at once.
    let ids: Vec<&str> = shown
        .iter()
        .map(|(a, ..)| a.last_event_id.as_str())
        .collect();
    let events: BTreeMap<String, vakt_core::pipeline::EventRecord> = state
        .store
        .events_by_id(&ids)
        .await?
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let out = shown
        .into_iter()
        .map(|(alert, labels, silenced_by, inhibited_by)| {
            let annotations = annotations(alert, events.get(&alert.last_event_id));
            gettable(
                alert,
                labels,
                annotations,
                silenced_by,
                inhibited_by,
                resolve_timeout,
            )
        })
        .collect();
    let _ = filter.unprocessed;
    Ok(out)
}

/// List alerts (amtool alert query).
#[utoipa::path(get, path = "/api/v2/alerts", tag = "peer protocols", responses((status = 200, body = Object), (status = 400, body = String)))]
pub async fn get_alerts(State(state): State<Arc<Deps>>, RawQuery(raw): RawQuery) -> Response {
    let filter = match alert_filter(raw.as_deref()) {
        Ok(filter) => filter,
        Err(error) => return bad_request(error),
    };
    match listed(&state, &filter).await {
        Ok(alerts) => Json(alerts).into_response(),
        Err(error) => unavailable(error),
    }
}

/// List alert groups: one group per `alertname`, all for the `vakt` receiver.
#[utoipa::path(get, path = "/api/v2/alerts/groups", tag = "peer protocols", responses((status = 200, body = Object), (status = 400, body = String)))]
pub async fn get_groups(State(state): State<Arc<Deps>>, RawQuery(raw): RawQuery) -> Response {
    let filter = match alert_filter(raw.as_deref()) {
        Ok(filter) => filter,
        Err(error) => return bad_request(error),
    };
    let alerts = match listed(&state, &filter).await {
        Ok(alerts) => alerts,
        Err(error) => return unavailable(error),
    };
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for alert in alerts {
        let name = alert["labels"]["alertname"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        groups.entry(name).or_default().push(alert);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, alerts)| json!({"labels": {"alertname": name}, "receiver": {"name": RECEIVER}, "alerts": alerts}))
        .collect();
    Json(groups).into_response()
}

/// Alertmanager's `gettableSilence`.
fn gettable_silence(silence: &Silence, now: DateTime<Utc>) -> Value {
    json!({
        "id": silence.id,
        "status": {"state": silence.state(now).as_str()},
        "updatedAt": rfc3339(silence.updated_at),
        "matchers": silence.matchers,
        "startsAt": rfc3339(silence.starts_at),
        "endsAt": rfc3339(silence.ends_at),
        "createdBy": silence.created_by,
        "comment": silence.comment,
    })
}

/// List silences (amtool silence query). `filter` keeps silences with an equal matcher.
#[utoipa::path(get, path = "/api/v2/silences", tag = "peer protocols", responses((status = 200, body = Object), (status = 400, body = String)))]
pub async fn get_silences(State(state): State<Arc<Deps>>, RawQuery(raw): RawQuery) -> Response {
    let pairs: Vec<(String, String)> =
        match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
            Ok(pairs) => pairs,
            Err(error) => return bad_request(format!("invalid query string: {error}")),
        };
    let mut filters = Vec::new();
    let mut creators = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "filter" => match Matcher::parse_list(&value) {
                Ok(list) => filters.extend(list),
                Err(error) => return bad_request(format!("filter: {error}")),
            },
            "creator" => creators.push(value),
            other => return bad_request(format!("unknown query parameter {other:?}")),
        }
    }
    let every = vakt_store::SilenceQuery {
        set: vakt_store::SilenceSet::All,
        now: Utc::now(),
        changed_since: None,
    };
    let silences = match state.store.silences(&every).await {
        Ok(silences) => silences,
        Err(error) => return unavailable(error),
    };
    let now = Utc::now();
    let shown: Vec<Value> = silences
        .iter()
        .filter(|s| creators.is_empty() || creators.contains(&s.created_by))
        .filter(|s| {
            // A filter matcher keeps a silence whose equality matchers satisfy it.
            let labels: BTreeMap<String, String> = s
                .matchers
                .iter()
                .filter(|m| m.is_equal && !m.is_regex)
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect();
            filters.iter().all(|f| f.matches(&labels))
        })
        .map(|s| gettable_silence(s, now))
        .collect();
    Json(shown).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<MatcherSpec>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SilenceCreated {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

/// Create or update a silence (amtool silence add).
#[utoipa::path(post, path = "/api/v2/silences", tag = "peer protocols", request_body(content = Object, description = "postableSilence"), responses((status = 200, body = Object), (status = 400, body = String), (status = 404, body = String)))]
pub async fn post_silences(
    State(state): State<Arc<Deps>>,
    caller: crate::auth::Caller,
    body: Bytes,
) -> Response {
    let mut posted: PostableSilence = match serde_json::from_slice(&body) {
        Ok(posted) => posted,
        Err(error) => return bad_request(format!("invalid silence: {error}")),
    };
    posted.created_by = caller.by(&posted.created_by);
    let now = Utc::now();
    let existing = match posted.id.as_deref().filter(|id| !id.is_empty()) {
        None => None,
        Some(id) => match state.store.silence(id).await {
            Ok(Some(silence)) => Some(silence),
            Ok(None) => {
                return (
                    StatusCode::NOT_FOUND,
                    Json(Value::String(format!("silence {id} not found"))),
                )
                    .into_response();
            }
            Err(error) => return unavailable(error),
        },
    };
    if existing
        .as_ref()
        .is_some_and(|s| s.state(now) == SilenceState::Expired)
    {
        return bad_request("an expired silence cannot be changed; create a new one");
    }
    let silence = Silence {
        id: existing.map_or_else(new_silence_id, |s| s.id),
        matchers: posted.matchers,
        // A silence cannot start in the past: it starts now at the earliest.
        starts_at: posted.starts_at.max(now),
        ends_at: posted.ends_at,
        created_by: posted.created_by,
        comment: posted.comment,
        updated_at: now,
    };
    if let Err(error) = silence.validate() {
        return bad_request(format!("invalid silence: {error}"));
    }
    match state.put_silence(&silence).await {
        Ok(()) => {
            tracing::info!(silence = %silence.id, by = %silence.created_by, "silence created or updated");
            Json(SilenceCreated {
                silence_id: silence.id,
            })
            .into_response()
        }
        Err(error) => unavailable(error),
    }
}

/// A UUID (version 4 layout), as Alertmanager's silence ids are.
pub fn new_silence_id() -> String {
    let bits = ulid::Ulid::new().0;
    let bits = (bits & !(0xf << 76)) | (0x4 << 76);
    let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Get one silence.
#[utoipa::path(get, path = "/api/v2/silence/{id}", tag = "peer protocols", params(("id" = String, Path)), responses((status = 200, body = Object), (status = 404)))]
pub async fn get_silence(State(state): State<Arc<Deps>>, Path(id): Path<String>) -> Response {
    match state.store.silence(&id).await {
        Ok(Some(silence)) => Json(gettable_silence(&silence, Utc::now())).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => unavailable(error),
    }
}

/// Expire a silence (amtool silence expire).
#[utoipa::path(delete, path = "/api/v2/silence/{id}", tag = "peer protocols", params(("id" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn delete_silence(State(state): State<Arc<Deps>>, Path(id): Path<String>) -> Response {
    let mut silence = match state.store.silence(&id).await {
        Ok(Some(silence)) => silence,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(Value::String(format!("silence {id} not found"))),
            )
                .into_response();
        }
        Err(error) => return unavailable(error),
    };
    let now = Utc::now();
    if silence.state(now) != SilenceState::Expired {
        silence.expire(now);
        if let Err(error) = state.put_silence(&silence).await {
            return unavailable(error);
        }
        tracing::info!(silence = %id, "silence expired");
    }
    StatusCode::OK.into_response()
}

/// Status of this "Alertmanager": vakt, no cluster.
#[utoipa::path(get, path = "/api/v2/status", tag = "peer protocols", responses((status = 200, body = Object)))]
pub async fn get_status(State(state): State<Arc<Deps>>) -> Response {
    Json(json!({
        "cluster": {"name": "vakt", "status": "disabled", "peers": []},
        "versionInfo": {
            // amtool warns unless the major.minor is its own; vakt's version rides along.
            "version": format!(
                "{}+vakt.{}",
                state.alertmanager_config().api_version,
                env!("CARGO_PKG_VERSION")
            ),
            "revision": "vakt",
            "branch": "vakt",
            "buildUser": "vakt",
            "buildDate": "",
            "goVersion": "none (vakt is written in Rust)",
        },
        "config": {"original": format!("# vakt {}: configuration {}\nroute:\n  receiver: {RECEIVER}\nreceivers:\n  - name: {RECEIVER}\n", env!("CARGO_PKG_VERSION"), state.config_name())},
        "uptime": rfc3339(state.started_at),
    }))
    .into_response()
}

/// Receivers: vakt itself.
#[utoipa::path(get, path = "/api/v2/receivers", tag = "peer protocols", responses((status = 200, body = Object)))]
pub async fn get_receivers() -> Response {
    Json(json!([{"name": RECEIVER}])).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_times_read_as_chronos_own_reading_reads_them() {
        // Times as Prometheus, Alertmanager and other clients write them, and ones only the
        // relaxed parser takes, and ones nobody takes.
        let times = [
            "2020-01-01T00:00:00Z",
            "2020-01-01T00:00:00.123Z",
            "2020-01-01T00:00:00.123456789Z",
            "2026-12-06T10:15:30.5+02:00",
            "2026-12-06T10:15:30-05:30",
            "2026-12-06t10:15:30z",
            "2026-12-06 10:15:30Z",
            "2016-12-31T23:59:60Z",
            "0001-01-01T00:00:00Z",
            "2100-01-01T00:00:00Z",
            "2026-12-06T10:15:30",
            "2026-13-06T10:15:30Z",
            "2026-12-06",
            "yesterday",
            "",
        ];
        let mut refused = 0;
        for text in times {
            let body = json!([{"labels": {"a": "b"}, "startsAt": text, "endsAt": text}]);
            let ours = serde_json::from_value::<Vec<PostableAlert>>(body.clone());
            let chronos = serde_json::from_value::<Option<DateTime<Utc>>>(json!(text));
            match (ours, chronos) {
                (Ok(alerts), Ok(time)) => {
                    assert_eq!(alerts[0].starts_at, time, "{text}");
                    assert_eq!(alerts[0].ends_at, time, "{text}");
                }
                (Err(ours), Err(chronos)) => {
                    refused += 1;
                    let message = ours.to_string();
                    assert!(
                        message.starts_with(&chronos.to_string()),
                        "{text}: {message}"
                    );
                }
                (ours, chronos) => panic!("{text}: ours {ours:?}, chrono's {chronos:?}"),
            }
        }
        assert_eq!(refused, 5, "the last five are not times");
        // Null and absent are "not set", as before.
        let body = json!([{"labels": {"a": "b"}, "startsAt": null}]);
        let alerts: Vec<PostableAlert> = serde_json::from_value(body).expect("null");
        assert_eq!((alerts[0].starts_at, alerts[0].ends_at), (None, None));
        let body = json!([{"labels": {"a": "b"}, "endsAt": 5}]);
        let error = serde_json::from_value::<Vec<PostableAlert>>(body).expect_err("a number");
        assert!(error.to_string().contains("an RFC 3339 time"), "{error}");
    }

    #[test]
    fn fingerprints_match_alertmanager() {
        // Values from Alertmanager's own fingerprints (prometheus/common model tests).
        let empty = BTreeMap::new();
        assert_eq!(fingerprint(&empty), "cbf29ce484222325");
        let labels: BTreeMap<String, String> =
            [("alertname".to_string(), "AlwaysFiring".to_string())].into();
        assert_eq!(fingerprint(&labels).len(), 16);
        let mut other = labels.clone();
        other.insert("instance".into(), "a".into());
        assert_ne!(fingerprint(&labels), fingerprint(&other));
        // Sixteen lowercase hex digits, zero-padded, whatever the hash.
        for n in 0..2_000 {
            let labels: BTreeMap<String, String> = [("instance".to_string(), n.to_string())].into();
            let written = fingerprint(&labels);
            let hash = u64::from_str_radix(&written, 16).expect("hex");
            assert_eq!(written, format!("{hash:016x}"));
        }
    }

    #[test]
    fn severity_words_are_read_in_any_case() {
        assert_eq!(severity("CRITICAL"), Some(Severity::Critical));
        assert_eq!(severity("Page"), Some(Severity::Critical));
        assert_eq!(severity("Warn"), Some(Severity::Warning));
        assert_eq!(severity("informational"), Some(Severity::Info));
        assert_eq!(severity("RESOLVED"), Some(Severity::Ok));
        assert_eq!(severity("criticality"), None);
        assert_eq!(severity(""), None);
    }

    #[test]
    fn posted_alerts_map_onto_events() {
        let config = AlertmanagerConfig::default();
        let now = Utc::now();
        let alert = PostableAlert {
            labels: [
                ("alertname", "DiskFull"),
                ("instance", "db01:9100"),
                ("severity", "critical"),
                ("service", "billing"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            annotations: [("summary".to_string(), "/var is full".to_string())].into(),
            starts_at: Some(now - Duration::minutes(5)),
            ends_at: None,
            generator_url: Some("http://prometheus/graph".into()),
        };
        let event = config.to_event(alert.clone(), now).expect("valid");
        assert_eq!(event.details["annotations"]["summary"], "/var is full");
        assert_eq!(event.details["generatorURL"], "http://prometheus/graph");
        assert_eq!(
            (event.check.as_str(), event.resource.as_str()),
            ("DiskFull", "db01:9100")
        );
        assert_eq!(event.severity, Some(Severity::Critical));
        assert_eq!(event.service.as_deref(), Some("billing"));
        assert_eq!(event.summary, "/var is full");
        assert_eq!(event.labels.len(), 4, "every label is kept");
        assert_eq!(event.expires_at, Some(now + Duration::seconds(300)));
        let resolved = PostableAlert {
            ends_at: Some(now - Duration::seconds(1)),
            ..alert.clone()
        };
        assert_eq!(
            config.to_event(resolved, now).expect("valid").severity,
            Some(Severity::Ok)
        );
        let backwards = PostableAlert {
            ends_at: Some(now - Duration::hours(1)),
            ..alert
        };
        assert!(config.to_event(backwards, now).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_label_set_is_a_valid_event_or_an_error(
            labels in proptest::collection::btree_map(".{0,12}", ".{0,40}", 0..12),
            annotations in proptest::collection::btree_map("[a-z]{1,8}", ".{0,80}", 0..4),
            ends_in in -100i64..100,
        ) {
            let now = Utc::now();
            let alert = PostableAlert { labels, annotations, starts_at: None, ends_at: Some(now + Duration::seconds(ends_in)), generator_url: None };
            if let Ok(event) = AlertmanagerConfig::default().to_event(alert, now) {
                let value = serde_json::to_value(&event).expect("serialises");
                proptest::prop_assert!(EventInput::from_json(0, value).is_ok(), "{:?}", event);
            }
        }

        #[test]
        fn any_json_body_is_alerts_or_a_refusal(body in ".{0,200}") {
            if let Ok(alerts) = serde_json::from_str::<Vec<PostableAlert>>(&body) {
                for alert in alerts {
                    let _ = AlertmanagerConfig::default().to_event(alert, Utc::now());
                }
            }
        }
    }

    #[test]
    fn silence_ids_look_like_uuids() {
        let id = new_silence_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
