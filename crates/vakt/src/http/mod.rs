//! The HTTP API: routes assembled in one place, the OpenAPI document generated from the handlers.

mod actions;
mod alerts;
pub mod console;
mod error;
mod events;
pub mod incidents;
pub mod limit;
mod ops;
mod query;
pub(crate) mod replay;
mod repoll;
pub(crate) mod reports;
pub mod serve;
mod silences;
mod state;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, Detail, ErrorBody, parse_json};
pub use events::CHANNEL as HTTP_CHANNEL;
pub use ops::Reloaded;
pub use query::Params;
pub use state::{AppState, Reload};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vakt",
        description = "ITIL event management: ingest events, follow alerts, act on them. See CONTRACT.md.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "events", description = "Observations from sources, immutable once accepted"),
        (name = "alerts", description = "Stateful objects events with one fingerprint update"),
        (name = "actions", description = "What vakt did about alerts: commands, webhooks, notifications, and every attempt"),
        (name = "on-call", description = "Users, on-call schedules, overrides and calendar export"),
        (name = "incidents", description = "Incidents (ITIL), escalation policies and the escalations alerts climb, ITSM sync"),
        (name = "silences", description = "Time spans in which matching alerts are recorded but not acted on"),
        (name = "operations", description = "Health, readiness, metrics, reload"),
        (name = "reports", description = "Volumes, noise reduction, response times, automation and incidents of a period"),
        (name = "access", description = "Who am I, API tokens, the audit log (docs/security.md)"),
        (name = "peer protocols", description = "Other tools' APIs, spoken as they speak them")
    )
)]
struct ApiDoc;

/// Builds the router of the core API merged with the components' `extra` routes, behind
/// the access guard (`auth`) and the per-request layers, and the OpenAPI document
/// describing all of it.
pub fn router(
    auth: Arc<crate::auth::Auth>,
    body_bytes_max: usize,
    body_read_timeout: std::time::Duration,
    extra: OpenApiRouter<Arc<AppState>>,
) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(events::post_events, events::list_events))
        .routes(routes!(events::get_event))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_alert))
        .routes(routes!(alerts::ack))
        .routes(routes!(alerts::unack))
        .routes(routes!(alerts::resolve))
        .routes(routes!(alerts::comment))
        .routes(routes!(alerts::assign))
        .routes(routes!(actions::list_actions))
        .routes(routes!(actions::get_action))
        .routes(routes!(actions::retry_action))
        .routes(routes!(silences::list_silences, silences::create_silence))
        .routes(routes!(silences::get_silence, silences::expire_silence))
        .routes(routes!(
            incidents::list_incidents,
            incidents::create_incident
        ))
        .routes(routes!(incidents::get_incident, incidents::update_incident))
        .routes(routes!(incidents::list_policies))
        .routes(routes!(incidents::list_escalations))
        .routes(routes!(incidents::get_escalation))
        .routes(routes!(reports::summary))
        .routes(routes!(reports::tune))
        .routes(routes!(replay::replay))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::reload))
        .merge(extra)
        .split_for_parts();
    let router = api
        .route("/openapi.json", get(ops::openapi))
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        // One stack, one layer: axum wraps every route in its own boxed service for each
        // `layer` call, and each wrapper costs every request a clone, a boxed future and a
        // boxed body. Outermost first: the guard, the trace span, the body's deadline, its
        // size limit.
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    auth,
                    crate::auth::guard,
                ))
                .layer(TraceLayer::new_for_http().make_span_with(
                    |request: &axum::http::Request<_>| {
                        tracing::debug_span!("http", method = %request.method(), path = %request.uri().path())
                    },
                ))
                .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                    body_read_timeout,
                ))
                .layer(DefaultBodyLimit::max(body_bytes_max)),
        );
    (router, doc)
}
