//! The operator console: pages vakt serves itself at `/` (server-rendered minijinja
//! templates compiled into the binary, English and Swedish), plain forms that work without
//! JavaScript, and htmx plus a small script that make them live (server-sent events) and
//! fast. Reads and writes go through the same store calls as the REST API; every route's
//! scope is in `auth::ROUTES`, and a form's CSRF token is checked by [`Form`].

mod board;
mod hits;
mod i18n;
mod open;
mod pages;
mod records;
mod review;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts as RequestParts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::Value;
use vakt_core::AlertStatus;
use vakt_store::{AlertQuery, Store};

pub use hits::RuleHits;
pub use i18n::Catalogues;
pub use open::OpenAlerts;
pub use stream::Changes;

use crate::auth::{Caller, Identity, Via};
use crate::http::AppState;
use crate::live::Live;
use crate::oncall::Directory;

/// Resolved alerts the board shows at most, newest first, when asked for them.
const RESOLVED_MAX: u32 = 1_000;

/// What the console keeps: its templates, texts, the change counter, and the open alerts
/// as of the last change.
pub struct Console {
    env: minijinja::Environment<'static>,
    pub changes: Arc<Changes>,
    directory: Live<Directory>,
    /// The open alerts every board reads.
    pub open: Arc<OpenAlerts>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Signing in and out.
    auth: Arc<crate::auth::Auth>,
    /// The monitors page lists what the probes component watches.
    probes: Arc<crate::probes::Deps>,
    /// How many events each rule matched lately (the rules page).
    hits: Arc<RuleHits>,
}

/// What the console is made of: the parts other components own.
pub struct Parts {
    pub directory: Live<Directory>,
    /// Turns true when the server stops (live streams end).
    pub stop: tokio::sync::watch::Receiver<bool>,
    pub auth: Arc<crate::auth::Auth>,
    /// Bumped by the ingest writer after every commit.
    pub changes: Arc<Changes>,
    pub probes: Arc<crate::probes::Deps>,
    /// Fed by the ingest writer after every commit.
    pub hits: Arc<RuleHits>,
    /// Fed by the ingest writer after every commit.
    pub open: Arc<OpenAlerts>,
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../console/templates/base.html"),
    ),
    (
        "board.html",
        include_str!("../../../console/templates/board.html"),
    ),
    (
        "board_inner.html",
        include_str!("../../../console/templates/board_inner.html"),
    ),
    (
        "rows.html",
        include_str!("../../../console/templates/rows.html"),
    ),
    (
        "alert.html",
        include_str!("../../../console/templates/alert.html"),
    ),
    (
        "silences.html",
        include_str!("../../../console/templates/silences.html"),
    ),
    (
        "silence_new.html",
        include_str!("../../../console/templates/silence_new.html"),
    ),
    (
        "silence_preview.html",
        include_str!("../../../console/templates/silence_preview.html"),
    ),
    (
        "login.html",
        include_str!("../../../console/templates/login.html"),
    ),
    (
        "error.html",
        include_str!("../../../console/templates/error.html"),
    ),
    (
        "incidents.html",
        include_str!("../../../console/templates/incidents.html"),
    ),
    (
        "incident.html",
        include_str!("../../../console/templates/incident.html"),
    ),
    (
        "oncall.html",
        include_str!("../../../console/templates/oncall.html"),
    ),
    (
        "monitors.html",
        include_str!("../../../console/templates/monitors.html"),
    ),
    (
        "reports.html",
        include_str!("../../../console/templates/reports.html"),
    ),
    (
        "replay.html",
        include_str!("../../../console/templates/replay.html"),
    ),
    (
        "tune.html",
        include_str!("../../../console/templates/tune.html"),
    ),
    (
        "rules.html",
        include_str!("../../../console/templates/rules.html"),
    ),
    (
        "tokens.html",
        include_str!("../../../console/templates/tokens.html"),
    ),
];

/// Static files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../console/static/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/static/console.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../console/static/htmx.min.js"),
    ),
    (
        "htmx.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../../console/static/htmx.LICENSE"),
    ),
];

/// Changes when the binary does: static files are cached for a year under it.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Console {
    pub fn new(parts: Parts) -> Result<Console, String> {
        let env = environment()?;
        Ok(Console {
            env,
            changes: parts.changes,
            directory: parts.directory,
            open: parts.open,
            stop: parts.stop,
            auth: parts.auth,
            probes: parts.probes,
            hits: parts.hits,
        })
    }

    /// The open and acknowledged alerts (see [`OpenAlerts`]).
    async fn open_alerts(&self, store: &Arc<dyn Store>) -> Result<Vec<Arc<board::Entry>>, String> {
        self.open.get(store).await
    }

    /// The most recently changed resolved alerts.
    async fn resolved_alerts(store: &dyn Store) -> Result<Vec<board::Entry>, String> {
        store
            .alerts(&AlertQuery {
                status: vec![AlertStatus::Resolved],
                limit: RESOLVED_MAX,
                ..AlertQuery::default()
            })
            .await
            .map(|page| {
                page.items
                    .into_iter()
                    .map(|a| {
                        let labels = board::labels_of(&a);
                        (a, labels)
                    })
                    .collect()
            })
            .map_err(|e| format!("reading resolved alerts: {e}"))
    }

    /// Renders a page with the values every page has (language, user, CSRF token, where
    /// it is) and the page's own.
    fn render(&self, name: &str, view: &View, page: BTreeMap<&'static str, Value>) -> Response {
        let mut context = view.context();
        context.extend(page);
        let rendered = self
            .env
            .get_template(name)
            .and_then(|template| template.render(Value::from(minijinja::value::Serde(&context))));
        match rendered {
            Ok(html) => with_page_headers(Html(html).into_response()),
            Err(error) => {
                tracing::error!(template = name, error = %format!("{error:#}"), "a console page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render; the server log says why",
                )
                    .into_response()
            }
        }
    }

    /// An error page in the viewer's language, with `status`.
    fn error(&self, view: &View, status: StatusCode, message: impl Into<String>) -> Response {
        let mut page = BTreeMap::new();
        page.insert("message", Value::from(message.into()));
        let mut response = self.render("error.html", view, page);
        *response.status_mut() = status;
        response
    }

    /// The text for `key` in the view's language (the key itself if there is none, which a
    /// test rules out).
    fn text(&self, view: &View, key: &str) -> String {
        self.env
            .render_str(
                "{{ t(key) }}",
                minijinja::context! { lang => view.lang, key => key },
            )
            .unwrap_or_else(|_| key.to_owned())
    }
}

/// The templates with the `t` function over the catalogues.
fn environment() -> Result<minijinja::Environment<'static>, String> {
    let catalogues = Arc::new(Catalogues::load()?);
    let mut env = minijinja::Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|e| format!("console template {name}: {e}"))?;
    }
    env.add_function(
        "t",
        move |state: &minijinja::State, key: &str| -> Result<String, minijinja::Error> {
            let lang = state
                .lookup("lang")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| i18n::LANGUAGES[0].to_owned());
            catalogues
                .text(&lang, key)
                .map(str::to_owned)
                .ok_or_else(|| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("no text {key:?} in the {lang} catalogue"),
                    )
                })
        },
    );
    Ok(env)
}

/// Who is looking, in which language, from where: what every page needs.
pub struct View {
    pub lang: &'static str,
    pub identity: Option<Identity>,
    /// This page's path and query, for links back and the language switch.
    pub here: String,
    pub page: &'static str,
    pub flash: Option<(String, &'static str)>,
    /// Wall-screen mode: large type, no controls (`wall=1`).
    pub wall: bool,
}

impl View {
    pub fn new(headers: &HeaderMap, caller: Caller, here: String, page: &'static str) -> View {
        View {
            lang: i18n::negotiate(headers),
            identity: caller.0,
            here,
            page,
            flash: None,
            wall: false,
        }
    }

    /// Whether the viewer may use what needs `scope` (everyone may where auth is off).
    pub fn can(&self, scope: &str) -> bool {
        self.identity.as_ref().is_none_or(|i| i.has(scope))
    }

    pub fn user(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.name.as_str())
    }

    fn context(&self) -> BTreeMap<&'static str, Value> {
        let mut context = BTreeMap::new();
        context.insert("lang", Value::from(self.lang));
        context.insert("here", Value::from(self.here.clone()));
        context.insert("page", Value::from(self.page));
        context.insert("asset_version", Value::from(ASSET_VERSION));
        context.insert("wall", Value::from(self.wall));
        context.insert(
            "user",
            Value::from(self.user().map(str::to_owned).unwrap_or_default()),
        );
        context.insert(
            "csrf",
            Value::from(
                self.identity
                    .as_ref()
                    .and_then(|i| i.csrf.clone())
                    .unwrap_or_default(),
            ),
        );
        if let Some((text, kind)) = &self.flash {
            context.insert("flash", Value::from(text.clone()));
            context.insert("flash_kind", Value::from(*kind));
        }
        context
    }
}

impl View {
    /// The page URL's query, as pairs.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.here.split_once('?').map_or("", |(_, q)| q);
        serde_urlencoded::from_str(query).unwrap_or_default()
    }

    /// The identity as the API's handlers take it.
    pub fn caller(&self) -> Caller {
        Caller(self.identity.clone())
    }
}

/// Every page handler's view of the request: who, in which language, where.
impl FromRequestParts<Arc<AppState>> for View {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut RequestParts,
        state: &Arc<AppState>,
    ) -> Result<View, Self::Rejection> {
        let caller = Caller(parts.extensions.get::<Identity>().cloned());
        Ok(pages::view(state, &parts.headers, caller, &parts.uri))
    }
}

/// A form post to a console route: the page's view and the form, its CSRF field checked
/// (the one way a form body is read, [`Form::read`]). A refused form is answered with the
/// error page.
pub struct Posted {
    pub view: View,
    pub form: Form,
}

impl FromRequest<Arc<AppState>> for Posted {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &Arc<AppState>,
    ) -> Result<Posted, Response> {
        let (mut parts, body) = request.into_parts();
        let Ok(view) = View::from_request_parts(&mut parts, state).await;
        let request = axum::extract::Request::from_parts(parts, body);
        let body = match Bytes::from_request(request, state).await {
            Ok(body) => body,
            Err(rejection) => {
                return Err(state
                    .console
                    .error(&view, rejection.status(), rejection.body_text()));
            }
        };
        match Form::read(view.identity.as_ref(), &body) {
            Ok(form) => Ok(Posted { view, form }),
            Err(message) => Err(state.console.error(&view, StatusCode::FORBIDDEN, message)),
        }
    }
}

/// A form's fields, read only after its CSRF token was checked.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body. A session's form must carry the
    /// session's CSRF token as `csrf` (a page of vakt's own put it there); a token or
    /// password identity has no ambient credential and needs none.
    pub fn read(identity: Option<&Identity>, body: &Bytes) -> Result<Form, String> {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| format!("the form could not be read: {e}"))?;
        if let Some(identity) = identity
            && identity.via == Via::Session
        {
            let expected = identity.csrf.as_deref().unwrap_or_default();
            let sent = fields
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
                return Err(
                    "the form's CSRF token does not match this session: reload the page and try again"
                        .into(),
                );
            }
        }
        Ok(Form(fields))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A path on this server to go back to: starts with one `/`, else the board.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// A `303 See Other` to a local path.
pub fn see_other(path: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(path) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Pages are private and never framed; scripts and styles only from vakt itself.
fn with_page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /static/{file}`: the console's CSS and scripts, cached for a year (their URLs
/// carry the version).
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// The console's routes (their scopes are in `auth::ROUTES`).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::board))
        .route("/alerts/{id}", get(pages::alert))
        .route("/alerts/{id}/{op}", post(pages::operate))
        .route("/bulk", post(pages::bulk))
        .route(
            "/silences",
            get(pages::silences).post(pages::create_silence),
        )
        .route("/silences/new", get(pages::new_silence))
        .route("/silences/preview", get(pages::silence_preview))
        .route("/silences/{id}/expire", post(pages::expire_silence))
        .route("/incidents", get(records::incidents))
        .route(
            "/incidents/{id}",
            get(records::incident).post(records::change_incident),
        )
        .route("/oncall", get(records::oncall))
        .route("/oncall/{name}/overrides", post(records::add_override))
        .route("/monitors", get(records::monitors))
        .route("/reports", get(records::reports))
        .route(
            "/reports/replay",
            get(review::replay_form).post(review::replay_run),
        )
        .route("/reports/tune", get(review::tune))
        .route("/rules", get(records::rules))
        .route("/tokens", get(records::tokens).post(records::create_token))
        .route("/tokens/{id}/revoke", post(records::revoke_token))
        .route("/console/stream", get(stream::stream))
        .route("/lang", get(pages::switch_language))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/static/{file}", get(asset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/alerts/1?x=2")), "/alerts/1?x=2");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "/a\r\nb",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn every_template_compiles_and_every_asset_is_there() {
        let env = environment().unwrap_or_else(|e| panic!("{e}"));
        for (name, _) in TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
        assert!(ASSETS.iter().all(|(_, _, bytes)| !bytes.is_empty()));
    }

    #[test]
    fn every_text_a_template_asks_for_is_in_the_catalogue() {
        let catalogues = Catalogues::load().unwrap_or_else(|e| panic!("{e}"));
        let literal = regex::Regex::new(r#"t\(["']([a-z_]+\.[a-z_]+)["']\)"#).expect("regex");
        let mut checked = 0;
        for (name, source) in TEMPLATES {
            for found in literal.captures_iter(source) {
                for lang in i18n::LANGUAGES {
                    assert!(
                        catalogues.text(lang, &found[1]).is_some(),
                        "{name} asks for {:?}, missing in {lang}",
                        &found[1]
                    );
                }
                checked += 1;
            }
        }
        assert!(checked > 100, "{checked}");
        // Texts made from a prefix and a value: every value the server can produce.
        let families: &[(&str, &[&str])] = &[
            (
                "severity",
                &["critical", "major", "minor", "warning", "info", "ok"],
            ),
            ("category", &["informational", "warning", "exception"]),
            ("status", &["open", "acknowledged", "resolved"]),
            ("silence_state", &["pending", "active", "expired"]),
            (
                "sort",
                &["severity", "last_seen", "first_seen", "count", "resource"],
            ),
            ("done", pages::DONE),
            (
                "incident_status",
                &["new", "in_progress", "on_hold", "resolved", "closed"],
            ),
            (
                "incident_move",
                &["in_progress", "on_hold", "resolved", "closed"],
            ),
        ];
        for (prefix, values) in families {
            for value in *values {
                for lang in i18n::LANGUAGES {
                    let key = format!("{prefix}.{value}");
                    assert!(catalogues.text(lang, &key).is_some(), "{key} in {lang}");
                }
            }
        }
        for (name, _) in board::FACETS {
            for lang in i18n::LANGUAGES {
                assert!(catalogues.text(lang, &format!("field.{name}")).is_some());
            }
        }
    }
}
