//! `/api/v1/events`: ingest (object, array, NDJSON; atomic), list and read events.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde_json::Value;
use vakt_core::pipeline::EventRecord;
use vakt_core::{Category, EventInput, FieldError, Severity};
use vakt_store::{EventQuery, Page};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::query::{Params, capped_page};
use crate::ingest::WhenFull;
use crate::metrics::{ChannelLabels, RejectLabels};

/// The channel name events posted here get as their default `source`.
pub const CHANNEL: &str = "http";

/// The answer to an accepted batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Events stored.
    pub accepted: usize,
    /// Their ids, in the order they were sent.
    pub ids: Vec<String>,
    /// How many of them repeated an idempotency key already stored: those were not stored
    /// again, and their ids are the stored events' ids.
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicates: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The request header that makes a whole request idempotent: event `i` of a request with
/// `Idempotency-Key: K` gets the key `K/i` unless it carries its own `idempotency_key`.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Gives each event without a key of its own the request's key and its position.
fn apply_request_key(headers: &HeaderMap, inputs: &mut [EventInput]) -> Result<(), ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(());
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= vakt_core::event::IDEMPOTENCY_KEY_LEN_MAX - 8)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Idempotency-Key: must be 1 to {} visible ASCII characters",
                vakt_core::event::IDEMPOTENCY_KEY_LEN_MAX - 8
            ))
        })?;
    for (index, input) in inputs.iter_mut().enumerate() {
        if input.idempotency_key.is_none() {
            input.idempotency_key = Some(format!("{key}/{index}"));
        }
    }
    Ok(())
}

/// Body encodings the ingest endpoint takes.
enum Encoding {
    Json,
    NdJson,
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Encoding::Json);
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        // curl -d sends form encoding and some tools send text/plain; the body is JSON either way.
        "application/json" | "" | "application/x-www-form-urlencoded" | "text/plain" => {
            Ok(Encoding::Json)
        }
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(Encoding::NdJson),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {other:?}: send application/json (an object or an array) or application/x-ndjson"
            ),
        )),
    }
}

/// Splits a body into the JSON values of its events.
fn items(encoding: Encoding, body: &[u8]) -> Result<Vec<Value>, ApiError> {
    match encoding {
        Encoding::Json => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(object @ Value::Object(_)) => Ok(vec![object]),
            Ok(_) => Err(ApiError::bad_request(
                "expected an event object or an array of event objects",
            )),
            Err(error) if body.iter().all(u8::is_ascii_whitespace) => Err(ApiError::bad_request(
                format!("the request body is empty ({error})"),
            )),
            Err(error) => Err(ApiError::bad_request(format!("invalid JSON: {error}"))),
        },
        Encoding::NdJson => {
            let mut values = Vec::new();
            let mut errors = Vec::new();
            for (number, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Value>(line) {
                    Ok(value) => values.push(value),
                    Err(error) => errors.push(FieldError::new(
                        values.len() + errors.len(),
                        "",
                        format!("line {}: invalid JSON: {error}", number + 1),
                    )),
                }
            }
            if errors.is_empty() {
                Ok(values)
            } else {
                Err(ApiError::invalid_events(errors))
            }
        }
    }
}

/// Receive events.
///
/// One event object, a JSON array of them, or NDJSON (`Content-Type: application/x-ndjson`).
/// A batch is atomic: when any event is invalid, nothing is stored and the answer lists every
/// problem by index and field. `202` comes only once every event is durable.
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "events",
    request_body(
        description = "An event object, an array of them, or NDJSON (one object per line)",
        content((Vec<EventInput> = "application/json"), (String = "application/x-ndjson"))
    ),
    responses(
        (status = 202, description = "Stored", body = Accepted),
        (status = 400, description = "Invalid events; nothing stored", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 429, description = "Ingest queue full; see Retry-After", body = ErrorBody),
        (status = 503, description = "Storage unavailable; nothing stored", body = ErrorBody),
    )
)]
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let result = ingest(&state, &caller, &headers, body).await;
    if let Err(error) = &result {
        let reason = match error.status {
            StatusCode::TOO_MANY_REQUESTS => "queue_full",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INTERNAL_SERVER_ERROR => "store_error",
            _ => "invalid",
        };
        state
            .metrics
            .events_rejected
            .get_or_create(&RejectLabels {
                channel: CHANNEL.to_owned(),
                reason,
            })
            .inc();
    }
    result.map(|accepted| (StatusCode::ACCEPTED, Json(accepted)))
}

async fn ingest(
    state: &AppState,
    caller: &crate::auth::Caller,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, ApiError> {
    let limits = state.ingest_limits();
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body larger than {} bytes (ingest.body_bytes_max)",
                    limits.body_bytes_max
                ),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    let values = items(encoding(headers)?, &body)?;
    state
        .metrics
        .events_received
        .get_or_create(&ChannelLabels {
            channel: CHANNEL.to_owned(),
        })
        .inc_by(values.len().max(1) as u64);
    if values.is_empty() {
        return Err(ApiError::bad_request(
            "the batch is empty: send at least one event",
        ));
    }
    if values.len() > limits.request_events_max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} events in one request; the limit is {} (ingest.request_events_max)",
                values.len(),
                limits.request_events_max
            ),
        ));
    }
    let mut inputs = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        match EventInput::from_json(index, value) {
            Ok(input) => inputs.push(input),
            Err(found) => errors.extend(found),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_events(errors));
    }
    apply_request_key(headers, &mut inputs)?;
    caller.sign(&mut inputs);
    let queued = crate::ingest::deliver(
        &state.http,
        state.pipeline(),
        inputs,
        WhenFull::Refuse,
        crate::ingest::Answer::Outcomes,
    );
    let outcomes = async { queued.await?.committed().await }
        .await
        .map_err(|error| {
            let mut error = ApiError::from(error);
            if error.status == StatusCode::TOO_MANY_REQUESTS {
                error.retry_after_secs = Some(limits.retry_after_secs.max(1));
            }
            error
        })?;
    Ok(Accepted {
        accepted: outcomes.len(),
        duplicates: outcomes
            .iter()
            .filter(|o| o.transition == vakt_core::pipeline::Transition::Duplicate)
            .count(),
        ids: outcomes.into_iter().map(|o| o.record.id).collect(),
    })
}

pub const EVENT_FILTERS: &[&str] = &[
    "source",
    "resource",
    "check",
    "severity",
    "category",
    "alert_id",
    "fingerprint",
    "dropped",
    "since",
    "until",
    "cursor",
    "limit",
];

/// A page of events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub items: Vec<EventRecord>,
    pub next_cursor: Option<String>,
}

impl From<Page<EventRecord>> for EventPage {
    fn from(page: Page<EventRecord>) -> Self {
        EventPage {
            items: page.items,
            next_cursor: page.next_cursor,
        }
    }
}

/// List events, newest first.
///
/// Every filter given must match. Page with `limit` (1-1000, default 50) and the
/// `next_cursor` of the previous page.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        ("source" = Option<String>, Query), ("resource" = Option<String>, Query),
        ("check" = Option<String>, Query), ("severity" = Option<Severity>, Query),
        ("category" = Option<Category>, Query), ("alert_id" = Option<String>, Query),
        ("fingerprint" = Option<String>, Query), ("dropped" = Option<bool>, Query),
        ("since" = Option<String>, Query, description = "RFC 3339; received at or after"),
        ("until" = Option<String>, Query, description = "RFC 3339; received before"),
        ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query),
    ),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody))
)]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let p = Params::parse(raw.as_deref(), EVENT_FILTERS)?;
    let query = EventQuery {
        source: p.string("source"),
        resource: p.string("resource"),
        check: p.string("check"),
        severity: p.parsed("severity", Severity::parse)?,
        category: p.parsed("category", Category::parse)?,
        alert_id: p.string("alert_id"),
        fingerprint: p.string("fingerprint"),
        dropped: p.bool("dropped")?,
        since: p.time("since")?,
        until: p.time("until")?,
        cursor: p.cursor()?,
        limit: p.limit()?,
    };
    capped_page(
        query.limit,
        query.cursor.clone(),
        state.list_bytes_max,
        |cursor, limit| {
            let chunk = EventQuery {
                cursor,
                limit,
                ..query.clone()
            };
            let store = Arc::clone(&state.store);
            async move { store.events(&chunk).await }
        },
        |e: &EventRecord| &e.id,
    )
    .await
}

/// One event with its trace.
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    tag = "events",
    params(("id" = String, Path)),
    responses((status = 200, body = EventRecord), (status = 404, body = ErrorBody))
)]
pub async fn get_event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<EventRecord>, ApiError> {
    state
        .store
        .event(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no event with id {id}")))
}
