//! `ApiError`: every HTTP error as `{"error": ..., "details": [...]}` with the right status.
//!
//! Client mistakes are answered precisely and not logged as errors; internal failures are
//! logged with their cause and answered without internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vakt_core::FieldError;
use vakt_store::{OperateError, StoreError};

use crate::ingest::SubmitError;

/// One detail of an error: which item and field, and what is wrong.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// The error body of every endpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub details: Vec<Detail>,
    pub retry_after_secs: Option<u64>,
}

/// Most details one error lists; a batch with more problems says how many were left out.
const DETAILS_MAX: usize = 100;

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            details: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn unauthorized(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, error)
    }

    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            details: vec![Detail {
                index: None,
                field: Some(field.to_owned()),
                message: message.clone(),
            }],
            ..ApiError::bad_request(format!("{field}: {message}"))
        }
    }

    /// 400 for invalid events, listing each problem by index and field.
    pub fn invalid_events(errors: Vec<FieldError>) -> ApiError {
        let total = errors.len();
        let mut details: Vec<Detail> = errors
            .into_iter()
            .take(DETAILS_MAX)
            .map(|e| Detail {
                index: Some(e.index),
                field: (!e.field.is_empty()).then_some(e.field),
                message: e.message,
            })
            .collect();
        if total > DETAILS_MAX {
            details.push(Detail {
                index: None,
                field: None,
                message: format!("{} more problems not listed", total - DETAILS_MAX),
            });
        }
        let first = details
            .first()
            .map(|d| match (&d.index, &d.field) {
                (Some(i), Some(f)) => format!("item {i}: {f}: {}", d.message),
                (Some(i), None) => format!("item {i}: {}", d.message),
                _ => d.message.clone(),
            })
            .unwrap_or_default();
        ApiError {
            details,
            ..ApiError::bad_request(format!(
                "invalid event{}, nothing was stored: {first}",
                if total == 1 { "" } else { "s" }
            ))
        }
    }

    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {context}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::Conflict(_) => {
                tracing::warn!(%error, "storage unavailable");
                // Say why in words an operator acts on, without the database's internals.
                let text = error.to_string().to_lowercase();
                let why = if text.contains("disk is full") || text.contains("no space") {
                    "the disk holding the database is full"
                } else if text.contains("readonly") || text.contains("read-only") {
                    "the database is read-only"
                } else if matches!(error, StoreError::Conflict(_)) {
                    "another writer holds the same rows"
                } else {
                    "the database cannot be reached"
                };
                ApiError {
                    retry_after_secs: Some(5),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("storage is unavailable ({why}); nothing was stored, retry later"),
                    )
                }
            }
            other => ApiError::internal("storage failed", other),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::QueueFull { .. } => ApiError {
                retry_after_secs: Some(1),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{error}; retry later"),
                )
            },
            SubmitError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            SubmitError::Closed => ApiError {
                retry_after_secs: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            },
            SubmitError::Store(error) => error.into(),
        }
    }
}

impl From<OperateError> for ApiError {
    fn from(error: OperateError) -> Self {
        use vakt_core::alert::OperatorError;
        match error {
            OperateError::NotFound(_) => ApiError::not_found(error.to_string()),
            OperateError::Refused(OperatorError::Invalid(message)) => {
                ApiError::bad_request(message)
            }
            OperateError::Refused(OperatorError::Conflict(message)) => {
                ApiError::new(StatusCode::CONFLICT, message)
            }
            OperateError::Store(error) => error.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.error,
                details: self.details,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Parses a JSON body into `T`, answering 400 with serde's message and position.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
}
